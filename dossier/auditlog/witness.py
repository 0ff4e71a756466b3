"""Witnesses: where the service publishes its signed tree heads, out of reach of its own
database (issue 16). A later `dossier audit verify --since …` checks that the log still
extends a published head (RFC 9162 consistency), so a superuser who deletes the tail —
records, leaves, nodes and heads together — or forks the log is caught.

Two kinds, by the setting DOSSIER_AUDIT_WITNESS:
- a directory (another disk, a mounted share): `<size>.json` per head and `latest.json`;
- an http(s) URL: the head is POSTed as JSON; a GET on the same URL answers the latest.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

import httpx

from audit.checkpoint import TreeHeadJSON

MAX_HEAD_BYTES = 16_384
TIMEOUT_SECONDS = 5.0


class WitnessError(Exception):
    """A head could not be published to, or read from, the witness (plain message)."""


class Witness(Protocol):
    def publish(self, head: TreeHeadJSON) -> None: ...

    def latest(self) -> dict[str, Any]: ...


class DirectoryWitness:
    def __init__(self, path: Path) -> None:
        self.path = path

    def publish(self, head: TreeHeadJSON) -> None:
        body = json.dumps(head, separators=(",", ":")).encode()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            _write(self.path / f"{head['tree_size']:020d}.json", body)
            current = self._read(self.path / "latest.json", missing_ok=True)
            if current is None or int(current.get("tree_size", -1)) < head["tree_size"]:
                _write(self.path / "latest.json", body)
        except OSError as exc:
            raise WitnessError(f"cannot write to the witness directory: {exc.strerror}") \
                from None

    def latest(self) -> dict[str, Any]:
        head = self._read(self.path / "latest.json", missing_ok=False)
        assert head is not None
        return head

    @staticmethod
    def _read(path: Path, *, missing_ok: bool) -> dict[str, Any] | None:
        try:
            with path.open("rb") as f:
                data = f.read(MAX_HEAD_BYTES + 1)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise WitnessError(f"no published head in {path.parent}") from None
        except OSError as exc:
            raise WitnessError(f"cannot read {path.name}: {exc.strerror}") from None
        return _parse(data)


class HttpWitness:
    def __init__(self, url: str) -> None:
        self.url = url

    def publish(self, head: TreeHeadJSON) -> None:
        try:
            r = httpx.post(self.url, json=dict(head), timeout=TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            raise WitnessError(f"witness unreachable ({type(exc).__name__})") from None
        if r.status_code >= 300:
            raise WitnessError(f"witness refused the head (HTTP {r.status_code})")

    def latest(self) -> dict[str, Any]:
        try:
            r = httpx.get(self.url, timeout=TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            raise WitnessError(f"witness unreachable ({type(exc).__name__})") from None
        if r.status_code != 200:
            raise WitnessError(f"witness has no head to give (HTTP {r.status_code})")
        return _parse(r.content)


def witness_from(target: str) -> Witness:
    """A URL (http or https) or a directory."""
    if target.startswith(("http://", "https://")):
        return HttpWitness(target)
    return DirectoryWitness(Path(target))


def load_head(source: str) -> dict[str, Any]:
    """A published head from a witness URL, a witness directory or a tree-head JSON file."""
    path = Path(source)
    if not source.startswith(("http://", "https://")) and path.is_file():
        return DirectoryWitness._read(path, missing_ok=False) or {}
    return witness_from(source).latest()


def _parse(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_HEAD_BYTES:
        raise WitnessError("the published head is too large")
    try:
        head = json.loads(data)
    except ValueError:
        raise WitnessError("the published head is not JSON") from None
    if not isinstance(head, dict):
        raise WitnessError("the published head is not a JSON object")
    return head


def _write(path: Path, body: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
