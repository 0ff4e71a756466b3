"""The pure parts of subscriptions: what a Subscription may ask for, and that what the
server shows and sends are valid FHIR (R4B models) carrying no more than ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from dossier.errors import Unprocessable
from dossier.subscriptions import service as subs

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BASE = "https://dossier.example.be/fhir"


def body(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Subscription", "status": "requested", "reason": "continuity",
            "criteria": subs.TOPIC,
            "channel": {"type": "rest-hook", "endpoint": "https://hub.example/notify",
                        "payload": "application/fhir+json",
                        "header": ["Authorization: Bearer s3cret"]}, **extra}


def test_a_plain_request_is_id_only_for_thirty_days() -> None:
    req = subs.parse_request(body(), NOW, allow_local=False)
    assert req.content == "id-only" and req.filters == ()
    assert req.end == NOW + subs.DEFAULT_LIFETIME
    assert req.headers == ("Authorization: Bearer s3cret",)


def test_without_payload_the_notification_is_empty() -> None:
    req = subs.parse_request(body(channel={"type": "rest-hook",
                                           "endpoint": "https://hub.example/n"}),
                             NOW, allow_local=False)
    assert req.content == "empty"


def test_http_endpoints_only_where_local_delivery_is_allowed() -> None:
    local = body(channel={"type": "rest-hook", "endpoint": "http://127.0.0.1:9/n"})
    with pytest.raises(Unprocessable):
        subs.parse_request(local, NOW, allow_local=False)
    assert subs.parse_request(local, NOW, allow_local=True).endpoint.startswith("http://")


def test_the_shown_resource_is_a_valid_r4_subscription_without_headers() -> None:
    req = subs.parse_request(body(_criteria={"extension": [
        {"url": subs.FILTER_URL, "valueString": "Task?patient=Patient/p1"}]}),
        NOW, allow_local=False)
    shown = subs.resource_of("a" * 32, req, "active", NOW)
    get_fhir_model_class("Subscription").model_validate(shown)
    assert "header" not in shown["channel"] and "s3cret" not in str(shown)
    assert shown["_criteria"]["extension"][0]["valueString"] == "Task?patient=Patient/p1"


@pytest.mark.parametrize("content", ["id-only", "empty"])
def test_notifications_are_valid_history_bundles(content: str) -> None:
    focus = f"{BASE}/Task/t1/_history/2" if content == "id-only" else None
    bundle = subs.notification(BASE, "a" * 32, "active", "event-notification", 7,
                               [(7, NOW, focus, 2)], NOW)
    get_fhir_model_class("Bundle").model_validate(bundle)
    status = bundle["entry"][0]["resource"]
    get_fhir_model_class("Parameters").model_validate(status)
    assert len(bundle["entry"]) == (2 if focus else 1)
    if focus:
        assert bundle["entry"][1]["request"] == {"method": "PUT", "url": "Task/t1"}


def test_the_capability_entry_is_valid() -> None:
    model = get_fhir_model_class("CapabilityStatement")
    model.model_validate({"resourceType": "CapabilityStatement", "status": "active",
                          "date": "2026-11-22", "kind": "instance", "fhirVersion": "4.0.1",
                          "format": ["json"], "rest": [{"mode": "server",
                                                        "resource": [subs.capability_entry()]}]})


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                               max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(subs.FIELDS), "extension", "contact"]),
                       JSONISH, max_size=6))
def test_any_other_input_is_a_clean_422(raw: dict[str, Any]) -> None:
    """Whatever arrives, the answer is a parsed request or a 422 naming an element —
    never another exception."""
    candidate = {**raw, "resourceType": "Subscription"}
    try:
        req = subs.parse_request(candidate, NOW, allow_local=False)
    except Unprocessable:  # a 422 (Unprocessable.status)
        return
    assert candidate["criteria"] == subs.TOPIC
    assert req.endpoint.startswith("https://")
    assert NOW < req.end <= NOW + subs.MAX_LIFETIME


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_headers_never_smuggle_a_line_break_or_a_transport_header(header: str) -> None:
    candidate = body()
    candidate["channel"]["header"] = [header]
    try:
        req = subs.parse_request(candidate, NOW, allow_local=False)
    except Unprocessable:
        return
    name, _, value = req.headers[0].partition(":")
    assert "\r" not in header and "\n" not in header
    assert name.lower() not in subs.RESERVED_HEADERS and value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_filters_name_a_topic_type_and_at_most_a_person(value: str) -> None:
    candidate = body(_criteria={"extension": [{"url": subs.FILTER_URL,
                                               "valueString": value}]})
    try:
        req = subs.parse_request(candidate, NOW, allow_local=False)
    except Unprocessable:
        return
    (kind, patient), = req.filters
    assert kind in subs.TOPIC_TYPES
    assert patient is None or value.endswith(patient)


def test_end_is_capped_and_never_in_the_past() -> None:
    far = subs.parse_request(body(end="2099-01-01T00:00:00Z"), NOW, allow_local=False)
    assert far.end == NOW + subs.MAX_LIFETIME
    with pytest.raises(Unprocessable):
        subs.parse_request(body(end=(NOW - timedelta(seconds=1)).isoformat()), NOW,
                           allow_local=False)
    with pytest.raises(Unprocessable):
        subs.parse_request(body(end="2027-01-01"), NOW, allow_local=False)
