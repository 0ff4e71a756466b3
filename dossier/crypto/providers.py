"""Choosing a key provider from settings; other providers plug in by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dossier.crypto.hsm import Pkcs11KeyProvider
from dossier.crypto.interfaces import KeyProvider
from dossier.crypto.local import LocalFileKeyProvider

ProviderFactory = Callable[..., KeyProvider]


def _local(data_dir: Path, **options: Any) -> KeyProvider:
    if options:
        raise ValueError(f"the local key provider takes no options (got {sorted(options)})")
    return LocalFileKeyProvider(data_dir)


def _pkcs11(data_dir: Path, **options: Any) -> KeyProvider:
    del data_dir  # the keys live on the token
    needed = {"lib_path", "token_label", "pin"}
    missing = needed - {k for k, v in options.items() if v}
    if missing:
        raise ValueError(f"the pkcs11 key provider needs {', '.join(sorted(missing))}")
    unknown = set(options) - needed - {"key_label"}
    if unknown:
        raise ValueError(f"unknown pkcs11 options {sorted(unknown)}")
    return Pkcs11KeyProvider(**options)


_FACTORIES: dict[str, ProviderFactory] = {"local": _local, "pkcs11": _pkcs11}


def register_provider(kind: str, factory: ProviderFactory) -> None:
    """Make ``kind`` usable in settings: ``factory(data_dir, **options) -> KeyProvider``."""
    _FACTORIES[kind] = factory


def provider_from_settings(kind: str, data_dir: Path, **options: Any) -> KeyProvider:
    """Build the configured provider; ValueError names an unknown kind or a missing option."""
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise ValueError(f"unknown key provider {kind!r}; known: {', '.join(sorted(_FACTORIES))}")
    return factory(Path(data_dir), **options)
