"""PKCS#11 specifics, against a real SoftHSM2 token (see conftest.py)."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Protocol

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass

from dossier.crypto import (
    KeyUnavailable,
    LocalFileKeyProvider,
    Pkcs11KeyProvider,
    WrappedKey,
    provider_from_settings,
    rewrap_all,
)


class HsmToken(Protocol):
    """What the ``softhsm_token`` fixture of conftest.py gives."""

    lib_path: str
    label: str
    pin: str


@pytest.fixture
def key_label() -> str:
    return f"kek-{uuid.uuid4().hex[:12]}"


def test_keks_on_the_token_are_sensitive_and_never_extractable(
        softhsm_token: HsmToken, key_label: str) -> None:
    with Pkcs11KeyProvider(softhsm_token.lib_path, softhsm_token.label, softhsm_token.pin,
                           key_label=key_label) as provider:
        provider.rotate()
        token = pkcs11.lib(softhsm_token.lib_path).get_token(token_label=softhsm_token.label)
        with token.open() as session:  # shares the provider's login
            labels = [f"{key_label}:1", f"{key_label}:2", f"{key_label}:blind-index"]
            for label in labels:
                key = session.get_key(ObjectClass.SECRET_KEY, label=label)
                assert key[Attribute.SENSITIVE] is True
                assert key[Attribute.EXTRACTABLE] is False
                assert key[Attribute.NEVER_EXTRACTABLE] is True
                with pytest.raises(pkcs11.AttributeSensitive):
                    key[Attribute.VALUE]
            # the unwrap step leaves no copy of a data key on the token
            assert len(list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))) \
                >= len(labels)
            provider.unwrap(*provider.wrap(secrets.token_bytes(32)))
            leftovers = [o for o in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
                         if not o[Attribute.TOKEN]]
            assert leftovers == []


def test_an_unknown_token_label_is_unavailable(softhsm_token: HsmToken) -> None:
    with pytest.raises(KeyUnavailable, match="no single PKCS#11 token"):
        Pkcs11KeyProvider(softhsm_token.lib_path, "no-such-token", softhsm_token.pin)


def test_a_missing_library_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailable, match="cannot load the PKCS#11 library"):
        Pkcs11KeyProvider(str(tmp_path / "nope.so"), "t", "1")


def test_a_wrong_pin_is_unavailable(softhsm_token: HsmToken) -> None:
    with pytest.raises(KeyUnavailable, match="PinIncorrect"):
        Pkcs11KeyProvider(softhsm_token.lib_path, softhsm_token.label, "0000",
                          key_label=f"kek-{uuid.uuid4().hex[:12]}")


def test_key_labels_must_not_contain_the_id_separator(softhsm_token: HsmToken) -> None:
    with pytest.raises(ValueError, match="key_label"):
        Pkcs11KeyProvider(softhsm_token.lib_path, softhsm_token.label, softhsm_token.pin,
                          key_label="a:b")


def test_settings_build_the_pkcs11_provider(softhsm_token: HsmToken, tmp_path: Path,
                                            key_label: str) -> None:
    provider = provider_from_settings(
        "pkcs11", tmp_path, lib_path=softhsm_token.lib_path,
        token_label=softhsm_token.label, pin=softhsm_token.pin, key_label=key_label)
    try:
        assert isinstance(provider, Pkcs11KeyProvider)
        assert provider.current_kek_id() == f"pkcs11:{key_label}:1"
        assert not (tmp_path / "keys").exists()  # nothing written to the data directory
    finally:
        provider.close()


def test_migrating_from_key_files_to_the_hsm(softhsm_token: HsmToken, tmp_path: Path,
                                             key_label: str) -> None:
    local = LocalFileKeyProvider(tmp_path)
    deks = [secrets.token_bytes(32) for _ in range(3)]
    stored = [WrappedKey(*local.wrap(d)) for d in deks]
    with Pkcs11KeyProvider(softhsm_token.lib_path, softhsm_token.label, softhsm_token.pin,
                           key_label=key_label) as hsm:
        moved = rewrap_all(hsm, stored, source=local)
        assert {k.kek_id for k in moved} == {hsm.current_kek_id()}
        assert [hsm.unwrap(k.kek_id, k.wrapped) for k in moved] == deks


def test_the_session_is_reopened_after_it_was_lost(softhsm_token: HsmToken,
                                                   key_label: str) -> None:
    with Pkcs11KeyProvider(softhsm_token.lib_path, softhsm_token.label, softhsm_token.pin,
                           key_label=key_label) as provider:
        kek_id, wrapped = provider.wrap(b"\5" * 32)
        provider._drop_session()  # as after a token restart
        assert provider.unwrap(kek_id, wrapped) == b"\5" * 32
