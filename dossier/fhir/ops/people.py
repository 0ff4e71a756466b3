"""People and professionals around a dossier (SPEC §13): the person refuses assisted
consent in advance ($assisted-consent), a professional asks for access
($request-access), the person answers ($answer-access-request)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from dossier.core.repository import Repository, Stored
from dossier.domain.consents import consent_body
from dossier.domain.people import niss_of
from dossier.errors import BadRequest, Forbidden, TooManyRequests, Unprocessable, not_found
from dossier.fhir import operations
from dossier.fhir.operations import Call
from dossier.fhir.wire import fhir_response
from dossier.stores.access_requests import AccessRequests
from dossier.stores.enrolment import Enrolment
from dossier.stores.people_choices import AssistedRefusals
from schemas.labels import CATEGORIES

DB = "https://dossier.brussels/fhir"
REQUEST_CATEGORY = f"{DB}/CodeSystem/communication-category"


def _params(body: dict[str, Any] | None, what: str) -> list[dict[str, Any]]:
    if not body or body.get("resourceType") != "Parameters":
        raise BadRequest(f"{what} takes a Parameters body.")
    params = body.get("parameter") or []
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise Unprocessable("Parameters.parameter must be a list of parameters.")
    return params


def deciding_for(repo: Repository, rid: str, *, change: bool) -> None:
    """The person themself, or their representative (`decide` to change, any to read)."""
    p = repo.ctx.principal
    if p.role != "citizen":
        raise Forbidden("Only the person (or their representative) decides this.")
    ref = f"Patient/{rid}"
    if p.patient == ref:
        return
    rep = p.representation(ref)
    if rep is None or repo.current_row("Patient", rid) is None:
        raise not_found("Patient")
    if not rep.in_force:
        raise Forbidden("Your mandate to act for this person has ended.")
    if change and rep.mandate != "decide":
        raise Forbidden("A personne de confiance sees the dossier but changes nothing in it.")


# ---------------------------------------------------------------- $assisted-consent
def assisted_consent(repo: Repository, call: Call) -> Any:
    """GET: whether the person refuses assisted consent; POST (refuse: boolean) sets it."""
    rid = call.resource_id
    assert rid is not None
    repo.begin("operation", "Patient", "r")
    deciding_for(repo, rid, change=call.body is not None)
    refusals = repo.store(AssistedRefusals)
    if call.body is not None:
        values = [p.get("valueBoolean") for p in _params(call.body, "$assisted-consent")
                  if p.get("name") == "refuse"]
        if len(values) != 1 or not isinstance(values[0], bool):
            raise Unprocessable("Give one 'refuse' parameter (valueBoolean).",
                                expression=["Parameters.parameter"])
        refusals.set(rid, values[0], repo.ctx.now)
    repo.note_access("operation", "Patient", rid, f"Patient/{rid}", detail="assisted-consent")
    return {"resourceType": "Parameters", "parameter": [
        {"name": "refuse", "valueBoolean": refusals.refused(rid)}]}


# ---------------------------------------------------------------- $request-access
def _request_values(body: dict[str, Any] | None) -> tuple[list[str], datetime | None]:
    categories: list[str] = []
    end: datetime | None = None
    for p in _params(body, "$request-access"):
        name = p.get("name")
        if name == "category" and isinstance(p.get("valueCode"), str) and \
                p["valueCode"] in CATEGORIES:
            categories.append(p["valueCode"])
        elif name == "period" and isinstance(p.get("valuePeriod"), dict) and end is None:
            end = _end_of(p["valuePeriod"])
        else:
            raise Unprocessable("$request-access takes 'category' (valueCode: identity, "
                                "demarches, network, fragility or psy) and at most one "
                                "'period' (valuePeriod with an end).",
                                expression=["Parameters.parameter"])
    if not categories:
        raise Unprocessable("Ask for at least one category.",
                            expression=["Parameters.parameter"])
    return sorted(set(categories)), end


def _end_of(period: dict[str, Any]) -> datetime:
    text = period.get("end")
    try:
        end = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise Unprocessable("The period needs an end, as a date and time with its zone.",
                            expression=["Parameters.parameter.period"]) from None
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return end


def request_access(repo: Repository, call: Call) -> Any:
    """202 whatever the dossier's state; the person gets an access-request Communication."""
    ctx = repo.ctx
    rid = call.resource_id
    assert rid is not None
    p = ctx.principal
    repo.begin("operation", "Patient", "r")
    if p.role != "practitioner" or not p.practitioner:
        raise Forbidden("Only a professional asks for access.")
    categories, end = _request_values(call.body)
    row = repo.current_row("Patient", rid)
    exists = row is not None and not row.deleted
    request_id = str(uuid.uuid4())
    communication_id = None
    if exists:
        communication = access_request_communication(rid, p.practitioner, categories, end,
                                                     request_id, ctx.now)
        communication_id = repo.create_server_resource(communication, patient_id=rid).id
    repo.store(AccessRequests).add(request_id, rid, p.practitioner, categories, end,
                                   ctx.now, communication_id)
    repo.note_access("operation", "Patient", rid if exists else None,
                     f"Patient/{rid}" if exists else None, detail="request-access")
    return fhir_response(ACCEPTED, 202)


ACCEPTED = {"resourceType": "OperationOutcome", "issue": [{
    "severity": "information", "code": "informational",
    "diagnostics": "Your request was sent if this person has a dossier here. You will see "
                   "the access once they grant it."}]}


def access_request_communication(patient_id: str, practitioner: str, categories: list[str],
                                 end: datetime | None, request_id: str,
                                 now: datetime) -> dict[str, Any]:
    patient = {"reference": f"Patient/{patient_id}"}
    text = "Access requested to: " + ", ".join(categories) + (
        f", until {end.date().isoformat()}" if end else "") + "."
    return {
        "resourceType": "Communication", "id": str(uuid.uuid4()), "status": "in-progress",
        "identifier": [{"system": f"{DB}/NamingSystem/access-request", "value": request_id}],
        "category": [{"coding": [{"system": REQUEST_CATEGORY, "code": "access-request"}]}],
        "priority": "routine", "subject": patient, "recipient": [dict(patient)],
        "sender": {"reference": practitioner},
        "sent": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "payload": [{"contentString": text}],
    }


# ---------------------------------------------------------------- $answer-access-request
def answer_access_request(repo: Repository, call: Call) -> Any:
    """The person accepts (the server writes the Consent, narrowed to the categories they
    keep) or declines a request. Parameters: request, answer (accept|decline), category*."""
    rid = call.resource_id
    assert rid is not None
    repo.begin("operation", "Patient", "r")
    deciding_for(repo, rid, change=True)
    request_id, answer, keep = None, None, []
    for p in _params(call.body, "$answer-access-request"):
        if p.get("name") == "request" and isinstance(p.get("valueString"), str):
            request_id = p["valueString"]
        elif p.get("name") == "answer" and p.get("valueCode") in ("accept", "decline"):
            answer = p["valueCode"]
        elif p.get("name") == "category" and p.get("valueCode") in CATEGORIES:
            keep.append(p["valueCode"])
        else:
            raise Unprocessable("Parameters are request (valueString), answer (accept or "
                                "decline) and category (valueCode).")
    consent_id = answer_request(repo, rid, request_id or "", answer or "", keep)
    out: list[dict[str, Any]] = [{"name": "status", "valueCode": (
        "accepted" if answer == "accept" else "declined")}]
    if consent_id:
        out.append({"name": "consent", "valueReference": {"reference": f"Consent/{consent_id}"}})
    return {"resourceType": "Parameters", "parameter": out}


def answer_request(repo: Repository, patient_id: str, request_id: str, answer: str,
                   keep: list[str]) -> str | None:
    """Accept or decline an open request for this dossier; the Consent's id when accepted."""
    store = repo.store(AccessRequests)
    request = store.get(request_id)
    if request is None or request.patient_id != patient_id or not request.open_at(repo.ctx.now):
        raise not_found("access request")
    if answer not in ("accept", "decline"):
        raise Unprocessable("Answer accept or decline.")
    consent_id = None
    if answer == "accept":
        categories = [c for c in request.categories if not keep or c in keep]
        if not categories:
            raise Unprocessable("Keep at least one of the categories asked for, or decline.")
        stored, _ = repo.create(grant(patient_id, request.practitioner, categories,
                                      request.period_end))
        consent_id = stored.id
    store.decide(request_id, "accepted" if consent_id else "declined", repo.ctx.now,
                 consent_id)
    repo.note_access("operation", "Patient", patient_id, f"Patient/{patient_id}",
                     detail=f"access-request {answer}")
    return consent_id


def grant(patient_id: str, practitioner: str, categories: list[str],
          end: datetime | None) -> dict[str, Any]:
    """The Consent the person approves (the §12 encoding): access and collect."""
    return consent_body(
        patient_id, "permit", actor=practitioner, categories=categories,
        actions=["access", "collect"],
        end=end.astimezone(UTC).isoformat().replace("+00:00", "Z") if end else None)


# ---------------------------------------------------------------- enrolment codes
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud, typed
CODE_VALID = timedelta(days=30)
WRONG_PER_HOUR = 10


def _code_hash(repo: Repository, code: str) -> str:
    return repo.sealer.blind("enrolment-code", code.replace("-", "").upper())


def _login(repo: Repository) -> str:
    """The login a code links: issuer and subject, as a keyed hash."""
    claims = repo.ctx.claims
    assert claims is not None
    return repo.sealer.blind("login", f"{claims.issuer}|{claims.subject}")


def issue_code(repo: Repository, patient_id: str) -> tuple[str, datetime]:
    """A new one-time code (12 letters, shown once) for a pseudonymous dossier."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(12))
    code = "-".join(raw[i:i + 4] for i in range(0, 12, 4))
    by = repo.ctx.principal.practitioner or repo.ctx.principal.fhir_user or "?"
    expires = repo.store(Enrolment).issue(_code_hash(repo, code), patient_id, by,
                                          repo.ctx.now, CODE_VALID)
    repo.note_access("operation", "Patient", patient_id, f"Patient/{patient_id}",
                     detail="enrolment-code issued")
    return code, expires


def first_code(repo: Repository, stored: Stored, created: bool) -> str | None:
    """The code given when a professional opens a pseudonymous dossier (SPEC §13)."""
    p = repo.ctx.principal
    if not created or p.role not in ("practitioner", "admin") or stored.resource is None \
            or niss_of(stored.resource) is not None:
        return None
    return issue_code(repo, stored.id)[0]


def enrolment_code(repo: Repository, call: Call) -> Any:
    """A new code for a pseudonymous dossier, by a professional who may see who it is."""
    rid = call.resource_id
    assert rid is not None
    p = repo.ctx.principal
    repo.begin("operation", "Patient", "r")
    if p.role != "practitioner":
        raise Forbidden("A professional gives an enrolment code.")
    patient = repo.read("Patient", rid).resource or {}  # 404 without identity access
    if niss_of(patient) is not None:
        raise Unprocessable("This dossier has a national number: the person signs in with "
                            "it, no code is needed.")
    code, expires = issue_code(repo, rid)
    return {"resourceType": "Parameters", "parameter": [
        {"name": "code", "valueString": code},
        {"name": "expires", "valueInstant": expires.astimezone(UTC).isoformat().replace(
            "+00:00", "Z")}]}


def enrol(repo: Repository, call: Call) -> Any:
    """A citizen redeems a code: their login is linked to the dossier. Wrong codes are
    counted per login; after WRONG_PER_HOUR in an hour, 429. Every attempt is audited."""
    p = repo.ctx.principal
    repo.begin("operation", "Patient", None)
    if p.role != "citizen":
        raise Forbidden("A person enrols with the code they were given.")
    codes = [x.get("valueString") for x in _params(call.body, "$enrol")
             if x.get("name") == "code"]
    if len(codes) != 1 or not isinstance(codes[0], str) or len(codes[0]) > 32:
        raise Unprocessable("Give one 'code' (valueString).",
                            expression=["Parameters.parameter"])
    store, login, now = repo.store(Enrolment), _login(repo), repo.ctx.now
    if store.wrong_recently(login, now) >= WRONG_PER_HOUR:
        repo.note_access("operation", "Patient", None, None, detail="enrol throttled")
        raise TooManyRequests("Too many wrong codes. Try again in an hour.")
    patient_id = store.redeem(_code_hash(repo, codes[0]), now)
    if patient_id is None:
        store.count_wrong(login, now)  # kept: the answer is not an error that rolls back
        repo.note_access("operation", "Patient", None, None, detail="enrol wrong-code")
        return fhir_response({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "not-found",
            "diagnostics": "This code is not valid: it is wrong, used or expired."}]}, 404)
    store.link(login, patient_id, now)
    repo.note_access("operation", "Patient", patient_id, f"Patient/{patient_id}",
                     detail="enrol linked")
    return {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{patient_id}"}}]}


for _op in (
    operations.Operation("enrolment-code", "instance", "Patient", frozenset({"POST"}),
                         enrolment_code, f"{DB}/OperationDefinition/Patient-enrolment-code",
                         access={"POST": "read"}, stateful=True),
    operations.Operation("enrol", "system", None, frozenset({"POST"}), enrol,
                         f"{DB}/OperationDefinition/enrol", access={"POST": "read"},
                         stateful=True),
    operations.Operation("assisted-consent", "instance", "Patient",
                         frozenset({"GET", "POST"}), assisted_consent,
                         f"{DB}/OperationDefinition/Patient-assisted-consent"),
    operations.Operation("request-access", "instance", "Patient", frozenset({"POST"}),
                         request_access, f"{DB}/OperationDefinition/Patient-request-access",
                         access={"POST": "read"}, stateful=True),
    operations.Operation("answer-access-request", "instance", "Patient", frozenset({"POST"}),
                         answer_access_request,
                         f"{DB}/OperationDefinition/Patient-answer-access-request"),
):
    operations.register(_op)
