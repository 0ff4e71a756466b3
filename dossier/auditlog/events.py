"""AuditEvent: a FHIR view (aligned with IHE BALP) of the append-only audit records.

The citizen reads the events about their own dossier; auditors read all; nobody else.
Reading the log is itself a request and is recorded like any other.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
from sqlalchemy import and_, func, select

import schemas
from audit.store import AuditStore
from dossier.core.repository import Repository
from dossier.db.models import audit_records
from dossier.errors import BadRequest, Forbidden, not_found
from dossier.search.params import ID_RE, parse_date

A = audit_records.c
LOG_INDEX = f"{schemas.CANONICAL}/StructureDefinition/log-index"
ACTION = {"create": "C", "read": "R", "vread": "R", "search": "E", "history": "R",
          "update": "U", "delete": "D", "operation": "E", "multiple": "E", "request": "E"}
SUBTYPE = {"create": "create", "read": "read", "vread": "vread", "search": "search-type",
           "history": "history-instance", "update": "update", "delete": "delete",
           "operation": "operation"}
OUTCOME = {"success": "0", "invalid": "4", "not-found": "4", "denied": "4", "error": "8"}
PARAMS = {"patient", "agent", "date", "outcome", "action", "purpose", "_count", "_offset",
          "_id", "_format"}


def to_audit_event(record: dict[str, Any], index: int | None) -> dict[str, Any]:
    agent = record.get("agent", {})
    agents: list[dict[str, Any]] = []
    who = agent.get("on_behalf_of") or agent.get("who")
    person: dict[str, Any] = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                             "code": "PROV" if agent.get("role") == "practitioner" else
                             "PAT" if agent.get("role") == "citizen" else "ASSIGNED"}]},
        "requestor": True,
        "role": [{"coding": [{"system": f"{schemas.CANONICAL}/CodeSystem/actor-role",
                              "code": agent.get("role", "unknown")}]}],
    }
    if who:
        person["who"] = {"reference": who}
    agents.append(person)
    if agent.get("client"):
        agents.append({"requestor": False, "who": {"identifier": {
            "system": f"{schemas.CANONICAL}/NamingSystem/client-id",
            "value": agent["client"]}},
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                 "code": "110150", "display": "Application"}]}})
    entities: list[dict[str, Any]] = []
    if record.get("patient"):
        entities.append({"what": {"reference": record["patient"]},
                         "type": {"system": "http://terminology.hl7.org/CodeSystem/"
                                  "audit-entity-type", "code": "1"},
                         "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                                  "code": "1"}})
    for step in record.get("events", []):
        entity: dict[str, Any] = {"type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"}}
        if step.get("id"):
            entity["what"] = {"reference": f"{step['type']}/{step['id']}"}
        else:
            entity["what"] = {"display": step.get("type", "*")}
        if step.get("operation") or step.get("detail"):
            entity["detail"] = [{"type": "operation",
                                 "valueString": step.get("operation") or step["detail"]}]
        if step.get("query"):
            entity["query"] = base64.b64encode(json.dumps(
                step["query"], separators=(",", ":")).encode()).decode()
        entities.append(entity)
    first = (record.get("events") or [{}])[0]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": record["id"],
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                 "code": "rest", "display": "RESTful Operation"},
        "action": ACTION.get(record.get("action", ""), "E"),
        "recorded": record["recorded"],
        "outcome": OUTCOME.get(record.get("outcome", ""), "8"),
        "purposeOfEvent": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": record.get("purpose") or "TREAT"}]}],
        "agent": agents,
        "source": {"site": "dossier", "observer": {"display": "Dossier"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/"
                             "security-source-type", "code": "4"}]},
        "entity": entities,
    }
    subtype = SUBTYPE.get(first.get("action", ""))
    if subtype:
        event["subtype"] = [{"system": "http://hl7.org/fhir/restful-interaction",
                             "code": subtype}]
    if index is not None:
        event["extension"] = [{"url": LOG_INDEX, "valueInteger": index}]
    shown: dict[str, Any] = event
    return shown


def logged(row: Any) -> dict[str, Any]:
    """The record as logged: its leaf bytes (what `verify` checks and the MAC covers); the
    JSON column beside them serves searches. Records older than 0015 have only the JSON."""
    if row.leaf is None:
        return row.record  # type: ignore[no-any-return]
    record: dict[str, Any] = orjson.loads(row.leaf)
    return record


def _scope(repo: Repository) -> Any:
    principal = repo.ctx.principal
    if principal.role == "auditor":
        return None
    if principal.role == "citizen":
        # their own log, and the logs of the people they represent (SPEC §13)
        reach = getattr(repo.policy, "citizen_reach", None)
        refs = reach() if reach is not None else {principal.patient} - {None}
        ids = sorted(str(ref).split("/", 1)[1] for ref in refs)
        if len(ids) == 1:
            return A.patient_id == ids[0]
        if ids:
            return A.patient_id.in_(ids)
    raise Forbidden("Only the person concerned and auditors read the access log.")


def read_event(repo: Repository, store: AuditStore, record_id: str) -> dict[str, Any]:
    repo.begin("read", "AuditEvent", "r")
    scope = _scope(repo)
    stmt = select(A.record, A.leaf).where(A.id == record_id)
    if scope is not None:
        stmt = stmt.where(scope)
    row = repo.session.execute(stmt).first()
    if row is None:
        raise not_found("AuditEvent")
    record = logged(row)
    repo.note_access("read", "AuditEvent", record_id, record.get("patient"))
    return to_audit_event(record, store.index_of(repo.session, [record_id]).get(record_id))


def search_events(repo: Repository, store: AuditStore,
                  raw: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], int, int, int]:
    repo.begin("search", "AuditEvent", "s")
    scope = _scope(repo)
    clauses = [] if scope is None else [scope]
    count, offset = repo.page_size, 0
    for key, value in raw:
        if key not in PARAMS:
            raise BadRequest(f"The AuditEvent search parameter '{key[:64]}' is not supported.")
        if key == "_count":
            if not (value.isascii() and value.isdigit()):
                raise BadRequest("_count must be a whole number.")
            count = min(int(value), repo.max_page_size)
        elif key == "_offset":
            if not (value.isascii() and value.isdigit()):
                raise BadRequest("_offset must be a whole number.")
            offset = int(value)
        elif key == "patient":
            pid = value.removeprefix("Patient/")
            if not ID_RE.match(pid):
                raise BadRequest("patient must be a Patient reference.")
            clauses.append(A.patient_id == pid)
        elif key == "purpose":
            if value not in ("TREAT", "BTG"):
                raise BadRequest("purpose must be TREAT or BTG.")
            clauses.append(A.record["purpose"].as_string() == value)
        elif key == "agent":
            clauses.append(A.agent == value)
        elif key == "_id":  # one id, or a comma-separated list of up to 100
            ids = value.split(",")
            if len(ids) > 100:
                raise BadRequest("_id lists at most 100 ids.")
            clauses.append(A.id.in_(ids))
        elif key == "outcome":
            codes = {v: k for k, v in OUTCOME.items()}
            names = [k for k, v in OUTCOME.items() if v == value] or [value]
            del codes
            clauses.append(A.outcome.in_(names))
        elif key == "action":
            names = [k for k, v in ACTION.items() if v == value]
            if not names:
                raise BadRequest("action must be one of C, R, U, D, E.")
            clauses.append(A.action.in_(names))
        elif key == "date":
            rng = parse_date(value)
            op = rng.prefix
            if op in ("ge", "gt", "sa"):
                clauses.append(A.recorded_at >= (rng.low if op == "ge" else rng.high))
            elif op in ("le", "lt", "eb"):
                clauses.append(A.recorded_at < (rng.high if op == "le" else rng.low))
            else:
                clauses.append(and_(A.recorded_at >= rng.low, A.recorded_at < rng.high))
    where = and_(*clauses) if clauses else None
    base = select(A.id, A.record, A.leaf, A.patient_id)
    total_q = select(func.count()).select_from(audit_records)
    if where is not None:
        base, total_q = base.where(where), total_q.where(where)
    total = repo.session.execute(total_q).scalar_one()
    rows = repo.session.execute(base.order_by(A.seq.desc()).limit(count).offset(offset)).all()
    indexes = store.index_of(repo.session, [r.id for r in rows])
    repo.note_access("search", "AuditEvent", None, None)
    return [to_audit_event(logged(r), indexes.get(r.id)) for r in rows], total, count, offset
