"""Hypothesis strategies for dossier resources: valid ones, and invalid mutations of them.

Reusable outside these tests (e.g. store round-trips):

    from tests.unit.schemas.strategies import resources, valid_resource
    @given(resources())            # any supported type
    @given(valid_resource("Task"))  # one type

`invalid_resource(type)` draws (resource, secret, mutation): a valid resource
changed once so the dossier must refuse it; `secret` is a value planted by the
mutation (None when the mutation plants none) that must never be echoed.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

import schemas
from schemas import terminology
from schemas.rules import valid_ssin

Resource = dict[str, Any]

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9\-.]{0,30}", fullmatch=True)
_word = st.text(alphabet=st.characters(categories=("Lu", "Ll")), min_size=1, max_size=12)
words = st.lists(_word, min_size=1, max_size=3).map(" ".join)


def ref(*types: str) -> st.SearchStrategy[dict[str, str]]:
    return st.builds(lambda t, i: {"reference": f"{t}/{i}"}, st.sampled_from(types), ids)


def coding(value_set: str, *, with_display: bool = True) -> st.SearchStrategy[dict[str, str]]:
    """A Coding from a ValueSet, sometimes with the code's own display."""
    members = sorted(terminology.expansion(schemas.value_set_url(value_set)))

    def build(pair: tuple[str, str], show: bool) -> dict[str, str]:
        result = {"system": pair[0], "code": pair[1]}
        shown = terminology.display(*pair)
        if show and with_display and shown:
            result["display"] = shown
        return result

    return st.builds(build, st.sampled_from(members), st.booleans())


def concept(value_set: str) -> st.SearchStrategy[dict[str, Any]]:
    return coding(value_set).map(lambda c: {"coding": [c]})


def code(value_set: str) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(terminology.codes(schemas.value_set_url(value_set))))


_zones = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=2)),
                          timezone(timedelta(hours=-5, minutes=-30))])
_instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1),
                         timezones=_zones)


def _datetime_text(moment: datetime, precision: str) -> str:
    if precision == "year":
        return f"{moment.year:04d}"
    if precision == "month":
        return f"{moment.year:04d}-{moment.month:02d}"
    if precision == "day":
        return moment.date().isoformat()
    return moment.isoformat(timespec="seconds" if precision == "seconds" else "microseconds")


date_times = st.builds(_datetime_text, _instants,
                       st.sampled_from(["year", "month", "day", "seconds", "micro"]))
full_date_times = st.builds(_datetime_text, _instants, st.sampled_from(["seconds", "micro"]))
birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)).map(
    date.isoformat)


@st.composite
def periods(draw: st.DrawFn) -> dict[str, str]:
    """A Period whose start (day or instant) is at least a day before its end."""
    first = draw(_instants)
    later = first + timedelta(days=2) + draw(st.timedeltas(min_value=timedelta(0),
                                                           max_value=timedelta(days=900)))
    shape = draw(st.sampled_from(["start", "end", "both"]))
    result = {}
    if shape in ("start", "both"):
        result["start"] = _datetime_text(first, draw(st.sampled_from(["day", "seconds"])))
    if shape in ("end", "both"):
        result["end"] = _datetime_text(later, draw(st.sampled_from(["day", "seconds"])))
    return result


@st.composite
def ssins(draw: st.DrawFn) -> str:
    """A Belgian national number with a valid check number."""
    born = draw(st.dates(min_value=date(1920, 1, 1), max_value=date(2024, 12, 31)))
    serial = draw(st.integers(min_value=1, max_value=998))
    body = int(f"{born:%y%m%d}{serial:03d}")
    check = 97 - ((2_000_000_000 + body) if born.year >= 2000 else body) % 97
    text = f"{body:09d}{check:02d}"
    assert valid_ssin(text)
    return text


def _opt(**items: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    return items


def _many(strategy: st.SearchStrategy[Any], most: int = 3) -> st.SearchStrategy[list[Any]]:
    return st.lists(strategy, min_size=1, max_size=most)


def _resource(resource_type: str, required: dict[str, st.SearchStrategy[Any]],
              optional: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Resource]:
    return st.fixed_dictionaries(
        {"resourceType": st.just(resource_type), **required},
        optional={"id": ids, **optional})


identifier_any = st.builds(lambda s, v: {"system": s, "value": v},
                           st.sampled_from(["https://example.org/ids", "urn:oid:2.16.840.1"]),
                           st.from_regex(r"[A-Z0-9]{3,12}", fullmatch=True))
identifier_ssin = ssins().map(lambda v: {"system": schemas.SSIN_SYSTEM, "value": v})
human_names = st.fixed_dictionaries({}, optional={
    "use": code("name-use"), "family": words, "given": _many(words, 2)}).filter(bool)
contact_points = st.fixed_dictionaries(
    {"system": code("contact-point-system"), "value": st.from_regex(r"\+32[0-9]{8,9}",
                                                                   fullmatch=True)},
    optional={"use": code("contact-point-use"), "rank": st.integers(1, 3)})
addresses = st.fixed_dictionaries({}, optional={
    "use": code("address-use"), "line": _many(words, 2), "city": words,
    "postalCode": st.from_regex(r"1[0-2][0-9]0", fullmatch=True), "country": st.just("BE"),
}).filter(bool)
_personal = _opt(
    name=_many(human_names, 2), telecom=_many(contact_points, 2),
    gender=code("administrative-gender"), birthDate=birth_dates, address=_many(addresses, 2),
    active=st.booleans())

patients = _resource("Patient", {}, {
    **_personal,
    "identifier": _many(st.one_of(identifier_ssin, identifier_any), 2),
    "communication": _many(st.fixed_dictionaries({"language": concept("languages")},
                                                 optional={"preferred": st.booleans()}), 2),
})
related_persons = _resource("RelatedPerson", {
    "patient": ref("Patient"), "relationship": _many(concept("related-person-role"), 2),
}, {**_personal, "identifier": _many(identifier_ssin, 1), "period": periods()})
practitioners = _resource("Practitioner", {}, {
    "identifier": _many(identifier_any, 2), "active": st.booleans(),
    "name": _many(human_names, 1), "telecom": _many(contact_points, 2)})
practitioner_roles = _resource("PractitionerRole", {
    "practitioner": ref("Practitioner"), "organization": ref("Organization"),
    "code": _many(concept("profession"), 2),
}, {"active": st.booleans(), "period": periods(), "telecom": _many(contact_points, 1)})
organizations = _resource("Organization", {"name": words}, {
    "identifier": _many(identifier_any, 1), "active": st.booleans(),
    "type": _many(concept("organisation-sector"), 2), "telecom": _many(contact_points, 1),
    "address": _many(addresses, 1), "partOf": ref("Organization")})
groups = _resource("Group", {"type": st.just("practitioner"), "actual": st.booleans()}, {
    "code": concept("profession"), "name": words, "quantity": st.integers(0, 500),
    "member": _many(st.fixed_dictionaries(
        {"entity": ref("Practitioner", "PractitionerRole")},
        optional={"period": periods(), "inactive": st.booleans()}), 3)})
_hosts = st.from_regex(r"[a-z][a-z0-9\-]{0,20}\.(be|brussels|example)", fullmatch=True)
endpoint_addresses = st.one_of(
    st.builds(lambda h, p: f"https://{h}{p}", _hosts, st.sampled_from(["", "/fhir", "/r4/"])),
    st.builds(lambda port: f"http://127.0.0.1:{port}/fhir", st.integers(1024, 65535)))
endpoints = _resource("Endpoint", {
    "status": code("endpoint-status"), "connectionType": coding("endpoint-connection-type"),
    "payloadType": _many(concept("endpoint-payload-type"), 1), "address": endpoint_addresses,
}, {"identifier": _many(identifier_any, 1), "name": words,
    "managingOrganization": ref("Organization")})

_discharge = st.builds(lambda v: [{"url": schemas.AVAILABLE_AT_DISCHARGE_URL,
                                   "valueBoolean": v}], st.booleans())
care_teams = _resource("CareTeam", {
    "subject": ref("Patient"),
    "participant": _many(st.fixed_dictionaries(
        {"role": _many(concept("network-role"), 2),
         "member": ref("Practitioner", "PractitionerRole", "RelatedPerson", "Organization")},
        optional={"onBehalfOf": ref("Organization"), "period": periods(),
                  "extension": _discharge}), 4),
}, {"status": code("care-team-status"), "period": periods(),
    "managingOrganization": _many(ref("Organization"), 1)})
tasks = _resource("Task", {
    "status": code("task-status"), "intent": code("task-intent"),
    "code": concept("demarche-type"), "for": ref("Patient"),
}, {"priority": code("request-priority"), "businessStatus": concept("demarche-business-status"),
    "authoredOn": full_date_times, "lastModified": full_date_times,
    "executionPeriod": periods(), "owner": ref("Organization"),
    "requester": ref("Practitioner", "PractitionerRole", "Organization"),
    "partOf": _many(ref("Task"), 1)})


@st.composite
def fragility_components(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(code("fragility-component"), min_size=1, max_size=7, unique=True))
    components = []
    for name in names:
        component: dict[str, Any] = {"code": {"coding": [
            {"system": schemas.FRAGILITY_COMPONENT_SYSTEM, "code": name}]}}
        if name == "housing":
            component["valueCodeableConcept"] = draw(concept("housing-status"))
        else:
            component["valueBoolean"] = draw(st.booleans())
        components.append(component)
    return components


observations = _resource("Observation", {
    "status": code("observation-status"), "code": concept("dossier-observation"),
    "subject": ref("Patient"), "effectiveDateTime": date_times,
    "component": fragility_components(),
}, {"category": _many(concept("observation-category"), 1),
    "performer": _many(ref("Practitioner", "PractitionerRole", "Organization"), 2),
    "valueCodeableConcept": concept("fragility-level")})
flags = _resource("Flag", {
    "status": code("flag-status"), "code": concept("fragility-level"), "subject": ref("Patient"),
}, {"period": periods(), "author": ref("Practitioner", "PractitionerRole", "Organization"),
    "extension": ref("Observation").map(
        lambda r: [{"url": schemas.FLAG_DETAIL_URL, "valueReference": r}])})

_actors = _many(st.fixed_dictionaries({
    "role": concept("consent-actor-role"),
    "reference": st.one_of(ref("Practitioner", "Organization"),
                           code("profession").map(
                               lambda c: {"reference": f"Group/profession-{c}"})),
}), 2)
_permit = st.fixed_dictionaries({
    "type": st.just("permit"), "actor": _actors,
    "action": _many(concept("consent-action"), 2),
    "securityLabel": st.lists(coding("dossier-category"), min_size=1, max_size=5),
}, optional={"period": periods()})
_exclusion = st.fixed_dictionaries({"type": st.just("deny"), "actor": _actors},
                                   optional={"period": periods()})
_no_break_glass = st.builds(lambda: {"type": "deny", "purpose": [  # fresh dict each draw
    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG"}]})
consents = _resource("Consent", {
    "status": code("consent-state"), "scope": concept("consent-scope"),
    "category": _many(concept("consent-category"), 1), "patient": ref("Patient"),
    "policyRule": concept("consent-policy"),
    "provision": st.one_of(_permit, _exclusion, _no_break_glass),
}, {"dateTime": full_date_times, "performer": _many(ref("Patient", "RelatedPerson"), 1)})

VALID: dict[str, st.SearchStrategy[Resource]] = {
    "Patient": patients, "Practitioner": practitioners, "PractitionerRole": practitioner_roles,
    "Organization": organizations, "Group": groups, "Endpoint": endpoints,
    "RelatedPerson": related_persons,
    "CareTeam": care_teams, "Task": tasks, "Observation": observations, "Flag": flags,
    "Consent": consents,
}


def valid_resource(resource_type: str) -> st.SearchStrategy[Resource]:
    return VALID[resource_type]


def resources() -> st.SearchStrategy[Resource]:
    """A valid resource of any client-writable type."""
    return st.sampled_from(sorted(VALID)).flatmap(valid_resource)


# -- invalid mutations ------------------------------------------------------

secrets = st.from_regex(r"QX[A-Z0-9]{10}", fullmatch=True)  # never occurs by chance

# An element every valid instance holds (or may take) with a required binding.
_BOUND: dict[str, tuple[str, str]] = {
    "Patient": ("gender", "code"), "Practitioner": ("telecom", "contact"),
    "PractitionerRole": ("code", "concepts"), "Organization": ("type", "concepts"),
    "Group": ("type", "code"), "Endpoint": ("status", "code"),
    "RelatedPerson": ("relationship", "concepts"),
    "CareTeam": ("status", "code"), "Task": ("code", "concept"),
    "Observation": ("code", "concept"), "Flag": ("code", "concept"),
    "Consent": ("scope", "concept"),
}
# A reference element every valid instance holds, and a type it may not point to.
_REFERENCE: dict[str, tuple[str, str]] = {
    "PractitionerRole": ("practitioner", "Patient"), "RelatedPerson": ("patient", "Practitioner"),
    "CareTeam": ("subject", "Organization"), "Task": ("for", "Practitioner"),
    "Observation": ("subject", "RelatedPerson"), "Flag": ("subject", "Organization"),
    "Consent": ("patient", "Practitioner"),
}


def _free_text(resource: Resource, secret: str, where: str) -> None:
    if where == "note":
        resource["note"] = [{"text": secret}]
    elif where == "description":
        resource["description"] = secret
    elif where == "narrative":
        resource["text"] = {"status": "generated",
                            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{secret}</div>'}
    elif where == "comment":
        resource["comment"] = secret
    else:  # valueString at the root
        resource["valueString"] = secret


def _bad_code(resource: Resource, secret: str) -> None:
    name, shape = _BOUND[resource["resourceType"]]
    bogus = {"system": schemas.DEMARCHE_TYPE_SYSTEM, "code": secret.lower()}
    if shape == "code":
        resource[name] = secret.lower()
    elif shape == "concept":
        resource[name] = {"coding": [bogus]}
    elif shape == "concepts":
        resource[name] = [{"coding": [bogus]}]
    else:
        resource[name] = [{"system": secret.lower(), "value": "+3220000000"}]


def mutations(resource_type: str) -> list[str]:
    """The mutation kinds `invalid_resource` can apply to a type."""
    kinds = ["free-text", "unknown-element", "bad-code", "primitive-extension", "extension",
             "codeable-text", "null", "empty"]
    if resource_type in _REFERENCE:
        kinds.append("reference-type")
    if resource_type == "Observation":
        kinds.append("component-value-type")
    if resource_type == "CareTeam":
        kinds.append("participant-without-role")
    return kinds


@st.composite
def invalid_resource(draw: st.DrawFn, resource_type: str, kind: str | None = None
                     ) -> tuple[Resource, str | None, str]:
    resource = copy.deepcopy(draw(valid_resource(resource_type)))
    secret = draw(secrets)
    if kind is None:
        kind = draw(st.sampled_from(mutations(resource_type)))
    planted: str | None = secret
    if kind == "free-text":
        where = draw(st.sampled_from(["note", "description", "narrative", "comment",
                                      "valueString"]))
        _free_text(resource, secret, where)
    elif kind == "unknown-element":
        resource[f"x{secret.lower()}"] = secret
        planted = None  # the element's name is reported, by design
    elif kind == "bad-code":
        _bad_code(resource, secret)
    elif kind == "primitive-extension":
        resource["_id"] = {"extension": [{"url": "https://example.org/x", "valueString": secret}]}
    elif kind == "extension":
        resource["extension"] = [{"url": f"https://example.org/{secret}", "valueString": secret}]
    elif kind == "codeable-text":
        name, shape = _BOUND[resource_type]
        if shape in ("concept", "concepts") and name in resource:
            target = resource[name] if shape == "concept" else resource[name][0]
            target["text"] = secret
        else:  # no CodeableConcept in reach: a free-text note instead
            _free_text(resource, secret, "note")
    elif kind == "null":
        resource["meta"] = None
        planted = None
    elif kind == "empty":
        resource["meta"] = {}
        planted = None
    elif kind == "reference-type":
        name, wrong = _REFERENCE[resource_type]
        resource[name] = {"reference": f"{wrong}/{secret}"}
    elif kind == "component-value-type":
        component = resource["component"][draw(st.integers(0, len(resource["component"]) - 1))]
        for key in [k for k in component if k.startswith("value")]:
            del component[key]
        # a string, whatever value[x] it is put in, is never a valid component value
        component[draw(st.sampled_from(["valueString", "valueInteger", "valueBoolean",
                                        "valueCodeableConcept"]))] = secret
    else:  # participant-without-role
        del resource["participant"][0]["role"]
        planted = None
    return resource, planted, kind
