"""`dossier serve --workers N`: each worker listens on its own SO_REUSEPORT socket
(dossier/serving.py run_workers), so the kernel spreads connections over the workers
instead of the one awake worker accepting a burst alone."""

from __future__ import annotations

import socket
import threading

from uvicorn.supervisors import multiprocess

from dossier.serving import OwnSocketProcess, reuse_port_socket


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
        other = socket.socket()
        try:  # without SO_REUSEPORT nobody else takes the port
            assert other.connect_ex(("127.0.0.1", port)) != 0
            try:
                other.bind(("127.0.0.1", port))
                raise AssertionError("the port was free")
            except OSError:
                pass
        finally:
            other.close()
    finally:
        held.close()


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
