"""Sign-in accounts of the embedded issuer and the state its flows must share.

The issuer signs nobody in without a password (SPEC §8). Passwords are hashed with
scrypt (hashlib, the standard library): ``scrypt$n$r$p$salt$hash`` in base64.

``IssuerState`` is what the issuer keeps between requests: accounts, authorization codes
(single use) and the ``jti`` values already seen. The service stores them in its
database (dossier/stores/issuer.py), so they hold across `serve --workers N` processes;
``MemoryState`` is for a lone issuer (unit tests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from auth.clientauth import JtiCache
from auth.rules import ROLES, Role

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
USERNAME_MAX = 64
OPERATOR_ROLES: frozenset[str] = frozenset({"admin", "auditor"})


@dataclass(frozen=True)
class Account:
    """Somebody who may sign in on the issuer's page."""

    username: str
    fhir_user: str
    roles: tuple[Role, ...]
    name: str


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


# Compared against when the username is unknown, so both paths cost one scrypt.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def check_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; always does one scrypt (no timing oracle)."""
    try:
        scheme, n, r, p, salt, digest = (stored or _DUMMY_HASH).split("$")
        if scheme != "scrypt" or len(password) > MAX_PASSWORD:
            return False
        computed = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                  r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return stored is not None and hmac.compare_digest(computed, base64.b64decode(digest))


def new_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def check_new_account(username: str, roles: Sequence[str], password: str) -> None:
    """Raise ``ValueError`` with a plain message for an account that may not be made."""
    if not username or len(username) > USERNAME_MAX or not all(
            c.isascii() and (c.isalnum() or c in "-._") for c in username):
        raise ValueError("a username is 1 to 64 letters, digits, '-', '.' or '_'")
    unknown = [role for role in roles if role not in ROLES]
    if not roles or unknown:
        raise ValueError(f"roles must be among: {', '.join(sorted(ROLES))}")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a password has at least {MIN_PASSWORD} characters")


def code_key(code: str) -> str:
    """What is stored of an authorization code: its hash (a database reader cannot redeem)."""
    return hashlib.sha256(code.encode()).hexdigest()


class IssuerState(Protocol):
    """What the issuer keeps between requests (shared by every process of the service)."""

    def account(self, username: str) -> tuple[Account, str] | None:
        """The account and its password hash."""

    def put_code(self, code: str, entry: Mapping[str, Any], expires_at: float) -> None:
        """Keep an authorization code (by its hash) until ``expires_at``."""

    def take_code(self, code: str, now: float) -> dict[str, Any] | None:
        """The code's entry, removed at once: only the first caller ever gets it."""

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record ``jti``; ``False`` when it was already used and has not expired."""


def authenticate(state: IssuerState, username: str, password: str) -> Account | None:
    """The account ``username`` if ``password`` is its password (one scrypt either way)."""
    found = state.account(username[:USERNAME_MAX]) if username else None
    ok = check_password(password, found[1] if found else None)
    return found[0] if ok and found else None


class MemoryState:
    """``IssuerState`` in this process only (a lone issuer, tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accounts: dict[str, tuple[Account, str]] = {}
        self._codes: dict[str, tuple[dict[str, Any], float]] = {}
        self._jtis = JtiCache()

    def add(self, account: Account, password: str) -> None:
        self.accounts[account.username] = (account, hash_password(password, n=2**10))

    def account(self, username: str) -> tuple[Account, str] | None:
        return self.accounts.get(username)

    def put_code(self, code: str, entry: Mapping[str, Any], expires_at: float) -> None:
        with self._lock:
            self._codes[code_key(code)] = (dict(entry), expires_at)

    def take_code(self, code: str, now: float) -> dict[str, Any] | None:
        with self._lock:
            found = self._codes.pop(code_key(code), None)
        return found[0] if found and found[1] >= now else None

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        return self._jtis.first_use(client_id, jti, expires_at, now)
