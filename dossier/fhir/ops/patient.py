"""Patient-level operations: $everything, $access-preview, $break-glass (SPEC §5, §9).

Each runs in one unit of work through the Repository, so consent, decryption and audit
apply exactly as for any read."""

from __future__ import annotations

import uuid
from typing import Any

import consent
from auth import Principal
from auth.scopes import parse_scopes
from dossier.core.access import ConsentPolicy
from dossier.core.context import RequestContext
from dossier.core.directory import StoreDirectory
from dossier.core.repository import Repository, Stored
from dossier.errors import BadRequest, Forbidden, Unprocessable, not_found
from dossier.fhir import operations
from dossier.fhir.bundles import full_url, ignored_issues, instant, outcome_entry, page_links
from dossier.fhir.operations import Call
from dossier.search.params import ID_RE, parse_date
from dossier.stores.break_glass import BreakGlassGrants

BREAK_GLASS_MINUTES = 60
DB = "https://dossier.brussels/fhir"


def _bundle(ctx: RequestContext, items: list[Stored], kind: str = "searchset") -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": kind,
                              "timestamp": instant(ctx.now), "total": len(items)}
    if kind != "searchset":
        del bundle["total"]
    if items:
        bundle["entry"] = [{"fullUrl": full_url(ctx.base_url, s), "resource": s.resource}
                           | ({"search": {"mode": "match"}} if kind == "searchset" else {})
                           for s in items]
    return bundle


def _visible_patient(repo: Repository, patient_id: str) -> list[Stored]:
    items = repo.compartment(patient_id, operation="everything")
    if not items:
        raise not_found("Patient")
    return items


EVERYTHING_TYPES = frozenset({"Patient", "RelatedPerson", "CareTeam", "Task", "Observation",
                              "Flag", "Consent", "Communication", "Provenance"})


def everything(repo: Repository, call: Call) -> Any:
    """The whole visible dossier in one Bundle; with `_count`, in pages (`next` links),
    narrowed by `_type` and `_since` when given. Other parameters → 400 (dropped and
    listed under Prefer: handling=lenient)."""
    ctx = repo.ctx
    rid = call.resource_id
    assert rid is not None
    count: int | None = None
    offset = 0
    types: set[str] | None = None
    since = None
    kept: list[tuple[str, str]] = []
    ignored: list[str] = []
    for key, value in call.params:
        if key in ("_format", "_pretty"):
            continue
        if key in ("_count", "_offset"):
            if not (value.isascii() and value.isdigit()) or len(value) > 9 or (key == "_offset" and
                                                          int(value) > 1_000_000):
                raise BadRequest(f"{key} must be a whole number.")
            if key == "_count":
                count = min(int(value), repo.max_page_size)
            else:
                offset = int(value)
        elif key == "_type":
            names = {v.strip() for v in value.split(",") if v.strip()}
            if not names or not names <= EVERYTHING_TYPES:
                raise BadRequest("_type takes resource types of a dossier: "
                                 f"{', '.join(sorted(EVERYTHING_TYPES))}.")
            types = names if types is None else types & names
            kept.append((key, value))
        elif key == "_since":
            since = parse_date(value).low
            kept.append((key, value))
        elif call.lenient:
            ignored.append(key)
        else:
            raise BadRequest(f"$everything does not take '{key[:64]}' (it takes _count, "
                             "_type and _since).")
    repo.begin("operation", "Patient", "r")
    if count is None and types is None and since is None:
        bundle = _bundle(ctx, _visible_patient(repo, rid))
    else:
        size = repo.max_page_size if count is None else count
        items, total, visible = repo.compartment_page(
            rid, count=size, offset=offset, operation="everything",
            types=frozenset(types) if types is not None else None, since=since)
        if not visible:
            raise not_found("Patient")
        bundle = _bundle(ctx, items)
        bundle["total"] = total
        bundle["link"] = page_links(f"{ctx.base_url}/Patient/{rid}/$everything", kept, total,
                                    size, offset)
    if ignored:
        bundle.setdefault("entry", []).append(outcome_entry(ctx.base_url,
                                                            ignored_issues(ignored)))
    return bundle


def _preview_principal(repo: Repository, actor: str, directory: StoreDirectory,
                       ctx: RequestContext) -> Principal:
    kind, _, ident = actor.partition("/")
    if not ID_RE.match(ident):
        raise BadRequest("actor must be a reference such as Practitioner/123.")
    if kind == "Practitioner":
        if not directory.practitioner_active(actor):
            raise Unprocessable("That practitioner is not in the directory.",
                                expression=["actor"])
        roles = directory.active_roles(actor, ctx.now)
        return Principal(role="practitioner", roles=frozenset({"practitioner"}),
                         fhir_user=actor, patient=None, practitioner=actor,
                         organizations=frozenset(o for o, _ in roles if o),
                         professions=frozenset(c for _, c in roles if c), client_id=None,
                         scopes=parse_scopes("user/*.rs"),  # the most any token of theirs reads
                         on_behalf_of=None)
    if kind == "Organization":
        return Principal(role="hub", roles=frozenset({"hub"}), fhir_user=actor, patient=None,
                         practitioner=None, organizations=frozenset({actor}),
                         professions=frozenset(), client_id=None,
                         scopes=parse_scopes("system/*.rs"), on_behalf_of=None)
    raise BadRequest("actor must be a Practitioner or an Organization.")


def access_preview(repo: Repository, call: Call) -> Any:
    ctx = repo.ctx
    rid = call.resource_id
    params = call.params
    assert rid is not None
    actors = [v for k, v in params if k == "actor"]
    if len(actors) != 1 or any(k not in ("actor", "_format") for k, _ in params):
        raise BadRequest("$access-preview takes exactly one 'actor' parameter.")
    repo.begin("operation", "Patient", "r")
    if ctx.principal.role != "citizen":
        raise Forbidden("Only the person themself previews what others see of their dossier.")
    if ctx.principal.patient != f"Patient/{rid}":
        raise not_found("Patient")
    who = _preview_principal(repo, actors[0], StoreDirectory(None, repo.session), ctx)
    judge = ConsentPolicy(repo.session, who, ctx.now)
    items = repo.compartment(rid, policy=judge, operation="access-preview")
    granted = sorted(judge.granted(rid))
    bundle = _bundle(ctx, items, "collection")
    bundle["meta"] = {"tag": [{"system": f"{DB}/CodeSystem/dossier-category",
                               "code": c} for c in granted]}
    return bundle


def break_the_glass(repo: Repository, call: Call) -> Any:
    ctx = repo.ctx
    rid = call.resource_id
    body = call.body
    assert rid is not None
    p = ctx.principal
    repo.begin("operation", "Patient", "r")
    if p.role != "practitioner" or not p.practitioner:
        raise Forbidden("Break-the-glass is for a practitioner in an emergency.")
    reason = _reason(body)
    row = repo.current_row("Patient", rid)
    policy = ConsentPolicy(repo.session, p, ctx.now)
    # a refusal answers like a dossier that does not exist: refusing is never visible
    if row is None or row.deleted or consent.break_glass_refused(
            policy.provisions(rid), ctx.now):
        repo.note_access("operation", "Patient", None, f"Patient/{rid}" if row else None,
                         detail="break-glass")
        raise not_found("Patient")
    grant_id = str(uuid.uuid4())
    sealed = repo.sealer.seal_fields(  # type: ignore[attr-defined]
        repo.session, rid, "BreakGlass", grant_id, {"reason": reason})
    expires = repo.store(BreakGlassGrants).grant(grant_id, rid, p.practitioner, ctx.now,
                                                 BREAK_GLASS_MINUTES, sealed)
    repo.audit.urgent(rid)  # type: ignore[attr-defined]
    repo.note_access("operation", "Patient", rid, f"Patient/{rid}", detail="break-glass")
    return {"resourceType": "Parameters", "parameter": [
        {"name": "grant", "valueString": grant_id},
        {"name": "expires", "valueInstant": instant(expires)},
        {"name": "category", "valueCode": "identity"},
        {"name": "category", "valueCode": "network"},
        {"name": "category", "valueCode": "fragility"},
    ]}


def _reason(body: dict[str, Any] | None) -> str:
    if not body or body.get("resourceType") != "Parameters":
        raise BadRequest("$break-glass takes a Parameters body with a 'reason'.")
    reasons = [p.get("valueString") for p in body.get("parameter", [])
               if isinstance(p, dict) and p.get("name") == "reason"]
    if len(reasons) != 1 or not isinstance(reasons[0], str) or not reasons[0].strip():
        raise Unprocessable("Give one non-empty 'reason' (valueString) for breaking the glass.",
                            expression=["Parameters.parameter.reason"])
    if len(reasons[0]) > 500:
        raise Unprocessable("The reason is limited to 500 characters.",
                            expression=["Parameters.parameter.reason"])
    return reasons[0].strip()


for _op in (
    operations.Operation("everything", "instance", "Patient", frozenset({"GET"}), everything,
                         "http://hl7.org/fhir/OperationDefinition/Patient-everything"),
    operations.Operation("access-preview", "instance", "Patient", frozenset({"GET"}),
                         access_preview, f"{DB}/OperationDefinition/Patient-access-preview"),
    operations.Operation("break-glass", "instance", "Patient", frozenset({"POST"}),
                         break_the_glass, f"{DB}/OperationDefinition/Patient-break-glass",
                         access={"POST": "read"}, stateful=True),
):
    operations.register(_op)
