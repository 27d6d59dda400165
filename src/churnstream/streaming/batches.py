"""Consumed messages as a batch for the scoring core; the offsets a batch commits or rewinds."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, TopicPartition

from churnstream.exceptions import BrokerUnavailableError
from churnstream.kafka.reader import record_fields
from churnstream.logging import ERROR_CODE, PARTITION, TOPIC
from churnstream.scoring.messages import RawMessage

logger = logging.getLogger(__name__)


def raw_message(msg: Message) -> RawMessage:
    """One consumed message as the scoring core takes it (header values as bytes)."""
    return RawMessage(*record_fields(msg))


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
