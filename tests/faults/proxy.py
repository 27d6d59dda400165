"""A TCP proxy for fault-injection tests: connection resets, black holes and added latency.

:class:`FaultProxy` listens on 127.0.0.1 (an ephemeral port unless one is given) and forwards
every connection to ``upstream``. Its event loop runs in a daemon thread, so a test drives it
with plain calls::

    with FaultProxy(("127.0.0.1", broker_port)) as proxy:
        client_connects_to(proxy.address)
        proxy.reset_all()        # every open connection gets a TCP RST, on both sides
        proxy.blackhole(30)      # 30 s in which nothing is forwarded, in either direction
        proxy.latency(200)       # from now on every chunk arrives 200 ms late
        proxy.heal()             # no black hole, no added latency

A black hole holds bytes rather than dropping them: they flow again when it ends, as TCP
retransmission delivers them after a short partition (dropping bytes mid-stream would
corrupt the protocol's framing, which no real network does). Connections opened during a
black hole are accepted and reach the upstream only when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

CHUNK_BYTES = 65_536
GATE_POLL_S = 0.02
START_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 10.0
# SO_LINGER on, 0 s: close() discards unsent data and sends a RST instead of a FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass
class ProxyStats:
    """Counts since the proxy started (a snapshot; see :meth:`FaultProxy.stats`)."""

    accepted: int = 0
    open: int = 0
    reset: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0  # client -> upstream
    bytes_down: int = 0  # upstream -> client


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """A forwarding TCP proxy whose faults are switched on and off from another thread."""

    def __init__(
        self, upstream: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self._blocked_until = 0.0  # monotonic; forwarding waits while now < this
        self._latency_s = 0.0
        self._stats = ProxyStats()
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Start listening; returns once :attr:`port` is bound."""
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise RuntimeError(f"the proxy did not start within {START_TIMEOUT_S:g}s")
        if self._start_error is not None:
            raise RuntimeError(f"the proxy could not start: {self._start_error}")
        return self

    def close(self) -> None:
        """Stop listening and close every connection (gracefully)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(CONTROL_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CONTROL_TIMEOUT_S)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        """``HOST:PORT`` to give clients instead of the upstream's."""
        return f"{self.host}:{self.port}"

    # -- faults ----------------------------------------------------------------------------
    def reset_all(self) -> int:
        """Close every open connection with a RST on both sides; returns how many."""
        return int(self._call(self._reset_all()))

    def blackhole(self, seconds: float) -> None:
        """From now on, forward nothing for ``seconds`` (non-blocking; :meth:`heal` ends it)."""
        self._blocked_until = time.monotonic() + seconds
        logger.info("proxy %s: black hole for %.1fs", self.address, seconds)

    def latency(self, ms: float) -> None:
        """Deliver every chunk read from now on ``ms`` later (0: no added latency)."""
        self._latency_s = max(0.0, ms / 1000.0)
        logger.info("proxy %s: %.0f ms added latency per chunk", self.address, ms)

    def heal(self) -> None:
        """End any black hole and added latency."""
        self._blocked_until = 0.0
        self._latency_s = 0.0

    @property
    def blackholed(self) -> bool:
        return time.monotonic() < self._blocked_until

    def stats(self) -> ProxyStats:
        return ProxyStats(**vars(self._stats))

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port)
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
        except OSError as exc:
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _call(self, coro: object) -> object:
        if self._loop is None:
            raise RuntimeError("the proxy is not started")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(CONTROL_TIMEOUT_S)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            for task in conn.tasks:
                task.cancel()
            conn.client.close()
            conn.upstream.close()
        self._connections.clear()

    async def _reset_all(self) -> int:
        conns = list(self._connections)
        for conn in conns:
            for task in conn.tasks:
                task.cancel()
            for writer in (conn.client, conn.upstream):
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                writer.transport.abort()
            self._connections.discard(conn)
        self._stats.reset += len(conns)
        self._stats.open = len(self._connections)
        logger.info("proxy %s: reset %d connection(s)", self.address, len(conns))
        return len(conns)

    async def _wait_open(self) -> None:
        while (remaining := self._blocked_until - time.monotonic()) > 0:
            await asyncio.sleep(min(remaining, GATE_POLL_S))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._stats.accepted += 1
        await self._wait_open()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError as exc:
            logger.info("proxy %s: upstream %s: %s", self.address, self.upstream, exc)
            self._stats.upstream_failures += 1
            writer.transport.abort()
            return
        conn = _Connection(writer, up_writer)
        self._connections.add(conn)
        self._stats.open = len(self._connections)
        conn.tasks = [
            asyncio.ensure_future(self._pump(reader, up_writer, upstream=True)),
            asyncio.ensure_future(self._pump(up_reader, writer, upstream=False)),
        ]
        try:
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if conn in self._connections:  # not reset: one side ended, close the other
                self._connections.discard(conn)
                self._stats.open = len(self._connections)
                for task in conn.tasks:
                    task.cancel()
                writer.close()
                up_writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        """Read chunks as they come; deliver each one at read time + latency, gates allowing."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._wait_open()
                if upstream:
                    self._stats.bytes_up += len(chunk)
                else:
                    self._stats.bytes_down += len(chunk)
                writer.write(chunk)
                await writer.drain()

        async def read() -> None:
            while True:
                chunk = await reader.read(CHUNK_BYTES)
                queue.put_nowait((time.monotonic() + self._latency_s, chunk))
                if not chunk:
                    return

        tasks = [asyncio.ensure_future(read()), asyncio.ensure_future(deliver())]
        try:
            # Returns when either side fails, or once EOF has been read and everything read
            # before it delivered.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: a reset peer is expected here, not news
