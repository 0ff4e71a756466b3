"""How `dossier serve` runs uvicorn.

With `--workers N`, uvicorn hands the listening socket to each worker process, which
rebuilds it from its file descriptor; the rebuilt socket reports protocol 0 instead of
TCP, so asyncio does not set TCP_NODELAY on the connections it accepts. Nagle's
algorithm then holds the response body until the client's delayed ACK (~40 ms): a read
that takes 1.5 ms took 44 ms at one connection (measured, docs/benchmarks.md). The
protocol below sets TCP_NODELAY on every accepted TCP connection, whatever the socket's
history.

`settle_heap` runs once the app is built: the ~170,000 objects of the code and its FHIR
models stay for the life of the process, and Python's full garbage collection walked all
of them (~80 ms with the interpreter lock held: every request in the process waited).
"""

from __future__ import annotations

import asyncio
import gc
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # the C parser when installed (uvicorn's "standard" extra); h11 otherwise
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is a pinned dependency
    _Base = H11Protocol  # type: ignore[assignment,misc]


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayProtocol(_Base):
    """uvicorn's HTTP/1.1 protocol, with TCP_NODELAY on each connection."""

    def connection_made(self, transport: Any) -> None:
        set_nodelay(transport)
        super().connection_made(transport)


def settle_heap() -> None:
    """A serving process keeps what it loaded at start (modules, FHIR models, the app) for
    its whole life: moved out of the garbage collector's sight (`gc.freeze`), a full
    collection walks only what requests made — ~28,000 objects instead of ~200,000, 9 ms
    instead of 85. Only in `dossier serve`: a process that builds many apps (the tests)
    would keep them."""
    gc.collect()
    gc.freeze()
