"""The fault tool itself: each proxy mode does what the scenarios rely on."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.faults.proxy import TCPProxy


def echo(conn: socket.socket) -> None:
    with contextlib.suppress(OSError), conn:  # the proxy's reset mode cuts this side too
        while data := conn.recv(1024):
            conn.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[TCPProxy]:
    proxy = TCPProxy(echo_port).start()
    yield proxy
    proxy.stop()


def connect(proxy: TCPProxy) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    conn.settimeout(1)
    return conn


def test_pass_and_latency(proxy: TCPProxy) -> None:
    conn = connect(proxy)
    conn.sendall(b"ping")
    assert conn.recv(10) == b"ping"
    proxy.set_mode("latency", latency=0.3)
    conn.sendall(b"slow")
    assert conn.recv(10) == b"slow"


def test_blackhole_holds_bytes_until_it_heals(proxy: TCPProxy) -> None:
    conn = connect(proxy)
    proxy.set_mode("blackhole")
    conn.sendall(b"held")
    with pytest.raises(TimeoutError):
        conn.recv(10)
    proxy.set_mode("pass")
    assert conn.recv(10) == b"held"


def test_reset_cuts_open_connections(proxy: TCPProxy) -> None:
    conn = connect(proxy)
    conn.sendall(b"x")
    assert conn.recv(10) == b"x"
    proxy.set_mode("reset")
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        conn.sendall(b"y")
        conn.recv(10)


def test_refuse_then_listen_again(proxy: TCPProxy) -> None:
    proxy.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    proxy.set_mode("pass")
    conn = connect(proxy)
    conn.sendall(b"back")
    assert conn.recv(10) == b"back"
