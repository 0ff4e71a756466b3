"""FieldCipher: any resource in, same resource out; any misplaced or altered token refused."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.patient import Patient
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dossier.crypto import (
    DecryptionError,
    FieldCipher,
    KeyDestroyed,
    LocalFileKeyProvider,
    WrappedKey,
    associated_data,
)
from dossier.crypto.fields import NEVER_SEALED

PATIENT_PATHS = ["identifier", "name", "telecom", "gender", "birthDate", "address"]  # schemas
CTX: dict[str, Any] = {"patient_id": "p1", "resource_type": "Patient", "resource_id": "p1",
                       "version": "1"}

# -- strategies -------------------------------------------------------------------------
json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
element_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(
    lambda n: n not in NEVER_SEALED and "." not in n)
fhir_ids = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)
versions = st.integers(1, 10**6).map(str)


@st.composite
def resources(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A JSON-like resource and the top-level elements to seal."""
    body = draw(st.dictionaries(element_names, json_values, max_size=8))
    resource = {"resourceType": "Patient", "id": "p1", **body}
    paths = draw(st.lists(element_names | st.sampled_from(sorted(body) or ["x"]), max_size=6))
    return resource, paths


@st.composite
def sealed_resources(draw: st.DrawFn, min_sealed: int = 1) -> tuple[dict[str, Any],
                                                                    dict[str, str], bytes]:
    names = draw(st.lists(element_names, min_size=min_sealed, max_size=5, unique=True))
    resource: dict[str, Any] = {"resourceType": "Patient", "id": "p1"}
    resource.update({n: draw(json_values) for n in names})
    dek = draw(st.binary(min_size=32, max_size=32))
    clear, sealed = _cipher().seal(resource, names, dek, **CTX)
    return clear, sealed, dek


words = st.text(st.characters(categories=["L"]), min_size=1, max_size=20)


@st.composite
def fhir_patients(draw: st.DrawFn) -> dict[str, Any]:
    """A valid FHIR R4 Patient with every element §7 names as encrypted."""
    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": draw(fhir_ids),
        "identifier": [{"system": "https://www.ehealth.fgov.be/standards/fhir/core/"
                                  "NamingSystem/ssin",
                        "value": draw(st.from_regex(r"[0-9]{11}", fullmatch=True))}],
        "name": [{"family": draw(words), "given": draw(st.lists(words, min_size=1, max_size=3))}],
        "birthDate": draw(st.dates()).isoformat(),
        "gender": draw(st.sampled_from(["male", "female", "other", "unknown"])),
        "telecom": [{"system": "phone", "value": draw(st.from_regex(r"\+32[0-9]{8,9}",
                                                                   fullmatch=True))}],
        "address": [{"line": [draw(words)], "city": draw(words), "postalCode": "1000"}],
        "active": draw(st.booleans()),
    }
    Patient.model_validate(patient)  # the generator makes only valid resources
    return patient


class _NoProvider:
    """FieldCipher's provider is only used for data keys; these tests pass DEKs directly."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"provider.{name} should not be called")


def _cipher() -> FieldCipher:
    return FieldCipher(_NoProvider())


# -- round trips ------------------------------------------------------------------------
@given(case=resources(), dek=st.binary(min_size=32, max_size=32), version=versions)
def test_any_resource_comes_back_equal(case: tuple[dict[str, Any], list[str]], dek: bytes,
                                       version: str) -> None:
    resource, paths = case
    ctx = {**CTX, "version": version}
    clear, sealed = _cipher().seal(resource, paths, dek, **ctx)
    assert set(sealed) == set(paths) & set(resource)
    assert not set(sealed) & set(clear)
    assert set(clear) | set(sealed) == set(resource)
    opened = _cipher().open(clear, sealed, dek, **ctx)
    assert opened == resource
    assert json.dumps(opened, sort_keys=True) == json.dumps(resource, sort_keys=True)


@settings(max_examples=50)
@given(patient=fhir_patients(), dek=st.binary(min_size=32, max_size=32))
def test_any_fhir_patient_comes_back_equal_and_valid(patient: dict[str, Any],
                                                     dek: bytes) -> None:
    ctx = {**CTX, "resource_id": patient["id"]}
    clear, sealed = _cipher().seal(patient, PATIENT_PATHS, dek, **ctx)
    assert sorted(sealed) == sorted(PATIENT_PATHS)
    stored = json.loads(json.dumps(clear))  # what the database hands back
    opened = _cipher().open(stored, sealed, dek, **ctx)
    assert opened == patient
    Patient.model_validate(opened)
    for element in PATIENT_PATHS:  # nothing of the sealed values is left in clear
        assert json.dumps(patient[element], ensure_ascii=False)[1:-1] not in json.dumps(
            clear, ensure_ascii=False)


def test_sealing_twice_gives_different_tokens() -> None:
    dek = secrets.token_bytes(32)
    resource = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}
    first = _cipher().seal(resource, ["birthDate"], dek, **CTX)[1]["birthDate"]
    second = _cipher().seal(resource, ["birthDate"], dek, **CTX)[1]["birthDate"]
    assert first != second  # fresh random nonce per element


def test_token_lengths_hide_short_differences() -> None:
    dek = secrets.token_bytes(32)
    short = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Li"}]}
    long = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Vandenberghe"}]}
    token_short = _cipher().seal(short, ["name"], dek, **CTX)[1]["name"]
    token_long = _cipher().seal(long, ["name"], dek, **CTX)[1]["name"]
    assert len(token_short) == len(token_long)


def test_token_layout_is_version_nonce_ciphertext() -> None:
    dek = secrets.token_bytes(32)
    resource = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}
    token = _cipher().seal(resource, ["birthDate"], dek, **CTX)[1]["birthDate"]
    assert "=" not in token
    blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert blob[0] == 1
    assert len(blob) == 1 + 12 + 32 + 16  # "1950-01-01" padded to 32 bytes, plus the GCM tag


# -- failure properties -----------------------------------------------------------------
def _refused(clear: dict[str, Any], sealed: dict[str, str], dek: bytes,
             **ctx: Any) -> DecryptionError:
    with pytest.raises(DecryptionError) as caught:
        _cipher().open(clear, sealed, dek, **ctx)
    error = caught.value
    assert type(error) is DecryptionError
    assert str(error) == "decryption failed"  # one opaque message, whatever went wrong
    assert error.__cause__ is None  # and no chained detail shows in a traceback:
    assert error.__context__ is None or error.__suppress_context__
    return error


@given(case=sealed_resources(), other=fhir_ids)
def test_a_token_moved_to_another_patient_is_refused(
        case: tuple[dict[str, Any], dict[str, str], bytes], other: str) -> None:
    clear, sealed, dek = case
    assume(other != CTX["patient_id"])
    _refused(clear, sealed, dek, **{**CTX, "patient_id": other})


@given(case=sealed_resources(), other=fhir_ids,
       kind=st.sampled_from(["Patient", "RelatedPerson", "Practitioner"]))
def test_a_token_moved_to_another_resource_is_refused(
        case: tuple[dict[str, Any], dict[str, str], bytes], other: str, kind: str) -> None:
    clear, sealed, dek = case
    assume((kind, other) != ("Patient", CTX["resource_id"]))
    _refused(clear, sealed, dek, **{**CTX, "resource_type": kind, "resource_id": other})


@given(case=sealed_resources(), version=versions)
def test_a_token_moved_to_another_version_is_refused(
        case: tuple[dict[str, Any], dict[str, str], bytes], version: str) -> None:
    clear, sealed, dek = case
    assume(version != CTX["version"])
    _refused(clear, sealed, dek, **{**CTX, "version": version})


@given(case=sealed_resources(min_sealed=2), data=st.data())
def test_tokens_swapped_between_elements_are_refused(
        case: tuple[dict[str, Any], dict[str, str], bytes], data: st.DataObject) -> None:
    clear, sealed, dek = case
    a, b = data.draw(st.lists(st.sampled_from(sorted(sealed)), min_size=2, max_size=2,
                              unique=True))
    swapped = {**sealed, a: sealed[b], b: sealed[a]}
    _refused(clear, swapped, dek, **CTX)


@given(case=sealed_resources(), name=element_names)
def test_a_token_renamed_to_another_element_is_refused(
        case: tuple[dict[str, Any], dict[str, str], bytes], name: str) -> None:
    clear, sealed, dek = case
    element = sorted(sealed)[0]
    assume(name not in sealed)
    moved = {k: v for k, v in sealed.items() if k != element} | {name: sealed[element]}
    _refused(clear, moved, dek, **CTX)


@given(case=sealed_resources(), wrong=st.binary(min_size=32, max_size=32))
def test_the_wrong_data_key_is_refused(case: tuple[dict[str, Any], dict[str, str], bytes],
                                       wrong: bytes) -> None:
    clear, sealed, dek = case
    assume(wrong != dek)
    _refused(clear, sealed, wrong, **CTX)


@given(case=sealed_resources(), data=st.data())
def test_a_flipped_bit_anywhere_in_a_token_is_refused(
        case: tuple[dict[str, Any], dict[str, str], bytes], data: st.DataObject) -> None:
    clear, sealed, dek = case
    element = data.draw(st.sampled_from(sorted(sealed)))
    token = sealed[element]
    blob = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    position = data.draw(st.integers(0, len(blob) - 1))
    blob[position] ^= 1 << data.draw(st.integers(0, 7))
    tampered = base64.urlsafe_b64encode(bytes(blob)).rstrip(b"=").decode()
    _refused(clear, {**sealed, element: tampered}, dek, **CTX)


@given(case=sealed_resources(), data=st.data())
def test_an_edited_token_string_is_refused(
        case: tuple[dict[str, Any], dict[str, str], bytes], data: st.DataObject) -> None:
    clear, sealed, dek = case
    element = data.draw(st.sampled_from(sorted(sealed)))
    token = sealed[element]
    edit = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
    at = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.characters(codec="utf-8"))
    if edit == "replace":
        assume(char != token[at])
        tampered = token[:at] + char + token[at + 1:]
    elif edit == "insert":
        tampered = token[:at] + char + token[at:]
    elif edit == "delete":
        tampered = token[:at] + token[at + 1:]
    else:
        tampered = token[:at]
    _refused(clear, {**sealed, element: tampered}, dek, **CTX)


@pytest.mark.parametrize("token", [None, 42, b"AQ", "", "!!!!", "AQ==", "A" * 5,
                                   "A" * 59 + "\n", "A" * 59 + "="])
def test_malformed_tokens_are_refused(token: Any) -> None:
    _refused({"resourceType": "Patient"}, {"name": token}, secrets.token_bytes(32), **CTX)


def test_an_element_both_clear_and_sealed_is_refused() -> None:
    dek = secrets.token_bytes(32)
    resource = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}
    clear, sealed = _cipher().seal(resource, ["birthDate"], dek, **CTX)
    _refused({**clear, "birthDate": "2000-01-01"}, sealed, dek, **CTX)


def test_an_unknown_format_version_is_refused() -> None:
    dek = secrets.token_bytes(32)
    resource = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}
    clear, sealed = _cipher().seal(resource, ["birthDate"], dek, **CTX)
    blob = bytearray(base64.urlsafe_b64decode(sealed["birthDate"] + "=="))
    blob[0] = 2
    token = base64.urlsafe_b64encode(bytes(blob)).rstrip(b"=").decode()
    _refused(clear, {"birthDate": token}, dek, **CTX)


# -- what seal refuses ------------------------------------------------------------------
@pytest.mark.parametrize("paths", [["id"], ["resourceType"], ["meta"], ["name.family"], [""]])
def test_routing_elements_and_nested_paths_are_not_sealed(paths: list[str]) -> None:
    resource = {"resourceType": "Patient", "id": "p1", "meta": {}, "name": []}
    with pytest.raises(ValueError, match="top-level"):
        _cipher().seal(resource, paths, secrets.token_bytes(32), **CTX)


@pytest.mark.parametrize("override", [{"resource_type": "RelatedPerson"}, {"resource_id": "p2"}])
def test_the_context_must_match_the_resource(override: dict[str, str]) -> None:
    resource = {"resourceType": "Patient", "id": "p1", "name": []}
    with pytest.raises(ValueError, match="differs"):
        _cipher().seal(resource, ["name"], secrets.token_bytes(32), **{**CTX, **override})


def test_non_finite_numbers_are_not_sealed() -> None:
    resource = {"resourceType": "Patient", "id": "p1", "extension": [float("nan")]}
    with pytest.raises(ValueError, match="JSON"):
        _cipher().seal(resource, ["extension"], secrets.token_bytes(32), **CTX)


def test_integer_versions_bind_like_their_text() -> None:
    dek = secrets.token_bytes(32)
    resource = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}
    clear, sealed = _cipher().seal(resource, ["birthDate"], dek, **{**CTX, "version": 3})
    assert _cipher().open(clear, sealed, dek, **{**CTX, "version": "3"}) == resource


# -- data keys and erasure --------------------------------------------------------------
class _CountingProvider(LocalFileKeyProvider):
    unwraps = 0

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        self.unwraps += 1
        return super().unwrap(kek_id, wrapped)


def test_a_data_key_is_unwrapped_once_per_request_and_forgotten_after(tmp_path: Path) -> None:
    provider = _CountingProvider(tmp_path)
    dek, stored = FieldCipher(provider).new_data_key()
    with FieldCipher(provider) as cipher:
        assert cipher.data_key("p1", stored) == dek
        assert cipher.data_key("p1", stored) == dek
        assert provider.unwraps == 1
    assert cipher.data_key("p1", stored) == dek  # closed: unwrapped again
    assert provider.unwraps == 2


def test_new_data_keys_are_random_and_wrapped(tmp_path: Path) -> None:
    cipher = FieldCipher(LocalFileKeyProvider(tmp_path))
    (dek1, wk1), (dek2, wk2) = cipher.new_data_key(), cipher.new_data_key()
    assert len(dek1) == 32
    assert dek1 != dek2
    assert isinstance(wk1, WrappedKey)
    assert wk1.wrapped != wk2.wrapped
    assert dek1 not in wk1.wrapped
    assert "wrapped=<40 bytes>" in repr(wk1)


def test_erasure_makes_every_sealed_element_unreadable(tmp_path: Path) -> None:
    provider = LocalFileKeyProvider(tmp_path)
    cipher = FieldCipher(provider)
    dek, _stored = cipher.new_data_key()
    resource = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Peeters"}]}
    clear, sealed = cipher.seal(resource, ["name"], dek, **CTX)
    cipher.close()
    del dek, _stored  # $erase: the patient_keys row is deleted

    with FieldCipher(provider) as after, pytest.raises(KeyDestroyed) as caught:
        after.data_key("p1", None)
    assert isinstance(caught.value, DecryptionError)
    assert "Peeters" not in str(caught.value)
    other_dek, _ = FieldCipher(provider).new_data_key()  # no other key opens it
    _refused(clear, sealed, other_dek, **CTX)


@given(parts=st.lists(st.text(), min_size=4, max_size=4), version=st.integers() | st.text())
def test_associated_data_is_the_compact_json_array(parts: list[str], version: int | str) -> None:
    patient_id, resource_type, resource_id, element = parts
    expected = json.dumps(["dossier/fle/1", patient_id, resource_type, resource_id, str(version),
                           element], separators=(",", ":"), ensure_ascii=True).encode("ascii")
    assert associated_data(patient_id=patient_id, resource_type=resource_type,
                           resource_id=resource_id, version=version, element=element) == expected


def test_a_token_with_altered_unused_bits_is_refused() -> None:
    dek = secrets.token_bytes(32)
    resource = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}
    clear, sealed = _cipher().seal(resource, ["birthDate"], dek, **CTX)
    token = sealed["birthDate"]
    assert len(token) % 4 == 2  # 61 bytes: the last character carries 4 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(token + "==")
    _refused(clear, {"birthDate": twin}, dek, **CTX)
