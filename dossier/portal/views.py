"""FHIR resources → what a page shows (plain dicts for the templates). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dossier.domain.demarches import OPEN_STATUSES, TRANSITIONS, timeline, timeline_time
from dossier.domain.fragility import (
    fragility_level,
    latest_assessment,
    recorded_components,
)
from dossier.portal import codes
from dossier.portal.i18n import N_, Translator

AVAILABLE = f"{codes.DB}/StructureDefinition/available-at-discharge"
LOG_INDEX = f"{codes.DB}/StructureDefinition/log-index"
BTG = "BTG"

STATUS_LABELS = {
    "requested": N_("Requested"), "in-progress": N_("In progress"), "on-hold": N_("On hold"),
    "completed": N_("Completed"), "cancelled": N_("Cancelled"), "failed": N_("Could not be done"),
    "entered-in-error": N_("Entered in error"),
}
STATUS_ORDER = ("in-progress", "on-hold", "completed", "cancelled", "failed")
ACTION_LABELS = {"access": N_("see"), "collect": N_("add information")}
AUDIT_ACTIONS = {"C": N_("added"), "R": N_("looked at"), "U": N_("changed"),
                 "D": N_("removed"), "E": N_("looked at")}
AUDIT_OUTCOMES = {"0": N_("Allowed"), "4": N_("Refused or not found"), "8": N_("Error")}
ROLE_LABELS = {"citizen": N_("You"), "practitioner": N_("Professional"),
               "hub": N_("Connected service"), "auditor": N_("Auditor"),
               "admin": N_("Administrator")}
AUDITOR_ACTIONS = {"C": N_("Create"), "R": N_("Read"), "U": N_("Update"), "D": N_("Delete"),
                   "E": N_("Search or operation")}
PURPOSE_LABELS = {"TREAT": N_("Care"), "BTG": N_("Emergency (break-the-glass)")}
TYPE_LABELS = {
    "Patient": N_("your identity and dossier"), "Task": N_("démarches"),
    "CareTeam": N_("network"), "RelatedPerson": N_("network"),
    "Observation": N_("fragility"), "Flag": N_("fragility"),
    "Consent": N_("access choices"), "AuditEvent": N_("access log"),
    "Communication": N_("notifications"), "Practitioner": N_("directory"),
    "PractitionerRole": N_("directory"), "Organization": N_("directory"),
    "Group": N_("directory"), "Endpoint": N_("directory"),
}


def person_name(resource: dict[str, Any] | None) -> str | None:
    if not resource:
        return None
    for name in resource.get("name") or []:
        if not isinstance(name, dict):
            continue
        parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family")]
        text = " ".join(p for p in parts if isinstance(p, str) and p).strip()
        if text:
            return text
    if isinstance(resource.get("name"), str):
        return str(resource["name"])
    return None


def ref(reference: Any) -> str | None:
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        return str(reference["reference"])
    return None


def by_type(resources: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        out.setdefault(str(resource.get("resourceType")), []).append(resource)
    return out


# ------------------------------------------------------------------ démarches
def demarche_rows(tasks: list[dict[str, Any]], names: dict[str, str],
                  t: Translator) -> list[dict[str, Any]]:
    rows = []
    for task in timeline([x for x in tasks if x.get("status") != "entered-in-error"]):
        status = str(task.get("status", ""))
        business = codes.code_of(task.get("businessStatus"), codes.BUSINESS_STATUS_SYSTEM)
        owner = ref(task.get("owner"))
        requester = ref(task.get("requester"))
        period = task.get("executionPeriod") or {}
        rows.append({
            "id": task.get("id"),
            "type": codes.label(codes.DEMARCHE_TYPE_SYSTEM,
                                codes.code_of(task.get("code"), codes.DEMARCHE_TYPE_SYSTEM),
                                t.lang),
            "status": status,
            "status_label": t(STATUS_LABELS.get(status, status)),
            "open": status in OPEN_STATUSES,
            "business": codes.label(codes.BUSINESS_STATUS_SYSTEM, business, t.lang),
            "owner": names.get(owner or "", "") if owner else "",
            "requester": names.get(requester or "", "") if requester else "",
            "when": t.day(timeline_time(task)) if timeline_time(task) else "",
            "ended": t.day(period.get("end")) if period.get("end") else "",
            "reopens": bool(task.get("partOf")),
            "next": [(s, t(STATUS_LABELS[s])) for s in STATUS_ORDER
                     if s in TRANSITIONS.get(status, frozenset())],
        })
    return rows


# ------------------------------------------------------------------ network
@dataclass
class Member:
    reference: str
    name: str
    roles: list[str] = field(default_factory=list)  # role codes
    role_labels: list[str] = field(default_factory=list)
    kind: str = "professional"  # professional | informal | service
    available: bool = False
    contact: list[str] = field(default_factory=list)  # phone, e-mail, address, as written


def contact_lines(resource: dict[str, Any]) -> list[str]:
    """Telecom and address of a directory entry or a shared RelatedPerson, as written."""
    lines: list[str] = []
    for telecom in resource.get("telecom") or []:
        if isinstance(telecom, dict) and isinstance(telecom.get("value"), str) and \
                telecom.get("system") in ("phone", "email", "sms", "url", None):
            lines.append(telecom["value"][:120])
    for address in resource.get("address") or []:
        if not isinstance(address, dict):
            continue
        text = address.get("text") if isinstance(address.get("text"), str) else ", ".join(
            p for p in [*(address.get("line") or []),
                        " ".join(x for x in (address.get("postalCode"), address.get("city"))
                                 if isinstance(x, str))] if isinstance(p, str) and p)
        if text:
            lines.append(text[:200])
    return lines[:4]


def network_members(care_teams: list[dict[str, Any]], related: list[dict[str, Any]],
                    names: dict[str, str], t: Translator,
                    contacts: dict[str, list[str]] | None = None) -> list[Member]:
    """Everyone in the person's network, merged by reference; RelatedPersons outside any
    care team are listed too. `contacts`: the directory's contact data by reference."""
    contacts = dict(contacts or {})
    contacts.update({f"RelatedPerson/{r.get('id')}": contact_lines(r) for r in related})
    members: dict[str, Member] = {}
    related_names = {f"RelatedPerson/{r.get('id')}": person_name(r) for r in related}
    for team in care_teams:
        if team.get("status") not in (None, "active"):
            continue
        for participant in team.get("participant") or []:
            reference = ref(participant.get("member"))
            if not reference:
                continue
            member = members.setdefault(reference, Member(
                reference, related_names.get(reference) or names.get(reference) or ""))
            for role in participant.get("role") or []:
                code = codes.code_of(role, codes.NETWORK_ROLE_SYSTEM)
                if code and code not in member.roles:
                    member.roles.append(code)
            for extension in participant.get("extension") or []:
                if extension.get("url") == AVAILABLE and extension.get("valueBoolean") is True:
                    member.available = True
    for person in related:
        reference = f"RelatedPerson/{person.get('id')}"
        member = members.setdefault(reference, Member(reference, person_name(person) or ""))
        for code in [codes.code_of(r, codes.NETWORK_ROLE_SYSTEM)
                     for r in person.get("relationship") or []]:
            if code and code not in member.roles:
                member.roles.append(code)
    for member in members.values():
        member.role_labels = [codes.label(codes.NETWORK_ROLE_SYSTEM, c, t.lang)
                              for c in member.roles]
        member.kind = codes.role_kind(member.roles[0] if member.roles else None)
        if member.reference.startswith("Organization/"):
            member.kind = "service"
        if not member.name:
            member.name = ", ".join(member.role_labels) or t("Someone in the network")
        member.contact = contacts.get(member.reference, [])
    return sorted(members.values(), key=lambda m: (not m.available, m.kind, m.name.lower()))


# ------------------------------------------------------------------ fragility
def fragility_view(observations: list[dict[str, Any]], t: Translator) -> dict[str, Any] | None:
    latest = latest_assessment(observations)
    if latest is None:
        return None
    level = fragility_level(latest)
    answers = recorded_components(latest)
    rows = []
    for component in ("housing", *codes.YES_NO_COMPONENTS):
        value = answers.get(component)
        if value is None:
            shown = t("Not answered")
        elif isinstance(value, bool):
            shown = t("Yes") if value else t("No")
        else:
            shown = codes.label(codes.FRAGILITY_COMPONENT_SYSTEM, str(value), t.lang)
        rows.append({"question": codes.label(codes.FRAGILITY_COMPONENT_SYSTEM, component,
                                             t.lang), "answer": shown})
    return {"level": level,
            "level_label": codes.label(codes.FRAGILITY_LEVEL_SYSTEM, level, t.lang),
            "when": t.moment(latest.get("effectiveDateTime")), "answers": rows}


# ------------------------------------------------------------------ consents
def is_btg_refusal(consent: dict[str, Any]) -> bool:
    provision = consent.get("provision") or {}
    purposes = {p.get("code") for p in provision.get("purpose") or [] if isinstance(p, dict)}
    return provision.get("type") == "deny" and BTG in purposes and not provision.get("actor")


def consent_view(consent: dict[str, Any], names: dict[str, str],
                 t: Translator) -> dict[str, Any]:
    provision = consent.get("provision") or {}
    actors = [ref(a.get("reference")) for a in provision.get("actor") or []]
    actions = [codes.code_of(a, "http://terminology.hl7.org/CodeSystem/consentaction")
               for a in provision.get("action") or []]
    categories = [label.get("code") for label in provision.get("securityLabel") or []
                  if label.get("system") == codes.CATEGORY_SYSTEM]
    period = provision.get("period") or {}
    return {
        "id": consent.get("id"),
        "active": consent.get("status") == "active",
        "kind": provision.get("type"),
        "btg_refusal": is_btg_refusal(consent),
        "actors": [a for a in actors if a],
        "actor_names": [names.get(a, a) for a in actors if a],
        "actions": [a for a in actions if a],
        "action_labels": [t(ACTION_LABELS[a]) for a in actions if a in ACTION_LABELS],
        "categories": [c for c in categories if c],
        "category_labels": [codes.label(codes.CATEGORY_SYSTEM, c, t.lang)
                            for c in categories if c],
        "start": period.get("start", ""), "end": period.get("end", ""),
        "start_label": t.day(period["start"]) if period.get("start") else "",
        "end_label": t.day(period["end"]) if period.get("end") else "",
    }


# ------------------------------------------------------------------ audit log
def log_index(event: dict[str, Any]) -> int | None:
    for extension in event.get("extension") or []:
        if extension.get("url") == LOG_INDEX and isinstance(extension.get("valueInteger"), int):
            return int(extension["valueInteger"])
    return None


def audit_agent(event: dict[str, Any]) -> tuple[str | None, str]:
    for agent in event.get("agent") or []:
        if agent.get("requestor"):
            role = codes.code_of(agent.get("role"), f"{codes.DB}/CodeSystem/actor-role")
            return ref(agent.get("who")), role or "unknown"
    return None, "unknown"


def purpose(event: dict[str, Any]) -> str | None:
    for concept in event.get("purposeOfEvent") or []:
        for coding in concept.get("coding") or []:
            return str(coding.get("code"))
    return None


def audit_patient(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity") or []:
        reference = ref(entity.get("what"))
        if reference and reference.startswith("Patient/") and \
                (entity.get("type") or {}).get("code") == "1":
            return reference.split("/", 1)[1]
    return None


def audit_targets(event: dict[str, Any]) -> list[str]:
    out = []
    for entity in event.get("entity") or []:
        if (entity.get("type") or {}).get("code") != "2":
            continue
        what = entity.get("what") or {}
        reference = what.get("reference") or what.get("display") or ""
        resource_type = str(reference).split("/", 1)[0]
        if resource_type and resource_type not in out:
            out.append(resource_type)
    return out


def audit_row(event: dict[str, Any], names: dict[str, str], organisations: dict[str, str],
              t: Translator, viewer: str = "citizen") -> dict[str, Any]:
    """One log line in words; `viewer` "auditor" names the citizen as such (not "You")."""
    who, role = audit_agent(event)
    targets = audit_targets(event)
    what = ", ".join(dict.fromkeys(t(TYPE_LABELS[x]) for x in targets if x in TYPE_LABELS))
    role_label = t(N_("The person themself")) if viewer == "auditor" and role == "citizen" \
        else t(ROLE_LABELS[role]) if role in ROLE_LABELS else who or ""
    code = str(event.get("action", ""))
    if viewer == "auditor":  # neutral words, not addressed to the person
        what = ", ".join(dict.fromkeys(
            t(N_("identity")) if x == "Patient" else t(TYPE_LABELS[x])
            for x in targets if x in TYPE_LABELS))
    why = purpose(event) or ""
    why_label = t(PURPOSE_LABELS[why]) if why in PURPOSE_LABELS else why
    return {
        "id": event.get("id"),
        "when": t.moment(event.get("recorded")),
        "recorded": event.get("recorded", ""),
        "who_ref": who or "",
        "who": names.get(who or "", "") or role_label,
        "role": role,
        "role_label": role_label if viewer == "auditor" else t(ROLE_LABELS.get(role, role)),
        "organisation": organisations.get(who or "", ""),
        "action": event.get("action", ""),
        "action_label": t(AUDIT_ACTIONS.get(str(event.get("action")), "looked at")),
        "what": what or t("your dossier"),
        "action_words": t(AUDITOR_ACTIONS.get(code, N_("Search or operation"))),
        "what_words": what or t("Dossier"),
        "purpose_label": why_label,
        "targets": targets,
        "outcome": event.get("outcome", ""),
        "outcome_label": t(AUDIT_OUTCOMES.get(str(event.get("outcome")), "Error")),
        "purpose": purpose(event) or "",
        "emergency": purpose(event) == BTG,
        "assisted": is_assisted(event),
        "patient": audit_patient(event) or "",
        "index": log_index(event),
    }


ASSISTED = "assisted-consent"


def is_assisted(event: dict[str, Any]) -> bool:
    """A successful assisted consent (SPEC §13): reviewed beside break-the-glass."""
    return event.get("outcome") == "0" and any(
        d.get("valueString") == ASSISTED for entity in event.get("entity") or []
        for d in entity.get("detail") or [])


def reviewed_record(event: dict[str, Any]) -> str | None:
    """For an auditor's review entry: the id of the AuditEvent it reviews."""
    for entity in event.get("entity") or []:
        reference = ref(entity.get("what")) or ""
        if reference.startswith("AuditEvent/"):
            return reference.split("/", 1)[1]
    return None
