"""Exchange with Abrumet-style hubs over standard FHIR R4 (issue 9), on SQLite and
PostgreSQL: hub registration, SMART Backend Services tokens, reading on behalf of a
practitioner (RFC 8693 token exchange) and as an organisation, and Bulk Data $export —
all consent-bound and audited with the hub and the person behind it."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from dossier.app import create_app
from dossier.db.models import (
    audit_records,
    export_jobs,
    notification_outbox,
    resource_versions,
    resources,
    search_index,
)
from tests import factories as f
from tests.integration.conftest import Api, World, make_settings
from tests.livesrv import free_port, serve

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


# ---------------------------------------------------------------- helpers

def parameters(**values: Any) -> dict[str, Any]:
    out = []
    for name, value in values.items():
        key = name.replace("_", "-")
        if key == "jwks-uri":
            out.append({"name": key, "valueUrl": value})
        else:
            out.append({"name": key, "valueString": value})
    return {"resourceType": "Parameters", "parameter": out}


class Hub:
    """A regional hub: its own key pair, registered by the admin for its Organization."""

    def __init__(self, world: World, client_id: str, org_ref: str,
                 key: ECKey | None = None) -> None:
        self.world = world
        self.client_id = client_id
        self.org_ref = org_ref
        self.key = key or ECKey.generate_key("P-256", parameters={
            "kid": f"{client_id}-1", "alg": "ES256"})

    @property
    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}

    def register(self, **extra: str) -> Any:
        values = {"client_id": self.client_id, "jwks": json.dumps(self.public_jwks), **extra}
        if "jwks_uri" in extra:
            del values["jwks"]
        org_id = self.org_ref.split("/")[1]
        return self.world.admin.post(f"/fhir/Organization/{org_id}/$register-hub",
                                     parameters(**values))

    def signed(self, key: ECKey | None = None, **claims: Any) -> str:
        key = key or self.key
        now = int(time.time())
        values = {"iss": self.client_id, "sub": self.client_id,
                  "aud": self.world.issuer.token_endpoint, "iat": now, "exp": now + 240,
                  "jti": secrets.token_hex(12), **claims}
        return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "JWT"},
                          {k: v for k, v in values.items() if v is not None}, key)

    def credentials(self, assertion: str | None = None, scope: str = "system/*.rs") -> Any:
        return self.world.client.post("/auth/token", data={
            "grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion or self.signed()})

    def exchange(self, practitioner: str, subject_token: str | None = None) -> Any:
        return self.world.client.post("/auth/token", data={
            "grant_type": TOKEN_EXCHANGE, "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.signed(),
            "subject_token_type": JWT_TYPE,
            "subject_token": subject_token or self.signed(sub=practitioner)})

    def as_organisation(self) -> Api:
        r = self.credentials()
        assert r.status_code == 200, r.text
        return Api(self.world.client, r.json()["access_token"])

    def acting_for(self, practitioner: str) -> Api:
        r = self.exchange(practitioner)
        assert r.status_code == 200, r.text
        return Api(self.world.client, r.json()["access_token"])


@pytest.fixture
def hub_org(world: World) -> str:
    org = world.admin.create(f.organization("Abrumet", "health"))
    return f"Organization/{org['id']}"


@pytest.fixture
def hub(world: World, hub_org: str) -> Hub:
    made = Hub(world, "hub-abrumet", hub_org)
    r = made.register()
    assert r.status_code == 200, r.text
    return made


def oauth_error(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


def outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def records(world: World) -> list[dict[str, Any]]:
    engine = world.app.state.runtime.engine
    with Session(engine) as session:
        return [r for (r,) in session.execute(
            select(audit_records.c.record).order_by(audit_records.c.recorded_at))]


def outbox(world: World, patient_id: str) -> list[Any]:
    with Session(world.app.state.runtime.engine) as session:
        return list(session.execute(select(notification_outbox).where(
            notification_outbox.c.patient_id == patient_id)).all())


def ids(bundle: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["resource"]["resourceType"], e["resource"]["id"])
            for e in bundle.get("entry", [])}


def dossier_with_everything(world: World) -> tuple[str, dict[str, str]]:
    """A dossier the GP fills while consented to everything: a démarche, a psy démarche,
    a fragility assessment and a network map. Returns its id and the entries' ids."""
    pid = world.consented()
    ref = f"Patient/{pid}"
    made = {
        "task": world.gp.create(f.task(ref))["id"],
        "psy": world.gp.create(f.task(ref, code="mental-health-follow-up"))["id"],
        "fragility": world.gp.create(f.fragility(ref))["id"],
        "network": world.gp.create(f.care_team(ref, [(world.sw_ref, "social-worker",
                                                      True)]))["id"],
    }
    return pid, made


# ---------------------------------------------------------------- registration

def test_register_hub_then_token_as_the_organisation(world: World, hub_org: str) -> None:
    hub = Hub(world, "hub-abrumet", hub_org)
    r = hub.register(scope="system/*.rs")
    assert r.status_code == 200, r.text
    got = {p["name"]: p for p in r.json()["parameter"]}
    assert got["client-id"]["valueString"] == "hub-abrumet"
    assert got["organization"]["valueReference"]["reference"] == hub_org
    assert got["token-endpoint"]["valueUrl"] == world.issuer.token_endpoint
    token = hub.credentials()
    assert token.status_code == 200, token.text
    api = Api(world.client, token.json()["access_token"])
    assert api.get("/fhir/Organization").json()["total"] >= 2
    registration = [x for x in records(world) if any(
        e.get("type") == "Organization" and e.get("action") == "operation"
        for e in x["events"])]
    assert registration and registration[-1]["agent"]["role"] == "admin"


@pytest.mark.parametrize(("values", "status"), [
    ({"jwks": "{not json"}, 422),
    ({"jwks": json.dumps({"keys": []})}, 422),
    ({"scope": "user/*.rs"}, 422),
    ({"scope": "nonsense"}, 422),
    ({"client_id": "x"}, 422),
    ({"client_id": "dev-cli"}, 422),
    ({"jwks_uri": "http://hub.example/jwks"}, 422),
    ({"colour": "blue"}, 422),
])
def test_registration_refuses_bad_parameters(world: World, hub_org: str,
                                             values: dict[str, str], status: int) -> None:
    hub = Hub(world, "hub-bad", hub_org)
    outcome(hub.register(**values), status)
    assert world.issuer.client(values.get("client_id", "hub-bad")) is None


def test_private_keys_are_never_registered(world: World, hub_org: str) -> None:
    hub = Hub(world, "hub-leaky", hub_org)
    outcome(hub.register(jwks=json.dumps({"keys": [hub.key.as_dict(private=True)]})), 422)
    assert world.issuer.client("hub-leaky") is None


def test_only_the_admin_registers_and_the_refusal_is_audited(world: World,
                                                             hub_org: str) -> None:
    org_id = hub_org.split("/")[1]
    hub = Hub(world, "hub-x", hub_org)
    body = parameters(client_id="hub-x", jwks=json.dumps(hub.public_jwks))
    outcome(world.gp.post(f"/fhir/Organization/{org_id}/$register-hub", body), 403)
    refused = records(world)[-1]
    assert refused["outcome"] == "denied" and refused["agent"]["who"] == world.gp_ref
    outcome(world.admin.post("/fhir/Organization/nope/$register-hub", body), 404)
    assert world.issuer.client("hub-x") is None


def test_a_client_id_belongs_to_one_organisation(world: World, hub: Hub) -> None:
    other = world.admin.create(f.organization("Autre hub", "health"))
    squatter = Hub(world, hub.client_id, f"Organization/{other['id']}")
    outcome(squatter.register(), 409)
    again = Hub(world, hub.client_id, hub.org_ref)  # re-registering rotates inline keys
    assert again.register().status_code == 200
    oauth_error(hub.credentials(), 401, "invalid_client")
    assert again.credentials().status_code == 200


def test_external_issuer_answers_501(world: World, hub_org: str) -> None:
    runtime = world.app.state.runtime
    issuer = runtime.extras.pop("dev_issuer")
    try:
        body = outcome(Hub(world, "hub-ext", hub_org).register(), 501)
        assert "OpenID provider" in body["issue"][0]["diagnostics"]
    finally:
        runtime.extras["dev_issuer"] = issuer


@contextmanager
def jwks_server(jwks: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """A real HTTP server on loopback serving the hub's public keys (swappable)."""
    state = {"jwks": jwks}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(state["jwks"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_key_rotation_through_the_jwks_url(world: World, hub_org: str) -> None:
    first = ECKey.generate_key("P-256", parameters={"kid": "k-2026", "alg": "ES256"})
    second = ECKey.generate_key("P-256", parameters={"kid": "k-2027", "alg": "ES256"})
    hub = Hub(world, "hub-rotating", hub_org, first)
    with jwks_server({"keys": [first.as_dict(private=False)]}) as (url, state):
        assert hub.register(jwks_uri=url).status_code == 200
        assert hub.credentials().status_code == 200
        # the hub publishes both keys during the change-over, then only the new one
        state["jwks"] = {"keys": [first.as_dict(private=False), second.as_dict(private=False)]}
        assert hub.credentials(hub.signed(second)).status_code == 200
        state["jwks"] = {"keys": [second.as_dict(private=False)]}
        assert hub.credentials(hub.signed(second)).status_code == 200
        oauth_error(hub.credentials(hub.signed(first)), 401, "invalid_client")
    assert world.issuer.client("hub-rotating").jwks_uri == url  # never re-registered


# ---------------------------------------------------------------- reading through a hub

def test_on_behalf_of_uses_the_practitioners_grants(world: World, hub: Hub) -> None:
    member = world.add_practitioner("Claes", "persphysician", hub.org_ref)
    colleague = world.add_practitioner("Wouters", "persnurse", hub.org_ref)
    pid, made = dossier_with_everything(world)
    world.grant(pid, member, ("identity", "demarches"), ("access",))
    via_member = hub.acting_for(member)
    assert via_member.get(f"/fhir/Patient/{pid}").status_code == 200
    assert via_member.get(f"/fhir/Task/{made['task']}").status_code == 200
    # the practitioner's grant, never more: no psy, no fragility, no network
    for kind, rtype in (("psy", "Task"), ("fragility", "Observation"),
                        ("network", "CareTeam")):
        assert via_member.get(f"/fhir/{rtype}/{made[kind]}").status_code == 404
    assert via_member.total("/fhir/Task", patient=f"Patient/{pid}") == 1
    # a colleague of the same hub without a grant sees nothing, as if nothing existed
    via_colleague = hub.acting_for(colleague)
    assert via_colleague.get(f"/fhir/Patient/{pid}").status_code == 404
    assert via_colleague.total("/fhir/Task", patient=f"Patient/{pid}") == 0
    # and the hub as an organisation has no grant either
    assert hub.as_organisation().get(f"/fhir/Task/{made['task']}").status_code == 404


def test_audit_and_notification_name_the_hub_and_the_practitioner(world: World,
                                                                  hub: Hub) -> None:
    member = world.add_practitioner("Claes", "persphysician", hub.org_ref)
    pid, made = dossier_with_everything(world)
    world.grant(pid, member, ("demarches",), ("access",))
    before = len(outbox(world, pid))
    assert hub.acting_for(member).get(f"/fhir/Task/{made['task']}").status_code == 200
    record = [r for r in records(world) if r.get("patient") == f"Patient/{pid}"][-1]
    assert record["outcome"] == "success"
    assert record["agent"]["client"] == hub.client_id
    assert record["agent"]["on_behalf_of"] == member
    assert record["agent"]["role"] == "hub"
    rows = outbox(world, pid)
    assert len(rows) > before and rows[-1].agent == member
    # the FHIR AuditEvent the citizen reads names both
    events = world.citizen(pid).get("/fhir/AuditEvent", params={
        "patient": f"Patient/{pid}"}).json()["entry"]
    mine = [e["resource"] for e in events
            if e["resource"]["id"] == record["id"]]
    assert mine, "the hub's read is in the person's access log"
    agents = json.dumps(mine[0]["agent"])
    assert member in agents and hub.client_id in agents


def test_hub_cannot_assert_a_practitioner_outside_its_organisation(world: World,
                                                                   hub: Hub) -> None:
    # Dr Dupont works at the world's organisation, not at the hub's
    oauth_error(hub.exchange(world.gp_ref), 400, "invalid_request")
    oauth_error(hub.exchange("Practitioner/unknown"), 400, "invalid_request")
    oauth_error(hub.exchange(hub.org_ref), 400, "invalid_request")


def token_records(world: World) -> list[dict[str, Any]]:
    return [r for r in records(world) if r["events"][0]["action"] == "token"]


def test_bad_token_requests(world: World, hub: Hub) -> None:
    """Each refusal is the right OAuth error and an audit record naming the grant, the
    error and the client it claimed (never as the authenticated agent)."""
    stranger = Hub(world, "hub-unknown", hub.org_ref)
    oauth_error(stranger.credentials(), 401, "invalid_client")
    impostor = ECKey.generate_key("P-256", parameters={"kid": hub.key.kid, "alg": "ES256"})
    oauth_error(hub.credentials(hub.signed(impostor)), 401, "invalid_client")
    once = hub.signed()
    assert hub.credentials(once).status_code == 200
    oauth_error(hub.credentials(once), 401, "invalid_client")  # replayed jti
    oauth_error(hub.credentials(hub.signed(exp=int(time.time()) - 600)), 401,
                "invalid_client")
    member = world.add_practitioner("Claes", "persphysician", hub.org_ref)
    expired = hub.signed(sub=member, exp=int(time.time()) - 600)
    oauth_error(hub.exchange(member, expired), 400, "invalid_request")
    oauth_error(hub.exchange(world.gp_ref), 400, "invalid_request")  # not the hub's to relay
    oauth_error(hub.credentials(scope="system/*.cruds"), 400, "invalid_scope")
    logged = token_records(world)
    refused = [r for r in logged if r["outcome"] != "success"]
    assert [r["events"][0]["detail"] for r in refused] == [
        "token client_credentials refused: invalid_client (claimed client hub-unknown)",
        *["token client_credentials refused: invalid_client (claimed client hub-abrumet)"] * 3,
        *["token urn:ietf:params:oauth:grant-type:token-exchange refused: invalid_request "
          "(claimed client hub-abrumet)"] * 2,
        "token client_credentials refused: invalid_scope (claimed client hub-abrumet)",
    ]
    assert all(r["agent"] == {"role": "unauthenticated"} and r["patient"] is None
               and r["outcome"] in ("denied", "invalid") for r in refused)
    issued = [r for r in logged if r["outcome"] == "success"]
    assert len(issued) == 1 and issued[0]["agent"]["client"] == "hub-abrumet"
    assert issued[0]["agent"]["who"] == hub.org_ref


def test_tokens_for_a_practitioner_are_logged_and_fail_closed(world: World, hub: Hub) -> None:
    member = world.add_practitioner("Claes", "persphysician", hub.org_ref)
    hub.acting_for(member)
    (issued,) = [r for r in token_records(world) if r["outcome"] == "success"]
    assert issued["agent"]["who"] == member and issued["agent"]["on_behalf_of"] == member
    assert issued["agent"]["client"] == "hub-abrumet"
    # the access log cannot be written: no token is issued
    store = world.app.state.runtime.audit_store
    original = store.append

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    store.append = broken
    try:
        r = hub.exchange(member)
        oauth_error(r, 503, "temporarily_unavailable")
        assert "access_token" not in r.text
        oauth_error(Hub(world, "hub-unknown", hub.org_ref).credentials(), 503,
                    "temporarily_unavailable")
    finally:
        store.append = original


def test_hub_as_organisation_reads_exactly_the_grant(world: World, hub: Hub) -> None:
    pid, made = dossier_with_everything(world)
    world.grant(pid, hub.org_ref, ("demarches", "fragility"), ("access",))
    api = hub.as_organisation()
    assert api.get(f"/fhir/Task/{made['task']}").status_code == 200
    assert api.get(f"/fhir/Observation/{made['fragility']}").status_code == 200
    for kind, rtype in (("psy", "Task"), ("network", "CareTeam")):
        assert api.get(f"/fhir/{rtype}/{made[kind]}").status_code == 404
    assert api.get(f"/fhir/Patient/{pid}").status_code == 404  # identity not granted
    everything = api.get(f"/fhir/Patient/{pid}/$everything")
    assert everything.status_code == 200, everything.text
    seen = ids(everything.json())
    assert ("Task", made["task"]) in seen and ("Observation", made["fragility"]) in seen
    assert not {("Task", made["psy"]), ("CareTeam", made["network"]),
                ("Patient", pid)} & seen
    record = [r for r in records(world) if r.get("patient") == f"Patient/{pid}"][-1]
    assert record["agent"]["who"] == hub.org_ref
    assert record["agent"]["client"] == hub.client_id
    assert outbox(world, pid)[-1].agent == hub.org_ref
    # revocation is immediate for the hub too
    consent = next(c for c in world.citizen(pid).get(
        "/fhir/Consent", params={"patient": f"Patient/{pid}"}).json()["entry"]
        if hub.org_ref in json.dumps(c["resource"]))["resource"]
    assert world.citizen(pid).delete(f"/fhir/Consent/{consent['id']}").status_code == 204
    assert api.get(f"/fhir/Task/{made['task']}").status_code == 404


# ---------------------------------------------------------------- bulk export

def kick_off(api: Api, path: str = "/fhir/$export", **params: str) -> str:
    r = api.get(path, params=params, headers=ASYNC)
    assert r.status_code == 202, r.text
    return str(r.headers["content-location"])


def wait(api: Api, status_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        r = api.get(status_url)
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("application/json")
            return r.json()  # type: ignore[no-any-return]
        assert r.status_code == 202, r.text
        assert r.headers["x-progress"]
        time.sleep(0.05)
    raise AssertionError("the export did not finish")


def read_ndjson(api: Api, url: str) -> list[dict[str, Any]]:
    """An independent reader: one json.loads per line, nothing of ours."""
    r = api.get(url, headers={"Accept": "application/fhir+ndjson"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+ndjson")
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def exported(api: Api, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in manifest["output"]:
        rows = read_ndjson(api, item["url"])
        assert len(rows) == item["count"]
        assert {r["resourceType"] for r in rows} == {item["type"]}
        out += rows
    return out


def keyed(resources: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["resourceType"], r["id"]) for r in resources}


def clone_task(world: World, task_id: str, count: int) -> None:
    """Seeding only: `count` copies of a Task the GP wrote (and of its Provenance), made in
    bulk in the store so that the test stays fast on PostgreSQL. Every copy is then read
    through the real path (consent, decryption, audit) like any other entry."""
    tables = (resources, resource_versions, search_index)  # parents first (foreign keys)
    with Session(world.app.state.runtime.engine) as session, session.begin():
        prov_id = session.execute(select(search_index.c.res_id).where(
            search_index.c.res_type == "Provenance", search_index.c.param == "target",
            search_index.c.value == f"Task/{task_id}")).scalar_one()
        template = {table: [dict(r._mapping) for r in session.execute(select(table).where(
            or_(and_(table.c.res_type == "Task", table.c.res_id == task_id),
                and_(table.c.res_type == "Provenance", table.c.res_id == prov_id))))]
            for table in tables}
        copies: dict[Any, list[dict[str, Any]]] = {table: [] for table in tables}
        for _ in range(count):
            new = {task_id: str(uuid.uuid4()), prov_id: str(uuid.uuid4())}
            for table, rows in template.items():
                for row in rows:
                    copy = {k: v for k, v in row.items() if k != "row_id"}
                    copy["res_id"] = new[row["res_id"]]
                    if "content" in copy:
                        text = json.dumps(copy["content"])
                        for old, fresh in new.items():
                            text = text.replace(old, fresh)
                        copy["content"] = json.loads(text)
                    if copy.get("value") == f"Task/{task_id}":
                        copy["value"] = f"Task/{new[task_id]}"
                    copies[table].append(copy)
        for table in tables:
            for start in range(0, len(copies[table]), 2000):
                session.execute(insert(table), copies[table][start:start + 2000])


@pytest.mark.slow
@pytest.mark.timeout(900)  # the seeding alone takes minutes on a busy PostgreSQL
def test_bulk_export_of_ten_thousand_consented_resources(world: World, hub: Hub) -> None:
    """5,000 démarches and their 5,000 Provenance records (consent-labelled like their
    targets) in four consented dossiers: over 10,000 consented resources."""
    member = world.add_practitioner("Claes", "persphysician", hub.org_ref)
    granted = []
    for n in range(4):
        pid = world.consented(f.patient(ssin=f.niss(serial=200 + n)))
        clone_task(world, world.gp.create(f.task(f"Patient/{pid}"))["id"], 1249)
        world.gp.create(f.task(f"Patient/{pid}", code="mental-health-follow-up"))
        world.gp.create(f.fragility(f"Patient/{pid}"))
        world.grant(pid, member, ("identity", "demarches") if n % 2 else ("demarches",),
                    ("access",))
        granted.append(pid)
    hidden = world.consented(f.patient(ssin=f.niss(serial=299)))
    world.gp.create(f.task(f"Patient/{hidden}"))
    api = hub.acting_for(member)
    manifest = wait(api, kick_off(api, "/fhir/Patient/$export"))
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith("/fhir/Patient/$export")
    rows = exported(api, manifest)
    tasks = [r for r in rows if r["resourceType"] == "Task"]
    assert len(tasks) == len({r["id"] for r in tasks}) == 5_000
    provenance = [r for r in rows if r["resourceType"] == "Provenance"]
    assert len(tasks) + len(provenance) >= 10_000
    assert all(r["code"]["coding"][0]["code"] == "housing-application" for r in tasks)
    # exactly what $everything shows the same actor, person by person
    expected: set[tuple[str, str]] = set()
    for pid in granted:
        everything = api.get(f"/fhir/Patient/{pid}/$everything")
        assert everything.status_code == 200
        expected |= ids(everything.json())
    assert api.get(f"/fhir/Patient/{hidden}/$everything").status_code == 404
    assert keyed(rows) == expected
    assert {("Patient", p) for p in granted[1::2]} <= keyed(rows)  # identity where granted
    assert not {("Patient", p) for p in granted[0::2]} & keyed(rows)
    # every consulted person is told, and the audit names the hub and the practitioner
    for pid in granted:
        rows_out = [o for o in outbox(world, pid) if o.agent == member]
        assert rows_out, "the person is notified of the hub's export"
    last = [r for r in records(world) if r.get("patient") == f"Patient/{granted[0]}"][-1]
    assert last["agent"]["client"] == hub.client_id
    assert last["agent"]["on_behalf_of"] == member


@pytest.fixture
def exporter(world: World, hub: Hub) -> tuple[Api, str, str, dict[str, str]]:
    """A hub acting for its practitioner, granted démarches and fragility of one dossier."""
    member = world.add_practitioner("Claes", "persphysician", hub.org_ref)
    pid, made = dossier_with_everything(world)
    world.grant(pid, member, ("demarches", "fragility"), ("access",))
    return hub.acting_for(member), member, pid, made


def test_export_is_consent_filtered_and_sealed_at_rest(world: World, settings: Any,
                                                       exporter: Any) -> None:
    api, _, pid, made = exporter
    manifest = wait(api, kick_off(api))  # system level
    rows = exported(api, manifest)
    keys = keyed(rows)
    assert ("Task", made["task"]) in keys and ("Observation", made["fragility"]) in keys
    assert not {("Task", made["psy"]), ("CareTeam", made["network"]), ("Patient", pid)} & keys
    assert ("Organization", world.org["id"]) in keys  # the directory, at system level
    job_id = manifest["output"][0]["url"].split("/")[-2]
    folder = settings.data_dir / "exports" / job_id
    assert folder.stat().st_mode & 0o777 == 0o700
    files = list(folder.iterdir())
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    for path in files:
        raw = path.read_bytes()
        assert made["task"].encode() not in raw and b"resourceType" not in raw


def test_export_type_and_since(world: World, exporter: Any) -> None:
    api, _, pid, made = exporter
    only = exported(api, wait(api, kick_off(api, "/fhir/Patient/$export", _type="Observation")))
    assert {r["resourceType"] for r in only} == {"Observation"}
    assert ("Observation", made["fragility"]) in keyed(only)
    first = wait(api, kick_off(api, "/fhir/Patient/$export", _type="Task"))
    later = world.gp.create(f.task(f"Patient/{pid}", code="debt-mediation"))
    since = exported(api, wait(api, kick_off(
        api, "/fhir/Patient/$export", _type="Task", _since=first["transactionTime"])))
    assert keyed(since) == {("Task", later["id"])}


@pytest.mark.parametrize("params", [
    {"_type": "Consent"}, {"_type": "AuditEvent"}, {"_type": "Task,Bogus"},
    {"_type": "Organization"},  # the directory only at system level
    {"_typeFilter": "Task?status=completed"}, {"_elements": "id"},
    {"_outputFormat": "text/csv"}, {"_since": "yesterday"},
])
def test_unsupported_export_requests_are_400_and_audited(world: World, exporter: Any,
                                                         params: dict[str, str]) -> None:
    api = exporter[0]
    body = outcome(api.get("/fhir/Patient/$export", params=params, headers=ASYNC), 400)
    assert body["issue"][0]["severity"] == "error"
    last = records(world)[-1]
    assert last["outcome"] == "invalid"
    assert last["events"][0]["action"] == "operation"


def test_export_is_for_hubs_and_practitioners(world: World, exporter: Any) -> None:
    pid = exporter[2]
    outcome(world.citizen(pid).get("/fhir/$export", headers=ASYNC), 403)
    outcome(world.auditor.get("/fhir/$export", headers=ASYNC), 403)
    wait(world.gp, kick_off(world.gp))


def test_only_the_requester_polls_and_downloads(world: World, hub: Hub,
                                                exporter: Any) -> None:
    api, member, _, _ = exporter
    status_url = kick_off(api)
    manifest = wait(api, status_url)
    file_url = manifest["output"][0]["url"]
    colleague = hub.acting_for(world.add_practitioner("Wouters", "persnurse", hub.org_ref))
    for other in (colleague, hub.as_organisation(), world.gp):
        outcome(other.get(status_url), 404)
        outcome(other.get(file_url), 404)
        outcome(other.delete(status_url), 404)
    again = hub.acting_for(member)  # a new token for the same hub and practitioner
    assert again.get(file_url).status_code == 200
    outcome(world.anonymous.get(status_url), 401)


def test_delete_cancels_and_removes_the_files(world: World, settings: Any,
                                              exporter: Any) -> None:
    api = exporter[0]
    status_url = kick_off(api)
    manifest = wait(api, status_url)
    job_id = status_url.rsplit("/", 1)[1]
    assert api.delete(status_url).status_code == 202
    outcome(api.get(status_url), 404)
    outcome(api.get(manifest["output"][0]["url"]), 404)
    assert not (settings.data_dir / "exports" / job_id).exists()


def test_a_running_export_is_cancelled_too(world: World, settings: Any,
                                           exporter: Any) -> None:
    api = exporter[0]
    status_url = kick_off(api)
    assert api.delete(status_url).status_code == 202
    outcome(api.get(status_url), 404)
    job_id = status_url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 30
    while (settings.data_dir / "exports" / job_id).exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker notices and removes what it wrote
    assert not (settings.data_dir / "exports" / job_id).exists()


def test_revocation_stops_a_prepared_export(world: World, exporter: Any) -> None:
    api, member, pid, made = exporter
    manifest = wait(api, kick_off(api, "/fhir/Patient/$export", _type="Task"))
    url = manifest["output"][0]["url"]
    assert ("Task", made["task"]) in keyed(read_ndjson(api, url))
    before = len(outbox(world, pid))
    citizen = world.citizen(pid)
    for entry in citizen.get("/fhir/Consent", params={
            "patient": f"Patient/{pid}"}).json()["entry"]:
        if member in json.dumps(entry["resource"]):
            assert citizen.delete(f"/fhir/Consent/{entry['resource']['id']}").status_code == 204
    assert read_ndjson(api, url) == []
    assert len(outbox(world, pid)) == before  # nothing disclosed, nobody notified
    outcome(api.get(f"/fhir/Task/{made['task']}"), 404)


def test_a_download_is_a_consultation(world: World, hub: Hub, exporter: Any) -> None:
    api, member, pid, _ = exporter
    manifest = wait(api, kick_off(api, "/fhir/Patient/$export", _type="Task"))
    before = len(outbox(world, pid))
    read_ndjson(api, manifest["output"][0]["url"])
    assert len(outbox(world, pid)) > before
    record = [r for r in records(world) if r.get("patient") == f"Patient/{pid}"][-1]
    assert record["events"][0]["detail"] == "export-download"
    assert record["agent"]["client"] == hub.client_id
    assert record["agent"]["on_behalf_of"] == member


def test_expired_exports_are_deleted(world: World, settings: Any, exporter: Any) -> None:
    api = exporter[0]
    status_url = kick_off(api)
    manifest = wait(api, status_url)
    job_id = status_url.rsplit("/", 1)[1]
    with Session(world.app.state.runtime.engine) as session, session.begin():
        session.execute(update(export_jobs).where(export_jobs.c.id == job_id).values(
            expires_at=export_jobs.c.created_at))
    outcome(api.get(manifest["output"][0]["url"]), 404)
    outcome(api.get(status_url), 404)  # expired: gone at once for its owner
    from dossier.exports.bulk import purge_expired

    purge_expired(world.app.state.runtime)  # the maintenance worker's pass
    assert not (settings.data_dir / "exports" / job_id).exists()


def test_group_export_is_refused_with_a_reason(world: World, exporter: Any) -> None:
    """The dossier's Groups are profession Groups: they list no patients."""
    api = exporter[0]
    body = outcome(api.get("/fhir/Group/profession-persphysician/$export", headers=ASYNC),
                   422)
    assert "Group of Patients" in body["issue"][0]["diagnostics"]
    assert records(world)[-1]["outcome"] == "invalid"
    outcome(api.get("/fhir/Group/nope/$export", headers=ASYNC), 404)


def test_one_running_export_at_a_time(world: World, exporter: Any) -> None:
    api = exporter[0]
    status_url = kick_off(api)
    wait(api, status_url)
    job = export_jobs.c
    with Session(world.app.state.runtime.engine) as session, session.begin():
        session.execute(update(export_jobs).where(
            job.id == status_url.rsplit("/", 1)[1]).values(status="in-progress"))
    busy = api.get("/fhir/$export", headers=ASYNC)
    outcome(busy, 429)
    assert busy.headers["retry-after"]
    wait(world.gp, kick_off(world.gp))  # others may export meanwhile
    assert api.delete(status_url).status_code == 202
    wait(api, kick_off(api))


def test_stopping_the_service_lets_an_export_under_way_end(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shutdown waits for a running export job (Runtime.settle) before the engines are
    disposed: its pooled connection is not dropped unclosed under it."""
    from dossier.exports import bulk

    app = create_app(settings)
    started, ended = threading.Event(), threading.Event()
    real = bulk.run_job

    def slow_job(rt: Any, job_id: str) -> None:
        started.set()
        time.sleep(1)
        real(rt, job_id)
        ended.set()

    monkeypatch.setattr(bulk, "run_job", slow_job)
    try:
        with TestClient(app) as client:
            world = World(app, client)
            world.consented()
            kick_off(world.gp)
            assert started.wait(30)
        assert ended.is_set()
        assert not any(t.name == "export" and t.is_alive() for t in threading.enumerate())
    finally:
        app.state.runtime.engine.dispose()


# ---------------------------------------------------------------- two running instances

class InstanceAsHub:
    """Instance A acting as a hub towards instance B, over real HTTP: it signs its client
    assertions and subject tokens with its own dev issuer key, whose public JWKS B fetches
    from A's running server (so A rotates its key without telling B)."""

    def __init__(self, issuer: Any, client_id: str, b_base: str, b_token_aud: str) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.http = httpx.Client(base_url=b_base, timeout=30)
        self.token_aud = b_token_aud

    def _jwt(self, sub: str) -> str:
        now = int(time.time())
        return str(self.issuer.sign({"iss": self.client_id, "sub": sub, "aud": self.token_aud,
                                     "iat": now, "exp": now + 120,
                                     "jti": secrets.token_hex(12)}, typ="JWT"))

    def token_for(self, practitioner_in_b: str, scope: str = "system/*.rs") -> Any:
        return self.http.post("/auth/token", data={
            "grant_type": TOKEN_EXCHANGE, "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self._jwt(self.client_id),
            "subject_token_type": JWT_TYPE, "subject_token": self._jwt(practitioner_in_b)})

    def get(self, token: str, url: str, **params: str) -> Any:
        return self.http.get(url, params=params, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/fhir+json",
            "Prefer": "respond-async"})

    def export(self, token: str) -> list[dict[str, Any]]:
        r = self.get(token, "/fhir/Patient/$export")
        assert r.status_code == 202, r.text
        status_url = r.headers["content-location"]
        deadline = time.monotonic() + 120
        while (r := self.get(token, status_url)).status_code == 202:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 200, r.text
        rows = []
        for item in r.json()["output"]:
            body = self.get(token, item["url"]).text
            rows += [json.loads(line) for line in body.splitlines() if line.strip()]
        return rows


def test_two_instances_a_reads_exports_and_subscribes_at_b_until_revoked(
        tmp_path: Path, database_url: str | None) -> None:
    from dossier.subscriptions.service import run_deliveries
    from tests.integration.test_notifications import Hook
    from tests.integration.test_subscriptions import SCOPE, focuses, subscription

    port_a, port_b = free_port(), free_port()
    app_a = create_app(make_settings(tmp_path / "a", None,
                                     base_url=f"http://127.0.0.1:{port_a}"))
    app_b = create_app(make_settings(tmp_path / "b", database_url,
                                     base_url=f"http://127.0.0.1:{port_b}",
                                     notify_allow_local_webhooks=True))
    receiver = Hook()  # A's notification endpoint
    receiver.up()
    try:
        with serve(app_a, port_a) as base_a, serve(app_b, port_b) as base_b, \
                TestClient(app_b) as client_b:
            b = World(app_b, client_b)
            # at B: A's organisation, the practitioner working there, A's public keys by URL
            org_a = f"Organization/{b.admin.create(f.organization('Instance A', 'health'))['id']}"
            claes = b.add_practitioner("Claes", "persphysician", org_a)
            registered = Hub(b, "instance-a", org_a).register(jwks_uri=f"{base_a}/auth/jwks",
                                                              scope=SCOPE)
            assert registered.status_code == 200, registered.text
            token_aud = next(p["valueUrl"] for p in registered.json()["parameter"]
                             if p["name"] == "token-endpoint")
            pid, made = dossier_with_everything(b)
            grant = b.grant(pid, claes, ("demarches", "fragility"), ("access",))
            a = InstanceAsHub(app_a.state.dev_issuer, "instance-a", base_b, token_aud)
            got = a.token_for(claes, SCOPE)
            if got.status_code == 401 and "no registered key" in got.text:
                # B fetched A's keys from A's server, a thread of this same process: on a
                # loaded machine that 5 s fetch can time out (invalid_client, as across
                # a network). Once more, as a hub would.
                got = a.token_for(claes, SCOPE)
            assert got.status_code == 200, got.text
            token = got.json()["access_token"]
            subscribed = a.http.post("/fhir/Subscription", json=subscription(receiver.url),
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/fhir+json"})
            assert subscribed.status_code == 201, subscribed.text
            entry = b.gp.create(f.task(f"Patient/{pid}", code="debt-mediation"))
            assert run_deliveries(app_b.state.runtime) == 1
            (focus,) = focuses(receiver)
            assert f"/Task/{entry['id']}/" in focus
            assert a.get(token, focus.removeprefix(base_b)).status_code == 200
            everything = a.get(token, f"/fhir/Patient/{pid}/$everything")
            assert everything.status_code == 200, everything.text
            seen = ids(everything.json())
            assert ("Task", made["task"]) in seen and ("Task", made["psy"]) not in seen
            assert keyed(a.export(token)) == seen
            # A rotates its signing key; B picks the new kid up from A's JWKS URL
            app_a.state.dev_issuer.rotate_key()
            assert a.token_for(claes).status_code == 200
            # a practitioner of B's own organisation is not A's to relay
            assert a.token_for(b.gp_ref).json()["error"] == "invalid_request"
            # the person revokes at B: reads and exports through A stop at once
            assert b.citizen(pid).delete(f"/fhir/Consent/{grant['id']}").status_code == 204
            assert a.get(token, f"/fhir/Task/{made['task']}").status_code == 404
            assert a.get(token, f"/fhir/Patient/{pid}/$everything").status_code == 404
            assert a.export(token) == []
            b.gp.create(f.task(f"Patient/{pid}"))
            assert run_deliveries(app_b.state.runtime) == 0
            assert len(receiver.received) == 2  # the handshake and the one event
            # B's audit names A's client and the practitioner for every access by A
            by_a = [r for r in records(b) if r["agent"].get("client") == "instance-a"]
            assert by_a and all(r["agent"]["who"] == claes and
                                r["agent"]["on_behalf_of"] == claes for r in by_a)
            notified = {r.record_id for r in outbox(b, pid)}
            assert {r["id"] for r in by_a if r.get("patient") == f"Patient/{pid}"
                    and r["outcome"] == "success"} <= notified
            a.http.close()
    finally:
        receiver.down()
        for app in (app_a, app_b):
            app.state.runtime.engine.dispose()
