"""Sign-in accounts of the embedded issuer made at start: the operator's first account
(a one-time password printed once) and, with --demo, the demo people."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from sqlalchemy import delete, insert

from auth.accounts import hash_password, new_password
from auth.devissuer import DEMO_USERS
from dossier.db.models import issuer_accounts
from dossier.settings import Settings
from dossier.stores.issuer import DatabaseIssuerState

OPERATOR = "admin"


def ensure_accounts(state: DatabaseIssuerState, settings: Settings) -> None:
    """On the embedded default only (an external issuer has its own accounts)."""
    if not settings.embedded:
        return
    if not state.has_operator():
        password = new_password()
        try:
            state.add_account(OPERATOR, password, ["admin"], name="Operator")
        except ValueError:
            return  # another process made it first
        print(f"Operator account '{OPERATOR}' created; its password (shown once): "
              f"{password}\n  (change it with: dossier users add {OPERATOR} --role admin "
              "--replace)", file=sys.stderr)
    if settings.demo:
        load_demo_accounts(state, settings.demo_password)


def load_demo_accounts(state: DatabaseIssuerState, password: str | None) -> None:
    """The demo people (not the operator), all with one password: the configured one, or a
    new one printed now. Remade at each --demo start."""
    shown = password or new_password()
    hashed = hash_password(shown)  # one hash for all of them
    people = [u for u in DEMO_USERS if u.id != OPERATOR]
    now = datetime.now(UTC)
    with state.engine.begin() as conn:
        conn.execute(delete(issuer_accounts).where(
            issuer_accounts.c.username.in_([u.id for u in people])))
        conn.execute(insert(issuer_accounts), [
            {"username": u.id, "password_hash": hashed, "fhir_user": u.fhir_user,
             "roles": list(u.roles), "name": u.name, "demo": True, "created_at": now}
            for u in people])
    if password is None:
        names = ", ".join(u.id for u in people)
        print(f"Demo sign-in ({names}) with the password: {shown}", file=sys.stderr)
