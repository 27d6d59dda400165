"""Prometheus metrics for the scorer and the producer, each on its own registry.

Nothing here touches the process-global ``prometheus_client.REGISTRY``: every
:class:`PrometheusScorerObserver` / :class:`ProducerMetrics` gets (or is given) a private
``CollectorRegistry``, so several scorers, or several tests, can run in one process.
Serve a registry with :func:`churnstream.observability.server.start_metrics_server`.

Per-row values (end-to-end latency) are folded into histograms a batch at a time with numpy
(:class:`ArrayHistogram`) rather than one ``observe()`` per row, which would cost about 1 µs
per message at 100k messages/s.

Consumer lag is computed in :meth:`PrometheusScorerObserver.on_poll` at most every
``lag_refresh_s`` from the consumer's own positions and its *cached* high watermarks (no
request to the broker). It is clamped at 0. On tansu the high watermark is the last record
batch's base offset + 1, not the last offset + 1, so lag there is understated (often 0).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from churnstream.observability.names import (
    DRIFT_CHURN_RATE,
    DRIFT_DETECTED,
    DRIFT_EXPECTED_CHURN_RATE,
    DRIFT_PSI,
    DRIFT_SAMPLES,
    MODEL_INFO,
    PRODUCER_DELIVERED,
    PRODUCER_FAILURES,
    PRODUCER_LAST_DELIVERY,
    PRODUCER_PROGRESS,
    PRODUCER_PROGRESS_TOTAL,
    PRODUCER_RATE,
    SCORER_BATCH_SIZE,
    SCORER_BATCHES,
    SCORER_CONSUMED,
    SCORER_DEAD_LETTER_CODES,
    SCORER_DEAD_LETTERS,
    SCORER_END_TO_END,
    SCORER_INFERENCE,
    SCORER_LAG,
    SCORER_LAST_BATCH,
    SCORER_LAST_POLL,
    SCORER_PREDICTED_CHURN,
    SCORER_PRODUCED,
    SCORER_REDELIVERED,
    SCORER_RUNNING,
    SCORER_SCORED,
)
from churnstream.streaming.observers import ScorerObserver
from churnstream.windows.drift import (
    DriftReference,
    FeatureAccumulator,
    drift_block,
    drift_warnings,
)
from churnstream.windows.fields import ERROR_TYPES

if TYPE_CHECKING:
    from confluent_kafka import Consumer

    from churnstream.scoring.messages import BatchResult, RawMessage
    from churnstream.streaming.options import ScoreSummary

logger = logging.getLogger(__name__)

NAMESPACE = "churnstream"
LAG_REFRESH_S = 2.0
RATE_WINDOW_S = 10.0
RATE_SAMPLE_EVERY_S = 0.5
INFERENCE_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
END_TO_END_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def _counter(
    name: str, doc: str, registry: CollectorRegistry, labels: Sequence[str] = ()
) -> Counter:
    # prometheus_client appends "_total" itself.
    return Counter(name.removesuffix("_total"), doc, labelnames=labels, registry=registry)


class ArrayHistogram(Collector):
    """A label-less Prometheus histogram fed with whole arrays of observations.

    Same exposition as ``prometheus_client.Histogram`` (cumulative ``_bucket{le}``,
    ``_sum``, ``_count``); non-finite values are ignored. Thread-safe.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None,
    ) -> None:
        upper = sorted(float(b) for b in buckets)
        if not upper or upper[-1] != float("inf"):
            upper.append(float("inf"))
        self.name = name
        self._doc = documentation
        self._upper = np.asarray(upper, dtype=np.float64)
        self._counts = np.zeros(len(upper), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, values: ArrayLike) -> None:
        """Add every finite value of ``values`` (a scalar or any array-like)."""
        array = np.asarray(values, dtype=np.float64).ravel()
        array = array[np.isfinite(array)]
        if array.size == 0:
            return
        # le semantics: a value equal to a bound belongs to that bucket.
        index = np.searchsorted(self._upper, array, side="left")
        counts = np.bincount(index, minlength=len(self._upper))
        total = float(array.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    @property
    def count(self) -> int:
        with self._lock:
            return int(self._counts.sum())

    @property
    def sum(self) -> float:
        with self._lock:
            return self._sum

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self._doc)]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        buckets = [
            (floatToGoString(bound), float(n))  # type: ignore[no-untyped-call]
            for bound, n in zip(self._upper.tolist(), cumulative, strict=True)
        ]
        return [HistogramMetricFamily(self.name, self._doc, buckets=buckets, sum_value=total)]


class PrometheusScorerObserver(ScorerObserver):
    """Scorer metrics, updated from the loop's hooks; also the state behind health checks.

    The attributes ``model_version``, ``started``, ``stopped``, ``last_poll``,
    ``last_batch`` (monotonic seconds) and ``total_lag`` are read by
    :class:`churnstream.observability.health.ScorerHealth`.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        lag_refresh_s: float = LAG_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._wall_clock = wall_clock
        self._lag_refresh_s = lag_refresh_s
        self._last_lag_refresh: float | None = None
        self._lag_labels: set[tuple[str, str]] = set()
        self.model_version: str | None = None
        self.started = False
        self.stopped = False
        self.last_poll: float | None = None
        self.last_batch: float | None = None
        #: Sum of the per-partition lags of the last refresh; None until one is known.
        self.total_lag: int | None = None
        r = self.registry

        self.consumed = _counter(SCORER_CONSUMED, "Messages polled from the input topic.", r)
        self.scored = _counter(SCORER_SCORED, "Messages scored (predictions produced).", r)
        self.predicted_churn = _counter(
            SCORER_PREDICTED_CHURN, "Predictions labelled Yes (churn) at the threshold.", r
        )
        self.produced = _counter(
            SCORER_PRODUCED, "Output messages acknowledged by the broker.", r, ["kind"]
        )
        self.dead_letters = _counter(
            SCORER_DEAD_LETTERS, "Dead letters by error type.", r, ["error_type"]
        )
        self.dead_letter_codes = _counter(
            SCORER_DEAD_LETTER_CODES, "Dead letters by reason code.", r, ["code"]
        )
        self.batches = _counter(SCORER_BATCHES, "Micro-batches committed.", r)
        self.redelivered = _counter(
            SCORER_REDELIVERED, "Micro-batches not fully acknowledged, to be processed again.", r
        )
        self.batch_size = ArrayHistogram(
            SCORER_BATCH_SIZE, "Messages per micro-batch.", BATCH_SIZE_BUCKETS, r
        )
        self.inference = ArrayHistogram(
            SCORER_INFERENCE,
            "Duration of the model call, one observation per micro-batch.",
            INFERENCE_BUCKETS_S,
            r,
        )
        self.end_to_end = ArrayHistogram(
            SCORER_END_TO_END,
            "Processed time minus the event's event_ts, one observation per prediction.",
            END_TO_END_BUCKETS_S,
            r,
        )
        self.lag = Gauge(
            SCORER_LAG,
            "Consumer lag per partition: cached high watermark minus position, clamped at 0 "
            "(understated on tansu, whose high watermark is wrong).",
            labelnames=["topic", "partition"],
            registry=r,
        )
        self.last_batch_ts = Gauge(
            SCORER_LAST_BATCH, "Unix time of the last committed micro-batch.", registry=r
        )
        self.last_poll_ts = Gauge(SCORER_LAST_POLL, "Unix time of the last poll.", registry=r)
        self.running = Gauge(SCORER_RUNNING, "1 while the scorer loop runs.", registry=r)
        self.model_info = Gauge(
            MODEL_INFO, "The model being served (value 1).", labelnames=["version"], registry=r
        )
        for kind in ("prediction", "dead_letter"):
            self.produced.labels(kind=kind)
        for error_type in ERROR_TYPES:
            self.dead_letters.labels(error_type=error_type)

    # -- hooks ---------------------------------------------------------------------------
    def on_model_change(self, old_version: str, new_version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=new_version).set(1)
        self.model_version = new_version

    def on_start(self, *, model_version: str, group_id: str, input_topic: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=model_version).set(1)
        self.model_version = model_version
        self.started = True
        self.stopped = False
        self.running.set(1)

    def on_poll(self, consumer: Consumer) -> None:
        now = self._clock()
        self.last_poll = now
        self.last_poll_ts.set(self._wall_clock())
        if (
            self._last_lag_refresh is not None
            and now - self._last_lag_refresh < self._lag_refresh_s
        ):
            return
        self._last_lag_refresh = now
        try:
            lags = partition_lags(consumer)
        except Exception as exc:  # noqa: BLE001 - metrics must never stop the scorer
            logger.debug("consumer lag not available: %s", exc)
            return
        self.set_lags(lags)

    def on_batch(
        self, batch: Sequence[RawMessage], result: BatchResult, summary: ScoreSummary
    ) -> None:
        scored = result.scored
        self.consumed.inc(len(batch))
        self.scored.inc(len(result.predictions))
        self.produced.labels(kind="prediction").inc(len(result.predictions))
        self.produced.labels(kind="dead_letter").inc(len(result.dead_letters))
        for error_type, n in result.dead_letter_types.items():
            self.dead_letters.labels(error_type=error_type).inc(n)
        for code, n in result.dead_letter_codes.items():
            self.dead_letter_codes.labels(code=code).inc(n)
        self.batches.inc()
        self.batch_size.observe(len(batch))
        if result.predictions:
            self.inference.observe(result.inference_ms / 1000.0)
        if len(scored["prediction"]):
            self.predicted_churn.inc(int(np.count_nonzero(scored["prediction"] == "Yes")))
            e2e = scored["e2e_latency_ms"].astype(np.float64) / 1000.0
            # A producer clock ahead of ours would make it negative; count it as 0.
            self.end_to_end.observe(np.maximum(e2e, 0.0))
        self.last_batch = self._clock()
        self.last_batch_ts.set(self._wall_clock())

    def on_redelivery(self, batch_size: int, error: str | None) -> None:
        self.redelivered.inc()

    def on_stop(self, summary: ScoreSummary) -> None:
        self.stopped = True
        self.running.set(0)

    # -- lag -----------------------------------------------------------------------------
    def set_lags(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Publish per-partition lags (and drop partitions no longer assigned)."""
        labels = {(topic, str(partition)) for topic, partition in lags}
        for stale in self._lag_labels - labels:
            self.lag.remove(*stale)
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic=topic, partition=str(partition)).set(lag)
        self._lag_labels = labels
        self.total_lag = sum(lags.values()) if lags else None


def partition_lags(consumer: Consumer) -> dict[tuple[str, int], int]:
    """Lag of each assigned partition from local state only (no broker round trip).

    ``position`` is the next offset to consume; the high watermark is the one cached from
    the last fetch. Partitions without a known position or watermark are left out. Clamped
    at 0: tansu's high watermark can be below the real end (see module docs).
    """
    assignment = consumer.assignment()
    if not assignment:
        return {}
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.position(assignment):
        if tp.offset < 0:
            continue
        _low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high < 0:
            continue
        lags[(tp.topic, tp.partition)] = max(0, int(high) - int(tp.offset))
    return lags


class DriftObserver(ScorerObserver):
    """Per window: PSI gauges, a WARNING per drifted feature, and the summary's ``drift``.

    If the window summary already has a ``drift`` block (the scorer passed the reference to
    ``WindowStats.summary``), that block is used and this observer stops accumulating;
    otherwise it accumulates ``result.scored`` itself (about 0.4 ms per 1,000 rows) and
    adds the block to the summary dict (the loop calls ``on_window`` before writing the
    report). ``accumulate=False`` skips that work from the start, for a scorer known to
    compute the block.
    """

    def __init__(
        self,
        reference: DriftReference | None,
        registry: CollectorRegistry | None = None,
        *,
        accumulate: bool = True,
    ) -> None:
        self.reference = reference
        self.registry = registry if registry is not None else CollectorRegistry()
        self._own: FeatureAccumulator | None = (
            FeatureAccumulator() if reference is not None and accumulate else None
        )
        self.last_block: dict[str, Any] | None = None
        r = self.registry
        self.psi = Gauge(
            DRIFT_PSI,
            "Population Stability Index of a feature in the last window vs training.",
            labelnames=["feature"],
            registry=r,
        )
        self.churn_rate = Gauge(
            DRIFT_CHURN_RATE, "Predicted churn rate of the last window.", registry=r
        )
        self.expected_churn_rate = Gauge(
            DRIFT_EXPECTED_CHURN_RATE,
            "Predicted churn rate expected from the model's held-out test set.",
            registry=r,
        )
        self.samples = Gauge(DRIFT_SAMPLES, "Scored messages in the last window.", registry=r)
        self.detected = Gauge(
            DRIFT_DETECTED, "1 if the last evaluated window drifted, else 0.", registry=r
        )
        if reference is not None and reference.expected_churn_rate is not None:
            self.expected_churn_rate.set(reference.expected_churn_rate)

    def on_batch(
        self, batch: Sequence[RawMessage], result: BatchResult, summary: ScoreSummary
    ) -> None:
        if self._own is not None:
            self._own.add(pd.DataFrame(result.scored))

    def on_window(self, window: dict[str, Any]) -> None:
        block = window.get("drift")
        if isinstance(block, dict):
            self._own = None  # the scorer computes it (de-duplicated): no need to here
        elif self.reference is not None and self._own is not None:
            block = drift_block(self._own, self.reference)
            window["drift"] = block
            self._own = FeatureAccumulator()
        if not isinstance(block, dict) or not block.get("available"):
            return
        self.last_block = block
        self.export(block)

    def export(self, block: Mapping[str, Any]) -> None:
        """Set the gauges from a drift block and log its findings."""
        self.samples.set(block["samples"])
        for feature, values in block["features"].items():
            if values["psi"] is not None:
                self.psi.labels(feature=feature).set(values["psi"])
        churn = block["churn_rate"]
        if churn["observed"] is not None:
            self.churn_rate.set(churn["observed"])
        if block["evaluated"]:
            self.detected.set(1 if block["drifted"] else 0)
        for line in drift_warnings(block):
            logger.warning(line)


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
        self.delivered = _counter(
            PRODUCER_DELIVERED, "Messages acknowledged by the broker.", r, ["topic"]
        )
        self.failures = _counter(
            PRODUCER_FAILURES, "Messages the broker did not acknowledge.", r, ["topic", "error"]
        )
        self.rate = Gauge(
            PRODUCER_RATE,
            f"Acknowledged messages per second over the last {rate_window_s:g} s.",
            registry=r,
        )
        self.rate.set_function(self._meter.rate)
        self.progress = Gauge(
            PRODUCER_PROGRESS, "Events queued so far (batch mode: the next row).", registry=r
        )
        self.progress_total = Gauge(
            PRODUCER_PROGRESS_TOTAL,
            "Events planned (batch: rows in the file), if known.",
            registry=r,
        )
        self.last_delivery = Gauge(
            PRODUCER_LAST_DELIVERY, "Unix time of the last acknowledgement.", registry=r
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
