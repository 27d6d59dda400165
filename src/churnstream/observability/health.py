"""What "live" and "ready" mean for a scorer, from the metrics observer's state.

- **live**: the loop is not stuck: it has polled within ``stall_timeout_s`` (or has not
  started yet, or has stopped cleanly).
- **ready**: the loop runs, the model is loaded, the broker is reachable and the lag is
  under ``max_lag``. "Broker reachable" is cached: a committed batch or a successful
  metadata probe within ``broker_ttl_s`` counts; otherwise the probe runs again (from the
  HTTP thread, bounded by its own timeout), never from the scorer's loop.
  Unknown lag (nothing assigned or fetched yet) does not block readiness.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from churnstream.observability.metrics.scorer import PrometheusScorerObserver
from churnstream.observability.server import Health
from churnstream.settings import KafkaSettings

logger = logging.getLogger(__name__)

BrokerProbe = Callable[[], bool]


class KafkaBrokerProbe:
    """True if a broker answers a metadata request within ``timeout_s``."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 2.0) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._admin: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        from churnstream.kafka.clients import admin_client

        with self._lock:
            try:
                if self._admin is None:
                    self._admin = admin_client(self._kafka)
                metadata = self._admin.list_topics(timeout=self._timeout_s)
            except Exception as exc:  # noqa: BLE001 - any failure means unreachable
                logger.debug("broker probe failed: %s", exc)
                return False
            return bool(metadata.brokers)


class ScorerHealth:
    """A health function (``() -> Health``) for :func:`start_metrics_server`."""

    def __init__(
        self,
        observer: PrometheusScorerObserver,
        *,
        probe: BrokerProbe | None = None,
        max_lag: int = 10_000,
        broker_ttl_s: float = 10.0,
        stall_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._observer = observer
        self._probe = probe
        self._max_lag = max_lag
        self._broker_ttl_s = broker_ttl_s
        self._stall_timeout_s = stall_timeout_s
        self._clock = clock
        self._last_probe_ok: float | None = None
        self._last_probe_at: float | None = None
        self._lock = threading.Lock()

    def _broker_reachable(self, now: float) -> bool:
        last_batch = self._observer.last_batch
        if last_batch is not None and now - last_batch <= self._broker_ttl_s:
            return True
        with self._lock:
            if self._last_probe_at is None or now - self._last_probe_at > self._broker_ttl_s:
                self._last_probe_at = now
                if self._probe is not None and self._probe():
                    self._last_probe_ok = self._clock()
            return self._last_probe_ok is not None and now - self._last_probe_ok <= (
                self._broker_ttl_s
            )

    def __call__(self) -> Health:
        obs = self._observer
        now = self._clock()
        running = obs.started and not obs.stopped
        since_poll = None if obs.last_poll is None else now - obs.last_poll
        stalled = running and since_poll is not None and since_poll > self._stall_timeout_s
        broker = self._broker_reachable(now)
        lag = obs.total_lag
        lag_ok = lag is None or lag <= self._max_lag
        model = obs.model_version is not None
        checks: dict[str, Any] = {
            "running": running,
            "model_loaded": model,
            "model_version": obs.model_version,
            "broker_reachable": broker,
            "lag": lag,
            "max_lag": self._max_lag,
            "lag_ok": lag_ok,
            "seconds_since_poll": None if since_poll is None else round(since_poll, 3),
            "stalled": stalled,
        }
        return Health(
            live=not stalled,
            ready=running and model and broker and lag_ok and not stalled,
            checks=checks,
        )
