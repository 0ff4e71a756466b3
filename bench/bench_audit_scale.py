"""The audit log at scale (issue 14 item 4): `audit verify` of 1,000,000 records, the
sequencer's append rate and head latency at that size, an inclusion proof at 10,000,000.

How the log is generated in bulk, directly into the database through the storage code
(minutes of set-up stand for months of requests):
- records: the shape `audit.record.build_record` gives a consented read or search
  (random ids, 500 practitioners, 20,000 people); leaf bytes by orjson with sorted keys,
  which equals RFC 8785 for this shape (checked on the first 2,000 against
  `audit.canonical.canonical_bytes`); the HMAC of the service (`record_authenticator`);
  inserted with multi-row INSERTs;
- the log over them: leaf hashes, chain hashes, the Merkle nodes of the stored levels
  and a signed head every 1,500 records (one per sequencer tick at 3,000 records/s;
  `--head-every`), computed with the sequencer's own code (`CompactRange`,
  `chain_hash_from_leaf_hash`, `tree_head_json`) in memory and inserted in bulk;
- for proofs (`--proof-size`): leaves and stored nodes only, every level from the one
  below, with the driver's executemany, one signed head, and records only at the 1,000
  sampled indices (a proof reads only its own record).
Then the timed steps go through the service's code: `AuditStore.verify` (what `dossier
audit verify` runs, with 1 and 2 processes) and the CLI itself; `AuditStore.append_many`
(requests, in a writer process) and `AuditStore.integrate` (the sequencer); the signed
size, `record_at` + `leaf_of` and `inclusion` (what `/audit/proof/inclusion` reads, 3
statements). Each timed step is repeated and the median reported. `--keep DIR` keeps the
generated log (and the PostgreSQL database) for the next run.

    .venv/bin/python bench/bench_audit_scale.py --database sqlite --records 1000000
    .venv/bin/python bench/bench_audit_scale.py --database postgres --records 1000000
    .venv/bin/python bench/bench_audit_scale.py --database sqlite --proof-size 10000000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, delete, insert, text
from sqlalchemy.orm import Session

from audit.canonical import canonical_bytes
from audit.chain import GENESIS, chain_hash_from_leaf_hash
from audit.checkpoint import Checkpoint, public_jwk, tree_head_json
from audit.hashing import leaf_hash
from audit.merkle import CompactRange, is_stored_level
from audit.proof import verify_inclusion
from audit.record import Agent, Event, build_record
from audit.store import AuditStore
from dossier.app import audit_origin, checkpoint_wal, record_authenticator
from dossier.background import next_start
from dossier.crypto import LocalFileKeyProvider
from dossier.db.engine import make_engine, upgrade
from dossier.db.models import audit_tables
from dossier.settings import load_settings

START = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
HEAD_EVERY = 1500  # one signed head per sequencer tick (0.5 s) at 3,000 records/s
CHUNK = 10_000
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def records(n: int, seed: int = 6962) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    key = rng.randbytes(32)
    staff = [(f"Practitioner/{uid(rng)}", f"Organization/{uid(rng)}") for _ in range(500)]
    people = [uid(rng) for _ in range(20_000)]
    template = [build_record(
        record_id="x", recorded=START, request_id="r", purpose="TREAT", query_key=key,
        agent=Agent(who="Practitioner/p", role="practitioner", client="portal",
                    organizations=("Organization/o",)), patient="Patient/x",
        events=[Event("search", "Task", query=[("patient", "Patient/x")])])]
    del template
    for i in range(n):
        who, org = rng.choice(staff)
        pid = rng.choice(people)
        rtype = rng.choice(("Task", "Patient", "Observation", "CareTeam"))
        events = ([Event("read", rtype, uid(rng))] if rng.random() < 0.6 else
                  [Event("search", rtype, query=[("patient", f"Patient/{pid}")])])
        yield build_record(
            record_id=uid(rng), recorded=START + timedelta(seconds=i), request_id=uid(rng),
            agent=Agent(who=who, role="practitioner", client="portal",
                        organizations=(org,)),
            patient=f"Patient/{pid}", events=events, purpose="TREAT", query_key=key)


def leaf_of(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


class Log:
    """A data directory and database laid out like the service's, with its keys."""

    def __init__(self, root: Path, database: str) -> None:
        self.data_dir = root / "data"
        self.url: str | None = None
        # --keep DIR: a log built by an earlier run in DIR is used again (its size is read
        # back); a new one is kept there for the next run
        self.reused = self.data_dir.exists()
        if not self.reused:
            self.data_dir.mkdir(mode=0o700)
        if database == "postgres":
            named = root / "pg-database"
            if self.reused and named.exists():
                name = named.read_text().strip()
            else:
                name = f"bench_audit_{uuid.uuid4().hex[:8]}"
                admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                admin.dispose()
                named.write_text(name)
            self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
            self.db_name = name
        self.settings = load_settings(data_dir=self.data_dir, database_url=self.url)
        self.engine = make_engine(self.settings.sqlalchemy_url)
        upgrade(self.engine)
        keys = LocalFileKeyProvider(self.data_dir)
        self.signer = keys.audit_signer()
        self.jwk = public_jwk(self.signer.public_key())
        self.store = AuditStore(audit_tables, audit_origin(self.settings),
                                record_authenticator(keys))
        self.size = 0
        self.head_every = HEAD_EVERY
        self.cpu: list[float] = []  # CPU seconds of this process (SQLite: all the work)
        self.worker_cpu: list[float] = []  # of verify's worker processes
        self.compact = CompactRange()
        self.chain = GENESIS
        if self.reused:
            with Session(self.engine) as s:
                self.size = self.store.signed_size(s)
                head = self.store.latest_head_row(s)
                self.proof_root = bytes(head.root_hash) if head is not None else b""

    def drop(self) -> None:
        self.engine.dispose()
        if self.url:
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{self.db_name}" WITH (FORCE)'))
            admin.dispose()

    def bulk(self, n: int) -> float:
        """Insert n records and their sequenced log in bulk; returns seconds."""
        began = time.perf_counter()
        auth = self.store.authenticator
        assert auth is not None
        t = audit_tables
        gen = records(n)
        checked = 0
        while self.size < n:
            recs, leaves, nodes, heads = [], [], [], []
            for record in (next(gen) for _ in range(min(CHUNK, n - self.size))):
                leaf = leaf_of(record)
                if checked < 2000:
                    assert leaf == canonical_bytes(record), "orjson differs from RFC 8785"
                    checked += 1
                recs.append({"id": record["id"], "recorded_at": START,
                             "patient_id": record["patient"][8:],
                             "agent": record["agent"]["who"], "action": record["action"],
                             "outcome": record["outcome"], "record": record, "leaf": leaf,
                             "mac": auth.mac(leaf)})
                lh = leaf_hash(leaf)
                self.chain = chain_hash_from_leaf_hash(self.chain, lh)
                leaves.append({"leaf_index": self.size, "record_id": record["id"],
                               "leaf_hash": lh, "chain_hash": self.chain})
                nodes += [{"level": lv, "node_index": ix, "hash": h}
                          for lv, ix, h in self.compact.append(lh)
                          if lv and is_stored_level(lv)]
                self.size += 1
                if self.size % self.head_every == 0 or self.size == n:
                    head = tree_head_json(Checkpoint(self.store.origin, self.size,
                                                     self.compact.root()), self.signer, START)
                    heads.append({"tree_size": self.size, "root_hash": self.compact.root(),
                                  "signed_at": START, "checkpoint": head["checkpoint"],
                                  "signature": __import__("base64").b64decode(
                                      head["signature"])})
            with Session(self.engine) as s, s.begin():
                for table, rows in ((t.records, recs), (t.leaves, leaves), (t.nodes, nodes),
                                    (t.tree_heads, heads)):
                    if rows:
                        s.execute(insert(table), rows)
                s.execute(delete(t.pending))  # sequenced here, in bulk
        if self.url is None:
            checkpoint_wal(self.engine)
        else:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("VACUUM ANALYZE")
        return time.perf_counter() - began

    def bulk_tree(self, n: int, sample: set[int]) -> float:
        """A log of n leaves for proofs, in bulk: leaf and chain hashes, then every level of
        perfect nodes from the one below, inserted with the driver's executemany; one
        signed head. Only the records at the `sample` indices exist (proofs read those);
        the other leaves' bytes are their ids and no record is written for them (a proof
        reads only its own record). Returns seconds."""
        from audit.hashing import node_hash

        began = time.perf_counter()
        auth = self.store.authenticator
        assert auth is not None
        t = audit_tables
        gen = records(len(sample))
        level: list[bytes] = []
        recs = []
        chain = GENESIS
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            if self.url is None:
                cur.execute("BEGIN")  # the engine's connections are in autocommit mode

            def put(table: Any, rows: Any) -> None:
                sql = str(insert(table).compile(dialect=self.engine.dialect))
                if self.url is None:  # qmark: tuples; psycopg (pyformat): mappings
                    cur.executemany(sql, rows)
                else:
                    cur.executemany(sql, [dict(zip(table.c.keys(), r, strict=True))
                                          for r in rows])

            rows = []
            for i in range(n):
                rid = f"bulk-{i}"
                if i in sample:
                    record = next(gen)
                    record["id"] = rid
                    leaf = leaf_of(record)
                    recs.append((rid, START, "p", "a", "read", "success", record, leaf,
                                 auth.mac(leaf)))
                else:
                    leaf = rid.encode()
                lh = leaf_hash(leaf)
                chain = chain_hash_from_leaf_hash(chain, lh)
                level.append(lh)
                rows.append((i, rid, lh, chain))
                if len(rows) == 200_000:
                    put(t.leaves, rows)
                    rows = []
            if rows:
                put(t.leaves, rows)
            lv = 0
            while level:
                for at in range(0, len(level), 200_000):
                    if lv and is_stored_level(lv):  # level 0 is the leaf rows
                        put(t.nodes, [(lv, at + k, h) for k, h in
                                      enumerate(level[at:at + 200_000])])
                level = [node_hash(level[k], level[k + 1]) for k in range(0, len(level) - 1,
                                                                          2)]
                lv += 1
            conn.commit()
        finally:
            conn.close()
        with Session(self.engine) as s, s.begin():
            for rid, at, pid, agent, action, outcome, record, leaf, mac in recs:
                s.execute(insert(t.records).values(
                    id=rid, recorded_at=at, patient_id=pid, agent=agent, action=action,
                    outcome=outcome, record=record, leaf=leaf, mac=mac))
            s.execute(delete(t.pending))
            self.size = n
            root = self.store.root_at(s, n)
            head = tree_head_json(Checkpoint(self.store.origin, n, root), self.signer, START)
            s.execute(insert(t.tree_heads).values(
                tree_size=n, root_hash=root, signed_at=START, checkpoint=head["checkpoint"],
                signature=__import__("base64").b64decode(head["signature"])))
        self.proof_root = root
        if self.url is not None:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("VACUUM ANALYZE")
        return time.perf_counter() - began

    def verify(self, jobs: int = 1) -> float:
        """`AuditStore.verify` in a read snapshot, as the CLI runs it; CPU seconds of this
        process (SQLite: the database's work too; worker processes not counted)."""
        import resource

        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        began, cpu = time.perf_counter(), time.process_time()
        with Session(self.engine.execution_options(dossier_read=True)) as s:
            result = self.store.verify(s, self.jwk, jobs=jobs)
        elapsed = time.perf_counter() - began
        self.cpu.append(time.process_time() - cpu)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.worker_cpu.append(after.ru_utime + after.ru_stime - children.ru_utime
                               - children.ru_stime)
        assert result.ok, result.detail
        return elapsed

    def cli(self, jobs: int = 2) -> float:
        env = {"PATH": "/usr/bin:/bin"}
        if self.url:
            env["DATABASE_URL"] = self.url
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "dossier", "audit", "verify",
                               "--data-dir", str(self.data_dir), "--jobs", str(jobs)],
                              capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - began
        assert done.returncode == 0, done.stdout + done.stderr
        return elapsed

    def sequencer(self, count: int, per_tx: int = 10) -> tuple[float, float, float]:
        """Requests append `count` records (per_tx a transaction, as requests do); then the
        sequencer integrates them. Returns (appends/s of the sequencer, seconds of one tick
        with 3,000 pending = one second of traffic at the target, idle tick seconds)."""
        gen = records(count + 3000, seed=self.size + count)

        def write(k: int) -> None:
            for _ in range(0, k, per_tx):
                with Session(self.engine) as s, s.begin():
                    self.store.append_many(s, [(next(gen), "p", "a")
                                               for _ in range(per_tx)], recorded_at=START)

        write(count)
        began = time.perf_counter()
        pending = count
        cpu = time.process_time()
        while pending > 0:
            before = self.size
            with Session(self.engine) as s, s.begin():
                self.size = self.store.integrate(s, self.signer, START)
            pending -= self.size - before
        rate = count / (time.perf_counter() - began)
        print(f"  (sequencer: {count / (time.process_time() - cpu):,.0f} appends per CPU "
              "second)")
        write(3000)
        began, cpu = time.perf_counter(), time.process_time()
        with Session(self.engine) as s, s.begin():
            self.size = self.store.integrate(s, self.signer, START)
        tick = time.perf_counter() - began
        print(f"  (tick with 3,000 pending: {time.process_time() - cpu:.3f} s CPU)")
        began = time.perf_counter()
        with Session(self.engine) as s, s.begin():
            self.store.integrate(s, self.signer, START)
        idle = time.perf_counter() - began
        return rate, tick, idle

    def latency(self, seconds: float, rate: int, period: float,
                per_tx: int) -> tuple[float, float, float, int, float]:
        """A writer process commits `rate` records/s (per_tx per transaction, through
        `AuditStore.append_many`) for `seconds`, while this process runs the sequencer as
        the service does (`integrate` every `period`, start to start). For every record:
        time from its commit to the commit of the first head that includes it
        (CLOCK_MONOTONIC, shared by the two processes). Returns (median, p95, max,
        records, achieved rate)."""
        import multiprocessing
        import threading

        stop = threading.Event()
        signed: list[tuple[float, int]] = []

        def sequencer() -> None:  # as dossier.background.periodic(fixed_rate=True) runs it
            due = time.monotonic()
            while not stop.is_set():
                with Session(self.engine) as s, s.begin():
                    size = self.store.integrate(s, self.signer, START)
                signed.append((time.monotonic(), size))
                due = next_start(due, time.monotonic(), period)
                stop.wait(max(0.0, due - time.monotonic()))

        thread = threading.Thread(target=sequencer, daemon=True)
        thread.start()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            committed, achieved = pool.apply(_writer, (
                str(self.data_dir), self.url, seconds, rate, per_tx, self.size * 7 + 1))
        while not signed or signed[-1][1] < self.size + len(committed):
            time.sleep(0.05)
        stop.set()
        thread.join()
        with Session(self.engine) as s:
            where = self.store.index_of(s, [rid for rid, _ in committed])
        heads = sorted(signed)
        delays = []
        for rid, at in committed:
            index = where[rid]
            first = next(t for t, size in heads if size > index and t >= at)
            delays.append(first - at)
        self.size = heads[-1][1]
        delays.sort()
        return (statistics.median(delays), delays[int(len(delays) * 0.95)], delays[-1],
                len(delays), achieved)

    def proofs(self, indices: list[int], size: int) -> list[float]:
        """What /audit/proof/inclusion reads, per proof in its own transaction: the signed
        size, the record at the index, its leaf bytes, the audit path."""
        from sqlalchemy import event

        times = []
        statements: list[str] = []
        engine = self.engine.execution_options(dossier_read=True)  # as the route's unit

        def count(_c: Any, _cur: Any, sql: str, *_a: Any) -> None:
            if sql.startswith("SELECT"):
                statements.append(sql)

        event.listen(self.engine, "before_cursor_execute", count)
        cpu = time.process_time()
        for index in indices:
            began = time.perf_counter()
            with Session(engine) as s:
                assert self.store.signed_size(s) == size
                row = self.store.record_at(s, index)
                assert row is not None
                leaf = self.store.leaf_of(s, row)
                path = self.store.inclusion(s, index, size)
            times.append(time.perf_counter() - began)
            assert leaf is not None
            verify_inclusion(leaf_hash(leaf), index, size, path, self.proof_root)
        self.cpu.append((time.process_time() - cpu) / len(indices))
        event.remove(self.engine, "before_cursor_execute", count)
        self.statements = len(statements) / len(indices)
        return times


def _writer(data_dir: str, url: str | None, seconds: float, rate: int, per_tx: int,
            seed: int) -> tuple[list[tuple[str, float]], float]:
    """The requests' side of `Log.latency`, in its own process (its own GIL, as other
    server processes or threads would be): (record id, commit time) of each record."""
    settings = load_settings(data_dir=Path(data_dir), database_url=url)
    engine = make_engine(settings.sqlalchemy_url)
    store = AuditStore(audit_tables, audit_origin(settings),
                       record_authenticator(LocalFileKeyProvider(Path(data_dir))))
    gen = records(int(seconds * rate) + per_tx, seed=seed)
    committed: list[tuple[str, float]] = []
    began = time.monotonic()
    sent = 0
    while time.monotonic() - began < seconds:
        due = began + sent / rate
        if time.monotonic() < due:
            time.sleep(due - time.monotonic())
        batch = [next(gen) for _ in range(per_tx)]
        with Session(engine) as s, s.begin():
            store.append_many(s, [(r, "p", "a") for r in batch], recorded_at=START)
        at = time.monotonic()
        committed += [(r["id"], at) for r in batch]
        sent += per_tx
    achieved = sent / (time.monotonic() - began)
    engine.dispose()
    return committed, achieved


def median(fn: Callable[[], float], repeat: int) -> tuple[float, list[float]]:
    runs = [fn() for _ in range(repeat)]
    return statistics.median(runs), runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--appends", type=int, default=30_000)
    p.add_argument("--head-every", type=int, default=HEAD_EVERY, help="bulk: a signed head "
                   "every N records")
    p.add_argument("--period", type=float, default=0.5, help="sequencer period (s)")
    p.add_argument("--rate", type=int, default=3000, help="latency: records/s offered")
    p.add_argument("--per-tx", type=int, default=100, help="latency: records per "
                   "transaction (one writer's commits are bounded by the disk's fsync)")
    p.add_argument("--proof-size", type=int, default=0, help="build a log of this size "
                   "and time inclusion proofs at it (instead of verify)")
    p.add_argument("--keep", metavar="DIR", help="build the log in DIR and keep it (the "
                   "database too); a later run with the same DIR uses it again")
    p.add_argument("--steps", default="verify,cli,latency,sequencer",
                   help="comma-separated: verify, cli, latency, sequencer")
    args = p.parse_args(argv)
    print(f"load before: {os.getloadavg()}")
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = Path(args.keep)
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bench-audit-scale-")))
        log = Log(root, args.database)
        log.head_every = args.head_every
        try:
            run(log, args)
        finally:
            if not args.keep:
                log.drop()
            print(f"load after: {os.getloadavg()}")


def run(log: Log, args: argparse.Namespace) -> None:
    steps = set(args.steps.split(","))
    n = args.proof_size or args.records
    if args.proof_size:
        rng = random.Random(9162)
        sample = sorted(rng.sample(range(n), 1000))
        if log.reused:
            assert log.size == n, f"the kept log has {log.size:,} leaves"
        else:
            print(f"bulk log of {n:,} leaves: {log.bulk_tree(n, set(sample)):.1f} s")
        for _ in range(args.repeat):
            rng.shuffle(sample)
            times = sorted(log.proofs(sample, n))
            print(f"inclusion proof at {n:,}: median "
                  f"{statistics.median(times)*1e3:.2f} ms, p95 "
                  f"{times[int(len(times)*0.95)]*1e3:.2f} ms (1,000 proofs); "
                  f"CPU {log.cpu[-1]*1e3:.2f} ms per proof; {log.statements:.1f} "
                  "statements per proof")
        return
    if log.reused:
        print(f"kept log of {log.size:,} records")
        n = log.size
    else:
        print(f"bulk {n:,} records: {log.bulk(n):.1f} s")
    if "verify" in steps:
        for jobs in (1, 2):
            log.cpu, log.worker_cpu = [], []
            med, runs = median(lambda jobs=jobs: log.verify(jobs), args.repeat)
            print(f"AuditStore.verify {n:,}, jobs={jobs}: median {med:.2f} s runs "
                  f"{[round(r, 2) for r in runs]} -> {n/med:,.0f} records/s; CPU median: "
                  f"this process {statistics.median(log.cpu):.2f} s, its worker "
                  f"{statistics.median(log.worker_cpu):.2f} s (load "
                  f"{os.getloadavg()[0]:.1f})")
    if "cli" in steps:
        for jobs in (1, 2):
            cli_med, cli_runs = median(lambda jobs=jobs: log.cli(jobs), args.repeat)
            print(f"CLI dossier audit verify --jobs {jobs}: median {cli_med:.2f} s runs "
                  f"{[round(r, 2) for r in cli_runs]} (load {os.getloadavg()[0]:.1f})")
    if "latency" in steps:
        for _ in range(args.repeat):
            med_l, p95, worst, count, achieved = log.latency(10, args.rate, args.period,
                                                             args.per_tx)
            print(f"head latency at {log.size:,} ({args.rate:,} records/s offered in "
                  f"transactions of {args.per_tx}, {achieved:,.0f}/s achieved; sequencer "
                  f"every {args.period} s; {count:,} records): median {med_l:.3f} s, "
                  f"p95 {p95:.3f} s, max {worst:.3f} s")
    if "sequencer" in steps:
        for _ in range(args.repeat):
            rate, tick, idle = log.sequencer(args.appends)
            print(f"sequencer at {log.size:,}: {rate:,.0f} appends/s; tick with 3,000 "
                  f"pending {tick:.3f} s; idle tick {idle:.3f} s")

if __name__ == "__main__":
    main()
