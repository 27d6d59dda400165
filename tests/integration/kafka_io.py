"""Small real-Kafka helpers for tests: read a whole topic, send raw messages, follow a
group's committed offsets."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

#: Once ``expect`` records are in, how long read_topic keeps reading to catch extras. Every
#: writer has stopped by then, so anything left is already in the log and a fetch returns it
#: at once; the full ``idle_s`` is kept for reads that cannot say how much to expect.
SETTLE_S = 1.0


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int

    def json(self) -> Any:
        return orjson.loads(self.value) if self.value is not None else None


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expect: int | None = None,
    idle_s: float = 3.0,
    timeout_s: float = 60.0,
    isolation: str = "read_committed",
) -> list[Record]:
    """Every record of ``topic`` from the beginning, read by explicit assignment.

    Stops at ``expect`` records (then keeps reading until ``SETTLE_S``, at most ``idle_s``,
    pass without a new one, to catch extras), or after ``idle_s`` without a new record;
    never trusts the high watermark alone.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "session.timeout.ms": 6000,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        settle_s = min(idle_s, SETTLE_S)
        while time.monotonic() < deadline:
            batch = consumer.consume(num_messages=5000, timeout=0.5)
            for msg in batch:
                if msg.error():
                    continue
                out.append(
                    Record(
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        msg.key(),
                        msg.value(),
                        dict(msg.headers() or []),
                        msg.timestamp()[1],
                    )
                )
            if batch:
                last_new = time.monotonic()
                continue
            quiet_s = time.monotonic() - last_new
            if expect is None and quiet_s >= idle_s:
                break
            if expect is not None and len(out) >= expect and quiet_s >= settle_s:
                break
        return out
    finally:
        consumer.close()


def send_raw(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    """Send (key, value) pairs exactly as given, bypassing churnstream's encoder."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in messages:
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not failures, failures


class CommittedOffsets:
    """Sum of a group's committed offsets on a topic, read without joining the group.

    One consumer is kept open for the whole test so that each poll is a single
    OffsetFetch round trip: a slow poll lets a fast scorer run far past its kill point.
    (AdminClient's list_consumer_group_offsets crashed librdkafka 2.16 with SIGSEGV while
    the group coordinator was still loading, so Consumer.committed is used instead.)
    """

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                # through logging (captured by pytest), not raw lines on stderr while a
                # test has the broker down on purpose
                "logger": logging.getLogger("tests.librdkafka"),
            }
        )
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._partitions = [TopicPartition(topic, p) for p in parts]

    def __call__(self) -> int:
        for attempt in range(10):
            try:
                committed = self._consumer.committed(self._partitions, 10)
                return sum(max(tp.offset, 0) for tp in committed)
            except KafkaException:
                time.sleep(0.5 * (attempt + 1))  # coordinator moving or loading: ask again
        return 0

    def close(self) -> None:
        self._consumer.close()
