"""The portal's only way to data: the same code paths as a FHIR client.

A page builds the RequestContext from the user's access token with the very function
/fhir uses (`app.state.resolve_context`), then works through `Runtime.unit` (the
Repository: consent, decryption, audit) or the registered operation handlers of
`dossier/fhir/operations.py`. Audit proofs come from the /audit route functions
themselves. Nothing here reads a table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dossier.core.context import RequestContext
from dossier.core.repository import Repository
from dossier.core.runtime import Runtime
from dossier.errors import DossierError
from dossier.fhir import operations

T = TypeVar("T")


class OperationUnavailable(Exception):
    """The operation is not registered on this server (yet)."""


class ApiError(Exception):
    """An API refusal, carried to the page: HTTP status and the API's safe message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bearer_request(app: FastAPI, token: str, query: str = "", path: str = "/portal") -> Request:
    """A request carrying only the bearer token (and a query), for the API's own functions."""
    return Request({
        "type": "http", "app": app, "method": "GET", "path": path, "root_path": "",
        "scheme": "https", "query_string": query.encode("ascii"), "server": None,
        "headers": [(b"authorization", f"Bearer {token}".encode("ascii"))],
    })


class Gateway:
    def __init__(self, app: FastAPI, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    @property
    def fhir_base(self) -> str:
        return f"{self.runtime.settings.public_base}/fhir"

    async def context(self, token: str) -> RequestContext:
        """Exactly what /fhir resolves for `Authorization: Bearer <token>` (AuthError if bad)."""
        ctx: RequestContext = await self.app.state.resolve_context(
            bearer_request(self.app, token))
        ctx.base_url = self.fhir_base
        return ctx

    @contextmanager
    def unit(self, ctx: RequestContext, *, writes: bool = True) -> Iterator[Repository]:
        with self.runtime.unit(ctx, writes=writes) as repo:
            yield repo

    def has_operation(self, name: str) -> bool:
        return operations.find(name, "instance", "Patient") is not None

    def operation(self, ctx: RequestContext, name: str, patient_id: str, *,
                  method: str = "GET", params: Sequence[tuple[str, str]] = (),
                  body: dict[str, Any] | None = None) -> Any:
        """Run a registered Patient operation's handler, as /fhir/Patient/{id}/$name does."""
        found = operations.find(name, "instance", "Patient")
        if found is None or method not in found.methods:
            raise OperationUnavailable(name)
        call = operations.Call("Patient", patient_id, list(params), body, method)
        with self.runtime.unit(ctx, writes=found.writes(method)) as repo:
            return found.handler(repo, call)

    async def audit_json(self, route: str, token: str, query: str = "") -> Any:
        """The JSON of an /audit route (tree-head, public-key, inclusion) for this user."""
        from dossier.auditlog import routes as audit_api

        handlers = {"tree-head": audit_api.tree_head, "public-key": audit_api.public_key,
                    "inclusion": audit_api.inclusion}
        try:
            response = await handlers[route](bearer_request(self.app, token, query))
        except DossierError as error:
            raise ApiError(error.status, error.message) from None
        return json.loads(bytes(response.body))


async def call(work: Callable[[], T]) -> T:
    """Run blocking API work off the event loop; API refusals become ApiError."""
    def run() -> T:
        try:
            return work()
        except DossierError as error:
            raise ApiError(error.status, error.message) from None

    return await run_in_threadpool(run)
