"""The embedded default key provider: KEKs in files under ``<data dir>/keys``.

Layout (directory 0700, every file 0600, written once and never rewritten)::

    keys/kek-000001.key   32 random bytes: KEK version 1 (id "local:1")
    keys/kek-000002.key   KEK version 2, made by rotate(); the highest is current
    keys/blind-index.key  32 random bytes: the blind-index key, never rotated with KEKs
    keys/audit-signing.pem  the audit log's Ed25519 tree-head key (PKCS#8), never rotated

Data keys are wrapped with AES key wrap (RFC 3394), the same bytes an HSM's
CKM_AES_KEY_WRAP produces, so KEKs can later move into an HSM unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from audit.checkpoint import Ed25519FileSigner
from dossier.crypto.errors import DecryptionError, KeyUnavailable

KEY_BYTES = 32
_PREFIX = "local:"
_KEK_FILE = re.compile(r"^kek-(\d{6})\.key$")
_INDEX_FILE = "blind-index.key"
_SIGNING_FILE = "audit-signing.pem"  # the audit log's Ed25519 tree-head key


class LocalFileKeyProvider:
    """KEKs in 0600 files of a 0700 ``keys/`` folder inside ``directory`` (the data directory)."""

    def __init__(self, directory: Path) -> None:
        self.keys_dir = Path(directory) / "keys"
        self._signer: Ed25519FileSigner | None = None
        _make_private_dir(self.keys_dir)
        # first start: make KEK 1 and the blind-index key (a concurrent starter may win)
        with contextlib.suppress(FileExistsError):
            if not self._versions():
                _create_once(self.keys_dir / _kek_name(1), secrets.token_bytes(KEY_BYTES))
        with contextlib.suppress(FileExistsError):
            if not (self.keys_dir / _INDEX_FILE).exists():
                _create_once(self.keys_dir / _INDEX_FILE, secrets.token_bytes(KEY_BYTES))

    # -- KeyProvider -----------------------------------------------------------------
    def current_kek_id(self) -> str:
        # read from disk every time: `dossier keys rotate` may run in another process
        versions = self._versions()
        if not versions:
            raise KeyUnavailable(f"no KEK file in {self.keys_dir}")
        return _PREFIX + str(versions[-1])

    def wrap(self, dek: bytes) -> tuple[str, bytes]:
        _check_dek(dek)
        kek_id = self.current_kek_id()
        return kek_id, aes_key_wrap(self._kek(kek_id), dek)

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        kek = self._kek(kek_id)
        try:
            dek = aes_key_unwrap(kek, wrapped)
        except (InvalidUnwrap, ValueError, TypeError):
            raise DecryptionError() from None
        if len(dek) != KEY_BYTES:
            raise DecryptionError()
        return dek

    def rotate(self) -> str:
        while True:
            versions = self._versions()
            version = (versions[-1] if versions else 0) + 1
            try:
                _create_once(self.keys_dir / _kek_name(version), secrets.token_bytes(KEY_BYTES))
            except FileExistsError:
                continue  # another process rotated at the same moment: take the next number
            return _PREFIX + str(version)

    def kek_ids(self) -> list[str]:
        return [_PREFIX + str(v) for v in self._versions()]

    def retire(self, kek_id: str) -> None:
        if kek_id == self.current_kek_id():
            raise ValueError("the current KEK cannot be retired; rotate first")
        path = self._kek_path(kek_id)
        try:
            path.unlink()
        except FileNotFoundError:
            raise KeyUnavailable(f"unknown KEK id {kek_id!r}") from None
        _fsync_dir(self.keys_dir)

    def blind_index_key(self) -> bytes:
        return _read_key(self.keys_dir / _INDEX_FILE)

    def audit_signer(self) -> Ed25519FileSigner:
        """keys/audit-signing.pem (PKCS#8, 0600), kept in memory once loaded."""
        if self._signer is None:
            self._signer = Ed25519FileSigner.load_or_create(self.keys_dir / _SIGNING_FILE)
        return self._signer

    def close(self) -> None:
        """Nothing to release: keys are read from disk on use."""

    # -- internals -------------------------------------------------------------------
    def _versions(self) -> list[int]:
        try:
            names = os.listdir(self.keys_dir)
        except OSError as exc:
            raise KeyUnavailable(f"cannot list {self.keys_dir}: {exc.strerror}") from None
        return sorted(int(m.group(1)) for n in names if (m := _KEK_FILE.match(n)))

    def _kek_path(self, kek_id: str) -> Path:
        if not kek_id.startswith(_PREFIX) or not kek_id[len(_PREFIX):].isdigit():
            raise KeyUnavailable(f"KEK id {kek_id!r} does not belong to the local key provider")
        return self.keys_dir / _kek_name(int(kek_id[len(_PREFIX):]))

    def _kek(self, kek_id: str) -> bytes:
        return _read_key(self._kek_path(kek_id))


def _kek_name(version: int) -> str:
    return f"kek-{version:06d}.key"


def _check_dek(dek: bytes) -> None:
    if not isinstance(dek, bytes | bytearray) or len(dek) != KEY_BYTES:
        raise ValueError("a data key is 32 bytes")


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyUnavailable(f"{path} is open to group or others (mode {mode:o}); chmod 700 it")


def _read_key(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyUnavailable(f"key file {path.name} is missing") from None
    except OSError as exc:
        raise KeyUnavailable(f"cannot open key file {path.name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise KeyUnavailable(f"key file {path.name} is open to group or others; chmod 600 it")
        data = f.read(KEY_BYTES + 1)
    if len(data) != KEY_BYTES:
        raise KeyUnavailable(f"key file {path.name} is damaged (not {KEY_BYTES} bytes)")
    return data


def _create_once(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file atomically: 0600, fsynced, never replacing a file.

    Raises FileExistsError if ``path`` exists (a concurrent writer won).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and fails rather than overwrite
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
