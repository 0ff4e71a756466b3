"""Representatives (SPEC §13; issue 15): a mandataire decides, a personne de confiance
sees, a parent's mandate ends at the child's 18th birthday, every act names both people
and the represented person is told. Over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from auth import TokenClaims, parse_scopes
from auth.errors import Forbidden as AuthForbidden
from dossier.core.context import RequestContext
from dossier.db.models import notification_outbox
from dossier.errors import DossierError
from tests import factories as f
from tests.integration.conftest import Api, World

SIMONE = f.niss("430502", 84)
SON = f.niss("700301", 55)
NURSE_CATEGORIES = ("identity", "network")


def by_niss(world: World, niss: str) -> Api:
    return Api(world.client, world.issuer.mint(None, ["citizen"], None, 3600, niss=niss))


def simone(world: World) -> tuple[str, Api]:
    pid = world.open_dossier(f.patient(ssin=SIMONE, family="Wouters", given="Simone",
                                       birth="1943-05-02"))
    return pid, by_niss(world, SIMONE)


def audit_records(world: World, patient_id: str) -> list[dict[str, Any]]:
    r = world.auditor.get("/fhir/AuditEvent", params={"patient": f"Patient/{patient_id}",
                                                       "_count": "200"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def test_mandataire_grants_her_home_nurse(world: World) -> None:
    pid, me = simone(world)
    named = me.post("/fhir/RelatedPerson", f.representative(pid, SON))
    assert named.status_code == 201, named.text
    son = by_niss(world, SON)
    listed = son.get("/fhir/Patient").json()
    assert [e["resource"]["id"] for e in listed["entry"]] == [pid]
    grant = son.post("/fhir/Consent", f.consent(pid, world.sw_ref,
                                                 categories=NURSE_CATEGORIES))
    assert grant.status_code == 201, grant.text
    assert world.sw.get(f"/fhir/Patient/{pid}").status_code == 200
    # the son acts on the consents, never on the entries
    assert son.post("/fhir/Task", f.task(f"Patient/{pid}")).status_code == 403
    # audited with both people: Simone's record names the son's RelatedPerson
    rep_ref = f"RelatedPerson/{named.json()['id']}"
    records = audit_records(world, pid)
    whos = {a.get("who", {}).get("reference") for e in records for a in e.get("agent", [])}
    assert rep_ref in whos
    # and Simone is told
    with world.app.state.runtime.engine.connect() as conn:
        notices = conn.execute(select(notification_outbox.c.agent).where(
            notification_outbox.c.patient_id == pid)).scalars().all()
    assert rep_ref in notices


def test_personne_de_confiance_sees_but_changes_nothing(world: World) -> None:
    pid, me = simone(world)
    assert me.post("/fhir/RelatedPerson",
                   f.representative(pid, SON, mandate="see")).status_code == 201
    son = by_niss(world, SON)
    assert son.get(f"/fhir/Patient/{pid}").status_code == 200
    r = son.post("/fhir/Consent", f.consent(pid, world.sw_ref))
    assert r.status_code == 403 and "changes nothing" in r.text


def test_who_names_which_representative(world: World) -> None:
    pid, me = simone(world)
    # a professional never makes someone a representative
    assert world.gp.post("/fhir/RelatedPerson",
                         f.representative(pid, SON)).status_code in (403, 404)
    # the person names a mandataire, not a guardian
    assert me.post("/fhir/RelatedPerson",
                   f.representative(pid, SON, relationship="GUARD")).status_code == 403
    assert world.admin.post("/fhir/RelatedPerson",
                            f.representative(pid, SON, relationship="GUARD")).status_code == 201
    # a representative carries a NISS and a mandate; the citizen keeps to representatives
    no_niss = f.representative(pid, SON)
    del no_niss["identifier"]
    assert me.post("/fhir/RelatedPerson", no_niss).status_code == 422
    assert me.post("/fhir/RelatedPerson", f.related_person(pid)).status_code == 403
    # someone else's dossier does not exist for her
    other = world.open_dossier()
    assert me.post("/fhir/RelatedPerson", f.representative(other, SON)).status_code == 404


def test_citizen_removes_a_mandataire(world: World) -> None:
    pid, me = simone(world)
    rid = me.post("/fhir/RelatedPerson", f.representative(pid, SON)).json()["id"]
    son = by_niss(world, SON)
    assert son.get("/fhir/Patient").json()["total"] == 1
    assert me.delete(f"/fhir/RelatedPerson/{rid}").status_code in (200, 204)
    assert son.get("/fhir/Patient").json()["total"] == 0
    # an informal helper recorded by a professional is not hers to delete
    world.grant(pid, world.gp_ref)
    helper = world.gp.create(f.related_person(pid))
    assert me.delete(f"/fhir/RelatedPerson/{helper['id']}").status_code == 403


def test_ended_mandate_is_refused_on_every_act(world: World) -> None:
    pid, me = simone(world)
    assert me.post("/fhir/RelatedPerson",
                   f.representative(pid, SON, end="2020-01-01")).status_code == 201
    son = by_niss(world, SON)
    assert son.get("/fhir/Patient").json()["total"] == 0
    assert son.get(f"/fhir/Patient/{pid}").status_code == 403
    assert son.post("/fhir/Consent", f.consent(pid, world.sw_ref)).status_code == 403
    refused = [e for e in audit_records(world, pid) if e["outcome"] != "0"]
    assert refused


def _claims(niss: str) -> TokenClaims:
    return TokenClaims(subject="parent", issuer="i", client_id=None, fhir_user=None,
                       roles=frozenset({"citizen"}), scopes=parse_scopes("patient/*.cruds"),
                       expires_at=datetime(2100, 1, 1, tzinfo=UTC),
                       raw_scope="patient/*.cruds", niss=niss)


def test_parent_mandate_ends_at_the_18th_birthday(world: World) -> None:
    child = world.open_dossier(f.patient(birth="2010-06-01", given="Leo"))
    r = world.admin.post("/fhir/RelatedPerson",
                         f.representative(child, SON, relationship="PRN"))
    assert r.status_code == 201, r.text
    runtime = world.app.state.runtime

    def read_at(moment: datetime) -> None:
        with runtime.unit(RequestContext(claims=_claims(SON), now=moment)) as repo:
            repo.read("Patient", child)

    read_at(datetime(2028, 5, 31, 12, tzinfo=UTC))  # still a minor
    with pytest.raises((DossierError, AuthForbidden)) as refused:
        read_at(datetime(2028, 6, 1, 12, tzinfo=UTC))  # 18 today
    assert getattr(refused.value, "status", 403) == 403


def test_personne_de_confiance_reads_the_access_log(world: World) -> None:
    pid, me = simone(world)
    assert me.post("/fhir/RelatedPerson",
                   f.representative(pid, SON, mandate="see")).status_code == 201
    world.app.state.runtime.integrate_audit()
    son = by_niss(world, SON)
    r = son.get("/fhir/AuditEvent", params={"patient": f"Patient/{pid}"})
    assert r.status_code == 200 and r.json()["total"] >= 1
