"""Consumed messages as a batch for the scoring core; the offsets a batch commits or rewinds.

A batch is taken from the consumer by :func:`next_batch`: it waits for its first message
only, then adds what is already queued. ``consumer.consume(num_messages=n, timeout=t)``
returns when ``n`` messages are queued or ``t`` has passed, so below ``n`` messages per
``t`` it always waited the whole ``t``: at 1,000 events/s a 5 ms wait held every event for
a batch that never filled, and an event that came in while the previous batch was being
published waited those 5 ms after it. Under a backlog librdkafka's prefetch queue holds a
full batch, which is taken at once as before (docs/benchmarks.md, *Latency*).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from churnstream.exceptions import BrokerUnavailableError
from churnstream.kafka.native import NativeConsumer
from churnstream.logging import ERROR_CODE, PARTITION, TOPIC
from churnstream.scoring.messages import RawMessage

logger = logging.getLogger(__name__)


def next_batch(consumer: Consumer, max_records: int, wait_s: float) -> list[Message]:
    """Up to ``max_records`` messages (and consumer events): at most ``wait_s`` of waiting
    for the first, then only those already in the consumer's queue; empty if nothing came
    within ``wait_s``."""
    first = consumer.consume(num_messages=1, timeout=wait_s)
    if not first or max_records <= 1:
        return first
    # timeout=0: librdkafka hands over what is queued now and does not wait for more.
    return first + consumer.consume(num_messages=max_records - 1, timeout=0)


def take_batch(consumer: Consumer, max_records: int, wait_s: float) -> list[RawMessage]:
    """The next batch as :func:`next_batch` takes it, as the scoring core takes it
    (:func:`usable`); on the native client, built in Rust in one call."""
    if isinstance(consumer, NativeConsumer):
        return consumer.take(max_records, wait_s, RawMessage)
    return usable(next_batch(consumer, max_records, wait_s))


def raw_message(msg: Message) -> RawMessage:
    """One consumed message as the scoring core takes it.

    Its headers go over as the client gave them, not copied per message: only a dead letter
    reads them, and converts them then (a py-spy profile of the scorer put 13% of the poll
    loop in the copy).
    """
    return RawMessage(
        msg.topic() or "",
        msg.partition() or 0,
        msg.offset() or 0,
        msg.key(),
        msg.value(),
        msg.headers(),
    )


def usable(messages: list[Message]) -> list[RawMessage]:
    """The messages that carry a record; end-of-partition events and soft errors are skipped.

    Raises:
        BrokerUnavailableError: the consumer reported a fatal error.
    """
    batch: list[RawMessage] = []
    for msg in messages:
        err = msg.error()
        if err is None:
            batch.append(raw_message(msg))
        elif err.code() == KafkaError._PARTITION_EOF:
            continue
        elif err.fatal():
            raise BrokerUnavailableError(f"fatal consumer error: {err}")
        else:
            logger.warning(
                "consumer error: %s",
                err,
                extra={TOPIC: msg.topic(), PARTITION: msg.partition(), ERROR_CODE: err.name()},
            )
    return batch


def next_offsets(batch: Sequence[RawMessage]) -> list[TopicPartition]:
    """The offsets to commit once ``batch`` is done: one past its last, per partition."""
    highest: dict[tuple[str, int], int] = {}
    for m in batch:
        key = (m.topic, m.partition)
        highest[key] = max(highest.get(key, -1), m.offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]


def first_offsets(batch: Sequence[RawMessage]) -> list[TopicPartition]:
    """The offsets to rewind to for scoring ``batch`` again: its first, per partition."""
    lowest: dict[tuple[str, int], int] = {}
    for m in batch:
        key = (m.topic, m.partition)
        lowest[key] = min(lowest.get(key, m.offset), m.offset)
    return [TopicPartition(t, p, o) for (t, p), o in lowest.items()]
