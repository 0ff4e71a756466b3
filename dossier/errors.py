"""One error hierarchy for the service, rendered as OperationOutcome by one handler.

Messages are written for a person and never carry personal data: they name
elements, parameters and codes, never the values a client sent.
"""

from __future__ import annotations

from typing import Any


class DossierError(Exception):
    """Base error: an HTTP status, an OperationOutcome issue code and a safe message."""

    status = 500
    code = "exception"
    severity = "error"

    def __init__(self, message: str, *, expression: list[str] | None = None,
                 issues: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression
        self.extra_issues = issues or []
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.message,
        }
        if self.expression:
            issue["expression"] = self.expression
        return {"resourceType": "OperationOutcome", "issue": [issue, *self.extra_issues]}


class BadRequest(DossierError):
    status = 400
    code = "invalid"


class Unprocessable(DossierError):
    """The body is well-formed JSON but breaks a FHIR or dossier rule (422)."""

    status = 422
    code = "processing"


class NotFound(DossierError):
    status = 404
    code = "not-found"


class Gone(DossierError):
    status = 410
    code = "deleted"


class Conflict(DossierError):
    status = 409
    code = "conflict"


class PreconditionFailed(DossierError):
    status = 412
    code = "conflict"


class PayloadTooLarge(DossierError):
    status = 413
    code = "too-costly"


class NotAcceptable(DossierError):
    """The client accepts no format this server writes (XML, another FHIR version)."""

    status = 406
    code = "not-supported"


class UnsupportedMediaType(DossierError):
    status = 415
    code = "not-supported"


class MethodNotAllowed(DossierError):
    status = 405
    code = "not-supported"


class Unauthorized(DossierError):
    status = 401
    code = "login"


class Forbidden(DossierError):
    status = 403
    code = "forbidden"


class ServiceUnavailable(DossierError):
    """The database, the audit log or a key provider cannot be reached: nothing done."""

    status = 503
    code = "transient"


class TooManyRequests(DossierError):
    status = 429
    code = "throttled"


class InternalError(DossierError):
    """Something the service itself holds is not as it must be (a stored element that
    fails its integrity check, a job that stopped): said plainly, never with data."""

    status = 500
    code = "exception"


class NotImplementedHere(DossierError):
    """A feature this deployment does not offer (e.g. with an external OpenID provider)."""

    status = 501
    code = "not-supported"


def from_auth(error: Any) -> DossierError:
    """An auth/ error (which cannot import this package) as the service's own error, with
    its status, issue code, message and headers (WWW-Authenticate)."""
    cls = {401: Unauthorized, 403: Forbidden, 503: ServiceUnavailable}.get(
        error.status, BadRequest)
    converted = cls(error.message, headers=dict(error.headers or {}))
    converted.status, converted.code = error.status, error.code
    return converted


def not_found(resource_type: str, resource_id: str | None = None) -> NotFound:
    """The one 'not found' answer: identical for a missing and a hidden resource."""
    del resource_id  # never echoed: ids of hidden resources must not be confirmed
    return NotFound(f"No {resource_type} resource with that id is available.")
