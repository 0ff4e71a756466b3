"""POST Patient/$locate: the record locator (issue 9, Abrumet metahub style).

A hub asks where a person's dossier is held, by identifier (e.g. NISS). The answer names
each dossier held here whose Patient carries that identifier (blind index, SPEC §7) and
that the hub's principal may read now: any `access` grant, decided by the same policy as
a read (the hub's Organization, or the practitioner it acts for). Each comes with this
instance's address and, when the directory holds one, its Endpoint: the active Endpoint
whose address is this server's FHIR base. No person, no consent, an identifier that
matches nothing: the same empty Parameters (existence hiding, SPEC §5). See docs/hubs.md.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Select

from dossier.core.access import ConsentPolicy
from dossier.core.context import RequestContext
from dossier.core.repository import AuditNote, Repository
from dossier.db.models import resources
from dossier.errors import BadRequest, Forbidden, Unprocessable
from dossier.fhir import operations
from dossier.fhir.operations import Call
from dossier.search import sql as search_sql
from dossier.search.params import Condition, SearchQuery, Token

DB = "https://dossier.brussels/fhir"
PARAM = "Parameters.parameter.identifier"
NAME = re.compile(r"[A-Za-z][A-Za-z0-9\-]{0,63}")
MAX_DOSSIERS = 20  # an identifier names one person; a few duplicates at most
R = resources.c


def _identifier(body: dict[str, Any] | None) -> tuple[str, str]:
    """(system, value) of the one `identifier` parameter; 400/422 naming what is wrong."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("$locate takes a Parameters body with one 'identifier'.")
    if set(body) - {"resourceType", "id", "meta", "parameter"}:
        raise Unprocessable("The Parameters body holds only parameter.",
                            expression=["Parameters"])
    given = body.get("parameter")
    for item in given if isinstance(given, list) else []:
        name = item.get("name") if isinstance(item, dict) else None
        if name != "identifier":
            shown = name if isinstance(name, str) and NAME.fullmatch(name) else None
            raise Unprocessable("$locate takes one parameter: identifier.",
                                expression=[f"Parameters.parameter.{shown}" if shown
                                            else "Parameters.parameter"])
    if not isinstance(given, list) or len(given) != 1:
        raise Unprocessable("Give exactly one identifier (valueIdentifier).", expression=[PARAM])
    item = given[0]
    value = item.get("valueIdentifier")
    if set(item) != {"name", "valueIdentifier"} or not isinstance(value, dict):
        raise Unprocessable("identifier takes a valueIdentifier.", expression=[PARAM])
    if set(value) - {"system", "value"}:
        raise Unprocessable("The identifier holds only system and value.",
                            expression=[f"{PARAM}.valueIdentifier"])
    for part in ("system", "value"):
        text = value.get(part)
        if not isinstance(text, str) or not text.strip():
            raise Unprocessable(f"The identifier needs a {part} (a non-empty string).",
                                expression=[f"{PARAM}.valueIdentifier.{part}"])
    return value["system"], value["value"]


def _ids(repo: Repository, resource_type: str, *conditions: Condition) -> list[str]:
    """Ids of live resources matching the conditions, through the search SQL (bound
    parameters, blind index for identifiers), without the actor's read narrowing."""
    q = SearchQuery(resource_type, conditions=list(conditions))
    stmt: Select[Any] = search_sql.build_search(q, repo.sealer.blind, False)
    stmt = stmt.with_only_columns(R.res_id).order_by(R.res_id).limit(MAX_DOSSIERS)
    return [str(rid) for (rid,) in repo.session.execute(stmt).all()]


def _this_instance(repo: Repository, base: str) -> str | None:
    """The id of the active Endpoint whose address is this server's FHIR base, if any."""
    base = base.rstrip("/")
    found = _ids(repo, "Endpoint",
                 Condition("address", "token", (Token(None, base), Token(None, base + "/"))),
                 Condition("status", "token", (Token(None, "active"),)))
    return found[0] if found else None


def _note(repo: Repository, ctx: RequestContext, patient_id: str | None, outcome: str,
          query: list[tuple[str, str]]) -> None:
    """One audit event; the identifier goes in as a keyed hash, like a search value."""
    repo.audit.record(repo.session, ctx, AuditNote(
        "operation", "Patient", patient_id, {patient_id} if patient_id else set(), outcome,
        "locate", query))


def locate(repo: Repository, call: Call) -> Any:
    ctx = repo.ctx
    params = call.params
    body = call.body
    repo.begin("operation", "Patient", None)
    if ctx.principal.role != "hub":
        raise Forbidden("Only a hub locates dossiers.")
    repo.policy.gate("Patient", "s")  # the token's scopes must allow Patient search
    if any(key != "_format" for key, _ in params):
        raise BadRequest("$locate takes its parameter in a Parameters body.")
    system, value = _identifier(body)
    query = [("identifier", f"{system}|{value}")]
    policy = repo.policy if isinstance(repo.policy, ConsentPolicy) else ConsentPolicy(
        repo.session, ctx.principal, ctx.now)
    held = _ids(repo, "Patient", Condition("identifier", "identifier",
                                           (Token(system, value),)))
    shown = [pid for pid in held if policy.granted(pid)]
    for pid in held:  # a refusal goes to the person's log, never to the hub
        _note(repo, ctx, pid, "success" if pid in shown else "denied", query)
    if not held:
        _note(repo, ctx, None, "success", query)
    endpoint = _this_instance(repo, ctx.base_url) if shown else None
    out: list[dict[str, Any]] = []
    for pid in shown:
        part: list[dict[str, Any]] = [
            {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}]
        if endpoint:
            part.append({"name": "endpoint",
                         "valueReference": {"reference": f"Endpoint/{endpoint}"}})
        part.append({"name": "address", "valueUrl": ctx.base_url})
        out.append({"name": "match", "part": part})
    answer: dict[str, Any] = {"resourceType": "Parameters"}
    if out:
        answer["parameter"] = out
    return answer


operations.register(operations.Operation(
    "locate", "type", "Patient", frozenset({"POST"}), locate,
    f"{DB}/OperationDefinition/Patient-locate", access={"POST": "read"}))
