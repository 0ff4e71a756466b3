"""Audit on reads (issue 6): a practitioner's consented reads with the access log and the
citizen's notification against the same reads with both off.

Baseline: the same app, each baseline request made inside `audit_off()`, which swaps
`dossier.core.runtime.RequestAudit` (the audit sink Runtime.unit builds per request) for
SilentAudit: dossier.core.repository.NullAudit plus no-op `urgent`, `fail` and `flush`. So the
baseline writes no audit record and no notification outbox row; everything else in
Runtime.unit (transaction, consent, sealing) is the same code.

The audited side also pays, after each round and timed apart, the background work its
reads caused: the sequencer (`runtime.integrate_audit()` until every record is in the
tree, signed) and the notifier (`dossier.notify.worker.run_pending`, inbox delivery).
Outbox rows left by earlier benchmarks are first marked sent without delivery, so the
notifier timed here works only for this benchmark's reads.

    /work/venv/bin/python bench/bench_audit_reads.py [--quick] [--database sqlite|postgres|both]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from harness import (
    Ratio,
    Sample,
    Section,
    Size,
    Table,
    interleave,
    paired_ratio,
    ratio_cell,
)
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from world import Site, World, standalone

import dossier.core.runtime
from dossier.core.repository import NullAudit
from dossier.db.models import audit_records, notification_outbox
from dossier.notify.worker import run_pending

TITLE = "Audit (issue 6)"


class SilentAudit(NullAudit):
    """RequestAudit's interface, keeping nothing."""

    def __init__(self, *args: object) -> None:
        del args

    def urgent(self, patient_id: str) -> None:
        return None

    def fail(self, status: int) -> None:
        return None

    def flush(self, session: Session) -> None:
        return None


@contextmanager
def audit_off() -> Iterator[None]:
    """Requests made inside build SilentAudit where Runtime.unit builds RequestAudit."""
    names = vars(dossier.core.runtime)
    saved = names["RequestAudit"]
    names["RequestAudit"] = SilentAudit
    try:
        yield
    finally:
        names["RequestAudit"] = saved


def counts(site: Site) -> tuple[int, int]:
    with Session(site.runtime.engine) as session:
        return tuple(int(session.execute(select(func.count()).select_from(t)).scalar_one())
                     for t in (audit_records, notification_outbox))  # type: ignore[return-value]


def check_baseline(site: Site, headers: dict[str, str], path: str) -> None:
    """The baseline really logs nothing, and the audited read logs and notifies."""
    before = counts(site)
    with audit_off():
        site.get(headers, path)
    if counts(site) != before:
        raise RuntimeError("the audit-off baseline still wrote audit rows")
    site.get(headers, path)
    records, outbox = counts(site)
    if records != before[0] + 1 or outbox <= before[1]:
        raise RuntimeError("an audited read did not log and notify")


def compare(site: Site, headers: dict[str, str], path: Callable[[int], str],
            size: Size) -> tuple[dict[str, Sample], dict[str, list[float]]]:
    """Interleaved rounds, audit off and on; the background work timed after each round."""
    runtime = site.runtime
    background: dict[str, list[float]] = {"sequencer": [], "notifier": []}

    def settle() -> None:
        began = time.perf_counter()
        while runtime.integrate_audit() < counts(site)[0]:
            pass
        background["sequencer"].append(time.perf_counter() - began)
        began = time.perf_counter()
        run_pending(runtime, max_batches=10_000)
        background["notifier"].append(time.perf_counter() - began)

    def off(i: int) -> None:
        with audit_off():
            site.get(headers, path(i))

    def on(i: int) -> None:
        site.get(headers, path(i))

    settle()
    samples = interleave({"off (baseline)": off, "audit + notification": on},
                         rounds=size.rounds, per_round=size.per_round,
                         after={"audit + notification": settle})
    return samples, background


def settle_backlog(site: Site) -> None:
    """Sequence the records earlier benchmarks left and mark their outbox rows sent (not
    delivered), so the notifier timed here works only for this benchmark's reads."""
    while site.runtime.integrate_audit() < counts(site)[0]:
        pass
    with Session(site.runtime.engine) as session, session.begin():
        session.execute(update(notification_outbox).where(
            notification_outbox.c.status == "pending").values(
            status="sent", sent_at=datetime.now(UTC)))


def measure(w: World, size: Size) -> Section:
    site = w.main
    settle_backlog(site)
    headers = site.auth("practitioner", w.gp)
    n = len(w.dossiers)
    queries: dict[str, Callable[[int], str]] = {
        "`GET /fhir/Task/{id}`": lambda i: f"/fhir/Task/{w.dossiers[i % n].task_ids[0]}",
        "`GET /fhir/Task?patient=…`":
            lambda i: f"/fhir/Task?patient={w.dossiers[i % n].patient_id}",
    }
    table = Table(["read", "audit", "requests/s", "p50 ms", "p95 ms", "audited / off"],
                  title=f"{w.kind}: the GP's consented reads over {n} dossiers")
    section = Section(TITLE, "")
    for label, path in queries.items():
        check_baseline(site, headers, path(0))
        samples, background = compare(site, headers, path, size)
        base, subject = samples["off (baseline)"], samples["audit + notification"]
        value = paired_ratio(base, subject)
        total = paired_ratio(base, subject, with_after=True)
        for name, s in samples.items():
            table.add(label, name, s.rate, s.p(50), s.p(95),
                      ratio_cell(value) if s is subject else "")
        per_read = {k: statistics.median(v[-size.rounds:]) / size.per_round * 1e3
                    for k, v in background.items()}
        table.add(label, f"… + sequencer {per_read['sequencer']:.2f} ms + notifier "
                  f"{per_read['notifier']:.2f} ms per read", subject.rate_with_after, "", "",
                  ratio_cell(total))
        section.ratios.append(Ratio(TITLE, f"{label}, {w.kind}", "audit + notification",
                                    "off", value))
        section.ratios.append(Ratio(TITLE, f"{label}, {w.kind}, with sequencer and notifier",
                                    "audit + notification", "off", total))
    section.tables.append(table)
    return section


def main(argv: list[str] | None = None) -> Section:
    section: Section = standalone(measure, argv, __doc__ or "")
    return section


if __name__ == "__main__":
    main()
