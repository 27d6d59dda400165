"""Producer-side metrics: deliveries, failures, send rate and progress."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from churnstream.observability.metrics.histogram import counter, gauge
from churnstream.observability.names import (
    PRODUCER_DELIVERED,
    PRODUCER_FAILURES,
    PRODUCER_LAST_DELIVERY,
    PRODUCER_PROGRESS,
    PRODUCER_PROGRESS_TOTAL,
    PRODUCER_RATE,
)

logger = logging.getLogger(__name__)

RATE_WINDOW_S = 10.0
RATE_SAMPLE_EVERY_S = 0.5


class _RateMeter:
    """Events per second over the last ``window_s``, from periodic (time, total) samples."""

    def __init__(self, clock: Callable[[], float], window_s: float) -> None:
        self._clock = clock
        self._window_s = window_s
        self._total = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def mark(self, n: int = 1) -> None:
        now = self._clock()
        with self._lock:
            self._total += n
            if not self._samples or now - self._samples[-1][0] >= RATE_SAMPLE_EVERY_S:
                self._samples.append((now, self._total))
                while self._samples and now - self._samples[0][0] > self._window_s:
                    self._samples.popleft()

    def rate(self) -> float:
        now = self._clock()
        with self._lock:
            while self._samples and now - self._samples[0][0] > self._window_s:
                self._samples.popleft()
            if not self._samples:
                return 0.0
            first_t, first_total = self._samples[0]
            elapsed = now - first_t
            if elapsed <= 0:
                return 0.0
            return (self._total - first_total) / elapsed


class ProducerMetrics:
    """Producer-side metrics; pass ``on_delivery`` and ``on_progress`` to the producer.

    ``on_delivery(err, msg)`` is librdkafka's delivery callback signature (it runs in the
    producing thread, from ``poll``/``flush``); ``on_progress(done, total)`` is
    ``run_producer``'s progress hook.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rate_window_s: float = RATE_WINDOW_S,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._wall_clock = wall_clock
        self._delivered_by_topic: dict[str, Any] = {}
        self._meter = _RateMeter(clock, rate_window_s)
        r = self.registry
        self.delivered = counter(
            PRODUCER_DELIVERED, "Messages acknowledged by the broker.", r, ["topic"]
        )
        self.failures = counter(
            PRODUCER_FAILURES, "Messages the broker did not acknowledge.", r, ["topic", "error"]
        )
        self.rate = gauge(
            PRODUCER_RATE, f"Acknowledged messages per second over the last {rate_window_s:g} s.", r
        )
        self.rate.set_function(self._meter.rate)
        self.progress = gauge(
            PRODUCER_PROGRESS, "Events queued so far (batch mode: the next row).", r
        )
        self.progress_total = gauge(
            PRODUCER_PROGRESS_TOTAL, "Events planned (batch: rows in the file), if known.", r
        )
        self.last_delivery = gauge(
            PRODUCER_LAST_DELIVERY, "Unix time of the last acknowledgement.", r
        )

    def on_delivery(self, err: Any, msg: Any) -> None:
        topic = str(msg.topic()) if msg is not None and msg.topic() is not None else ""
        if err is None:
            child = self._delivered_by_topic.get(topic)
            if child is None:
                child = self._delivered_by_topic[topic] = self.delivered.labels(topic=topic)
            child.inc()
            self._meter.mark()
            self.last_delivery.set(self._wall_clock())
            return
        name = err.name() if hasattr(err, "name") else str(err)
        self.failures.labels(topic=topic, error=str(name)).inc()

    def on_progress(self, done: int, total: int | None) -> None:
        self.progress.set(done)
        if total is not None:
            self.progress_total.set(total)
