"""Sealers: how the Repository stores the elements schemas/ declares personal.

ClearSealer keeps everything in clear (used only until field encryption is configured);
the blind index is keyed in every case.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from sqlalchemy.orm import Session


def keyed_blind_index(key: bytes, system: str, value: str) -> str:
    msg = system.encode() + b"\x00" + value.strip().encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


class ClearSealer:
    def __init__(self, blind_key: bytes) -> None:
        self._blind_key = blind_key

    def seal(self, session: Session, resource: dict[str, Any], patient_id: str | None,
             version_id: int) -> tuple[dict[str, Any], dict[str, str] | None]:
        return resource, None

    def open(self, session: Session, resource_type: str, resource_id: str,
             content: dict[str, Any], sealed: dict[str, str] | None, patient_id: str | None,
             version_id: int) -> dict[str, Any]:
        return content

    def blind(self, system: str, value: str) -> str:
        return keyed_blind_index(self._blind_key, system, value)
