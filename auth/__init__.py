"""OAuth2/OIDC for Dossier: token validation, SMART scopes, actor resolution, dev issuer.

The public face; ``devissuer`` (and its FastAPI router) is imported on its own
because only the embedded default needs it.
"""

from __future__ import annotations

from auth.actor import (
    Directory,
    Principal,
    Representation,
    check_interaction,
    resolve_principal,
    role_of,
)
from auth.errors import AuthError, Forbidden, InvalidToken, IssuerUnavailable, OAuthError
from auth.rules import COMPARTMENT_TYPES, DIRECTORY_TYPES, ROLES, Role
from auth.scopes import Scope, allows, format_scopes, parse_scopes
from auth.tokens import (
    JWKSCache,
    KeySource,
    StaticKeys,
    TokenClaims,
    TokenValidator,
    bearer_token,
)

__all__ = [
    "COMPARTMENT_TYPES",
    "DIRECTORY_TYPES",
    "ROLES",
    "AuthError",
    "Directory",
    "Forbidden",
    "InvalidToken",
    "IssuerUnavailable",
    "JWKSCache",
    "KeySource",
    "OAuthError",
    "Principal",
    "Representation",
    "Role",
    "Scope",
    "StaticKeys",
    "TokenClaims",
    "TokenValidator",
    "allows",
    "bearer_token",
    "check_interaction",
    "format_scopes",
    "parse_scopes",
    "resolve_principal",
    "role_of",
]
