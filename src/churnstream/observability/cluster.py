"""The Kafka side of ``churnstream status`` (and the dashboard's group lag).

Every call is bounded by a timeout. Clients come from :mod:`churnstream.kafka.clients`,
and the dead-letter topic is read by :class:`churnstream.kafka.reader.TopicReader`.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from churnstream.exceptions import BrokerError, ChurnstreamError
from churnstream.kafka import admin, clients
from churnstream.kafka.reader import TopicReader, message_headers
from churnstream.logging import ATTEMPT, CONSUMER_GROUP, DELAY_S
from churnstream.observability.status import (
    ClusterStatus,
    DeadLetterTally,
    GroupStatus,
    TopicStatus,
    group_lag,
    model_status,
)
from churnstream.retry import RetryNote, retrying
from churnstream.settings import KafkaSettings, Settings

logger = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 5.0
DLQ_IDLE_S = 1.0
DLQ_MAX_MESSAGES = 1_000_000
#: Committed offsets are asked for this many times while a coordinator moves or loads, with
#: jittered backoff from the first wait up to the cap (see churnstream.retry).
COMMITTED_ATTEMPTS = 3
COMMITTED_FIRST_BACKOFF_S = 0.5
COMMITTED_MAX_BACKOFF_S = 1.0


def topic_statuses(
    kafka: KafkaSettings, *, timeout_s: float = STATUS_TIMEOUT_S
) -> list[TopicStatus]:
    """Every non-internal topic with its partitions' end offsets (high watermarks)."""
    return [
        TopicStatus(
            name=topic.name,
            partitions=len(topic.partitions),
            end_offsets=tuple(p.high for p in topic.partitions),
            messages=sum(p.messages for p in topic.partitions),
        )
        for topic in admin.describe_topics(kafka, timeout_s=timeout_s)
    ]


def consumer_groups(
    kafka: KafkaSettings,
    ends: Mapping[tuple[str, int], int],
    *,
    only: Sequence[str] | None = None,
    timeout_s: float = STATUS_TIMEOUT_S,
) -> list[GroupStatus]:
    """Consumer groups with their committed offsets turned into lag against ``ends``.

    ``only`` restricts to these group ids (they need not be listed by the broker, e.g. a
    group with committed offsets but no member). Groups of throwaway readers
    (``*-reader-*``, ``churnstream-dashboard-*``) are skipped.
    """
    client = clients.admin_client(kafka)
    states: dict[str, str] = {}
    if only is None:
        try:
            listing = client.list_consumer_groups(request_timeout=timeout_s).result(timeout_s)
        except (KafkaException, concurrent.futures.TimeoutError) as exc:
            raise ChurnstreamError(f"could not list consumer groups: {exc}") from None
        for group in listing.valid:
            states[group.group_id] = _state_name(group.state)
        names = sorted(g for g in states if not _throwaway(g))
    else:
        names = list(only)
    out = []
    for group_id in names:
        state = states.get(group_id, "unknown")
        try:
            committed = _committed(kafka, group_id, ends, timeout_s)
        except (KafkaException, ChurnstreamError) as exc:
            out.append(GroupStatus(group_id, state, (), error=f"offsets unavailable: {exc}"))
            continue
        out.append(GroupStatus(group_id, state, group_lag(ends, committed)))
    return out


def _committed(
    kafka: KafkaSettings, group_id: str, ends: Mapping[tuple[str, int], int], timeout_s: float
) -> dict[tuple[str, int], int]:
    """The group's committed offsets, read by a consumer that never joins the group."""
    consumer = clients.group_offsets_consumer(kafka, group_id)
    try:
        partitions = [TopicPartition(topic, partition) for topic, partition in ends]

        def note(retry: RetryNote) -> None:
            logger.debug(
                "committed offsets of %s: %s; asking again in %.1fs",
                group_id,
                retry.error,
                retry.delay_s,
                extra={CONSUMER_GROUP: group_id, ATTEMPT: retry.attempt, DELAY_S: retry.delay_s},
            )

        policy = retrying(  # the coordinator moving or loading: ask again
            attempts=COMMITTED_ATTEMPTS,
            first_delay_s=COMMITTED_FIRST_BACKOFF_S,
            max_delay_s=COMMITTED_MAX_BACKOFF_S,
            retry_on=KafkaException,
            on_retry=note,
        )
        try:
            found = policy.call(consumer.committed, partitions, timeout=timeout_s)
        except KafkaException as exc:
            raise ChurnstreamError(str(exc)) from None
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
    finally:
        consumer.close()


def read_dead_letters(
    kafka: KafkaSettings,
    topic: str,
    *,
    idle_s: float = DLQ_IDLE_S,
    timeout_s: float = 60.0,
    max_messages: int = DLQ_MAX_MESSAGES,
) -> tuple[DeadLetterTally, bool]:
    """Read ``topic`` from the beginning (no group, no commit) and tally its letters.

    Stops once read to its end and idle for ``idle_s``, after ``timeout_s`` in total or
    at ``max_messages``; returns the tally and whether the read was complete (not cut short).
    """
    tally = DeadLetterTally()
    reader = TopicReader(kafka, topic, purpose="status", idle_s=idle_s, max_duration_s=timeout_s)
    with reader:
        for msg in reader:
            tally.add(message_headers(msg), msg.value())
            if reader.read >= max_messages:
                return tally, False
    return tally, reader.complete


def collect_status(
    settings: Settings,
    *,
    models_dir: Path | None = None,
    dead_letters: bool = True,
    timeout_s: float = STATUS_TIMEOUT_S,
    dlq_idle_s: float = DLQ_IDLE_S,
) -> ClusterStatus:
    """Everything ``churnstream status`` shows; an unreachable broker is a status, not an error."""
    kafka = settings.kafka
    status = ClusterStatus(bootstrap=kafka.bootstrap_servers, reachable=False)
    status.model = _model(models_dir if models_dir is not None else settings.model.models_dir)
    try:
        metadata = clients.admin_client(kafka).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        status.error = f"no broker answered within {timeout_s:g}s ({exc})"
        return status
    status.reachable = True
    status.brokers = len(metadata.brokers)
    roles = {
        settings.topics.raw.name: "raw",
        settings.topics.predictions.name: "predictions",
        settings.topics.deadletter.name: "deadletter",
    }
    topics = topic_statuses(kafka, timeout_s=timeout_s)
    status.topics = [
        TopicStatus(t.name, t.partitions, t.end_offsets, t.messages, roles.get(t.name))
        for t in topics
    ]
    ends = {(t.name, p): high for t in topics for p, high in enumerate(t.end_offsets)}
    try:
        status.groups = consumer_groups(kafka, ends, timeout_s=timeout_s)
    except ChurnstreamError as exc:
        status.notes.append(str(exc))
    dlq = settings.topics.deadletter.name
    status.deadletter_topic = dlq
    if dead_letters and any(t.name == dlq for t in topics):
        dlq_topic = next(t for t in topics if t.name == dlq)
        if dlq_topic.end_offset_total == 0:
            status.dead_letters = DeadLetterTally().as_dict()
        else:
            try:
                tally, complete = read_dead_letters(kafka, dlq, idle_s=dlq_idle_s)
            except BrokerError as exc:
                status.notes.append(f"could not read {dlq}: {exc}")
                return status
            status.dead_letters = tally.as_dict()
            if not complete:
                status.notes.append(
                    f"{dlq} was not read to the end; dead-letter counts are partial"
                )
    elif dead_letters:
        status.notes.append(f"dead-letter topic {dlq} does not exist")
    return status


def _model(models_dir: Path) -> Any:
    from churnstream.model import artifacts

    try:
        version_dir = artifacts.resolve_version_dir(models_dir)
        metadata = artifacts.read_metadata(version_dir)
    except ChurnstreamError as exc:
        return model_status(None, str(models_dir), str(exc))
    return model_status(metadata, str(version_dir), None)


def _state_name(state: Any) -> str:
    name = getattr(state, "name", None)
    return str(name).lower() if name else str(state).lower()


def _throwaway(group_id: str) -> bool:
    return "-reader-" in group_id or group_id.startswith("churnstream-dashboard-")
