"""The record locator (issue 9, metahub style), on SQLite and PostgreSQL: the Endpoint
directory, and POST Patient/$locate answering where a person's dossier is held — only to
hubs, only with the person's consent, and the same empty answer otherwise."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import dossier.hubs.locator  # noqa: F401 - registers $locate (as dossier/app.py does)
from dossier.db.models import audit_records, notification_outbox, resources
from tests import factories as f
from tests.integration.conftest import Api, World, make_settings

SITE = "https://dossier.test"
BASE = f"{SITE}/fhir"  # this instance's FHIR base (settings.base_url + /fhir)
LOCATE = "/fhir/Patient/$locate"
SSIN = f.SSIN
NISS = f.niss("750315", 42)
EMPTY = {"resourceType": "Parameters"}
SECRET = "QXSECRET4711"


@pytest.fixture
def settings(data_dir: Path, database_url: str | None) -> Any:
    return make_settings(data_dir, database_url, base_url=SITE)


# ---------------------------------------------------------------- helpers

def identifier(value: str = NISS, system: str = SSIN) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "identifier", "valueIdentifier": {"system": system, "value": value}}]}


def hub_api(world: World, fhir_user: str, scope: str = "system/*.rs",
            client_id: str = "hub-abrumet") -> Api:
    """A hub token: as its Organization, or (with act) on behalf of a practitioner."""
    extra = {"act": {"sub": client_id}} if fhir_user.startswith("Practitioner/") else None
    return Api(world.client, world.issuer.mint(fhir_user, ["hub"], scope, 3600,
                                               client_id=client_id, extra_claims=extra))


def hub_org(world: World) -> str:
    return f"Organization/{world.admin.create(f.organization('Abrumet', 'health'))['id']}"


def this_instance(world: World, status: str = "active") -> str:
    """The admin registers this server in its own Endpoint directory."""
    made = world.admin.create(f.endpoint(BASE, world.org_ref, status, "Dossier Bruxelles"))
    return str(made["id"])


def records(world: World) -> list[dict[str, Any]]:
    with Session(world.app.state.runtime.engine) as session:
        return [r for (r,) in session.execute(
            select(audit_records.c.record).order_by(audit_records.c.recorded_at))]


def locate_records(world: World) -> list[dict[str, Any]]:
    return [r for r in records(world)
            if any(e.get("detail") == "locate" for e in r["events"])]


def outbox_count(world: World, patient_id: str) -> int:
    with Session(world.app.state.runtime.engine) as session:
        return int(session.execute(select(func.count()).select_from(notification_outbox).where(
            notification_outbox.c.patient_id == patient_id)).scalar_one())


def endpoint_rows(world: World) -> int:
    with Session(world.app.state.runtime.engine) as session:
        return int(session.execute(select(func.count()).select_from(resources).where(
            resources.c.res_type == "Endpoint")).scalar_one())


def matches(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    out = []
    for p in body.get("parameter", []):
        assert p["name"] == "match"
        out.append({x["name"]: x.get("valueReference", {}).get("reference") or x.get("valueUrl")
                    for x in p["part"]})
    return out


def outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def person(world: World, serial: int = 42) -> str:
    """A dossier (opened by the GP) whose Patient carries a NISS; nobody has consent."""
    return world.open_dossier(f.patient(ssin=f.niss("750315", serial)))


# ---------------------------------------------------------------- the Endpoint directory

def test_endpoint_directory_kept_by_the_admin_read_by_everyone(world: World) -> None:
    hub = hub_org(world)
    made = world.admin.create(f.endpoint("https://hub.abrumet.example/fhir", hub))
    eid = made["id"]
    assert made["meta"]["versionId"] == "1" and "security" not in made["meta"]
    pid = world.consented()
    for api in (world.gp, world.citizen(pid), world.auditor, hub_api(world, hub)):
        r = api.get(f"/fhir/Endpoint/{eid}")
        assert r.status_code == 200, r.text
        assert r.json()["address"] == "https://hub.abrumet.example/fhir"
    for params in ({"organization": hub}, {"status": "active"},
                   {"connection-type": "hl7-fhir-rest"}, {"name": "abrumet"},
                   {"address": "https://hub.abrumet.example/fhir"}, {"payload-type": "any"}):
        assert world.gp.total("/fhir/Endpoint", **params) == 1, params
    assert world.gp.total("/fhir/Endpoint", status="suspended") == 0
    changed = {**made, "status": "suspended"}
    r = world.admin.put(f"/fhir/Endpoint/{eid}", changed)
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
    assert world.gp.total("/fhir/Endpoint", status="suspended") == 1
    # nobody but the admin writes the directory; the refusal changes nothing
    assert outcome(world.gp.post("/fhir/Endpoint", f.endpoint()), 403)
    assert outcome(hub_api(world, hub).put(f"/fhir/Endpoint/{eid}", made), 403)
    assert outcome(world.citizen(pid).delete(f"/fhir/Endpoint/{eid}"), 403)
    assert world.gp.get(f"/fhir/Endpoint/{eid}").json()["status"] == "suspended"
    assert world.admin.delete(f"/fhir/Endpoint/{eid}").status_code == 204
    assert world.gp.get(f"/fhir/Endpoint/{eid}").status_code == 410
    types = {t["type"] for t in world.anonymous.get("/fhir/metadata").json()["rest"][0][
        "resource"]}
    assert "Endpoint" in types


@pytest.mark.parametrize(("change", "path"), [
    ({"address": f"http://{SECRET.lower()}.example/fhir"}, "Endpoint.address"),
    ({"address": f"https://user:{SECRET}@hub.example/fhir"}, "Endpoint.address"),
    ({"connectionType": None}, "Endpoint.connectionType"),
    ({"payloadType": [{"text": SECRET}]}, "Endpoint.payloadType[0].text"),
    ({"header": [f"Authorization: Bearer {SECRET}"]}, "Endpoint.header"),
    ({"managingOrganization": {"reference": "Organization/nowhere"}},
     "Endpoint.managingOrganization"),
])
def test_invalid_endpoint_is_refused_and_nothing_stored(world: World, change: dict[str, Any],
                                                        path: str) -> None:
    resource = f.endpoint(organization_ref=world.org_ref)
    for key, value in change.items():
        if value is None:
            del resource[key]
        else:
            resource[key] = value
    body = outcome(world.admin.post("/fhir/Endpoint", resource), 422)
    assert path in {e for i in body["issue"] for e in i.get("expression", [])}, body
    assert SECRET not in json.dumps(body) and SECRET.lower() not in json.dumps(body)
    assert endpoint_rows(world) == 0


# ---------------------------------------------------------------- $locate with consent

def test_a_hub_organisation_with_a_grant_learns_where_the_dossier_is(world: World) -> None:
    org = hub_org(world)
    eid = this_instance(world)
    pid = person(world)
    twin = person(world)  # one dossier per NISS (SPEC §13): opening again gives the same
    assert twin == pid
    world.grant(pid, org, categories=("demarches",), actions=("access",))  # any grant will do
    before = outbox_count(world, pid), outbox_count(world, twin)
    found = matches(hub_api(world, org).post(LOCATE, identifier()))
    assert found == [{"patient": f"Patient/{pid}", "endpoint": f"Endpoint/{eid}",
                      "address": BASE}]
    # one audit record for the person, naming the hub; the identifier only as a keyed hash
    mine = {r["patient"]: r for r in locate_records(world)}
    assert mine[f"Patient/{pid}"]["outcome"] == "success"
    for record in mine.values():
        assert record["agent"]["who"] == org and record["agent"]["client"] == "hub-abrumet"
        assert NISS not in json.dumps(record)
        assert record["events"][0]["query"][0]["name"] == "identifier"
    assert outbox_count(world, pid) > before[0]  # the person is told
    # the person sees the locate in their access log
    world.app.state.runtime.integrate_audit()
    events = world.citizen(pid).get("/fhir/AuditEvent").json()["entry"]
    located = [e["resource"] for e in events if any(
        d.get("valueString") == "locate" for x in e["resource"]["entity"]
        for d in x.get("detail", []))]
    assert located and located[-1]["outcome"] == "0"
    assert located[-1]["agent"][0]["who"]["reference"] == org


def test_a_hub_acting_for_a_practitioner_uses_the_practitioners_grants(world: World) -> None:
    pid = person(world)
    world.grant(pid, world.gp_ref, categories=("network",), actions=("access",))
    found = matches(hub_api(world, world.gp_ref).post(LOCATE, identifier()))
    assert [m["patient"] for m in found] == [f"Patient/{pid}"]
    assert found[0]["address"] == BASE and "endpoint" not in found[0]  # none registered
    record = locate_records(world)[-1]
    assert record["agent"]["on_behalf_of"] == world.gp_ref
    assert record["agent"]["client"] == "hub-abrumet"
    # the social worker has no grant: the hub acting for them learns nothing
    assert hub_api(world, world.sw_ref).post(LOCATE, identifier()).json() == EMPTY
    # a grant to the hub's own Organization does not help a hub acting for someone else
    org = hub_org(world)
    world.grant(pid, org)
    assert hub_api(world, world.sw_ref).post(LOCATE, identifier()).json() == EMPTY


def test_a_live_break_the_glass_grant_counts_and_is_marked_urgent(world: World) -> None:
    pid = person(world)
    reason = {"resourceType": "Parameters",
              "parameter": [{"name": "reason", "valueString": "unconscious at admission"}]}
    assert hub_api(world, world.gp_ref).post(LOCATE, identifier()).json() == EMPTY
    assert world.gp.post(f"/fhir/Patient/{pid}/$break-glass", reason).status_code == 200
    found = matches(hub_api(world, world.gp_ref).post(LOCATE, identifier()))
    assert [m["patient"] for m in found] == [f"Patient/{pid}"]
    record = locate_records(world)[-1]
    assert record["purpose"] == "BTG" and record["outcome"] == "success"
    with Session(world.app.state.runtime.engine) as session:
        assert session.execute(select(notification_outbox.c.urgent).where(
            notification_outbox.c.record_id == record["id"])).scalars().all() == [True]


def test_a_suspended_endpoint_does_not_represent_this_instance(world: World) -> None:
    this_instance(world, status="suspended")
    org = hub_org(world)
    pid = person(world)
    world.grant(pid, org)
    found = matches(hub_api(world, org).post(LOCATE, identifier()))
    assert found == [{"patient": f"Patient/{pid}", "address": BASE}]


# ---------------------------------------------------------------- existence hiding

def _no_consent(world: World, org: str) -> None:
    person(world)


def _unknown_person(world: World, org: str) -> None:
    world.grant(person(world, serial=7), org)  # someone else, consented


def _revoked(world: World, org: str) -> None:
    pid = person(world)
    grant = world.grant(pid, org)
    assert world.citizen(pid).delete(f"/fhir/Consent/{grant['id']}").status_code == 204


def _expired(world: World, org: str) -> None:
    world.grant(person(world), org, start="2020-01-01", end="2021-01-01")


def _excluded(world: World, org: str) -> None:
    pid = person(world)
    world.grant(pid, org)
    world.grant(pid, org, kind="deny", categories=(), actions=())


def _other_actor(world: World, org: str) -> None:
    world.grant(person(world), world.org_ref)  # the CPAS, not the hub


def _collect_only(world: World, org: str) -> None:
    world.grant(person(world), org, actions=("collect",))  # may contribute, not read


@pytest.mark.parametrize("situation", [
    _no_consent, _unknown_person, _revoked, _expired, _excluded, _other_actor,
    _collect_only,
])
def test_without_consent_the_answer_is_the_same_as_for_nobody(world: World,
                                                              situation: Any) -> None:
    org = hub_org(world)
    this_instance(world)
    nobody = hub_api(world, org).post(LOCATE, identifier(f.niss("990101", 1)))
    situation(world, org)
    answer = hub_api(world, org).post(LOCATE, identifier())
    assert answer.status_code == nobody.status_code == 200
    assert answer.json() == EMPTY
    assert answer.content == nobody.content  # byte for byte
    assert answer.headers["content-type"] == nobody.headers["content-type"]
    assert locate_records(world)[-1]["outcome"] in ("success", "denied")


@pytest.mark.parametrize("ident", [
    identifier(f.niss("750315", 42)[:-2] + "00"),  # check number wrong: matches nothing
    identifier(system="https://example.org/other-ids"),  # same value, another system
    identifier(value=f.niss("750315", 43)),  # a neighbour in the number space
])
def test_an_identifier_that_matches_nothing_gets_the_empty_answer(world: World,
                                                                  ident: dict[str, Any]) -> None:
    org = hub_org(world)
    world.grant(person(world), org)
    assert hub_api(world, org).post(LOCATE, ident).json() == EMPTY


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize(("role", "user"), [
    ("practitioner", None), ("citizen", "Patient/{pid}"), ("admin", "Operator/admin"),
    ("auditor", "Operator/dpo"),
])
def test_only_hubs_locate_and_refusals_are_audited(world: World, role: str,
                                                   user: str | None) -> None:
    org = hub_org(world)
    pid = person(world)
    world.grant(pid, org)
    world.grant(pid, world.gp_ref)  # even with consent, a practitioner does not locate
    api = world.gp if user is None else world.as_(role, user.format(pid=pid))
    body = outcome(api.post(LOCATE, identifier()), 403)
    assert "hub" in body["issue"][0]["diagnostics"]
    last = records(world)[-1]
    assert last["outcome"] == "denied" and last["agent"]["role"] == role
    assert last.get("patient") is None  # nothing was looked up


def test_a_hub_without_a_patient_scope_is_refused(world: World) -> None:
    org = hub_org(world)
    api = hub_api(world, org, scope="system/Organization.rs")
    outcome(api.post(LOCATE, identifier()), 403)
    assert records(world)[-1]["outcome"] == "denied"


def _param(**item: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "identifier", **item}]}


@pytest.mark.parametrize(("body", "status", "where"), [
    (None, 400, None),
    ({"resourceType": "Patient"}, 400, None),
    ({"resourceType": "Parameters"}, 422, "Parameters.parameter.identifier"),
    ({"resourceType": "Parameters", "parameter": []}, 422, "Parameters.parameter.identifier"),
    (_param(valueIdentifier={"value": NISS}), 422,
     "Parameters.parameter.identifier.valueIdentifier.system"),
    (_param(valueIdentifier={"system": SSIN}), 422,
     "Parameters.parameter.identifier.valueIdentifier.value"),
    (_param(valueIdentifier={"system": SSIN, "value": ""}), 422,
     "Parameters.parameter.identifier.valueIdentifier.value"),
    (_param(valueIdentifier={"system": SSIN, "value": 75031504242}), 422,
     "Parameters.parameter.identifier.valueIdentifier.value"),
    (_param(valueString=f"{SSIN}|{NISS}"), 422, "Parameters.parameter.identifier"),
    (_param(valueIdentifier={"system": SSIN, "value": NISS, "use": "official"}), 422,
     "Parameters.parameter.identifier.valueIdentifier"),
    ({"resourceType": "Parameters", "parameter": [
        *identifier()["parameter"], *identifier()["parameter"]]}, 422,
     "Parameters.parameter.identifier"),
    ({"resourceType": "Parameters", "parameter": [
        *identifier()["parameter"], {"name": "birthdate", "valueDate": "1975-03-15"}]}, 422,
     "Parameters.parameter.birthdate"),
    ({"resourceType": "Parameters", "parameter": [
        *identifier()["parameter"], {"name": f"{SECRET} x", "valueString": SECRET}]}, 422,
     "Parameters.parameter"),
    ({**identifier(), "text": {"status": "generated"}}, 422, "Parameters"),
])
def test_bad_input_is_refused_naming_the_parameter_and_audited(
        world: World, body: dict[str, Any] | None, status: int, where: str | None) -> None:
    org = hub_org(world)
    world.grant(person(world), org)
    api = hub_api(world, org)
    before = len(records(world))
    r = api.client.post(LOCATE, content=b"" if body is None else json.dumps(body),
                        headers={**api.headers, "Content-Type": "application/fhir+json"})
    answer = outcome(r, status)
    if where:
        assert answer["issue"][0]["expression"] == [where]
    assert NISS not in r.text and SECRET not in r.text
    refused = records(world)[before:]
    assert len(refused) == 1 and refused[0]["outcome"] == "invalid"
    assert refused[0].get("patient") is None


def test_query_parameters_are_refused(world: World) -> None:
    org = hub_org(world)
    r = hub_api(world, org).client.post(
        f"{LOCATE}?identifier={SSIN}|{NISS}", json=identifier(),
        headers={**hub_api(world, org).headers, "Content-Type": "application/fhir+json"})
    outcome(r, 400)
    assert NISS not in r.text
    assert hub_api(world, org).get(LOCATE).status_code == 405  # POST only


# ---------------------------------------------------------------- a real hub token

def test_a_registered_hub_locates_with_its_client_credentials(world: World) -> None:
    org = hub_org(world)
    key = ECKey.generate_key("P-256", parameters={"kid": "hub-1", "alg": "ES256"})
    jwks = json.dumps({"keys": [key.as_dict(private=False)]})
    r = world.admin.post(f"/fhir/{org}/$register-hub", {"resourceType": "Parameters",
                         "parameter": [{"name": "client-id", "valueString": "hub-abrumet"},
                                       {"name": "jwks", "valueString": jwks}]})
    assert r.status_code == 200, r.text
    now = int(time.time())
    assertion = jwt.encode({"alg": "ES256", "kid": "hub-1", "typ": "JWT"}, {
        "iss": "hub-abrumet", "sub": "hub-abrumet", "aud": world.issuer.token_endpoint,
        "iat": now, "exp": now + 240, "jti": secrets.token_hex(12)}, key)
    token = world.client.post("/auth/token", data={
        "grant_type": "client_credentials", "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})
    assert token.status_code == 200, token.text
    hub = Api(world.client, token.json()["access_token"])
    pid = person(world)
    assert hub.post(LOCATE, identifier()).json() == EMPTY
    world.grant(pid, org, categories=("identity",), actions=("access",))
    assert [m["patient"] for m in matches(hub.post(LOCATE, identifier()))] == [f"Patient/{pid}"]
