"""The /metrics and /health HTTP server, on a loopback port chosen by the OS (no broker)."""

from __future__ import annotations

import json
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
