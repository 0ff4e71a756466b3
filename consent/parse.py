"""The §12 Consent encoding: check it, read it into a Provision, write it back.

Messages name FHIR paths and expectations only; they never echo a submitted
value, so nothing personal can leak through an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from consent.fhirtime import Bound, format_instant, parse_bound
from consent.model import (
    ACTIONS,
    CATEGORIES,
    CATEGORY_SYSTEM,
    Provision,
    ProvisionType,
    is_actor_reference,
)

SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
SCOPE_CODE = "patient-privacy"
LOINC_SYSTEM = "http://loinc.org"
LOINC_PRIVACY_CODE = "59284-0"
POLICY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
POLICY_CODE = "OPTIN"
ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
# R4 requires provision.actor.role; we write "information recipient".
ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CODE = "IRCP"

STATUSES = frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"})
# Provision elements that would narrow a grant if we honoured them; ignoring
# them would silently widen it, so they are refused instead.
UNSUPPORTED_PROVISION_ELEMENTS = ("class", "code", "dataPeriod", "data", "provision")

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PATIENT_REF = re.compile(r"Patient/[A-Za-z0-9\-.]{1,64}")
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")  # FHIR `code`: no leading/trailing/double spaces

Problem = tuple[str, str]
JSON = dict[str, Any]  # parsed JSON (json.loads gives dicts)


class ConsentFormatError(ValueError):
    """A Consent that does not follow the §12 encoding.

    `problems` lists (FHIR path, message) pairs; neither holds submitted data.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        detail = "; ".join(f"{path}: {message}" for path, message in self.problems)
        super().__init__(f"Consent does not follow the dossier encoding: {detail}")


class _Reader:
    """One pass over a Consent that records problems and the values it reads."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def obj(self, value: Any, path: str) -> JSON | None:
        if isinstance(value, dict):
            return value
        self.problem(path, "must be a JSON object")
        return None

    def array(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.problem(path, "must be a JSON array")
        return []

    def codes(self, concept: Any, path: str, system: str) -> set[str]:
        """The codes a CodeableConcept holds in `system`."""
        found: set[str] = set()
        body = self.obj(concept, path)
        if body is None:
            return found
        for index, coding in enumerate(self.array(body.get("coding"), f"{path}.coding")):
            found.update(self.coding(coding, f"{path}.coding[{index}]", system))
        return found

    def coding(self, coding: Any, path: str, system: str) -> set[str]:
        """{code} when the Coding is in `system`, else empty."""
        body = self.obj(coding, path)
        if body is None or body.get("system") != system:
            return set()
        code = body.get("code")
        if isinstance(code, str) and _CODE.fullmatch(code):
            return {code}
        self.problem(f"{path}.code", "must be a code")
        return set()

    def coding_from(
        self, coding: Any, path: str, system: str, allowed: frozenset[str] | None = None
    ) -> str | None:
        """The code of a Coding that must be in `system` (and in `allowed`, if given)."""
        body = self.obj(coding, path)
        if body is None:
            return None
        code = body.get("code")
        if body.get("system") != system:
            self.problem(f"{path}.system", "must be " + system)
        elif not (isinstance(code, str) and _CODE.fullmatch(code)):
            self.problem(f"{path}.code", "must be a code")
        elif allowed is not None and code not in allowed:
            self.problem(f"{path}.code", "must be one of " + ", ".join(sorted(allowed)))
        else:
            return code
        return None

    def fixed_concept(self, concept: Any, path: str, system: str, code: str) -> None:
        """The concept must carry system#code and no other code of that system."""
        if concept is None:
            self.problem(path, f"is required ({system}#{code})")
        elif self.codes(concept, path, system) != {code}:
            self.problem(path, f"must be {system}#{code}")


def _check_header(reader: _Reader, resource: JSON) -> str | None:
    """Everything outside `provision`; returns the status when valid."""
    if resource.get("resourceType") != "Consent":
        reader.problem("resourceType", "must be 'Consent'")
    consent_id = resource.get("id")
    if consent_id is not None and not (
        isinstance(consent_id, str) and _FHIR_ID.fullmatch(consent_id)
    ):
        reader.problem("Consent.id", "must be a FHIR id")
    if "modifierExtension" in resource:
        reader.problem("Consent.modifierExtension", "is not supported")
    status = resource.get("status")
    if not (isinstance(status, str) and status in STATUSES):
        reader.problem("Consent.status", "must be one of " + ", ".join(sorted(STATUSES)))
        status = None
    reader.fixed_concept(resource.get("scope"), "Consent.scope", SCOPE_SYSTEM, SCOPE_CODE)
    categories = reader.array(resource.get("category"), "Consent.category")
    loinc = [
        reader.codes(concept, f"Consent.category[{index}]", LOINC_SYSTEM)
        for index, concept in enumerate(categories)
    ]
    if not any(LOINC_PRIVACY_CODE in codes for codes in loinc):
        reader.problem("Consent.category", f"must include {LOINC_SYSTEM}#{LOINC_PRIVACY_CODE}")
    patient = reader.obj(resource.get("patient"), "Consent.patient")
    if patient is not None and not (
        isinstance(patient.get("reference"), str) and _PATIENT_REF.fullmatch(patient["reference"])
    ):
        reader.problem("Consent.patient.reference", "must be 'Patient/<id>'")
    reader.fixed_concept(
        resource.get("policyRule"), "Consent.policyRule", POLICY_SYSTEM, POLICY_CODE
    )
    return status if isinstance(status, str) else None


def _read_actors(reader: _Reader, provision: JSON) -> set[str]:
    actors: set[str] = set()
    for index, actor in enumerate(reader.array(provision.get("actor"), "Consent.provision.actor")):
        path = f"Consent.provision.actor[{index}]"
        body = reader.obj(actor, path)
        if body is None:
            continue
        if not isinstance(body.get("role"), dict):
            reader.problem(f"{path}.role", "is required by FHIR R4 (a CodeableConcept)")
        reference = body.get("reference")
        target = reference.get("reference") if isinstance(reference, dict) else None
        if isinstance(target, str) and is_actor_reference(target):
            actors.add(target)
        else:
            reader.problem(
                f"{path}.reference.reference",
                "must be 'Practitioner/<id>', 'Organization/<id>' "
                "or 'Group/profession-<CD-HCPARTY code>'",
            )
    return actors


def _read_actions(reader: _Reader, provision: JSON) -> set[str]:
    actions: set[str] = set()
    for index, concept in enumerate(
        reader.array(provision.get("action"), "Consent.provision.action")
    ):
        path = f"Consent.provision.action[{index}]"
        codes = reader.codes(concept, path, ACTION_SYSTEM)
        if codes and codes <= ACTIONS:
            actions.update(codes)
        else:
            reader.problem(path, f"must be {ACTION_SYSTEM}#access or #collect")
    return actions


def _read_labels(reader: _Reader, provision: JSON) -> set[str]:
    path = "Consent.provision.securityLabel"
    codes = (
        reader.coding_from(coding, f"{path}[{index}]", CATEGORY_SYSTEM, CATEGORIES)
        for index, coding in enumerate(reader.array(provision.get("securityLabel"), path))
    )
    return {code for code in codes if code is not None}


def _read_purposes(reader: _Reader, provision: JSON) -> set[str]:
    path = "Consent.provision.purpose"
    codes = (
        reader.coding_from(coding, f"{path}[{index}]", PURPOSE_SYSTEM)
        for index, coding in enumerate(reader.array(provision.get("purpose"), path))
    )
    return {code for code in codes if code is not None}


def _read_period(reader: _Reader, provision: JSON) -> tuple[datetime | None, datetime | None]:
    """(inclusive start, exclusive end) instants; see consent.fhirtime."""
    if "period" not in provision:
        return None, None
    period = reader.obj(provision["period"], "Consent.provision.period")
    if period is None:
        return None, None
    bounds: dict[str, Bound | None] = {"start": None, "end": None}
    for side in bounds:
        text = period.get(side)
        if text is None:
            continue
        try:
            if not isinstance(text, str):
                raise ValueError
            bounds[side] = parse_bound(text)
        except ValueError:
            reader.problem(
                f"Consent.provision.period.{side}", "must be a FHIR dateTime (with a zone)"
            )
    start, end = bounds["start"], bounds["end"]
    if not _in_order(start, end):
        reader.problem("Consent.provision.period", "start must not be after end")
    return (start.first if start else None), (end.after if end else None)


def _in_order(start: Bound | None, end: Bound | None) -> bool:
    """A period's start is not after its end (both as written, at their precision)."""
    return start is None or end is None or not (
        start.first > end.after or (start.precision == end.precision and start.first > end.first)
    )


def _read(resource: Any) -> tuple[list[Problem], str | None, Provision | None]:
    reader = _Reader()
    body = reader.obj(resource, "Consent")
    if body is None:
        return reader.problems, None, None
    status = _check_header(reader, body)
    provision = reader.obj(body.get("provision"), "Consent.provision")
    if provision is None:
        return reader.problems, status, None
    if "modifierExtension" in provision:
        reader.problem("Consent.provision.modifierExtension", "is not supported")
    for name in UNSUPPORTED_PROVISION_ELEMENTS:
        if name in provision:
            message = (
                "nested provisions are not supported: write one Consent per grant or exclusion"
                if name == "provision"
                else "is not supported: it would narrow the provision in ways not enforced"
            )
            reader.problem(f"Consent.provision.{name}", message)
    kind = provision.get("type")
    if kind not in ("permit", "deny"):
        reader.problem("Consent.provision.type", "must be 'permit' or 'deny'")
    actors = _read_actors(reader, provision)
    actions = _read_actions(reader, provision)
    labels = _read_labels(reader, provision)
    purposes = _read_purposes(reader, provision)
    start, end = _read_period(reader, provision)
    if kind == "permit":
        for name, values in (("actor", actors), ("action", actions), ("securityLabel", labels)):
            if not values:
                reader.problem(f"Consent.provision.{name}", "a permit must name at least one")
    if reader.problems:
        return reader.problems, status, None
    kind_checked: ProvisionType = "permit" if kind == "permit" else "deny"
    patient = body.get("patient")
    parsed = Provision(
        consent_id=body.get("id"),
        type=kind_checked,
        actors=frozenset(actors),
        actions=frozenset(actions),
        categories=frozenset(labels),
        start=start,
        end=end,
        purposes=frozenset(purposes),
        patient=patient["reference"] if isinstance(patient, dict) else None,
    )
    return [], status, parsed


# The plain form: the §12 encoding exactly as render_consent writes it (what the portal,
# the assisted consent and the seed store), read without the reader's paths and problem
# list. It checks the same things as `_read`; anything it is not sure of (another
# shape, a display, a problem) goes to `_read`, which then decides, with its messages.
# tests/unit/consent/test_consent_plain.py: on any input, either UNSURE or `_read`'s answer.
UNSURE: Any = object()
_PLAIN_SCOPE = {"coding": [{"system": SCOPE_SYSTEM, "code": SCOPE_CODE}]}
_PLAIN_CATEGORY = [{"coding": [{"system": LOINC_SYSTEM, "code": LOINC_PRIVACY_CODE}]}]
_PLAIN_POLICY = {"coding": [{"system": POLICY_SYSTEM, "code": POLICY_CODE}]}
_PLAIN_ACTIONS = [({"coding": [{"system": ACTION_SYSTEM, "code": code}]}, code)
                  for code in sorted(ACTIONS)]


def _plain_each(values: Any, read: Callable[[Any], str | None]) -> set[str] | Any:
    """What `read` finds in each item of a JSON array (an absent array: nothing); UNSURE
    when it is not an array or `read` finds nothing in one of its items."""
    if values is None:
        return set()
    if type(values) is not list:
        return UNSURE
    found = set()
    for item in values:
        text = read(item)
        if text is None:
            return UNSURE
        found.add(text)
    return found


def _plain_coding(system: str, allowed: frozenset[str] | None) -> Callable[[Any], str | None]:
    """A Coding's code when it is in `system` and a valid code (in `allowed` if given)."""
    def read(coding: Any) -> str | None:
        if type(coding) is not dict or coding.get("system") != system:
            return None
        code = coding.get("code")
        valid = type(code) is str and (
            code in allowed if allowed is not None else _CODE.fullmatch(code) is not None)
        return code if valid else None
    return read


def _plain_actor(actor: Any) -> str | None:
    """The reference of a provision's actor (with its role, as R4 requires)."""
    if type(actor) is not dict or type(actor.get("role")) is not dict:
        return None
    reference = actor.get("reference")
    target = reference.get("reference") if type(reference) is dict else None
    return target if type(target) is str and is_actor_reference(target) else None


def _plain_action(concept: Any) -> str | None:
    return next((code for plain, code in _PLAIN_ACTIONS if concept == plain), None)


_PLAIN_LABEL = _plain_coding(CATEGORY_SYSTEM, CATEGORIES)
_PLAIN_PURPOSE = _plain_coding(PURPOSE_SYSTEM, None)


def _plain_period(provision: JSON) -> tuple[datetime | None, datetime | None] | Any:
    if "period" not in provision:
        return None, None
    period = provision["period"]
    if type(period) is not dict:
        return UNSURE
    bounds: dict[str, Bound | None] = {"start": None, "end": None}
    for side in bounds:
        text = period.get(side)
        if text is None:
            continue
        if type(text) is not str:
            return UNSURE
        try:
            bounds[side] = parse_bound(text)
        except ValueError:
            return UNSURE
    start, end = bounds["start"], bounds["end"]
    if not _in_order(start, end):
        return UNSURE
    return (start.first if start else None), (end.after if end else None)


def _read_plain(resource: Any) -> Any:
    """parse_consent's answer for a Consent in the plain form (a Provision, or None when
    not active); UNSURE for anything else."""
    if type(resource) is not dict or resource.get("resourceType") != "Consent" \
            or "modifierExtension" in resource:
        return UNSURE
    consent_id, status, patient = resource.get("id"), resource.get("status"), \
        resource.get("patient")
    if not (consent_id is None or (type(consent_id) is str and _FHIR_ID.fullmatch(consent_id))) \
            or type(status) is not str or status not in STATUSES \
            or resource.get("scope") != _PLAIN_SCOPE \
            or resource.get("category") != _PLAIN_CATEGORY \
            or resource.get("policyRule") != _PLAIN_POLICY \
            or type(patient) is not dict or type(reference := patient.get("reference")) is not str \
            or not _PATIENT_REF.fullmatch(reference):
        return UNSURE
    provision = resource.get("provision")
    if type(provision) is not dict or "modifierExtension" in provision \
            or any(name in provision for name in UNSUPPORTED_PROVISION_ELEMENTS):
        return UNSURE
    kind = provision.get("type")
    if kind != "permit" and kind != "deny":
        return UNSURE
    actors = _plain_each(provision.get("actor"), _plain_actor)
    actions = _plain_each(provision.get("action"), _plain_action)
    labels = _plain_each(provision.get("securityLabel"), _PLAIN_LABEL)
    purposes = _plain_each(provision.get("purpose"), _PLAIN_PURPOSE)
    period = _plain_period(provision)
    if any(part is UNSURE for part in (actors, actions, labels, purposes, period)) \
            or (kind == "permit" and not (actors and actions and labels)):
        return UNSURE
    if status != "active":
        return None
    return Provision(consent_id=consent_id, type=kind, actors=frozenset(actors),
                     actions=frozenset(actions), categories=frozenset(labels),
                     start=period[0], end=period[1], purposes=frozenset(purposes),
                     patient=reference)


def validate_consent(resource: dict[str, Any]) -> list[Problem]:
    """Problems against the §12 encoding, as (FHIR path, message); [] when it conforms."""
    return _read(resource)[0]


def parse_consent(resource: dict[str, Any]) -> Provision | None:
    """The Provision a Consent states; None unless its status is `active`.

    Raises ConsentFormatError when the resource is malformed, whatever its
    status: a stored Consent that cannot be read must fail the request closed.
    """
    plain = _read_plain(resource)
    if plain is not UNSURE:
        return plain  # type: ignore[no-any-return]
    problems, status, provision = _read(resource)
    if problems or provision is None:
        raise ConsentFormatError(problems)
    return provision if status == "active" else None


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def render_consent(
    provision: Provision, patient: str | None = None, status: str = "active"
) -> dict[str, Any]:
    """The §12 Consent JSON for a Provision (parse_consent reads it back equal)."""
    patient = patient or provision.patient
    if patient is None or not _PATIENT_REF.fullmatch(patient):
        raise ValueError("patient must look like 'Patient/<id>'")
    if status not in STATUSES:
        raise ValueError("status must be a Consent status")
    body: dict[str, Any] = {"type": provision.type}
    if provision.start is not None or provision.end is not None:
        body["period"] = {
            side: format_instant(value)
            for side, value in (("start", provision.start), ("end", provision.end))
            if value is not None
        }
    if provision.actors:
        body["actor"] = [
            {"role": _concept(ROLE_SYSTEM, ROLE_CODE), "reference": {"reference": ref}}
            for ref in sorted(provision.actors)
        ]
    if provision.actions:
        body["action"] = [_concept(ACTION_SYSTEM, code) for code in sorted(provision.actions)]
    if provision.categories:
        body["securityLabel"] = [
            {"system": CATEGORY_SYSTEM, "code": code} for code in sorted(provision.categories)
        ]
    if provision.purposes:
        body["purpose"] = [
            {"system": PURPOSE_SYSTEM, "code": code} for code in sorted(provision.purposes)
        ]
    resource: dict[str, Any] = {"resourceType": "Consent"}
    if provision.consent_id is not None:
        resource["id"] = provision.consent_id
    resource.update(
        status=status,
        scope=_concept(SCOPE_SYSTEM, SCOPE_CODE),
        category=[_concept(LOINC_SYSTEM, LOINC_PRIVACY_CODE)],
        patient={"reference": patient},
        policyRule=_concept(POLICY_SYSTEM, POLICY_CODE),
        provision=body,
    )
    return resource
