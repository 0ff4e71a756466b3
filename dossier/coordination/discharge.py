"""The discharge protocol (SPEC §14): `$discharge-plan` records a planned discharge and asks
each consented professional of the network, in their inbox, to confirm that they are
available then; `$discharge-confirm` answers (for oneself, or for an informal carer of the
network, recorded as such); the planner's inbox holds every confirmation and refusal and
`$discharge-readiness` counts them. A new date cancels the plan and asks again.

The plan is a démarche (Task, code `hospital-discharge`, intent `plan`,
`executionPeriod.start` = the date, `requester` = the planner)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from auth import Principal
from dossier.coordination.messages import message, send
from dossier.core.access import ConsentPolicy
from dossier.core.directory import StoreDirectory
from dossier.core.repository import REF_RE, Repository, Stored
from dossier.errors import BadRequest, Forbidden, Unprocessable, not_found
from dossier.fhir import operations
from dossier.fhir.operations import Call
from dossier.fhir.ops.content import parse_at
from dossier.stores.messages import Messages
from schemas import DEMARCHE_TYPE_SYSTEM

DB = "https://dossier.brussels/fhir"
PLAN_CODE = "hospital-discharge"
ANSWERS = ("discharge-confirmation", "discharge-refusal")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ref(value: Any) -> str | None:
    found = value.get("reference") if isinstance(value, dict) else None
    return found if isinstance(found, str) and REF_RE.match(found) else None


def _parameters(body: dict[str, Any] | None, allowed: dict[str, str],
                operation: str) -> dict[str, Any]:
    """name → value of a Parameters body: each name at most once, with its one value[x]."""
    if not body or body.get("resourceType") != "Parameters" or not isinstance(
            body.get("parameter", []), list):
        raise Unprocessable(f"${operation} takes a Parameters resource.",
                            expression=["Parameters"])
    found: dict[str, Any] = {}
    for entry in body.get("parameter", []):
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in allowed:
            raise Unprocessable(f"${operation} takes the parameters "
                                f"{', '.join(allowed)} only.",
                                expression=["Parameters.parameter"])
        if name in found:
            raise Unprocessable(f"The parameter '{name}' is given twice.",
                                expression=[f"Parameters.parameter.{name}"])
        found[name] = entry.get(allowed[name])
    return found


def _practitioner_principal(repo: Repository, practitioner: str) -> Principal:
    roles = StoreDirectory(None, repo.session).active_roles(practitioner, repo.ctx.now)
    return Principal(role="practitioner", roles=frozenset({"practitioner"}),
                     fhir_user=practitioner, patient=None, practitioner=practitioner,
                     organizations=frozenset(o for o, _ in roles if o),
                     professions=frozenset(c for _, c in roles if c), client_id=None,
                     scopes=(), on_behalf_of=None)


def _consented(repo: Repository, patient_id: str, practitioner: str) -> bool:
    """The person grants this professional their network (ordinary consent only)."""
    judge = ConsentPolicy(repo.session, _practitioner_principal(repo, practitioner),
                          repo.ctx.now)
    judge.break_glass_allowed = False
    return judge.decide(patient_id, frozenset({"network"}), "access")


def _network(repo: Repository, teams: list[dict[str, Any]],
             now: datetime) -> tuple[list[str], list[str]]:
    """(practitioners, informal carers) of the current network the caller sees."""
    professionals: list[str] = []
    carers: list[str] = []
    for team in teams:
        if team.get("status") not in (None, "active", "proposed"):
            continue
        for part in team.get("participant") or []:
            end = (part.get("period") or {}).get("end")
            if isinstance(end, str) and end < _iso(now)[:len(end)]:
                continue
            member = _ref(part.get("member"))
            if member is None:
                continue
            if member.startswith("PractitionerRole/"):
                role = repo.server_read("PractitionerRole", member.split("/", 1)[1])
                member = _ref((role or {}).get("practitioner")) or ""
            if member.startswith("Practitioner/") and member not in professionals:
                professionals.append(member)
            elif member.startswith("RelatedPerson/") and member not in carers:
                carers.append(member)
    return professionals, carers


def _visible(repo: Repository, patient_id: str, operation: str) -> list[Stored]:
    items = repo.compartment(patient_id, operation=operation)
    if not items:
        raise not_found("Patient")
    return items


def answers(repo: Repository, patient_id: str, plan_id: str) -> list[dict[str, Any]]:
    """The latest answer per professional (and per carer answered for), oldest first."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    store = repo.store(Messages)
    for category in ANSWERS:
        for mid, _ in store.about(patient_id, f"Task/{plan_id}", category):
            found = repo.server_read("Communication", mid)
            if found is None:
                continue
            about = [a.get("reference") for a in found.get("about") or []]
            carer = next((a for a in about if str(a).startswith("RelatedPerson/")), "")
            key = (str((found.get("sender") or {}).get("reference")), carer)
            if key not in latest or latest[key]["sent"] <= found["sent"]:
                latest[key] = found
    return sorted(latest.values(), key=lambda m: (m["sent"], m["id"]))


def _answer_parts(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in found:
        code = m["category"][0]["coding"][0]["code"]
        parts = [{"name": "by", "valueReference": m["sender"]},
                 {"name": "available", "valueBoolean": code == "discharge-confirmation"},
                 {"name": "at", "valueDateTime": m["sent"]}]
        carer = [a for a in m.get("about") or [] if a["reference"].startswith("RelatedPerson/")]
        if carer:
            parts.insert(1, {"name": "onBehalfOf", "valueReference": carer[0]})
        out.append({"name": "answer", "part": parts})
    return out


def plan(repo: Repository, call: Call) -> Any:
    """POST Patient/{id}/$discharge-plan (at, destination)."""
    pid = call.resource_id
    assert pid is not None
    if call.params:
        raise BadRequest("$discharge-plan takes its parameters in a Parameters body.")
    repo.begin("operation", "Patient", "r")
    repo.policy.gate("Task", "c")
    planner = repo.ctx.principal.practitioner
    if planner is None:
        raise Forbidden("A discharge is planned by a professional.")
    found = _parameters(call.body, {"at": "valueDateTime", "destination": "valueReference"},
                        "discharge-plan")
    parse_at(found.get("at"))  # a dateTime with a time of day and a zone, or 422
    if "destination" in found and _ref(found.get("destination")) is None:
        raise Unprocessable("The parameter 'destination' needs valueReference such as "
                            "Organization/123.", expression=["Parameters.parameter.destination"])
    items = _visible(repo, pid, "discharge-plan")
    when = found["at"]
    store = repo.store(Messages)
    current_id = store.open_plan(pid, DEMARCHE_TYPE_SYSTEM, PLAN_CODE)
    # the current plan is a démarche: read as the planner may (404 without démarches)
    current = repo.read("Task", current_id).resource if current_id else None
    if current is not None and (current.get("executionPeriod") or {}).get("start") == when:
        return _summary(repo, pid, current, asked=None)
    if current is not None:  # a new date: the old plan is cancelled, everyone asked again
        cancelled = dict(current)
        cancelled.pop("meta", None)
        cancelled["status"] = "cancelled"
        repo.update("Task", current["id"], cancelled)
    task: dict[str, Any] = {
        "resourceType": "Task", "status": "in-progress", "intent": "plan",
        "code": {"coding": [{"system": DEMARCHE_TYPE_SYSTEM, "code": PLAN_CODE}]},
        "for": {"reference": f"Patient/{pid}"}, "authoredOn": _iso(repo.ctx.now),
        "requester": {"reference": planner}, "executionPeriod": {"start": when}}
    if current is not None:
        task["partOf"] = [{"reference": f"Task/{current['id']}"}]
    stored, _ = repo.create(task)
    teams = [s.resource for s in items if s.resource_type == "CareTeam" and s.resource]
    professionals, carers = _network(repo, teams, repo.ctx.now)
    asked = [p for p in professionals if p != planner and _consented(repo, pid, p)]
    for who in asked:
        send(repo, message(pid, who, "discharge-request", [f"Task/{stored.id}"],
                           repo.ctx.now, sender=planner))
    repo.begin("operation", "Patient", None)  # the unit's audit: this operation again
    return _summary(repo, pid, stored.resource or task, asked=asked, carers=carers)


def _summary(repo: Repository, pid: str, task: dict[str, Any], *, asked: list[str] | None,
             carers: list[str] | None = None) -> dict[str, Any]:
    store = repo.store(Messages)
    ref = f"Task/{task['id']}"
    if asked is None:
        asked = sorted({who for _, who in store.about(pid, ref, "discharge-request")})
    parameters: list[dict[str, Any]] = [
        {"name": "plan", "valueReference": {"reference": ref}},
        {"name": "at", "valueDateTime": (task.get("executionPeriod") or {}).get("start")}]
    parameters += [{"name": "asked", "valueReference": {"reference": p}} for p in asked]
    parameters += [{"name": "informal", "valueReference": {"reference": c}}
                   for c in carers or []]
    parameters += _answer_parts(answers(repo, pid, task["id"]))
    return {"resourceType": "Parameters", "parameter": parameters}


def confirm(repo: Repository, call: Call) -> Any:
    """POST Patient/{id}/$discharge-confirm (plan, available, onBehalfOf)."""
    pid = call.resource_id
    assert pid is not None
    if call.params:
        raise BadRequest("$discharge-confirm takes its parameters in a Parameters body.")
    repo.begin("operation", "Patient", "r")
    me = repo.ctx.principal.practitioner
    if me is None:
        raise Forbidden("A professional of the network confirms a discharge.")
    found = _parameters(call.body, {"plan": "valueReference", "request": "valueReference",
                                    "available": "valueBoolean",
                                    "onBehalfOf": "valueReference"}, "discharge-confirm")
    if ("plan" in found) == ("request" in found):
        raise Unprocessable("Give either 'plan' (Task/…) or 'request' (the Communication/… in "
                            "your inbox).", expression=["Parameters.parameter.plan"])
    if "request" in found:  # the request in one's inbox names the plan (which a
        # professional without démarches sees masked)
        plan_ref = _plan_of_request(repo, pid, me, _ref(found.get("request")))
    else:
        plan_ref = _ref(found.get("plan"))
    if plan_ref is None or not plan_ref.startswith("Task/"):
        raise Unprocessable("The parameter 'plan' needs valueReference Task/… (the plan).",
                            expression=["Parameters.parameter.plan"])
    if not isinstance(found.get("available"), bool):
        raise Unprocessable("The parameter 'available' needs valueBoolean.",
                            expression=["Parameters.parameter.available"])
    carer = _ref(found.get("onBehalfOf")) if "onBehalfOf" in found else None
    if "onBehalfOf" in found and (carer is None or not carer.startswith("RelatedPerson/")):
        raise Unprocessable("The parameter 'onBehalfOf' needs valueReference RelatedPerson/….",
                            expression=["Parameters.parameter.onBehalfOf"])
    store = repo.store(Messages)
    requests = [(mid, who) for mid, who in store.about(pid, plan_ref, "discharge-request")
                if who == me]
    task = repo.server_read("Task", plan_ref.split("/", 1)[1])
    if not requests or task is None or task.get("status") != "in-progress" or \
            (task.get("for") or {}).get("reference") != f"Patient/{pid}" or \
            not _consented(repo, pid, me):
        # not asked, not consented, or no such plan: the same answer as a missing one
        repo.note_access("operation", "Patient", None, f"Patient/{pid}",
                         detail="discharge-confirm")
        raise not_found("Task")
    if carer is not None:
        teams = [s.resource for s in repo.compartment(pid, operation="discharge-confirm")
                 if s.resource_type == "CareTeam" and s.resource]
        if carer not in _network(repo, teams, repo.ctx.now)[1]:
            raise not_found("RelatedPerson")
    planner = _ref(task.get("requester"))
    assert planner is not None
    category = "discharge-confirmation" if found["available"] else "discharge-refusal"
    about = [plan_ref, *([carer] if carer else [])]
    sent = send(repo, message(pid, planner, category, about, repo.ctx.now, sender=me,
                              in_response_to=f"Communication/{requests[-1][0]}"))
    repo.note_access("operation", "Patient", None, f"Patient/{pid}",
                     detail="discharge-confirm")
    return {"resourceType": "Parameters", "parameter": [
        {"name": "recorded", "valueReference": {"reference": f"Communication/{sent.id}"}}]}


def _plan_of_request(repo: Repository, patient_id: str, me: str,
                     request: str | None) -> str | None:
    """The plan a discharge request addressed to me names; 404 for anything else."""
    if request is None or not request.startswith("Communication/"):
        raise Unprocessable("The parameter 'request' needs valueReference Communication/….",
                            expression=["Parameters.parameter.request"])
    found = repo.server_read("Communication", request.split("/", 1)[1]) or {}
    codes = [c.get("code") for cat in found.get("category") or []
             for c in cat.get("coding") or []]
    if "discharge-request" not in codes or \
            found.get("recipient") != [{"reference": me}] or \
            found.get("subject") != {"reference": f"Patient/{patient_id}"}:
        repo.note_access("operation", "Patient", None, f"Patient/{patient_id}",
                         detail="discharge-confirm")
        raise not_found("Communication")
    return _ref((found.get("about") or [None])[0])


def readiness_answers(repo: Repository, patient_id: str, at: datetime) -> list[dict[str, Any]]:
    """For `$discharge-readiness`: the open plan for that time, if any, and how many
    confirmed and refused (the planner's inbox holds each answer)."""
    store = repo.store(Messages)
    plan_id = store.open_plan(patient_id, DEMARCHE_TYPE_SYSTEM, PLAN_CODE)
    if plan_id is None or not repo.exists_visible(f"Task/{plan_id}"):
        return []  # no plan, or one the caller may not see (démarches)
    task = repo.server_read("Task", plan_id)
    start = (task or {}).get("executionPeriod", {}).get("start")
    if task is None or not isinstance(start, str):
        return []
    try:
        if parse_at(start) != at:
            return []
    except Unprocessable:
        return []
    found = answers(repo, patient_id, task["id"])
    confirmed = sum(1 for m in found
                    if m["category"][0]["coding"][0]["code"] == "discharge-confirmation")
    return [{"name": "plan", "valueReference": {"reference": f"Task/{task['id']}"}},
            {"name": "confirmed", "valueInteger": confirmed},
            {"name": "refused", "valueInteger": len(found) - confirmed}]


for _op in (
    operations.Operation("discharge-plan", "instance", "Patient", frozenset({"POST"}), plan,
                         f"{DB}/OperationDefinition/Patient-discharge-plan"),
    operations.Operation("discharge-confirm", "instance", "Patient", frozenset({"POST"}),
                         confirm, f"{DB}/OperationDefinition/Patient-discharge-confirm"),
):
    operations.register(_op)
