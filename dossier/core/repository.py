"""The choke point. Every read and write of dossier data goes through a Repository built
for one request: it carries the actor and the transaction, asks the access policy,
seals/opens encrypted elements, keeps versions and the search index, and records the audit
event in the same transaction (see docs/architecture.md)."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    Row,
    bindparam,
    delete,
    event,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    type_coerce,
    update,
)

import consent
import schemas
from audit.record import LISTING
from dossier.core import access_index, content
from dossier.core.context import RequestContext
from dossier.core.directory import practitioner_rows
from dossier.db.bulk import insert_rows, insert_tables
from dossier.db.models import patient_keys, resource_versions, resources, search_index
from dossier.db.prepared import Prepared
from dossier.db.tx import Tx
from dossier.db.types import JSONType
from dossier.domain.people import (
    ASSISTED,
    SSIN,
    check_assisted,
    check_related_person,
    niss_of,
    relationship_of,
    with_parent_end,
)
from dossier.errors import (
    BadRequest,
    DossierError,
    Forbidden,
    Gone,
    InternalError,
    MethodNotAllowed,
    PreconditionFailed,
    Unprocessable,
    not_found,
)
from dossier.search import sql as search_sql
from dossier.search.params import ID_RE, Include, SearchQuery, parse_search
from dossier.stores import subscriptions as subscription_store
from dossier.stores.people import NissIndex
from dossier.stores.people_choices import AssistedRefusals

T = TypeVar("T")
R = resources.c
V = resource_versions.c
S = search_index.c
INCLUDE_LIMIT = 1000  # resources per _include / _revinclude of one page
REF_RE = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class RowMeta:
    """What the policy needs to decide on a stored resource, without its content."""

    resource_type: str
    id: str
    patient_id: str | None
    categories: frozenset[str]
    deleted: bool = False
    addressee: str | None = None  # a message only this practitioner reads


@dataclass
class Stored:
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    resource: dict[str, Any] | None  # None for a deletion entry
    meta: RowMeta
    method: str = "PUT"


# Bundle.total by default: exact up to this many matches, left out beyond (a search's
# cost must not grow with the reader's caseload, SPEC §15; `_total=accurate` counts all)
TOTAL_CAP = 1000


@dataclass
class SearchResult:
    matches: list[Stored]
    included: list[Stored]
    total: int | None  # None: not counted (`_total=none`, or more than TOTAL_CAP)
    query: SearchQuery
    notes: list[str] = field(default_factory=list)  # what was not done (includes cut)
    more: bool = False  # a next page exists



class AccessPolicy(Protocol):
    """Plugged in by consent enforcement; the default is OpenPolicy (foundation only)."""

    def gate(self, resource_type: str, interaction: str) -> None:
        """Role and scopes (SMART letters c r u d s); raises Forbidden."""

    def creates_on_update(self, resource_type: str) -> bool:
        """Whether PUT to a missing id creates the resource (update-as-create)."""

    def can_read(self, row: RowMeta) -> bool: ...

    def narrow(self, stmt: Any, table: Any = resources, resource_type: str = "*") -> Any:
        """`stmt` (over `table`, of `resource_type` or any) narrowed in SQL to what the
        actor may read."""

    def reach(self, resource_type: str) -> str | None:
        """Whom `narrow` starts from: "own" (a citizen's few dossiers), "caseload" (a
        professional's grants), None (no bounded set of dossiers)."""

    def prepare(self, patient_ids: Iterable[str | None]) -> None:
        """Read at once what the per-row decisions of these patients' rows need."""

    def check_write(self, resource_type: str, patient_id: str | None,
                    categories: frozenset[str], existing: RowMeta | None, *,
                    providers: frozenset[str] = frozenset()) -> None: ...

    def sees(self, patient_id: str, category: str) -> bool:
        """Whether the actor is granted this category of the person's dossier (for the
        element-level psy label)."""


class Sealer(Protocol):
    """Field encryption: split a resource into clear part and sealed elements, and back."""

    def seal(self, session: Tx, resource: dict[str, Any], patient_id: str | None,
             version_id: int) -> tuple[dict[str, Any], dict[str, str] | None]: ...

    def open(self, session: Tx, resource_type: str, resource_id: str,
             content: dict[str, Any], sealed: dict[str, str] | None, patient_id: str | None,
             version_id: int) -> dict[str, Any]: ...

    def blind(self, system: str, value: str) -> str: ...


class AuditSink(Protocol):
    def expect(self, action: str, resource_type: str) -> None: ...

    def record(self, session: Tx, ctx: RequestContext, event: AuditNote) -> None: ...


@dataclass
class AuditNote:
    """What happened, for the audit record (no personal data: ids, codes, outcome)."""

    action: str  # create | read | vread | update | delete | search | history | operation
    resource_type: str
    resource_id: str | None = None
    patient_ids: set[str] = field(default_factory=set)
    outcome: str = "success"  # success | denied | not-found | error
    detail: str | None = None
    query: list[tuple[str, str]] | None = None
    reasons: tuple[str, ...] = ()  # the consent decision's, for the audit


@dataclass(frozen=True)
class Services:
    """What an operation may use besides the data: settings, envelope keys, the audit log's
    own reads, the embedded issuer. Built by the Runtime for each unit."""

    settings: Any = None
    key_provider: Any = None
    audit_store: Any = None
    issuer: Any = None
    is_sqlite: bool = False


class OpenPolicy:
    """Permits everything: for tools that run as the operator (never for a request)."""

    def gate(self, resource_type: str, interaction: str) -> None:
        return None

    def creates_on_update(self, resource_type: str) -> bool:
        return True

    def can_read(self, row: RowMeta) -> bool:
        return True

    def narrow(self, stmt: Any, table: Any = resources, resource_type: str = "*") -> Any:
        return stmt

    def reach(self, resource_type: str) -> str | None:
        return None

    def prepare(self, patient_ids: Iterable[str | None]) -> None:
        return None

    def check_write(self, resource_type: str, patient_id: str | None,
                    categories: frozenset[str], existing: RowMeta | None, *,
                    providers: frozenset[str] = frozenset()) -> None:
        return None

    def sees(self, patient_id: str, category: str) -> bool:
        return True


class NullAudit:
    def expect(self, action: str, resource_type: str) -> None:
        return None

    def record(self, session: Tx, ctx: RequestContext, event: AuditNote) -> None:
        return None


def with_keys(stmt: Any, table: Any = resources) -> Any:
    """Add the patient's wrapped data key to each row (one query instead of one more per
    patient): the sealer opens sealed elements without asking again."""
    K = patient_keys.c
    return stmt.outerjoin(patient_keys, K.patient_id == table.c.patient_id).add_columns(
        K.patient_id.label("key_pid"), K.kek_id.label("key_kek"),
        K.wrapped.label("key_wrapped"))


# built once (the hot path of every read): see core/directory.py
_CURRENT_ROW = with_keys(select(resources).where(R.res_type == bindparam("rtype"),
                                                 R.res_id == bindparam("rid")))


# For this transaction only (is_local): plans made with the search's own parameters, and
# no JIT compilation — on partitioned tables a search's estimated cost passes jit_above_cost
# and compiling took ~235 ms of a 245 ms count (docs/benchmarks.md).
_SEARCH_PLANNING = text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                        "set_config('jit', 'off', true)")


def _with_consents(aggregate: Callable[[Any], Any]) -> Any:
    """The current row, its key, and its person's current Consents as one JSON array (a
    read by an actor whom Consents decide: one statement instead of two)."""
    C = resources.alias("consents_of_row").c
    consents = select(aggregate(C.content)).where(
        C.res_type == "Consent", C.patient_id == R.patient_id, C.deleted == false()
    ).scalar_subquery()
    return _CURRENT_ROW.add_columns(type_coerce(consents, JSONType).label("row_consents"))


_READ_ROW = {  # built once per dialect
    "postgresql": _with_consents(func.json_agg),
    "sqlite": _with_consents(lambda content: func.json_group_array(func.json(content))),
}


def _practitioner_and_row() -> Any:
    """PostgreSQL: the practitioner's directory rows (as one JSON array of [type,
    content]) and `_READ_ROW`'s row, in one statement; the row's columns are NULL when
    there is no such row."""
    rows = practitioner_rows("practitioner_id", "practitioner").subquery("practitioner_rows")
    practitioner = select(func.json_agg(func.json_build_array(rows.c.res_type,
                                                              rows.c.content)))
    row = _READ_ROW["postgresql"].subquery("read_row")
    anchor = select(literal(1).label("one")).subquery("anchor")
    return select(type_coerce(practitioner.scalar_subquery(), JSONType).label("practitioner_rows"),
                  *row.c).select_from(anchor.outerjoin(row, true()))


_PRACTITIONER_AND_ROW = _practitioner_and_row()  # built once
# a write's: and the active subscriptions its writes are matched against (bound: now)
_PRACTITIONER_ROW_AND_SUBSCRIPTIONS = _PRACTITIONER_AND_ROW.add_columns(
    type_coerce(subscription_store.active_json(), JSONType).label("active_subscriptions"))
# run on the unit's cursor (dossier/db/prepared.py): the request path's first statement
_CURRENT = Prepared(_CURRENT_ROW)
_READ = {name: Prepared(statement) for name, statement in _READ_ROW.items()}
_READ_ALONG = Prepared(_PRACTITIONER_AND_ROW)
_WRITE_ALONG = Prepared(_PRACTITIONER_ROW_AND_SUBSCRIPTIONS)


class ReadAlong:
    """A plain read's row, read together with the practitioner who asks for it
    (PostgreSQL): the unit resolves the principal with this statement and the Repository
    takes the row from it, one round trip fewer (a statement cost 12 % of a read's
    instructions, docs/benchmarks.md). Lives for one unit; the row is taken once, for
    that read only. Nothing is read along for other principals (citizens, hubs acting
    as an organisation, operators): they resolve as before and the row is read as
    before."""

    def __init__(self, resource_type: str, resource_id: str, *,
                 writes_at: datetime | None = None) -> None:
        self.key = (resource_type, resource_id)
        self._row: Row[Any] | None = None
        self._read = False
        # a write unit's time: the subscriptions active then are read along too
        self.writes_at = writes_at
        self.subscriptions: list[subscription_store.Active] | None = None

    def practitioner_rows(self, tx: Tx, practitioner_id: str,
                          reference: str) -> list[tuple[str, dict[str, Any]]]:
        """A `PractitionerReader` (core/directory.py) that also reads the row."""
        params = {"practitioner_id": practitioner_id, "practitioner": reference,
                  "rtype": self.key[0], "rid": self.key[1]}
        if self.writes_at is None:
            (found,) = _READ_ALONG.rows(tx.connection(), params)
        else:
            (found,) = _WRITE_ALONG.rows(tx.connection(), {**params, "now": self.writes_at})
            self.subscriptions = subscription_store.active_of(found.active_subscriptions)
        self._row = found if found.res_type is not None else None
        self._read = True
        return [(t, c) for t, c in found.practitioner_rows or []]

    def take(self, resource_type: str, resource_id: str) -> tuple[bool, Row[Any] | None]:
        """(True, the row or None when there is none) once, for the row read along;
        (False, None) otherwise."""
        if not self._read or (resource_type, resource_id) != self.key:
            return False, None
        self._read = False
        row, self._row = self._row, None
        return True, row


def _empty_buffer() -> dict[Any, list[dict[str, Any]]]:
    """New rows kept to be written together, table by table in the order they go in."""
    return {resources: [], resource_versions: [], search_index: []}


def row_meta(row: Row[Any]) -> RowMeta:
    cats = frozenset(c for c in (row.categories or "").split(",") if c)
    return RowMeta(row.res_type, row.res_id, row.patient_id, cats, bool(row.deleted),
                   getattr(row, "addressee", None))


def new_id() -> str:
    return str(uuid.uuid4())


MASKED = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                         "valueCode": "masked"}]}
# references the reader might not be allowed to follow: entries of a dossier (a Patient
# reference names the dossier the reader already sees; the directory is public)
MASKABLE = frozenset({"Task", "CareTeam", "RelatedPerson", "Observation", "Flag",
                      "Provenance", "Consent", "Communication"})


def _entry_refs(resource: Any) -> Iterator[dict[str, Any]]:
    """Every Reference object naming a dossier entry, in place (to be masked)."""
    if isinstance(resource, dict):
        text = resource.get("reference")
        if isinstance(text, str) and text.split("/", 1)[0] in MASKABLE:
            yield resource
        for key, value in resource.items():
            if key not in ("resourceType", "meta", "text"):
                yield from _entry_refs(value)
    elif isinstance(resource, list):
        for item in resource:
            yield from _entry_refs(item)


def _erased(row: Row[Any]) -> bool:
    """A version emptied by `$erase` (dossier/fhir/ops/erase.py purge): no content left."""
    return not row.deleted and not row.content and row.sealed is None


class Repository:
    def __init__(self, session: Tx, ctx: RequestContext, *, policy: AccessPolicy,
                 sealer: Sealer, audit: AuditSink, page_size: int = 20,
                 max_page_size: int = 200,
                 tracer: Callable[[str], Any] | None = None,
                 on_change: Callable[[Repository, Stored], None] | None = None,
                 services: Services | None = None,
                 read_along: ReadAlong | None = None) -> None:
        self.session = session
        self.read_along = read_along  # the row of a plain read, read with the principal
        self.services = services or Services()
        self.post_commit: list[str] = []  # named actions the Runtime runs after commit
        # a transaction Bundle's new rows, inserted together (`buffered`, `flush_writes`)
        self._buffer: dict[Any, list[dict[str, Any]]] | None = None
        self._held = False  # the buffer lasts the unit (`hold_writes`)
        self._stores: dict[type, Any] = {}
        self._memo: dict[str, Any] = {}
        if read_along is not None and read_along.subscriptions is not None:
            # read with the principal (a practitioner's write on PostgreSQL)
            self._memo[subscription_store.ACTIVE_MEMO] = read_along.subscriptions
        self.ctx = ctx
        self.policy = policy
        self.sealer = sealer
        self.audit = audit
        self.page_size = page_size
        self.max_page_size = max_page_size
        self._span = tracer
        self.on_change = on_change  # subscriptions: told of every write, in its transaction
        self.intent = "read"
        # set inside transactions: reference checks wait until every entry is written
        self.deferred_refs: list[tuple[str, str, str | None]] | None = None
        # inside a batch Bundle: the entry being run without a savepoint, whether the
        # buffer is being written out, live references already found (`exists_visible`)
        self._entry: _Entry | None = None
        self._flushing = False
        self._seen: dict[str, RowMeta] | None = None
        # a create's dossier row read with the principal: (reference, its RowMeta or None)
        self._dossier_row: tuple[str, RowMeta | None] | None = None

    def memo(self, key: str, load: Callable[[], T]) -> T:
        """Something read once in this unit's transaction and used for each of its writes
        (e.g. the active subscriptions, for a Bundle of 500 entries). Gone with the unit."""
        if key not in self._memo:
            self._memo[key] = load()
        return self._memo[key]  # type: ignore[no-any-return]

    def store(self, kind: type[T]) -> T:
        """The unit's store for a side table (dossier/stores/), on this transaction."""
        found = self._stores.get(kind)
        if found is None:
            found = self._stores[kind] = kind(self.session)  # type: ignore[call-arg]
        return found

    @contextmanager
    def buffered(self) -> Iterator[None]:
        """Inside: new resources, their versions and index rows are kept and inserted
        table by table in one multi-row INSERT each (any read first writes them out).
        For a transaction Bundle: all its entries commit or none do anyway. A Bundle
        writes its rows when it ends, even in a unit that holds its writes
        (`hold_writes`): a refusal of its rows is told as such (batch entries)."""
        self.flush_writes()  # rows held by the unit before (none in practice)
        self._buffer = _empty_buffer()
        try:
            yield
            self.flush_writes()
        finally:
            self._buffer = _empty_buffer() if self._held else None

    def hold_writes(self) -> None:
        """The unit's new rows stay buffered to its end (any read first writes them out),
        where the Runtime writes them with the audit records (`held_writes`): a create is
        then one statement after its principal (core/runtime.py)."""
        self._buffer = _empty_buffer()
        self._held = True

    def held_writes(self) -> list[tuple[Any, list[dict[str, Any]]]]:
        """The rows still buffered, table by table in the order they must go in; the
        buffer is left empty."""
        if not self._buffer:
            return []
        batches = [(table, rows) for table, rows in self._buffer.items() if rows]
        self._buffer = {table: [] for table in self._buffer}
        return batches

    def flush_writes(self) -> None:
        if not self._buffer:
            return
        entry = self._entry
        if entry is not None and any(len(rows) > entry.rows[table]
                                     for table, rows in self._buffer.items()):
            entry.wrote = True  # rows of the entry being run reach the database
        self._flushing = True
        try:  # resources first, their index rows last; one statement on PostgreSQL
            insert_tables(self.session, list(self._buffer.items()))
            self._buffer = {table: [] for table in self._buffer}
        finally:
            self._flushing = False
        if entry is not None:
            entry.rows = dict.fromkeys(entry.rows, 0)

    def _insert(self, table: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._buffer is not None:
            self._buffer[table].extend(rows)
        else:  # several rows (a resource's index rows): one statement, as for a Bundle;
            # an executemany ran one pipelined INSERT per row, a third of a create's CPU
            insert_rows(self.session, table, rows)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the unit that rolls back on its own (a batch entry)."""
        with self.session.begin_nested():
            yield

    # ------------------------------------------------------------------ batch entries
    @contextmanager
    def batch(self) -> Iterator[None]:
        """A batch Bundle: one buffer for all its entries (each run in `entry`); while it
        lasts, references found live are remembered (`exists_visible`) and the unit's
        connection watches for writes that bypass the buffer (see `entry`)."""
        conn = self.session.connection()

        def watch(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            entry = self._entry
            if entry is None or self._flushing:
                return
            head = statement.lstrip()[:30].upper()
            # a data key stored by sealing stays if the entry fails: harmless, the sealer
            # keeps using the key it stored (no plain create is sealed today: Patient and
            # RelatedPerson take a savepoint)
            if head.startswith(_WRITES) and not head.startswith("INSERT INTO PATIENT_KEYS"):
                entry.wrote = True

        event.listen(conn, "before_cursor_execute", watch)
        self._seen = {}
        try:
            with self.buffered():
                yield
        finally:
            self._seen = None
            event.remove(conn, "before_cursor_execute", watch)

    @contextmanager
    def entry(self, *, savepoint: bool) -> Iterator[None]:
        """One entry of a `batch`: on a DossierError it leaves nothing written.

        Without a savepoint (a plain create: every check it can fail comes before its rows
        leave the buffer), its buffered rows are dropped; if it wrote to the database
        itself and then failed, it cannot be undone alone: the whole unit fails
        (EntryNotUndone). With a savepoint (any other entry), the buffer is written out
        first, so that a rollback takes nothing of the entries before it."""
        assert self._buffer is not None
        if savepoint:
            self.flush_writes()
            self._seen = None  # the entry may change what exists or who sees it
            keys = self._new_keys()
            try:
                with self.savepoint():
                    yield
                    self.flush_writes()
            except DossierError:
                self._drop(dict.fromkeys(self._buffer, 0))
                self._forget_keys(keys)  # their rows were rolled back with the entry
                raise
            finally:
                self._seen = {}
            return
        self._entry = entry = _Entry({table: len(rows) for table, rows in self._buffer.items()})
        try:
            yield
        except DossierError:
            if entry.wrote:
                raise EntryNotUndone(
                    "An entry of this batch failed after part of it was written, so it "
                    "could not be undone on its own: nothing of the Bundle was written. "
                    "Please report it; the entries can be sent one by one.") from None
            self._drop(entry.rows)
            raise
        finally:
            self._entry = None

    def _drop(self, mark: dict[Any, int]) -> None:
        """Forget the buffered rows added after `mark` (a failed entry's)."""
        assert self._buffer is not None
        for table, n in mark.items():
            del self._buffer[table][n:]

    def _new_keys(self) -> int:
        return len(getattr(self.sealer, "created", ()))

    def _forget_keys(self, since: int) -> None:
        forget = getattr(self.sealer, "forget_created", None)
        if forget is not None:
            forget(since)

    def after_commit(self, action: str) -> None:
        """Ask the Runtime to run a named action once this unit has committed."""
        if action not in self.post_commit:
            self.post_commit.append(action)

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _op(self, name: str, resource_type: str) -> Iterator[None]:
        if self._span is None:
            yield
            return
        with self._span(f"repository.{name}") as span:
            span.set_attribute("fhir.resource_type", resource_type)
            span.set_attribute("fhir.interaction", name)
            yield

    def current_row(self, resource_type: str, resource_id: str) -> Row[Any] | None:
        self.flush_writes()
        # Core on the unit's connection: the ORM session's execute adds nothing to a
        # Core statement but its own bookkeeping (measured: ~1 % of a read's CPU each)
        row: Row[Any] | None = _CURRENT.first(self.session.connection(), {
            "rtype": resource_type, "rid": resource_id})
        return row

    def _read_row(self, resource_type: str, resource_id: str) -> Row[Any] | None:
        """`current_row`, with the person's Consents in the same statement when they will
        decide (handed to the policy, which would otherwise read them next)."""
        take = getattr(self.policy, "take_consents", None)
        along, row = self.read_along.take(resource_type, resource_id) \
            if self.read_along is not None else (False, None)
        if take is None or not self.policy.decides_by_consent():  # type: ignore[attr-defined]
            return row if along else self.current_row(resource_type, resource_id)
        if not along:
            self.flush_writes()
            conn = self.session.connection()
            row = _READ[conn.dialect.name].first(conn, {"rtype": resource_type,
                                                        "rid": resource_id})
        if row is not None and row.patient_id:
            take(row.patient_id, row.row_consents or [])
        return row

    def _to_stored(self, row: Row[Any], method: str = "PUT", *,
                   policy: AccessPolicy | None = None, redact: bool = True,
                   fresh: bool = False) -> Stored:
        """`fresh`: the row was just read for this call alone, so its content is opened
        in place instead of copied first."""
        meta = row_meta(row)
        resource = None
        know = getattr(self.sealer, "know", None)
        if know is not None and "key_pid" in row._fields and row.sealed:
            know(row.patient_id, row.key_kek, row.key_wrapped, row.key_pid is not None)
        if not row.deleted:
            resource = self.sealer.open(self.session, row.res_type, row.res_id,
                                        row.content if fresh else copy.deepcopy(row.content),
                                        row.sealed, row.patient_id, row.version_id)
            if redact and row.patient_id and schemas.psy_items(resource):
                # element-level psy (SPEC §14): hidden from a reader not granted psy
                sees = getattr(policy or self.policy, "sees", None)
                if sees is None or not sees(row.patient_id, "psy"):
                    resource = schemas.without_psy_items(resource)
        return Stored(row.res_type, row.res_id, row.version_id, row.last_updated,
                      bool(row.deleted), resource, meta, method)

    def _reasons(self) -> tuple[str, ...]:
        """The reasons of the policy's last consent decision (once), for the audit."""
        decision = getattr(self.policy, "last_decision", None)
        if decision is None:
            return ()
        self.policy.last_decision = None  # type: ignore[attr-defined]
        return tuple(decision.reasons)

    def _visible(self, row: Row[Any] | None, resource_type: str) -> Row[Any]:
        """The row if it exists and the actor may see it; else the one 'not found'.
        A refused attempt on an existing dossier is logged against that person, with the
        decision's reasons."""
        if row is None:
            # the same work as for a hidden row (its person's Consents are read), so the
            # time of the answer does not tell hidden from missing
            self.policy.prepare(["~missing~"])
            self._note(self.intent, resource_type, None, None, "not-found")
            raise not_found(resource_type)
        if not self.policy.can_read(row_meta(row)):
            self._note(self.intent, resource_type, row.res_id, row.patient_id, "denied",
                       reasons=self._reasons())
            raise not_found(resource_type)
        return row

    def _note(self, action: str, resource_type: str, resource_id: str | None,
              patient_id: str | None, outcome: str = "success",
              query: list[tuple[str, str]] | None = None, patients: set[str] | None = None,
              detail: str | None = None, reasons: tuple[str, ...] = ()) -> None:
        ids = set(patients or ())
        if patient_id:
            ids.add(patient_id)
        self.audit.record(self.session, self.ctx, AuditNote(
            action, resource_type, resource_id, ids, outcome, detail, query, reasons))

    # ------------------------------------------------------------------ reads
    def begin(self, action: str, resource_type: str, interaction: str | None) -> None:
        """Tell the audit what is being attempted, then ask the role/scope gate."""
        self.intent = action
        self.audit.expect(action, resource_type)
        if interaction is not None:
            self.policy.gate(resource_type, interaction)

    def note_access(self, action: str, resource_type: str, resource_id: str | None,
                    patient_ref: str | None, detail: str | None = None) -> None:
        """Record an access made outside the resource tables (AuditEvent view, operations);
        `detail` names the operation."""
        pid = patient_ref.split("/", 1)[1] if patient_ref else None
        self._note(action, resource_type, resource_id, pid, detail=detail)

    def read(self, resource_type: str, resource_id: str) -> Stored:
        check_type(resource_type)
        self.begin("read", resource_type, "r")
        with self._op("read", resource_type):
            row = self._visible(self._read_row(resource_type, resource_id), resource_type)
            self._note("read", resource_type, resource_id, row.patient_id,
                       reasons=self._reasons())
            if row.deleted:
                raise Gone(f"This {resource_type} was deleted.")
            return self._masked(self._to_stored(row, fresh=True))

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> Stored:
        check_type(resource_type)
        self.begin("vread", resource_type, "r")
        with self._op("vread", resource_type):
            current = self._visible(self.current_row(resource_type, resource_id), resource_type)
            row = self.session.execute(select(resource_versions).where(
                V.res_type == resource_type, V.res_id == resource_id, V.version_id == version_id
            )).first()
            if row is None or not self.policy.can_read(row_meta(row)):
                self._note("vread", resource_type, resource_id, current.patient_id, "not-found")
                raise not_found(resource_type)
            self._note("vread", resource_type, resource_id, row.patient_id)
            if row.deleted:
                raise Gone(f"This version of the {resource_type} is a deletion.")
            if _erased(row):  # like the current version: gone for a former reader
                raise Gone(f"This {resource_type} was erased.")
            return self._masked(self._to_stored(row, row.method))

    def history(self, resource_type: str | None, resource_id: str | None, *,
                since: datetime | None, count: int | None, offset: int) -> tuple[list[Stored], int]:
        if resource_type:
            check_type(resource_type)
            self.begin("history", resource_type, "r")
        with self._op("history", resource_type or "*"):
            stmt = select(resource_versions)
            if resource_type:
                stmt = stmt.where(V.res_type == resource_type)
            if resource_id:
                assert resource_type
                current = self._visible(self.current_row(resource_type, resource_id), resource_type)
                stmt = stmt.where(V.res_id == resource_id)
                del current
            if since is not None:
                stmt = stmt.where(V.last_updated >= since)
            if not resource_type:  # totals count only the types the scopes let it read
                stmt = stmt.where(V.res_type.in_(self._scoped_types(None)))
            stmt = self.policy.narrow(stmt, resource_versions, resource_type or "*")
            total = self.session.execute(
                select(func.count()).select_from(stmt.subquery())).scalar_one()
            size = min(self.page_size if count is None else count, self.max_page_size)
            rows = [] if size == 0 else self.session.execute(with_keys(
                stmt.order_by(V.last_updated.desc(), V.version_id.desc(), V.res_id)
                .limit(size).offset(offset), resource_versions)).all()
            self.policy.prepare(r.patient_id for r in rows)
            out = [self._to_stored(r, r.method) for r in rows
                   if self.policy.can_read(row_meta(r)) and not _erased(r)]
            self.mask_references(out)
            self._note("history", resource_type or "*", resource_id, None,
                       patients={s.meta.patient_id for s in out if s.meta.patient_id})
            return out, total

    def search(self, resource_type: str, raw: list[tuple[str, str]], *,
               lenient: bool = False, listing: bool = False) -> SearchResult:
        """`listing`: the portal's list of a professional's people (Patient names only):
        recorded as such, and not notified to each person (audit.record.LISTING)."""
        check_type(resource_type)
        self.begin("search", resource_type, "s")
        with self._op("search", resource_type):
            q = parse_search(resource_type, raw, lenient=lenient, default_count=self.page_size,
                             max_count=self.max_page_size)
            detail = LISTING if listing and resource_type == "Patient" else None
            return self.run_search(q, raw, detail)

    def run_search(self, q: SearchQuery, raw: list[tuple[str, str]],
                   detail: str | None = None) -> SearchResult:
        reach = self.policy.reach(q.resource_type)
        postgres = self.session.get_bind().dialect.name == "postgresql"
        if reach == "caseload" and postgres:
            # Plan this search for this reader: after five runs of one statement on a
            # connection PostgreSQL may reuse a generic plan, made without the reader's
            # grants, and a caseload of 5,000 then took 1.5 s instead of 60 ms.
            self.session.execute(_SEARCH_PLANNING)
        stmt = self.policy.narrow(
            search_sql.build_search(q, self.sealer.blind, reach is not None),
            resources, q.resource_type)
        named = search_sql.names_people(q)  # `Task?patient=Patient/x`: start from them
        by_people = reach is not None or named
        # `_total=none` is still counted up to the cap, unreported: where the page starts
        # depends on it (a caseload's dense result sorted whole cost ten times more)
        counted = self._count(search_sql.planned(stmt, q, "people" if by_people else None), q)
        total, notes = (None if q.total == "none" else counted), []
        if q.asked_count is not None:
            notes.append(f"_count={q.asked_count} is more than one page may hold: this page "
                         f"holds at most {q.count}; follow the next link for the rest.")
        if total is None and q.total != "none":
            notes.append(f"More than {TOTAL_CAP:,} resources match: Bundle.total is left out "
                         "(ask _total=accurate to count them all, or narrow the search).")
        # many matches over a caseload: read in page order and stop after the page;
        # otherwise start from the people's dossiers and sort what they hold
        dense = counted is None or counted > TOTAL_CAP
        start = "time" if dense and reach == "caseload" and not named \
            else "people" if by_people else None
        # without a total, one row more than the page tells whether a next page exists
        extra = 1 if total is None else 0
        few = search_sql.few_sorted(stmt, q, q.count + extra, q.offset) if \
            start == "people" and not dense and postgres else None
        if few is not None:
            page = with_keys(*few)
        else:
            page = with_keys(search_sql.planned(search_sql.ordered(stmt, q), q, start)
                             .limit(q.count + extra).offset(q.offset))
        rows = self.session.execute(page).all()
        more = (q.offset + q.count < total) if total is not None else len(rows) > q.count
        rows = rows[:q.count]
        self.policy.prepare(r.patient_id for r in rows)
        # each row read for this page alone: its content is opened in place, not copied
        matches = [self._to_stored(r, fresh=True) for r in rows
                   if self.policy.can_read(row_meta(r))]
        included = self._includes(q.includes, matches, notes)
        self.mask_references(matches + included)
        patients = {s.meta.patient_id for s in matches + included if s.meta.patient_id}
        self._note("search", q.resource_type, None, None, query=q.canonical_params(raw),
                   patients=patients, detail=detail)
        return SearchResult(matches, included, total, q, notes, more)

    def _count(self, stmt: Any, q: SearchQuery) -> int | None:
        """The number of matches: all of them (`accurate`), or up to TOTAL_CAP — the
        count stops at TOTAL_CAP + 1 rows, None beyond."""
        if q.total != "accurate":
            stmt = stmt.limit(TOTAL_CAP + 1)
        n = int(self.session.execute(select(func.count()).select_from(stmt.subquery()))
                .scalar_one())
        return None if q.total != "accurate" and n > TOTAL_CAP else n

    def _includes(self, includes: list[Include], matches: list[Stored],
                  notes: list[str] | None = None) -> list[Stored]:
        """Included resources, at most INCLUDE_LIMIT per _include/_revinclude; a cut is
        told in `notes` (the Bundle says so in an OperationOutcome), never silent."""
        if not includes or not matches:
            return []
        seen = {(m.resource_type, m.id) for m in matches}
        out: list[Stored] = []
        for inc in includes:
            if not self._may("r", inc.source_type if inc.reverse else inc.target_type):
                continue
            if inc.reverse:
                refs = [f"{m.resource_type}/{m.id}" for m in matches]
                stmt = select(resources).where(
                    R.res_type == inc.source_type, R.deleted == false(),
                    R.res_id.in_(select(S.res_id).where(
                        S.res_type == inc.source_type, S.param == inc.param, S.value.in_(refs))))
            else:
                ids = [m.id for m in matches if m.resource_type == inc.source_type]
                targets = self.session.execute(select(S.value).where(
                    S.res_type == inc.source_type, S.param == inc.param,
                    S.res_id.in_(ids))).scalars().all()
                pairs = [t.split("/", 1) for t in set(targets)]
                pairs = [p for p in pairs if inc.target_type in (None, p[0])]
                if not pairs:
                    continue
                stmt = select(resources).where(R.deleted == false(), or_(*[
                    (R.res_type == t) & (R.res_id == i) for t, i in pairs]))
            stmt = self.policy.narrow(stmt)
            rows = self.session.execute(with_keys(stmt.limit(INCLUDE_LIMIT + 1))).all()
            if len(rows) > INCLUDE_LIMIT and notes is not None:
                kind = "_revinclude" if inc.reverse else "_include"
                notes.append(f"{kind}={inc.source_type}:{inc.param} matched more than "
                             f"{INCLUDE_LIMIT} resources; only the first {INCLUDE_LIMIT} are "
                             "included. Page with a smaller _count to get them all.")
            rows = rows[:INCLUDE_LIMIT]
            self.policy.prepare(r.patient_id for r in rows)
            for row in rows:
                key = (row.res_type, row.res_id)
                if key in seen or not self.policy.can_read(row_meta(row)):
                    continue
                seen.add(key)
                out.append(self._to_stored(row, fresh=True))  # once each (`seen`)
        return out

    def _masked(self, stored: Stored) -> Stored:
        self.mask_references([stored])
        return stored

    def mask_references(self, items: Iterable[Stored],
                        policy: AccessPolicy | None = None) -> None:
        """Replace each reference to a dossier entry the reader may not see (or that is
        gone) by a `masked` data-absent-reason (SPEC §5: nothing leaks through
        references). One query for the whole response, only when some entry references
        another entry not already in it."""
        items = [s for s in items if s.resource]
        shown = {f"{s.resource_type}/{s.id}" for s in items}
        found: dict[str, list[dict[str, Any]]] = {}
        for stored in items:
            for ref in _entry_refs(stored.resource):
                found.setdefault(ref["reference"], []).append(ref)
        unknown = sorted(r for r in found if r not in shown)
        if not unknown:
            return
        visible: set[str] = set()
        wanted: dict[str, list[str]] = {}
        for reference in unknown:
            rtype, _, rid = reference.partition("/")
            if ID_RE.fullmatch(rid):
                wanted.setdefault(rtype, []).append(rid)
        if wanted:
            rows: Any = self.session.execute(select(
                R.res_type, R.res_id, R.patient_id, R.categories, R.deleted).where(
                R.deleted == false(), or_(*[(R.res_type == t) & R.res_id.in_(ids)
                                            for t, ids in sorted(wanted.items())]))).all()
            judge = policy or self.policy
            judge.prepare(r.patient_id for r in rows)
            visible = {f"{r.res_type}/{r.res_id}" for r in rows
                       if judge.can_read(row_meta(r))}
        for reference in unknown:
            if reference not in visible:
                for ref in found[reference]:
                    ref.clear()
                    ref.update(copy.deepcopy(MASKED))

    def _scoped_types(self, among: frozenset[str] | None) -> list[str]:
        """The resource types (of ``among``, or all) the role and scopes let it read."""
        every = {*schemas.SUPPORTED_TYPES, *schemas.SERVER_WRITTEN_TYPES}
        return sorted(t for t in (among if among is not None else every) if self._may("r", t))

    def _may(self, interaction: str, resource_type: str | None) -> bool:
        if resource_type is None:
            return True
        try:
            self.policy.gate(resource_type, interaction)
        except DossierError:
            return False
        return True

    def compartment(self, patient_id: str, *, action: str = "operation",
                    policy: AccessPolicy | None = None, operation: str | None = None,
                    types: frozenset[str] | None = None) -> list[Stored]:
        """Every live resource of one person's dossier that the actor (or, for a preview,
        `policy`) may read. The Patient first, then by type and date."""
        judge = policy or self.policy
        stmt = select(resources).where(R.patient_id == patient_id, R.deleted == false())
        if types is not None:
            stmt = stmt.where(R.res_type.in_(sorted(types)))
        stmt = judge.narrow(stmt)
        rows = self.session.execute(stmt.order_by(
            (R.res_type != "Patient"), R.res_type, R.last_updated, R.res_id)).all()
        out = [self._to_stored(r, policy=judge) for r in rows if judge.can_read(row_meta(r))]
        self.mask_references(out, judge)  # a preview masks what that actor would not see
        if out:
            self._note(action, "Patient", patient_id, patient_id, detail=operation)
        else:
            person = self.current_row("Patient", patient_id)
            if person is not None and not person.deleted:  # refused: in the person's log
                self._note(action, "Patient", None, patient_id, "denied", detail=operation)
            else:
                self._note(action, "Patient", None, None, "not-found", detail=operation)
        return out

    def visible_references(self, pairs: list[tuple[str, str | None]]) -> set[str]:
        """Of (reference, compartment) pairs, those that resolve to a live resource the
        actor may see (or that is the writer's own compartment): one query per type."""
        wanted: dict[str, set[str]] = {}
        for reference, _ in pairs:
            m = REF_RE.match(reference)
            if m:
                wanted.setdefault(m.group(1), set()).add(m.group(2))
        self.flush_writes()
        rows: dict[str, Any] = {}
        for rtype, ids in wanted.items():
            for start in range(0, len(ids), 500):
                chunk = sorted(ids)[start:start + 500]
                for row in self.session.execute(select(
                        R.res_type, R.res_id, R.patient_id, R.categories, R.deleted).where(
                        R.res_type == rtype, R.res_id.in_(chunk), R.deleted == false())):
                    rows[f"{row.res_type}/{row.res_id}"] = row
        self.policy.prepare(r.patient_id for r in rows.values())
        return {reference for reference, compartment in pairs if reference in rows and (
            reference == compartment or self.policy.can_read(row_meta(rows[reference])))}

    def compartment_page(self, patient_id: str, *, count: int, offset: int,
                         types: frozenset[str] | None = None, since: datetime | None = None,
                         operation: str | None = None) -> tuple[list[Stored], int, bool]:
        """One page of `compartment` (same order, same decision, same audit), the number
        of resources in all pages (counted in SQL under the policy's read clause), and
        whether anything of the dossier is visible at all, filters aside (when not, the
        request is logged as refused, like `compartment`)."""
        stmt = self.policy.narrow(
            select(resources).where(R.patient_id == patient_id, R.deleted == false()))
        visible = stmt
        # totals and pages count only the types the token's scopes let it read
        stmt = stmt.where(R.res_type.in_(self._scoped_types(types)))
        if since is not None:
            stmt = stmt.where(R.last_updated >= since)
        total = self.session.execute(
            select(func.count()).select_from(stmt.subquery())).scalar_one()
        rows = [] if count == 0 else self.session.execute(with_keys(stmt.order_by(
            (R.res_type != "Patient"), R.res_type, R.last_updated, R.res_id)
            .limit(count).offset(offset))).all()
        out = [self._to_stored(r, fresh=True) for r in rows
               if self.policy.can_read(row_meta(r))]
        self.mask_references(out)
        seen = total > 0 or self.session.execute(
            select(func.count()).select_from(visible.limit(1).subquery())).scalar_one() > 0
        if seen:
            self._note("operation", "Patient", patient_id, patient_id, detail=operation)
            return out, total, True
        person = self.current_row("Patient", patient_id)
        if person is not None and not person.deleted:
            self._note("operation", "Patient", None, patient_id, "denied", detail=operation)
        else:
            self._note("operation", "Patient", None, None, "not-found", detail=operation)
        return [], 0, False

    def exists_visible(self, reference: str, compartment: str | None = None) -> bool:
        """The reference resolves to a live resource the actor may see. The resource's own
        patient counts as seen: check_write has already tied the writer to that dossier."""
        m = REF_RE.match(reference)
        if not m:
            return False
        meta = self._live(reference, m.group(1), m.group(2))
        if meta is None:
            return False
        return reference == compartment or self.policy.can_read(meta)

    def _take_dossier(self, patient_id: str) -> None:
        """A new entry's dossier when it was read with the practitioner who writes
        (ReadAlong, a create on PostgreSQL): its Consents go to the policy, its row to the
        reference check (`_live`), each once. Two statements fewer per create."""
        assert self.read_along is not None
        along, row = self.read_along.take("Patient", patient_id)
        if not along or (row is not None and row.patient_id != patient_id):
            return  # (a Patient row is its own dossier: the second never happens)
        take = getattr(self.policy, "take_consents", None)
        if row is not None and take is not None and \
                self.policy.decides_by_consent():  # type: ignore[attr-defined]
            take(patient_id, row.row_consents or [])
        self._dossier_row = (f"Patient/{patient_id}",
                             None if row is None or row.deleted else row_meta(row))

    def _live(self, reference: str, resource_type: str, resource_id: str) -> RowMeta | None:
        """The live resource's RowMeta, or None. The buffer holds only rows of resources
        new in this unit, so the resource is either there or in the database: nothing is
        written out to find it. In a batch, what was found is remembered until an entry
        that may change it (`entry` with a savepoint): within this unit only."""
        if self._seen is not None and reference in self._seen:
            return self._seen[reference]
        meta = None
        for new in (self._buffer or {}).get(resources, ()):
            if new["res_id"] == resource_id and new["res_type"] == resource_type:
                meta = RowMeta(resource_type, resource_id, new["patient_id"], frozenset(
                    c for c in (new["categories"] or "").split(",") if c),
                    addressee=new.get("addressee"))
                break
        else:
            along = self._dossier_row
            if along is not None and along[0] == reference:  # read with the principal
                self._dossier_row = None
                meta = along[1]
            else:
                row = _CURRENT.first(self.session.connection(), {
                    "rtype": resource_type, "rid": resource_id})
                if row is not None and not row.deleted:
                    meta = row_meta(row)
        if meta is not None and self._seen is not None:
            self._seen[reference] = meta
        return meta

    # ------------------------------------------------------------------ writes
    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None,
               resource_id: str | None = None) -> tuple[Stored, bool]:
        resource_type = resource.get("resourceType", "")
        self.begin("create", resource_type, None)
        check_writable(resource_type)
        self.policy.gate(resource_type, "c")
        with self._op("create", resource_type):
            if resource_type == "Patient" and self.ctx.principal.role == "citizen":
                raise Forbidden("A citizen opens their own dossier with POST /fhir/Patient "
                                "and their national number.")
            if resource_type == "Patient" and niss_of(resource) is not None:
                # one dossier per person: only `POST /fhir/Patient` opens one by number
                raise Unprocessable("A dossier for a national number (NISS) is opened with "
                                    "POST /fhir/Patient on its own, not in a Bundle or a "
                                    "conditional write.", expression=["Patient.identifier"])
            if if_none_exist is not None:
                found = self._conditional_match(resource_type, if_none_exist)
                if found is not None:
                    return found, False
            rid = resource_id or new_id()
            if self._buffer is not None:  # inside a transaction Bundle's buffer already
                return self._write(resource_type, rid, resource, None, "POST"), True
            # the resource's rows and its Provenance's, table by table: 3 INSERTs, not 6
            with self.buffered():
                return self._write(resource_type, rid, resource, None, "POST"), True

    def open_dossier(self, resource: dict[str, Any],
                     if_none_exist: str | None = None) -> tuple[Stored, bool]:
        """`POST /fhir/Patient` (SPEC §13): one dossier per national number. A professional
        gets the same answer whether or not the person already had a dossier — the one
        dossier's id, nothing of its content (`Stored.resource` is what they sent) — and
        no access until the person consents. A citizen opens their own (or gets it back).
        Concurrent opens for one number are serialised and the unique index backs it."""
        niss = niss_of(resource)
        if niss is None:  # a pseudonymous dossier
            return self.create(resource, if_none_exist=if_none_exist)
        self.begin("create", "Patient", "c")
        p = self.ctx.principal
        with self._op("create", "Patient"):
            if p.role == "citizen" and p.niss != niss:
                raise Forbidden("A citizen opens only their own dossier (the national number "
                                "of their sign-in).")
            index = self.store(NissIndex)
            blind = self.sealer.blind(SSIN, niss)
            index.lock(blind)
            found = index.find(blind)
            if found is None:
                stored = self._write("Patient", new_id(), resource, None, "POST")
                if p.role == "citizen":
                    return stored, True
                found, version = stored.id, stored.version_id
            elif p.role == "citizen":
                return self.read("Patient", found), False
            else:  # the person is told a professional opened (again) their dossier
                self._note("create", "Patient", found, found, "exists")
                version = 1
            shown = {**copy.deepcopy(resource), "id": found}
            shown.pop("meta", None)
            return Stored("Patient", found, version, self.ctx.now, False, shown,
                          RowMeta("Patient", found, found, frozenset()), "POST"), True

    def update(self, resource_type: str, resource_id: str, resource: dict[str, Any], *,
               if_match: int | None = None) -> tuple[Stored, bool]:
        self.audit.expect("update", resource_type)
        check_writable(resource_type)
        if resource.get("resourceType") != resource_type:
            raise BadRequest(f"The body is not a {resource_type} resource.")
        if resource.get("id") != resource_id:
            raise BadRequest("The id in the body must equal the id in the URL.")
        if not ID_RE.match(resource_id):
            raise BadRequest("The id is not a valid FHIR id.")
        with self._op("update", resource_type):
            row = self.current_row(resource_type, resource_id)
            creates = row is None and self.policy.creates_on_update(resource_type)
            self.begin("update", resource_type, "c" if creates else "u")
            if row is None and not creates:
                # in a dossier, PUT never creates: a hidden and a missing id answer alike
                self._note("update", resource_type, resource_id, None, "not-found")
                raise not_found(resource_type)
            if row is not None and not self.policy.can_read(row_meta(row)):
                # hidden: behave exactly as for a resource that does not exist, but never
                # create over it
                self._note("update", resource_type, resource_id, row.patient_id, "denied")
                raise not_found(resource_type)
            if if_match is not None and (row is None or row.version_id != if_match):
                raise PreconditionFailed(
                    "The resource has changed since that version (If-Match failed).")
            stored = self._write(resource_type, resource_id, resource, row, "PUT")
            return stored, row is None

    def delete(self, resource_type: str, resource_id: str) -> None:
        self.begin("delete", resource_type, None)
        check_writable(resource_type)
        self.policy.gate(resource_type, "d")
        with self._op("delete", resource_type):
            row = self._visible(self.current_row(resource_type, resource_id), resource_type)
            meta = row_meta(row)
            self.policy.check_write(resource_type, row.patient_id, meta.categories, meta,
                                    **self._providers(resource_type, {}, row))
            if resource_type == "RelatedPerson" and not row.deleted:
                check_related_person(self._writer_role(), None,
                                     self._to_stored(row).resource)
            self._note("delete", resource_type, resource_id, row.patient_id)
            if row.deleted:
                return
            version = row.version_id + 1
            now = self.ctx.now
            self.session.execute(update(resources).where(
                R.res_type == resource_type, R.res_id == resource_id).values(
                    version_id=version, last_updated=now, deleted=True,
                    content={}, sealed=None))
            self.session.execute(insert(resource_versions).values(
                res_type=resource_type, res_id=resource_id, version_id=version, last_updated=now,
                deleted=True, method="DELETE", patient_id=row.patient_id,
                categories=row.categories, cat_mask=row.cat_mask, content={}, sealed=None))
            if resource_type == "Consent":
                access_index.refresh(self.session, resource_id, row.patient_id, None)
            self.session.execute(delete(search_index).where(
                S.res_type == resource_type, S.res_id == resource_id))

    def _conditional_match(self, resource_type: str, query: str | list[tuple[str, str]],
                           what: str = "If-None-Exist") -> Stored | None:
        """The one visible resource the search matches, None when none does; 412 when
        several do. Hidden resources never match (the search is consent-narrowed)."""
        from urllib.parse import parse_qsl

        raw = parse_qsl(query.lstrip("?"), keep_blank_values=True) \
            if isinstance(query, str) else list(query)
        raw = [(k, v) for k, v in raw if k not in ("_format", "_pretty")]
        if not raw:
            raise BadRequest(f"{what} must hold search parameters.")
        q = parse_search(resource_type, raw, lenient=False, default_count=2, max_count=2)
        q.count, q.offset, q.includes = 2, 0, []
        result = self.run_search(q, raw)
        if result.total is None or result.total > 1:
            raise PreconditionFailed(f"{what} matches more than one resource.")
        return result.matches[0] if result.matches else None

    # ------------------------------------------------------------------ conditional, patch
    def update_where(self, resource_type: str, raw: list[tuple[str, str]],
                     resource: dict[str, Any], *, if_match: int | None = None
                     ) -> tuple[Stored, bool]:
        """Conditional update (`PUT /Type?query`): no match → create (server id), one →
        update it, several → 412. The body's id, if any, must be the match's."""
        check_writable(resource_type)
        if resource.get("resourceType") != resource_type:
            raise BadRequest(f"The body is not a {resource_type} resource.")
        self.begin("update", resource_type, "s")
        found = self._conditional_match(resource_type, raw, "A conditional update")
        if found is None:
            if resource.get("id") is not None:
                return self.update(resource_type, str(resource["id"]), resource,
                                   if_match=if_match)
            return self.create(resource)
        if resource.get("id") not in (None, found.id):
            raise BadRequest("The id in the body is not the id of the resource the search "
                             "matches.")
        return self.update(resource_type, found.id, {**resource, "id": found.id},
                           if_match=if_match)

    def delete_where(self, resource_type: str, raw: list[tuple[str, str]]) -> bool:
        """Conditional delete (`DELETE /Type?query`): one match → delete it; none → nothing
        (False); several → 412."""
        check_writable(resource_type)
        self.begin("delete", resource_type, "s")
        found = self._conditional_match(resource_type, raw, "A conditional delete")
        if found is None:
            self._note("delete", resource_type, None, None, "not-found")
            return False
        self.delete(resource_type, found.id)
        return True

    def patch(self, resource_type: str, resource_id: str,
              apply: Callable[[dict[str, Any]], dict[str, Any]], *,
              if_match: int | None = None) -> Stored:
        """PATCH: the current version as this actor reads it, changed by `apply`, then
        written like an update (validation, consent to collect, sealing, versions,
        Provenance, audit). Never creates."""
        self.audit.expect("update", resource_type)
        check_writable(resource_type)
        self.begin("update", resource_type, "u")
        with self._op("patch", resource_type):
            row = self._visible(self.current_row(resource_type, resource_id), resource_type)
            if row.deleted:
                self._note("update", resource_type, resource_id, row.patient_id, "not-found")
                raise Gone(f"This {resource_type} was deleted.")
            if if_match is not None and row.version_id != if_match:
                raise PreconditionFailed(
                    "The resource has changed since that version (If-Match failed).")
            current = self._to_stored(row).resource or {}
            patched = apply(copy.deepcopy(current))
            return self._write(resource_type, resource_id, patched, row, "PUT")

    def patch_where(self, resource_type: str, raw: list[tuple[str, str]],
                    apply: Callable[[dict[str, Any]], dict[str, Any]]) -> Stored:
        """Conditional patch (`PATCH /Type?query`): exactly one match, else 404 / 412."""
        check_writable(resource_type)
        self.begin("update", resource_type, "s")
        found = self._conditional_match(resource_type, raw, "A conditional patch")
        if found is None:
            self._note("update", resource_type, None, None, "not-found")
            raise not_found(resource_type)
        return self.patch(resource_type, found.id, apply)

    def _writer_role(self) -> str:
        """The writer's role; the service itself (seed data: `Device/…`) is "server"."""
        p = self.ctx.principal
        return "server" if (p.fhir_user or "").startswith("Device/") else p.role

    def _check_assisted(self, consent_body: dict[str, Any], existing: Row[Any] | None) -> None:
        """A professional's Consent is an assisted consent (SPEC §13), for a person who
        exists and has not refused it — a refusal answers exactly like a missing person."""
        if existing is not None:
            raise Forbidden("Only the person changes or withdraws their consent.")
        check_assisted(consent_body, self.ctx.principal.practitioner)
        ref = str((consent_body.get("patient") or {}).get("reference") or "")
        pid = ref.split("/", 1)[1] if ref.startswith("Patient/") else ""
        row = self.current_row("Patient", pid) if pid else None
        if row is None or row.deleted or self.store(AssistedRefusals).refused(pid):
            self._note("create", "Consent", None, pid if row is not None else None,
                       "denied" if row is not None else "not-found", detail=ASSISTED)
            raise not_found("Patient")

    def _birth_date(self, related: dict[str, Any]) -> str | None:
        """The birth date of the person a RelatedPerson belongs to (for a parent's mandate)."""
        ref = str((related.get("patient") or {}).get("reference") or "")
        if not ref.startswith("Patient/") or relationship_of(related) != "PRN":
            return None
        patient = self.server_read("Patient", ref.split("/", 1)[1])
        birth = (patient or {}).get("birthDate")
        return birth if isinstance(birth, str) else None

    def server_read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """A resource as the server itself reads it (derived data), unaudited."""
        row = self.current_row(resource_type, resource_id)
        return None if row is None or row.deleted else self._to_stored(
            row, redact=False).resource

    def server_version(self, resource_type: str, resource_id: str,
                       version_id: int) -> dict[str, Any] | None:
        """One earlier version as the server sees it (what a write changed); None when it
        is missing or a deletion."""
        row = self.session.execute(select(resource_versions).where(
            V.res_type == resource_type, V.res_id == resource_id, V.version_id == version_id
        )).first()
        return None if row is None or row.deleted else self._to_stored(
            row, redact=False).resource

    def server_write(self, resource: dict[str, Any]) -> Stored:
        """Write a server-derived resource (a Flag, a Communication) in this transaction."""
        rtype, rid = resource["resourceType"], resource.get("id") or new_id()
        return self._write(rtype, rid, resource, self.current_row(rtype, rid),
                           "PUT", trusted=True)

    def create_server_resource(self, body: dict[str, Any], *, patient_id: str | None = None,
                               categories: frozenset[str] = frozenset(),
                               check_model: bool = True,
                               addressee: str | None = None) -> Stored:
        """Store a resource only the server writes (Communication): version 1, its versions
        row and search index, sealed. Checked against the FHIR R4 model unless its builder
        is tested to make valid ones (`check_model=False`: Provenance, the inbox notice);
        its references may point into the audit log (`about → AuditEvent/x`), so they are
        not resolved."""
        from fhir.resources.R4B import get_fhir_model_class

        resource = copy.deepcopy(body) if check_model else dict(body)
        resource_type = resource.get("resourceType", "")
        if resource_type not in schemas.SERVER_WRITTEN_TYPES:
            raise ValueError("only server-written resource types")
        resource_id = resource.setdefault("id", new_id())
        if check_model:  # Provenance is built by `provenance()`, which a test validates
            get_fhir_model_class(resource_type).model_validate(resource)
        if patient_id is None:
            patient_ref = schemas.patient_of(resource)
            patient_id = patient_ref.split("/", 1)[1] if patient_ref else None
        now = self.ctx.now
        resource["meta"] = {"versionId": "1",
                            "lastUpdated": now.isoformat().replace("+00:00", "Z")}
        if categories:
            resource["meta"]["security"] = schemas.security_labels(categories)
        clear, sealed = self.sealer.seal(self.session, resource, patient_id, 1)
        values = {"res_type": resource_type, "res_id": resource_id, "version_id": 1,
                  "last_updated": now, "deleted": False, "patient_id": patient_id,
                  "categories": ",".join(sorted(categories)),
                  "cat_mask": access_index.mask_of(categories), "content": clear,
                  "sealed": sealed}
        self._insert(resources, [{**values, "addressee": addressee}])
        self._insert(resource_versions, [{"method": "POST", **values}])
        self._insert(search_index, self._index_rows(resource_type, resource_id, resource))
        meta = RowMeta(resource_type, resource_id, patient_id, frozenset(),
                       addressee=addressee)
        return Stored(resource_type, resource_id, 1, now, False, resource, meta, "POST")

    def _write(self, resource_type: str, resource_id: str, body: dict[str, Any],
               existing: Row[Any] | None, method: str, *, trusted: bool = False) -> Stored:
        resource = copy.deepcopy(body)
        resource["id"] = resource_id
        problems = schemas.validate(resource)  # meta too: a null or empty meta is refused
        client_meta = resource.pop("meta", None)
        if not problems and not trusted:
            old = self._to_stored(existing, redact=False).resource if existing is not None \
                and not existing.deleted else None
            resource = content.before_write(resource, old)
            if resource_type == "RelatedPerson":  # representatives (SPEC §13)
                check_related_person(self._writer_role(), resource, old)
                resource = with_parent_end(resource, self._birth_date(resource))
            if resource_type == "Consent" and self.ctx.principal.role == "practitioner":
                self._check_assisted(resource, existing)
        if not problems and resource_type == "Consent":
            problems = [schemas.Problem(path, message, "invalid")
                        for path, message in consent_problems(resource)]
        if problems:
            raise unprocessable(problems)
        patient_ref = schemas.patient_of(resource)
        patient_id = patient_ref.split("/", 1)[1] if patient_ref else None
        if patient_id is not None and self.read_along is not None:
            self._take_dossier(patient_id)
        if existing is not None and existing.patient_id and patient_id != existing.patient_id:
            raise Unprocessable("A resource cannot be moved to another person's dossier.",
                                expression=[f"{resource_type}.subject"])
        writes_psy = bool(schemas.psy_items(resource))
        if not problems and not trusted:
            resource = self._keep_hidden_psy(resource, existing, patient_id)
        categories = set(schemas.categories(resource))
        if _asks_psy(client_meta) or (existing is not None and
                                      "psy" in row_meta(existing).categories):
            categories.add("psy")  # a writer may add psy, never remove it
        cats = frozenset(categories)
        if not trusted:
            try:
                self.policy.check_write(resource_type, patient_id,
                                        cats | ({"psy"} if writes_psy else set()),
                                        row_meta(existing) if existing is not None else None,
                                        **self._providers(resource_type, resource, existing))
            except DossierError:
                self._note("create" if existing is None else "update", resource_type,
                           resource_id if existing is not None else None, patient_id,
                           "denied", reasons=self._reasons())
                raise
        self._check_references(resource, patient_ref)
        version = (existing.version_id + 1) if existing is not None else 1
        now = self.ctx.now
        resource["meta"] = {
            "versionId": str(version),
            "lastUpdated": now.isoformat().replace("+00:00", "Z"),
        }
        labels = schemas.security_labels(cats)
        if labels:
            resource["meta"]["security"] = labels
        clear, sealed = self.sealer.seal(self.session, resource, patient_id, version)
        values = {"version_id": version, "last_updated": now, "deleted": False,
                  "patient_id": patient_id, "categories": ",".join(sorted(cats)),
                  "cat_mask": access_index.mask_of(cats), "content": clear, "sealed": sealed}
        if existing is None:
            self._insert(resources, [{"res_type": resource_type, "res_id": resource_id,
                                      **values}])
        else:
            self.flush_writes()
            self.session.execute(update(resources).where(
                R.res_type == resource_type, R.res_id == resource_id).values(**values))
            self.session.execute(delete(search_index).where(
                S.res_type == resource_type, S.res_id == resource_id))
            if "psy" in cats and "psy" not in row_meta(existing).categories:
                self._label_history_psy(resource_type, resource_id)
        self._insert(resource_versions, [{"res_type": resource_type, "res_id": resource_id,
                                          "method": method, **values}])
        if resource_type == "Consent":  # the access index, in this same transaction
            self.flush_writes()
            access_index.refresh(self.session, resource_id, patient_id, resource)
        self._insert(search_index, self._index_rows(resource_type, resource_id, resource))
        self._note("create" if existing is None else "update", resource_type, resource_id,
                   patient_id)
        meta = RowMeta(resource_type, resource_id, patient_id, cats)
        stored = Stored(resource_type, resource_id, version, now, False, resource, meta, method)
        if not trusted and resource_type == "Consent" and \
                self.ctx.principal.role == "practitioner" and patient_id:
            # assisted consent: the person is told at once; the auditor reviews it
            self._note("operation", "Consent", resource_id, patient_id, detail=ASSISTED)
            notify = getattr(self.audit, "notify_urgent", None)
            if notify is not None:
                notify(patient_id)
        if not trusted:
            self.create_server_resource(provenance(self.ctx, stored, existing is None),
                                        patient_id=patient_id, categories=cats,
                                        check_model=False)
            content.after_write(self, stored)
        if self.on_change is not None:
            self.on_change(self, stored)
        if patient_id and not trusted and schemas.psy_items(resource):
            sees = getattr(self.policy, "sees", None)
            if sees is None or not sees(patient_id, "psy"):  # the answer is a read too
                return replace(stored, resource=schemas.without_psy_items(resource))
        return stored

    def _providers(self, resource_type: str, resource: dict[str, Any],
                   existing: Row[Any] | None) -> dict[str, frozenset[str]]:
        """A HealthcareService's organisations, before and after the write: its members may
        keep it (the policy decides)."""
        if resource_type != "HealthcareService":
            return {}
        sources = [resource]
        if existing is not None and not existing.deleted:
            sources.append(self._to_stored(existing, redact=False).resource or {})
        found = [(r.get("providedBy") or {}).get("reference") for r in sources if r]
        if any(not isinstance(f, str) for f in found):
            return {}  # nothing to compare: the directory's rule (admins) applies
        return {"providers": frozenset(str(f) for f in found)}

    def _keep_hidden_psy(self, resource: dict[str, Any], existing: Row[Any] | None,
                         patient_id: str | None) -> dict[str, Any]:
        """A writer not granted psy never saw the psy items (CareTeam participants): they
        stay as they were, after the writer's own items."""
        if existing is None or existing.deleted or not patient_id:
            return resource
        sees = getattr(self.policy, "sees", None)
        if sees is not None and sees(patient_id, "psy"):
            return resource
        old = self._to_stored(existing, redact=False).resource
        return resource if old is None else schemas.keep_psy_items(resource, old)

    def _label_history_psy(self, resource_type: str, resource_id: str) -> None:
        """A resource newly labelled psy: its earlier versions and its Provenance become psy
        too, so history and vread never show others what is now known to be mental-health
        data."""
        provenance = self.session.execute(select(S.res_id).where(
            S.res_type == "Provenance", S.param == "target",
            S.value == f"{resource_type}/{resource_id}")).scalars().all()
        targets = [(resource_type, resource_id)] + [("Provenance", p) for p in provenance]
        for rtype, rid in targets:
            for table, c in ((resource_versions, V), (resources, R)):
                for key, cats in self.session.execute(select(
                        c.version_id, c.categories).where(c.res_type == rtype, c.res_id == rid)):
                    labels = {x for x in (cats or "").split(",") if x} | {"psy"}
                    self.session.execute(update(table).where(
                        c.res_type == rtype, c.res_id == rid, c.version_id == key).values(
                        categories=",".join(sorted(labels)),
                        cat_mask=access_index.mask_of(labels)))

    def _index_rows(self, resource_type: str, resource_id: str,
                    resource: dict[str, Any]) -> list[dict[str, Any]]:
        # psy items are not searchable: a search would tell a reader without psy that they
        # are there
        rows = [{"res_type": resource_type, "res_id": resource_id, "param": p, "system": s,
                 "value": v[:255]}
                for p, s, v in schemas.extract_index(schemas.without_psy_items(resource))]
        for system, value in schemas.identifiers(resource):
            rows.append({"res_type": resource_type, "res_id": resource_id,
                         "param": "identifier", "system": system[:255],
                         "value": self.sealer.blind(system, value)})
        return rows

    def _check_references(self, resource: dict[str, Any], compartment: str | None) -> None:
        for path, ref in schemas.references(resource):
            if ref.startswith("#"):
                continue
            if not REF_RE.match(ref):
                raise Unprocessable(
                    "References must be relative, like Patient/123.", expression=[path])
            if self.deferred_refs is not None:
                self.deferred_refs.append((path, ref, compartment))
            elif not self.exists_visible(ref, compartment):
                raise Unprocessable("The referenced resource does not exist.",
                                    expression=[path])

    def check_deferred_references(self) -> None:
        pending, self.deferred_refs = self.deferred_refs or [], None
        seen = self.visible_references([(ref, compartment) for _, ref, compartment in pending])
        for path, ref, _ in pending:
            if ref not in seen:
                raise Unprocessable("The referenced resource does not exist.",
                                    expression=[path])


_WRITES = ("INSERT", "UPDATE", "DELETE", "WITH", "MERGE", "REPLACE")


@dataclass
class _Entry:
    """A batch entry run without a savepoint: the buffer's length per table before it,
    and whether anything of it has reached the database."""

    rows: dict[Any, int]
    wrote: bool = False


class EntryNotUndone(InternalError):
    """A batch entry failed after writing outside the buffer: the whole unit fails."""


def provenance(ctx: RequestContext, stored: Stored, created: bool) -> dict[str, Any]:
    """Who wrote this version (SPEC §4), server-written on every create and update."""
    p = ctx.principal
    who: dict[str, Any]
    if p.fhir_user and REF_RE.match(p.fhir_user) and p.fhir_user.split("/")[0] in (
            "Practitioner", "Patient", "Organization", "RelatedPerson"):
        who = {"reference": p.on_behalf_of or p.fhir_user}
    else:
        who = {"identifier": {"system": f"{schemas.CANONICAL}/NamingSystem/operator",
                              "value": p.subject or p.role}}
    agent: dict[str, Any] = {"type": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
        "code": "author"}]}, "who": who}
    if p.client_id:
        agent["onBehalfOf"] = who if p.on_behalf_of else {"identifier": {
            "system": f"{schemas.CANONICAL}/NamingSystem/client-id", "value": p.client_id}}
    return {
        "resourceType": "Provenance",
        "target": [{"reference": f"{stored.resource_type}/{stored.id}"}],
        "recorded": ctx.now.isoformat().replace("+00:00", "Z"),
        "activity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": "CREATE" if created else "UPDATE"}]},
        "agent": [agent],
    }


def consent_problems(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """The §12 Consent encoding, checked by the consent engine's own reader."""
    return consent.validate_consent(resource)


def _asks_psy(meta: Any) -> bool:
    if not isinstance(meta, dict):
        return False
    for coding in meta.get("security") or []:
        if (isinstance(coding, dict) and coding.get("code") == "psy"
                and coding.get("system") == schemas.CATEGORY_SYSTEM):
            return True
    return False


def check_type(resource_type: str) -> None:
    if resource_type not in schemas.SUPPORTED_TYPES and \
            resource_type not in schemas.SERVER_WRITTEN_TYPES:
        raise not_found_type(resource_type)


def check_writable(resource_type: str) -> None:
    check_type(resource_type)
    if resource_type in schemas.SERVER_WRITTEN_TYPES:
        raise MethodNotAllowed(f"{resource_type} resources are written by the server only.",
                               headers={"Allow": "GET"})


def not_found_type(resource_type: str) -> DossierError:
    from dossier.errors import NotFound

    safe = resource_type if re.fullmatch(r"[A-Za-z]{1,64}", resource_type) else "that type"
    return NotFound(f"This server does not support the resource type {safe}.")


def unprocessable(problems: list[Any]) -> Unprocessable:
    first = problems[0]
    issues = [{"severity": "error", "code": p.code, "diagnostics": p.message,
               "expression": [p.path]} for p in problems[1:20]]
    err = Unprocessable(first.message, expression=[first.path], issues=issues)
    err.code = first.code
    return err

