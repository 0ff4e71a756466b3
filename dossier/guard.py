"""The outermost guard (issue 16, defect 6): nothing a request carries reaches a log.

Starlette's error middleware answers an unhandled exception and then re-raises it, so the
server logs its traceback — with SQL and bound parameters (who granted whom). This ASGI
middleware sits inside it, outside everything else: it logs the exception's type and the
route template only, answers 500 with an OperationOutcome if nothing was sent yet, and
never re-raises. It also refuses a URL holding a NUL character (400) before any code
reads it: PostgreSQL cannot store or compare one."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

log = logging.getLogger("dossier")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _outcome(status: int, code: str, message: str) -> bytes:
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": message}]})


def route_of(path: str) -> str:
    """A low-cardinality name of the path with no ids (for the log line)."""
    parts = [p for p in path.split("/") if p][:2]
    if len(parts) == 2 and parts[0] == "fhir" and parts[1][:1].isupper():
        parts[1] = "{type}"
    return "/" + "/".join(p if p.isascii() and len(p) < 40 else "…" for p in parts)


class Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or b""
        query = scope.get("query_string") or b""
        if b"\x00" in unquote_to_bytes(raw) or b"\x00" in unquote_to_bytes(
                query.replace(b"+", b" ")) or "\x00" in scope.get("path", ""):
            await self._answer(send, 400, "invalid", "The URL contains a NUL character, "
                                                     "which is not allowed.")
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - the last line of defence, by design
            log.error("unexpected error %s on %s %s", type(exc).__name__,
                      scope.get("method", "?"), route_of(scope.get("path", "")))
            if not started:
                await self._answer(send, 500, "exception",
                                   "An internal error occurred. Nothing was changed.")

    @staticmethod
    async def _answer(send: Send, status: int, code: str, message: str) -> None:
        body = _outcome(status, code, message)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/fhir+json; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]})
        await send({"type": "http.response.body", "body": body})
