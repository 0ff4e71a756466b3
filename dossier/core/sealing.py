"""How the Repository stores the elements schemas/ declares personal (SPEC §7).

FieldSealer is built per request: it unwraps each patient's data key at most once and
forgets it when the request ends. Identifiers are searched through a keyed blind index.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

import schemas
from dossier.crypto import (
    DecryptionError,
    FieldCipher,
    KeyDestroyed,
    KeyProvider,
    WrappedKey,
    blind_index,
)
from dossier.db.models import patient_keys
from dossier.db.tx import Tx
from dossier.errors import Gone, InternalError

K = patient_keys.c


class Unreadable(InternalError):
    """A sealed element that cannot be opened (key missing, integrity check failed)."""


def erased() -> Gone:
    return Gone("This person's dossier was erased at their request.")


class FieldSealer:
    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self.cipher = FieldCipher(provider)
        self._blind_key: bytes | None = None
        self._known: dict[str, tuple[str | None, bytes | None] | None] = {}
        self.created: list[str] = []  # patients whose data key this request stored

    def know(self, patient_id: str | None, kek_id: str | None, wrapped: bytes | None,
             present: bool) -> None:
        """A patient's key row read with the resource (one query instead of two);
        `present` False when the patient has no key row at all."""
        if patient_id is not None and patient_id not in self._known:
            self._known[patient_id] = (kek_id, wrapped) if present else None

    def _dek(self, session: Tx, patient_id: str, *, create: bool) -> bytes:
        cached = self.cipher.cached(patient_id)
        if cached is not None:
            return cached
        known = self._known.get(patient_id)
        if known is not None:
            known_kek, known_wrapped = known
            if known_wrapped is None or known_kek is None:
                raise erased()
            try:
                return self.cipher.data_key(patient_id, WrappedKey(known_kek, known_wrapped))
            except KeyDestroyed:
                raise erased() from None
        row = session.execute(select(patient_keys).where(K.patient_id == patient_id)).first()
        if row is None:
            if not create:
                raise Unreadable("A stored element cannot be read: its key is missing.")
            dek, wrapped = self.cipher.new_data_key()
            session.execute(insert(patient_keys).values(
                patient_id=patient_id, kek_id=wrapped.kek_id, wrapped=wrapped.wrapped,
                created_at=datetime.now(UTC)))
            self.cipher.remember(patient_id, dek)
            self.created.append(patient_id)
            return dek
        if row.wrapped is None:
            raise erased()
        try:
            return self.cipher.data_key(patient_id, WrappedKey(row.kek_id, row.wrapped))
        except KeyDestroyed:
            raise erased() from None

    def forget_created(self, since: int) -> None:
        """The keys stored after the `since`-th were rolled back (a batch entry's
        savepoint): forget them, so that nothing is sealed with a key that is not stored."""
        for patient_id in self.created[since:]:
            self.cipher.forget(patient_id)
            self._known.pop(patient_id, None)
        del self.created[since:]

    def seal(self, session: Tx, resource: dict[str, Any], patient_id: str | None,
             version_id: int) -> tuple[dict[str, Any], dict[str, str] | None]:
        paths = [p for p in schemas.encrypted_elements(resource["resourceType"])
                 if p in resource]
        if not paths:
            return resource, None
        if patient_id is None:
            raise Unreadable("Personal elements need a dossier to be sealed in.")
        dek = self._dek(session, patient_id, create=True)
        clear, sealed = self.cipher.seal(
            resource, paths, dek, patient_id=patient_id,
            resource_type=resource["resourceType"], resource_id=resource["id"],
            version=version_id)
        return clear, sealed

    def open(self, session: Tx, resource_type: str, resource_id: str,
             content: dict[str, Any], sealed: dict[str, str] | None, patient_id: str | None,
             version_id: int) -> dict[str, Any]:
        if not sealed:
            return content
        if patient_id is None:
            raise Unreadable("A stored element cannot be read.")
        dek = self._dek(session, patient_id, create=False)
        try:
            return self.cipher.open(content, sealed, dek, patient_id=patient_id,
                                    resource_type=resource_type, resource_id=resource_id,
                                    version=version_id)
        except KeyDestroyed:
            raise erased() from None
        except DecryptionError:
            raise Unreadable("A stored element failed its integrity check; it was not "
                             "returned.") from None

    def seal_fields(self, session: Tx, patient_id: str, kind: str, record_id: str,
                    fields: dict[str, Any]) -> dict[str, str]:
        """Seal values that live outside FHIR resources (a break-the-glass reason, an
        e-mail address) under the patient's key, bound to `kind`/`record_id`."""
        dek = self._dek(session, patient_id, create=True)
        _, sealed = self.cipher.seal({"resourceType": kind, "id": record_id, **fields},
                                     list(fields), dek, patient_id=patient_id,
                                     resource_type=kind, resource_id=record_id, version=1)
        return sealed

    def open_fields(self, session: Tx, patient_id: str, kind: str, record_id: str,
                    sealed: dict[str, str]) -> dict[str, Any]:
        dek = self._dek(session, patient_id, create=False)
        try:
            opened = self.cipher.open({"resourceType": kind, "id": record_id}, sealed, dek,
                                      patient_id=patient_id, resource_type=kind,
                                      resource_id=record_id, version=1)
        except DecryptionError:
            raise Unreadable("A stored element failed its integrity check.") from None
        return {k: v for k, v in opened.items() if k not in ("resourceType", "id")}

    def blind(self, system: str, value: str) -> str:
        if self._blind_key is None:
            self._blind_key = self.provider.blind_index_key()
        return blind_index(self._blind_key, system, value)

    def erase(self, session: Tx, patient_id: str, now: datetime) -> None:
        """Crypto-shredding: forget the wrapped key; every sealed element is now noise."""
        from sqlalchemy import update

        session.execute(update(patient_keys).where(K.patient_id == patient_id).values(
            kek_id=None, wrapped=None, erased_at=now))
        self.cipher.forget(patient_id)
        self._known[patient_id] = (None, None)
