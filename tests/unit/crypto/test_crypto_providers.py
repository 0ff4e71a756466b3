"""One conformance suite for every KeyProvider (local key file and PKCS#11 on SoftHSM2)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dossier.crypto import (
    CryptoError,
    DecryptionError,
    FieldCipher,
    KeyProvider,
    KeyUnavailable,
    WrappedKey,
    rewrap_all,
)

ProviderFactory = Callable[[], KeyProvider]
deks = st.binary(min_size=32, max_size=32)
per_provider = settings(max_examples=25, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_implements_the_protocol(provider: KeyProvider) -> None:
    assert isinstance(provider, KeyProvider)
    assert provider.kek_ids() == [provider.current_kek_id()]


@per_provider
@given(dek=deks)
def test_wrap_then_unwrap_gives_the_dek_back(provider: KeyProvider, dek: bytes) -> None:
    kek_id, wrapped = provider.wrap(dek)
    assert kek_id == provider.current_kek_id()
    assert dek not in wrapped
    assert provider.unwrap(kek_id, wrapped) == dek


@per_provider
@given(dek=deks, data=st.data())
def test_a_flipped_bit_in_a_wrapped_key_is_refused(provider: KeyProvider, dek: bytes,
                                                   data: st.DataObject) -> None:
    kek_id, wrapped = provider.wrap(dek)
    position = data.draw(st.integers(0, len(wrapped) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = bytearray(wrapped)
    tampered[position] ^= 1 << bit
    with pytest.raises(DecryptionError):
        provider.unwrap(kek_id, bytes(tampered))


@pytest.mark.parametrize("change", [lambda w: w[:-8], lambda w: w + b"\0" * 8, lambda w: b""])
def test_a_resized_wrapped_key_is_refused(provider: KeyProvider,
                                          change: Callable[[bytes], bytes]) -> None:
    kek_id, wrapped = provider.wrap(secrets.token_bytes(32))
    with pytest.raises(DecryptionError):
        provider.unwrap(kek_id, change(wrapped))


@pytest.mark.parametrize("bad_id", ["local:999", "pkcs11:nope:1", "kms:1", "", "local:x"])
def test_an_unknown_kek_id_is_unavailable(provider: KeyProvider, bad_id: str) -> None:
    _, wrapped = provider.wrap(secrets.token_bytes(32))
    with pytest.raises(KeyUnavailable):
        provider.unwrap(bad_id, wrapped)


@pytest.mark.parametrize("dek", [b"", b"\0" * 16, b"\0" * 33])
def test_only_32_byte_data_keys_are_wrapped(provider: KeyProvider, dek: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        provider.wrap(dek)


def test_the_store_outlives_the_provider_object(provider_factory: ProviderFactory) -> None:
    first = provider_factory()
    dek = secrets.token_bytes(32)
    kek_id, wrapped = first.wrap(dek)
    index_key = first.blind_index_key()
    first.close()
    second = provider_factory()
    assert second.current_kek_id() == kek_id
    assert second.unwrap(kek_id, wrapped) == dek
    assert second.blind_index_key() == index_key


def test_rotation_makes_a_new_current_kek_and_old_ones_still_unwrap(
        provider: KeyProvider) -> None:
    dek = secrets.token_bytes(32)
    old_id, old_wrapped = provider.wrap(dek)
    new_id = provider.rotate()
    assert new_id != old_id
    assert provider.current_kek_id() == new_id
    assert provider.kek_ids() == [old_id, new_id]
    assert provider.unwrap(old_id, old_wrapped) == dek
    kek_id, wrapped = provider.wrap(dek)
    assert kek_id == new_id
    assert wrapped != old_wrapped
    assert provider.unwrap(kek_id, wrapped) == dek


def test_rotation_is_seen_by_another_provider_on_the_same_store(
        provider_factory: ProviderFactory) -> None:
    server, operator = provider_factory(), provider_factory()
    new_id = operator.rotate()
    assert server.current_kek_id() == new_id
    assert server.wrap(secrets.token_bytes(32))[0] == new_id


def test_rewrap_all_moves_every_key_to_the_current_kek(provider: KeyProvider) -> None:
    dek_list = [secrets.token_bytes(32) for _ in range(5)]
    before = [WrappedKey(*provider.wrap(d)) for d in dek_list[:3]]
    old_id = provider.current_kek_id()
    new_id = provider.rotate()
    before += [WrappedKey(*provider.wrap(d)) for d in dek_list[3:]]

    after = rewrap_all(provider, before)

    assert [k.kek_id for k in after] == [new_id] * 5
    assert [provider.unwrap(k.kek_id, k.wrapped) for k in after] == dek_list
    assert after[3:] == before[3:]  # already current: untouched
    provider.retire(old_id)  # safe now: nothing needs the old KEK
    assert provider.kek_ids() == [new_id]
    assert [provider.unwrap(k.kek_id, k.wrapped) for k in after] == dek_list
    with pytest.raises(KeyUnavailable):
        provider.unwrap(before[0].kek_id, before[0].wrapped)


def test_the_current_kek_cannot_be_retired(provider: KeyProvider) -> None:
    with pytest.raises(ValueError, match="current"):
        provider.retire(provider.current_kek_id())
    assert len(provider.kek_ids()) == 1


def test_the_blind_index_key_is_stable_and_not_rotated(provider: KeyProvider) -> None:
    key = provider.blind_index_key()
    assert len(key) == 32
    provider.rotate()
    assert provider.blind_index_key() == key


def test_separate_stores_cannot_read_each_other(provider: KeyProvider, tmp_path_factory:
                                                pytest.TempPathFactory) -> None:
    from dossier.crypto import LocalFileKeyProvider

    other = LocalFileKeyProvider(tmp_path_factory.mktemp("other"))
    kek_id, wrapped = other.wrap(secrets.token_bytes(32))
    with pytest.raises(CryptoError):
        provider.unwrap(kek_id, wrapped)
    assert other.blind_index_key() != provider.blind_index_key()


def test_field_cipher_end_to_end(provider: KeyProvider) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Peeters"}],
               "birthDate": "1950-02-03", "active": True}
    ctx = {"patient_id": "p1", "resource_type": "Patient", "resource_id": "p1", "version": "1"}
    with FieldCipher(provider) as cipher:
        dek, stored = cipher.new_data_key()
        clear, sealed = cipher.seal(patient, ["name", "birthDate"], dek, **ctx)
    provider.rotate()
    (stored,) = rewrap_all(provider, [stored])
    with FieldCipher(provider) as cipher:
        assert cipher.open(clear, sealed, cipher.data_key("p1", stored), **ctx) == patient


def test_the_audit_signing_key_comes_from_the_provider(
        provider_factory: Callable[[], KeyProvider]) -> None:
    """Tree heads are signed with the provider's Ed25519 key (on the token for PKCS#11),
    the same key after a restart and after a KEK rotation."""
    from cryptography.hazmat.primitives import serialization

    from audit.checkpoint import public_jwk

    first = provider_factory()
    signer = first.audit_signer()
    signature = signer.sign(b"dossier.test/audit\n1\n")
    assert len(signature) == 64
    signer.public_key().verify(signature, b"dossier.test/audit\n1\n")
    first.rotate()
    again = provider_factory().audit_signer()
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert again.public_key().public_bytes(*raw) == signer.public_key().public_bytes(*raw)
    assert public_jwk(again.public_key())["kid"] == public_jwk(signer.public_key())["kid"]
    again.public_key().verify(again.sign(b"x"), b"x")


def test_the_hsm_signing_key_never_leaves_the_token(softhsm_token: object) -> None:
    import uuid

    import pkcs11

    from dossier.crypto import Pkcs11KeyProvider

    token = softhsm_token
    with Pkcs11KeyProvider(token.lib_path, token.label, token.pin,  # type: ignore[attr-defined]
                           key_label=f"sig-{uuid.uuid4().hex[:8]}") as provider:
        provider.audit_signer()
        private = provider._find_pair_half(pkcs11.ObjectClass.PRIVATE_KEY)
        assert private[pkcs11.Attribute.SENSITIVE] is True
        assert private[pkcs11.Attribute.EXTRACTABLE] is False
        with pytest.raises(pkcs11.PKCS11Error):
            private[pkcs11.Attribute.VALUE]
