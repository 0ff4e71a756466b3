"""PostgreSQL declarative partitioning, an explicit opt-in step (`dossier db partition`,
SPEC §15 "Beyond one machine"; issue 14 item 5; docs/operations.md).

What it does, in ONE transaction (all or nothing), on a migrated PostgreSQL database:

- the per-patient dossier tables (`resources`, `resource_versions`, `patient_keys`) become
  tables partitioned by HASH of `patient_id` — the column Citus would distribute on
  (`create_distributed_table(table, 'patient_id')`);
- the audit log's records (`audit_records`) become a table partitioned by RANGE of
  `recorded_at`, one partition per calendar month (UTC) from the oldest record to
  `audit_months` months ahead, and a DEFAULT partition so that an append never fails;
- rows are copied, then indexes, keys, triggers, sequences' ownership and table
  privileges are recreated as they were, with the partition key added to every unique
  key (PostgreSQL requires it there, and allows no expression).

The decisions (docs/operations.md says why):

- Rows without a patient (the directory: Practitioner, Organization, …) keep
  `patient_id` NULL; NULL hashes to one partition. Unique keys on a nullable partition
  key are unique indexes `NULLS NOT DISTINCT` (PostgreSQL 15), so two directory rows
  `(res_type, res_id, NULL)` still collide.
- The code relies on `(res_type, res_id)` naming at most one resource (a read by id takes
  the first row). A partitioned table can only check that per patient, so a small
  non-partitioned key table `resource_ids (res_type, res_id)` PRIMARY KEY, kept by a
  trigger on `resources` in the same statement, keeps the guarantee global: a second
  resource with the same type and id is refused whatever its patient (a client-chosen id
  in a PUT, a Bundle, an operator's import).
- `access_grants` (the access index: 1–3 rows per dossier) stays one table. A search
  probes it once per candidate row by `patient_id` (core/access_index.py
  `readable_now`); over hash partitions each probe was an Append of every partition,
  pruned at run time: the date search of a reader granted by 1,000 dossiers cost 1.2×
  the plain schema's instead of 1.1× (docs/benchmarks.md).
- `search_index` has no patient column (the code writes none), so it stays one table:
  partitioning it by patient would only multiply its index probes by the number of
  partitions. It has no foreign key (migration 0023); a database migrated before that
  loses the key it had here, on `resource_ids`.
- `audit_records`: its keys `seq` and `id` become `(seq, recorded_at)` and
  `(id, recorded_at)`; record ids are server-made UUIDs, and `audit_leaves.record_id`
  (not partitioned) stays globally unique for every sequenced record.

DDL cannot take bound parameters: identifiers come from the constants below and from the
catalogue, are checked against IDENT and quoted; definitions are the catalogue's own
(`pg_get_indexdef`, `pg_get_triggerdef`). Catalogue reads use bound parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

# table -> its partition column
HASHED = {"resources": "patient_id", "resource_versions": "patient_id",
          "patient_keys": "patient_id"}
TIMED = {"audit_records": "recorded_at"}
APPEND_ONLY_FUNCTION = "dossier_append_only"
KEYS = "resource_ids"
IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAX_PARTITIONS = 256

KEYS_FUNCTION = f"""CREATE FUNCTION dossier_resource_ids() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {KEYS} (res_type, res_id, patient_id)
      VALUES (NEW.res_type, NEW.res_id, NEW.patient_id);
  ELSIF TG_OP = 'UPDATE' THEN
    UPDATE {KEYS} SET res_type = NEW.res_type, res_id = NEW.res_id,
      patient_id = NEW.patient_id
      WHERE res_type = OLD.res_type AND res_id = OLD.res_id;
  ELSE
    DELETE FROM {KEYS} WHERE res_type = OLD.res_type AND res_id = OLD.res_id;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql"""  # noqa: S608 - a constant table name
# A row that moves to another partition (its patient set where it was NULL) is, for
# PostgreSQL, a DELETE then an INSERT: those two triggers keep the key; the UPDATE one
# covers a change within a partition.
KEYS_TRIGGERS = (
    "CREATE TRIGGER resources_ids_insert AFTER INSERT ON resources "
    "FOR EACH ROW EXECUTE FUNCTION dossier_resource_ids()",
    "CREATE TRIGGER resources_ids_update AFTER UPDATE OF res_type, res_id, patient_id "
    "ON resources FOR EACH ROW WHEN (OLD.res_type IS DISTINCT FROM NEW.res_type OR "
    "OLD.res_id IS DISTINCT FROM NEW.res_id OR OLD.patient_id IS DISTINCT FROM "
    "NEW.patient_id) EXECUTE FUNCTION dossier_resource_ids()",
    "CREATE TRIGGER resources_ids_delete AFTER DELETE ON resources "
    "FOR EACH ROW EXECUTE FUNCTION dossier_resource_ids()",
)


class PartitionError(Exception):
    """Refused: the message says why (no personal data)."""


@dataclass
class Report:
    partitions: int
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    audit_partitions: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _q(name: str) -> str:
    if not IDENT.match(name):
        raise PartitionError(f"unexpected identifier in the schema: {name[:70]!r}")
    return f'"{name}"'


def is_partitioned(conn: Connection, table: str = "resources") -> bool:
    kind = conn.execute(text(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relname = :t"), {"t": table}).scalar()
    return kind == "p"


def partition(engine: Engine, partitions: int, *, audit_months: int = 12,
              now: datetime | None = None, since: datetime | None = None) -> Report:
    """Convert the dossier tables and the audit records (see the module's doc). Monthly
    audit partitions run from the oldest record's month (or `since`, if earlier) to
    `audit_months` months after `now`."""
    if engine.dialect.name != "postgresql":
        raise PartitionError(
            "Partitioning is a PostgreSQL feature: this database is "
            f"{engine.dialect.name}. The embedded SQLite default serves one machine; "
            "move to PostgreSQL first (docs/operations.md).")
    if not 2 <= partitions <= MAX_PARTITIONS:
        raise PartitionError(f"--partitions must be between 2 and {MAX_PARTITIONS}.")
    if not 0 <= audit_months <= 240:
        raise PartitionError("--audit-months must be between 0 and 240.")
    now = now or datetime.now(UTC)
    started = datetime.now(UTC)
    report = Report(partitions)
    with engine.begin() as conn:
        major = int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000
        if major < 15:
            raise PartitionError("PostgreSQL 15 or later is needed (unique keys NULLS NOT "
                                 "DISTINCT on the partitioned tables).")
        if conn.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None:
            raise PartitionError("The database is not migrated: run `dossier db upgrade` "
                                 "first.")
        if is_partitioned(conn):
            raise PartitionError("The dossier tables are already partitioned.")
        tables = [*HASHED, *TIMED]
        _ddl(conn, "LOCK TABLE " + ", ".join(_q(t) for t in [*tables, "search_index"])
             + " IN ACCESS EXCLUSIVE MODE")
        _refuse_foreign_keys(conn, tables)
        _ddl(conn, "ALTER TABLE search_index DROP CONSTRAINT IF EXISTS "
             "fk_search_index_res_type_resources")
        for table, column in HASHED.items():
            bounds = [f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i})"
                      for i in range(partitions)]
            names = [f"{table}_p{i:03d}" for i in range(partitions)]
            report.tables[table] = _convert(conn, table, column, "HASH",
                                            list(zip(names, bounds, strict=True)))
        for table, column in TIMED.items():
            months = _months(conn, table, column, now, audit_months, since)
            parts = [(f"{table}_p{start:%Y%m}",
                      f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')")
                     for start, end in months] + [(f"{table}_pdefault", "DEFAULT")]
            report.tables[table] = _convert(conn, table, column, "RANGE", parts)
            report.audit_partitions = [name for name, _ in parts]
            for name, _ in parts:  # TRUNCATE of one partition skips the parent's trigger
                _ddl(conn, f"CREATE TRIGGER {_q(name + '_no_truncate')} BEFORE TRUNCATE "
                     f"ON {_q(name)} FOR EACH STATEMENT EXECUTE FUNCTION "
                     f"{APPEND_ONLY_FUNCTION}()")
        _key_table(conn)
    report.seconds = (datetime.now(UTC) - started).total_seconds()
    with engine.connect() as conn:  # fresh statistics for the planner (outside the DDL)
        for table in [*HASHED, *TIMED, KEYS]:
            _ddl(conn, f"ANALYZE {_q(table)}")
        conn.commit()
    return report


def _refuse_foreign_keys(conn: Connection, tables: list[str]) -> None:
    """Only the search index refers to a converted table (and is re-pointed)."""
    rows = conn.execute(text(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'f' "
        "AND (confrelid::regclass::text = ANY(:t) OR conrelid::regclass::text = ANY(:t))"),
        {"t": tables}).all()
    unexpected = [name for table, name in rows
                  if (table, name) != ("search_index", "fk_search_index_res_type_resources")]
    if unexpected:
        raise PartitionError("A foreign key this step does not know refers to a table it "
                             f"converts: {', '.join(unexpected)}.")


def _months(conn: Connection, table: str, column: str, now: datetime, ahead: int,
            since: datetime | None) -> list[tuple[datetime, datetime]]:
    oldest = conn.execute(text(
        f"SELECT min({_q(column)}) FROM {_q(table)}")).scalar()  # noqa: S608 - identifiers
    first = _month(min(x for x in (oldest, since, now) if x is not None))
    last = _add_months(_month(now), ahead)
    out = []
    while first <= last:
        nxt = _add_months(first, 1)
        out.append((first, nxt))
        first = nxt
    return out


def _month(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _add_months(moment: datetime, n: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


@dataclass
class _Shape:
    """What a table had besides its columns, read from the catalogue before it goes."""

    keys: list[tuple[str, str, list[str]]]  # (constraint, 'p' | 'u', columns)
    indexes: list[tuple[str, str, bool, bool]]  # (name, definition, unique, plain columns)
    triggers: list[str]
    sequences: list[tuple[str, str]]  # (sequence, column)
    grants: list[tuple[str, str]]  # (grantee, privilege)
    nullable: dict[str, bool]


def _shape(conn: Connection, table: str) -> _Shape:
    oid = conn.execute(text("SELECT to_regclass(:t)::oid"), {"t": table}).scalar_one()
    keys = [(name, kind, list(cols)) for name, kind, cols in conn.execute(text(
        "SELECT c.conname, c.contype, array_agg(a.attname ORDER BY k.ord) "
        "FROM pg_constraint c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(num, ord) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num "
        "WHERE c.conrelid = :oid AND c.contype IN ('p', 'u') GROUP BY c.conname, c.contype"),
        {"oid": oid})]
    indexes = [(name, definition, bool(unique), bool(plain)) for name, definition, unique, plain
               in conn.execute(text(
                   "SELECT i.relname, pg_get_indexdef(x.indexrelid), x.indisunique, "
                   "x.indexprs IS NULL AND x.indpred IS NULL "
                   "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                   "WHERE x.indrelid = :oid AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
                   "WHERE c.conindid = x.indexrelid AND c.contype IN ('p', 'u'))"),
                   {"oid": oid})]
    triggers = list(conn.execute(text(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = :oid "
        "AND NOT tgisinternal ORDER BY tgname"), {"oid": oid}).scalars())
    sequences = [(seq, col) for seq, col in conn.execute(text(
        "SELECT s.relname, a.attname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid "
        "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "WHERE d.refobjid = :oid AND s.relkind = 'S' AND d.deptype IN ('a', 'i')"),
        {"oid": oid})]
    grants = [(g, p) for g, p in conn.execute(text(
        "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
        "WHERE table_schema = current_schema() AND table_name = :t AND "
        "grantee <> (SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename = :t)"), {"t": table})]
    nullable = {name: not notnull for name, notnull in conn.execute(text(
        "SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = :oid AND attnum > 0 "
        "AND NOT attisdropped"), {"oid": oid})}
    return _Shape(keys, indexes, triggers, sequences, grants, nullable)


def _unique(conn: Connection, table: str, name: str, kind: str, columns: list[str],
            key: str, nullable: bool) -> None:
    cols = columns + ([key] if key not in columns else [])
    listed = ", ".join(_q(c) for c in cols)
    if nullable:  # no PRIMARY KEY on a nullable column: a unique index, NULLs equal
        _ddl(conn, f"CREATE UNIQUE INDEX {_q(name)} ON {_q(table)} ({listed}) "
             "NULLS NOT DISTINCT")
    else:
        what = "PRIMARY KEY" if kind == "p" else "UNIQUE"
        _ddl(conn, f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(name)} {what} ({listed})")


def _convert(conn: Connection, table: str, key: str, method: str,
             parts: list[tuple[str, str]]) -> int:
    shape = _shape(conn, table)
    for name, _definition, unique, plain in shape.indexes:
        if unique and not plain:
            raise PartitionError(f"The unique index {name} has an expression or a condition; "
                                 "a partitioned table cannot keep it.")
    staged = f"{table}__partitioned"
    _ddl(conn, f"CREATE TABLE {_q(staged)} (LIKE {_q(table)} INCLUDING DEFAULTS INCLUDING "
         f"CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY {method} "
         f"({_q(key)})")
    for name, bound in parts:
        _ddl(conn, f"CREATE TABLE {_q(name)} PARTITION OF {_q(staged)} {bound}")
    copied = conn.execute(text(
        f"INSERT INTO {_q(staged)} SELECT * FROM {_q(table)}")).rowcount  # noqa: S608
    for sequence, _column in shape.sequences:
        _ddl(conn, f"ALTER SEQUENCE {_q(sequence)} OWNED BY NONE")
    _ddl(conn, f"DROP TABLE {_q(table)}")
    _ddl(conn, f"ALTER TABLE {_q(staged)} RENAME TO {_q(table)}")
    for sequence, column in shape.sequences:
        _ddl(conn, f"ALTER SEQUENCE {_q(sequence)} OWNED BY {_q(table)}.{_q(column)}")
    for name, kind, columns in shape.keys:
        _unique(conn, table, name, kind, columns, key, shape.nullable.get(key, True))
    for name, definition, unique, _plain in shape.indexes:
        if unique:
            found = re.search(r"\((.*)\)\s*$", definition)
            assert found is not None
            listed = [c.strip().strip('"') for c in found.group(1).split(",")]
            _unique(conn, table, name, "u", listed, key, shape.nullable.get(key, True))
        else:
            _ddl(conn, definition)  # the catalogue's own text: same name, table
    for definition in shape.triggers:
        _ddl(conn, definition)
    for grantee, privilege in shape.grants:
        if privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES",
                         "TRIGGER"):
            _ddl(conn, f"GRANT {privilege} ON {_q(table)} TO {_q(grantee)}")
    return int(copied)


def _key_table(conn: Connection) -> None:
    """`resource_ids`: (res_type, res_id) unique across every partition."""
    conn.execute(text(
        f"CREATE TABLE {KEYS} (res_type varchar(64) NOT NULL, res_id varchar(64) NOT NULL, "
        f"patient_id varchar(64), CONSTRAINT pk_{KEYS} PRIMARY KEY (res_type, res_id))"))
    conn.execute(text(f"INSERT INTO {KEYS} (res_type, res_id, patient_id) "  # noqa: S608
                      "SELECT res_type, res_id, patient_id FROM resources"))
    _ddl(conn, KEYS_FUNCTION)
    for statement in KEYS_TRIGGERS:
        _ddl(conn, statement)
    # whoever may write resources (the application role) writes the keys through the
    # trigger, which runs with the writer's rights
    for grantee in _writers(conn, "resources"):
        _ddl(conn, f"GRANT SELECT, INSERT, UPDATE, DELETE ON {KEYS} TO {_q(grantee)}")


def _writers(conn: Connection, table: str) -> list[str]:
    return list(conn.execute(text(
        "SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g "
        "JOIN pg_tables t ON t.schemaname = g.table_schema AND t.tablename = g.table_name "
        "WHERE g.table_schema = current_schema() AND g.table_name = :t "
        "AND g.privilege_type = 'INSERT' AND g.grantee <> t.tableowner"), {"t": table}).scalars())


def describe(conn: Connection) -> dict[str, Any]:
    """Which tables are partitioned, and how many partitions each has."""
    rows = conn.execute(text(
        "SELECT p.relname, count(i.inhrelid) FROM pg_class p JOIN pg_namespace n ON "
        "n.oid = p.relnamespace LEFT JOIN pg_inherits i ON i.inhparent = p.oid WHERE "
        "p.relkind = 'p' AND n.nspname = current_schema() GROUP BY p.relname "
        "ORDER BY p.relname")).all()
    return {name: int(count) for name, count in rows}


def _ddl(conn: Connection, statement: str) -> None:
    """A DDL statement as written (no bind-parameter parsing of the ':' in its bounds)."""
    conn.exec_driver_sql(statement)
