"""Choosing a key provider by name, and plugging in another one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dossier.crypto import (
    KeyProvider,
    LocalFileKeyProvider,
    provider_from_settings,
    register_provider,
)
from dossier.crypto import providers as providers_module


def test_local_is_built_in_the_data_directory(tmp_path: Path) -> None:
    provider = provider_from_settings("local", tmp_path)
    assert isinstance(provider, LocalFileKeyProvider)
    assert (tmp_path / "keys" / "kek-000001.key").exists()


def test_unknown_kinds_and_options_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown key provider 'vault'; known: local, pkcs11"):
        provider_from_settings("vault", tmp_path)
    with pytest.raises(ValueError, match="takes no options"):
        provider_from_settings("local", tmp_path, pin="1")
    with pytest.raises(ValueError, match="needs pin, token_label"):
        provider_from_settings("pkcs11", tmp_path, lib_path="/x.so", token_label="", pin=None)
    with pytest.raises(ValueError, match="unknown pkcs11 options"):
        provider_from_settings("pkcs11", tmp_path, lib_path="/x.so", token_label="t", pin="1",
                               slot=0)


def test_another_provider_plugs_in_by_name(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers_module, "_FACTORIES", dict(providers_module._FACTORIES))
    seen: dict[str, Any] = {}

    def factory(data_dir: Path, **options: Any) -> KeyProvider:
        seen.update(options, data_dir=data_dir)
        return LocalFileKeyProvider(data_dir / "kms-cache")

    register_provider("kms", factory)
    provider = provider_from_settings("kms", tmp_path, key_arn="arn:aws:kms:eu-west-1:1:key/x")
    assert isinstance(provider, KeyProvider)
    assert seen == {"key_arn": "arn:aws:kms:eu-west-1:1:key/x", "data_dir": tmp_path}
