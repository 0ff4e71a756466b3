"""Démarche statuses, transitions, reopening and the $demarches timeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.task import Task
from hypothesis import given
from hypothesis import strategies as st

from dossier.domain._time import start_of
from dossier.domain.codes import BUSINESS_STATUS_SYSTEM, DEMARCHE_TYPE_SYSTEM
from dossier.domain.demarches import (
    BUSINESS_STATUSES,
    CLOSED_STATUSES,
    OPEN_STATUSES,
    TASK_STATUSES,
    TRANSITIONS,
    InvalidBusinessStatus,
    InvalidTransition,
    check_business_status,
    check_transition,
    is_closed,
    reopening,
    timeline,
)
from dossier.errors import Unprocessable
from schemas.validate import validate

statuses = st.sampled_from(TASK_STATUSES)


def accepted(old: str | None, new: str) -> bool:
    try:
        check_transition(old, new)
    except InvalidTransition:
        return False
    return True


# -- transitions --------------------------------------------------------------------------

def test_transition_table_is_complete_and_closed_statuses_are_final() -> None:
    assert set(TRANSITIONS) == set(TASK_STATUSES)
    assert set(TASK_STATUSES) == OPEN_STATUSES | CLOSED_STATUSES
    assert all(TRANSITIONS[s] == frozenset() for s in CLOSED_STATUSES)
    assert all(targets <= set(TASK_STATUSES) for targets in TRANSITIONS.values())
    assert not any("requested" in targets for targets in TRANSITIONS.values())


@given(statuses, statuses)
def test_exactly_the_listed_transitions_are_accepted(old: str, new: str) -> None:
    assert accepted(old, new) == (old == new or new in TRANSITIONS[old])


@pytest.mark.parametrize(("old", "new"),
                         [(o, n) for o in TASK_STATUSES for n in sorted(TRANSITIONS[o])])
def test_every_listed_transition_is_accepted(old: str, new: str) -> None:
    check_transition(old, new)


@given(statuses, st.lists(statuses, max_size=12))
def test_no_path_leaves_a_closed_status(start: str, attempts: list[str]) -> None:
    current = start
    closed_at = current if is_closed(current) else None
    for wanted in attempts:
        if accepted(current, wanted):
            current = wanted
        if closed_at is None and is_closed(current):
            closed_at = current
        if closed_at is not None:
            assert current == closed_at


@pytest.mark.parametrize("closed", sorted(CLOSED_STATUSES))
@pytest.mark.parametrize("target", TASK_STATUSES)
def test_closed_refusal_explains_reopening(closed: str, target: str) -> None:
    if target == closed:
        check_transition(closed, target)  # saving without a status change
        return
    with pytest.raises(InvalidTransition, match="partOf") as caught:
        check_transition(closed, target)
    assert f"'{closed}'" in caught.value.message
    assert f"'{target}'" in caught.value.message
    assert isinstance(caught.value, Unprocessable)
    assert caught.value.outcome()["issue"][0]["code"] == "business-rule"


def test_the_table_in_the_docs_matches_the_code() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "demarches.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1:-1] for line in doc.splitlines()
            if line.startswith("| ") and line.count("|") == len(TASK_STATUSES) + 2]
    header, *body = ([cell.strip() for cell in row] for row in rows)
    targets = header[1:]
    assert targets == list(TASK_STATUSES)
    table = {row[0]: dict(zip(targets, row[1:], strict=True)) for row in body}
    assert set(table["*(new)*"].values()) == {"yes"}
    for old in TASK_STATUSES:
        for new in TASK_STATUSES:
            assert table[old][new] == ("=" if old == new else
                                       "yes" if new in TRANSITIONS[old] else "no"), (old, new)


def test_every_open_status_can_reach_every_closed_one() -> None:
    for start in OPEN_STATUSES:
        reached, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()] - reached:
                reached.add(nxt)
                frontier.append(nxt)
        # a referral is rejected only while it is requested (SPEC §14)
        assert reached >= CLOSED_STATUSES - {"rejected"}
        assert ("rejected" in reached) is (start == "requested")


def test_going_back_to_requested_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="from 'in-progress' to 'requested'"):
        check_transition("in-progress", "requested")


@given(statuses)
def test_creation_accepts_every_status(status: str) -> None:
    check_transition(None, status)


@pytest.mark.parametrize(("old", "new"), [
    (None, "draft"), ("requested", "entered-in-error"), ("bogus", "completed"),
])
def test_unknown_statuses_are_refused(old: str | None, new: str) -> None:
    with pytest.raises(InvalidTransition, match="not a démarche status"):
        check_transition(old, new)


def test_is_closed() -> None:
    assert [s for s in TASK_STATUSES if is_closed(s)] == ["rejected", "completed", "cancelled",
                                                          "failed"]
    assert not is_closed(None)


# -- business status ----------------------------------------------------------------------

@pytest.mark.parametrize("code", BUSINESS_STATUSES)
def test_business_status_from_the_value_set(code: str) -> None:
    check_business_status({"businessStatus": {"coding": [{"system": BUSINESS_STATUS_SYSTEM,
                                                           "code": code}]}})


@pytest.mark.parametrize("concept", [
    {"coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": "lost-in-the-mail"}]},
    {"coding": [{"system": "http://example.org", "code": "appointment-set"}]},
    {"text": "waiting"},
    "appointment-set",
])
def test_business_status_outside_the_value_set(concept: object) -> None:
    with pytest.raises(InvalidBusinessStatus) as caught:
        check_business_status({"businessStatus": concept})
    assert caught.value.expression == ["Task.businessStatus"]


def test_business_statuses_match_the_code_system_in_schemas() -> None:
    path = (Path(__file__).parents[3] / "schemas" / "definitions"
            / "CodeSystem-demarche-business-status.json")
    code_system = json.loads(path.read_text(encoding="utf-8"))
    assert code_system["url"] == BUSINESS_STATUS_SYSTEM
    assert [c["code"] for c in code_system["concept"]] == list(BUSINESS_STATUSES)


def test_no_business_status_is_fine() -> None:
    check_business_status({"status": "requested"})


# -- reopening ----------------------------------------------------------------------------

def demarche(task_id: str | None = "t1", status: str = "completed", **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task", "status": status, "intent": "order",
        "code": {"coding": [{"system": DEMARCHE_TYPE_SYSTEM, "code": "cpas-support"}]},
        "for": {"reference": "Patient/p1"},
        "owner": {"reference": "Organization/cpas"},
        "requester": {"reference": "Practitioner/sw"},
        "businessStatus": {"coding": [{"system": BUSINESS_STATUS_SYSTEM,
                                       "code": "decision-negative"}]},
        "executionPeriod": {"start": "2026-01-05", "end": "2026-02-01"},
        **extra,
    }
    if task_id:
        task["id"] = task_id
    return task


@pytest.mark.parametrize("status", sorted(CLOSED_STATUSES))
def test_reopening_links_the_closed_demarche(status: str) -> None:
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    old = demarche(status=status)
    new = reopening(old, at)
    assert new["status"] == "requested"
    assert new["partOf"] == [{"reference": "Task/t1"}]
    assert new["authoredOn"] == "2026-03-02T09:30:00+00:00"
    for key in ("intent", "code", "for", "owner", "requester"):
        assert new[key] == old[key]
    assert "businessStatus" not in new
    assert "executionPeriod" not in new
    assert "id" not in new
    assert old["status"] == status  # history untouched
    Task.model_validate(new)
    assert validate(new) == []
    check_transition(None, new["status"])


@pytest.mark.parametrize("status", sorted(OPEN_STATUSES))
def test_an_open_demarche_is_not_reopened(status: str) -> None:
    with pytest.raises(InvalidTransition, match="Only a closed démarche"):
        reopening(demarche(status=status), datetime(2026, 3, 2, tzinfo=UTC))


def test_reopening_needs_an_id_and_an_aware_time() -> None:
    with pytest.raises(InvalidTransition, match="no id"):
        reopening(demarche(task_id=None), datetime(2026, 3, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        reopening(demarche(), datetime(2026, 3, 2))


# -- timeline -----------------------------------------------------------------------------

def test_timeline_order() -> None:
    tasks: list[dict[str, Any]] = [
        {"id": "undated-b"},
        {"id": "march", "executionPeriod": {"start": "2026-03"}},
        {"id": "authored", "authoredOn": "2026-03-01T10:30:00+01:00"},  # 09:30 UTC
        {"id": "paris", "executionPeriod": {"start": "2026-03-01T10:00:00+02:00"}},  # 08:00 UTC
        {"id": "utc", "executionPeriod": {"start": "2026-03-01T09:00:00Z"},
         "authoredOn": "2025-01-01"},  # executionPeriod.start wins over authoredOn
        {"id": "undated-a", "executionPeriod": {"end": "2026-01-01"}},
        {"id": "same-b", "authoredOn": "2026-02-01"},
        {"id": "same-a", "authoredOn": "2026-02-01"},
    ]
    assert [t["id"] for t in timeline(tasks)] == [
        "same-a", "same-b", "march", "paris", "utc", "authored", "undated-a", "undated-b"]


def test_a_partial_date_counts_from_its_first_instant_in_brussels() -> None:
    # 2026-03 begins at 2026-02-28T23:00Z, so it sorts before 23:30Z on the 28th.
    tasks = [{"id": "late-feb", "authoredOn": "2026-02-28T23:30:00Z"},
             {"id": "march", "authoredOn": "2026-03"}]
    assert [t["id"] for t in timeline(tasks)] == ["march", "late-feb"]


dates = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                     timezones=st.sampled_from([UTC]))


@st.composite
def tasks_strategy(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True), unique=True,
                        max_size=8))
    tasks = []
    for task_id in ids:
        task: dict[str, Any] = {"resourceType": "Task", "id": task_id}
        if draw(st.booleans()):
            task["authoredOn"] = draw(dates).isoformat()
        if draw(st.booleans()):
            task["executionPeriod"] = {"start": draw(dates).date().isoformat()}
        tasks.append(task)
    return tasks


@given(tasks_strategy(), st.randoms(use_true_random=False))
def test_timeline_is_a_sorted_permutation_whatever_the_input_order(
        tasks: list[dict[str, Any]], rnd: Any) -> None:
    shuffled = list(tasks)
    rnd.shuffle(shuffled)
    result = timeline(shuffled)
    assert result == timeline(tasks)
    assert sorted(t["id"] for t in result) == sorted(t["id"] for t in tasks)
    dated = [t for t in result if "authoredOn" in t or "executionPeriod" in t]
    assert result[:len(dated)] == dated  # undated last
    times = [start_of(t.get("executionPeriod", {}).get("start") or t["authoredOn"])
             for t in dated]
    assert times == sorted(times)
