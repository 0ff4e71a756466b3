"""The baseline for field encryption: a Sealer that stores every element in clear.

Same interface as dossier.core.sealing.FieldSealer (seal, open, blind, seal_fields,
open_fields), no keys and no cipher. Only for benchmarks: its data must be written by
an app that uses it, and it refuses to open sealed rows, so a baseline can never
silently read the encrypted app's data.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session


class ClearSealer:
    def seal(self, session: Session, resource: dict[str, Any], patient_id: str | None,
             version_id: int) -> tuple[dict[str, Any], dict[str, str] | None]:
        return resource, None

    def open(self, session: Session, resource_type: str, resource_id: str,
             content: dict[str, Any], sealed: dict[str, str] | None, patient_id: str | None,
             version_id: int) -> dict[str, Any]:
        if sealed:
            raise ValueError("the clear baseline met a sealed row")
        return content

    def blind(self, system: str, value: str) -> str:
        return value

    def seal_fields(self, session: Session, patient_id: str, kind: str, record_id: str,
                    fields: dict[str, Any]) -> dict[str, str]:
        return {name: json.dumps(value) for name, value in fields.items()}

    def open_fields(self, session: Session, patient_id: str, kind: str, record_id: str,
                    sealed: dict[str, str]) -> dict[str, Any]:
        return {name: json.loads(text) for name, text in sealed.items()}
