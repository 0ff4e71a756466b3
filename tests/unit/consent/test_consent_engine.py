"""Worked examples of the decision procedure (docs/consent.md, step by step)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from consent import (
    BREAK_GLASS_CATEGORIES,
    CATEGORIES,
    Actor,
    Decision,
    Provision,
    break_glass_provision,
    break_glass_refused,
    decide,
    granted_categories,
    parse_consent,
)

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
BRUSSELS = ZoneInfo("Europe/Brussels")


def load(*names: str) -> list[Provision]:
    parsed = [parse_consent(json.loads((FIXTURES / name).read_text())) for name in names]
    return [p for p in parsed if p is not None]


GP = Actor(practitioner="Practitioner/gp-1", professions=frozenset({"persphysician"}))
NURSE = Actor(practitioner="Practitioner/nurse-1", professions=frozenset({"persnurse"}))
CPAS_WORKER = Actor(
    practitioner="Practitioner/sw-1",
    organizations=frozenset({"Organization/cpas-ixelles"}),
    professions=frozenset({"perssocialworker"}),
)
PSYCHOLOGIST = Actor(practitioner="Practitioner/psy-17",
                     professions=frozenset({"perspsychologist"}))
DR_X = Actor(practitioner="Practitioner/dr-x", professions=frozenset({"persphysician"}))


def only(*cats: str) -> frozenset[str]:
    return frozenset(cats)


# --- default deny and the three kinds of grantee -------------------------------


def test_nothing_is_granted_by_default() -> None:
    decision = decide(GP, [], only("identity"), "access", NOW)
    assert decision == Decision(False, ("no-grant:identity",))
    assert not decision
    assert granted_categories(GP, [], "access", NOW) == frozenset()


def test_profession_grant_covers_that_profession_only() -> None:
    provisions = load("grant-profession.json")
    decision = decide(GP, provisions, only("identity", "network"), "access", NOW)
    assert decision == Decision(True, ("permit:Consent/grant-gps",))
    assert decision
    assert not decide(NURSE, provisions, only("identity"), "access", NOW)
    assert granted_categories(GP, provisions, "access", NOW) == {"identity", "network",
                                                                 "fragility"}


def test_organisation_grant_covers_members_with_an_active_role() -> None:
    provisions = load("grant-organization.json")
    assert decide(CPAS_WORKER, provisions, only("demarches"), "collect", NOW)
    # Same person once the role has ended: auth no longer lists the organisation.
    former = Actor(practitioner="Practitioner/sw-1", professions=frozenset({"perssocialworker"}))
    assert not decide(former, provisions, only("demarches"), "collect", NOW)


def test_practitioner_grant_covers_that_person_only() -> None:
    provisions = load("grant-practitioner-psy.json")
    assert decide(PSYCHOLOGIST, provisions, only("psy"), "access", NOW)
    colleague = Actor(practitioner="Practitioner/psy-18",
                      professions=frozenset({"perspsychologist"}))
    assert not decide(colleague, provisions, only("psy"), "access", NOW)


# --- categories ----------------------------------------------------------------


def test_every_requested_category_must_be_granted() -> None:
    provisions = load("grant-profession.json")
    decision = decide(GP, provisions, only("identity", "demarches", "psy"), "access", NOW)
    assert decision == Decision(False, ("no-grant:demarches", "no-grant:psy"))


def test_psy_needs_a_grant_that_names_it() -> None:
    everything_but_psy = Provision(
        "c-wide", "permit", actors=frozenset({"Practitioner/gp-1"}),
        actions=frozenset({"access"}), categories=CATEGORIES - {"psy"},
    )
    assert granted_categories(GP, [everything_but_psy], "access", NOW) == CATEGORIES - {"psy"}
    assert not decide(GP, [everything_but_psy], only("psy"), "access", NOW)


def test_empty_and_unknown_categories_are_denied() -> None:
    provisions = load("grant-profession.json")
    assert decide(GP, provisions, frozenset(), "access", NOW) == Decision(False, ("no-category",))
    assert decide(GP, provisions, only("identity", "finance"), "access", NOW) == Decision(
        False, ("unknown-category:finance",)
    )


# --- deny overrides ------------------------------------------------------------


def test_exclusion_overrides_a_profession_grant() -> None:
    provisions = load("grant-profession.json", "exclusion.json")
    assert decide(GP, provisions, only("identity"), "access", NOW)
    decision = decide(DR_X, provisions, only("identity"), "access", NOW)
    assert decision == Decision(False, ("deny:Consent/exclude-dr-x:identity",))
    # A deny naming no action or category covers both actions and every category.
    assert granted_categories(DR_X, provisions, "collect", NOW) == frozenset()


def test_deny_naming_an_organisation_excludes_every_member() -> None:
    hospital_psy = Actor(
        practitioner="Practitioner/psy-17",
        organizations=frozenset({"Organization/hospital-9"}),
    )
    provisions = load("grant-practitioner-psy.json", "exclusion-organization-psy.json")
    decision = decide(hospital_psy, provisions, only("psy", "fragility"), "access", NOW)
    assert decision == Decision(False, ("deny:Consent/no-psy-hospital:psy",))
    assert granted_categories(hospital_psy, provisions, "access", NOW) == {"fragility"}
    assert decide(PSYCHOLOGIST, provisions, only("psy"), "access", NOW)  # not a member


def test_revoked_consent_no_longer_grants() -> None:
    assert load("revoked-grant.json") == []


# --- periods -------------------------------------------------------------------


def test_period_start_is_inclusive_and_end_exclusive() -> None:
    start, end = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)
    grant = Provision("c1", "permit", actors=frozenset({"Practitioner/gp-1"}),
                      actions=frozenset({"access"}), categories=only("identity"),
                      start=start, end=end)
    cats = only("identity")
    assert not decide(GP, [grant], cats, "access", start - timedelta(microseconds=1))
    assert decide(GP, [grant], cats, "access", start)
    assert decide(GP, [grant], cats, "access", end - timedelta(microseconds=1))
    assert not decide(GP, [grant], cats, "access", end)


def test_a_date_end_includes_its_last_day_in_brussels() -> None:
    provisions = load("grant-organization.json")  # ends 2027-07-31
    last_minute = datetime(2027, 7, 31, 23, 59, 59, tzinfo=BRUSSELS)
    assert decide(CPAS_WORKER, provisions, only("identity"), "access", last_minute)
    assert not decide(CPAS_WORKER, provisions, only("identity"), "access",
                      last_minute + timedelta(seconds=1))


def test_a_deny_outside_its_period_does_nothing() -> None:
    grant = load("grant-profession.json")
    later = Provision("c-later", "deny", actors=frozenset({"Group/profession-persphysician"}),
                      start=NOW + timedelta(days=1))
    assert decide(GP, [*grant, later], only("identity"), "access", NOW)
    assert not decide(GP, [*grant, later], only("identity"), "access", NOW + timedelta(days=1))


# --- actions -------------------------------------------------------------------


def test_access_and_collect_are_independent() -> None:
    reader = Provision("c-read", "permit", actors=frozenset({"Practitioner/gp-1"}),
                       actions=frozenset({"access"}), categories=only("network"))
    writer = Provision("c-write", "permit", actors=frozenset({"Practitioner/gp-1"}),
                       actions=frozenset({"collect"}), categories=only("network"))
    assert decide(GP, [reader], only("network"), "access", NOW)
    assert not decide(GP, [reader], only("network"), "collect", NOW)
    assert decide(GP, [writer], only("network"), "collect", NOW)
    assert not decide(GP, [writer], only("network"), "access", NOW)


def test_deny_limited_to_collect_leaves_access() -> None:
    grant = load("grant-organization.json")
    no_writing = Provision("c-nw", "deny", actors=frozenset({"Organization/cpas-ixelles"}),
                           actions=frozenset({"collect"}))
    assert decide(CPAS_WORKER, [*grant, no_writing], only("demarches"), "access", NOW)
    assert not decide(CPAS_WORKER, [*grant, no_writing], only("demarches"), "collect", NOW)


# --- purposes ------------------------------------------------------------------


def test_permit_naming_a_purpose_needs_that_purpose() -> None:
    for_care = Provision("c-care", "permit", actors=frozenset({"Practitioner/gp-1"}),
                         actions=frozenset({"access"}), categories=only("identity"),
                         purposes=frozenset({"TREAT"}))
    assert decide(GP, [for_care], only("identity"), "access", NOW, purpose="TREAT")
    assert not decide(GP, [for_care], only("identity"), "access", NOW)
    assert not decide(GP, [for_care], only("identity"), "access", NOW, purpose="HPAYMT")


def test_ordinary_permit_does_not_serve_break_the_glass() -> None:
    provisions = load("grant-profession.json")
    assert decide(GP, provisions, only("identity"), "access", NOW, purpose="TREAT")
    assert not decide(GP, provisions, only("identity"), "access", NOW, purpose="BTG")


def test_deny_without_purpose_also_blocks_break_the_glass() -> None:
    glass = break_glass_provision("Practitioner/dr-x", NOW, grant_id="bg-1")
    provisions = [*load("exclusion.json"), glass]
    assert not decide(DR_X, provisions, only("identity"), "access", NOW, purpose="BTG")
    assert not break_glass_refused(provisions, NOW)  # refused for dr-x only, not for everyone


# --- break-the-glass -----------------------------------------------------------


def test_break_the_glass_grant() -> None:
    glass = break_glass_provision("Practitioner/nurse-1", NOW, grant_id="bg-1")
    assert glass.categories == BREAK_GLASS_CATEGORIES
    assert glass.end == NOW + timedelta(minutes=60)
    ok = decide(NURSE, [glass], BREAK_GLASS_CATEGORIES, "access", NOW, purpose="BTG")
    assert ok == Decision(True, ("permit:Consent/bg-1",))
    assert decide(NURSE, [glass], only("psy"), "access", NOW, "BTG") == Decision(
        False, ("no-grant:psy",)
    )
    assert not decide(NURSE, [glass], only("demarches"), "access", NOW, "BTG")
    assert not decide(NURSE, [glass], only("identity"), "collect", NOW, "BTG")
    assert not decide(NURSE, [glass], only("identity"), "access", glass.end, "BTG")
    assert not decide(GP, [glass], only("identity"), "access", NOW, "BTG")


def test_break_the_glass_counts_real_minutes_across_dst() -> None:
    start = datetime(2027, 3, 28, 1, 30, tzinfo=BRUSSELS)  # clocks jump at 02:00
    glass = break_glass_provision("Practitioner/nurse-1", start, minutes=60)
    assert glass.end is not None
    assert glass.end - start == timedelta(minutes=60)
    assert glass.end == datetime(2027, 3, 28, 3, 30, tzinfo=BRUSSELS)


def test_citizen_can_refuse_break_the_glass() -> None:
    refusal = load("refuse-break-glass.json")
    glass = break_glass_provision("Practitioner/nurse-1", NOW, grant_id="bg-1")
    assert break_glass_refused(refusal, NOW)
    assert not break_glass_refused([], NOW)
    decision = decide(NURSE, [*refusal, glass], only("identity"), "access", NOW, "BTG")
    assert decision == Decision(False, ("deny:Consent/refuse-btg:identity",))
    # The refusal does not touch ordinary grants.
    provisions = [*refusal, *load("grant-profession.json")]
    assert decide(GP, provisions, only("identity"), "access", NOW)


def test_partial_refusal_keeps_the_other_categories() -> None:
    no_fragility = Provision("c-nf", "deny", categories=only("fragility"),
                             purposes=frozenset({"BTG"}))
    glass = break_glass_provision("Practitioner/nurse-1", NOW)
    assert not break_glass_refused([no_fragility], NOW)
    assert granted_categories(NURSE, [no_fragility, glass], "access", NOW, "BTG") == {
        "identity", "network"}


def test_refusal_limited_in_time_or_to_collect_does_not_refuse_now() -> None:
    past = Provision("c-old", "deny", purposes=frozenset({"BTG"}), end=NOW)
    collect_only = Provision("c-co", "deny", purposes=frozenset({"BTG"}),
                             actions=frozenset({"collect"}))
    assert not break_glass_refused([past, collect_only], NOW)
    assert break_glass_refused([past], NOW - timedelta(seconds=1))


@pytest.mark.parametrize(
    ("practitioner", "minutes"),
    [("Organization/o1", 60), ("gp-1", 60), ("Practitioner/gp-1", 0),
     ("Practitioner/gp-1", -5), ("Practitioner/gp-1", True)],
)
def test_break_glass_provision_rejects_bad_input(practitioner: str, minutes: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        break_glass_provision(practitioner, NOW, minutes)


# --- inputs --------------------------------------------------------------------


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2027, 3, 1, 12, 0)  # no tzinfo: the point of the test
    provisions = load("grant-profession.json")
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(GP, provisions, only("identity"), "access", naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        granted_categories(GP, provisions, "access", naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        break_glass_refused(provisions, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        break_glass_provision("Practitioner/gp-1", naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        Provision("c1", "deny", start=naive)


def test_unknown_action_and_single_string_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="action"):
        decide(GP, [], only("identity"), "read", NOW)
    with pytest.raises(TypeError):
        decide(GP, [], "identity", "access", NOW)  # type: ignore[arg-type]


def test_reasons_name_unsaved_provisions_plainly() -> None:
    grant = Provision(None, "permit", actors=frozenset({"Practitioner/gp-1"}),
                      actions=frozenset({"access"}), categories=only("identity"))
    assert decide(GP, [grant], only("identity"), "access", NOW).reasons == ("permit:Consent/-",)


# --- the model's own checks ----------------------------------------------------


def test_actor_references() -> None:
    hub = Actor(other_references=frozenset({"Organization/hub"}))
    assert hub.references() == {"Organization/hub"}
    assert CPAS_WORKER.references() == {
        "Practitioner/sw-1", "Organization/cpas-ixelles", "Group/profession-perssocialworker"}
    assert Actor().references() == frozenset()
    assert Actor(organizations={"Organization/o1"}).organizations == {  # type: ignore[arg-type]
        "Organization/o1"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"practitioner": "Organization/o1"},
        {"practitioner": "https://x.example/Practitioner/p1"},
        {"organizations": frozenset({"Practitioner/p1"})},
        {"professions": frozenset({"Group/profession-persnurse"})},
        {"other_references": frozenset({"Patient/p1"})},
    ],
)
def test_actor_rejects_malformed_references(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Actor"):
        Actor(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type": "allow"},
        {"type": "permit", "actions": frozenset({"access"}), "categories": only("identity")},
        {"type": "permit", "actors": frozenset({"Practitioner/p1"}),
         "categories": only("identity")},
        {"type": "permit", "actors": frozenset({"Practitioner/p1"}),
         "actions": frozenset({"access"})},
        {"type": "deny", "actors": frozenset({"Patient/p1"})},
        {"type": "deny", "actions": frozenset({"read"})},
        {"type": "deny", "categories": only("finance")},
        {"type": "deny", "purposes": frozenset({" "})},
        {"type": "deny", "start": NOW, "end": NOW - timedelta(seconds=1)},
    ],
)
def test_provision_rejects_impossible_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"Provision|permit"):
        Provision("c1", **kwargs)  # type: ignore[arg-type]


def test_provision_keeps_instants_in_utc() -> None:
    local = datetime(2027, 10, 31, 2, 30, fold=1, tzinfo=BRUSSELS)  # the second 02:30
    provision = Provision("c1", "deny", start=local)
    # (`==` across zones is always False for the repeated hour: compare in UTC.)
    assert provision.start == datetime(2027, 10, 31, 1, 30, tzinfo=UTC)
    assert provision.start is not None
    assert provision.start.tzinfo is UTC
    before = Provision("c2", "deny", end=local)
    assert decide(GP, [before], only("identity"), "access",
                  datetime(2027, 10, 31, 2, 45, fold=0, tzinfo=BRUSSELS)) == Decision(
        False, ("deny:Consent/c2:identity",))
