"""Recovery decisions with a faked librdkafka producer and consumer. No network.

Fatal producer errors cannot be caused on demand against a real broker (only a broker crash
sometimes raises them: tests/integration/test_broker_crash.py), so here they are injected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException

from churnstream.exceptions import ClientStuckError, DeliveryError, ProducerFatalError
from churnstream.kafka import clients
from churnstream.kafka.bounded import BoundedCalls
from churnstream.kafka.producer import DeliveryStats, SafeProducer, is_fatal
from churnstream.scoring.messages import BatchResult, OutMessage, RawMessage
from churnstream.settings.kafka import MAX_POLL_INTERVAL_MS
from churnstream.streaming import publish
from churnstream.streaming.loop import close_consumer
from churnstream.streaming.observers import ScorerObserver
from churnstream.streaming.options import ScoreOptions
from churnstream.streaming.publish import Publisher, TransactionalPublisher
from churnstream.streaming.recovery import (
    COMMITTED_TIMEOUT_S,
    Failure,
    ProgressClock,
    Recovery,
    Verdict,
    rewind_to_committed,
    verdict,
)


def kafka_exc(
    code: int, *, fatal: bool = False, retriable: bool = False, abort: bool = False
) -> KafkaException:
    return KafkaException(
        KafkaError(code, fatal=fatal, retriable=retriable, txn_requires_abort=abort)
    )


FATAL = kafka_exc(KafkaError.INVALID_TXN_STATE, fatal=True)
ABORTABLE = kafka_exc(KafkaError._MSG_TIMED_OUT, abort=True)
TIMED_OUT = kafka_exc(KafkaError._TIMED_OUT, retriable=True)


# -- the decision --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (FATAL, Verdict.REPLACE),
        # a fatal error wins over its other flags
        (kafka_exc(KafkaError._TIMED_OUT, fatal=True, retriable=True), Verdict.REPLACE),
        (kafka_exc(KafkaError._FATAL), Verdict.REPLACE),  # produce() after a fatal error
        (ABORTABLE, Verdict.ABORT),
        (kafka_exc(KafkaError._TIMED_OUT, retriable=True, abort=True), Verdict.ABORT),
        (TIMED_OUT, Verdict.RETRY),
        (kafka_exc(KafkaError._STATE), Verdict.REPLACE),  # librdkafka: "treat as fatal"
    ],
)
def test_verdict_follows_kafkas_rule(exc: KafkaException, expected: Verdict) -> None:
    assert verdict(exc.args[0]) is expected


def test_is_fatal_knows_the_local_fatal_code() -> None:
    assert is_fatal(KafkaError(KafkaError._FATAL))
    assert not is_fatal(KafkaError(KafkaError._MSG_TIMED_OUT))


def test_publish_bounds_fit_within_max_poll_interval() -> None:
    """The loop polls its consumer again before librdkafka evicts it from the group."""
    max_poll_s = MAX_POLL_INTERVAL_MS / 1000
    # a batch's publish, its scoring and the poll itself
    assert publish.LONGEST_PUBLISH_S + 10 <= max_poll_s
    # one recovery attempt: init_transactions (hard bound), then the committed offsets
    attempt_s = publish.TXN_INIT_TIMEOUT_S + publish.TXN_CALL_BOUND_S + COMMITTED_TIMEOUT_S
    assert attempt_s + 10 <= max_poll_s


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_clock_runs_from_the_first_failure_until_progress() -> None:
    clock = FakeClock()
    progress = ProgressClock(300.0, clock)
    clock.now += 1000
    progress.check()  # nothing failed: never expires
    progress.progressed()
    clock.now += 20  # a publish that takes 20 s, then fails: the clock runs from its start
    progress.failed("first")
    clock.now += 180
    progress.failed("second")  # does not restart the clock
    progress.check()
    clock.now += 100
    with pytest.raises(DeliveryError) as raised:
        progress.check()
    message = str(raised.value)
    assert "\n" not in message
    assert "nothing published for 300s" in message
    assert "consumer.recovery_timeout_s is 300s" in message and "second" in message
    progress.progressed()
    clock.now += 1000
    progress.check()


# -- a fake librdkafka producer ------------------------------------------------------------
@dataclass
class FakeMessage:
    _topic: str
    _partition: int | None = 0
    _offset: int | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset


@dataclass
class FakeRaw:
    """Stands in for confluent_kafka.Producer; ``script[name]`` lists each call's outcome."""

    config: dict[str, Any]
    script: dict[str, list[Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    queued: list[Any] = field(default_factory=list)
    purged: bool = False

    def _call(self, name: str) -> None:
        self.calls.append(name)
        outcomes = self.script.get(name)
        if outcomes:
            outcome = outcomes.pop(0)
            if isinstance(outcome, threading.Event):  # hang until released
                outcome.wait(30)
            elif outcome is not None:
                raise outcome

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        self._call("produce")
        # A callback per message, else the producer-wide one from the configuration.
        self.queued.append((topic, kwargs.get("on_delivery") or self.config["on_delivery"]))

    def poll(self, timeout: float = 0.0) -> int:
        self._call("poll")
        return 0

    def flush(self, timeout: float = -1) -> int:
        self._call("flush")
        failures = self.script.get("deliveries", [])
        for topic, callback in self.queued:
            err = failures.pop(0) if failures else None
            if err is not None or not self.config.get("delivery.report.only.error"):
                callback(err, FakeMessage(topic, 0, 1))
        self.queued.clear()
        return 0

    def purge(self, **kwargs: Any) -> None:
        self.purged = True

    def __len__(self) -> int:
        return len(self.queued)

    def begin_transaction(self) -> None:
        self._call("begin_transaction")

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self._call("send_offsets_to_transaction")

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit_transaction")
        self.flush()

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort_transaction")
        self.queued.clear()

    def init_transactions(self, timeout: float) -> None:
        self._call("init_transactions")


@pytest.fixture
def raws(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeRaw]]:
    """Every fake producer made, in order; set ``raws.scripts`` before it is made."""
    made: list[FakeRaw] = []
    monkeypatch.setattr(
        clients, "Producer", lambda config: made.append(FakeRaw(config)) or made[-1]
    )
    yield made


class FakeConsumer:
    def __init__(self, committed: list[Any] | None = None) -> None:
        self._committed = committed or []
        self.committed_script: list[BaseException | None] = []
        self.seeks: list[tuple[int, int]] = []
        self.commits = 0
        self.polls = 0

    def consumer_group_metadata(self) -> object:
        return object()

    def commit(self, **kwargs: Any) -> None:
        self.commits += 1

    def assignment(self) -> list[Any]:
        return list(self._committed)

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        if self.committed_script:
            outcome = self.committed_script.pop(0)
            if outcome is not None:
                raise outcome
        return list(self._committed)

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.partition, tp.offset))

    def consume(self, num_messages: int = 1, timeout: float = 0.0) -> list[Any]:
        self.polls += 1
        return []


OPTIONS = ScoreOptions(
    mode="streaming",
    input_topic="in",
    output_topic="out",
    deadletter_topic="dlq",
    group_id="g",
    model_path=Path("models"),
    idle_timeout_ms=1000,
)
BATCH = [RawMessage("in", 0, 5, b"k", b"v"), RawMessage("in", 1, 9, b"k", b"v")]
# The publisher reads only the messages to produce.
RESULT = BatchResult(
    predictions=[OutMessage(b"k", b"p", [])] * 2,
    dead_letters=[],
    scored_columns=dict,  # type: ignore[arg-type]
    dead_letter_types={},
    dead_letter_codes={},
    inference_ms=0.0,
    predicted=None,  # type: ignore[arg-type]
)


def txn_publisher(raws: list[FakeRaw]) -> TransactionalPublisher:
    publisher = TransactionalPublisher(SafeProducer({}), OPTIONS, "txn-1")
    publisher.reopen()
    assert raws[-1].calls == ["init_transactions"]
    return publisher


def test_a_committed_batch(raws: list[FakeRaw]) -> None:
    publisher = txn_publisher(raws)
    assert publisher.publish(BATCH, RESULT, FakeConsumer()) is None  # type: ignore[arg-type]
    calls = raws[0].calls
    assert calls.index("begin_transaction") < calls.index("produce")
    assert calls.index("send_offsets_to_transaction") < calls.index("commit_transaction")
    assert "abort_transaction" not in calls


def test_an_abortable_error_aborts_and_rewinds_the_batch_only(raws: list[FakeRaw]) -> None:
    publisher = txn_publisher(raws)
    raws[0].script = {"commit_transaction": [ABORTABLE]}
    failure = publisher.publish(BATCH, RESULT, FakeConsumer())  # type: ignore[arg-type]
    assert failure is not None and not failure.replace
    assert "_MSG_TIMED_OUT" in failure.reason
    assert raws[0].calls[-1] == "abort_transaction"
    assert not publisher.broken and len(raws) == 1


def test_an_abort_that_fails_fatally_replaces_the_producer(raws: list[FakeRaw]) -> None:
    """The observed case: commit timed out as abortable, then abort raised INVALID_TXN_STATE."""
    publisher = txn_publisher(raws)
    raws[0].script = {"commit_transaction": [ABORTABLE], "abort_transaction": [FATAL]}
    failure = publisher.publish(BATCH, RESULT, FakeConsumer())  # type: ignore[arg-type]
    assert failure == Failure(failure.reason, replace=True)
    assert "then the abort failed: INVALID_TXN_STATE (fatal)" in failure.reason
    assert publisher.broken
    done = publisher.reopen()
    assert len(raws) == 2 and raws[0].purged
    assert raws[1].calls == ["init_transactions"]
    assert raws[1].config == raws[0].config  # same transactional id: it fences the old epoch
    assert done == "new transactional producer, transactions initialised as txn-1"
    assert not publisher.broken
    assert publisher.publish(BATCH, RESULT, FakeConsumer()) is None  # type: ignore[arg-type]


def test_a_fatal_error_replaces_without_trying_to_abort(raws: list[FakeRaw]) -> None:
    publisher = txn_publisher(raws)
    raws[0].script = {"send_offsets_to_transaction": [FATAL]}
    failure = publisher.publish(BATCH, RESULT, FakeConsumer())  # type: ignore[arg-type]
    assert failure is not None and failure.replace
    assert "abort_transaction" not in raws[0].calls


def test_retriable_timeouts_are_retried_within_the_budget(raws: list[FakeRaw]) -> None:
    publisher = txn_publisher(raws)
    raws[0].script = {"send_offsets_to_transaction": [TIMED_OUT, TIMED_OUT, None]}
    assert publisher.publish(BATCH, RESULT, FakeConsumer()) is None  # type: ignore[arg-type]
    assert raws[0].calls.count("send_offsets_to_transaction") == 3


def test_a_call_still_timing_out_when_the_budget_is_spent_replaces(
    raws: list[FakeRaw], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "TXN_PUBLISH_BUDGET_S", 0.3)
    publisher = txn_publisher(raws)
    raws[0].script = {"commit_transaction": [TIMED_OUT] * 1000}
    failure = publisher.publish(BATCH, RESULT, FakeConsumer())  # type: ignore[arg-type]
    assert failure is not None and failure.replace
    assert "still after 0.3s" in failure.reason
    assert raws[0].calls.count("commit_transaction") >= 2


def test_init_transactions_timing_out_keeps_the_new_producer(raws: list[FakeRaw]) -> None:
    publisher = TransactionalPublisher(SafeProducer({}), OPTIONS, "txn-1")
    raws[0].script = {"init_transactions": [TIMED_OUT]}
    with pytest.raises(KafkaException):
        publisher.reopen()
    assert not publisher.broken  # retriable: the same producer is asked again
    assert publisher.reopen() == "transactions initialised as txn-1"
    assert len(raws) == 1 and raws[0].calls == ["init_transactions"] * 2


def test_init_transactions_failing_fatally_asks_for_another_producer(raws: list[FakeRaw]) -> None:
    publisher = TransactionalPublisher(SafeProducer({}), OPTIONS, "txn-1")
    raws[0].script = {"init_transactions": [FATAL]}
    with pytest.raises(KafkaException):
        publisher.reopen()
    assert publisher.broken
    publisher.reopen()
    assert len(raws) == 2 and not publisher.broken


def test_close_never_raises_on_a_broken_producer(
    raws: list[FakeRaw], caplog: pytest.LogCaptureFixture
) -> None:
    publisher = txn_publisher(raws)
    raws[0].script = {"commit_transaction": [FATAL], "flush": [FATAL]}
    publisher.publish(BATCH, RESULT, FakeConsumer())  # type: ignore[arg-type]
    publisher.close()  # neither abort nor flush may raise out of here
    plain = Publisher(SafeProducer({}), OPTIONS)
    raws[-1].script = {"flush": [FATAL]}
    with caplog.at_level(logging.ERROR):
        plain.close()
    assert "at shutdown: producer failed fatally" in caplog.text


def test_at_least_once_replaces_a_producer_that_failed_fatally(raws: list[FakeRaw]) -> None:
    """The idempotent producer's fatal error (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER) surfaces
    from flush(); the batch is not committed and the producer is replaced."""
    publisher = Publisher(SafeProducer({}), OPTIONS)
    raws[0].script = {"flush": [kafka_exc(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True)]}
    consumer = FakeConsumer()
    failure = publisher.publish(BATCH, RESULT, consumer)  # type: ignore[arg-type]
    assert failure is not None and failure.replace
    assert "failed fatally: OUT_OF_ORDER_SEQUENCE_NUMBER" in failure.reason
    assert consumer.commits == 0
    assert publisher.reopen() == "new idempotent producer"
    assert len(raws) == 2 and raws[0].purged
    assert publisher.publish(BATCH, RESULT, consumer) is None  # type: ignore[arg-type]
    assert consumer.commits == 1


def test_reports_on_error_only_commit_after_a_clean_flush_and_never_after_a_failure(
    raws: list[FakeRaw],
) -> None:
    """With delivery.report.only.error, no callback says a message arrived: a clean flush
    (nothing outstanding, no failure reported) is what lets the batch commit."""
    publisher = Publisher(SafeProducer({"delivery.report.only.error": True}), OPTIONS)
    assert publisher.producer.errors_only
    consumer = FakeConsumer()
    assert publisher.publish(BATCH, RESULT, consumer) is None  # type: ignore[arg-type]
    assert consumer.commits == 1 and publisher.producer.stats.delivered == 0
    raws[0].script = {"deliveries": [None, KafkaError(KafkaError._MSG_TIMED_OUT)]}
    failure = publisher.publish(BATCH, RESULT, consumer)  # type: ignore[arg-type]
    assert failure is not None and not failure.replace
    assert "Message timed out" in failure.reason
    assert consumer.commits == 1  # the failed batch was not committed


def test_a_commit_that_never_returns_holds_the_loop_only_for_its_bound(
    raws: list[FakeRaw], monkeypatch: pytest.MonkeyPatch
) -> None:
    """librdkafka's synchronous commit waits for its answer without a limit (a network black
    hole held it 30 s); it cannot be made to hang on demand, so a fake blocks instead."""
    monkeypatch.setattr(publish, "COMMIT_BOUND_S", 0.3)
    release = threading.Event()

    class StuckCommit(FakeConsumer):
        def commit(self, **kwargs: Any) -> None:
            super().commit(**kwargs)
            if self.commits == 1:
                release.wait(30)

    consumer = StuckCommit()
    publisher = Publisher(SafeProducer({}), OPTIONS)
    started = time.monotonic()
    failure = publisher.publish(BATCH, RESULT, consumer)  # type: ignore[arg-type]
    waited = time.monotonic() - started
    assert 0.3 <= waited < 5.0, waited
    # Not known to be committed: the loop rewinds and scores the batch again (same
    # producer), as it does a batch whose outputs were not acknowledged.
    assert failure is not None and not failure.replace
    assert "commit did not return within 0.3s" in failure.reason
    # The next batch commits on a fresh worker while the stuck call is still inside.
    assert publisher.publish(BATCH, RESULT, consumer) is None  # type: ignore[arg-type]
    assert consumer.commits == 2
    release.set()
    publisher.close()


def test_a_consumer_close_that_never_returns_holds_the_shutdown_only_for_its_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """librdkafka's close has no timeout (reported to block while the broker is unreachable);
    it cannot be made to hang on demand, so a fake blocks instead."""
    release = threading.Event()

    class StuckClose(FakeConsumer):
        def close(self) -> None:
            release.wait(30)

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="churnstream.streaming.loop"):
        close_consumer(StuckClose(), bound_s=0.3)  # type: ignore[arg-type]
    waited = time.monotonic() - started
    release.set()
    assert 0.3 <= waited < 5.0, waited
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        "consumer close did not return within 0.3s (past its own timeout); the client is "
        "abandoned; stopping anyway: uncommitted input is redelivered"
    )


def test_reports_on_error_only_still_report_a_real_failure() -> None:
    """librdkafka itself (no broker at that address): the message that cannot be delivered
    is reported to the producer-wide callback before flush returns."""
    producer = SafeProducer(
        {
            "bootstrap.servers": "127.0.0.1:9",
            "delivery.report.only.error": True,
            "message.timeout.ms": 300,
        }
    )
    producer.produce_all("out", [OutMessage(b"k", b"v", [("h", b"1")])] * 3)
    assert producer.flush(10.0) == 0
    assert producer.stats.failed == 3 and producer.stats.delivered == 0


def test_bounded_calls_return_results_and_raise_errors() -> None:
    calls = BoundedCalls("test")
    assert calls.call(lambda: 42, bound_s=5, what="answer") == 42
    with pytest.raises(KafkaException):
        calls.call(lambda: (_ for _ in ()).throw(TIMED_OUT), bound_s=5, what="timeout")
    calls.close()


def test_a_call_past_its_bound_is_abandoned_and_the_next_gets_a_new_worker() -> None:
    calls = BoundedCalls("test")
    release = threading.Event()
    with pytest.raises(ClientStuckError, match="send_offsets_to_transaction did not return"):
        calls.call(release.wait, bound_s=0.2, what="send_offsets_to_transaction")
    assert calls.abandoned == 1
    assert calls.call(lambda: "fresh", bound_s=5, what="next") == "fresh"
    release.set()  # the stuck worker finishes and ends; its result goes nowhere
    calls.close()


def test_a_slow_call_is_noticed_once_and_still_waited_for_within_its_bound() -> None:
    """The rewind's seek after a broker crash: slow while the broker is away, then back."""
    calls = BoundedCalls("test")
    notices: list[float] = []
    started = time.monotonic()
    result = calls.call(
        lambda: time.sleep(0.6) or "back",
        bound_s=5,
        what="seek",
        slow=(0.2, lambda: notices.append(time.monotonic() - started)),
    )
    assert result == "back" and calls.abandoned == 0
    assert len(notices) == 1 and 0.2 <= notices[0] < 0.6, notices
    calls.close()


def test_a_stop_ends_the_wait_for_a_call_before_its_bound() -> None:
    calls = BoundedCalls("test")
    release, stop = threading.Event(), threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(ClientStuckError):
        calls.call(release.wait, bound_s=30, what="seek", stop=stop)
    assert time.monotonic() - started < 5
    assert calls.abandoned == 1
    release.set()
    calls.close()


def test_a_stuck_send_offsets_abandons_the_producer_untouched(
    raws: list[FakeRaw], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen after a broker SIGKILL: send_offsets_to_transaction blocked for minutes."""
    monkeypatch.setattr(publish, "TXN_CALL_BOUND_S", 0.2)
    publisher = txn_publisher(raws)
    release = threading.Event()
    raws[0].script = {"send_offsets_to_transaction": [release]}
    failure = publisher.publish(BATCH, RESULT, FakeConsumer())  # type: ignore[arg-type]
    assert failure is not None and failure.replace
    assert "did not return within 0.2s" in failure.reason
    assert publisher.reopen() == "new transactional producer, transactions initialised as txn-1"
    assert not raws[0].purged  # a call is still inside it
    assert raws[1].calls == ["init_transactions"]
    assert publisher.publish(BATCH, RESULT, FakeConsumer()) is None  # type: ignore[arg-type]
    release.set()
    publisher.close()


# -- the recovery ----------------------------------------------------------------------------
class Hooks(ScorerObserver):
    def __init__(self) -> None:
        self.recovered: list[str] = []
        self.polls = 0

    def on_producer_recovered(self, cause: str) -> None:
        self.recovered.append(cause)

    def on_poll(self, consumer: Any) -> None:
        self.polls += 1


class FlakyPublisher:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    def reopen(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "new transactional producer"


def tp(partition: int, offset: int) -> Any:
    from confluent_kafka import TopicPartition

    return TopicPartition("in", partition, offset)


def test_recovery_retries_then_rewinds_to_the_committed_offsets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = FakeConsumer([tp(0, 120), tp(1, -1001)])
    consumer.committed_script = [kafka_exc(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, retriable=True)]
    hooks = Hooks()
    clock = ProgressClock(60.0)
    recovery = Recovery(clock, hooks, topic="in", auto_offset_reset="earliest")
    publisher = FlakyPublisher([TIMED_OUT])
    with caplog.at_level(logging.INFO):
        assert recovery.run(consumer, publisher, "INVALID_TXN_STATE (fatal)", threading.Event())  # type: ignore[arg-type]
    assert publisher.calls == 3  # init timed out; then the committed offsets were not ready
    assert consumer.seeks == [(0, 120), (1, OFFSET_BEGINNING)]
    assert hooks.recovered == ["INVALID_TXN_STATE (fatal)"]
    assert consumer.polls > 0 and hooks.polls > 0  # the group saw us between attempts
    recovered = [r for r in caplog.records if "producer recovered" in r.getMessage()]
    assert len(recovered) == 1
    assert "rewound to the committed offsets {0: 120, 1: -2}" in recovered[0].getMessage()


def test_recovery_gives_up_with_one_line_when_the_budget_is_spent() -> None:
    clock = ProgressClock(1.0)
    recovery = Recovery(clock, Hooks(), topic="in", auto_offset_reset="latest")
    publisher = FlakyPublisher([TIMED_OUT] * 100)
    with pytest.raises(DeliveryError) as raised:
        recovery.run(FakeConsumer([tp(0, 1)]), publisher, "fatal", threading.Event())  # type: ignore[arg-type]
    assert "consumer.recovery_timeout_s is 1s" in str(raised.value)
    assert "_TIMED_OUT" in str(raised.value) and "\n" not in str(raised.value)


def test_recovery_stops_quietly_when_asked_to() -> None:
    stop = threading.Event()
    stop.set()
    recovery = Recovery(ProgressClock(60.0), Hooks(), topic="in", auto_offset_reset="earliest")
    publisher = FlakyPublisher([TIMED_OUT] * 100)
    assert not recovery.run(FakeConsumer([tp(0, 1)]), publisher, "fatal", stop)  # type: ignore[arg-type]


def test_rewind_without_a_commit_uses_start_offsets_then_auto_offset_reset() -> None:
    consumer = FakeConsumer([tp(0, -1001), tp(1, -1001), tp(2, 7)])
    positions = rewind_to_committed(
        consumer,  # type: ignore[arg-type]
        auto_offset_reset="latest",
        clock=ProgressClock(60.0),
        stop=threading.Event(),
        start_offsets={0: 42},
    )
    assert positions == {0: 42, 1: OFFSET_END, 2: 7}


# -- delivery failures: one line per kind ------------------------------------------------------
def test_a_failed_batch_is_one_line_per_error_kind(caplog: pytest.LogCaptureFixture) -> None:
    stats = DeliveryStats()
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    for offset in range(5000):
        stats.on_delivery(timed_out, FakeMessage("out", offset % 3, None))
    stats.on_delivery(KafkaError(KafkaError._PURGE_QUEUE), FakeMessage("out", None))
    stats.on_delivery(None, FakeMessage("out", 1, 17))
    producer = SafeProducer.__new__(SafeProducer)
    producer.stats = stats
    with caplog.at_level(logging.INFO, logger="churnstream.kafka.producer"):
        producer.report_failures()
        producer.report_failures()  # nothing new: nothing logged
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("ERROR", "5000 deliveries failed: Local: Message timed out (first: out[0])"),
        ("INFO", "1 delivery failed: Local: Purged in queue (first: out[?])"),
    ]
    assert stats.failed == 5001 and stats.delivered == 1
    assert stats.errors_by_code == {"_MSG_TIMED_OUT": 5000, "_PURGE_QUEUE": 1}


def test_flush_reports_the_batchs_failures_once(
    raws: list[FakeRaw], caplog: pytest.LogCaptureFixture
) -> None:
    producer = SafeProducer({})
    err = KafkaError(KafkaError._MSG_TIMED_OUT)
    for offset in range(3):
        producer.stats.on_delivery(err, FakeMessage("out", 2, offset))
    with caplog.at_level(logging.ERROR):
        assert producer.flush(1.0) == 0
    assert caplog.messages == ["3 deliveries failed: Local: Message timed out (first: out[2]@0)"]


def test_a_fatal_error_from_poll_is_a_producer_fatal_error(raws: list[FakeRaw]) -> None:
    producer = SafeProducer({})
    raws[0].script = {"poll": [FATAL]}
    with pytest.raises(ProducerFatalError, match="failed fatally: INVALID_TXN_STATE"):
        producer.produce("out", b"v")
    assert producer.fatal_error is not None
    raws[0].script = {"poll": [kafka_exc(KafkaError.MSG_SIZE_TOO_LARGE)]}
    with pytest.raises(KafkaException):  # not fatal: raised as it is
        producer.produce("out", b"v")
