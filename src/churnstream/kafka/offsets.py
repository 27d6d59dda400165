"""Offsets and read-backs with throwaway clients that never join or leave a group behind."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from churnstream.exceptions import BrokerUnavailableError
from churnstream.logging import ATTEMPT, DELAY_S, ERROR_CODE, TOPIC
from churnstream.retry import RetryNote, retrying
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 10.0
#: Read-back ends after this long with nothing new, even short of the high watermark:
#: the tansu fallback under-reports it.
IDLE_S = 2.0
READ_TIMEOUT_S = 120.0


def _probe(settings: Settings) -> Consumer:
    conf = settings.kafka.consumer_config(
        settings.consumer, f"churnstream-probe-{uuid.uuid4().hex}"
    )
    return Consumer(conf)


#: Leadership still moving (a topic just created, a broker just restarted): ask again.
TRANSIENT_CODES = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)
#: How long transient errors are retried before they are reported.
TRANSIENT_RETRY_S = 10.0
#: The first wait, and the cap of the jittered exponential backoff (see churnstream.retry).
RETRY_BACKOFF_S = 0.2
RETRY_MAX_BACKOFF_S = 1.0


def _transient(exc: BaseException) -> bool:
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(err, KafkaError) and (err.retriable() or err.code() in TRANSIENT_CODES)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The current end offset (high watermark) of each partition of ``topic``.

    Transient errors (see ``TRANSIENT_CODES``) are retried for ``TRANSIENT_RETRY_S``: right
    after a topic is created its partitions can answer "not leader" for a moment.
    """
    probe = _probe(settings)

    def note(retry: RetryNote) -> None:
        err = retry.error.args[0]
        logger.debug(
            "offsets of %s: %s; asking again in %.2fs",
            topic,
            retry.error,
            retry.delay_s,
            extra={
                TOPIC: topic,
                ERROR_CODE: err.name(),
                ATTEMPT: retry.attempt,
                DELAY_S: retry.delay_s,
            },
        )

    policy = retrying(
        deadline_s=TRANSIENT_RETRY_S,
        first_delay_s=RETRY_BACKOFF_S,
        max_delay_s=RETRY_MAX_BACKOFF_S,
        retry_on=_transient,
        on_retry=note,
    )
    try:
        return policy.call(_end_offsets, probe, topic)
    except KafkaException as exc:
        raise BrokerUnavailableError(f"cannot read offsets of {topic!r}: {exc}") from exc
    finally:
        probe.close()


def _end_offsets(probe: Consumer, topic: str) -> dict[int, int]:
    metadata = probe.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        raise BrokerUnavailableError(f"topic {topic!r} does not exist")
    return {
        p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=METADATA_TIMEOUT_S)[1]
        for p in metadata.topics[topic].partitions
    }


def scan_from(
    settings: Settings,
    topic: str,
    start: dict[int, int],
    visit: Callable[[Message], None],
) -> int:
    """Call ``visit`` for every record from ``start`` (partition -> offset) to the end.

    Partitions missing from ``start`` are read from the beginning. Returns how many records
    were visited. Uses assign(), so no consumer group is joined or committed.
    """
    ends = end_offsets(settings, topic)
    probe = _probe(settings)
    try:
        assignment = [TopicPartition(topic, p, start.get(p, 0)) for p in ends]
        pending = {p for p, end in ends.items() if end > start.get(p, 0)}
        if not pending:
            return 0
        probe.assign(assignment)
        seen = 0
        deadline = time.monotonic() + READ_TIMEOUT_S
        last_new = time.monotonic()
        while pending and time.monotonic() < deadline:
            messages = probe.consume(num_messages=5000, timeout=0.2)
            for msg in messages:
                if msg.error() is not None:
                    continue
                visit(msg)
                seen += 1
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    pending.discard(msg.partition() or 0)
            if messages:
                last_new = time.monotonic()
            elif time.monotonic() - last_new >= IDLE_S:
                break
        return seen
    finally:
        probe.close()
