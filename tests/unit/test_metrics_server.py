"""The /metrics and /health HTTP server, on a loopback port chosen by the OS (no broker)."""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from churnstream.observability.server import Health, start_metrics_server


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_metrics_and_health_endpoints() -> None:
    registry = CollectorRegistry()
    Counter("demo_events", "doc", registry=registry).inc(3)
    state = {"ready": False}

    def health() -> Health:
        return Health(live=True, ready=state["ready"], checks={"model_loaded": state["ready"]})

    with start_metrics_server(0, registry, health) as server:
        assert server.port > 0
        base = server.url
        status, content_type, body = get(f"{base}/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        assert "demo_events_total 3.0" in body

        status, content_type, _ = get(f"{base}/metrics", "application/openmetrics-text")
        assert content_type.startswith("application/openmetrics-text")

        status, _, body = get(f"{base}/health/ready")
        assert status == 503
        assert json.loads(body) == {"status": "fail", "checks": {"model_loaded": False}}
        state["ready"] = True
        status, _, body = get(f"{base}/health/ready")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert get(f"{base}/health/live")[0] == 200
        assert get(f"{base}/nope")[0] == 404
        port = server.port
    # Closed: the port can be served again at once.
    with start_metrics_server(port, registry) as again:
        assert get(f"{again.url}/metrics")[0] == 200


def test_a_failing_health_function_answers_500_and_the_server_survives() -> None:
    def broken() -> Health:
        raise RuntimeError("boom")

    with start_metrics_server(0, CollectorRegistry(), broken) as server:
        assert get(f"{server.url}/health/ready")[0] == 500
        assert get(f"{server.url}/metrics")[0] == 200


def test_without_a_health_function_both_are_ok() -> None:
    with start_metrics_server(0, CollectorRegistry()) as server:
        assert get(f"{server.url}/health/live")[0] == 200
        assert get(f"{server.url}/health/ready")[0] == 200


def test_a_taken_port_is_an_os_error() -> None:
    with start_metrics_server(0, CollectorRegistry()) as server:
        with pytest.raises(OSError):
            start_metrics_server(server.port, CollectorRegistry())


def test_a_client_gone_mid_answer_is_one_debug_line_not_a_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A scraper that gave up and reset its connection (SO_LINGER 0: an RST) before the
    answer was written: writing it fails with a broken pipe or a reset."""
    gone = threading.Event()

    def health_after_the_client_left() -> Health:
        gone.wait(5)
        return Health(live=True, ready=True)

    with (
        caplog.at_level(logging.DEBUG, logger="churnstream.observability.server"),
        start_metrics_server(0, CollectorRegistry(), health_after_the_client_left) as server,
    ):
        client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        client.sendall(b"GET /health/ready HTTP/1.1\r\nHost: scraper\r\n\r\n")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        gone.set()
        assert get(f"{server.url}/health/live")[0] == 200  # the server serves on
    assert "Traceback" not in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    gone_lines = [r.getMessage() for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone_lines) == 1 and "/health/ready" in gone_lines[0], gone_lines


def test_a_client_gone_mid_request_is_one_debug_line_not_a_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The reset comes while the server still reads the request line."""
    with (
        caplog.at_level(logging.DEBUG, logger="churnstream.observability.server"),
        start_metrics_server(0, CollectorRegistry()) as server,
    ):
        client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        client.sendall(b"GET /metr")
        time.sleep(0.3)  # accepted, and waiting for the rest of the line
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        assert get(f"{server.url}/health/live")[0] == 200
    assert "Traceback" not in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r for r in caplog.records if "went away" in r.getMessage()], caplog.text
