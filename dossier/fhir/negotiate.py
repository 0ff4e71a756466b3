"""Content negotiation for /fhir: JSON and FHIR R4 only, said plainly.

A client that accepts only XML (`Accept: application/fhir+xml`, `_format=xml`) or only
another FHIR version (`Accept: application/fhir+json; fhirVersion=3.0`) gets **406** with
an OperationOutcome instead of a JSON body it did not ask for. Browsers (`*/*`) and
clients that send no Accept header get JSON."""

from __future__ import annotations

from starlette.requests import Request

from dossier.errors import NotAcceptable

FHIR_VERSIONS = frozenset({"4.0", "4.0.0", "4.0.1"})
JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir",
                        "*/*", "application/*"})
FORMATS = frozenset({"json", "application/json", "application/fhir+json",
                     "application/json+fhir", "fhir+json"})


def _ranges(header: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for part in header.split(","):
        media, *raw = [p.strip() for p in part.split(";")]
        params = {}
        for item in raw:
            key, _, value = item.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        if media:
            out.append((media.lower(), params))
    return out


def acceptable(header: str | None) -> bool:
    """Whether an Accept header admits FHIR R4 JSON."""
    if header is None or not header.strip():
        return True
    for media, params in _ranges(header):
        if params.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        version = params.get("fhirversion")
        if media in JSON_TYPES and (version is None or version in FHIR_VERSIONS):
            return True
    return False


async def negotiate(request: Request) -> None:
    """Router dependency for /fhir: 406 unless the client takes FHIR R4 JSON (async: no
    thread hop for a check that does no I/O)."""
    for value in request.query_params.getlist("_format"):
        # an unencoded '+' arrives as a space (application/fhir json)
        if value.strip().lower().replace(" ", "+") not in FORMATS:
            raise NotAcceptable("This server speaks FHIR R4 in JSON only: _format must be "
                                "json or application/fhir+json.")
    if not acceptable(request.headers.get("accept")):
        raise NotAcceptable("This server answers in FHIR R4 (4.0) JSON only: accept "
                            "application/fhir+json (without another fhirVersion).")
