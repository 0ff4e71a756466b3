"""SMART App Launch v2 scopes: parsing and matching.

Grammar (SMART v2, with the v1 suffixes still accepted)::

    scope      = context "/" type "." perms [ "?" query ]
    context    = "patient" / "user" / "system"
    type       = "*" / FHIR resource type
    perms      = v2 letters in the order c r u d s (at least one)
               / "read" (= rs) / "write" (= cud) / "*" (= cruds)

OpenID and launch scopes (``openid``, ``fhirUser``, ``launch`` …) are
recognised and carry no resource permission. A scope with a ``?query``
restriction is valid but grants nothing: the server cannot enforce the
narrowing it asks for, and ignoring the narrowing would widen access.
Anything else is garbage and makes the whole token invalid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, cast

from auth.errors import InvalidToken

Context = Literal["patient", "user", "system"]

INTERACTIONS = "cruds"
CONTEXTS: tuple[Context, ...] = ("patient", "user", "system")

# Scopes of OpenID Connect and of the SMART launch that name no resource.
NON_RESOURCE_SCOPES = frozenset({
    "openid", "fhirUser", "profile", "email", "offline_access", "online_access",
    "launch", "launch/patient", "launch/encounter",
})

_V1_PERMS = {"read": "rs", "write": "cud", "*": INTERACTIONS}
_RESOURCE_SCOPE = re.compile(
    r"(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})"
    r"\.(?P<perms>read|write|\*|c?r?u?d?s?)(?P<query>\?.*)?",
)
# RFC 6749 §3.3 scope-token characters.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
MAX_SCOPE_LENGTH = 4096


@dataclass(frozen=True)
class Scope:
    """One resource scope: a context, a resource type (or ``*``) and interactions."""

    context: Context
    resource_type: str
    interactions: frozenset[str]

    def __str__(self) -> str:
        letters = "".join(i for i in INTERACTIONS if i in self.interactions)
        return f"{self.context}/{self.resource_type}.{letters}"

    def grants(self, resource_type: str, interaction: str) -> bool:
        return (self.resource_type in ("*", resource_type)
                and interaction in self.interactions)


def parse_scope(token: str) -> Scope | None:
    """Parse one scope token; ``None`` for a valid scope that grants no resource access."""
    if token in NON_RESOURCE_SCOPES:
        return None
    match = _RESOURCE_SCOPE.fullmatch(token)
    if match is None or not match["perms"]:
        raise InvalidToken("scope not understood")
    if match["query"] is not None:
        return None
    perms = _V1_PERMS.get(match["perms"], match["perms"])
    return Scope(cast(Context, match["context"]), match["type"], frozenset(perms))


# A pure parse into frozen Scopes (every token of a client carries the same string; the
# parse was 3 % of a read's CPU). No decision is kept: what a scope grants is asked anew.
@lru_cache(maxsize=512)
def parse_scopes(scope_string: str) -> tuple[Scope, ...]:
    """Parse a space-separated scope string into resource scopes (duplicates dropped).

    Raises ``InvalidToken`` when any token is not a scope this server understands.
    """
    if len(scope_string) > MAX_SCOPE_LENGTH:
        raise InvalidToken("scope string too long")
    scopes: list[Scope] = []
    for token in scope_string.split(" "):
        if not token:
            continue
        if _SCOPE_TOKEN.fullmatch(token) is None:
            raise InvalidToken("scope has characters outside RFC 6749 scope-token")
        scope = parse_scope(token)
        if scope is not None and scope not in scopes:
            scopes.append(scope)
    return tuple(scopes)


def format_scopes(scopes: Iterable[Scope]) -> str:
    """The canonical SMART v2 spelling of scopes, space-separated."""
    return " ".join(str(scope) for scope in scopes)


def _check_interaction(interaction: str) -> None:
    if len(interaction) != 1 or interaction not in INTERACTIONS:
        raise ValueError(f"interaction must be one of {INTERACTIONS!r}")


def allows(scopes: Iterable[Scope], resource_type: str, interaction: str) -> bool:
    """Whether any scope grants ``interaction`` (one of c r u d s) on ``resource_type``."""
    _check_interaction(interaction)
    return any(scope.grants(resource_type, interaction) for scope in scopes)


def covered(granted: Iterable[Scope], requested: Scope) -> bool:
    """Whether every interaction of ``requested`` is granted in its own context."""
    same_context = [s for s in granted if s.context == requested.context]
    if requested.resource_type == "*":
        same_context = [s for s in same_context if s.resource_type == "*"]
    return all(allows(same_context, requested.resource_type, i) for i in requested.interactions)
