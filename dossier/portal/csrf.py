"""CSRF protection for every portal form: a synchronizer token.

Each session carries a random token (in the encrypted session cookie); every form sends
it back in the hidden field `csrf`. A POST without a session, without the field, or with
another value is refused (403), and so is one whose Origin header names another site.
SameSite=Lax on the cookie is a second line, not the defence.
"""

from __future__ import annotations

import secrets

from starlette.datastructures import FormData
from starlette.requests import Request

from dossier.portal.session import PortalSession

FIELD = "csrf"
MAX_FORM_FIELDS = 200


class CsrfError(Exception):
    """The form did not come from a page of this portal."""


def same_origin(request: Request, expected_origin: str) -> bool:
    origin = request.headers.get("origin")
    return origin is None or origin == expected_origin


async def checked_form(request: Request, session: PortalSession | None,
                       expected_origin: str) -> FormData:
    """The submitted form, once its CSRF token matches the session's."""
    if session is None or not same_origin(request, expected_origin):
        raise CsrfError
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    sent = form.get(FIELD)
    if not isinstance(sent, str) or not secrets.compare_digest(
            sent.encode(), session.csrf.encode()):
        raise CsrfError
    return form
