"""Small real-Kafka helpers for tests: read a whole topic, send raw messages."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition


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

    Stops at ``expect`` records (then keeps reading ``idle_s`` more to catch extras), or
    after ``idle_s`` without a new record; never trusts the high watermark alone.
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
            elif time.monotonic() - last_new >= idle_s and (expect is None or len(out) >= expect):
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
