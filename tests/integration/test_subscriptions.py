"""Topic-based Subscriptions (R5 Backport IG on R4, issue 9 item 4), on SQLite and
PostgreSQL, delivered by rest-hook to a real HTTP listener on loopback: a subscriber is
told only of entries it may see at the moment of the event, revocation stops the
notifications at once, every delivery is audited and notified to the person."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dossier.app import create_app
from dossier.db.models import subscription_events
from dossier.db.models import subscriptions as subscriptions_table
from dossier.subscriptions import service as subs
from tests import factories as f
from tests.integration.conftest import Api, World, make_settings
from tests.integration.test_hubs import (
    ASSERTION_TYPE,
    JWT_TYPE,
    TOKEN_EXCHANGE,
    Hub,
    outbox,
    outcome,
    records,
)
from tests.integration.test_notifications import Hook
from tests.livesrv import free_port

SCOPE = "system/*.rs system/Subscription.crds"


@pytest.fixture
def settings(data_dir: Path, database_url: str | None) -> Any:
    return make_settings(data_dir, database_url, notify_allow_local_webhooks=True,
                         notify_backoff_base_seconds=1.0, notify_max_attempts=3)


@pytest.fixture
def hook() -> Iterator[Hook]:
    made = Hook()
    made.up()
    yield made
    made.down()


@pytest.fixture
def hub(world: World) -> Hub:
    org = world.admin.create(f.organization("Abrumet", "health"))
    made = Hub(world, "hub-abrumet", f"Organization/{org['id']}")
    r = made.register(scope=SCOPE)
    assert r.status_code == 200, r.text
    return made


def acting_for(hub: Hub, practitioner: str, scope: str = SCOPE) -> Api:
    r = hub.world.client.post("/auth/token", data={
        "grant_type": TOKEN_EXCHANGE, "scope": scope,
        "client_assertion_type": ASSERTION_TYPE, "client_assertion": hub.signed(),
        "subject_token_type": JWT_TYPE, "subject_token": hub.signed(sub=practitioner)})
    assert r.status_code == 200, r.text
    return Api(hub.world.client, r.json()["access_token"])


@pytest.fixture
def claes(world: World, hub: Hub) -> str:
    """A physician working at the hub's organisation."""
    return world.add_practitioner("Claes", "persphysician", hub.org_ref)


def subscription(endpoint: str, *filters: str, content: str = "id-only",
                 **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Subscription", "status": "requested", "reason": "continuity of care",
        "criteria": subs.TOPIC,
        "channel": {"type": "rest-hook", "endpoint": endpoint,
                    "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": subs.CONTENT_URL,
                                                "valueCode": content}]},
                    "header": ["Authorization: Bearer hub-secret"]}, **extra}
    if filters:
        body["_criteria"] = {"extension": [{"url": subs.FILTER_URL, "valueString": v}
                                           for v in filters]}
    return body


def subscribe(api: Api, endpoint: str, *filters: str, **kw: Any) -> dict[str, Any]:
    r = api.post("/fhir/Subscription", subscription(endpoint, *filters, **kw))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def deliver(world: World, later: timedelta = timedelta()) -> int:
    return subs.run_deliveries(world.app.state.runtime, datetime.now(UTC) + later)


def bundles(hook: Hook) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in hook.received]


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    params = bundle["entry"][0]["resource"]["parameter"]
    return {p["name"]: p for p in params}


def focuses(hook: Hook) -> list[str]:
    out = []
    for bundle in bundles(hook):
        for p in bundle["entry"][0]["resource"]["parameter"]:
            if p["name"] == "notification-event":
                out += [q["valueReference"]["reference"] for q in p["part"]
                        if q["name"] == "focus"]
    return out


def queued(world: World) -> int:
    with Session(world.app.state.runtime.engine) as session:
        return int(session.execute(select(func.count()).select_from(
            subscription_events)).scalar_one())


# ---------------------------------------------------------------- the happy path

def test_handshake_then_id_only_notification_then_read(world: World, hub: Hub, claes: str,
                                                       hook: Hook) -> None:
    pid = world.consented()
    world.grant(pid, claes, ("demarches",), ("access",))
    api = acting_for(hub, claes)
    made = subscribe(api, hook.url)
    assert made["status"] == "active" and "header" not in made["channel"]
    assert api.get(f"/fhir/Subscription/{made['id']}").json()["reason"] == \
        "continuity of care"
    with Session(world.app.state.runtime.engine) as session:  # neither in clear at rest
        row = session.execute(select(subscriptions_table)).one()
    assert "continuity" not in json.dumps(row.resource) and b"continuity" not in row.sealed
    assert b"hub-secret" not in row.sealed
    handshake = bundles(hook)[0]
    assert handshake["type"] == "history"
    assert status_of(handshake)["type"]["valueCode"] == "handshake"
    assert hook.received[0][0]["Authorization"] == "Bearer hub-secret"

    task = world.gp.create(f.task(f"Patient/{pid}"))
    assert deliver(world) == 1
    event = bundles(hook)[1]
    status = status_of(event)
    assert status["type"]["valueCode"] == "event-notification"
    assert status["events-since-subscription-start"]["valueString"] == "1"
    focus = f"http://testserver/fhir/Task/{task['id']}/_history/1"
    assert focuses(hook) == [focus]
    # bdl-8: fullUrl names the resource, never a version; the version is in focus only
    assert [e["fullUrl"] for e in event["entry"][1:]] == [focus.split("/_history")[0]]
    # id-only: nothing of the person travels in the notification
    text = json.dumps(event)
    assert "Martin" not in text and pid not in text and "housing" not in text
    assert hook.received[1][0]["Content-Type"] == "application/fhir+json"
    # the hub reads the entry with its own token: consent-checked like any read
    assert api.get(focus.removeprefix("http://testserver")).status_code == 200
    assert deliver(world) == 0  # delivered once
    r = api.get(f"/fhir/Subscription/{made['id']}/$status")
    assert r.status_code == 200, r.text
    state = status_of(r.json())
    assert state["events-since-subscription-start"]["valueString"] == "1"
    assert state["type"]["valueCode"] == "query-status"


def test_only_what_the_subscriber_may_see_at_the_event(world: World, hub: Hub, claes: str,
                                                       hook: Hook) -> None:
    granted = world.consented()
    world.grant(granted, claes, ("demarches",), ("access",))
    other = world.consented()  # consented to the GP only
    subscribe(acting_for(hub, claes), hook.url)
    world.gp.create(f.fragility(f"Patient/{granted}"))  # fragility: not granted to Claes
    world.gp.create(f.task(f"Patient/{granted}", code="mental-health-follow-up"))  # psy
    world.gp.create(f.task(f"Patient/{other}"))  # nobody asked Claes
    assert queued(world) == 0
    wanted = world.gp.create(f.task(f"Patient/{granted}"))
    assert deliver(world) == 1
    assert [x.split("/")[-3] for x in focuses(hook)] == [wanted["id"]]


def test_filters_narrow_to_a_type_and_a_person(world: World, hub: Hub, hook: Hook) -> None:
    first, second = world.consented(), world.consented()
    for pid in (first, second):
        world.grant(pid, hub.org_ref, ("demarches", "fragility"), ("access",))
    api = Api(world.client, hub.credentials(scope=SCOPE).json()["access_token"])
    subscribe(api, hook.url, f"Task?patient=Patient/{second}", "Observation")
    world.gp.create(f.task(f"Patient/{first}"))  # another person's démarche
    obs = world.gp.create(f.fragility(f"Patient/{first}"))  # any person's Observation
    task = world.gp.create(f.task(f"Patient/{second}"))
    assert deliver(world) == 2
    assert sorted(x.split("/")[-3] for x in focuses(hook)) == sorted([obs["id"], task["id"]])


# ---------------------------------------------------------------- consent over time

def test_revocation_stops_notifications_at_once(world: World, hub: Hub, claes: str,
                                                hook: Hook) -> None:
    pid = world.consented()
    grant = world.grant(pid, claes, ("demarches",), ("access",))
    subscribe(acting_for(hub, claes), hook.url)
    world.gp.create(f.task(f"Patient/{pid}"))
    assert queued(world) == 1  # the event was allowed when it happened ...
    assert world.citizen(pid).delete(f"/fhir/Consent/{grant['id']}").status_code == 204
    assert deliver(world) == 0  # ... but is not delivered after the revocation
    assert queued(world) == 0 and len(hook.received) == 1  # the handshake only
    world.gp.create(f.task(f"Patient/{pid}"))
    assert queued(world) == 0  # and nothing new is queued


def test_break_the_glass_never_feeds_a_subscription(world: World, hook: Hook) -> None:
    pid = world.consented(actor=world.sw_ref)  # the GP has no grant
    gp = world.as_("practitioner", world.gp_ref, "user/*.rs user/Subscription.crds")
    subscribe(gp, hook.url)
    r = world.gp.post(f"/fhir/Patient/{pid}/$break-glass", {
        "resourceType": "Parameters",
        "parameter": [{"name": "reason", "valueString": "unconscious at the ER"}]})
    assert r.status_code == 200, r.text
    world.sw.create(f.task(f"Patient/{pid}"))
    assert queued(world) == 0


def test_each_delivery_is_audited_and_notified(world: World, hub: Hub, claes: str,
                                               hook: Hook) -> None:
    pid = world.consented()
    world.grant(pid, claes, ("demarches",), ("access",))
    subscribe(acting_for(hub, claes), hook.url)
    world.gp.create(f.task(f"Patient/{pid}"))
    before = len(outbox(world, pid))
    assert deliver(world) == 1
    pushed = [r for r in records(world) if r.get("patient") == f"Patient/{pid}" and any(
        e.get("detail") == "subscription-notification" for e in r["events"])]
    assert len(pushed) == 1
    agent = pushed[0]["agent"]
    assert agent["who"] == claes and agent["client"] == "hub-abrumet"
    assert agent["on_behalf_of"] == claes
    assert len(outbox(world, pid)) == before + 1
    events = world.citizen(pid).get("/fhir/AuditEvent", params={"patient": f"Patient/{pid}"})
    assert "subscription-notification" in events.text


# ---------------------------------------------------------------- delivery failures

def test_failed_deliveries_are_retried_in_order(world: World, hub: Hub, claes: str,
                                                hook: Hook) -> None:
    pid = world.consented()
    world.grant(pid, claes, ("demarches",), ("access",))
    subscribe(acting_for(hub, claes), hook.url)
    first = world.gp.create(f.task(f"Patient/{pid}"))
    second = world.gp.create(f.task(f"Patient/{pid}", code="debt-mediation"))
    hook.status = 503
    assert deliver(world) == 0 and queued(world) == 2
    hook.status = 200
    assert deliver(world) == 0  # not due yet: backoff
    assert deliver(world, timedelta(minutes=10)) == 2
    assert [x.split("/")[-3] for x in focuses(hook)] == [first["id"], second["id"]]
    numbers = [status_of(b)["events-since-subscription-start"]["valueString"]
               for b in bundles(hook)[1:]]
    assert numbers == ["1", "2"]


def test_a_gone_endpoint_puts_the_subscription_in_error(world: World, hub: Hub,
                                                        claes: str, hook: Hook) -> None:
    pid = world.consented()
    world.grant(pid, claes, ("demarches",), ("access",))
    api = acting_for(hub, claes)
    made = subscribe(api, hook.url)
    world.gp.create(f.task(f"Patient/{pid}"))
    hook.status = 410
    assert deliver(world) == 0
    assert api.get(f"/fhir/Subscription/{made['id']}").json()["status"] == "error"
    assert queued(world) == 0
    world.gp.create(f.task(f"Patient/{pid}"))
    assert queued(world) == 0


# ---------------------------------------------------------------- ownership

def test_only_the_subscriber_sees_and_deletes_it(world: World, hub: Hub, claes: str,
                                                 hook: Hook) -> None:
    api = acting_for(hub, claes)
    made = subscribe(api, hook.url)
    path = f"/fhir/Subscription/{made['id']}"
    other = world.as_("practitioner", world.gp_ref, "user/*.rs user/Subscription.crds")
    assert other.get(path).status_code == 404
    assert other.delete(path).status_code == 404
    assert other.get("/fhir/Subscription").json()["total"] == 0
    assert api.get("/fhir/Subscription").json()["total"] == 1
    assert api.put(path, made).status_code == 405
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404
    pid = world.consented()
    world.grant(pid, claes, ("demarches",), ("access",))
    world.gp.create(f.task(f"Patient/{pid}"))
    assert queued(world) == 0


def test_subscriptions_end(world: World, hub: Hub, claes: str, hook: Hook) -> None:
    pid = world.consented()
    world.grant(pid, claes, ("demarches",), ("access",))
    api = acting_for(hub, claes)
    soon = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    made = subscribe(api, hook.url, end=soon)
    assert made["end"] == soon
    far = subscribe(api, hook.url, end="2099-01-01T00:00:00Z")
    assert far["end"] < "2099"  # capped
    world.gp.create(f.task(f"Patient/{pid}"))
    assert deliver(world, timedelta(hours=2)) == 1  # the far one only
    assert api.get(f"/fhir/Subscription/{made['id']}").json()["status"] == "off"


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize(("change", "where"), [
    ({"criteria": "https://example.org/SubscriptionTopic/other"}, "criteria"),
    ({"channel": {"type": "websocket", "endpoint": "https://hub.example/x"}}, "channel.type"),
    ({"channel": {"type": "rest-hook", "endpoint": "ftp://hub.example/x"}},
     "channel.endpoint"),
    ({"channel": {"type": "rest-hook", "endpoint": "https://u:p@hub.example/x"}},
     "channel.endpoint"),
    ({"channel": {"type": "rest-hook", "endpoint": "https://hub.example/x",
                  "header": ["Host: evil.example"]}}, "channel.header"),
    ({"channel": {"type": "rest-hook", "endpoint": "https://hub.example/x",
                  "header": ["X-Bad: line\r\nInjected: yes"]}}, "channel.header"),
    ({"channel": {"type": "rest-hook", "endpoint": "https://hub.example/x",
                  "payload": "application/fhir+json",
                  "_payload": {"extension": [{"url": subs.CONTENT_URL,
                                              "valueCode": "full-resource"}]}}},
     "channel.payload.extension"),
    ({"_criteria": {"extension": [{"url": subs.FILTER_URL,
                                   "valueString": "Consent?patient=Patient/x"}]}},
     "criteria.extension"),
    ({"end": "2001-01-01T00:00:00Z"}, "end"),
    ({"status": "off"}, "status"),
    ({"contact": [{"system": "email", "value": "a@b.c"}]}, "contact"),
])
def test_bad_subscriptions_are_422_audited_and_not_stored(
        world: World, hub: Hub, claes: str, hook: Hook, change: dict[str, Any],
        where: str) -> None:
    api = acting_for(hub, claes)
    body = {**subscription(hook.url), **change}
    before = len(records(world))
    r = api.post("/fhir/Subscription", body)
    issue = outcome(r, 422)["issue"][0]
    assert issue["expression"] == [f"Subscription.{where}"]
    assert len(records(world)) > before
    assert records(world)[-1]["outcome"] != "success"
    assert api.get("/fhir/Subscription").json()["total"] == 0
    assert hook.received == []  # no handshake for a refused request


def test_an_unreachable_endpoint_is_refused_at_creation(world: World, hub: Hub,
                                                        claes: str) -> None:
    api = acting_for(hub, claes)
    r = api.post("/fhir/Subscription",
                 subscription(f"http://127.0.0.1:{free_port()}/nobody-listens"))
    body = outcome(r, 422)
    assert "handshake" in body["issue"][0]["diagnostics"]
    assert records(world)[-1]["outcome"] != "success"
    assert api.get("/fhir/Subscription").json()["total"] == 0


def test_who_may_subscribe(world: World, hub: Hub, hook: Hook) -> None:
    pid = world.consented()
    refused = [
        world.citizen(pid),
        world.admin,
        world.as_("practitioner", world.gp_ref, "user/*.rs"),  # no Subscription scope
        Api(world.client, hub.credentials().json()["access_token"]),  # system/*.rs only
    ]
    for api in refused:
        r = api.post("/fhir/Subscription", subscription(hook.url))
        outcome(r, 403)
    assert hook.received == []
    assert Api(world.client).post("/fhir/Subscription",
                                  subscription(hook.url)).status_code == 401


def test_the_capability_statement_names_the_topic(world: World) -> None:
    cap = world.gp.get("/fhir/metadata").json()
    resource = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Subscription")
    assert {"url": subs.TOPIC_CANONICAL_EXTENSION, "valueCanonical": subs.TOPIC} in \
        resource["extension"]


# ---------------------------------------------------------------- instance restart

def test_queued_events_survive_a_restart(tmp_path: Path, database_url: str | None,
                                         hook: Hook) -> None:
    settings = make_settings(tmp_path / "data", database_url,
                             notify_allow_local_webhooks=True)
    app = create_app(settings)
    with TestClient(app) as client:
        world = World(app, client)
        pid = world.consented()
        gp = world.as_("practitioner", world.gp_ref, "user/*.rs user/Subscription.crds")
        subscribe(gp, hook.url)
        world.gp.create(f.task(f"Patient/{pid}"))
    app.state.runtime.engine.dispose()
    again = create_app(settings)
    try:
        assert subs.run_deliveries(again.state.runtime) == 1
    finally:
        again.state.runtime.engine.dispose()
    with Session(again.state.runtime.engine) as session:
        assert session.execute(select(subscriptions_table.c.events_sent)).scalar_one() == 1


# ---------------------------------------------------------------- the subscriber changes

def test_a_practitioner_who_leaves_the_hub_is_no_longer_told(world: World, hub: Hub,
                                                             claes: str, hook: Hook) -> None:
    """The subscriber is resolved from the directory at every event: Claes's role at the
    hub's organisation ends, so the hub may no longer act for him, and nothing is queued
    although his own grant still stands."""
    pid = world.consented()
    world.grant(pid, claes, ("demarches",), ("access",))
    subscribe(acting_for(hub, claes), hook.url)
    world.gp.create(f.task(f"Patient/{pid}"))
    assert queued(world) == 1
    role = world.admin.get("/fhir/PractitionerRole", params={"practitioner": claes}).json()
    entry = role["entry"][0]["resource"]
    ended = {**entry, "active": False}
    ended.pop("meta")
    assert world.admin.put(f"/fhir/PractitionerRole/{entry['id']}", ended).status_code == 200
    world.gp.create(f.task(f"Patient/{pid}"))
    assert queued(world) == 1  # only the event from before ...
    assert deliver(world) == 0  # ... and it is dropped at delivery
    assert queued(world) == 0 and len(hook.received) == 1  # the handshake only


def test_the_preloaded_directory_answers_like_the_store(world: World) -> None:
    """What a write's subscription check reads in two queries equals what the token path
    reads per practitioner: active or not, and each active role (period respected)."""
    from dossier.core.directory import PreloadedDirectory, StoreDirectory

    org2 = f"Organization/{world.admin.create(f.organization('CPAS Ixelles', 'social'))['id']}"
    both = world.add_practitioner("Peeters", "persnurse", org2)
    world.admin.create(f.practitioner_role(both, world.org_ref, "perssocialworker"))
    world.admin.create({**f.practitioner_role(both, org2, "persphysician"),
                        "period": {"start": "2020-01-01", "end": "2021-01-01"}})
    gone = world.add_practitioner("Gone", "persphysician")
    body = world.admin.get(f"/fhir/{gone}").json()
    body.pop("meta")
    assert world.admin.put(f"/fhir/{gone}", {**body, "active": False}).status_code == 200
    refs = [both, gone, world.gp_ref, world.sw_ref, "Practitioner/nobody", "Organization/x"]
    engine = world.app.state.runtime.engine
    now = datetime.now(UTC)
    with Session(engine) as session:
        preloaded = PreloadedDirectory(session, refs)
        store = StoreDirectory(engine, session)
        for ref in refs:
            assert preloaded.practitioner_active(ref) == store.practitioner_active(ref), ref
            assert sorted(preloaded.active_roles(ref, now), key=str) == \
                sorted(store.active_roles(ref, now), key=str), ref
    assert sorted(store_roles := StoreDirectory(engine).active_roles(both, now), key=str) == \
        sorted([(world.org_ref, "perssocialworker"), (org2, "persnurse")], key=str), store_roles
