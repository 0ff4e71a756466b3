"""`dossier serve`'s HTTP protocol sets TCP_NODELAY even on a listening socket rebuilt from
its file descriptor, as uvicorn's worker processes do (protocol 0: asyncio skips it).
With `--workers N` each worker listens on its own SO_REUSEPORT socket (`run_workers`), so
the kernel spreads connections over the workers instead of the one awake worker
accepting a burst alone."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from collections.abc import Callable

import pytest
from uvicorn.supervisors import multiprocess

from dossier.serving import (
    NoDelayProtocol,
    OwnSocketProcess,
    port_is_free,
    reuse_port_socket,
    set_nodelay,
)


def _rebuilt_listener() -> socket.socket:
    original = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    original.bind(("127.0.0.1", 0))
    original.listen()
    rebuilt = socket.fromfd(original.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    original.close()
    return rebuilt


def _accepted_nodelay(protocol_factory: Callable[[], asyncio.Protocol],
                      loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
                      ) -> int:
    """TCP_NODELAY of a connection accepted by `protocol_factory`'s protocol."""
    async def main() -> int:
        listener = _rebuilt_listener()
        assert listener.proto == 0  # what a uvicorn worker process gets
        seen: list[int] = []

        def probing() -> asyncio.Protocol:
            protocol = protocol_factory()
            made = protocol.connection_made

            def connection_made(transport: asyncio.BaseTransport) -> None:
                made(transport)
                sock = transport.get_extra_info("socket")
                seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

            protocol.connection_made = connection_made  # type: ignore[method-assign]
            return protocol

        server = await asyncio.get_running_loop().create_server(probing, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()
        return seen[0]

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def test_a_plain_protocol_on_a_rebuilt_socket_has_nagle_on() -> None:
    # the defect this module fixes: if asyncio ever sets it itself, this test says so
    class Plain(asyncio.Protocol):  # a __dict__, unlike asyncio.Protocol itself
        pass

    assert _accepted_nodelay(Plain) == 0


def test_set_nodelay_turns_nagle_off_on_each_connection() -> None:
    class Plain(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            set_nodelay(transport)

    assert _accepted_nodelay(Plain) != 0


def test_serve_runs_on_uvloop() -> None:
    """uvicorn's default loop ("auto") is uvloop when it is installed, as it is (a pinned
    dependency): psycopg's waits cost 13 % of a read on asyncio's (docs/benchmarks.md)."""
    import uvloop
    from uvicorn import Config

    factory = Config(lambda: None).get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_served_protocol_turns_nagle_off(loop: str) -> None:
    """The protocol `dossier serve` hands uvicorn, on the socket a worker process gets,
    on either event loop."""
    import functools

    from uvicorn import Config
    from uvicorn.server import ServerState

    async def app(scope: object, receive: object, send: object) -> None:
        return None

    config = Config(app, http=NoDelayProtocol, log_level="warning")
    config.load()
    assert config.http_protocol_class is NoDelayProtocol
    factory = functools.partial(NoDelayProtocol, config=config, server_state=ServerState(),
                                app_state={})
    loops = Config(app, loop=loop).get_loop_factory()
    assert _accepted_nodelay(factory, loops) != 0  # type: ignore[arg-type]


def test_serve_hands_uvicorn_the_nodelay_protocol(monkeypatch: object) -> None:
    import argparse

    import uvicorn

    from dossier import cli
    from dossier.settings import load_settings

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))  # type: ignore[attr-defined]
    monkeypatch.setattr("dossier.app.create_app", lambda settings: object())  # type: ignore[attr-defined]
    frozen: list[bool] = []
    monkeypatch.setattr("dossier.serving.settle_heap", lambda: frozen.append(True))  # type: ignore[attr-defined]
    settings = load_settings(database_url="sqlite:///:memory:")
    assert cli.cmd_serve(argparse.Namespace(workers=None), settings) == 0
    assert seen["http"] is NoDelayProtocol
    assert frozen == [True]  # what the process loaded is out of the collector's sight


def test_settle_heap_freezes_what_is_loaded() -> None:
    import gc

    from dossier.serving import settle_heap

    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        # young collections wait for 10,000 new objects, not 700; the others as they were
        assert gc.get_threshold() == (10_000, *before[1:])
    finally:
        gc.unfreeze()  # the test process builds many apps: they must stay collectable
        gc.set_threshold(*before)


def test_uvicorns_supervisor_makes_its_workers_by_its_module_name_process() -> None:
    """run_workers swaps `multiprocess.Process` while the supervisor runs: every place
    the supervisor makes a worker must look that name up (a uvicorn upgrade that stops
    doing so fails here, not silently in production)."""
    sup = multiprocess.Multiprocess
    for method in (sup.init_processes, sup.keep_subprocess_alive, sup.restart_all,
                   sup.handle_ttin):
        assert "Process" in method.__code__.co_names, method.__name__
    assert issubclass(OwnSocketProcess, multiprocess.Process)


def test_the_held_socket_keeps_the_port_and_queues_nothing() -> None:
    held = reuse_port_socket("127.0.0.1", 0)
    port = held.getsockname()[1]
    try:
        with socket.socket() as probe:  # not listening: a connection is refused
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        with socket.socket() as other:  # without SO_REUSEPORT nobody else binds the port
            with pytest.raises(OSError, match="in use") as refused:
                other.bind(("127.0.0.1", port))
            assert refused.value.errno == errno.EADDRINUSE
    finally:
        held.close()


def test_serve_refuses_a_port_in_use_even_one_shared_by_so_reuseport() -> None:
    """SO_REUSEPORT would share the port with any process of the same user holding it
    the same way (a second `serve`, an old version): `run_workers` checks first."""
    free = reuse_port_socket("127.0.0.1", 0)
    port = free.getsockname()[1]
    free.close()
    assert port_is_free("127.0.0.1", port)
    for shared in (True, False):
        with socket.socket() as listener:
            if shared:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            assert not port_is_free("127.0.0.1", port), shared


def test_connections_are_spread_over_the_workers_sockets() -> None:
    """Two listeners on one port, as two workers: 64 connections reach both, and none
    is queued on the supervisor's held socket."""
    held = reuse_port_socket("127.0.0.1", 0)
    port = held.getsockname()[1]
    workers = [reuse_port_socket("127.0.0.1", port) for _ in range(2)]
    counts = [0, 0]
    try:
        for sock in workers:
            sock.listen(128)
            sock.settimeout(5)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5)
                   for _ in range(64)]

        def accept(i: int) -> None:
            workers[i].settimeout(0.5)
            while True:
                try:
                    conn, _ = workers[i].accept()
                except TimeoutError:
                    return
                counts[i] += 1
                conn.close()

        threads = [threading.Thread(target=accept, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in clients:
            c.close()
    finally:
        for sock in (held, *workers):
            sock.close()
    assert sum(counts) == 64
    assert min(counts) >= 8, counts  # hashed over both (a shared socket: often 64 and 0)
