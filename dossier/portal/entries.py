"""What a professional records, built from a form as FHIR resources of the objective-only
profiles (codes, dates, references; no free text)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from starlette.datastructures import FormData

from dossier.portal import codes
from dossier.portal.consents import FormProblem
from dossier.portal.i18n import BRUSSELS, N_

INFORMAL_ROLES = ("informal-carer", "family", "neighbour", "volunteer", "friend",
                  "legal-representative", "guardian")
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _one_of(form: FormData, name: str, allowed: list[str] | tuple[str, ...],
            message: str, required: bool = True) -> str | None:
    value = str(form.get(name) or "")
    if not value and not required:
        return None
    if value not in allowed:
        raise FormProblem(name, message)
    return value


def _date(form: FormData, name: str) -> str | None:
    text = str(form.get(name) or "").strip()
    if not text:
        return None
    try:
        date.fromisoformat(text)
    except ValueError:
        raise FormProblem(name, N_("Write the date as year-month-day, for example "
                                   "2027-01-31.")) from None
    return text


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def demarche(form: FormData, patient_id: str, practitioner: str, now: str,
             organisations: set[str]) -> dict[str, Any]:
    kind = _one_of(form, "type", codes.codes(codes.DEMARCHE_TYPE_SYSTEM),
                   N_("Choose the kind of démarche."))
    status = _one_of(form, "status", codes.DEMARCHE_STATUSES, N_("Choose where it stands."))
    business = _one_of(form, "business", codes.codes(codes.BUSINESS_STATUS_SYSTEM),
                       N_("Choose a step from the list."), required=False)
    owner = _one_of(form, "owner", sorted(organisations),
                    N_("Choose the organisation from the list."), required=False)
    start = _date(form, "start")
    task: dict[str, Any] = {
        "resourceType": "Task", "status": status, "intent": "order",
        "code": _concept(codes.DEMARCHE_TYPE_SYSTEM, str(kind)),
        "for": {"reference": f"Patient/{patient_id}"}, "authoredOn": now,
        "requester": {"reference": practitioner},
    }
    if business:
        task["businessStatus"] = _concept(codes.BUSINESS_STATUS_SYSTEM, business)
    if owner:
        task["owner"] = {"reference": owner}
    if start:
        task["executionPeriod"] = {"start": start}
    return task


def network_member(form: FormData, directory_refs: set[str]) -> tuple[str, str | None,
                                                                      dict[str, str] | None,
                                                                      bool]:
    """(role, member reference or None, new helper's name or None, available)."""
    role = str(_one_of(form, "role", codes.codes(codes.NETWORK_ROLE_SYSTEM),
                       N_("Choose the role in the network.")))
    available = form.get("available") == "yes"
    member = str(form.get("member") or "")
    if member == "new":
        given = str(form.get("given") or "").strip()[:100]
        family = str(form.get("family") or "").strip()[:100]
        if not (given or family):
            raise FormProblem("given", N_("Write at least a first name or a last name."))
        if role not in INFORMAL_ROLES:
            raise FormProblem("role", N_("A new person can be family, a neighbour, a friend, "
                                         "a volunteer, an informal carer or a representative."))
        return role, None, {"given": given, "family": family}, available
    if member not in directory_refs:
        raise FormProblem("member", N_("Choose who this is from the list."))
    return role, member, None, available


def related_person(patient_id: str, role: str, name: dict[str, str]) -> dict[str, Any]:
    human: dict[str, Any] = {}
    if name.get("family"):
        human["family"] = name["family"]
    if name.get("given"):
        human["given"] = [name["given"]]
    return {"resourceType": "RelatedPerson", "active": True,
            "patient": {"reference": f"Patient/{patient_id}"},
            "relationship": [_concept(codes.NETWORK_ROLE_SYSTEM, role)], "name": [human]}


def participant(role: str, member: str, available: bool) -> dict[str, Any]:
    return {"role": [_concept(codes.NETWORK_ROLE_SYSTEM, role)],
            "member": {"reference": member},
            "extension": [{"url": f"{codes.DB}/StructureDefinition/available-at-discharge",
                           "valueBoolean": available}]}


def care_team(patient_id: str, participants: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "CareTeam", "status": "active",
            "subject": {"reference": f"Patient/{patient_id}"}, "participant": participants}


def assessment(form: FormData, patient_id: str, practitioner: str,
               now: str) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    housing = _one_of(form, "housing", codes.HOUSING, N_("Choose an answer from the list."),
                      required=False)
    if housing:
        components.append({"code": _concept(codes.FRAGILITY_COMPONENT_SYSTEM, "housing"),
                           "valueCodeableConcept": _concept(codes.FRAGILITY_COMPONENT_SYSTEM,
                                                            housing)})
    for name in codes.YES_NO_COMPONENTS:
        answer = _one_of(form, name, ("yes", "no"), N_("Choose an answer from the list."),
                         required=False)
        if answer:
            components.append({"code": _concept(codes.FRAGILITY_COMPONENT_SYSTEM, name),
                               "valueBoolean": answer == "yes"})
    observation: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "category": [_concept(OBSERVATION_CATEGORY, "social-history")],
        "code": _concept(f"{codes.DB}/CodeSystem/dossier-observation", "social-fragility"),
        "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": now,
        "performer": [{"reference": practitioner}],
    }
    if components:
        observation["component"] = components
    return observation


def discharge_time(form: FormData) -> datetime:
    """The planned time (a datetime-local field, read in Brussels time)."""
    text = str(form.get("at") or "").strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FormProblem("at", N_("Give the planned date and time of discharge.")) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BRUSSELS)
    return moment


def readiness_body(at: datetime, destination: str | None, language: str) -> dict[str, Any]:
    """The $discharge-readiness request; its texts exist in fr, nl and en (the page shows
    the reasons through the catalogue anyway, so another language asks for English)."""
    from dossier.domain.readiness import LANGUAGES as READINESS_LANGUAGES

    language = language if language in READINESS_LANGUAGES else "en"
    parameters: list[dict[str, Any]] = [{"name": "at", "valueDateTime": at.isoformat()},
                                        {"name": "language", "valueCode": language}]
    if destination:
        parameters.append({"name": "destination", "valueReference": {"reference": destination}})
    return {"resourceType": "Parameters", "parameter": parameters}


def status_change(task: dict[str, Any], form: FormData, today: str) -> dict[str, Any]:
    """The same démarche with a new status (and step); a closing gets its end date. The
    server checks the transition (a closed démarche never changes again)."""
    status = _one_of(form, "status", codes.DEMARCHE_STATUSES, N_("Choose where it stands."),
                     required=False)  # empty: keep as it is
    business = _one_of(form, "business", codes.codes(codes.BUSINESS_STATUS_SYSTEM),
                       N_("Choose a step from the list."), required=False)
    if status is None and business is None:
        raise FormProblem("status", N_("Choose a new status or a new step: nothing was "
                                       "changed."))
    status = status or str(task.get("status") or "")
    body = {k: v for k, v in task.items() if k != "meta"}
    body["status"] = status
    if business:
        body["businessStatus"] = _concept(codes.BUSINESS_STATUS_SYSTEM, business)
    if status in ("completed", "cancelled", "failed"):
        body["executionPeriod"] = {**(body.get("executionPeriod") or {}), "end": today}
    return body
