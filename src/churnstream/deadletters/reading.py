"""Reading a dead-letter topic and its replay markers from Kafka.

Both are read by :class:`churnstream.kafka.reader.TopicReader` from the beginning of every
partition, ``read_committed`` (markers and replays are transactional, so only committed
records count), never committing: no consumer group is left behind.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Message

from churnstream.deadletters.letters import Letter
from churnstream.deadletters.markers import MarkerIndex, marker_topic_for
from churnstream.kafka import admin
from churnstream.kafka.reader import READ_IDLE_S, TopicReader, record_fields
from churnstream.settings import Settings
from churnstream.settings.sections import TopicSettings

logger = logging.getLogger(__name__)

MARKER_PARTITIONS = 1


@dataclass
class ReadResult:
    records: list[Letter]
    limit_reached: bool = False


def read_letters(
    settings: Settings,
    topic: str,
    *,
    limit: int | None = None,
    idle_s: float = READ_IDLE_S,
    timeout_s: float = admin.ADMIN_TIMEOUT_S,
    partitions: Sequence[int] | None = None,
) -> ReadResult:
    """Every record of ``topic`` (up to ``limit``), read committed, from the beginning.

    Raises ChurnstreamError if the topic does not exist, BrokerUnavailableError if a
    partition cannot be fetched from within ``timeout_s``.
    """
    records: list[Letter] = []
    limit_reached = False
    reader = TopicReader(
        settings.kafka,
        topic,
        purpose="dlq",
        partitions=partitions,
        idle_s=idle_s,
        timeout_s=timeout_s,
    )
    with reader:
        for msg in reader:
            records.append(_letter(msg))
            if limit is not None and len(records) >= limit:
                limit_reached = True
                break
    if limit is not None:
        records.sort(key=lambda r: (r.partition, r.offset))
        records = records[:limit]
    return ReadResult(records, limit_reached)


def _letter(msg: Message) -> Letter:
    return Letter(*record_fields(msg))


def read_markers(
    settings: Settings, marker_topic: str, *, idle_s: float, timeout_s: float
) -> MarkerIndex:
    """The replay markers; empty if the marker topic does not exist yet."""
    partitions = admin.topic_partitions(settings.kafka, marker_topic, timeout_s=timeout_s)
    if partitions is None:
        return MarkerIndex()
    result = read_letters(
        settings, marker_topic, idle_s=idle_s, timeout_s=timeout_s, partitions=partitions
    )
    ordered = sorted(result.records, key=lambda r: (r.partition, r.offset))
    return MarkerIndex.from_records((r.key, r.value) for r in ordered)


def read_letters_and_markers(
    settings: Settings,
    topic: str,
    *,
    limit: int | None = None,
    idle_s: float = READ_IDLE_S,
    timeout_s: float = admin.ADMIN_TIMEOUT_S,
) -> tuple[ReadResult, MarkerIndex]:
    """The dead letters and their replay markers, read side by side (each read ends idle)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        letters = pool.submit(
            read_letters, settings, topic, limit=limit, idle_s=idle_s, timeout_s=timeout_s
        )
        markers = pool.submit(
            read_markers, settings, marker_topic_for(topic), idle_s=idle_s, timeout_s=timeout_s
        )
        return letters.result(), markers.result()


def ensure_marker_topic(
    settings: Settings, marker_topic: str, *, timeout_s: float = admin.ADMIN_TIMEOUT_S
) -> bool:
    """Create the compacted marker topic unless it exists; True if created now."""
    topic = TopicSettings(
        name=marker_topic,
        partitions=MARKER_PARTITIONS,
        replication_factor=settings.topics.deadletter.replication_factor,
    )
    [outcome] = admin.create_topics(
        settings.kafka,
        [topic],
        configs={marker_topic: {"cleanup.policy": "compact"}},
        timeout_s=timeout_s,
    )
    if outcome.status == "created":
        logger.info("created replay marker topic %s (compacted)", marker_topic)
    return outcome.status == "created"
