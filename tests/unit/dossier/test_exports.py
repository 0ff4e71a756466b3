"""Sealed bulk-export files: round trip, and named tamper vectors that the reader refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dossier.crypto import DecryptionError
from dossier.exports import files as exports
from dossier.exports.files import SealedWriter, read_sealed

KEY = bytes(range(32))
JOB = "0" * 32


def write(path: Path, lines: list[bytes], key: bytes = KEY, job: str = JOB) -> Path:
    writer = SealedWriter(path, key, job)
    for line in lines:
        writer.write_line(line)
    writer.close()
    return path


def read(path: Path, key: bytes = KEY, job: str = JOB) -> list[bytes]:
    return b"".join(read_sealed(path, key, job)).splitlines()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300).map(
    lambda b: b.replace(b"\n", b" ").replace(b"\r", b" ")), max_size=60))
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, lines: list[bytes]) -> None:
    path = write(tmp_path_factory.mktemp("x") / "Task.ndjson", lines)
    assert read(path) == lines


@pytest.fixture
def sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file of several chunks (small chunk size), mode 0600."""
    monkeypatch.setattr(exports, "CHUNK_BYTES", 64)
    path = write(tmp_path / "Task.ndjson", [b'{"id":"%d"}' % i for i in range(40)])
    assert path.stat().st_mode & 0o777 == 0o600
    return path


def test_many_chunks_round_trip(sealed: Path) -> None:
    assert read(sealed) == [b'{"id":"%d"}' % i for i in range(40)]
    assert b'"id"' not in sealed.read_bytes()


def chunks(raw: bytes) -> list[bytes]:
    out, pos = [], len(exports.MAGIC)
    while pos < len(raw):
        length = int.from_bytes(raw[pos + 1:pos + 5], "big")
        end = pos + 5 + exports.NONCE_BYTES + length
        out.append(raw[pos:end])
        pos = end
    return out


def tampered(name: str, raw: bytes) -> bytes:
    parts = chunks(raw)
    magic = exports.MAGIC
    if name == "flipped bit":
        return raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:]
    if name == "truncated":
        return raw[:-7]
    if name == "final chunk dropped":
        return magic + b"".join(parts[:-1])
    if name == "chunks swapped":
        return magic + parts[1] + parts[0] + b"".join(parts[2:])
    if name == "final flag set early":
        first = bytearray(parts[0])
        first[0] = 1
        return magic + bytes(first)
    if name == "final flag not 0 or 1":
        last = bytearray(parts[-1])
        last[0] = 3
        return magic + b"".join(parts[:-1]) + bytes(last)
    if name == "trailing bytes":
        return raw + b"\x00"
    if name == "bad magic":
        return b"DXP0" + raw[4:]
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["flipped bit", "truncated", "final chunk dropped",
                                  "chunks swapped", "final flag set early",
                                  "final flag not 0 or 1", "trailing bytes", "bad magic"])
def test_tamper_vectors_are_refused(sealed: Path, name: str) -> None:
    sealed.write_bytes(tampered(name, sealed.read_bytes()))
    with pytest.raises(DecryptionError):
        read(sealed)


def test_bound_to_job_file_and_key(sealed: Path, tmp_path: Path) -> None:
    with pytest.raises(DecryptionError):
        read(sealed, job="1" * 32)
    with pytest.raises(DecryptionError):
        read(sealed, key=os.urandom(32))
    moved = tmp_path / "Observation.ndjson"
    moved.write_bytes(sealed.read_bytes())
    with pytest.raises(DecryptionError):
        read(moved)


def test_never_overwrites(sealed: Path) -> None:
    with pytest.raises(FileExistsError):
        SealedWriter(sealed, KEY, JOB)


def test_folders_are_private(tmp_path: Path) -> None:
    folder = exports.job_folder(tmp_path, JOB, create=True)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert folder.parent.stat().st_mode & 0o777 == 0o700
    exports.remove_job_folder(tmp_path, JOB)
    assert not folder.exists()
