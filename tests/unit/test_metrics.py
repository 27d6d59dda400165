"""Scorer and producer metrics: names, values from a fake batch, lag, health. No network."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from churnstream.model.feature_batch import FeatureBatch
from churnstream.observability import names
from churnstream.observability.health import ScorerHealth
from churnstream.observability.metrics.drift import DriftObserver
from churnstream.observability.metrics.histogram import ArrayHistogram
from churnstream.observability.metrics.producer import ProducerMetrics
from churnstream.observability.metrics.scorer import PrometheusScorerObserver, partition_lags
from churnstream.scoring.batch import score_batch
from churnstream.scoring.messages import RawMessage
from churnstream.streaming.options import ScoreSummary
from tests.unit.test_schemas import EVENT

NOW = datetime(2025, 10, 3, 4, 0, 2, tzinfo=UTC)  # 2 s after EVENT's event_ts
TOPIC = "telco.raw.customers"


def by_tenure(batch: FeatureBatch) -> np.ndarray:
    return np.clip(1.0 - batch.tenure / 72.0, 0, 1)


def fake_batch() -> tuple[list[RawMessage], Any]:
    """4 good events (tenure 1, 1, 60, 70), one not JSON, one failing the schema."""
    good = [
        orjson.dumps({**EVENT, "tenure": tenure, "customerID": f"000{i}-ABCDE"})
        for i, tenure in enumerate((1, 1, 60, 70))
    ]
    values = [*good, b"not json", orjson.dumps({**EVENT, "Contract": "Weekly"})]
    keys = [f"000{i}-ABCDE".encode() for i in range(4)] + [b"x", EVENT["customerID"].encode()]
    batch = [
        RawMessage(TOPIC, 0, offset, key, value)
        for offset, (key, value) in enumerate(zip(keys, values, strict=True))
    ]
    result = score_batch(batch, by_tenure, threshold=0.5, model_version="m-test", clock=lambda: NOW)
    return batch, result


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_fake_batch_through_the_observer() -> None:
    observer = PrometheusScorerObserver()
    reg = observer.registry
    observer.on_start(model_version="m-test", group_id="g", input_topic=TOPIC)
    batch, result = fake_batch()
    observer.on_batch(batch, result, ScoreSummary(mode="batch"))

    assert value(reg, names.SCORER_CONSUMED) == 6
    assert value(reg, names.SCORER_SCORED) == 4
    assert value(reg, names.SCORER_PREDICTED_CHURN) == 2  # tenure 1 twice: p = 0.986 >= 0.5
    assert value(reg, names.SCORER_PRODUCED, kind="prediction") == 4
    assert value(reg, names.SCORER_PRODUCED, kind="dead_letter") == 2
    assert value(reg, names.SCORER_DEAD_LETTERS, error_type="validation_error") == 2
    assert value(reg, names.SCORER_DEAD_LETTERS, error_type="inference_error") == 0  # pre-set
    assert value(reg, names.SCORER_DEAD_LETTER_CODES, code="not_json") == 1
    assert value(reg, names.SCORER_DEAD_LETTER_CODES, code="schema") == 1
    assert value(reg, names.SCORER_BATCHES) == 1
    assert value(reg, names.MODEL_INFO, version="m-test") == 1
    assert value(reg, names.SCORER_RUNNING) == 1

    size = names.SCORER_BATCH_SIZE
    assert value(reg, f"{size}_count") == 1
    assert value(reg, f"{size}_sum") == 6
    assert value(reg, f"{size}_bucket", le="5.0") == 0
    assert value(reg, f"{size}_bucket", le="10.0") == 1

    inference = names.SCORER_INFERENCE
    assert value(reg, f"{inference}_count") == 1  # one model call per batch
    assert value(reg, f"{inference}_sum") == pytest.approx(result.inference_ms / 1000)

    e2e = names.SCORER_END_TO_END
    assert value(reg, f"{e2e}_count") == 4
    assert value(reg, f"{e2e}_sum") == pytest.approx(8.0)  # 4 x (processed - event_ts) = 2 s
    assert value(reg, f"{e2e}_bucket", le="1.0") == 0
    assert value(reg, f"{e2e}_bucket", le="2.5") == 4
    assert value(reg, f"{e2e}_bucket", le="+Inf") == 4
    assert observer.last_batch is not None

    observer.on_redelivery(6, "boom")
    observer.on_producer_recovered("INVALID_TXN_STATE (fatal): Broker: invalid state")
    observer.on_stop(ScoreSummary(mode="batch"))
    assert value(reg, names.SCORER_REDELIVERED) == 1
    assert value(reg, names.SCORER_PRODUCER_RECOVERIES) == 1
    assert value(reg, names.SCORER_RUNNING) == 0


def test_metric_names_follow_prometheus_conventions() -> None:
    registry = CollectorRegistry()
    PrometheusScorerObserver(registry)
    ProducerMetrics(registry)
    DriftObserver(None, registry)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    # prometheus_client adds a *_created gauge per counter/histogram: not ours to name.
    kinds = {f.name: f.type for f in families if not f.name.endswith("_created")}
    units = ("_messages", "_seconds", "_ratio", "_psi", "_info", "_samples", "_running")
    for name, kind in kinds.items():
        assert name.startswith("churnstream_"), name
        assert name == name.lower() and " " not in name
        if kind == "counter":
            # the text parser strips _total from counter family names
            assert name.endswith(
                (
                    "_messages",
                    "_total",
                    "_batches",
                    "_failures",
                    "_recoveries",
                    "_letters",
                    "_codes",
                    "_churn_messages",
                )
            ), name
        if kind == "histogram":
            assert name.endswith(("_seconds", "_messages")), name
        if kind == "gauge":
            assert name.endswith((*units, "_second", "_detected")), name
    text = generate_latest(registry).decode()
    for expected in (
        "churnstream_scorer_consumed_messages_total",
        "churnstream_scorer_inference_latency_seconds_bucket",
        "churnstream_scorer_end_to_end_latency_seconds_bucket",
        "churnstream_scorer_batch_size_messages_bucket",
        "churnstream_producer_delivered_messages_total",
        "churnstream_producer_send_rate_messages_per_second",
    ):
        assert expected in text or expected.removesuffix("_bucket") in text, expected


def test_two_observers_do_not_share_a_registry() -> None:
    first, second = PrometheusScorerObserver(), PrometheusScorerObserver()
    batch, result = fake_batch()
    first.on_batch(batch, result, ScoreSummary(mode="batch"))

    assert value(first.registry, names.SCORER_CONSUMED) == 6
    assert value(second.registry, names.SCORER_CONSUMED) == 0


def test_array_histogram_matches_prometheus_client_histogram() -> None:
    values = [0.0, 0.1, 0.5, 0.5000001, 1.0, 3.0, 99.0, float("nan"), float("inf")]
    buckets = (0.1, 0.5, 1.0, 5.0)
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = ArrayHistogram("h_seconds", "doc", buckets, ours_registry)
    theirs = Histogram("h_seconds", "doc", buckets=buckets, registry=theirs_registry)
    ours.observe(values)
    for v in values:
        if np.isfinite(v):
            theirs.observe(v)

    def samples(registry: CollectorRegistry) -> list[Any]:
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        )

    assert samples(ours_registry) == samples(theirs_registry)
    assert ours.count == 7


@dataclass
class TP:
    topic: str
    partition: int
    offset: int = -1001


class FakeConsumer:
    """assignment / position / watermarks (asked of the broker, or cached), all lag needs."""

    def __init__(self, positions: dict[int, int], highs: dict[int, int]) -> None:
        self.positions = positions
        self.highs = highs
        self.cached_highs = dict(highs)
        self.reachable = True
        self.watermark_calls = 0  # requests to the broker
        self.metadata_calls: list[str | None] = []

    def assignment(self) -> list[TP]:
        return [TP("raw", p) for p in self.positions]

    def position(self, partitions: list[TP]) -> list[TP]:
        return [TP(tp.topic, tp.partition, self.positions[tp.partition]) for tp in partitions]

    def get_watermark_offsets(
        self, tp: TP, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        if cached:
            return 0, self.cached_highs[tp.partition]
        assert timeout is not None and timeout <= 1.0, "a cut must not stall the loop long"
        self.watermark_calls += 1
        if not self.reachable:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        self.cached_highs[tp.partition] = self.highs[tp.partition]
        return 0, self.highs[tp.partition]

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> object:
        assert 0 < timeout <= 1.0, "a cut must not stall the loop long"
        self.metadata_calls.append(topic)
        if not self.reachable:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return object()


def test_lag_is_high_watermark_minus_position_clamped_at_zero() -> None:
    consumer = FakeConsumer({0: 10, 1: 50, 2: -1001, 3: 7}, {0: 25, 1: 40, 2: 9, 3: -1001})

    # p1: a tansu-style understated watermark gives 0, not -10; p2/p3 unknown are left out.
    lags = partition_lags(consumer)  # type: ignore[arg-type]
    assert lags == ({("raw", 0): 15, ("raw", 1): 0}, True)
    # The console's variant asks nothing of the broker.
    calls = consumer.watermark_calls
    assert partition_lags(consumer, timeout_s=None) == (lags[0], False)  # type: ignore[arg-type]
    assert consumer.watermark_calls == calls


def test_lag_is_refreshed_at_most_every_interval_and_stale_partitions_dropped() -> None:
    now = [100.0]
    observer = PrometheusScorerObserver(lag_refresh_s=2.0, clock=lambda: now[0])
    consumer = FakeConsumer({0: 10, 1: 20}, {0: 15, 1: 20})
    observer.on_poll(consumer)  # type: ignore[arg-type]
    reg = observer.registry
    assert value(reg, names.SCORER_LAG, topic="raw", partition="0") == 5
    assert value(reg, names.SCORER_LAG, topic="raw", partition="1") == 0
    assert observer.total_lag == 5

    consumer.highs[0] = 1000
    now[0] += 1.0
    observer.on_poll(consumer)  # type: ignore[arg-type]
    assert value(reg, names.SCORER_LAG, topic="raw", partition="0") == 5  # not yet refreshed
    assert consumer.watermark_calls == 2

    del consumer.positions[1]  # revoked
    now[0] += 1.5
    observer.on_poll(consumer)  # type: ignore[arg-type]
    assert value(reg, names.SCORER_LAG, topic="raw", partition="0") == 990
    assert value(reg, names.SCORER_LAG, topic="raw", partition="1") is None
    assert observer.total_lag == 990


def test_a_broker_cut_shows_as_the_age_of_the_lag_which_never_reads_caught_up() -> None:
    now = [100.0]
    observer = PrometheusScorerObserver(lag_refresh_s=2.0, clock=lambda: now[0])
    reg = observer.registry
    assert value(reg, names.SCORER_LAG_AGE) == 0  # just started
    consumer = FakeConsumer({0: 10, 1: 20}, {0: 40, 1: 20})
    observer.on_poll(consumer)  # type: ignore[arg-type]
    now[0] += 1.0
    assert value(reg, names.SCORER_LAG_AGE) == 1.0

    consumer.reachable = False  # the cut: events keep arriving, the scorer cannot know
    consumer.highs[0] = 5000
    consumer.positions[0] = 40  # it consumed what it had fetched before the cut
    for _ in range(15):
        now[0] += 2.0
        observer.on_poll(consumer)  # type: ignore[arg-type]
    # One failed request per refresh (the other partition uses its cache), the lag never
    # drops below the last measured (30), and its age is the length of the cut.
    assert consumer.watermark_calls == 2 + 15
    assert value(reg, names.SCORER_LAG, topic="raw", partition="0") == 30
    assert value(reg, names.SCORER_LAG_AGE) == 31.0

    consumer.reachable = True  # healed: measured again, the backlog shows at once
    now[0] += 2.0
    observer.on_poll(consumer)  # type: ignore[arg-type]
    assert value(reg, names.SCORER_LAG, topic="raw", partition="0") == 4960
    assert value(reg, names.SCORER_LAG_AGE) == 0


def test_an_assignment_lost_in_a_cut_keeps_the_lag_and_its_age_growing() -> None:
    # librdkafka revokes the assignment by itself once the coordinator has been silent for
    # session.timeout.ms: in a black hole the assignment empties with no broker answer.
    now = [100.0]
    observer = PrometheusScorerObserver(lag_refresh_s=2.0, clock=lambda: now[0])
    observer.on_start(model_version="v1", group_id="g", input_topic="raw")
    reg = observer.registry
    consumer = FakeConsumer({0: 10, 1: 20}, {0: 40, 1: 20})
    observer.on_poll(consumer)  # type: ignore[arg-type]
    consumer.reachable = False
    for second in range(2, 32, 2):
        now[0] += 2.0
        if second == 8:
            consumer.positions.clear()  # the session timed out: revoked locally
        observer.on_poll(consumer)  # type: ignore[arg-type]
        assert value(reg, names.SCORER_LAG_AGE) == second
    assert value(reg, names.SCORER_LAG, topic="raw", partition="0") == 30
    assert observer.total_lag == 30
    assert consumer.metadata_calls and set(consumer.metadata_calls) == {"raw"}

    consumer.reachable = True  # healed, not yet assigned again: the broker answers
    now[0] += 2.0
    observer.on_poll(consumer)  # type: ignore[arg-type]
    assert value(reg, names.SCORER_LAG_AGE) == 0
    assert value(reg, names.SCORER_LAG, topic="raw", partition="0") is None
    assert observer.total_lag is None


def test_lag_errors_never_reach_the_loop() -> None:
    class Broken:
        def assignment(self) -> list[TP]:
            raise RuntimeError("closed")

    observer = PrometheusScorerObserver()
    observer.on_poll(Broken())  # type: ignore[arg-type]
    assert observer.total_lag is None and observer.last_poll is not None


class FakeErr:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name


class FakeMsg:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


def test_producer_metrics_count_deliveries_failures_and_rate() -> None:
    now = [0.0]
    producer = ProducerMetrics(clock=lambda: now[0], wall_clock=lambda: 1_700_000_000.0)
    reg = producer.registry
    for _ in range(10):  # 10 per second for 4 seconds
        for _ in range(10):
            producer.on_delivery(None, FakeMsg("raw"))
            now[0] += 0.1
    producer.on_delivery(FakeErr("_MSG_TIMED_OUT"), FakeMsg("raw"))
    producer.on_progress(100, 7043)

    assert value(reg, names.PRODUCER_DELIVERED, topic="raw") == 100
    assert value(reg, names.PRODUCER_FAILURES, topic="raw", error="_MSG_TIMED_OUT") == 1
    assert value(reg, names.PRODUCER_RATE) == pytest.approx(10.0, rel=0.1)
    assert value(reg, names.PRODUCER_PROGRESS) == 100
    assert value(reg, names.PRODUCER_PROGRESS_TOTAL) == 7043
    assert value(reg, names.PRODUCER_LAST_DELIVERY) == 1_700_000_000.0

    now[0] += 60  # idle: the rate decays to 0
    assert value(reg, names.PRODUCER_RATE) == 0.0


# -- health ----------------------------------------------------------------------------
def health_for(
    observer: PrometheusScorerObserver, now: list[float], probe_ok: list[bool], **kw: Any
) -> ScorerHealth:
    calls: list[float] = []

    def probe() -> bool:
        calls.append(now[0])
        return probe_ok[0]

    health = ScorerHealth(observer, probe=probe, clock=lambda: now[0], **kw)
    health.probe_calls = calls  # type: ignore[attr-defined]
    return health


def test_ready_needs_start_model_broker_and_small_lag() -> None:
    now = [0.0]
    observer = PrometheusScorerObserver(clock=lambda: now[0])
    probe_ok = [True]
    health = health_for(observer, now, probe_ok, max_lag=100, broker_ttl_s=10.0)

    first = health()
    assert first.live and not first.ready and first.checks["running"] is False

    observer.on_start(model_version="m1", group_id="g", input_topic="raw")
    assert health().ready

    observer.set_lags({("raw", 0): 500})
    status = health()
    assert not status.ready and status.checks["lag_ok"] is False
    observer.set_lags({("raw", 0): 5})
    assert health().ready

    observer.on_stop(ScoreSummary(mode="batch"))
    assert not health().ready


def test_broker_check_is_cached_and_a_recent_batch_counts() -> None:
    now = [0.0]
    observer = PrometheusScorerObserver(clock=lambda: now[0])
    observer.on_start(model_version="m1", group_id="g", input_topic="raw")
    probe_ok = [False]
    health = health_for(observer, now, probe_ok, broker_ttl_s=10.0)
    calls = health.probe_calls  # type: ignore[attr-defined]

    assert not health().checks["broker_reachable"]
    now[0] = 5.0
    assert not health().ready
    assert len(calls) == 1  # cached: not probed again within the TTL

    batch, result = fake_batch()
    observer.on_batch(batch, result, ScoreSummary(mode="batch"))  # the broker answered
    assert health().checks["broker_reachable"]
    assert len(calls) == 1

    now[0] = 30.0  # batch too old: probe again, which now succeeds
    probe_ok[0] = True
    assert health().ready
    assert len(calls) == 2


def test_live_fails_when_the_running_loop_stops_polling() -> None:
    now = [0.0]
    observer = PrometheusScorerObserver(clock=lambda: now[0])
    health = health_for(observer, now, [True], stall_timeout_s=60.0)
    observer.on_start(model_version="m1", group_id="g", input_topic="raw")
    observer.on_poll(FakeConsumer({}, {}))  # type: ignore[arg-type]
    now[0] = 59.0
    assert health().live
    now[0] = 61.0
    status = health()
    assert not status.live and not status.ready and status.checks["stalled"]


# -- drift observer ----------------------------------------------------------------------
def test_drift_observer_adds_the_block_exports_gauges_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from churnstream.windows.drift import DriftReference

    reference = DriftReference(
        model_version="m1",
        numeric={"tenure": ((0.0, 12.0, 72.0), (0.5, 0.5))},
        categorical={"Contract": {"Month-to-month": 0.5, "One year": 0.25, "Two year": 0.25}},
        expected_churn_rate=0.3,
        churn_rate_basis="test",
        min_samples=2,
    )
    observer = DriftObserver(reference)
    batch, result = fake_batch()  # tenure 1, 1, 60, 70; all Month-to-month
    observer.on_batch(batch, result, ScoreSummary(mode="batch"))
    window: dict[str, Any] = {}
    with caplog.at_level(logging.WARNING, logger="churnstream.observability.metrics.drift"):
        observer.on_window(window)

    block = window["drift"]
    assert block["evaluated"] and block["samples"] == 4
    assert block["features"]["tenure"]["psi"] == pytest.approx(0.0)
    assert block["features"]["Contract"]["drifted"]
    reg = observer.registry
    assert value(reg, names.DRIFT_PSI, feature="Contract") == pytest.approx(
        block["features"]["Contract"]["psi"]
    )
    assert value(reg, names.DRIFT_DETECTED) == 1
    assert value(reg, names.DRIFT_SAMPLES) == 4
    assert value(reg, names.DRIFT_CHURN_RATE) == 0.5
    assert value(reg, names.DRIFT_EXPECTED_CHURN_RATE) == 0.3
    assert any("PSI of Contract" in r.getMessage() for r in caplog.records)

    # A summary that already has a block (the scorer computed it) is used as it is.
    given = {"drift": {**block, "drifted": False, "evaluated": True, "features": {}}}
    observer.on_window(given)
    assert value(reg, names.DRIFT_DETECTED) == 0


def test_drift_observer_without_accumulation_only_exports() -> None:
    from churnstream.windows.drift import DriftReference

    reference = DriftReference("m1", {}, {}, expected_churn_rate=0.3, churn_rate_basis="t")
    observer = DriftObserver(reference, accumulate=False)
    batch, result = fake_batch()
    observer.on_batch(batch, result, ScoreSummary(mode="batch"))
    window: dict[str, Any] = {}
    observer.on_window(window)
    assert "drift" not in window and observer.last_block is None
