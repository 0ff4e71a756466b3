"""POST Patient/{id}/$erase (GDPR art. 17): the person asks, an administrator confirms,
and the person's data key is destroyed (crypto-shredding). Every sealed element becomes
unreadable everywhere, backups included; the clear remainder of the dossier (codes, dates)
is purged too. The audit log, which never held personal data, stays intact and verifiable.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update

from dossier.core.repository import Repository
from dossier.db.models import (
    break_glass,
    erasure_requests,
    notification_settings,
    resource_versions,
    resources,
    search_index,
)
from dossier.errors import Conflict, Forbidden, not_found
from dossier.fhir import operations
from dossier.fhir.bundles import instant
from dossier.fhir.operations import Call

DB = "https://dossier.brussels/fhir"
E = erasure_requests.c
R = resources.c
V = resource_versions.c
S = search_index.c


def _parameters(status: str, when: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "status", "valueCode": status}, {"name": "date", "valueInstant": instant(when)}]}


def erase(repo: Repository, call: Call) -> Any:
    ctx = repo.ctx
    rid = call.resource_id
    assert rid is not None
    p = ctx.principal
    repo.begin("operation", "Patient", None)
    if p.role not in ("citizen", "admin"):
        raise Forbidden("Erasure is asked by the person and confirmed by an administrator.")
    row = repo.current_row("Patient", rid)
    if p.role == "citizen":
        if p.patient != f"Patient/{rid}" or row is None:
            raise not_found("Patient")
        asked = repo.session.execute(select(E.requested_at).where(
            E.patient_id == rid)).scalar_one_or_none()
        if asked is None:
            repo.session.execute(insert(erasure_requests).values(
                patient_id=rid, requested_at=ctx.now))
        repo.note_access("operation", "Patient", rid, f"Patient/{rid}",
                         detail="erase")
        return _parameters("requested", asked or ctx.now)
    request = repo.session.execute(select(erasure_requests).where(
        E.patient_id == rid)).first()
    if row is None or request is None:
        raise Conflict("There is no erasure request from this person to confirm.")
    if request.confirmed_at is not None:
        return _parameters("erased", request.confirmed_at)
    purge(repo.session, rid)
    repo.sealer.erase(repo.session, rid, ctx.now)  # type: ignore[attr-defined]
    repo.session.execute(update(erasure_requests).where(E.patient_id == rid).values(
        confirmed_at=ctx.now, confirmed_by=p.fhir_user))
    repo.note_access("operation", "Patient", rid, f"Patient/{rid}", detail="erase")
    # SQLite: copy the write-ahead log into the zeroed pages and empty it, after commit
    repo.after_commit("checkpoint-wal")
    return _parameters("erased", ctx.now)


def purge(session: Any, patient_id: str) -> None:
    """Remove the clear remainder of the dossier; Consents stay (they are the person's
    policies and name no personal data), so former readers are told 'gone'."""
    kept = R.res_type != "Consent"
    ids = select(R.res_id).where(R.patient_id == patient_id, kept)
    session.execute(delete(search_index).where(S.res_id.in_(ids), S.res_type != "Consent"))
    session.execute(update(resources).where(R.patient_id == patient_id, kept).values(
        deleted=True, content={}, sealed=None))
    session.execute(update(resource_versions).where(
        V.patient_id == patient_id, V.res_type != "Consent").values(content={}, sealed=None))
    session.execute(delete(notification_settings).where(
        notification_settings.c.patient_id == patient_id))
    session.execute(update(break_glass).where(break_glass.c.patient_id == patient_id)
                    .values(reason=None))


operations.register(operations.Operation(
    "erase", "instance", "Patient", frozenset({"POST"}), erase,
    f"{DB}/OperationDefinition/Patient-erase"))
