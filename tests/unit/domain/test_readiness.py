"""$discharge-readiness: days, hours, holidays, DST, fragility levels and the network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.parameters import Parameters
from hypothesis import given
from hypothesis import strategies as st

from dossier.domain.codes import (
    AVAILABLE_AT_DISCHARGE_URL,
    FRAGILITY_COMPONENT_SYSTEM,
    NETWORK_ROLE_SYSTEM,
    OBSERVATION_CODE_SYSTEM,
    READINESS_REASON_SYSTEM,
)
from dossier.domain.fragility import fragility_level
from dossier.domain.readiness import (
    REASON_CODES,
    REASON_TEXTS,
    Readiness,
    Reason,
    discharge_readiness,
    readiness_parameters,
)

BRUSSELS = ZoneInfo("Europe/Brussels")


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


def bool_component(name: str, value: bool) -> dict[str, Any]:
    return {"code": {"coding": [{"system": FRAGILITY_COMPONENT_SYSTEM, "code": name}]},
            "valueBoolean": value}


def assessment(level: str, status: str = "final") -> dict[str, Any]:
    components = {
        "low": [bool_component("support-on-return", True)],
        "moderate": [bool_component("support-on-return", True),
                     bool_component("mobility-limited", True),
                     bool_component("language-barrier", True)],
        "high": [bool_component("lives-alone", True),
                 bool_component("support-on-return", False)],
    }[level]
    observation = {
        "resourceType": "Observation", "status": status,
        "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": "social-fragility"}]},
        "component": components,
    }
    assert fragility_level(observation) == level
    return observation


def participant(ref: str, role: str, available: bool | None = None,
                period: dict[str, str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "member": {"reference": ref},
        "role": [{"coding": [{"system": NETWORK_ROLE_SYSTEM, "code": role}]}],
    }
    if available is not None:
        result["extension"] = [{"url": AVAILABLE_AT_DISCHARGE_URL, "valueBoolean": available}]
    if period is not None:
        result["period"] = period
    return result


def team(*participants: dict[str, Any], status: str | None = "active",
         period: dict[str, str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"resourceType": "CareTeam", "participant": list(participants)}
    if status is not None:
        result["status"] = status
    if period is not None:
        result["period"] = period
    return result


SON = participant("RelatedPerson/son", "family", available=True)
NEIGHBOUR = participant("RelatedPerson/neighbour", "neighbour", available=False)
GP = participant("Practitioner/gp", "general-practitioner")
NURSE = participant("Practitioner/nurse", "home-nurse")
CASE_MANAGER = participant("Practitioner/cm", "case-manager")
VOLUNTEER = participant("RelatedPerson/volunteer", "volunteer")
WITH_SUPPORT = [team(SON, NEIGHBOUR, GP, NURSE, CASE_MANAGER, VOLUNTEER)]
WITHOUT_SUPPORT = [team(NEIGHBOUR, GP, NURSE, CASE_MANAGER, VOLUNTEER)]

TUESDAY_10 = local("2026-11-17T10:00")
FRIDAY_16 = local("2026-11-20T16:00")


def codes(result: Readiness) -> list[str]:
    return [r.code for r in result.reasons]


# -- the main grid ------------------------------------------------------------------------

@pytest.mark.parametrize(("at", "level", "network", "expected"), [
    (TUESDAY_10, "low", WITHOUT_SUPPORT, []),
    (TUESDAY_10, "moderate", WITHOUT_SUPPORT, []),
    (TUESDAY_10, "high", WITH_SUPPORT, []),
    (TUESDAY_10, "high", WITHOUT_SUPPORT, ["high-fragility-no-support"]),
    (FRIDAY_16, "low", WITHOUT_SUPPORT, []),
    (FRIDAY_16, "moderate", WITH_SUPPORT, ["friday-afternoon"]),
    (FRIDAY_16, "high", WITH_SUPPORT, ["friday-afternoon"]),
    (FRIDAY_16, "high", WITHOUT_SUPPORT, ["high-fragility-no-support", "friday-afternoon"]),
    (local("2026-11-20T11:59:59"), "moderate", WITH_SUPPORT, []),
    (local("2026-11-20T12:00"), "moderate", WITH_SUPPORT, ["friday-afternoon"]),
    (local("2026-11-20T23:59"), "moderate", WITH_SUPPORT, ["friday-afternoon"]),
    (local("2026-11-21T09:00"), "moderate", WITH_SUPPORT, ["weekend"]),
    (local("2026-11-22T18:00"), "high", WITHOUT_SUPPORT, ["high-fragility-no-support", "weekend"]),
    (local("2026-11-22T18:00"), "low", WITHOUT_SUPPORT, []),
    (local("2026-11-23T00:00"), "moderate", WITH_SUPPORT, []),  # Monday
])
def test_grid(at: datetime, level: str, network: list[dict[str, Any]],
              expected: list[str]) -> None:
    result = discharge_readiness(at, assessment(level), network)
    assert codes(result) == expected
    assert result.ready is (not expected)


@pytest.mark.parametrize(("at", "expected"), [
    (local("2027-07-21T10:00"), ["public-holiday"]),  # National Day, a Wednesday
    (local("2027-07-20T11:00"), []),  # the morning before
    (local("2027-07-20T14:00"), ["holiday-eve"]),
    (local("2026-12-25T10:00"), ["public-holiday"]),  # Christmas, a Friday morning
    (local("2026-12-25T16:00"), ["public-holiday", "friday-afternoon"]),
    (local("2026-12-24T15:00"), ["holiday-eve"]),  # Thursday afternoon
    (local("2026-12-31T13:00"), ["holiday-eve"]),  # New Year, across the year boundary
    (local("2026-04-06T09:00"), ["public-holiday"]),  # Easter Monday
    (local("2027-03-28T14:00"), ["public-holiday", "weekend", "holiday-eve"]),  # Easter Sunday
    (local("2026-11-11T10:00"), ["public-holiday"]),  # Armistice
    (local("2026-11-12T10:00"), []),
])
def test_belgian_public_holidays(at: datetime, expected: list[str]) -> None:
    assert codes(discharge_readiness(at, assessment("moderate"), WITH_SUPPORT)) == expected
    assert discharge_readiness(at, assessment("low"), WITH_SUPPORT).ready


@pytest.mark.parametrize(("at", "expected"), [
    # Last Sunday of March 2026: clocks go 02:00 CET -> 03:00 CEST.
    (datetime(2026, 3, 29, 21, 59, 59, tzinfo=UTC), ["weekend"]),  # Sunday 23:59:59 CEST
    (datetime(2026, 3, 29, 22, 0, tzinfo=UTC), []),  # Monday 00:00 CEST
    (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), ["weekend"]),  # 03:30 CEST, just after the gap
    (datetime(2026, 3, 27, 10, 59, tzinfo=UTC), []),  # Friday 11:59 CET
    (datetime(2026, 3, 27, 11, 0, tzinfo=UTC), ["friday-afternoon"]),  # Friday 12:00 CET
    # Last Sunday of October 2026: 03:00 CEST -> 02:00 CET.
    (datetime(2026, 10, 23, 10, 0, tzinfo=UTC), ["friday-afternoon"]),  # 12:00 CEST
    (datetime(2026, 10, 30, 10, 0, tzinfo=UTC), []),  # 11:00 CET
    (datetime(2026, 10, 30, 11, 0, tzinfo=UTC), ["friday-afternoon"]),  # 12:00 CET
    (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), ["weekend"]),  # 02:30 CEST
    (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), ["weekend"]),  # 02:30 CET, the repeated hour
    (datetime(2026, 10, 25, 22, 59, tzinfo=UTC), ["weekend"]),  # Sunday 23:59 CET
    (datetime(2026, 10, 25, 23, 0, tzinfo=UTC), []),  # Monday 00:00 CET
])
def test_dst_edges_are_read_in_brussels_time(at: datetime, expected: list[str]) -> None:
    assert codes(discharge_readiness(at, assessment("high"), WITH_SUPPORT)) == expected


def test_same_instant_in_any_zone_gives_the_same_answer() -> None:
    at = datetime(2026, 11, 20, 11, 30, tzinfo=UTC)  # Friday 12:30 in Brussels
    for zone in (UTC, BRUSSELS, ZoneInfo("America/New_York"), timezone(timedelta(hours=9))):
        assert codes(discharge_readiness(at.astimezone(zone), assessment("moderate"),
                                         WITH_SUPPORT)) == ["friday-afternoon"]


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        discharge_readiness(datetime(2026, 11, 17, 10, 0), assessment("low"), [])


# -- assessment ---------------------------------------------------------------------------

def test_no_assessment_is_not_ready_and_timing_still_counts() -> None:
    result = discharge_readiness(TUESDAY_10, None, WITH_SUPPORT)
    assert codes(result) == ["no-assessment"]
    result = discharge_readiness(FRIDAY_16, None, WITH_SUPPORT)
    assert codes(result) == ["no-assessment", "friday-afternoon"]


def test_an_assessment_entered_in_error_does_not_count() -> None:
    wrong = assessment("low", status="entered-in-error")
    assert codes(discharge_readiness(TUESDAY_10, wrong, WITH_SUPPORT)) == ["no-assessment"]


# -- the network --------------------------------------------------------------------------

def test_only_members_confirmed_available_count() -> None:
    maybe = [team(participant("RelatedPerson/son", "family"))]
    declined = [team(participant("RelatedPerson/son", "family", available=False))]
    for network in (maybe, declined, []):
        assert codes(discharge_readiness(TUESDAY_10, assessment("high"), network)) == [
            "high-fragility-no-support"]


@pytest.mark.parametrize("period", [
    {"start": "2026-11-18"},  # starts the next day
    {"end": "2026-11-16"},  # ended the day before
    {"start": "2026-11-17T10:00:01+01:00"},
    {"end": "2026-11-17T09:59:59+01:00"},
])
def test_an_availability_outside_its_period_does_not_count(period: dict[str, str]) -> None:
    network = [team(participant("RelatedPerson/son", "family", True, period=period))]
    result = discharge_readiness(TUESDAY_10, assessment("high"), network)
    assert codes(result) == ["high-fragility-no-support"]
    assert "RelatedPerson/son" not in result.contacts


@pytest.mark.parametrize("period", [
    {"start": "2026-11-17", "end": "2026-11-17"},  # a date covers the whole day
    {"start": "2026-11", "end": "2026-11"},
    {"start": "2026-11-17T10:00:00+01:00"},
    {"end": "2026-11-17T10:00:00+01:00"},
])
def test_an_availability_inside_its_period_counts(period: dict[str, str]) -> None:
    network = [team(participant("RelatedPerson/son", "family", True, period=period))]
    result = discharge_readiness(TUESDAY_10, assessment("high"), network)
    assert result.ready
    assert result.contacts == ("RelatedPerson/son",)


@pytest.mark.parametrize(("status", "period"), [
    ("inactive", None), ("proposed", None), ("entered-in-error", None), ("suspended", None),
    ("active", {"end": "2026-01-01"}),
])
def test_inactive_care_teams_do_not_count(status: str, period: dict[str, str] | None) -> None:
    network = [team(SON, status=status, period=period)]
    result = discharge_readiness(TUESDAY_10, assessment("high"), network)
    assert not result.ready
    assert result.contacts == ()


def test_a_care_team_without_status_counts() -> None:
    assert discharge_readiness(TUESDAY_10, assessment("high"), [team(SON, status=None)]).ready


def test_destination_in_the_network_counts_as_receiving() -> None:
    care_home = participant("Organization/mrs", "care-home")
    network = [team(care_home, GP)]
    result = discharge_readiness(TUESDAY_10, assessment("high"), network,
                                 destination="Organization/mrs")
    assert result.ready
    assert result.contacts == ("Organization/mrs",)
    elsewhere = discharge_readiness(TUESDAY_10, assessment("high"), network,
                                    destination="Organization/shelter")
    assert codes(elsewhere) == ["high-fragility-no-support"]


# -- contacts -----------------------------------------------------------------------------

def test_ready_lists_the_available_members() -> None:
    result = discharge_readiness(TUESDAY_10, assessment("moderate"), WITH_SUPPORT)
    assert result.contacts == ("RelatedPerson/son",)


def test_no_support_lists_who_can_organise_or_give_it() -> None:
    result = discharge_readiness(TUESDAY_10, assessment("high"), WITHOUT_SUPPORT)
    assert result.contacts == ("Practitioner/cm", "RelatedPerson/neighbour",
                               "RelatedPerson/volunteer")


def test_closed_services_list_the_care_continuity_roles() -> None:
    result = discharge_readiness(FRIDAY_16, assessment("moderate"), WITH_SUPPORT)
    assert result.contacts == ("Practitioner/cm", "Practitioner/gp", "Practitioner/nurse",
                               "RelatedPerson/son")


def test_members_listed_twice_are_merged_across_teams() -> None:
    network = [team(participant("RelatedPerson/son", "family")),
               team(participant("RelatedPerson/son", "informal-carer", available=True))]
    result = discharge_readiness(TUESDAY_10, assessment("high"), network)
    assert result.ready
    assert result.contacts == ("RelatedPerson/son",)


# -- invariants ---------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2029, 12, 31),
                        timezones=st.just(UTC))
levels = st.sampled_from(["low", "moderate", "high"])
networks = st.sampled_from([WITH_SUPPORT, WITHOUT_SUPPORT, []])


@given(instants, levels, networks)
def test_ready_means_no_reasons_and_reasons_come_in_order(
        at: datetime, level: str, network: list[dict[str, Any]]) -> None:
    result = discharge_readiness(at, assessment(level), network)
    assert result.ready is (not result.reasons)
    assert codes(result) == sorted(codes(result), key=REASON_CODES.index)
    assert list(result.contacts) == sorted(set(result.contacts))


@given(instants, networks)
def test_low_fragility_is_always_ready(at: datetime, network: list[dict[str, Any]]) -> None:
    assert discharge_readiness(at, assessment("low"), network).ready


@given(instants, networks)
def test_higher_fragility_never_removes_a_reason(at: datetime,
                                                 network: list[dict[str, Any]]) -> None:
    found = [set(codes(discharge_readiness(at, assessment(level), network)))
             for level in ("low", "moderate", "high")]
    assert found[0] <= found[1] <= found[2]


@given(instants, levels)
def test_confirmed_support_never_adds_a_reason(at: datetime, level: str) -> None:
    without = set(codes(discharge_readiness(at, assessment(level), WITHOUT_SUPPORT)))
    with_support = set(codes(discharge_readiness(at, assessment(level), WITH_SUPPORT)))
    assert with_support <= without


# -- Parameters ---------------------------------------------------------------------------

def test_parameters_per_contract() -> None:
    result = discharge_readiness(FRIDAY_16, assessment("high"), WITHOUT_SUPPORT)
    parameters = readiness_parameters(result)
    Parameters.model_validate(parameters)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for item in parameters["parameter"]:
        by_name.setdefault(item["name"], []).append(item)
    assert by_name["ready"] == [{"name": "ready", "valueBoolean": False}]
    assert [p["valueCodeableConcept"]["coding"][0]["code"] for p in by_name["reason"]] == [
        "high-fragility-no-support", "friday-afternoon"]
    first = by_name["reason"][0]["valueCodeableConcept"]
    assert first["coding"][0]["system"] == READINESS_REASON_SYSTEM
    assert first["text"] == REASON_TEXTS["high-fragility-no-support"]["en"]
    assert [p["valueReference"]["reference"] for p in by_name["contact"]] == list(result.contacts)


@pytest.mark.parametrize(("lang", "key"), [("fr", "fr"), ("nl-BE", "nl"), ("fr_BE", "fr"),
                                           ("EN", "en"), ("es", "en")])
def test_parameters_text_in_the_asked_language(lang: str, key: str) -> None:
    result = Readiness(False, (Reason("weekend", REASON_TEXTS["weekend"]["en"]),), ())
    concept = readiness_parameters(result, lang)["parameter"][1]["valueCodeableConcept"]
    assert concept["text"] == REASON_TEXTS["weekend"][key]
    assert concept["coding"][0]["display"] == REASON_TEXTS["weekend"]["en"]


def test_ready_parameters_have_no_reason() -> None:
    result = discharge_readiness(TUESDAY_10, assessment("low"), WITH_SUPPORT)
    assert readiness_parameters(result) == {"resourceType": "Parameters", "parameter": [
        {"name": "ready", "valueBoolean": True},
        {"name": "contact", "valueReference": {"reference": "RelatedPerson/son"}}]}


def test_every_reason_has_three_languages() -> None:
    assert set(REASON_TEXTS) == set(REASON_CODES)
    assert all(set(texts) == {"en", "fr", "nl"} and all(texts.values())
               for texts in REASON_TEXTS.values())
