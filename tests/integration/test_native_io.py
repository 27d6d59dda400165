"""The scorer's optional native Kafka client (native_io/, ``churnstream_native_io``) against
the real broker: what confluent-kafka writes comes out of ``take`` exactly, offsets commit and
rewind, ``produce_all`` delivers in order, and failures reach their callbacks."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import Producer as ConfluentProducer
from confluent_kafka import TopicPartition

nio = pytest.importorskip("churnstream_native_io")

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
OFFSET_INVALID = -1001
WAIT_S = 5.0
#: take()'s wait on an empty topic in test_take_bounds: short, but long enough to measure.
EMPTY_WAIT_S = 0.3
#: How long take() waits on a drained partition while another thread commits.
TAKE_WAIT_S = 0.8
#: Produce-and-flush rounds in test_flush_returns_at_once_without_success_reports.
FLUSH_ROUNDS = 5
#: Over the broker's default max.message.bytes (1 MiB) and under the producer's limit we set.
TOO_LARGE_BYTES = 1_200_000

Header = tuple[str, bytes | None]


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] | None


class Outgoing(NamedTuple):
    key: bytes | None
    value: bytes
    headers: list[Header] | None


#: (key, value, headers) as written: headers with a None value, none at all, an empty key.
SENT: list[tuple[bytes | None, bytes, list[Header] | None]] = [
    (b"k0", b'{"n": 0}', [("source", b"test"), ("empty", None)]),
    (None, b'{"n": 1}', None),
    (b"k2", b"", [("source", b"x"), ("source", b"y")]),
    (b"", b'{"n": 3}', [("trace", b"\x00\xff")]),
]


def group() -> str:
    return f"nio-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def consumers(kafka_bootstrap: str) -> Iterator[Callable[..., Any]]:
    """``consumers(**config)`` -> a native consumer of a fresh group, closed afterwards."""
    made: list[Any] = []

    def make(error_cb: Callable[..., None] | None = None, **config: str) -> Any:
        base = {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group(),
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": "6000",
        }
        consumer = nio.Consumer(base | config, error_cb)
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        consumer.close()


def confluent_produce(bootstrap: str, topic: str, codec: str = "none") -> None:
    producer = ConfluentProducer(
        {"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5}
    )
    for key, value, headers in SENT:
        producer.produce(topic, value=value, key=key, headers=headers, partition=0)
    assert producer.flush(30) == 0


def take_all(consumer: Any, expect: int) -> list[Record]:
    out: list[Record] = []
    deadline = time.monotonic() + 30
    while len(out) < expect and time.monotonic() < deadline:
        records, errors = consumer.take(expect - len(out), WAIT_S, Record)
        assert errors == []
        out.extend(records)
    return out


def commit_while_taking(consumer: Any, offsets: list[tuple[str, int, int]]) -> None:
    """Commit on a worker thread while this one waits in take() on a drained partition: the
    commit must finish before take() returns, so take() waited without the GIL."""
    committed_at: list[float] = []

    def commit() -> None:
        consumer.commit(offsets)
        committed_at.append(time.monotonic())

    worker = threading.Thread(target=commit)
    started = time.monotonic()
    worker.start()
    assert consumer.take(10, TAKE_WAIT_S, Record) == ([], [])
    returned = time.monotonic()
    worker.join(10)
    assert committed_at and committed_at[0] < returned
    assert returned - started >= TAKE_WAIT_S * 0.9


def test_take_reads_what_confluent_wrote_with_every_codec(
    kafka_bootstrap: str, topic_factory: Callable[..., str], consumers: Callable[..., Any]
) -> None:
    topics = {codec: topic_factory(partitions=1) for codec in CODECS}
    for codec, topic in topics.items():
        confluent_produce(kafka_bootstrap, topic, codec)
    consumer = consumers()
    consumer.assign([(topic, 0, 0) for topic in topics.values()])

    records = take_all(consumer, len(SENT) * len(CODECS))

    for codec, topic in topics.items():
        got = [r for r in records if r.topic == topic]
        assert got == [
            Record(topic, 0, offset, key, value, headers)
            for offset, (key, value, headers) in enumerate(SENT)
        ], codec
    assert all(type(r) is Record for r in records)


def test_take_respects_max_records_and_waits_on_an_empty_topic(
    kafka_bootstrap: str, topic_factory: Callable[..., str], consumers: Callable[..., Any]
) -> None:
    topic = topic_factory(partitions=1)
    confluent_produce(kafka_bootstrap, topic)
    consumer = consumers()
    consumer.assign([(topic, 0, 0)])
    first: list[Record] = []
    while not first:
        first, _ = consumer.take(3, WAIT_S, Record)
    assert 0 < len(first) <= 3
    rest = take_all(consumer, len(SENT) - len(first))
    assert [r.offset for r in first + rest] == list(range(len(SENT)))

    started = time.monotonic()
    records, errors = consumer.take(10, EMPTY_WAIT_S, Record)
    waited = time.monotonic() - started
    assert (records, errors) == ([], [])
    assert EMPTY_WAIT_S * 0.9 <= waited < EMPTY_WAIT_S + 2
    assert consumer.take(0, WAIT_S, Record) == ([], [])


def test_close_on_another_thread_ends_a_waiting_take(
    topic_factory: Callable[..., str], consumers: Callable[..., Any]
) -> None:
    topic = topic_factory(partitions=1)
    consumer = consumers()
    consumer.assign([(topic, 0, 0)])
    closer = threading.Timer(0.2, consumer.close)
    started = time.monotonic()
    closer.start()
    assert consumer.take(10, 30.0, Record) == ([], [])
    assert time.monotonic() - started < 10
    closer.join(10)
    with pytest.raises(nio.KafkaError):
        consumer.take(10, 0.1, Record)


def test_subscribe_assign_commit_committed_seek(
    kafka_bootstrap: str, topic_factory: Callable[..., str], consumers: Callable[..., Any]
) -> None:
    topic = topic_factory(partitions=1)
    confluent_produce(kafka_bootstrap, topic)
    consumer = consumers(**{"group.id": (name := group())})
    assigned: list[list[tuple[str, int]]] = []

    def on_assign(partitions: list[tuple[str, int]]) -> None:
        assigned.append(partitions)
        raise RuntimeError("reported, not raised")

    consumer.subscribe([topic], on_assign=on_assign)

    unraisable: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "unraisablehook", unraisable.append)
        records = take_all(consumer, len(SENT))
    assert [r.offset for r in records] == list(range(len(SENT)))
    assert assigned == [[(topic, 0)]]
    # on_assign's exception was reported, and taking went on.
    assert [str(u.exc_value) for u in unraisable] == ["reported, not raised"]
    assert consumer.assignment() == [(topic, 0)]
    assert consumer.position([(topic, 0)]) == [(topic, 0, len(SENT))]
    assert consumer.committed([(topic, 0)], WAIT_S) == [(topic, 0, OFFSET_INVALID)]
    assert consumer.get_watermark_offsets(topic, 0, WAIT_S, False) == (0, len(SENT))

    consumer.commit([(topic, 0, 1)])
    commit_while_taking(consumer, [(topic, 0, 2)])
    assert consumer.committed([(topic, 0)], WAIT_S) == [(topic, 0, 2)]
    consumer.seek(topic, 0, 1, WAIT_S)
    assert [r.offset for r in take_all(consumer, len(SENT) - 1)] == [1, 2, 3]
    consumer.close()
    consumer.close()  # idempotent
    with pytest.raises(nio.KafkaError) as closed:
        consumer.assignment()
    assert closed.value.args[:2] == (-172, "_STATE")

    # The same group, by assignment: -1001 starts at the committed offset, a number at itself.
    again = consumers(**{"group.id": name})
    again.assign([(topic, 0, OFFSET_INVALID)])
    assert take_all(again, 1)[0].offset == 2
    again.assign([(topic, 0, 3)])
    assert take_all(again, 1)[0].offset == 3


def test_produce_all_delivers_in_order(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    producer = nio.Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": "5"})
    batch = [Outgoing(k, v, h) for k, v, h in SENT] + [(b"k4", b"plain tuple", [])]
    producer.produce_all(topic, batch)
    producer.produce(topic, b"single", key=b"k5", headers=[("one", b"1")])
    assert producer.flush(30) == 0
    assert (producer.delivered, producer.failed, len(producer)) == (len(SENT) + 2, 0, 0)
    assert producer.fatal_error() is None

    reader = ConfluentConsumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": group(), "enable.auto.commit": False}
    )
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        msgs: list[Any] = []
        deadline = time.monotonic() + 30
        while len(msgs) < len(SENT) + 2 and time.monotonic() < deadline:
            wanted = len(SENT) + 2 - len(msgs)
            msgs.extend(m for m in reader.consume(wanted, 1.0) if not m.error())
    finally:
        reader.close()
    got = [(m.offset(), m.key(), m.value(), m.headers()) for m in msgs]
    expected = [(i, k, v, h) for i, (k, v, h) in enumerate(SENT)]
    # An empty headers list is sent as no headers.
    expected += [(4, b"k4", b"plain tuple", None), (5, b"k5", b"single", [("one", b"1")])]
    assert got == expected


def test_flush_sends_at_once_what_linger_would_hold(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    producer = nio.Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": "3000"})
    producer.produce(topic, b"warm-up")  # metadata and connection, then the measured one
    assert producer.flush(30) == 0
    producer.produce(topic, b"measured")
    started = time.monotonic()
    assert producer.flush(30) == 0
    assert time.monotonic() - started < 1.0
    assert producer.delivered == 2


def test_flush_returns_at_once_without_success_reports(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """With delivery.report.only.error a success brings no event to wait for: flush must
    still return as soon as the out-queue is empty, not at its next look (100 ms on)."""
    topic = topic_factory(partitions=1)
    config = {"bootstrap.servers": kafka_bootstrap, "delivery.report.only.error": "true"}
    producer = nio.Producer(config)
    producer.produce(topic, b"warm-up")
    assert producer.flush(30) == 0
    started = time.monotonic()
    for i in range(FLUSH_ROUNDS):
        producer.produce_all(topic, [(None, b"%d" % i, None)])
        assert producer.flush(30) == 0
    assert time.monotonic() - started < FLUSH_ROUNDS * 0.08
    assert producer.failed == 0


def test_a_failed_delivery_reaches_on_failure(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    failures: list[tuple[Any, ...]] = []
    producer = nio.Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "message.max.bytes": str(2 * TOO_LARGE_BYTES),
            "compression.type": "none",
        },
        on_failure=lambda *args: failures.append(args),
    )
    producer.produce_all(topic, [(b"big", b"x" * TOO_LARGE_BYTES, None), (b"ok", b"1", None)])
    assert producer.flush(30) == 0
    assert (producer.delivered, producer.failed) == (1, 1)
    assert failures == [(10, "MSG_SIZE_TOO_LARGE", failures[0][2], False, topic, 0, None)]
    assert failures[0][2]


def test_full_queue_raises_buffer_error_and_produce_all_retries(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    producer = nio.Producer(
        {"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": "1"}
    )
    producer.produce(topic, b"first")
    with pytest.raises(BufferError):
        producer.produce(topic, b"second")
    producer.produce_all(topic, [(None, b"%d" % i, None) for i in range(5)])
    assert producer.flush(30) == 0
    assert producer.delivered == 6


def test_client_errors_reach_error_cb() -> None:
    errors: list[tuple[Any, ...]] = []
    # Nothing listens on port 1: the client reports the broker down.
    producer = nio.Producer(
        {"bootstrap.servers": "127.0.0.1:1"}, error_cb=lambda *args: errors.append(args)
    )
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    code, name, text, fatal = errors[0]
    assert name in {"_TRANSPORT", "_ALL_BROKERS_DOWN"} and code < 0 and text and not fatal


def test_a_refused_config_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no.such.property"):
        nio.Consumer({"no.such.property": "1", "group.id": "g"})
    with pytest.raises(ValueError, match="acks"):
        nio.Producer({"acks": "sometimes"})
