"""Registry of FHIR operations ($name) so routes stay generic; each concern adds its own.

A handler gets the Repository of the request's unit (already inside its transaction,
principal resolved) and the Call; it never opens a transaction itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from auth.rules import SCOPE_CONTEXT
from auth.scopes import allows
from dossier.errors import Forbidden

if TYPE_CHECKING:
    from auth.actor import Principal
    from dossier.core.repository import Repository


@dataclass(frozen=True)
class Call:
    """One invocation: where it was made, its parameters and body."""

    resource_type: str | None
    resource_id: str | None
    params: list[tuple[str, str]]
    body: dict[str, Any] | None
    method: str = "GET"
    prefer: str = ""  # the Prefer header (respond-async, handling=lenient)

    @property
    def lenient(self) -> bool:
        return "handling=lenient" in self.prefer.replace(" ", "").lower()


Handler = Callable[["Repository", Call], Any]
READ_GET_WRITE_POST: Mapping[str, str] = {"GET": "read", "POST": "write"}


@dataclass(frozen=True)
class Operation:
    name: str  # without the $
    level: str  # "instance" | "type" | "system"
    resource_type: str | None
    methods: frozenset[str]
    handler: Handler
    definition: str
    # per method, what the operation does to the dossier: "read" or "write" (the SMART
    # interaction its scopes must allow; a "write" unit takes the write lock)
    access: Mapping[str, str] = field(default_factory=lambda: dict(READ_GET_WRITE_POST))
    stateful: bool = False  # keeps state of its own (a job, a grant) even when it reads

    def writes(self, method: str) -> bool:
        """Whether the unit changes the database (takes the write lock on SQLite)."""
        return self.stateful or self.access.get(method, "write") == "write"

    def check_scopes(self, method: str, principal: Principal,
                     resource_type: str | None) -> None:
        """The token's scopes must allow what the operation declares for ``method``: a
        "read" needs `r` on the type it is invoked on, a "write" needs `u` (a method with
        no declaration counts as a write). System level: on any type (`*` or some type).
        Roles are the handler's business; this is the scope half of the gate."""
        interaction = "r" if self.access.get(method, "write") == "read" else "u"
        context = SCOPE_CONTEXT[principal.role]
        usable = [s for s in principal.scopes if s.context == context]
        resource_type = resource_type or self.resource_type
        if resource_type is not None:
            ok = allows(usable, resource_type, interaction)
        else:
            ok = any(interaction in s.interactions for s in usable)
        if not ok:
            kind = "read" if interaction == "r" else "change"
            raise Forbidden(f"The scopes of your token do not allow ${self.name}: it needs "
                            f"to {kind} {resource_type or 'data'}.")


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
