"""The embedded issuer's state in the database (auth.accounts.IssuerState): accounts,
single-use authorization codes, jti memory. Shared by every process of the service.

The issuer works outside any request unit (it has no principal and writes no dossier
data), so each call is its own short transaction on the engine."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from auth.accounts import Account, check_new_account, code_key, hash_password
from auth.rules import ROLES, Role
from dossier.db.models import issuer_accounts, issuer_codes, issuer_jti

A = issuer_accounts.c


def _bounded(value: str) -> str:
    """The value, or its SHA-256 when longer than the column (never two made one)."""
    return value if len(value) <= 255 else "sha256:" + hashlib.sha256(
        value.encode()).hexdigest()


class DatabaseIssuerState:
    """``IssuerState`` on the service's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # accounts -------------------------------------------------------------

    def account(self, username: str) -> tuple[Account, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(A.username, A.fhir_user, A.roles, A.name,
                                      A.password_hash).where(A.username == username)).first()
        if row is None:
            return None
        roles: tuple[Role, ...] = tuple(r for r in row.roles if r in ROLES)
        if not roles:
            return None
        return Account(row.username, row.fhir_user, roles, row.name), row.password_hash

    def add_account(self, username: str, password: str, roles: list[str], *,
                    fhir_user: str | None = None, name: str | None = None,
                    demo: bool = False, replace: bool = False) -> Account:
        """Make (or with ``replace``, remake) an account; ``ValueError`` when it may not be."""
        check_new_account(username, roles, password)
        if fhir_user is None:
            if roles[0] not in ("admin", "auditor"):
                raise ValueError("a citizen or practitioner account needs --fhir-user "
                                 "(Patient/… or Practitioner/…)")
            fhir_user = f"Person/{username}"
        row = {"username": username, "password_hash": hash_password(password),
               "fhir_user": fhir_user, "roles": list(roles), "name": name or username,
               "demo": demo, "created_at": datetime.now(UTC)}
        with self.engine.begin() as conn:
            if replace:
                conn.execute(delete(issuer_accounts).where(A.username == username))
            try:
                conn.execute(insert(issuer_accounts), row)
            except IntegrityError:
                raise ValueError(f"an account named {username} exists already") from None
        return Account(username, fhir_user, tuple(roles), name or username)  # type: ignore[arg-type]

    def remove_account(self, username: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(issuer_accounts).where(
                A.username == username)).rowcount == 1

    def accounts(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(A.username, A.fhir_user, A.roles, A.demo,
                                       A.created_at).order_by(A.username)).all()
        return [dict(row._mapping) for row in rows]

    def has_operator(self) -> bool:
        with self.engine.connect() as conn:
            rows = conn.execute(select(A.roles).where(A.demo.is_(False))).all()
        return any("admin" in (row.roles or []) for row in rows)

    # authorization codes -----------------------------------------------------

    def put_code(self, code: str, entry: Mapping[str, Any], expires_at: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(issuer_codes).where(issuer_codes.c.expires_at < int(
                datetime.now(UTC).timestamp())))
            conn.execute(insert(issuer_codes), {"code_hash": code_key(code),
                                                "entry": dict(entry),
                                                "expires_at": int(expires_at)})

    def take_code(self, code: str, now: float) -> dict[str, Any] | None:
        """One DELETE … RETURNING: of two concurrent redemptions only one gets the row."""
        with self.engine.begin() as conn:
            row = conn.execute(delete(issuer_codes).where(
                issuer_codes.c.code_hash == code_key(code)).returning(
                issuer_codes.c.entry, issuer_codes.c.expires_at)).first()
        if row is None or row.expires_at < now:
            return None
        entry: dict[str, Any] = row.entry
        return entry

    # jti memory ---------------------------------------------------------------

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """The primary key refuses a second insert of the same (client, jti)."""
        with self.engine.begin() as conn:
            conn.execute(delete(issuer_jti).where(issuer_jti.c.expires_at < int(now)))
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(issuer_jti), {"client_id": _bounded(client_id),
                                                  "jti": _bounded(jti),
                                                  "expires_at": int(expires_at) + 1})
        except IntegrityError:
            return False
        return True
