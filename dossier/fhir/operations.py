"""Registry of FHIR operations ($name) so routes stay generic; each issue adds its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dossier.context import RequestContext

# handler(runtime, ctx, resource_type, resource_id, params: list[(k,v)], body: dict|None)
Handler = Callable[[Any, RequestContext, str | None, str | None, list[tuple[str, str]],
                    dict[str, Any] | None], Any]


@dataclass(frozen=True)
class Operation:
    name: str  # without the $
    level: str  # "instance" | "type" | "system"
    resource_type: str | None
    methods: frozenset[str]
    handler: Handler
    definition: str


REGISTRY: dict[tuple[str, str, str | None], Operation] = {}


def register(op: Operation) -> None:
    REGISTRY[(op.name, op.level, op.resource_type)] = op


def find(name: str, level: str, resource_type: str | None) -> Operation | None:
    return REGISTRY.get((name, level, resource_type)) or REGISTRY.get((name, level, None))


def capability_entries() -> list[dict[str, str]]:
    seen: dict[str, str] = {}
    for op in REGISTRY.values():
        seen.setdefault(op.name, op.definition)
    return [{"name": n, "definition": d} for n, d in sorted(seen.items())]
