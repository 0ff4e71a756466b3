"""Run every benchmark and write docs/benchmarks.md (`make bench`).

    python bench/run.py                      # the full run (~10 minutes), writes the doc
    python bench/run.py --quick              # a smoke run; prints, writes nothing
    python bench/run.py --database sqlite    # sqlite | postgres | both (default both)

PostgreSQL: a throwaway database is created on DOSSIER_BENCH_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres) and dropped at the end. With
`--database both` an unreachable server is skipped and said so in the report.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import bench_audit_reads
import bench_audit_verify
import bench_consent
import bench_crypto
import bench_reads
import bench_search
import bench_subscriptions
import bench_verify_db
from harness import SIZES, Ratio, Section, Size, Table, load_average, machine, ratio_cell
from world import PG_ADMIN_URL, postgres_reachable, seeded

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"

METHOD = """\
## Method

- **Medians, not best runs.** The machine is shared with other work, so each number is the
  median of repeated runs: micro-benchmarks repeat the whole loop ({repeat} times); HTTP
  comparisons run {rounds} timed rounds of {per_round} sequential requests per variant after
  one warm-up round, and report the median over rounds of requests/s and of each round's
  p50 and p95 latency.
- **Baselines in the same run.** Each subject is measured next to a baseline that differs in
  one thing only (the section says how it was made). HTTP variants alternate round by round
  (A B, B A, …) so a change in the machine's load hits both. An HTTP ratio is the median
  over rounds of (subject time per request / baseline time per request) within a round,
  whose two batches ran back to back; 1.50 × = the subject takes 50 % longer. Requests/s
  and latencies are medians over rounds, so they need not divide to the ratio exactly.
- **Shared PostgreSQL.** The PostgreSQL server also serves other work on this machine (test
  suites), which shows as long p95 tails on PostgreSQL; compare p50s and ratios.
- **The real service.** HTTP requests go to the FastAPI app built by
  `dossier.app.create_app` (token check, consent, sealing, audit in one transaction),
  in-process through Starlette's TestClient (httpx over ASGI, no sockets), one at a time,
  with a bearer token from the embedded dev issuer. The audit sequencer and notifier
  threads are off during timing; where their work is the point (audit), it is run and
  timed after each round.
- **Data.** Seeded through the FHIR API on a throwaway database: {dossiers} dossiers opened
  by a GP, each with its citizen's Consent (all categories, access and collect) and
  {tasks} Tasks; {readers} more Patients per storage for the encryption reads.
- **Not in the test suite.** No timing is asserted anywhere; these are measurements.
"""

CONSENT = """\
What a decision costs in pure Python (bench/bench_consent.py: baseline one provision per
patient), then what consent enforcement costs a search through the service
(bench/bench_search.py). Baseline for the searches: a second app on the same database with
`app.state.runtime.policy_factory = lambda session, ctx: OpenPolicy()`
(`dossier.core.repository.OpenPolicy`: no role gate, no read clause, every row readable).
Every dossier grants the GP, so both policies return the same Bundles (checked before
timing). The consented search reads the Consents of every dossier that names the GP to
build its SQL read clause, so its cost grows with that number.
"""

ENCRYPTION = """\
What sealing costs per Patient with no database (bench/bench_crypto.py: baseline plain
`json`), then what it costs a read through the service (bench/bench_reads.py). Baseline for
the reads: a second app on the same database whose `runtime.sealer` returns
`bench/clear_sealer.ClearSealer` (same interface as `dossier.core.sealing.FieldSealer`, stores
every element in clear, no data key, identifiers unblinded). Each app wrote its own
Patients (same shape, all six sealed elements present), each set granted to its own
reader; the run checks the sealed set has ciphertexts and the clear set none. The control
row is the shipped app reading the clear rows (without ciphertexts `FieldSealer` has
nothing to open): its ratio to the baseline is how far two app instances differ by
themselves, the noise floor of this comparison.
"""

AUDIT = """\
What logging and notifying costs a consented read (bench/bench_audit_reads.py). Baseline:
the same app, each baseline request made inside `audit_off()`, which replaces
`dossier.core.runtime.RequestAudit` (the sink `Runtime.unit` builds per request) with
`SilentAudit` (`dossier.core.repository.NullAudit` plus no-op `urgent`, `fail`, `flush`): no
audit record, no notification outbox row; the rest of `Runtime.unit` is the same code
(checked: the baseline leaves both tables unchanged, an audited read adds a record and an
outbox row). The audited side then pays, timed apart after each round, the background
work its reads caused: the sequencer (`runtime.integrate_audit()` until every record is in
the signed tree) and the notifier (`dossier.notify.worker.run_pending`, inbox delivery);
the "… + sequencer + notifier" row counts that work per read. Outbox rows left by the
earlier benchmarks (a search that touches 50 dossiers notifies 50 people) are first marked
sent without delivery, so the notifier timed here works only for these reads.

Then `audit verify` on a large log (bench/bench_verify_db.py): a data directory laid out
like the service's, migrated with `dossier.db.engine.upgrade`, filled in bulk with
realistic records from `audit.record.build_record` (reads, searches with hashed query
values, writes; 500 practitioners, 20,000 people), sequenced by the real
`AuditStore.integrate` in its batches of 5000 (one signed head per batch), then verified by
`AuditStore.verify`. Baseline: the same recomputation (RFC 8785 bytes, leaf hash, chain,
Merkle frontier) over the same records in memory, no database. The database steps run
once each (minutes at 1,000,000 records); the baseline is a median. Two rows time one
query that a step repeats: the sequencer's search for pending records (every tick, even
with nothing pending) and verify's batched lookup of stored Merkle nodes; when these grow
with the log, so does the per-record cost of `integrate` and `verify`. Last, the log's
pure core in memory (bench/bench_audit_verify.py, one run each) for reference.
"""

SUBSCRIPTIONS = """\
What topic-based Subscriptions cost a write of a dossier entry (bench/bench_subscriptions.py):
on every write, `dossier.subscriptions.service.capture` runs in the writer's transaction and, for
each active subscription whose filters match, resolves the subscriber in the directory,
asks the consent engine whether the subscriber may read the entry and, if so, queues an
event. Measured: `POST /fhir/Task` by the GP into the first 10 seeded dossiers, on the
shipped app. 100 more practitioners are in the directory; 50 of them hold a grant (all
categories, access and collect) from each of those 10 citizens, the other 50 none; each
of the 100 made one Subscription (no filter, rest-hook, id-only) through
`POST /fhir/Subscription`, its handshake answered by a small HTTP server on loopback.
Baseline: the same writes with all 100 subscriptions `off`. Subjects: 10 or 50 active
subscriptions of granted subscribers (every write queues one event per subscription: the
worst case) and 50 of subscribers without a grant (the same questions, answered no,
nothing queued). The variant's subscriptions are set `active` and the others `off`
directly in the database between rounds, outside the timed batches (`capture` skips `off`
subscriptions, as it does expired ones); the run checks after every round that exactly
(writes × granted active subscriptions) events were queued. The delivery worker does not
run: events accumulate and are never sent. "ms per subscription" is (ratio − 1) ×
baseline time per write / active subscriptions. Per write, the written dossier's
Consents (51 here: the GP's and the 50 granted subscribers') are read and parsed once
and every subscriber's directory entries are read in two queries; each subscriber then
gets its own `ConsentPolicy` and decision.
"""


def timed(section: Callable[[], Section]) -> Section:
    began = time.perf_counter()
    result = section()
    result.seconds = time.perf_counter() - began
    return result


def merge(title: str, method: str, parts: list[Section]) -> Section:
    out = Section(title, method)
    for part in parts:
        out.extend(part)
    return out


def summary(ratios: list[Ratio]) -> Table:
    table = Table(["area", "measurement", "subject vs baseline", "time ratio"],
                  left=3, title="Headline ratios (subject time / baseline time, medians)")
    for r in ratios:
        table.add(r.area, r.what, f"{r.subject} vs {r.baseline}", ratio_cell(r.value))
    return table


def run(size: Size, kinds: list[str], skipped: str) -> str:
    began = time.perf_counter()
    consent = [timed(lambda: bench_consent.measure(size.consent_patients, 50, size.repeat))]
    encryption = [timed(lambda: bench_crypto.measure(size.repeat))]
    audit: list[Section] = []
    subscriptions: list[Section] = []
    for kind in kinds:
        print(f"[bench] seeding {kind} …", file=sys.stderr)
        seed_began = time.perf_counter()
        with seeded(kind, size) as w:
            seeding = time.perf_counter() - seed_began
            print(f"[bench] seeded {kind} in {seeding:.0f} s; searching …", file=sys.stderr)
            consent.append(timed(partial(bench_search.measure, w, size)))
            print(f"[bench] {kind}: reads …", file=sys.stderr)
            encryption.append(timed(partial(bench_reads.measure, w, size)))
            print(f"[bench] {kind}: audited reads …", file=sys.stderr)
            audit.append(timed(partial(bench_audit_reads.measure, w, size)))
            # last: it adds practitioners, Consents and Tasks to the seeded dossiers
            print(f"[bench] {kind}: writes with subscriptions …", file=sys.stderr)
            subscriptions.append(timed(partial(bench_subscriptions.measure, w, size)))
        audit[-1].seconds += seeding
    print(f"[bench] audit verify on {size.verify_records:,} records …", file=sys.stderr)
    audit.append(timed(lambda: bench_verify_db.measure(size.verify_records, size.repeat)))
    audit.append(timed(lambda: bench_audit_verify.measure(size.core_records, 2000)))
    sections = [merge(bench_search.TITLE, CONSENT, consent),
                merge(bench_reads.TITLE, ENCRYPTION, encryption),
                merge(bench_audit_reads.TITLE, AUDIT, audit),
                merge(bench_subscriptions.TITLE, SUBSCRIPTIONS, subscriptions)]
    ratios = [r for s in sections for r in s.ratios]
    pg_url = PG_ADMIN_URL if "postgres" in kinds else None
    head = [
        GENERATED,
        "Written by `make bench` (`python bench/run.py`); do not edit by hand, run it again. "
        f"This is a **{size.name}** run of {time.perf_counter() - began:.0f} s on "
        f"{' and '.join(kinds)}{skipped}. Each benchmark also runs alone: "
        "`python bench/<module>.py --help`.",
        summary(ratios).markdown(),
        machine(pg_url).markdown(),
        METHOD.format(**size.__dict__).strip(),
    ]
    tail = ["## Running it",
            "`make bench` (or `python bench/run.py`) for this report; `--quick` for a smoke "
            "run that prints and writes nothing; `--database sqlite|postgres|both`; "
            "`--verify-records N` for a smaller log. Load average at the end (1, 5, 15 min): "
            f"{load_average()}."]
    return "\n\n".join(head + [s.markdown() for s in sections] + tail) + "\n"


GENERATED = "## In-process benchmarks (`make bench`)"


def hand_written(path: Path) -> str:
    """What the file holds above the generated part (measured by hand: bench/load.py,
    scale.py, bulk.py, profile.py, bench_audit_scale.py), kept as it is."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    return old[:old.index(GENERATED)] if GENERATED in old else "# Benchmarks\n\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--verify-records", type=int,
                        help="audit records for `audit verify` (default 1,000,000; quick 50,000)")
    parser.add_argument("--output", help="where to write the markdown ('-': stdout only); "
                        "default docs/benchmarks.md for a full run, stdout for --quick")
    args = parser.parse_args(argv)
    # a stopped run still drops its PostgreSQL database and temporary files
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    skipped = ""
    if "postgres" in kinds and not postgres_reachable():
        if args.database == "postgres":
            parser.error(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
        kinds, skipped = ["sqlite"], " (PostgreSQL was not reachable, so not measured)"
    size = SIZES["quick" if args.quick else "full"]
    if args.verify_records:
        size = replace(size, verify_records=args.verify_records)
    text = run(size, kinds, skipped)
    output = args.output or ("-" if args.quick else str(DOC))
    if output == "-":
        print(text)
    else:
        Path(output).write_text(hand_written(Path(output)) + text, encoding="utf-8")
        print(f"[bench] wrote {output}", file=sys.stderr)
    return text


if __name__ == "__main__":
    main()
