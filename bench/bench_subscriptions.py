"""Subscriptions on writes (issue 9): what the topic-based Subscriptions cost a write of a
dossier entry, `POST /fhir/Task` by the GP, against the same write with no subscription.

On every write of a dossier entry, `dossier.subscriptions.service.capture` runs in the writer's
transaction and, for each active subscription whose filters match, resolves the subscriber
in the directory (`auth.resolve_principal`), asks the consent engine (`ConsentPolicy`)
whether the subscriber may read the entry and, if so, queues a row in
`subscription_events`. So its cost grows with the number of active subscriptions.

Set-up, on the seeded World: the Tasks are written by the GP into the first 10 seeded
dossiers (round robin). 100 more practitioners are added to the directory (each an active
PractitionerRole at one organisation); 50 of them get a grant (all categories, access and
collect) from each of those 10 citizens, the other 50 none (so each written dossier
holds 51 Consents in every variant, the baseline's too). Each of the 100 creates one
Subscription (no filter: every entry type of every dossier it may see, rest-hook,
id-only) through `POST /fhir/Subscription`, from an app on the same database made by
`world.build_app` with `DOSSIER_NOTIFY_ALLOW_LOCAL_WEBHOOKS=true`, so that the endpoint
may be a small ThreadingHTTPServer on 127.0.0.1 that answers 200 to the handshake.

Variants, all on the shipped app (`World.main`), same requests, same dossiers:
  - no active subscription (baseline): all 100 have status 'off';
  - 10 / 50 active, subscribers granted: every write queues one event per subscription
    (the worst case: every subscriber may see every entry);
  - 50 active, subscribers not granted: the directory and consent questions are asked
    and answered "no", nothing is queued (the cost of the question alone).
The variants alternate round by round (`harness.interleave`). Between two rounds, outside
the timed batch (in interleave's `after` hook), `subscriptions.status` is set directly in
the database: 'active' for the next variant's subscriptions, 'off' for the others (capture
skips 'off' ones, as it does expired subscriptions). The same hook checks that the round
just run had its own subscriptions active and queued exactly (requests x granted active
subscriptions) events. The delivery worker does not run (its period is 0, as for every
bench app): the events accumulate in `subscription_events` and are never sent.

    /work/venv/bin/python bench/bench_subscriptions.py [--quick] [--database sqlite|postgres|both]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness import Ratio, Section, Size, Table, interleave, paired_ratio, ratio_cell
from sqlalchemy import false, func, select, update
from sqlalchemy.orm import Session
from world import HCPARTY, Site, World, grant, standalone, task

from dossier.core.directory import StoreDirectory
from dossier.db.models import resources, subscription_events, subscriptions
from dossier.subscriptions import service as subs

TITLE = "Subscriptions (issue 9)"
SCOPE = "user/*.rs user/Subscription.crds"
WRITTEN = 10  # dossiers the Tasks are written into
GRANTED = 50  # subscribers with a grant on each written dossier
UNGRANTED = 50  # subscribers with none
WARMUP = 1
BASELINE = "no active subscription (baseline)"


class Endpoint:
    """A rest-hook endpoint on loopback answering 200 to every POST (the handshakes)."""

    def __init__(self) -> None:
        self.received = 0
        lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    endpoint.received += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dossier-hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@contextmanager
def local_webhooks() -> Iterator[None]:
    """Apps built inside accept http:// endpoints on loopback (settings read the env)."""
    name = "DOSSIER_NOTIFY_ALLOW_LOCAL_WEBHOOKS"
    saved = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def subscription(endpoint: str) -> dict[str, Any]:
    return {"resourceType": "Subscription", "status": "requested",
            "reason": "continuity of care", "criteria": subs.TOPIC,
            "channel": {"type": "rest-hook", "endpoint": endpoint,
                        "payload": "application/fhir+json",
                        "_payload": {"extension": [{"url": subs.CONTENT_URL,
                                                    "valueCode": "id-only"}]}}}


def practitioner(site: Site, admin: dict[str, str], org_ref: str, i: int) -> str:
    made = site.create(admin, {"resourceType": "Practitioner", "active": True,
                               "name": [{"family": f"Abonné{i:03d}", "given": ["Anne"]}]})
    ref = f"Practitioner/{made['id']}"
    site.create(admin, {"resourceType": "PractitionerRole", "active": True,
                        "practitioner": {"reference": ref},
                        "organization": {"reference": org_ref},
                        "code": [{"coding": [{"system": HCPARTY, "code": "persnurse"}]}],
                        "period": {"start": "2020-01-01"}})
    return ref


def subscribe(site: Site, ref: str, endpoint: str) -> str:
    token = site.app.state.dev_issuer.mint(ref, ["practitioner"], SCOPE, 24 * 3600)
    return str(site.create({"Authorization": f"Bearer {token}"}, subscription(endpoint))["id"])


def set_active(site: Site, active: list[str]) -> None:
    """These subscriptions 'active', every other one 'off'."""
    with Session(site.runtime.engine) as session, session.begin():
        session.execute(update(subscriptions).where(subscriptions.c.id.not_in(active))
                        .values(status="off"))
        if active:
            session.execute(update(subscriptions).where(subscriptions.c.id.in_(active))
                            .values(status="active"))


def queued(site: Site) -> int:
    with Session(site.runtime.engine) as session:
        return int(session.execute(select(func.count()).select_from(subscription_events))
                   .scalar_one())


class Switch:
    """Run after each round, outside the timed batch: check the round just run had its own
    subscriptions active and queued what it should, then activate the next round's."""

    def __init__(self, site: Site, active: dict[str, list[str]], events: dict[str, int],
                 schedule: list[str]) -> None:
        self.site, self.active, self.events, self.schedule = site, active, events, schedule
        self.step = 0
        self.queued = queued(site)
        set_active(site, active[schedule[0]])

    def after(self, name: str) -> None:
        if self.schedule[self.step] != name:
            raise RuntimeError(f"ran {name} with {self.schedule[self.step]} active")
        now = queued(self.site)
        if now - self.queued != self.events[name]:
            raise RuntimeError(f"{name}: {now - self.queued} events queued, "
                               f"expected {self.events[name]}")
        self.queued = now
        self.step += 1
        if self.step < len(self.schedule):
            set_active(self.site, self.active[self.schedule[self.step]])


def consents_per_dossier(site: Site, patient_id: str) -> int:
    with Session(site.runtime.engine) as session:
        return int(session.execute(select(func.count()).select_from(resources).where(
            resources.c.res_type == "Consent", resources.c.patient_id == patient_id,
            resources.c.deleted == false())).scalar_one())


def measure(w: World, size: Size) -> Section:
    written = w.dossiers[:WRITTEN]
    with local_webhooks():
        hooked = w.site()
    endpoint = Endpoint()
    try:
        admin = hooked.auth("admin", "Operator/bench")
        org = hooked.create(admin, {"resourceType": "Organization", "active": True,
                                    "name": "Réseau de soins (abonnés)"})
        org_ref = f"Organization/{org['id']}"
        refs = [practitioner(hooked, admin, org_ref, i) for i in range(GRANTED + UNGRANTED)]
        granted_refs = refs[:GRANTED]
        for d in written:
            citizen = hooked.auth("citizen", f"Patient/{d.patient_id}")
            for ref in granted_refs:
                hooked.create(citizen, grant(d.patient_id, ref))
        ids = [subscribe(hooked, ref, endpoint.url) for ref in refs]
        if endpoint.received != len(ids):
            raise RuntimeError(f"{endpoint.received} handshakes for {len(ids)} subscriptions")
    finally:
        endpoint.close()
    granted, ungranted = ids[:GRANTED], ids[GRANTED:]
    # every subscriber resolves in the directory: the consent question is really asked
    with Session(w.main.runtime.engine) as session:
        rows = session.execute(select(subscriptions.c.subscriber)).scalars().all()
        directory = StoreDirectory(w.main.runtime.engine, session)
        if len(rows) != len(ids) or any(subs.subscriber_principal(
                claims, directory, datetime.now(UTC)) is None for claims in rows):
            raise RuntimeError("a subscriber does not resolve in the directory")

    # name: (active subscriptions, events each write must queue)
    variants: dict[str, tuple[list[str], int]] = {
        BASELINE: ([], 0),
        "10 active, subscribers granted": (granted[:10], 10),
        f"{GRANTED} active, subscribers granted": (granted, GRANTED),
        f"{UNGRANTED} active, subscribers not granted": (ungranted, 0),
    }
    names = list(variants)
    # the order interleave runs them in (warm-up included); Switch checks it as it goes
    schedule = [n for r in range(WARMUP + size.rounds) for n in
                (names if r % 2 == 0 else names[::-1])]
    switch = Switch(w.main, {name: v[0] for name, v in variants.items()},
                    {name: size.per_round * v[1] for name, v in variants.items()}, schedule)
    gp = w.main.auth("practitioner", w.gp)

    def write(k: int) -> None:
        w.main.create(gp, task(written[k % len(written)].patient_id, k))

    samples = interleave(dict.fromkeys(names, write), rounds=size.rounds,
                         per_round=size.per_round, warmup=WARMUP,
                         after={name: partial(switch.after, name) for name in names})
    if switch.step != len(schedule):
        raise RuntimeError("interleave ran another schedule than expected")
    set_active(w.main, [])

    consents = consents_per_dossier(w.main, written[0].patient_id)
    table = Table(["write", "subscriptions", "requests/s", "p50 ms", "p95 ms",
                   "events per write", "ms per subscription", "time / baseline"],
                  title=f"{w.kind}: `POST /fhir/Task` by the GP into {len(written)} "
                        f"dossiers of {consents} Consents each")
    section = Section(TITLE, "")
    base = samples[BASELINE]
    for name, s in samples.items():
        active, events = variants[name]
        if s is base:
            table.add("`POST /fhir/Task`", name, s.rate, s.p(50), s.p(95), "0", "", "")
            continue
        value = paired_ratio(base, s)
        per_sub = (value - 1) * base.mean_ms / len(active)
        table.add("`POST /fhir/Task`", name, s.rate, s.p(50), s.p(95), str(events), per_sub,
                  ratio_cell(value))
        section.ratios.append(Ratio(TITLE, f"`POST /fhir/Task`, {w.kind}, {name}",
                                    f"{len(active)} subscriptions", "none", value))
    section.tables.append(table)
    return section


def main(argv: list[str] | None = None) -> Section:
    section: Section = standalone(measure, argv, __doc__ or "")
    return section


if __name__ == "__main__":
    main()
