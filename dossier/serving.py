"""How `dossier serve` runs uvicorn.

With `--workers N`, uvicorn hands the listening socket to each worker process, which
rebuilds it from its file descriptor; the rebuilt socket reports protocol 0 instead of
TCP, so asyncio does not set TCP_NODELAY on the connections it accepts. Nagle's
algorithm then holds the response body until the client's delayed ACK (~40 ms): a read
that takes 1.5 ms took 44 ms at one connection (measured, docs/benchmarks.md). The
protocol below sets TCP_NODELAY on every accepted TCP connection, whatever the socket's
history.

`run_workers` runs uvicorn's supervisor (restarts, signals) with each worker listening on
a socket of its own, bound with SO_REUSEPORT: the kernel spreads new connections evenly
over the workers. With the one socket uvicorn shares, whichever worker was awake
accepted a burst of connections alone: in two runs of three, all 32 of wrk's connections
went to one of two workers, which served at half the rate (docs/benchmarks.md,
"Session 10").

`settle_heap` runs once the app is built: the ~170,000 objects of the code and its FHIR
models stay for the life of the process, and Python's full garbage collection walked all
of them (~80 ms with the interpreter lock held: every request in the process waited).
It also raises the collector's first threshold: with 16 requests in flight, the default
(700) started ~110 collections a second, a full one of 7–13 ms every second or so
(docs/benchmarks.md, "Session 15").

`background_process` starts `dossier worker` beside the serving processes on PostgreSQL:
the audit sequencer, the notifier and the other background workers then take no turn of
a serving process's interpreter lock (a consented read cost 10-25 % more server CPU with
them in the same process: docs/benchmarks.md, "Session 8").
"""

from __future__ import annotations

import asyncio
import gc
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors.multiprocess import Process

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


# New container objects (net of those freed) before a young collection; Python's is 700.
YOUNG_COLLECTION_AFTER = 10_000


def settle_heap() -> None:
    """A serving process keeps what it loaded at start (modules, FHIR models, the app) for
    its whole life: moved out of the garbage collector's sight (`gc.freeze`), a full
    collection walks only what requests made — ~28,000 objects instead of ~200,000, 9 ms
    instead of 85. Only in `dossier serve` and `dossier worker`: a process that builds
    many apps (the tests) would keep them.

    Then the collector waits for 10,000 new container objects instead of 700. Reference
    counting frees what a request made when it ends; the collector is only for cycles.
    Under load the objects of the requests in flight passed 700 again and again: ~110
    young collections, ~10 middle ones and one full one (7–13 ms, every request in the
    process waiting) each second, 0.05 ms of a read's ~1 ms of CPU. With 10,000 a 10 s
    read load started none. What waits for the collector is at most 10,000 objects in
    cycles: a few megabytes."""
    gc.collect()
    gc.freeze()
    _, middle, full = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, middle, full)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn reads a host


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT, not listening."""
    return _bound(_family(host), (host, port))


def _bound(family: int, address: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def port_is_free(host: str, port: int) -> bool:
    """Whether (host, port) can be bound without SO_REUSEPORT: nobody holds it, not even
    another process sharing it by SO_REUSEPORT (a second `serve`, an old version)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class OwnSocketProcess(Process):
    """A uvicorn worker that listens on its own SO_REUSEPORT socket, bound to the address
    of the one its supervisor holds (bound, never listening: it keeps the port and no
    connection is queued on it). A worker that cannot bind exits as a failed start: the
    supervisor stops instead of restarting it again and again."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        own = []
        for held in sockets or []:
            family, address = held.family, held.getsockname()  # IPv6: with its scope id
            held.close()
            try:
                own.append(_bound(family, address))
            except OSError as exc:
                print(f"error: a worker could not listen ({exc.strerror})", file=sys.stderr,
                      flush=True)
                sys.exit(STARTUP_FAILURE)
        super().target(own)


def run_workers(config: Config) -> None:
    """`config.workers` uvicorn workers under uvicorn's supervisor, each on its own socket.
    The supervisor makes its workers by the name `Process` of its module; it is this
    class while it runs (uvicorn is pinned; tests/unit/test_serving.py checks). The port
    must be free: SO_REUSEPORT would otherwise share it with whoever holds it."""
    from uvicorn.supervisors import multiprocess

    if not port_is_free(config.host, config.port):
        print(f"error: {config.host}:{config.port} is in use", file=sys.stderr, flush=True)
        raise SystemExit(1)
    held = reuse_port_socket(config.host, config.port)
    made, multiprocess.Process = multiprocess.Process, OwnSocketProcess  # type: ignore[misc]
    try:
        multiprocess.Multiprocess(config, sockets=[held]).run()
    finally:
        multiprocess.Process = made  # type: ignore[misc]
        held.close()


READY_SECONDS = 30.0  # how long `serve` waits for its background process's first campaign
STOP_SECONDS = 45.0  # how long `serve` lets it stop (its workers end their current run)


@contextmanager
def background_process(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`dossier worker` as a child of `serve`, with `env` (the settings the parent
    exported). It campaigns for the leader lock before the serving processes start, so it
    normally leads; they stand by and one takes over within seconds if it dies. Stopped
    (SIGTERM) when `serve` ends; it also ends by itself if `serve` is killed."""
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "dossier", "worker"], pass_fds=(write_end,),
            env={**os.environ, **env, "DOSSIER_READY_FD": str(write_end)})
    finally:
        os.close(write_end)
    stopping = threading.Event()
    try:
        try:
            ready, _, _ = select.select([read_end], [], [], READY_SECONDS)
            if not (ready and os.read(read_end, 1)):
                print("warning: the background process did not start in time; a serving "
                      "process runs the background workers", file=sys.stderr, flush=True)
        finally:
            os.close(read_end)
        threading.Thread(target=_report_end, args=(child, stopping),
                         name="background-watch", daemon=True).start()
        yield child
    finally:  # also when interrupted while waiting for it
        stopping.set()
        child.terminate()
        try:
            child.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _report_end(child: subprocess.Popen[bytes], stopping: threading.Event) -> None:
    """Say so when the background process ends before `serve` (it is not restarted: a
    serving process has taken the lead and keeps it)."""
    code = child.wait()
    if not stopping.is_set():
        print(f"warning: the background process ended (exit code {code}); a serving "
              "process runs the background workers", file=sys.stderr, flush=True)
