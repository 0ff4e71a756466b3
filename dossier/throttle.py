"""Throttling of unauthenticated floods per client address (issue 16).

A refusal (a token that does not validate, a wrong password, a refused client) is
counted in the database (dossier/stores/refusals.py), shared by every process. Once an
address has more than `throttle_refusals_per_minute` refusals in the current minute,
this process answers its requests to the API and the issuer with 429 and Retry-After
until the minute ends — without reading the database for requests that go well."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from sqlalchemy import Engine

from dossier.stores.refusals import count_refusal

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
GUARDED = ("/fhir", "/auth/token", "/auth/authorize", "/audit", "/portal/callback")
MAX_BLOCKED = 10_000


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0])[:64] if client else "unknown"


class Throttle:
    def __init__(self, engine: Engine, limit: int) -> None:
        self.engine = engine
        self.limit = limit  # 0: off
        self._blocked: dict[str, int] = {}  # address → the minute it is blocked in
        self._lock = threading.Lock()

    def retry_after(self, address: str, now: float | None = None) -> int | None:
        now = time.time() if now is None else now
        if self._blocked.get(address) == int(now // 60):
            return max(1, 60 - int(now % 60))
        return None

    def refused(self, address: str, now: float | None = None) -> None:
        """Count one refusal (a database write; call it off the event loop)."""
        if self.limit <= 0:
            return
        now = time.time() if now is None else now
        minute = int(now // 60)
        total = count_refusal(self.engine, address, minute)
        if total >= self.limit:
            with self._lock:
                if len(self._blocked) >= MAX_BLOCKED:
                    self._blocked = {a: m for a, m in self._blocked.items() if m == minute}
                self._blocked[address] = minute


class ThrottleGate:
    """ASGI middleware: 429 for an address blocked in this minute (memory only)."""

    def __init__(self, app: ASGIApp, throttle: Throttle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(GUARDED):
            wait = self.throttle.retry_after(client_address(scope))
            if wait is not None:
                body = orjson.dumps({"resourceType": "OperationOutcome", "issue": [{
                    "severity": "error", "code": "throttled",
                    "diagnostics": "Too many refused requests from your address; try again "
                                   "later."}]})
                await send({"type": "http.response.start", "status": 429, "headers": [
                    (b"content-type", b"application/fhir+json; charset=utf-8"),
                    (b"retry-after", str(wait).encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
