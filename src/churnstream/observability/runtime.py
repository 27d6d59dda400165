"""One-call wiring of metrics, drift and the HTTP server for the CLI commands.

``consume``::

    inst = instrument_scorer(settings, metadata=scorer.metadata, port=metrics_port)
    loop = ScorerLoop(settings, options, scorer=scorer, observers=[*inst.observers])
    try:
        loop.run(stop)
    finally:
        inst.close()

``produce``::

    inst = instrument_producer(settings, port=metrics_port)
    run_producer(..., on_delivery=inst.metrics.on_delivery, on_progress=inst.metrics.on_progress)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from churnstream.observability.health import KafkaBrokerProbe, ScorerHealth
from churnstream.observability.metrics.drift import DriftObserver
from churnstream.observability.metrics.producer import ProducerMetrics
from churnstream.observability.metrics.scorer import PrometheusScorerObserver
from churnstream.observability.server import Health, MetricsServer, start_metrics_server
from churnstream.settings import Settings
from churnstream.streaming.observers import ScorerObserver
from churnstream.windows.drift import drift_reference

logger = logging.getLogger(__name__)


@dataclass
class ScorerInstrumentation:
    registry: CollectorRegistry
    metrics: PrometheusScorerObserver
    drift: DriftObserver
    health: ScorerHealth
    server: MetricsServer | None = None
    observers: list[ScorerObserver] = field(default_factory=list)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def instrument_scorer(
    settings: Settings,
    *,
    metadata: Mapping[str, Any] | None,
    port: int | None = None,
    drift_in_summary: bool = False,
) -> ScorerInstrumentation:
    """Observers for a ScorerLoop, on one private registry, and the server if a port is given.

    ``port`` None falls back to ``observability.metrics_port`` (None there: no server);
    0 picks a free port (``.server.port``). ``drift_in_summary``: the scorer passes the
    drift reference to ``WindowStats.summary`` itself, so the drift observer only exports.
    """
    obs = settings.observability
    registry = CollectorRegistry()
    metrics = PrometheusScorerObserver(registry, lag_refresh_s=obs.lag_refresh_s)
    drift = DriftObserver(drift_reference(metadata, obs), registry, accumulate=not drift_in_summary)
    health = ScorerHealth(
        metrics,
        probe=KafkaBrokerProbe(settings.kafka, obs.broker_check_timeout_s),
        max_lag=obs.ready_max_lag,
        broker_ttl_s=obs.broker_check_interval_s,
        stall_timeout_s=obs.stall_timeout_s,
    )
    inst = ScorerInstrumentation(registry, metrics, drift, health, observers=[metrics, drift])
    port = port if port is not None else obs.metrics_port
    if port is not None:
        inst.server = start_metrics_server(port, registry, health, host=obs.metrics_host)
    return inst


@dataclass
class ProducerInstrumentation:
    registry: CollectorRegistry
    metrics: ProducerMetrics
    server: MetricsServer | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def instrument_producer(settings: Settings, *, port: int | None = None) -> ProducerInstrumentation:
    """Producer metrics on a private registry, served on ``port`` (see instrument_scorer)."""
    obs = settings.observability
    registry = CollectorRegistry()
    inst = ProducerInstrumentation(registry, ProducerMetrics(registry))
    port = port if port is not None else obs.metrics_port
    if port is not None:
        inst.server = start_metrics_server(
            port, registry, lambda: Health(live=True, ready=True), host=obs.metrics_host
        )
    return inst
