"""`dossier audit verify` on a large log (issue 6): N realistic audit records in a SQLite
database with the real schema, sequenced by the real sequencer, then verified.

1. A data directory laid out like the service's (`dossier.sqlite3`, `keys/`), migrated
   with dossier.db.engine.upgrade.
2. N records built by audit.record.build_record (reads, searches with hashed query
   values, writes; 500 practitioners, 20,000 people), inserted in bulk (not timed as a
   result: it stands in for months of requests).
3. AuditStore.integrate in its batches of 5000 until every record is sequenced (each
   batch signs a tree head, as the periodic sequencer does): timed.
4. AuditStore.verify (chain, leaves, Merkle nodes, every head and their consistency):
   timed; and the CLI `python -m dossier audit verify --data-dir …`, end to end.

Baseline: the same recomputation with no database: RFC 8785 bytes, leaf hash, hash
chain and Merkle frontier over the same records held in memory (the first 100,000; a
rate per record). Median of `repeat` runs for the baseline; the database steps run once
(each takes minutes at 1,000,000).

    /work/venv/bin/python bench/bench_verify_db.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import FULL, Ratio, Section, Table, ratio_cell
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from audit.canonical import canonical_bytes
from audit.chain import GENESIS, chain_hash_from_leaf_hash
from audit.checkpoint import Ed25519FileSigner, public_jwk
from audit.hashing import leaf_hash
from audit.merkle import CompactRange
from audit.record import Agent, Event, build_record
from audit.store import AuditStore, SqlNodeStore
from dossier.app import audit_origin
from dossier.db.engine import make_engine, upgrade
from dossier.db.models import audit_tables
from dossier.settings import load_settings

TITLE = "Audit (issue 6)"
START = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
TYPES = ("Task", "Patient", "Observation", "CareTeam", "RelatedPerson", "Flag")
CLI_FULL_LIMIT = 200_000  # above this the CLI would re-run a multi-minute verify


def uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def records(n: int, seed: int = 6962) -> Iterator[tuple[dict[str, Any], datetime, str, str]]:
    """(record, recorded_at, patient_id, agent) like the requests of a busy service."""
    rng = random.Random(seed)
    key = rng.randbytes(32)
    practitioners = [(f"Practitioner/{uid(rng)}", f"Organization/{uid(rng)}")
                     for _ in range(500)]
    people = [uid(rng) for _ in range(20_000)]
    for i in range(n):
        who, org = rng.choice(practitioners)
        pid = rng.choice(people)
        roll = rng.random()
        rtype = rng.choice(TYPES)
        if roll < 0.55:
            events = [Event("read", rtype, uid(rng))]
        elif roll < 0.85:
            events = [Event("search", rtype, query=[("patient", f"Patient/{pid}"),
                                                    ("status", "in-progress")])]
        else:
            events = [Event(rng.choice(("create", "update")), rtype, uid(rng))]
        if rng.random() < 0.02:
            events[0].outcome = "denied"
        when = START + timedelta(seconds=i * 3)
        agent = Agent(who=who, role="practitioner", client="portal", organizations=(org,))
        record = build_record(record_id=uid(rng), recorded=when, request_id=uid(rng),
                              agent=agent, patient=f"Patient/{pid}", events=events,
                              purpose="TREAT", query_key=key)
        yield record, when, pid, who


def recompute(batch: list[dict[str, Any]]) -> bytes:
    """What verify recomputes per record, with no database: the floor it cannot beat."""
    chain, frontier = GENESIS, CompactRange()
    for record in batch:
        lh = leaf_hash(canonical_bytes(record))
        chain = chain_hash_from_leaf_hash(chain, lh)
        frontier.append(lh)
    return frontier.root() + chain


def fill(session: Session, n: int, keep: int) -> tuple[list[dict[str, Any]], float]:
    """Insert n records in bulk; returns the first `keep` and the mean leaf size."""
    kept: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    size = 0
    table = audit_tables.records
    for record, when, pid, who in records(n):
        if len(kept) < keep:
            kept.append(record)
            if len(kept) <= 2000:
                size += len(canonical_bytes(record))
        rows.append({"id": record["id"], "recorded_at": when, "patient_id": pid,
                     "agent": who, "action": record["action"], "outcome": record["outcome"],
                     "record": record})
        if len(rows) == 20_000:
            session.execute(insert(table), rows)
            rows = []
    if rows:
        session.execute(insert(table), rows)
    return kept, size / max(min(len(kept), 2000), 1)


def empty_data_dir(path: Path) -> Path:
    """A migrated data directory with a signing key and an empty log."""
    path.mkdir(mode=0o700)
    engine = make_engine(load_settings(data_dir=path).sqlalchemy_url)
    upgrade(engine)
    engine.dispose()
    Ed25519FileSigner.load_or_create(path / "keys" / "audit-signing.pem")
    return path


def run_cli(data_dir: Path) -> float:
    """Seconds for `python -m dossier audit verify --data-dir …`, the whole process."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dossier", "audit", "verify", "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode != 0 or "intact" not in done.stdout:
        raise RuntimeError(f"the CLI failed: {done.stdout[-200:]} {done.stderr[-200:]}")
    return elapsed


def measure(n: int, repeat: int, cli: bool = True) -> Section:
    section = Section(TITLE, "")
    table = Table(["step", "records", "seconds", "records/s", "verify / baseline"],
                  left=1, title=f"`audit verify` on {n:,} records (SQLite)")
    with tempfile.TemporaryDirectory(prefix="dossier-bench-verify-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        settings = load_settings(data_dir=data_dir)
        engine = make_engine(settings.sqlalchemy_url)
        upgrade(engine)
        signer = Ed25519FileSigner.load_or_create(data_dir / "keys" / "audit-signing.pem")
        store = AuditStore(audit_tables, audit_origin(settings))

        began = time.perf_counter()
        with Session(engine) as session, session.begin():
            kept, mean_leaf = fill(session, n, min(n, 100_000))
        table.add("bulk insert (set-up, not the result)", n, time.perf_counter() - began,
                  n / (time.perf_counter() - began), "")

        began = time.perf_counter()
        size = batches = 0
        while size < n:
            with Session(engine) as session, session.begin():
                size = store.integrate(session, signer, START)
            batches += 1
        sequenced = time.perf_counter() - began
        table.add(f"sequencer: `AuditStore.integrate` × {batches} batches", n, sequenced,
                  n / sequenced, "")

        with Session(engine) as session:
            heads, nodes = (session.execute(select(func.count()).select_from(t)).scalar_one()
                            for t in (audit_tables.tree_heads, audit_tables.nodes))
            began = time.perf_counter()
            result = store.verify(session, public_jwk(signer.public_key()))
            verified = time.perf_counter() - began
        if not result.ok:
            raise RuntimeError(f"verify failed on a clean log: {result.detail}")
        idle, lookups = [], []
        ids = [(level, index) for level in range(2) for index in range(2000)]
        for _ in range(3):
            with Session(engine) as session, session.begin():
                began = time.perf_counter()
                store.integrate(session, signer, START)
                idle.append(time.perf_counter() - began)
                began = time.perf_counter()
                SqlNodeStore(session, audit_tables).get_many(ids)
                lookups.append(time.perf_counter() - began)
        engine.dispose()

        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            recompute(kept)
            times.append(time.perf_counter() - began)
        base_rate = len(kept) / statistics.median(times)
        verify_rate = n / verified
        table.add("one sequencer tick with nothing pending (the service runs one every "
                  "second)", "", f"{statistics.median(idle):.3f}", "", "")
        table.add(f"one `SqlNodeStore.get_many` of {len(ids):,} nodes among {nodes:,} "
                  "(verify runs one per ~2,000 leaves)", "",
                  f"{statistics.median(lookups):.3f}", "", "")
        table.add("baseline: recompute in memory, no database", len(kept),
                  statistics.median(times), base_rate, "")
        table.add(f"**`AuditStore.verify`** ({heads:,} signed heads)", n, verified,
                  verify_rate, ratio_cell(base_rate / verify_rate))
        section.ratios.append(Ratio(TITLE, f"`audit verify`, {n:,} records, SQLite",
                                    "AuditStore.verify", "in-memory recomputation",
                                    base_rate / verify_rate))
        if cli:
            log = data_dir if n <= CLI_FULL_LIMIT else empty_data_dir(Path(tmp) / "empty")
            elapsed = run_cli(log)
            if log == data_dir:
                table.add("`python -m dossier audit verify --data-dir …` (whole process)",
                          n, elapsed, n / elapsed, ratio_cell(base_rate * elapsed / n))
            else:
                table.add("`python -m dossier audit verify` on an empty log (process "
                          "start-up; add it to `AuditStore.verify`)", 0, elapsed, "", "")
    section.tables.append(table)
    section.method = (f"Mean leaf (RFC 8785 record) {mean_leaf:.0f} bytes.")
    return section


def main(argv: list[str] | None = None) -> Section:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=FULL.verify_records)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-cli", action="store_true")
    args = parser.parse_args(argv)
    section = measure(args.records, args.repeat, cli=not args.no_cli)
    print(section.markdown())
    return section


if __name__ == "__main__":
    main()
