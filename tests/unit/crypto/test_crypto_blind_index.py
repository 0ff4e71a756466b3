"""Keyed blind index: deterministic, normalised, domain-separated, keyed."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dossier.crypto import blind_index, normalise

SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
KEY = bytes(range(32))
texts = st.text(st.characters(codec="utf-8"), max_size=40)
values = texts.filter(lambda v: normalise(v) != "")


def test_known_answer() -> None:
    message = b"dossier/blind-index/v1\x00" + len(SSIN).to_bytes(4, "big") + SSIN.encode() \
        + b"85073003328"
    expected = hmac.new(KEY, message, hashlib.sha256).hexdigest()
    assert blind_index(KEY, SSIN, " 85073003328\n") == expected


@given(system=texts, value=values)
def test_the_index_is_64_hex_and_free_of_the_value(system: str, value: str) -> None:
    index = blind_index(KEY, system, value)
    assert len(index) == 64
    assert int(index, 16) >= 0
    assert blind_index(KEY, system, value) == index


@given(system=texts, value=values, pad=st.sampled_from(["", " ", "\t", "\n ", "\u00a0"]))
def test_surrounding_whitespace_and_unicode_form_do_not_matter(system: str, value: str,
                                                               pad: str) -> None:
    assert blind_index(KEY, pad + system, value + pad) == blind_index(KEY, system, value)


def test_composed_and_decomposed_accents_match() -> None:
    assert blind_index(KEY, "", "Andr\u00e9") == blind_index(KEY, "", "Andre\u0301")


@given(a=st.tuples(texts, values), b=st.tuples(texts, values))
def test_different_pairs_give_different_indexes(a: tuple[str, str], b: tuple[str, str]) -> None:
    assume((normalise(a[0]), normalise(a[1])) != (normalise(b[0]), normalise(b[1])))
    assert blind_index(KEY, *a) != blind_index(KEY, *b)


def test_system_and_value_cannot_trade_characters() -> None:
    assert blind_index(KEY, "urn:a", "1") != blind_index(KEY, "urn:", "a1")
    assert blind_index(KEY, "", "85073003328") != blind_index(KEY, SSIN, "85073003328")


@given(value=values)
def test_another_key_gives_another_index(value: str) -> None:
    assert blind_index(KEY, SSIN, value) != blind_index(secrets.token_bytes(32), SSIN, value)


def test_short_keys_and_empty_values_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        blind_index(b"k" * 31, SSIN, "1")
    with pytest.raises(ValueError, match="value"):
        blind_index(KEY, SSIN, "  ")
