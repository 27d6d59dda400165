"""The fault proxy itself, against an in-process echo server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults.proxy import FaultProxy

RECV_TIMEOUT_S = 5.0


class EchoServer:
    """Echoes every byte back; counts the connections it accepted."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self.peer_errors: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError as exc:
                    self.peer_errors.append(type(exc).__name__)
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", echo.port)) as running:
        yield running


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=RECV_TIMEOUT_S)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_forwards_both_ways(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        payload = bytes(range(256)) * 1000
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
    stats = proxy.stats()
    assert stats.accepted == 1
    assert stats.bytes_up == stats.bytes_down == len(payload)


def test_reset_all_sends_a_reset_to_both_sides(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"ping")
        assert recv_exactly(sock, 4) == b"ping"
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            sock.sendall(b"x")  # the RST may land on the first send or the next recv
            sock.recv(1)
    deadline = time.monotonic() + RECV_TIMEOUT_S
    while not echo.peer_errors and time.monotonic() < deadline:
        time.sleep(0.02)
    assert echo.peer_errors == ["ConnectionResetError"]
    assert proxy.stats().open == 0
    with connect(proxy) as again:  # the proxy itself keeps serving
        again.sendall(b"pong")
        assert recv_exactly(again, 4) == b"pong"


def test_blackhole_holds_bytes_until_it_ends(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"a")
        assert recv_exactly(sock, 1) == b"a"
        started = time.monotonic()
        proxy.blackhole(1.5)
        sock.sendall(b"b")
        with connect(proxy) as late:  # a connection opened in the black hole
            late.sendall(b"c")
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(1)
            assert echo.accepted == 1, "a new connection reached the upstream in a black hole"
            sock.settimeout(RECV_TIMEOUT_S)
            assert recv_exactly(sock, 1) == b"b"
            assert time.monotonic() - started >= 1.4
            assert recv_exactly(late, 1) == b"c"
    assert echo.accepted == 2


def test_heal_ends_a_black_hole_early(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        proxy.blackhole(60)
        sock.sendall(b"z")
        time.sleep(0.2)
        proxy.heal()
        assert recv_exactly(sock, 1) == b"z"


def test_latency_delays_every_chunk_each_way(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"warm")
        assert recv_exactly(sock, 4) == b"warm"
        proxy.latency(200)
        started = time.monotonic()
        sock.sendall(b"slow")
        assert recv_exactly(sock, 4) == b"slow"
        assert time.monotonic() - started >= 0.39  # 200 ms there, 200 ms back
        proxy.latency(0)
        started = time.monotonic()
        sock.sendall(b"fast")
        assert recv_exactly(sock, 4) == b"fast"
        assert time.monotonic() - started < 0.2
