"""Strict JSON in, FHIR JSON out: body limits, media types, ETags."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dossier.errors import BadRequest, PayloadTooLarge, PreconditionFailed, UnsupportedMediaType

FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_ETAG = re.compile(r'^(?:W/)?"(\d{1,9})"$')


async def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, refusing more than `limit` bytes before buffering it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()) or len(declared) > 15:
            raise BadRequest("The Content-Length header is not a number.")
        if int(declared) > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def check_content_type(request: Request, accepted: tuple[str, ...] = ACCEPTED_TYPES) -> str:
    """The request's media type, if it is one of `accepted` and FHIR R4 (415 otherwise)."""
    header = request.headers.get("content-type", "")
    ctype, *params = [p.strip() for p in header.split(";")]
    ctype = ctype.lower()
    if ctype not in accepted:
        if "application/json-patch+json" in accepted:
            raise UnsupportedMediaType(
                "PATCH takes a JSON Patch (Content-Type 'application/json-patch+json') or a "
                "JSON Merge Patch ('application/merge-patch+json').")
        raise UnsupportedMediaType(
            "Send FHIR resources as JSON with Content-Type 'application/fhir+json'."
        )
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "fhirversion" and \
                value.strip().strip('"') not in ("4.0", "4.0.0", "4.0.1"):
            raise UnsupportedMediaType("This server takes FHIR R4 (fhirVersion 4.0) only.")
    return ctype


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(f"The JSON body repeats the property '{key[:64]}'.")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise BadRequest("The JSON body contains NaN or Infinity, which JSON does not allow.")


MAX_NUMBER_DIGITS = 40  # no FHIR value needs more; Python refuses beyond 4300 with an error


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise BadRequest("The JSON body contains a number with too many digits.")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if len(text) > 2 * MAX_NUMBER_DIGITS or not math.isfinite(value):
        raise BadRequest("The JSON body contains a number out of range.")
    return value


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity, numbers of bounded size,
    no NUL character in any string (PostgreSQL cannot store it), bounded nesting."""
    if not body.strip():
        raise BadRequest("The request body is empty; a FHIR resource in JSON was expected.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The request body is not valid UTF-8.") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants,
                           parse_int=_int, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"The request body is not valid JSON (line {exc.lineno}, column {exc.colno})."
        ) from None
    except RecursionError:
        raise BadRequest("The JSON body is nested too deeply.") from None
    if _depth(value) > 32:
        raise BadRequest("The JSON body is nested too deeply.")
    if _has_nul(value):
        raise BadRequest("The JSON body contains a NUL character (\\u0000), which is not "
                         "allowed.")
    return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _depth(value: Any, level: int = 0) -> int:
    if level > 32:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def parse_resource(body: bytes) -> dict[str, Any]:
    value = parse_json(body)
    if not isinstance(value, dict):
        raise BadRequest("The request body must be a JSON object (a FHIR resource).")
    rtype = value.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise BadRequest("The resource has no 'resourceType'.")
    return value


def etag(version_id: int | str) -> str:
    return f'W/"{version_id}"'


def parse_if_match(header: str) -> int:
    m = _ETAG.match(header.strip())
    if not m:
        raise PreconditionFailed("The If-Match header must be a version ETag such as W/\"3\".")
    return int(m.group(1))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) of an aware datetime, the
    names fixed in English whatever the locale (email.utils cost 1.4 % of a read)."""
    if moment.tzinfo is None:
        raise ValueError("http_date needs an aware datetime")
    t = moment.astimezone(UTC)
    return (f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT")


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    data = orjson.dumps(body)  # UTF-8, compact; bodies never hold NaN (parse_json refuses)
    return Response(content=data, status_code=status, media_type=FHIR_JSON + "; charset=utf-8",
                    headers=headers)
