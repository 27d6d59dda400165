"""A small HTTP server for ``/metrics``, ``/health/live`` and ``/health/ready``.

Standard library only (``ThreadingHTTPServer`` in a daemon thread) plus prometheus-client's
exposition: cheap enough to run inside the scorer process, no ASGI server needed.

- ``GET /metrics``: the registry in the Prometheus text format (OpenMetrics if asked for in
  ``Accept``).
- ``GET /health/live`` and ``GET /health/ready``: 200 or 503 with a JSON body
  ``{"status": "ok"|"fail", "checks": {...}}``. Without a health function both are 200.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
#: How often serve_forever checks for shutdown: close() takes up to this long.
SHUTDOWN_POLL_S = 0.1


@dataclass(frozen=True)
class Health:
    """Answer of a health function: liveness, readiness and the checks behind them."""

    live: bool
    ready: bool
    checks: Mapping[str, Any] = field(default_factory=dict)


HealthFn = Callable[[], Health]


class MetricsServer:
    """A running server; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(CLOSE_TIMEOUT_S)
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(
    registry: CollectorRegistry, health_fn: HealthFn | None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "churnstream-metrics"

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            try:
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._send(200, encoder(registry), content_type)
                elif path in ("/health/live", "/health/ready"):
                    self._health(path.endswith("ready"))
                elif path == "/":
                    body = b"churnstream: /metrics /health/live /health/ready\n"
                    self._send(200, body, "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")
            except ConnectionError as exc:
                self._gone(path, exc)
            except Exception:  # a failing check answers 500, never kills the server
                logger.exception("error serving %s", path)
                try:
                    self._send(500, b"internal error\n", "text/plain; charset=utf-8")
                except ConnectionError as exc:
                    self._gone(path, exc)

        def _gone(self, path: str, exc: ConnectionError) -> None:
            # A scraper that timed out and hung up: nothing to answer, nothing wrong here.
            logger.debug(
                "client %s went away while %s was served: %s", self.client_address, path, exc
            )
            self.close_connection = True

        def _health(self, ready: bool) -> None:
            health = health_fn() if health_fn is not None else Health(True, True)
            ok = health.ready if ready else health.live
            body = orjson.dumps(
                {"status": "ok" if ok else "fail", "checks": dict(health.checks)},
                option=orjson.OPT_NON_STR_KEYS,
            )
            self._send(200 if ok else 503, body, "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            logger.debug("%s %s", self.address_string(), format % args)

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up while its request was read: one DEBUG line, not the
        standard library's traceback on stderr."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("client %s went away: %s", client_address, sys.exc_info()[1])
            return
        super().handle_error(request, client_address)


def start_metrics_server(
    port: int,
    registry: CollectorRegistry,
    health_fn: HealthFn | None = None,
    *,
    host: str = "127.0.0.1",
) -> MetricsServer:
    """Serve ``registry`` and the health endpoints on ``host:port`` from a daemon thread.

    ``port`` 0 picks a free port (see ``.port`` of the result). Raises OSError if the port
    is taken.
    """
    httpd = _Server((host, port), _handler(registry, health_fn))
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": SHUTDOWN_POLL_S},
        name=f"metrics-http-{port}",
        daemon=True,
    )
    thread.start()
    server = MetricsServer(httpd, thread)
    logger.info("metrics and health on %s/metrics", server.url)
    return server
