"""Past one machine, measured by simulation (issue 14 item 5, SPEC §15): does a consented
read or search on a PostgreSQL database of 100,000 dossiers, partitioned by patient
(`dossier db partition`), cost more than on a 10,000-dossier database?

    python bench/partition.py --small 10000 --large 100000 --audit 10000000

Databases (throwaway, dropped at the end), all alive during the measure:
- `small`: `--small` dossiers, the plain (unpartitioned) schema: the reference;
- `small·part`: a copy of `small` (CREATE DATABASE … TEMPLATE), then partitioned;
- `large·part`: `--large` dossiers loaded into the plain schema, then converted by
  `dossier.db.partition.partition` (timed: the one-transaction conversion an operator
  runs), then `--audit` audit records loaded into its monthly partitions;
- `large` (with `--large-plain`): a copy of the large database before its conversion.

Dossiers: bench/scale.py's loader — a Patient (sealed under its own data key), one Consent
and ten Tasks each, every row built by the service's own storage code
(`FieldSealer.seal`, `Repository._index_rows`, `access_index.rows_for`) — written with
PostgreSQL COPY instead of multi-row INSERTs (the same rows). Audit records: 2,000 built
by `audit.record.build_record` and the service's `AuditStore` row code (leaf bytes +
HMAC), COPYed to a scratch table, then replicated in SQL (INSERT … SELECT
generate_series) with fresh ids, times spread over the `--audit-months` months before now
and the loaded patients, triggers off (`session_replication_role = replica`): they stand
for the log's volume and its index keys, are not sequenced (no leaves) and their JSON
keeps its template's id. The small databases get `--audit` × small / large records.

Timing: in-process through Starlette's TestClient, one request at a time, the practitioner
granted by `--caseload` dossiers in every database; calls interleaved one by one across
the databases (their order rotating); p50 and p90 of `--rounds` × `--per-round` calls.
Then EXPLAIN (ANALYZE) of the statements over `resources` that each request runs.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import TASKS_PER_DOSSIER, Loader, check_templates, grant_plan  # noqa: E402
from world import PG_ADMIN_URL, build_app  # noqa: E402

from audit.record import Agent, Event, build_record  # noqa: E402
from dossier.core.context import RequestContext  # noqa: E402
from dossier.core.repository import NullAudit, OpenPolicy, Repository  # noqa: E402
from dossier.db.models import access_grants  # noqa: E402
from dossier.db.partition import partition  # noqa: E402
from dossier.seed.groups import SERVER  # noqa: E402
from tests import factories as f  # noqa: E402

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # scale.py's rows are written "now" = this
BATCH = 1000


# ------------------------------------------------------------------ COPY of our own rows
def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return value


def copy_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """COPY rows (dicts keyed by column name, as given to `insert(table)`) into table."""
    if not rows:
        return
    columns = [c.name for c in table.columns if c.name in rows[0]]
    raw = session.connection().connection.driver_connection
    listed = ", ".join(columns)
    with raw.cursor() as cur, cur.copy(
            f"COPY {table.name} ({listed}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_cell(row.get(c)) for c in columns])


def load_dossiers(app: Any, dossiers: int, granted: dict[str, int]) -> dict[str, Any]:
    """scale.py's generation, written by COPY. `granted[practitioner]` dossiers grant that
    practitioner; the rest a crowd of 200 others."""
    loader = Loader(app)
    engine = app.state.runtime.engine
    plan = grant_plan(granted, dossiers)
    sample: dict[str, list[tuple[str, list[str]]]] = {}
    patients: list[str] = []
    started = time.perf_counter()
    # the usual bulk-load step for a foreign key on the search index, checked once at the
    # end (row by row, its cached plan on a table that was empty scanned it: O(n²)); the
    # schema has none since migration 0023, so this finds nothing there
    with engine.begin() as conn:
        keys = conn.execute(text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = "
            "'f' AND conrelid = 'search_index'::regclass")).all()
        for name, _definition in keys:
            conn.exec_driver_sql(f'ALTER TABLE search_index DROP CONSTRAINT "{name}"')
    for start in range(0, dossiers, BATCH):
        with Session(engine, expire_on_commit=False) as session, session.begin():
            repo = Repository(session, RequestContext(principal=SERVER, now=NOW),
                              policy=OpenPolicy(), sealer=app.state.runtime.sealer(),
                              audit=NullAudit())
            for n in range(start, min(start + BATCH, dossiers)):
                made = loader.dossier(repo, n, plan[n])
                sample.setdefault(plan[n], []).append(made)
                patients.append(made[0])
            for table, rows in loader.rows.items():
                copy_rows(session, table, rows)
            copy_rows(session, access_grants, loader.grants)
            loader.rows, loader.grants = {}, []
        if (start // BATCH) % 10 == 9:
            rate = (start + BATCH) / (time.perf_counter() - started)
            print(f"    {start + BATCH:,} dossiers ({rate:.0f}/s)", file=sys.stderr)
    with engine.begin() as conn:
        for name, definition in keys:
            conn.exec_driver_sql(f'ALTER TABLE search_index ADD CONSTRAINT "{name}" '
                                 f"{definition}")
    return {"sample": sample, "patients": patients, "seconds": time.perf_counter() - started}


def load_audit(app: Any, count: int, patients: list[str], months: int,
               templates: int = 2000, seed: int = 14) -> float:
    """`count` audit records over the `months` months before NOW (see the module doc):
    `templates` records built by the service's own code (`build_record`, then
    `AuditStore._row`: canonical leaf bytes and their HMAC) are COPYed into a scratch
    table, then replicated by one INSERT … SELECT per million rows, each with a fresh
    id, its own time and one of the loaded patients (its JSON keeps the template's id)."""
    if count <= 0:
        return 0.0
    rng = random.Random(seed)
    store = app.state.runtime.audit_store
    engine = app.state.runtime.engine
    staff = [(f"Practitioner/{uuid.UUID(int=rng.getrandbits(128), version=4)}",
              f"Organization/{uuid.UUID(int=rng.getrandbits(128), version=4)}")
             for _ in range(500)]
    key = rng.randbytes(32)
    rows = []
    for i in range(templates):
        who, org = staff[i % len(staff)]
        pid = patients[rng.randrange(len(patients))]
        events = ([Event("read", "Task", str(uuid.uuid4()))] if i % 5 < 3 else
                  [Event("search", "Task", query=[("patient", f"Patient/{pid}")])])
        record = build_record(
            record_id=str(uuid.uuid4()), recorded=NOW, request_id=str(uuid.uuid4()),
            agent=Agent(who=who, role="practitioner", client="portal", organizations=(org,)),
            patient=f"Patient/{pid}", events=events, purpose="TREAT", query_key=key)
        rows.append({"n": i, **store._row(record, pid, who, NOW)})
    started = time.perf_counter()
    span = months * 30 * 86400
    with Session(engine) as session, session.begin():
        session.execute(text(
            "CREATE UNLOGGED TABLE bench_audit_templates (n int PRIMARY KEY, agent text, "
            "action text, outcome text, record jsonb, leaf bytea, mac bytea)"))
        session.execute(text("CREATE UNLOGGED TABLE bench_patients (n int PRIMARY KEY, "
                             "pid text)"))
        raw = session.connection().connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy("COPY bench_audit_templates FROM STDIN") as copy:
                for r in rows:
                    copy.write_row([r["n"], r["agent"], r["action"], r["outcome"],
                                    orjson.dumps(r["record"]).decode(), r["leaf"], r["mac"]])
            with cur.copy("COPY bench_patients FROM STDIN") as copy:
                for n, pid in enumerate(patients):
                    copy.write_row([n, pid])
    step = 1_000_000
    for low in range(0, count, step):
        high = min(low + step, count) - 1
        with Session(engine) as session, session.begin():
            session.execute(text("SET LOCAL session_replication_role = replica"))
            session.execute(text(
                "INSERT INTO audit_records (id, recorded_at, patient_id, agent, action, "
                "outcome, record, leaf, mac) SELECT gen_random_uuid()::text, "
                "CAST(:start AS timestamptz) + make_interval(secs => g * :gap), p.pid, "
                "t.agent, t.action, t.outcome, t.record, t.leaf, t.mac "
                "FROM generate_series(CAST(:low AS int), CAST(:high AS int)) g "
                "JOIN bench_audit_templates t ON t.n = g % :k "
                "JOIN bench_patients p ON p.n = (g::bigint * 7919) % :np"),
                {"start": NOW - timedelta(seconds=span), "gap": span / count, "low": low,
                 "high": high, "k": templates, "np": len(patients)})
        done = high + 1
        print(f"    {done:,} audit records ({done / (time.perf_counter() - started):.0f}/s)",
              file=sys.stderr)
    with Session(engine) as session, session.begin():
        session.execute(text("DROP TABLE bench_audit_templates, bench_patients"))
    return time.perf_counter() - started


# ------------------------------------------------------------------ databases
class Databases:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def url(self, name: str) -> str:
        return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        name = f"dossier_bench_part_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            extra = f' TEMPLATE "{template}"' if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{extra}'))
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


class Site:
    """One database and the app on it, with the directory the measure needs."""

    def __init__(self, label: str, data_dir: Path, url: str) -> None:
        self.label = label
        self.data_dir = data_dir
        self.url = url
        self.app = build_app(data_dir, url)
        self.client = TestClient(self.app)
        self.client.__enter__()
        self.sample: tuple[str, list[str]] | None = None
        self.headers: dict[str, str] = {}

    def admin(self) -> dict[str, str]:
        token = self.app.state.dev_issuer.mint("Operator/admin", ["admin"], None, 86400)
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    def practitioner(self) -> str:
        h = self.admin()
        org = self.client.post("/fhir/Organization", json=f.organization(), headers=h).json()
        pract = self.client.post("/fhir/Practitioner", json=f.practitioner("Partition"),
                                 headers=h).json()
        ref = f"Practitioner/{pract['id']}"
        self.client.post("/fhir/PractitionerRole", json=f.practitioner_role(
            ref, f"Organization/{org['id']}", "perssocialworker"), headers=h)
        return ref

    def reader(self, ref: str, sample: tuple[str, list[str]]) -> None:
        self.sample = sample
        token = self.app.state.dev_issuer.mint(ref, ["practitioner"], None, 86400)
        self.headers = {"Authorization": f"Bearer {token}"}

    def pause(self) -> None:
        """Close the app's pooled connections (a conversion locks the tables)."""
        self.app.state.runtime.engine.dispose()

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.app.state.runtime.engine.dispose()


PAGE_COST: float | None = None  # --random-page-cost, for every database of the run


def analyze(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
        if PAGE_COST is not None:  # a database setting: new sessions plan with it
            name = conn.execute(text("SELECT current_database()")).scalar_one()
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET random_page_cost = '
                                 f"{float(PAGE_COST)}")
    engine.dispose()


def build(args: argparse.Namespace, dbs: Databases) -> tuple[list[Site], dict[str, Any]]:
    from dossier.db.engine import make_engine

    facts: dict[str, Any] = {}
    sites: list[Site] = []
    small_audit = args.audit * args.small // args.large
    for label, size, audit in (("small", args.small, small_audit),
                               ("large", args.large, args.audit)):
        name = dbs.create()
        data_dir = dbs.root / f"{label}-data"
        site = Site(label, data_dir, dbs.url(name))
        ref = site.practitioner()
        print(f"{label}: loading {size:,} dossiers", file=sys.stderr)
        loaded = load_dossiers(site.app, size, {ref: args.caseload})
        facts[f"{label}: load {size:,} dossiers ({size * (TASKS_PER_DOSSIER + 2):,} "
              "resources) by COPY, s"] = round(loaded["seconds"])
        sample = loaded["sample"][ref][0]
        site.pause()
        analyze(site.url)
        plain: Site | None = None
        if label == "small":  # the plain one is the reference; a twin is partitioned
            plain, part_url = site, dbs.url(dbs.create(template=name))
        else:  # the large one is partitioned (a plain twin only when asked)
            if args.large_plain:
                plain = Site("large", data_dir, dbs.url(dbs.create(template=name)))
            part_url = site.url
        engine = make_engine(part_url)
        began = time.perf_counter()
        report = partition(engine, args.partitions, audit_months=args.audit_future,
                           since=NOW - timedelta(days=31 * args.audit_months))
        facts[f"{label}: `db partition` conversion, s"] = round(time.perf_counter() - began, 1)
        facts[f"{label}: rows copied"] = report.tables
        engine.dispose()
        parted = Site("small·part", data_dir, part_url) if label == "small" else site
        parted.label = f"{label}·part"
        for s in (plain, parted):
            if s is None:
                continue
            s.reader(ref, sample)
            if audit:
                s.pause()
                print(f"{s.label}: loading {audit:,} audit records", file=sys.stderr)
                secs = load_audit(s.app, audit, loaded["patients"], args.audit_months)
                facts[f"{s.label}: load {audit:,} audit records by COPY, s"] = round(secs)
            s.pause()
            analyze(s.url)
            sites.append(s)
    return sites, facts


# ------------------------------------------------------------------ the measure
def requests_of(site: Site) -> dict[str, Callable[[], None]]:
    assert site.sample is not None
    pid, tasks = site.sample
    c, h = site.client, site.headers

    def read() -> None:
        assert c.get(f"/fhir/Task/{tasks[3]}", headers=h).status_code == 200

    def by_patient() -> None:
        r = c.get("/fhir/Task", params={"patient": f"Patient/{pid}"}, headers=h)
        assert r.status_code == 200 and r.json()["total"] == TASKS_PER_DOSSIER, r.text

    def by_date() -> None:
        r = c.get("/fhir/Task", params={"authored-on": "ge2020-01-01", "_count": "20"},
                  headers=h)
        assert r.status_code == 200, r.text

    return {"read `Task/{id}`": read, "search `Task?patient=…`": by_patient,
            "search `Task?authored-on=ge…&_count=20`": by_date}


def measure(sites: list[Site], rounds: int, per_round: int) -> dict[str, dict[str, list[float]]]:
    """One call at a time, databases interleaved call by call (their order rotating), so
    that a burst of load on the shared machine falls on all of them alike."""
    out: dict[str, dict[str, list[float]]] = {}
    fns = {s.label: requests_of(s) for s in sites}
    for s in sites:  # warm every cache once
        for fn in fns[s.label].values():
            fn()
    for i in range(rounds * per_round):
        turn = sites[i % len(sites):] + sites[:i % len(sites)]
        for name in fns[sites[0].label]:
            for s in turn:
                t = time.perf_counter()
                fns[s.label][name]()
                out.setdefault(name, {}).setdefault(s.label, []).append(
                    (time.perf_counter() - t) * 1000)
    return out


PARTS = re.compile(r" on (\w+?)_p\d+ ")
TIMES = re.compile(r"(Planning|Execution) Time: ([0-9.]+) ms")


def explain(site: Site) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE) of every SELECT over `resources` that the three requests run:
    the plan, planning and execution time, and the partitions each table scans."""
    engine = site.app.state.runtime.engine
    out: list[dict[str, Any]] = []
    for name, fn in requests_of(site).items():
        seen: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                    executemany: bool, seen: list[tuple[str, Any]] = seen) -> None:
            seen.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", capture)
        fn()
        event.remove(engine, "before_cursor_execute", capture)
        for statement, parameters in seen:
            flat = " ".join(statement.split())
            if not flat.startswith(("SELECT", "WITH")) or "FROM resources" not in flat:
                continue
            with engine.connect() as conn:
                cur = conn.connection.driver_connection.cursor()
                cur.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) "
                            + statement, parameters)
                plan = [str(r[0]) for r in cur.fetchall()]
            times = dict(TIMES.findall("\n".join(plan)))
            scanned: dict[str, int] = {}
            for line in plan:
                for table in PARTS.findall(line):
                    scanned[table] = scanned.get(table, 0) + 1
            out.append({"request": name, "statement": flat, "plan": plan,
                        "planning": float(times.get("Planning", 0)),
                        "execution": float(times.get("Execution", 0)), "scanned": scanned})
    return out


def _what(statement: str) -> str:
    """A short name for a statement of a request."""
    if statement.startswith("SELECT count(*)"):
        return "search: the count"
    if statement.startswith("WITH matches AS MATERIALIZED"):
        return "search: the page (few matches, sorted)"
    if "ORDER BY" in statement:
        return "search: the page"
    if "patient_keys" in statement:
        return "read: the row by id, with its data key"
    if statement.startswith("SELECT resources.res_type, resources.content FROM resources"):
        return "actor: Practitioner + PractitionerRole"
    if "resources.patient_id IN" in statement:
        return "consent: the person's Consents"
    return statement[:60]


def explain_table(plans: dict[str, list[dict[str, Any]]]) -> list[str]:
    labels = list(plans)
    lines = ["| request · statement | " + " | ".join(
        f"{label}: plan / run ms (partitions scanned)" for label in labels) + " |",
             "|---|" + "---:|" * len(labels)]
    rows = zip(*plans.values(), strict=False)
    for row in rows:
        head = f"{row[0]['request']} · {_what(row[0]['statement'])}"
        cells = []
        for item in row:
            parts = ", ".join(f"{t} {n}" for t, n in item["scanned"].items()) or "—"
            cells.append(f"{item['planning']:.2f} / {item['execution']:.2f} ({parts})")
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    return lines


def _p50_p90(ms: list[float]) -> str:
    ordered = sorted(ms)
    return f"{statistics.median(ordered):.1f} ({ordered[int(0.9 * len(ordered))]:.1f})"


def _short(line: str, width: int = 150) -> str:
    """A plan line cut to `width` (the consent filters run to thousands of characters)."""
    return line if len(line) <= width else line[:width] + " …"


def table(results: dict[str, dict[str, list[float]]], labels: list[str]) -> list[str]:
    lines = ["| request | " + " | ".join(f"{label} p50 (p90) ms" for label in labels)
             + " | large·part / small | large·part / small·part |",
             "|---|" + "---:|" * (len(labels) + 2)]
    for name, by in results.items():
        cells = []
        for label in labels:
            ms = sorted(by[label])
            cells.append(f"{statistics.median(ms):.1f} ({ms[int(0.9 * len(ms))]:.1f})")
        big = statistics.median(by["large·part"])
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | **{big / statistics.median(by['small']):.2f}×** | "
                     f"{big / statistics.median(by['small·part']):.2f}× |")
    return lines


def _plain_small(args: argparse.Namespace, dbs: Databases, folder: str
                 ) -> tuple[str, Path, Site, str, str]:
    """`--small` dossiers loaded into a plain database, its statistics made, its site
    paused: (database name, data directory, site, the reader, a sample patient)."""
    name = dbs.create()
    data_dir = dbs.root / f"{folder}-data"
    plain = Site("plain", data_dir, dbs.url(name))
    ref = plain.practitioner()
    loaded = load_dossiers(plain.app, args.small, {ref: args.caseload})
    sample = loaded["sample"][ref][0]
    plain.pause()
    analyze(plain.url)
    return name, data_dir, plain, ref, sample


def sweep(args: argparse.Namespace, dbs: Databases) -> tuple[list[Site], dict[str, Any]]:
    """`--small` dossiers once, then one partitioned copy per count in `--sweep`."""
    from dossier.db.engine import make_engine

    name, data_dir, plain, ref, sample = _plain_small(args, dbs, "sweep")
    plain.reader(ref, sample)
    sites = [plain]
    facts: dict[str, Any] = {}
    for count in args.sweep:
        url = dbs.url(dbs.create(template=name))
        engine = make_engine(url)
        began = time.perf_counter()
        partition(engine, count)
        facts[f"× {count}: conversion s"] = round(time.perf_counter() - began, 1)
        engine.dispose()
        analyze(url)
        site = Site(f"× {count}", data_dir, url)
        site.reader(ref, sample)
        sites.append(site)
    return sites, facts


def writes(args: argparse.Namespace, dbs: Databases) -> list[str]:
    """What partitioning costs a write: the social worker's single creates and
    transaction Bundles of `--bundle` Tasks into one granted dossier, on `--small`
    dossiers plain and partitioned (interleaved call by call); ms per created Task."""
    from dossier.db.engine import make_engine

    name, data_dir, plain, ref, sample = _plain_small(args, dbs, "writes")
    url = dbs.url(dbs.create(template=name))
    engine = make_engine(url)
    partition(engine, args.partitions)
    engine.dispose()
    analyze(url)
    parted = Site(f"× {args.partitions}", data_dir, url)
    sites = [plain, parted]
    for site in sites:
        site.reader(ref, sample)
    patient = f"Patient/{sample[0]}"

    def one(site: Site) -> None:
        r = site.client.post("/fhir/Task", json=f.task(patient),
                             headers={**site.headers, "Content-Type": "application/fhir+json"})
        assert r.status_code == 201, r.text

    def bundle(site: Site) -> None:
        body = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": f.task(patient),
             "request": {"method": "POST", "url": "Task"}} for _ in range(args.bundle)]}
        r = site.client.post("/fhir", json=body, headers={
            **site.headers, "Content-Type": "application/fhir+json"})
        assert r.status_code == 200, r.text

    out: dict[str, dict[str, list[float]]] = {}
    for site in sites:  # warm
        one(site)
        bundle(site)
    for i in range(args.rounds * args.per_round):
        for s in sites[i % 2:] + sites[:i % 2]:
            for kind, fn, per in (("single create", one, 1),
                                  (f"Bundle of {args.bundle}", bundle, args.bundle)):
                if kind != "single create" and i % args.per_round:
                    continue  # one Bundle per round
                t = time.perf_counter()
                fn(s)
                out.setdefault(kind, {}).setdefault(s.label, []).append(
                    (time.perf_counter() - t) * 1000 / per)
    for site in sites:
        site.close()
    lines = [f"### Writes, {args.small:,} dossiers: ms per created Task, p50 (p90)\n",
             f"| write | plain | × {args.partitions} | ratio |", "|---|---:|---:|---:|"]
    for kind, by in out.items():
        ratio = statistics.median(by[parted.label]) / statistics.median(by["plain"])
        lines.append(f"| {kind} | {_p50_p90(by['plain'])} | {_p50_p90(by[parted.label])} "
                     f"| {ratio:.2f}× |")
    return lines


def planning_table(plans: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per request: planning and execution ms summed over its statements on `resources`."""
    labels = list(plans)
    lines = ["| request | " + " | ".join(f"{label}: plan + run ms" for label in labels) + " |",
             "|---|" + "---:|" * len(labels)]
    requests = list(dict.fromkeys(item["request"] for item in plans[labels[0]]))
    for name in requests:
        cells = []
        for label in labels:
            items = [i for i in plans[label] if i["request"] == name]
            cells.append(f"{sum(i['planning'] for i in items):.1f} + "
                         f"{sum(i['execution'] for i in items):.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", type=int, default=10_000)
    p.add_argument("--large", type=int, default=100_000)
    p.add_argument("--audit", type=int, default=10_000_000, help="audit records (large)")
    p.add_argument("--audit-months", type=int, default=24, help="months of past records")
    p.add_argument("--audit-future", type=int, default=12)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--caseload", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=10)
    p.add_argument("--large-plain", action="store_true",
                   help="also measure a plain copy of the large database")
    p.add_argument("--random-page-cost", type=float, help="ALTER DATABASE … SET "
                   "random_page_cost on every database of the run (1.1: SSD or in memory)")
    p.add_argument("--sweep", type=int, nargs="+", help="instead: `--small` dossiers, "
                   "plain and partitioned in each of these counts")
    p.add_argument("--writes", action="store_true", help="instead: creates and Bundles on "
                   "`--small` dossiers, plain and partitioned")
    p.add_argument("--bundle", type=int, default=100, help="--writes: entries per Bundle")
    args = p.parse_args()
    global PAGE_COST
    PAGE_COST = args.random_page_cost
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # so that the databases are dropped

    signal.signal(signal.SIGTERM, stop)
    check_templates()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dossier-bench-part-") as tmp:
        dbs = Databases(Path(tmp))
        sites: list[Site] = []
        try:
            if args.writes:
                print("\n".join(writes(args, dbs)))
                return 0
            if args.sweep:
                sites, facts = sweep(args, dbs)
                results = measure(sites, args.rounds, args.per_round)
                plans = {s.label: explain(s) for s in sites}
                print(f"### {args.small:,} dossiers, partitions {args.sweep}, "
                      f"random_page_cost {PAGE_COST or 'default'}\n")
                for key, value in facts.items():
                    print(f"- {key}: {value}")
                print()
                labels = [s.label for s in sites]
                print("| request | " + " | ".join(f"{x} p50 (p90) ms" for x in labels) + " |")
                print("|---|" + "---:|" * len(labels))
                for name, by in results.items():
                    print(f"| {name} | " + " | ".join(_p50_p90(by[x]) for x in labels) + " |")
                print()
                print("\n".join(planning_table(plans)))
                return 0
            sites, facts = build(args, dbs)
            order = [s for s in ("small", "small·part", "large", "large·part")
                     if any(x.label == s for x in sites)]
            sites.sort(key=lambda s: order.index(s.label))
            results = measure(sites, args.rounds, args.per_round)
            plans = {s.label: explain(s) for s in sites}
            print(f"### {args.large:,} dossiers ({args.large * (TASKS_PER_DOSSIER + 2):,} "
                  f"resources) partitioned × {args.partitions}, vs {args.small:,}\n")
            for key, value in facts.items():
                print(f"- {key}: {value}")
            print()
            print("\n".join(table(results, order)))
            print()
            print("\n".join(explain_table(plans)))
            print()
            print("\n".join(planning_table(plans)))
            print()
            for item in plans["large·part"]:
                flat = item["statement"]
                print(f"#### {item['request']} · {_what(flat)}\n\n```sql\n{flat[:300]}"
                      f"{' …' if len(flat) > 300 else ''}\n```\n```\n"
                      + "\n".join(_short(line) for line in item["plan"]) + "\n```\n")
        finally:
            for s in sites:
                with contextlib.suppress(Exception):
                    s.close()
            dbs.drop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

