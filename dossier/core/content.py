"""The dossier's own rules at write time (SPEC §4, §12; docs/demarches.md,
docs/fragility.md): démarche status transitions, the server-computed fragility level, and
the Flag kept in step with the latest assessment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import false, select

from dossier.db.models import resources
from dossier.domain import (
    check_business_status,
    check_transition,
    flag_for,
    latest_assessment,
    with_computed_level,
)
from dossier.domain.fragility import is_fragility_assessment
from dossier.domain.people import check_patient_write

if TYPE_CHECKING:
    from dossier.core.repository import Repository, Stored

R = resources.c


def before_write(resource: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
    """Check and complete a resource a client writes; returns what will be stored."""
    check_patient_write(resource, existing)
    if resource.get("resourceType") == "Task":
        old = existing.get("status") if existing else None
        check_transition(old, str(resource.get("status")))
        check_business_status(resource)
    if is_fragility_assessment(resource):
        return with_computed_level(resource)  # the client's value, if any, is replaced
    return resource


def flag_id(patient_id: str) -> str:
    return f"fragility-{patient_id}"[:64]


def after_write(repo: Repository, stored: Stored) -> None:
    """Keep the patient's fragility Flag in step with their latest assessment; tell
    professionals what coordination asks them to know (dossier/coordination/events.py)."""
    from dossier.coordination.events import after_write as tell  # here: no import cycle

    tell(repo, stored)
    if stored.resource is None or not is_fragility_assessment(stored.resource):
        return
    patient_id = stored.meta.patient_id
    assert patient_id is not None
    repo.flush_writes()  # a create's (or a Bundle's) rows may still be buffered
    rows = repo.session.execute(select(R.res_id).where(
        R.res_type == "Observation", R.patient_id == patient_id,
        R.deleted == false())).scalars().all()
    observations = [repo.server_read("Observation", rid) for rid in rows]
    latest = latest_assessment([o for o in observations if o is not None])
    if latest is None:
        return
    flag = flag_for(latest, f"Patient/{patient_id}", flag_id(patient_id))
    repo.server_write(flag)
