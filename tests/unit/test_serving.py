"""`dossier serve`'s HTTP protocol sets TCP_NODELAY even on a listening socket rebuilt from
its file descriptor, as uvicorn's worker processes do (protocol 0: asyncio skips it)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from dossier.serving import NoDelayProtocol, set_nodelay


def _rebuilt_listener() -> socket.socket:
    original = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    original.bind(("127.0.0.1", 0))
    original.listen()
    rebuilt = socket.fromfd(original.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    original.close()
    return rebuilt


def _accepted_nodelay(protocol_factory: Callable[[], asyncio.Protocol]) -> int:
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

    return asyncio.run(main())


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


def test_the_served_protocol_turns_nagle_off() -> None:
    """The protocol `dossier serve` hands uvicorn, on the socket a worker process gets."""
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
    assert _accepted_nodelay(factory) != 0  # type: ignore[arg-type]


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

    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the test process builds many apps: they must stay collectable
