"""The pipelined at-least-once publish: no offset committed before its batch's outputs are
acknowledged, and a failed batch rewinds itself and the scored batch behind it. No network:
the librdkafka producer and the consumer are fakes that log every call in one sequence."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from confluent_kafka import KafkaError

from churnstream.kafka import clients
from churnstream.kafka.producer import SafeProducer
from churnstream.scoring.messages import BatchResult, OutMessage, RawMessage
from churnstream.streaming.batches import first_offsets
from churnstream.streaming.pipelined import Pipeline, Scored
from churnstream.streaming.publish import Publisher
from churnstream.streaming.recovery import Failure
from tests.unit.test_recovery import OPTIONS as RECOVERY_OPTIONS

OPTIONS = replace(RECOVERY_OPTIONS, pipeline=True)


@dataclass
class Log:
    """Every producer and consumer call, in order: ("produce", (partition, offset)),
    ("flush",), ("commit", {partition: offset}), ("seek", (partition, offset))."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    #: Outcome of each delivery at the next flush (None: acknowledged).
    deliveries: list[KafkaError | None] = field(default_factory=list)


@dataclass
class FakeProducer:
    config: dict[str, Any]
    log: Log
    queued: list[Any] = field(default_factory=list)

    def produce(self, topic: str, value: bytes, key: Any = None, **kwargs: Any) -> None:
        partition, offset = (int(x) for x in value.split(b"@"))
        self.log.events.append(("produce", (partition, offset)))
        self.queued.append(value)

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        self.log.events.append(("flush",))
        for _ in self.queued:
            err = self.log.deliveries.pop(0) if self.log.deliveries else None
            if err is not None:
                self.config["on_delivery"](err, FakeMessage())
        self.queued.clear()
        return 0

    def __len__(self) -> int:
        return len(self.queued)


class FakeMessage:
    def topic(self) -> str:
        return "out"

    def partition(self) -> int:
        return 0

    def offset(self) -> None:
        return None


class FakeConsumer:
    def __init__(self, log: Log) -> None:
        self.log = log

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.log.events.append(("commit", {tp.partition: tp.offset for tp in offsets}))

    def seek(self, tp: Any) -> None:
        self.log.events.append(("seek", (tp.partition, tp.offset)))


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    shared = Log()
    monkeypatch.setattr(clients, "Producer", lambda config: FakeProducer(config, shared))
    return shared


def scored(*offsets: tuple[int, int]) -> Scored:
    """A scored batch of input messages at (partition, offset); each output names its input."""
    batch = [RawMessage("in", p, o, b"k", b"v") for p, o in offsets]
    result = BatchResult(
        predictions=[OutMessage(b"k", f"{p}@{o}".encode(), []) for p, o in offsets],
        dead_letters=[],
        scored_columns=dict,  # type: ignore[arg-type]
        dead_letter_types={},
        dead_letter_codes={},
        inference_ms=0.0,
        predicted=None,  # type: ignore[arg-type]
    )
    return Scored(batch, result)


class Harness:
    """A pipeline whose failure handler rewinds the way the scorer loop does."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.published: list[Scored] = []
        self.failed: list[tuple[list[RawMessage], Failure]] = []
        consumer = FakeConsumer(log)

        def on_failed(messages: list[RawMessage], failure: Failure) -> None:
            self.failed.append((messages, failure))
            for tp in first_offsets(messages):
                consumer.seek(tp)

        self.pipe = Pipeline(
            Publisher(SafeProducer({}), OPTIONS),
            consumer,  # type: ignore[arg-type]
            on_published=self.published.append,
            on_failed=on_failed,
        )


def assert_commits_follow_acknowledgements(events: list[tuple[Any, ...]]) -> None:
    """Every committed offset is past outputs that were produced and then flushed."""
    produced_at: dict[tuple[int, int], int] = {}
    flushes: list[int] = []
    for i, event in enumerate(events):
        if event[0] == "produce":
            produced_at[event[1]] = i
        elif event[0] == "flush":
            flushes.append(i)
        elif event[0] == "commit":
            for partition, next_offset in event[1].items():
                at = produced_at.get((partition, next_offset - 1))
                assert at is not None, f"{partition}@{next_offset - 1} committed, never produced"
                assert any(at < f < i for f in flushes), (
                    f"{partition}@{next_offset - 1} committed before its output was flushed"
                )


def test_each_batch_commits_after_its_flush_and_the_next_is_produced_after(log: Log) -> None:
    h = Harness(log)
    n0, n1, n2 = scored((0, 0), (1, 0)), scored((0, 1), (1, 1)), scored((0, 2))
    assert h.pipe.advance(n0) is None
    # batch 0 is only sent: nothing flushed or committed while batch 1 is scored
    assert log.events == [("produce", (0, 0)), ("produce", (1, 0))]
    assert h.published == [] and h.pipe.in_flight == 2
    assert h.pipe.advance(n1) is None
    assert h.pipe.advance(n2) is None
    assert h.pipe.drain() is None
    assert log.events == [
        ("produce", (0, 0)),
        ("produce", (1, 0)),
        ("flush",),
        ("commit", {0: 1, 1: 1}),
        ("produce", (0, 1)),
        ("produce", (1, 1)),
        ("flush",),
        ("commit", {0: 2, 1: 2}),
        ("produce", (0, 2)),
        ("flush",),
        ("commit", {0: 3}),
    ]
    assert_commits_follow_acknowledgements(log.events)
    assert h.published == [n0, n1, n2]  # each counted once, in order
    assert h.pipe.pending is None


def test_a_failed_batch_rewinds_itself_and_drops_the_scored_one_behind_it(log: Log) -> None:
    h = Harness(log)
    n0, n1 = scored((0, 10), (1, 20), (0, 11)), scored((0, 12), (1, 21), (2, 5))
    assert h.pipe.advance(n0) is None
    log.deliveries = [None, KafkaError(KafkaError._MSG_TIMED_OUT), None]
    failure = h.pipe.advance(n1)
    assert failure is not None and not failure.replace
    assert "timed out" in failure.reason
    # nothing committed; batch 1 never produced; rewound to the lowest offset of both batches
    # per partition (partition 2 only appears in batch 1)
    assert not [e for e in log.events if e[0] == "produce" and e[1] in {(0, 12), (1, 21), (2, 5)}]
    assert not [e for e in log.events if e[0] == "commit"]
    assert sorted(e[1] for e in log.events if e[0] == "seek") == [(0, 10), (1, 20), (2, 5)]
    assert h.published == [] and h.pipe.pending is None
    assert h.failed[0][0] == [*n0.batch, *n1.batch]
    # scored again from there, each batch commits only after its own flush
    assert h.pipe.advance(n0) is None and h.pipe.advance(n1) is None and h.pipe.drain() is None
    assert_commits_follow_acknowledgements(log.events)
    assert h.published == [n0, n1]


def test_a_batch_refused_at_send_rewinds_only_itself(log: Log) -> None:
    h = Harness(log)
    n0, n1 = scored((0, 0)), scored((0, 1))
    assert h.pipe.advance(n0) is None
    h.pipe.publisher.send = lambda result, shadow=(): Failure("unknown topic")  # type: ignore[method-assign]
    failure = h.pipe.advance(n1)
    assert failure == Failure("unknown topic")
    assert ("commit", {0: 1}) in log.events and h.published == [n0]
    assert log.events[-1] == ("seek", (0, 1))


def test_stopping_finishes_the_batch_in_flight_and_drops_the_scored_one(log: Log) -> None:
    h = Harness(log)
    n0, n1 = scored((0, 0)), scored((0, 1))
    assert h.pipe.advance(n0) is None
    stop = threading.Event()
    stop.set()
    assert h.pipe.advance(n1, stop) is None
    assert log.events == [("produce", (0, 0)), ("flush",), ("commit", {0: 1})]
    assert h.published == [n0] and h.pipe.pending is None
    assert h.pipe.drain() is None and len(log.events) == 3
