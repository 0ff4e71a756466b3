"""The portal's session: a cookie holding the access token, encrypted and signed.

The cookie is a Fernet token (AES-128-CBC + HMAC-SHA256) under a key kept in
`data_dir/keys/portal-session.key` (created once, mode 0600). It holds the access token,
the user's pseudonymous reference, the role, the CSRF token and at most one message key
for the next page — never a name or any other personal data — and the session's id,
which must name a live row of `portal_sessions` (logout deletes it). Attributes: Secure,
HttpOnly, SameSite=Lax, Path=/ under the `__Host-` prefix (no Domain: this host only).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from starlette.responses import Response

SESSION_COOKIE = "__Host-dossier-session"
LOGIN_COOKIE = "__Host-dossier-login"
LANG_COOKIE = "lang"
KEY_FILE = Path("keys") / "portal-session.key"
SESSION_TTL = 8 * 3600  # the access token's own expiry usually comes first
LOGIN_TTL = 600
LANG_MAX_AGE = 365 * 24 * 3600


@dataclass
class PortalSession:
    token: str  # the OAuth access token, sent to nobody but our own API code
    role: str
    user: str  # fhirUser: a pseudonymous reference such as Patient/<id>
    csrf: str
    expires: int  # the access token's exp (seconds since the epoch)
    flash: str | None = None  # a message key (never text or data) for the next page
    sid: str = ""  # the server-side identity (dossier/stores/portal_sessions.py); logout ends it


def new_sid() -> str:
    return secrets.token_urlsafe(32)


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def load_or_create_key(data_dir: Path) -> bytes:
    """The Fernet key, created 0600 in a 0700 folder on first start (atomically)."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # created 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            os.unlink(temp)
    return path.read_bytes().strip()


class SessionCodec:
    """Encrypts and reads the portal's cookies."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, value: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()

    def open(self, token: str | None, ttl: int) -> dict[str, Any] | None:
        if not token or len(token) > 8192:
            return None
        try:
            value = json.loads(self._fernet.decrypt(token.encode(), ttl=ttl))
        except (InvalidToken, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def session(self, cookie: str | None) -> PortalSession | None:
        value = self.open(cookie, SESSION_TTL)
        if value is None:
            return None
        try:
            return PortalSession(**value)
        except TypeError:
            return None


def set_secure_cookie(response: Response, name: str, value: str,
                      max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True,
                        samesite="lax")


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="lax")


def write_session(response: Response, codec: SessionCodec, session: PortalSession) -> None:
    set_secure_cookie(response, SESSION_COOKIE, codec.seal(asdict(session)))
