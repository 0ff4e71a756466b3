"""The errors of the auth package.

Every message is safe to show a client: it never carries token content,
claims or personal data. The precise reason is kept in ``reason`` for the
audit record only.
"""

from __future__ import annotations

_INVALID = "A valid access token is required."
_FORBIDDEN = "The access token does not allow this interaction."


class AuthError(Exception):
    """Base auth error: an HTTP status, an OperationOutcome issue code, a safe message."""

    status = 401
    code = "login"

    def __init__(self, message: str = _INVALID, *, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or message

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the HTTP layer should add (RFC 6750 §3)."""
        return {}


class InvalidToken(AuthError):
    """One opaque class for every token problem (missing, malformed, bad signature, expired…)."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(_INVALID, reason=reason)
        self.missing = missing

    @property
    def headers(self) -> dict[str, str]:
        if self.missing:  # RFC 6750 §3.1: no error code when no credentials were sent
            return {"WWW-Authenticate": 'Bearer realm="dossier"'}
        return {"WWW-Authenticate": 'Bearer realm="dossier", error="invalid_token"'}


class InvalidNiss(InvalidToken):
    """A citizen token whose national number fails its check digits."""

    def __init__(self) -> None:
        super().__init__("national number fails its check digits")
        self.message = ("The national number (NISS) in the access token is not valid: its "
                        "check digits do not match. Sign in again with your identity card "
                        "or itsme.")


class Forbidden(AuthError):
    """A valid token whose scopes or role do not allow the interaction."""

    status = 403
    code = "forbidden"

    def __init__(self, reason: str) -> None:
        super().__init__(_FORBIDDEN, reason=reason)

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="dossier", error="insufficient_scope"'}


class IssuerUnavailable(AuthError):
    """The issuer's discovery document or JWKS could not be fetched: not the client's fault."""

    status = 503
    code = "transient"

    def __init__(self, reason: str) -> None:
        super().__init__("The identity provider cannot be reached; try again later.",
                         reason=reason)


class OAuthError(Exception):
    """An error of the dev issuer's OAuth endpoints, answered as RFC 6749 §5.2 JSON.

    Not an ``AuthError``: it belongs to the issuer's endpoints, not to /fhir.
    """

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, status=401)
