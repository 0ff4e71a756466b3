"""audit.notify (texts, grouping, retry, signatures) and audit.transport's refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.notify import (
    LANGUAGES,
    Access,
    RetryPolicy,
    access_from_record,
    compose,
    delivery_key,
    group_within,
    language_of,
    proof_path,
    verify_webhook_signature,
    webhook_signature,
)
from audit.transport import DeliveryError, check_webhook_url, post_webhook

WHEN = datetime(2027, 7, 1, 12, 30, tzinfo=UTC)  # 14:30 in Brussels (summer time)


def record(rid: str = "r1", who: str = "Practitioner/7", purpose: str = "TREAT",
           recorded: str = "2027-07-01T12:30:00Z", **agent: Any) -> dict[str, Any]:
    return {"id": rid, "recorded": recorded, "purpose": purpose, "patient": "Patient/1",
            "agent": {"who": who, "role": "practitioner", **agent},
            "events": [{"action": "read", "type": "Patient", "id": "1"},
                       {"action": "search", "type": "Task"},
                       {"action": "read", "type": "Patient", "id": "1"}]}


NAMES = {"Practitioner/7": "Anne Dupont", "Organization/3": "CPAS de Saint-Gilles"}


def test_access_from_record_names_who_what_when() -> None:
    access = access_from_record(record(organizations=["Organization/3"]), names=NAMES,
                                log_index=4, tree_size=10)
    assert access.actor == "Practitioner/7" and access.actor_name == "Anne Dupont"
    assert access.organizations == ("CPAS de Saint-Gilles",)
    assert access.actions == (("read", "Patient"), ("search", "Task"))
    assert access.recorded == WHEN and not access.urgent
    assert proof_path(access) == "/audit/proof/inclusion?index=4&tree_size=10"


def test_a_hub_is_named_by_the_practitioner_it_acts_for() -> None:
    access = access_from_record(record(who="Client/hub1", on_behalf_of="Practitioner/7"),
                                names=NAMES)
    assert access.actor == "Practitioner/7"


@pytest.mark.parametrize(("language", "expected"), [
    ("fr", ["Anne Dupont pour CPAS de Saint-Gilles a consulté votre dossier.",
            "01/07/2027 à 14:30 (heure de Bruxelles): lecture (identité); "
            "recherche (démarches)", "Journal d'accès: https://d.example/fhir/AuditEvent/r1",
            "Preuve d'inclusion: https://d.example/audit/proof/inclusion?index=4&tree_size=10"]),
    ("nl", ["Anne Dupont voor CPAS de Saint-Gilles heeft uw dossier geraadpleegd.",
            "01/07/2027 om 14:30 (Brusselse tijd): inzage (identiteit); opzoeking (stappen)",
            "Toegangslogboek: https://d.example/fhir/AuditEvent/r1"]),
    ("en", ["Anne Dupont for CPAS de Saint-Gilles consulted your dossier.",
            "01/07/2027 at 14:30 (Brussels time): read (identity); search (procedures)",
            "Inclusion proof: https://d.example/audit/proof/inclusion?index=4&tree_size=10"]),
])
def test_texts_in_three_languages(language: str, expected: list[str]) -> None:
    access = access_from_record(record(organizations=["Organization/3"]), names=NAMES,
                                log_index=4, tree_size=10)
    message = compose([access], language, "https://d.example")
    for line in expected:
        assert line in message.text
    assert not message.urgent and message.record_ids == ("r1",)


def test_no_proof_link_before_the_record_is_in_a_signed_head() -> None:
    for index, size in ((None, None), (4, None), (4, 4), (None, 9)):
        access = access_from_record(record(), log_index=index, tree_size=size)
        assert proof_path(access) is None
        assert "proof" not in compose([access], "en").text


def test_break_the_glass_is_urgent_in_every_language() -> None:
    access = access_from_record(record(purpose="BTG"), names=NAMES)
    words = {"fr": "bris de glace", "nl": "break-the-glass", "en": "break-the-glass",
             "es": "romper el cristal"}
    for language in LANGUAGES:
        message = compose([access], language)
        assert message.urgent and words[language] in message.text
        assert message.subject.startswith(("URGENT", "DRINGEND"))


def test_an_urgent_notice_that_is_not_break_the_glass_says_so() -> None:
    access = access_from_record(record(), urgent=True, names=NAMES)  # an assisted consent
    for language in LANGUAGES:
        message = compose([access], language)
        assert message.urgent and not access.emergency
        assert "glass" not in message.text and "glace" not in message.text
        assert "cristal" not in message.text
    assert compose([access], "en").subject == "Your dossier: a professional acted for you"


def test_operators_and_unknown_actors_are_not_named_by_reference() -> None:
    operator = compose([access_from_record(record(who="Operator/dpo"))], "en")
    assert operator.text.startswith("a member of the service's staff consulted")
    assert "Operator/dpo" not in operator.text
    unnamed = compose([access_from_record(record(who="Practitioner/9"))], "en")
    assert unnamed.text.startswith("Practitioner/9 consulted")


def test_a_group_lists_each_consultation() -> None:
    accesses = [access_from_record(record(f"r{i}", recorded=f"2027-07-01T12:3{i}:00Z"),
                                   names=NAMES) for i in (2, 0, 1)]
    message = compose(accesses, "fr")
    assert message.record_ids == ("r0", "r1", "r2")  # in time order
    assert "Anne Dupont a consulté votre dossier 3 fois." in message.text
    for rid in ("r0", "r1", "r2"):
        assert f"/fhir/AuditEvent/{rid}" in message.text
    with pytest.raises(ValueError, match="at least one"):
        compose([], "fr")


def test_language_fallback() -> None:
    assert language_of("nl-BE") == "nl" and language_of("EN") == "en"
    assert language_of("de") == "fr" and language_of(None) == "fr"


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3600)), max_size=40),
       st.integers(0, 900))
def test_grouping_keeps_every_item_once_within_the_window(
        items: list[tuple[str, int]], window: int) -> None:
    indexed = list(enumerate(items))
    groups = group_within(indexed, lambda x: x[1][0],
                          lambda x: WHEN + timedelta(seconds=x[1][1]), timedelta(seconds=window))
    flat = [x for g in groups for x in g]
    assert sorted(flat) == sorted(indexed)
    for group in groups:
        assert len({x[1][0] for x in group}) == 1
        times = [x[1][1] for x in group]
        assert max(times) - min(times) <= window


@given(st.integers(1, 200), st.floats(0, 1))
def test_backoff_grows_is_bounded_and_ends(attempts: int, rand: float) -> None:
    policy = RetryPolicy(max_attempts=8, base_seconds=30, cap_seconds=3600, jitter=0.25)
    delay = policy.delay(attempts, rand)
    assert policy.delay(attempts, 0.0) <= delay <= policy.max_delay(attempts)
    assert delay <= timedelta(seconds=3600 * 1.25)
    assert policy.delay(attempts, 0) <= policy.delay(attempts + 1, 0)
    later = policy.next_attempt(WHEN, attempts, rand)
    assert (later is None) == (attempts >= 8)
    if later is not None:
        assert later == WHEN + delay


def test_backoff_schedule() -> None:
    policy = RetryPolicy(max_attempts=4, base_seconds=10, cap_seconds=35, jitter=0.0)
    assert [policy.delay(n, 0.7).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 35, 35]
    with pytest.raises(ValueError, match="attempts"):
        policy.delay(0, 0.5)


@given(st.binary(max_size=300), st.text(min_size=16, max_size=40),
       st.integers(0, 10**12 - 400))
def test_webhook_signature_round_trip_and_tamper(body: bytes, secret: str, t: int) -> None:
    header = webhook_signature(secret, body, t)
    assert verify_webhook_signature(secret, body, header, now=t + 10)
    assert not verify_webhook_signature(secret, body + b"x", header, now=t)
    assert not verify_webhook_signature(secret + "x", body, header, now=t)
    assert not verify_webhook_signature(secret, body, header, now=t + 301)  # replay window
    moved = header.replace(f"t={t},", f"t={t + 1},")
    assert not verify_webhook_signature(secret, body, moved, now=t)


def test_signature_header_format_and_rotation() -> None:
    header = webhook_signature(b"k" * 32, b"{}", 1700000000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    rotated = f"{header},v1={'0' * 64}"
    assert verify_webhook_signature(b"k" * 32, b"{}", rotated, now=1700000000)
    for bad in (None, "", "v1=abc", "t=x,v1=abc", "t=1700000000"):
        assert not verify_webhook_signature(b"k" * 32, b"{}", bad, now=1700000000)


def test_delivery_key_is_stable_for_a_group() -> None:
    assert delivery_key(["a"]) == "a"
    assert delivery_key(["b", "a"]) == delivery_key(["a", "b"]) != delivery_key(["a", "c"])


def test_webhook_urls_and_private_addresses_are_refused() -> None:
    assert check_webhook_url("https://hooks.example.org/x") == "https://hooks.example.org/x"
    for bad in ("http://hooks.example.org/x", "ftp://x.org", "https://u:p@x.org/",
                "https:///nohost"):
        with pytest.raises(ValueError, match="https"):
            check_webhook_url(bad)
    assert check_webhook_url("http://127.0.0.1:8/x", allow_local=True)
    for target in ("https://127.0.0.1/x", "https://10.0.0.8/x", "https://[::1]/x",
                   "https://169.254.169.254/latest"):
        with pytest.raises(DeliveryError) as caught:
            post_webhook(target, b"{}", "s" * 32, key="k", now=0, timeout=1)
        assert caught.value.permanent and caught.value.reason == "webhook address refused"


def test_access_is_a_value() -> None:
    one = Access("r", WHEN, None, None, (), (("read", "Patient"),))
    assert compose([one], "nl").text.startswith("een dienst heeft uw dossier geraadpleegd.")
