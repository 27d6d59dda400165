"""Scorer metrics, updated from the poll loop's hooks (a scorer observer).

Per-row values (end-to-end latency) are folded into histograms a batch at a time with numpy
(:class:`~churnstream.observability.metrics.histogram.ArrayHistogram`) rather than one
``observe()`` per row, which would cost about 1 µs per message at 100k messages/s.

Consumer lag is computed in :meth:`PrometheusScorerObserver.on_poll` at most every
``lag_refresh_s``: the consumer's own positions against the end offsets the broker reports
for each assigned partition (one short ListOffsets request each). It is clamped at 0. On
tansu the high watermark is the last record batch's base offset + 1, not the last offset +
1, so lag there is understated (often 0).

A scorer cut off from its broker cannot learn how many events arrived meanwhile: its lag
keeps the last measured values, and ``churnstream_scorer_consumer_lag_age_seconds`` says how
old they are (computed when scraped, so it grows even while the loop waits on the network).
That age is the honest signal of a network cut; the lag in messages catches up once the
broker answers again. Only an answer from the broker makes the lag fresh: an empty
assignment is not one, because librdkafka revokes the assignment by itself when the group
coordinator has not answered for ``session.timeout.ms`` (6 s by default here), in the middle
of a cut. With nothing assigned, a metadata request for the input topic stands in for the
end offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry

from churnstream.observability.metrics.histogram import ArrayHistogram, counter, gauge
from churnstream.observability.names import (
    MODEL_INFO,
    SCORER_BATCH_SIZE,
    SCORER_BATCHES,
    SCORER_CONSUMED,
    SCORER_DEAD_LETTER_CODES,
    SCORER_DEAD_LETTERS,
    SCORER_END_TO_END,
    SCORER_INFERENCE,
    SCORER_LAG,
    SCORER_LAG_AGE,
    SCORER_LAST_BATCH,
    SCORER_LAST_POLL,
    SCORER_PREDICTED_CHURN,
    SCORER_PRODUCED,
    SCORER_PRODUCER_RECOVERIES,
    SCORER_REDELIVERED,
    SCORER_RUNNING,
    SCORER_SCORED,
)
from churnstream.streaming.observers import ScorerObserver
from churnstream.windows.fields import ERROR_TYPES

if TYPE_CHECKING:
    from confluent_kafka import Consumer, TopicPartition

    from churnstream.scoring.messages import BatchResult, RawMessage
    from churnstream.streaming.options import ScoreSummary

logger = logging.getLogger(__name__)

LAG_REFRESH_S = 2.0
#: How long one end-offset request may wait. After the first that fails the rest of the
#: refresh uses cached watermarks, so a cut stalls the loop at most this long per refresh.
END_OFFSET_TIMEOUT_S = 0.5
INFERENCE_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
END_TO_END_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


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
        #: When the lag was last measured against end offsets the broker answered with.
        self._lag_measured: float | None = None
        self._created = clock()
        self._lags: dict[tuple[str, int], int] = {}
        self._lag_labels: set[tuple[str, str]] = set()
        #: Asked about when nothing is assigned (see :func:`partition_lags`).
        self._input_topic: str | None = None
        self.model_version: str | None = None
        self.started = False
        self.stopped = False
        self.last_poll: float | None = None
        self.last_batch: float | None = None
        #: Sum of the per-partition lags of the last refresh; None until one is known.
        self.total_lag: int | None = None
        r = self.registry

        self.consumed = counter(SCORER_CONSUMED, "Messages polled from the input topic.", r)
        self.scored = counter(SCORER_SCORED, "Messages scored (predictions produced).", r)
        self.predicted_churn = counter(
            SCORER_PREDICTED_CHURN, "Predictions labelled Yes (churn) at the threshold.", r
        )
        self.produced = counter(
            SCORER_PRODUCED, "Output messages acknowledged by the broker.", r, ["kind"]
        )
        self.dead_letters = counter(
            SCORER_DEAD_LETTERS, "Dead letters by error type.", r, ["error_type"]
        )
        self.dead_letter_codes = counter(
            SCORER_DEAD_LETTER_CODES, "Dead letters by reason code.", r, ["code"]
        )
        self.batches = counter(SCORER_BATCHES, "Micro-batches committed.", r)
        self.redelivered = counter(
            SCORER_REDELIVERED, "Micro-batches not fully acknowledged, to be processed again.", r
        )
        self.producer_recoveries = counter(
            SCORER_PRODUCER_RECOVERIES,
            "Producers replaced after a fatal error, the consumer rewound to its commits.",
            r,
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
        self.lag = gauge(
            SCORER_LAG,
            "Consumer lag per partition: cached high watermark minus position, clamped at 0 "
            "(understated on tansu, whose high watermark is wrong).",
            r,
            ["topic", "partition"],
        )
        self.lag_age = gauge(
            SCORER_LAG_AGE,
            "Seconds since the consumer lag was last measured against end offsets the broker "
            "reported (grows while the broker is unreachable; the lag shown is that old).",
            r,
        )
        self.lag_age.set_function(self._lag_age_s)
        self.last_batch_ts = gauge(
            SCORER_LAST_BATCH, "Unix time of the last committed micro-batch.", r
        )
        self.last_poll_ts = gauge(SCORER_LAST_POLL, "Unix time of the last poll.", r)
        self.running = gauge(SCORER_RUNNING, "1 while the scorer loop runs.", r)
        self.model_info = gauge(MODEL_INFO, "The model being served (value 1).", r, ["version"])
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
        self._input_topic = input_topic
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
            lags, measured = partition_lags(consumer, probe_topic=self._input_topic)
        except Exception as exc:  # noqa: BLE001 - metrics must never stop the scorer
            logger.debug("consumer lag not available: %s", exc)
            return
        if measured:
            self._lag_measured = self._clock()
        elif not lags:
            # The assignment was lost without the broker saying so (see module docs): the
            # lag is unknown, not gone; keep showing the last measured values.
            return
        self.set_lags(lags, keep=not measured)

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

    def on_producer_recovered(self, cause: str) -> None:
        self.producer_recoveries.inc()

    def on_stop(self, summary: ScoreSummary) -> None:
        self.stopped = True
        self.running.set(0)

    # -- lag -----------------------------------------------------------------------------
    def set_lags(self, lags: Mapping[tuple[str, int], int], *, keep: bool = False) -> None:
        """Publish per-partition lags (and drop partitions no longer assigned).

        With ``keep`` (the broker did not answer), a partition's lag never drops below the
        last value measured: cached watermarks stop moving during a cut, and the lag must not
        read as caught up when it is only unknown.
        """
        if keep:
            lags = {key: max(lag, self._shown_lag(key)) for key, lag in lags.items()}
        labels = {(topic, str(partition)) for topic, partition in lags}
        for stale in self._lag_labels - labels:
            self.lag.remove(*stale)
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic=topic, partition=str(partition)).set(lag)
        self._lag_labels = labels
        self._lags = dict(lags)
        self.total_lag = sum(lags.values()) if lags else None

    def _shown_lag(self, key: tuple[str, int]) -> int:
        return self._lags.get(key, 0)

    def _lag_age_s(self) -> float:
        since = self._lag_measured if self._lag_measured is not None else self._created
        return max(0.0, self._clock() - since)


def partition_lags(
    consumer: Consumer,
    timeout_s: float | None = END_OFFSET_TIMEOUT_S,
    *,
    probe_topic: str | None = None,
) -> tuple[dict[tuple[str, int], int], bool]:
    """Lag of each assigned partition, and whether the broker gave every end offset.

    ``timeout_s=None`` asks nothing of the broker: cached watermarks only (not measured).
    When no end offset is asked for (nothing assigned, or no position known yet), the
    result is measured only if the broker answers a metadata request for ``probe_topic``
    (every topic if None): an empty assignment may be librdkafka's own doing after it lost
    the group coordinator, which says nothing about the lag.

    ``position`` is the next offset to consume; the end offset (high watermark) is asked of
    the broker. Once one request fails (the broker unreachable), the remaining partitions use
    the watermark cached from the last fetch, and the result is not measured. Partitions
    without a known position or watermark are left out. Clamped at 0: tansu's high
    watermark can be below the real end (see module docs).
    """
    assignment = consumer.assignment()
    lags: dict[tuple[str, int], int] = {}
    measured, asked = True, False
    for tp in consumer.position(assignment) if assignment else []:
        if tp.offset < 0:
            continue
        high = _end_offset(consumer, tp, timeout_s if measured else None)
        asked = True
        if high is None:
            measured = False
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high < 0:
            continue
        lags[(tp.topic, tp.partition)] = max(0, int(high) - int(tp.offset))
    if not asked:
        measured = _broker_answers(consumer, probe_topic, timeout_s)
    return lags, measured


def _broker_answers(consumer: Consumer, topic: str | None, timeout_s: float | None) -> bool:
    """Whether the broker answers a metadata request within ``timeout_s`` (None: not asked)."""
    if timeout_s is None:
        return False
    try:
        consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        logger.debug("broker not answering metadata requests: %s", exc)
        return False
    return True


def _end_offset(consumer: Consumer, tp: TopicPartition, timeout_s: float | None) -> int | None:
    """The partition's end offset as the broker reports it now; None if it did not answer."""
    if timeout_s is None:
        return None
    try:
        watermarks = consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
    except KafkaException as exc:
        logger.debug("end offset of %s[%d] not available: %s", tp.topic, tp.partition, exc)
        return None
    if watermarks is None:
        return None
    return int(watermarks[1])
