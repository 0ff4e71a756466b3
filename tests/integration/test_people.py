"""People reach their dossier (SPEC §8, §13; issue 15): login by national number, one
dossier per person. Over HTTP on SQLite and PostgreSQL; the race on real threads."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from auth import TokenClaims, parse_scopes
from dossier.core.context import RequestContext
from dossier.db.models import search_index
from tests import factories as f
from tests.integration.conftest import Api, World

NISS = f.niss("720415", 37)
OTHER = f.niss("800101", 12)


def by_niss(world: World, niss: str, **kw: Any) -> Api:
    return Api(world.client, world.issuer.mint(None, ["citizen"], None, 3600, niss=niss, **kw))


def test_citizen_signs_in_with_national_number(world: World) -> None:
    pid = world.open_dossier(f.patient(ssin=NISS))
    other = world.open_dossier(f.patient(ssin=OTHER))
    me = by_niss(world, NISS)
    assert me.get(f"/fhir/Patient/{pid}").status_code == 200
    assert me.get(f"/fhir/Patient/{other}").status_code == 404
    bundle = me.get("/fhir/Patient").json()
    assert [e["resource"]["id"] for e in bundle.get("entry", [])] == [pid]
    # they grant as any citizen does
    grant = f.consent(pid, world.gp_ref, categories=("identity",))
    assert me.post("/fhir/Consent", grant).status_code == 201
    assert world.gp.get(f"/fhir/Patient/{pid}").status_code == 200
    # fhirUser keeps working for existing clients
    assert world.citizen(pid).get(f"/fhir/Patient/{pid}").status_code == 200


def test_bad_check_digits_is_401_with_a_plain_message(world: World) -> None:
    bad = NISS[:-2] + f"{(int(NISS[-2:]) + 1) % 100:02d}"
    r = by_niss(world, bad).get("/fhir/Patient")
    assert r.status_code == 401
    text = r.json()["issue"][0]["diagnostics"]
    assert "check digits" in text and bad not in r.text
    # a national number on a non-citizen token is ignored
    token = world.issuer.mint(world.gp_ref, ["practitioner"], None, 3600, niss=bad)
    assert Api(world.client, token).get("/fhir/Patient").status_code == 200


def test_niss_and_fhir_user_naming_two_people_is_refused(world: World) -> None:
    pid = world.open_dossier(f.patient(ssin=NISS))
    other = world.open_dossier(f.patient(ssin=OTHER))
    assert by_niss(world, NISS).get(f"/fhir/Patient/{pid}").status_code == 200
    token = world.issuer.mint(f"Patient/{other}", ["citizen"], None, 3600, niss=NISS)
    assert Api(world.client, token).get(f"/fhir/Patient/{pid}").status_code == 401


def test_citizen_opens_their_own_dossier(world: World) -> None:
    me = by_niss(world, NISS)
    assert me.get("/fhir/Patient").json()["total"] == 0
    first = me.post("/fhir/Patient", f.patient(ssin=NISS))
    assert first.status_code == 201
    pid = first.json()["id"]
    again = me.post("/fhir/Patient", f.patient(ssin=NISS, family="Other"))
    assert again.status_code == 200 and again.json()["id"] == pid
    assert me.post("/fhir/Patient", f.patient(ssin=OTHER)).status_code == 403
    assert me.post("/fhir/Patient", f.patient(ssin=None)).status_code == 403
    assert me.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "Martin"


def test_professional_gets_the_same_answer_whether_or_not_a_dossier_exists(
        world: World) -> None:
    first = world.gp.post("/fhir/Patient", f.patient(ssin=NISS))
    second = world.sw.post("/fhir/Patient", f.patient(ssin=NISS))
    fresh = world.sw.post("/fhir/Patient", f.patient(ssin=OTHER))
    assert first.status_code == second.status_code == fresh.status_code == 201
    assert first.json()["id"] == second.json()["id"] != fresh.json()["id"]
    assert set(second.headers) == set(fresh.headers)
    assert set(second.json()) == set(fresh.json())
    assert second.headers["etag"] == fresh.headers["etag"]
    pid = first.json()["id"]
    # the one dossier; still no access until the person consents
    assert world.sw.get(f"/fhir/Patient/{pid}").status_code == 404
    assert by_niss(world, NISS).get("/fhir/Patient").json()["total"] == 1
    # and no second door: Bundles and conditional writes do not open dossiers by number
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": f.patient(ssin=NISS)}]}
    assert world.gp.post("/fhir", bundle).status_code == 422


def test_national_number_of_a_dossier_does_not_change(world: World) -> None:
    pid = world.consented(f.patient(ssin=NISS))
    body = {**f.patient(ssin=OTHER), "id": pid}
    r = world.gp.put(f"/fhir/Patient/{pid}", body)
    assert r.status_code == 422
    two = f.patient(ssin=NISS)
    two["identifier"].append({"system": f.SSIN, "value": OTHER})
    assert world.gp.post("/fhir/Patient", two).status_code == 422


def test_dev_token_cli_mints_a_citizen_token_by_niss(world: World, settings: Any) -> None:
    pid = world.open_dossier(f.patient(ssin=NISS))
    env = {"PATH": "/usr/bin:/bin"}
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    out = subprocess.run([sys.executable, "-m", "dossier", "dev-token", "--data-dir",
                          str(settings.data_dir), "--roles", "citizen", "--niss", NISS],
                         capture_output=True, text=True, timeout=120, env=env, check=True)
    me = Api(world.client, out.stdout.strip())
    assert me.get(f"/fhir/Patient/{pid}").status_code == 200


def _claims(role: str, fhir_user: str | None, niss: str | None = None) -> TokenClaims:
    from datetime import UTC, datetime, timedelta
    return TokenClaims(subject="t", issuer="i", client_id=None, fhir_user=fhir_user,
                       roles=frozenset({role}), scopes=parse_scopes("user/*.cruds"),
                       expires_at=datetime.now(UTC) + timedelta(hours=1),
                       raw_scope="user/*.cruds", niss=niss)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_concurrent_opens_make_one_dossier(world: World) -> None:
    """Eight professionals open the same person's dossier at once: one dossier."""
    runtime = world.app.state.runtime
    refs = [world.gp_ref, world.sw_ref] * 4
    barrier = threading.Barrier(len(refs))
    ids: list[str] = []
    errors: list[BaseException] = []

    def open_one(ref: str) -> None:
        try:
            ctx = RequestContext(claims=_claims("practitioner", ref))
            barrier.wait(timeout=30)
            with runtime.unit(ctx) as repo:
                stored, _ = repo.open_dossier(f.patient(ssin=NISS))
            ids.append(stored.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(ref,)) for ref in refs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(ids) == len(refs) and len(set(ids)) == 1
    assert by_niss(world, NISS).get("/fhir/Patient").json()["total"] == 1


def test_unique_index_is_the_backstop(world: World) -> None:
    pid = world.open_dossier(f.patient(ssin=NISS))
    other = world.open_dossier(f.patient(ssin=OTHER))
    runtime = world.app.state.runtime
    blind = runtime.sealer().blind(f.SSIN, NISS)
    with pytest.raises(IntegrityError), runtime.engine.begin() as conn:
        conn.execute(insert(search_index).values(res_type="Patient", res_id=other,
                                                 param="identifier", system=f.SSIN,
                                                 value=blind))
    assert pid != other
