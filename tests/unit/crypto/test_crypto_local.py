"""The local key-file provider: permissions, atomic files, refusal of unsafe stores."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dossier.crypto import KeyUnavailable, LocalFileKeyProvider
from dossier.crypto import local as local_module


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable, to prove we do not rely on it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_key_files_are_0600_in_a_0700_keys_folder(tmp_path: Path) -> None:
    provider = LocalFileKeyProvider(tmp_path / "data")
    provider.rotate()
    keys = tmp_path / "data" / "keys"
    assert _mode(keys) == 0o700
    names = sorted(p.name for p in keys.iterdir())
    assert names == ["blind-index.key", "kek-000001.key", "kek-000002.key"]
    assert all(_mode(keys / n) == 0o600 for n in names)
    assert all((keys / n).stat().st_size == 32 for n in names)


def test_kek_and_blind_index_key_are_different_random_keys(tmp_path: Path) -> None:
    LocalFileKeyProvider(tmp_path)
    keys = tmp_path / "keys"
    kek = (keys / "kek-000001.key").read_bytes()
    assert kek != (keys / "blind-index.key").read_bytes()
    assert kek != (LocalFileKeyProvider(tmp_path / "b").keys_dir / "kek-000001.key").read_bytes()


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    provider = LocalFileKeyProvider(tmp_path)
    provider.rotate()
    assert not [p for p in (tmp_path / "keys").iterdir() if p.name.startswith(".")]


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    LocalFileKeyProvider(tmp_path)
    path = tmp_path / "keys" / "kek-000001.key"
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        local_module._create_once(path, b"\1" * 32)
    assert path.read_bytes() == before


def test_a_concurrent_rotation_takes_the_next_version(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    provider = LocalFileKeyProvider(tmp_path)
    other = LocalFileKeyProvider(tmp_path)
    stale = [[1]]  # our first listing misses the version the other process just wrote
    real_versions = provider._versions
    monkeypatch.setattr(provider, "_versions",
                        lambda: stale.pop() if stale else real_versions())
    assert other.rotate() == "local:2"
    assert provider.rotate() == "local:3"
    assert provider.kek_ids() == ["local:1", "local:2", "local:3"]


def test_a_keys_folder_open_to_others_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir(mode=0o755)
    os.chmod(tmp_path / "keys", 0o755)  # noqa: S103 - the unsafe mode under test
    with pytest.raises(KeyUnavailable, match="chmod 700"):
        LocalFileKeyProvider(tmp_path)


def test_a_key_file_open_to_others_is_refused(tmp_path: Path) -> None:
    provider = LocalFileKeyProvider(tmp_path)
    kek_id, wrapped = provider.wrap(b"\7" * 32)
    os.chmod(tmp_path / "keys" / "kek-000001.key", 0o644)
    with pytest.raises(KeyUnavailable, match="chmod 600"):
        provider.unwrap(kek_id, wrapped)


def test_a_damaged_key_file_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    provider = LocalFileKeyProvider(tmp_path)
    kek_id, wrapped = provider.wrap(b"\7" * 32)
    path = tmp_path / "keys" / "kek-000001.key"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(KeyUnavailable, match="damaged"):
        provider.unwrap(kek_id, wrapped)


def test_wrapping_is_rfc3394_aes_key_wrap(tmp_path: Path) -> None:
    # RFC 3394 §4.6 test vector: 256-bit KEK wrapping 256 bits of key data
    kek = bytes.fromhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
    dek = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
    expected = bytes.fromhex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43B"
                             "FB988B9B7A02DD21")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    local_module._create_once(keys / "kek-000001.key", kek)
    provider = LocalFileKeyProvider(tmp_path)
    assert provider.wrap(dek) == ("local:1", expected)
    assert provider.unwrap("local:1", expected) == dek


def test_retiring_deletes_the_kek_file(tmp_path: Path) -> None:
    provider = LocalFileKeyProvider(tmp_path)
    provider.rotate()
    provider.retire("local:1")
    assert not (tmp_path / "keys" / "kek-000001.key").exists()
    with pytest.raises(KeyUnavailable):
        provider.retire("local:1")
