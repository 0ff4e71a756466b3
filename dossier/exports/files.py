"""Bulk export files at rest: NDJSON sealed with AES-256-GCM under a per-job key.

A file is `MAGIC` then chunks `[final: 1 byte][length: 4][nonce: 12][ciphertext + tag]`.
Each chunk holds whole NDJSON lines. The associated data binds a chunk to its job, file,
position and to whether it is the last one, so chunks cannot be swapped, reordered,
moved to another file, or dropped from the end without the reader noticing.

The job key lives only in the job's database row, wrapped by the key provider's KEK:
deleting the row (expiry, cancel) makes the files unreadable even before they are gone.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dossier.crypto import DecryptionError

MAGIC = b"DXP1"
CHUNK_BYTES = 256 * 1024
NONCE_BYTES = 12
_HEAD = struct.Struct(">BI")  # final flag, ciphertext length


def exports_root(data_dir: Path) -> Path:
    root = Path(data_dir) / "exports"
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    return root


def job_folder(data_dir: Path, job_id: str, *, create: bool = False) -> Path:
    folder = exports_root(data_dir) / job_id
    if create:
        folder.mkdir(mode=0o700)
    return folder


def remove_job_folder(data_dir: Path, job_id: str) -> None:
    shutil.rmtree(exports_root(data_dir) / job_id, ignore_errors=True)


def _aad(job_id: str, name: str, index: int, final: bool) -> bytes:
    return b"\x00".join([b"dossier-export", job_id.encode(), name.encode(),
                         struct.pack(">QB", index, final)])


class SealedWriter:
    """Appends NDJSON lines to a new file (0600), sealing every CHUNK_BYTES of lines."""

    def __init__(self, path: Path, key: bytes, job_id: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._file.write(MAGIC)
        self._aead = AESGCM(key)
        self._job = job_id
        self._name = path.name
        self._buffer = bytearray()
        self._index = 0
        self.count = 0

    def write_line(self, line: bytes) -> None:
        self._buffer += line.rstrip(b"\n") + b"\n"
        self.count += 1
        if len(self._buffer) >= CHUNK_BYTES:
            self._seal(final=False)

    def close(self) -> None:
        """Seal the last chunk (possibly empty) and close: a file without it is truncated."""
        self._seal(final=True)
        self._file.close()

    def abort(self) -> None:
        self._file.close()

    def _seal(self, *, final: bool) -> None:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, bytes(self._buffer),
                                    _aad(self._job, self._name, self._index, final))
        self._file.write(_HEAD.pack(final, len(sealed)) + nonce + sealed)
        self._buffer.clear()
        self._index += 1


def read_sealed(path: Path, key: bytes, job_id: str) -> Iterator[bytes]:
    """The plaintext chunks of a sealed file; DecryptionError if anything was altered."""
    aead = AESGCM(key)
    with open(path, "rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise DecryptionError()
        index = 0
        while True:
            head = handle.read(_HEAD.size)
            if len(head) != _HEAD.size:
                raise DecryptionError()  # ended before the final chunk
            flag, length = _HEAD.unpack(head)
            if flag not in (0, 1):
                raise DecryptionError()
            final = flag == 1
            nonce = handle.read(NONCE_BYTES)
            sealed = handle.read(length)
            if len(nonce) != NONCE_BYTES or len(sealed) != length:
                raise DecryptionError()
            try:
                plain = aead.decrypt(nonce, sealed, _aad(job_id, path.name, index, final))
            except InvalidTag:
                raise DecryptionError() from None
            yield plain
            if final:
                if handle.read(1):
                    raise DecryptionError()  # bytes after the final chunk
                return
            index += 1
