"""FHIR Bulk Data `$export` (async pattern), consent-bound like every other read.

Kick-off (operations): `GET|POST /fhir/$export` and `/fhir/Patient/$export` → 202 +
Content-Location `/bulk/{job}`; `/fhir/Group/{id}/$export` for the requester's own roster
Group (dossier/rosters.py; a profession Group lists no patients → 422).
Status and files (this module's router): `GET /bulk/{job}` → 202 (X-Progress) or 200 with
the manifest; `DELETE /bulk/{job}` cancels; `GET /bulk/{job}/{Type}.ndjson` → NDJSON.

The export runs in a background thread as the requester: one unit of work per batch of
patients, each patient's dossier read through `Repository.compartment` (the consent
decision, decryption and audit of any read). Files are sealed at rest (dossier/exports.py)
and, at download, each line is checked again against the current consent, so a revocation
also stops an export that has already been prepared. See docs/hubs.md.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy import false, select
from starlette.responses import JSONResponse, Response

from dossier.core.context import RequestContext, owner_of
from dossier.core.repository import AuditNote, Repository, RowMeta
from dossier.core.runtime import Runtime
from dossier.core.standing import standing_claims, token_claims
from dossier.crypto import envelope
from dossier.db.models import export_jobs, resources
from dossier.errors import (
    BadRequest,
    Forbidden,
    InternalError,
    NotFound,
    TooManyRequests,
    Unprocessable,
)
from dossier.exports.files import (
    SealedWriter,
    exports_root,
    job_folder,
    read_sealed,
    remove_job_folder,
)
from dossier.fhir import operations
from dossier.fhir.bundles import instant
from dossier.fhir.operations import Call
from dossier.fhir.routes import base_of, in_unit, runtime_of
from dossier.fhir.wire import fhir_response
from dossier.hubs import rosters
from dossier.search.params import parse_date
from dossier.stores.exports import ExportJobs

log = logging.getLogger("dossier")

J = export_jobs.c
R = resources.c
# What a hub or practitioner may read of a dossier (auth/rules.py) ...
COMPARTMENT_TYPES = ("Patient", "Task", "CareTeam", "RelatedPerson", "Observation", "Flag",
                     "Provenance")
# ... and, at system level only, the directory that those entries refer to.
DIRECTORY_TYPES = ("Organization", "Practitioner", "PractitionerRole", "Endpoint")
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
EXPORT_ROLES = frozenset({"hub", "practitioner"})
KEEP_FILES = timedelta(hours=1)  # a completed export is downloadable this long
MAX_RUN = timedelta(hours=12)  # a job still running then is dropped
STALLED = timedelta(minutes=10)  # no progress this long: the process running it has ended
PATIENTS_PER_UNIT = 25
RETRY_AFTER = "2"
NDJSON = "application/fhir+ndjson"
FILE_NAME = re.compile(r"([A-Z][A-Za-z]{1,63})\.ndjson")
PATIENT_REF = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})")
DB = "https://dossier.brussels/fhir"

router = APIRouter(prefix="/bulk", tags=["bulk export"])


class ExportFailed(InternalError):
    """An export that stopped or failed: start a new one."""


# ---------------------------------------------------------------- kick-off

def _parameters(params: list[tuple[str, str]],
                body: dict[str, Any] | None) -> list[tuple[str, str]]:
    pairs = [(k, v) for k, v in params if k != "_format"]
    if body is None:
        return pairs
    if body.get("resourceType") != "Parameters":
        raise BadRequest("$export takes a Parameters body (or query parameters).")
    for p in body.get("parameter", []):
        value = None
        if isinstance(p, dict):
            value = next((p[k] for k in ("valueString", "valueInstant", "valueDateTime",
                                          "valueCode") if isinstance(p.get(k), str)), None)
            ref = p.get("valueReference")
            if value is None and isinstance(ref, dict) and isinstance(ref.get("reference"),
                                                                      str):
                value = ref["reference"]
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or value is None:
            raise BadRequest("Each $export parameter needs a name and a string value.")
        pairs.append((p["name"], value))
    return pairs


def _safe_type(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z]{1,64}", name) else "that type"


def parse_request(level: str, pairs: list[tuple[str, str]], *, lenient: bool = False
                  ) -> tuple[list[str], datetime | None, list[str] | None]:
    """(types, since, patients) of a kick-off; 400 for anything not supported, unless
    `lenient` (Prefer: handling=lenient), which drops what is not supported (see
    `unsupported`). `_type` and `patient` may be given several times, each a comma list
    (Bulk Data v2, as bulk-data-client sends them): the lists add up. `patient` (Patient
    and Group level) narrows to those people."""
    allowed = COMPARTMENT_TYPES + (DIRECTORY_TYPES if level == "system" else ())
    types: list[str] = []
    since = None
    patients: list[str] | None = None
    seen: set[str] = set()
    for key, value in pairs:
        if key not in accepted_keys(level):
            if lenient:
                continue
            raise BadRequest(f"The $export parameter '{key[:64]}' is not supported here.")
        if key == "patient":
            patients = (patients or []) + [p for p in _patient_ids(value)
                                           if p not in (patients or [])]
        elif key == "_type":
            for name in (n.strip() for n in value.split(",")):
                if name not in allowed:
                    raise BadRequest(f"The resource type {_safe_type(name)} cannot be exported "
                                     f"at this level; use {', '.join(allowed)}.")
                if name not in types:
                    types.append(name)
        elif key in seen:
            raise BadRequest(f"The $export parameter '{key[:64]}' is given twice.")
        elif key == "_since":
            if not (value[:1].isascii() and value[:1].isdigit()):
                raise BadRequest("_since must be an instant, e.g. 2027-03-01T00:00:00Z.")
            since = parse_date(value).low
        elif value not in OUTPUT_FORMATS:
            raise BadRequest("_outputFormat must be application/fhir+ndjson.")
        seen.add(key)
    return types or list(allowed), since, patients


def accepted_keys(level: str) -> tuple[str, ...]:
    return ("_type", "_since", "_outputFormat") + (("patient",) if level != "system" else ())


def unsupported(level: str, pairs: list[tuple[str, str]]) -> list[str]:
    """The parameters a lenient kick-off drops (named in its answer)."""
    return list(dict.fromkeys(k for k, _ in pairs if k not in accepted_keys(level)))


def _patient_ids(value: str) -> list[str]:
    out = []
    for ref in (v.strip() for v in value.split(",")):
        match = PATIENT_REF.fullmatch(ref)
        if match is None:
            raise BadRequest("patient takes references such as Patient/123.")
        out.append(match[1])
    return out


def _group_members(repo: Repository, group_id: str) -> list[str]:
    """Group-level export needs a Group of Patients: the requester's own roster
    (dossier/rosters.py). The directory's Groups are profession Groups, which list no
    patients (a Group of people readable by every user would tell everyone who has a
    dossier): 422 for those, the 404 of a missing Group for anything else."""
    members = rosters.members_of(repo, group_id)
    if members is not None:
        return members
    repo.read("Group", group_id)  # 404 when it does not exist
    raise Unprocessable("Only a Group of Patients can be exported: this is a profession "
                        "Group, which lists no patients. Export your own roster Group, or "
                        "at Patient level.")


def kick_off(repo: Repository, call: Call) -> Any:
    ctx, rid = repo.ctx, call.resource_id
    level = "group" if rid else ("patient" if call.resource_type == "Patient" else "system")
    job_id = uuid.uuid4().hex
    repo.begin("operation", "Patient", None)
    repo.audit.record(repo.session, ctx, AuditNote("operation", "Patient", detail="export"))
    if ctx.principal.role not in EXPORT_ROLES:
        raise Forbidden("Bulk export is for hubs and practitioners.")
    pairs = _parameters(call.params, call.body)
    types, since, patients = parse_request(level, pairs, lenient=call.lenient)
    dropped = unsupported(level, pairs) if call.lenient else []
    for name in types:
        repo.begin("operation", name, "s")  # role and scopes, per type
    repo.begin("operation", "Patient", None)
    if rid:
        members = _group_members(repo, rid)
        patients = members if patients is None else [p for p in patients
                                                     if p in set(members)]
    owner = owner_of(ctx.principal)
    jobs = repo.store(ExportJobs)
    if jobs.running_for(owner):
        raise TooManyRequests("An export of yours is still running; wait for it or "
                              "cancel it first.", headers={"Retry-After": "30"})
    _, kek_id, wrapped = envelope.new_data_key(repo.services.key_provider)
    path = {"system": "$export", "patient": "Patient/$export"}.get(
        level, f"Group/{rid}/$export")
    query = f"?{urlencode(pairs)}" if pairs else ""
    jobs.add(id=job_id, owner=owner, status="in-progress", progress="starting",
             request={"level": level, "types": types, "patients": patients,
                      "since": since.isoformat() if since else None,
                      "url": f"{ctx.base_url}/{path}{query}",
                      "claims": standing_claims(ctx.principal)},
             created_at=ctx.now, updated_at=ctx.now, expires_at=ctx.now + MAX_RUN,
             kek_id=kek_id, wrapped_key=wrapped)
    repo.after_commit("exports")  # a runner takes it once it is committed
    root = ctx.base_url.removesuffix("/fhir")
    return fhir_response({"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": "The export has started; poll the Content-Location URL."}] + [{
            "severity": "warning", "code": "not-supported",
            "diagnostics": f"The $export parameter '{name[:64]}' is not supported and was "
                           "ignored (Prefer: handling=lenient).", "expression": [name[:64]]}
            for name in dropped]}, 202, {"Content-Location": f"{root}/bulk/{job_id}"})


# ---------------------------------------------------------------- the work

def visible_patients(repo: Repository) -> list[str]:
    """Ids of the people whose dossier the actor may read something of: only ids, chosen
    by the policy's own read clause; every row is then read (and re-checked) through
    `repo.compartment`."""
    stmt = repo.policy.narrow(
        select(R.patient_id).where(R.patient_id.is_not(None), R.deleted == false()))
    return sorted({pid for (pid,) in repo.session.execute(stmt.distinct())})


class _Files:
    """One sealed NDJSON file per resource type, opened on its first line."""

    def __init__(self, rt: Runtime, job_id: str, key: bytes) -> None:
        self.folder = job_folder(rt.settings.data_dir, job_id)
        self.key = key
        self.job_id = job_id
        self.writers: dict[str, SealedWriter] = {}

    def write(self, resource_type: str, resource: dict[str, Any]) -> None:
        writer = self.writers.get(resource_type)
        if writer is None:
            writer = SealedWriter(self.folder / f"{resource_type}.ndjson", self.key,
                                  self.job_id)
            self.writers[resource_type] = writer
        writer.write_line(json.dumps(resource, ensure_ascii=False,
                                     separators=(",", ":")).encode())

    def close(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.writers):
            writer = self.writers[name]
            writer.close()
            out.append({"type": name, "file": f"{name}.ndjson", "count": writer.count})
        return out

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


def _set(rt: Runtime, job_id: str, **values: Any) -> bool:
    """Update the job; False when it is gone (cancelled or expired)."""
    with rt.system_session() as session:
        return ExportJobs(session).update(job_id, **values)


def run_starting(rt: Runtime) -> int:
    """Run every job nobody runs yet, one after the other (each claimed atomically, so
    with several processes each job runs once). Returns how many ran."""
    with rt.system_session() as session:
        waiting = ExportJobs(session).starting()
    ran = 0
    for job_id in waiting:
        with rt.system_session() as session:
            if not ExportJobs(session).claim(job_id):
                continue
        run_job(rt, job_id)
        ran += 1
    return ran


def run_job(rt: Runtime, job_id: str) -> None:
    """The export, as the requester; never raises (a worker thread has nobody to tell)."""
    files: _Files | None = None
    data_dir = rt.settings.data_dir
    try:
        with rt.system_session() as session:
            job = ExportJobs(session).get(job_id)
        if job is None:
            return
        job_folder(data_dir, job_id, create=True)
        key = rt.key_provider.unwrap(job.kek_id, job.wrapped_key)
        files = _Files(rt, job_id, key)
        completed = _export(rt, job, files)
        if completed:
            output = files.close()
            files = None
            now = datetime.now(UTC)
            if not _set(rt, job_id, status="completed", output=output, progress="done",
                        updated_at=now, expires_at=now + KEEP_FILES):
                remove_job_folder(data_dir, job_id)
        else:
            files.abort()
            files = None
            remove_job_folder(data_dir, job_id)
    except Exception as exc:  # noqa: BLE001 - report as a failed job, never crash the thread
        log.error("export job failed: %s", type(exc).__name__)
        if files is not None:
            files.abort()
        remove_job_folder(data_dir, job_id)
        try:
            _set(rt, job_id, status="failed", progress="failed")
        except Exception as again:  # noqa: BLE001 - the database itself may be gone
            log.error("export job state not saved: %s", type(again).__name__)


def _since_ok(last_updated: datetime, since: datetime | None) -> bool:
    return since is None or last_updated >= since


def _export(rt: Runtime, job: Any, files: _Files) -> bool:
    """Write every resource the actor may read; False when the job was cancelled."""
    request = job.request
    since = datetime.fromisoformat(request["since"]) if request["since"] else None
    types = request["types"]
    wanted = frozenset(t for t in types if t in COMPARTMENT_TYPES)

    def context() -> RequestContext:  # who, and their consent, afresh for every unit
        return RequestContext(claims=token_claims(request["claims"], datetime.now(UTC)),
                              request_id=job.id)

    patients: list[str] = []
    if wanted:  # read units: on SQLite no write lock while reading (status polls go on)
        with rt.unit(context(), writes=False) as repo:
            patients = visible_patients(repo)
        if request.get("patients") is not None:  # a roster, or the `patient` parameter
            asked = set(request["patients"])
            patients = [p for p in patients if p in asked]
    for start in range(0, len(patients), PATIENTS_PER_UNIT):
        with rt.unit(context(), writes=False) as repo:
            for pid in patients[start:start + PATIENTS_PER_UNIT]:
                for item in repo.compartment(pid, types=wanted, operation="export"):
                    if item.resource is not None and _since_ok(item.last_updated, since):
                        files.write(item.resource_type, item.resource)
        done = min(start + PATIENTS_PER_UNIT, len(patients))
        if not _set(rt, job.id, progress=f"{done}/{len(patients)} patients",
                    updated_at=datetime.now(UTC)):
            return False
    for name in (t for t in types if t in DIRECTORY_TYPES):
        _export_directory(rt, context(), name, since, files)
    with rt.system_session() as session:
        return ExportJobs(session).get(job.id) is not None


def _export_directory(rt: Runtime, ctx: RequestContext, resource_type: str,
                      since: datetime | None, files: _Files) -> None:
    size = rt.settings.page_size_max
    query = [("_count", str(size)), ("_sort", "_lastUpdated")]
    if since is not None:
        query.append(("_lastUpdated", "ge" + instant(since)))
    offset = 0
    with rt.unit(ctx, writes=False) as repo:
        while True:
            result = repo.search(resource_type, [*query, ("_offset", str(offset))])
            for item in result.matches:
                if item.resource is not None:
                    files.write(item.resource_type, item.resource)
            offset += size
            if not result.more:
                return


# ---------------------------------------------------------------- expiry

def purge_expired(rt: Runtime) -> None:
    """Drop expired jobs (row, hence key, then files) and old folders left without a job
    (a crash between the two); a folder younger than STALLED may belong to a job being
    started right now. Background maintenance, once per deployment."""
    now = datetime.now(UTC)
    with rt.system_session() as session:
        jobs = ExportJobs(session)
        gone = jobs.expired(now)
        known = jobs.ids()
    for job_id in gone:
        remove_job_folder(rt.settings.data_dir, job_id)
    oldest = (now - STALLED).timestamp()
    for folder in exports_root(rt.settings.data_dir).iterdir():
        if folder.name not in known and folder.stat().st_mtime < oldest:
            remove_job_folder(rt.settings.data_dir, folder.name)


# ---------------------------------------------------------------- status and files

def _owned_job(repo: Repository, job_id: str) -> Any:
    """The job if this requester started it; the same 404 otherwise (no existence leak).
    Read through the unit, so every poll is audited like any request."""
    repo.begin("operation", "Patient", None)
    repo.note_access("operation", "Patient", None, None, detail="export-status")
    job = repo.store(ExportJobs).get(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) \
        else None
    if job is None or job.owner != owner_of(repo.ctx.principal) or \
            job.expires_at < repo.ctx.now:
        raise NotFound("No export job with that id is available.")
    return job


def manifest(job: Any, root: str) -> dict[str, Any]:
    return {
        "transactionTime": instant(job.created_at),
        "request": job.request["url"],
        "requiresAccessToken": True,
        "output": [{"type": o["type"], "url": f"{root}/bulk/{job.id}/{o['file']}",
                    "count": o["count"]} for o in job.output or []],
        "error": [],
    }


@router.get("/{job_id}")
async def status(request: Request, job_id: str) -> Response:
    job = await in_unit(request, lambda repo, ctx: _owned_job(repo, job_id))
    now = datetime.now(UTC)
    if job.status == "in-progress" and job.updated_at < now - STALLED:
        raise ExportFailed("The export stopped; start a new one.")
    if job.status == "in-progress":
        return Response(status_code=202, headers={
            "X-Progress": job.progress or "in progress", "Retry-After": RETRY_AFTER})
    if job.status != "completed":
        raise ExportFailed("The export failed; start a new one.")
    root = base_of(request).removesuffix("/fhir")
    return JSONResponse(manifest(job, root), headers={
        "Expires": job.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT")})


@router.delete("/{job_id}")
async def cancel(request: Request, job_id: str) -> Response:
    def drop(repo: Repository, ctx: RequestContext) -> str:
        job = _owned_job(repo, job_id)
        repo.store(ExportJobs).remove(job.id)
        return str(job.id)

    removed = await in_unit(request, drop, writes=True)
    remove_job_folder(runtime_of(request).settings.data_dir, removed)
    return fhir_response({"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": "The export was cancelled and its files deleted."}]}, 202)


@router.get("/{job_id}/{name}")
async def download(request: Request, job_id: str, name: str) -> Response:
    return Response(await in_unit(request, lambda repo, ctx: _read_file(repo, job_id, name)),
                    media_type=NDJSON)


def _read_file(repo: Repository, job_id: str, name: str) -> bytes:
    job = _owned_job(repo, job_id)
    entry = next((o for o in job.output or [] if o["file"] == name), None)
    if job.status != "completed" or entry is None or not FILE_NAME.fullmatch(name):
        raise NotFound("No export file with that name is available.")
    key = repo.services.key_provider.unwrap(job.kek_id, job.wrapped_key)
    path = job_folder(repo.services.settings.data_dir, job.id) / name
    kept: list[bytes] = []
    patients: set[str] = set()
    repo.begin("operation", entry["type"], "r")  # the token of today, not of the kick-off
    for chunk in read_sealed(path, key, job.id):
        lines = chunk.splitlines()
        metas = current_meta(repo, entry["type"], [json.loads(x)["id"] for x in lines])
        for line, meta in zip(lines, metas, strict=True):
            if meta is not None and repo.policy.can_read(meta):
                kept.append(line)
                if meta.patient_id:
                    patients.add(meta.patient_id)
    repo.audit.record(repo.session, repo.ctx, AuditNote(
        "operation", entry["type"], None, patients, detail="export-download"))
    return b"".join(line + b"\n" for line in kept)


def current_meta(repo: Repository, resource_type: str,
                 resource_ids: list[str]) -> list[RowMeta | None]:
    """What the policy decides on now — patient and categories of the current version —
    for each id (None when deleted or gone). Metadata only, no content; the decision is
    the policy's. One query per 500 ids."""
    found: dict[str, RowMeta] = {}
    for start in range(0, len(resource_ids), 500):
        chunk = resource_ids[start:start + 500]
        for row in repo.session.execute(select(
                R.res_type, R.res_id, R.patient_id, R.categories, R.deleted).where(
                R.res_type == resource_type, R.res_id.in_(chunk), R.deleted == false())):
            found[row.res_id] = RowMeta(row.res_type, row.res_id, row.patient_id, frozenset(
                c for c in (row.categories or "").split(",") if c))
    return [found.get(i) for i in resource_ids]


for _level, _type in (("system", None), ("type", "Patient"), ("instance", "Group")):
    operations.register(operations.Operation(
        "export", _level, _type, frozenset({"GET", "POST"}), kick_off,
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
        access={"GET": "read", "POST": "read"}, stateful=True))
