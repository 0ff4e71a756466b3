"""The citizen's notification choices (SPEC §6): language, e-mail, webhook.

The e-mail address and the webhook URL and secret are personal data: they are sealed
with the patient's data key (AES-GCM, bound to the patient and the element name) and
never stored in clear. `notification_settings.sealed` is {"email": token, "webhook":
token}; its keys tell `auditing.enqueue` which channels the person chose.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from audit.notify import LANGUAGES
from audit.transport import check_webhook_url
from dossier.core.sealing import FieldSealer, Unreadable, erased
from dossier.crypto import DecryptionError, KeyDestroyed
from dossier.db.models import notification_settings
from dossier.db.tx import Tx

N = notification_settings.c
SEALED_AS = "NotificationSettings"  # the associated-data context; not a FHIR type
EMAIL_RE = re.compile(r"[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")


@dataclass(frozen=True)
class NotificationSettings:
    language: str = "fr"
    email: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    email_digest: bool = False  # one e-mail a day (urgent ones still at once)

    @property
    def channels(self) -> tuple[str, ...]:
        return ("inbox",) + (("email",) if self.email else ()) + (
            ("webhook",) if self.webhook_url else ())


class SettingsSealer(FieldSealer):
    """Seals a few named values with the patient's data key."""

    def seal_values(self, session: Tx, patient_id: str,
                    values: dict[str, Any]) -> dict[str, str]:
        dek = self._dek(session, patient_id, create=True)
        _, sealed = self.cipher.seal(values, list(values), dek, patient_id=patient_id,
                                     resource_type=SEALED_AS, resource_id=patient_id,
                                     version="1")
        return sealed

    def open_values(self, session: Tx, patient_id: str,
                    sealed: dict[str, str]) -> dict[str, Any]:
        dek = self._dek(session, patient_id, create=False)
        try:
            return self.cipher.open({}, sealed, dek, patient_id=patient_id,
                                    resource_type=SEALED_AS, resource_id=patient_id,
                                    version="1")
        except KeyDestroyed:
            raise erased() from None
        except DecryptionError:
            raise Unreadable("The notification settings failed their integrity "
                             "check.") from None


def set_notification_settings(runtime: Any, session: Tx, patient_id: str, *,
                              language: str, email: str | None = None,
                              webhook_url: str | None = None,
                              webhook_secret: str | None = None,
                              allow_local_webhooks: bool = False,
                              email_digest: bool = False) -> NotificationSettings:
    """Replace the person's choices (in the caller's transaction). A webhook without a
    secret gets a fresh random one, returned once here. Raises ValueError on bad input."""
    if language not in LANGUAGES:
        raise ValueError("language must be one of " + ", ".join(LANGUAGES))
    if email is not None and (len(email) > 254 or not EMAIL_RE.fullmatch(email)):
        raise ValueError("the e-mail address is not valid")
    if webhook_url is not None:
        check_webhook_url(webhook_url, allow_local=allow_local_webhooks)
        webhook_secret = webhook_secret or secrets.token_urlsafe(32)
        if len(webhook_secret) < 16:
            raise ValueError("the webhook secret must have at least 16 characters")
    values: dict[str, Any] = {}
    if email is not None:
        values["email"] = email
    if webhook_url is not None:
        values["webhook"] = {"url": webhook_url, "secret": webhook_secret}
    sealer = SettingsSealer(runtime.key_provider)
    sealed = sealer.seal_values(session, patient_id, values) if values else None
    row = {"language": language, "sealed": sealed, "updated_at": datetime.now(UTC),
           "email_digest": bool(email_digest and email)}
    exists = session.execute(select(N.patient_id).where(N.patient_id == patient_id)).first()
    if exists is None:
        session.execute(insert(notification_settings).values(patient_id=patient_id, **row))
    else:
        session.execute(update(notification_settings).where(
            N.patient_id == patient_id).values(**row))
    return NotificationSettings(language, email, webhook_url,
                                webhook_secret if webhook_url else None,
                                bool(email_digest and email))


def get_notification_settings(runtime: Any, session: Tx,
                              patient_id: str) -> NotificationSettings | None:
    """The person's choices, opened; None when they never chose."""
    row = session.execute(select(N.language, N.sealed, N.email_digest).where(
        N.patient_id == patient_id)).first()
    if row is None:
        return None
    opened: dict[str, Any] = {}
    if row.sealed:
        opened = SettingsSealer(runtime.key_provider).open_values(session, patient_id,
                                                                  dict(row.sealed))
    hook = opened.get("webhook") or {}
    return NotificationSettings(row.language, opened.get("email"), hook.get("url"),
                                hook.get("secret"), bool(row.email_digest))
