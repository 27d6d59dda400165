"""The API's Prometheus metrics (a registry of their own) and the middleware that counts
every request by its route template."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

from churnstream.api.holder import LoadedModel

logger = logging.getLogger(__name__)

NAMESPACE = "churnstream_api"
REQUEST_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
#: Route label for requests that matched no route (keeps the label set bounded).
UNMATCHED_ROUTE = "unmatched"
#: Method labels; any other method (clients may send any token) is counted as "other".
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class ApiMetrics:
    """The API's Prometheus metrics, on a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            f"{NAMESPACE}_requests",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{NAMESPACE}_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ("method", "route"),
            buckets=REQUEST_BUCKETS_S,
            registry=self.registry,
        )
        self.predictions = Counter(
            f"{NAMESPACE}_predictions",
            "Predictions served, by label.",
            ("prediction",),
            registry=self.registry,
        )
        self.batch_records = Histogram(
            f"{NAMESPACE}_batch_records",
            "Records per scored POST /predict.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            f"{NAMESPACE}_inference_seconds",
            "Duration of the model call of one POST /predict.",
            buckets=REQUEST_BUCKETS_S,
            registry=self.registry,
        )
        self.reloads = Counter(
            f"{NAMESPACE}_model_reloads",
            "POST /model/reload outcomes: changed, unchanged, failed.",
            ("result",),
            registry=self.registry,
        )
        self.model = Info(f"{NAMESPACE}_model", "The model being served.", registry=self.registry)

    def set_model(self, loaded: LoadedModel | None) -> None:
        if loaded is None:
            self.model.info({"version": "", "algorithm": "", "threshold": ""})
            return
        scorer = loaded.scorer
        self.model.info(
            {
                "version": scorer.version,
                "algorithm": str(scorer.metadata.get("algorithm", "")),
                "threshold": f"{scorer.threshold:.6g}",
            }
        )


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by its route *template* (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server error middleware answers if the app raises

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router puts the matched route into the (shared) scope.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "")
            method = method if method in KNOWN_METHODS else "other"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
