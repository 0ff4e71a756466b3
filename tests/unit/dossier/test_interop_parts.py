"""Pure parts of issue 17: merge patch (RFC 7386), subsetting (_summary/_elements) and
Accept negotiation, with hypothesis for their invariants."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dossier.errors import BadRequest, Unprocessable
from dossier.fhir.negotiate import acceptable
from dossier.fhir.patch import merge, patcher
from dossier.fhir.subset import ALWAYS, subset

keys = st.sampled_from(["status", "intent", "code", "for", "note", "a", "b"])
scalars = st.one_of(st.integers(), st.text(max_size=5), st.booleans())
json_values = st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, max_size=3),
                           max_leaves=8)
objects = st.dictionaries(keys, json_values, max_size=5)
patches = st.dictionaries(keys, st.one_of(st.none(), json_values), max_size=5)


@settings(deadline=None)  # a shared machine
@given(objects, patches)
def test_merge_patch_is_idempotent_and_removes_nulls(target: dict[str, Any],
                                                     patch: dict[str, Any]) -> None:
    once = merge(target, patch)
    assert merge(once, patch) == once
    for key, value in patch.items():
        if value is None:
            assert key not in once
        elif not isinstance(value, dict):
            assert once[key] == value


@settings(deadline=None)
@given(objects)
def test_merge_patch_with_itself_changes_nothing(target: dict[str, Any]) -> None:
    assert merge(target, target) == target


TASK = {"resourceType": "Task", "id": "t1", "meta": {"versionId": "2"},
        "status": "in-progress", "intent": "order", "authoredOn": "2027-01-01",
        "code": {"text": "x"}, "for": {"reference": "Patient/p"}}


@settings(deadline=None)  # the first call loads the FHIR definitions
@given(st.sampled_from(["true", "text", "data", None]),
       st.one_of(st.none(), st.lists(keys, max_size=3).map(tuple)))
def test_subset_keeps_identity_and_never_adds(summary: str | None,
                                              elements: tuple[str, ...] | None) -> None:
    out = subset(TASK, summary, elements)
    assert set(out) <= set(TASK) and set(out) >= ALWAYS
    if set(out) != set(TASK):
        assert "SUBSETTED" in {t["code"] for t in out["meta"]["tag"]}
        assert "tag" not in TASK["meta"]  # the stored resource is untouched


def test_summary_true_keeps_summary_and_mandatory_elements() -> None:
    out = subset(TASK, "true", None)
    assert {"status", "intent", "code", "for"} <= set(out)
    assert "authoredOn" not in out  # not a summary element of Task


def test_json_patch_refusals() -> None:
    with pytest.raises(BadRequest):
        patcher("application/json-patch+json", {"op": "add"})
    with pytest.raises(BadRequest):
        patcher("application/json-patch+json", [{"op": "frob", "path": "/a"}])
    apply = patcher("application/json-patch+json",
                    [{"op": "replace", "path": "/missing/deep", "value": 1}])
    with pytest.raises(Unprocessable):
        apply(dict(TASK))
    with pytest.raises(Unprocessable):
        patcher("application/merge-patch+json", {"id": "other"})(dict(TASK))


@pytest.mark.parametrize(("header", "ok"), [
    (None, True), ("", True), ("*/*", True), ("application/fhir+json", True),
    ("application/json;q=0.5, text/html", True),
    ("application/fhir+json; fhirVersion=4.0", True),
    ("application/fhir+xml", False), ("application/xml, text/xml", False),
    ("application/fhir+json; fhirVersion=3.0", False), ("application/json;q=0", False),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
])
def test_accept(header: str | None, ok: bool) -> None:
    assert acceptable(header) is ok
