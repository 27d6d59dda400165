"""Topic administration: check the cluster answers; create, delete, list and describe topics.

Every call is bounded: a broker that does not answer gives BrokerUnavailableError within
``timeout_s`` instead of a hang, and a refused login or TLS handshake gives
AuthenticationError within about a second (the admin client's :class:`ClientErrorWatch`).
Clients come from :mod:`churnstream.kafka.clients`; reading topics is
:mod:`churnstream.kafka.reader`'s job.

Watermarks are reported as the broker gives them; tansu's high watermark is wrong (the last
batch's base offset + 1): see :mod:`churnstream.kafka.reader`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, not in __all__
    AdminClient,
    NewTopic,
    OffsetSpec,
)

from churnstream.exceptions import BrokerError, BrokerUnavailableError, ChurnstreamError
from churnstream.kafka.clients import WatchedAdminClient, admin_client
from churnstream.kafka.errors import error_code, error_reason
from churnstream.logging import ATTEMPT, DELAY_S, ERROR_CODE, TOPIC
from churnstream.retry import NotYet, RetryNote, retrying
from churnstream.settings import KafkaSettings, Settings
from churnstream.settings.sections import TopicSettings

logger = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 10.0
#: New topics' leaders are looked for again after this, then with jittered backoff up to the cap.
LEADER_WAIT_FIRST_S = 0.1
LEADER_WAIT_MAX_S = 1.0
# Metadata waits are cut into slices that grow from the first to the last value, so that an
# authentication failure reported meanwhile is noticed quickly, while a slow cluster still
# gets long enough a wait to answer.
METADATA_FIRST_WAIT_S = 0.25
METADATA_MAX_WAIT_S = 2.0
FAST_FAILURE_POLL_S = 0.1
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
#: How long transient errors of a ListOffsets request are retried before they are reported.
TRANSIENT_RETRY_S = 10.0
#: The first wait, and the cap of the jittered exponential backoff (see churnstream.retry).
RETRY_BACKOFF_S = 0.2
RETRY_MAX_BACKOFF_S = 1.0


@dataclass(frozen=True)
class TopicCreation:
    """Outcome of creating one topic: ``created`` now, or it already ``exists``."""

    name: str
    status: Literal["created", "exists"]
    partitions: int
    expected_partitions: int

    @property
    def mismatch(self) -> bool:
        """True when an existing topic's partition count differs from the settings."""
        return self.partitions != self.expected_partitions


@dataclass(frozen=True)
class TopicSummary:
    name: str
    partitions: int
    replication_factor: int


@dataclass(frozen=True)
class PartitionDescription:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    low: int
    high: int

    @property
    def messages(self) -> int:
        """high - low: exact on Apache Kafka, understated on tansu, which counts batches badly."""
        return max(0, self.high - self.low)


@dataclass(frozen=True)
class TopicDescription:
    name: str
    partitions: tuple[PartitionDescription, ...]


def check_reachable(kafka: KafkaSettings, *, timeout_s: float = ADMIN_TIMEOUT_S) -> None:
    """Check that the cluster answers and accepts our credentials; call it before starting.

    Raises AuthenticationError (within about a second) when the cluster refuses our SASL
    credentials or a TLS handshake fails (an untrusted broker certificate, a rejected client
    certificate), BrokerUnavailableError unless a broker answers a metadata request within
    ``timeout_s``, ConfigError when a secret or TLS file cannot be read.
    """
    _metadata(admin_client(kafka), kafka, timeout_s)


def create_topics(
    kafka: KafkaSettings,
    topics: Sequence[TopicSettings],
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> list[TopicCreation]:
    """Create each topic unless it exists; idempotent. Waits until new topics have leaders.

    ``configs`` maps a topic name to the topic configuration it is created with (e.g.
    ``{"cleanup.policy": "compact"}``). An existing topic with a different partition count
    is returned with ``mismatch`` True (and logged as a warning); it is not altered.
    """
    configs = configs or {}
    admin = admin_client(kafka)
    metadata = _metadata(admin, kafka, timeout_s)
    outcomes: dict[str, TopicCreation] = {}
    missing: list[TopicSettings] = []
    for topic in topics:
        existing = metadata.topics.get(topic.name)
        if existing is not None and existing.error is None:
            outcomes[topic.name] = _exists(topic, len(existing.partitions))
        else:
            missing.append(topic)
    if missing:
        new = [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=t.replication_factor,
                config=dict(configs.get(t.name, {})),
            )
            for t in missing
        ]
        futures = admin.create_topics(new, request_timeout=timeout_s, operation_timeout=timeout_s)
        for topic in missing:
            try:
                futures[topic.name].result(timeout=timeout_s)
            except concurrent.futures.TimeoutError:
                raise BrokerUnavailableError(
                    f"creating topic {topic.name!r} at {kafka.bootstrap_servers} "
                    f"did not finish within {timeout_s:g}s"
                ) from None
            except KafkaException as exc:
                if error_code(exc) != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerError(
                        f"could not create topic {topic.name!r}: {error_reason(exc)}"
                    ) from None
                # Created concurrently by someone else: report what is there.
                partitions = len(_topic_metadata(admin, kafka, topic.name, timeout_s).partitions)
                outcomes[topic.name] = _exists(topic, partitions)
            else:
                outcomes[topic.name] = TopicCreation(
                    topic.name, "created", topic.partitions, topic.partitions
                )
                logger.info("created topic %s (%d partitions)", topic.name, topic.partitions)
        created = [t.name for t in missing if outcomes[t.name].status == "created"]
        _wait_for_leaders(admin, kafka, created, timeout_s)
    return [outcomes[t.name] for t in topics]


def ensure_topics(settings: Settings, *, timeout_s: float = ADMIN_TIMEOUT_S) -> list[TopicCreation]:
    """Create the pipeline's three topics (raw, predictions, dead letter) from settings."""
    topics = [settings.topics.raw, settings.topics.predictions, settings.topics.deadletter]
    return create_topics(settings.kafka, topics, timeout_s=timeout_s)


def delete_topics(
    kafka: KafkaSettings, names: Iterable[str], *, timeout_s: float = ADMIN_TIMEOUT_S
) -> None:
    """Delete topics; ones that do not exist are ignored."""
    names = list(names)
    if not names:
        return
    admin = admin_client(kafka)
    _metadata(admin, kafka, timeout_s)
    futures = admin.delete_topics(names, request_timeout=timeout_s, operation_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            raise BrokerUnavailableError(f"deleting topic {name!r} timed out") from None
        except KafkaException as exc:
            if error_code(exc) != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BrokerError(f"could not delete topic {name!r}: {error_reason(exc)}") from None


def list_topics(
    kafka: KafkaSettings,
    *,
    include_internal: bool = False,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> list[TopicSummary]:
    """Topics on the cluster, sorted by name; internal ``__*`` topics only if asked."""
    metadata = _metadata(admin_client(kafka), kafka, timeout_s)
    out = []
    for name, topic in sorted(metadata.topics.items()):
        if topic.error is not None or (name.startswith("__") and not include_internal):
            continue
        replication = max((len(p.replicas) for p in topic.partitions.values()), default=0)
        out.append(TopicSummary(name, len(topic.partitions), replication))
    return out


def describe_topics(
    kafka: KafkaSettings,
    names: Sequence[str] | None = None,
    *,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> list[TopicDescription]:
    """Partitions, leaders, replicas, ISR and low/high watermarks of each topic.

    ``names`` None means every non-internal topic. An unknown name is an error.
    """
    admin = admin_client(kafka)
    metadata = _metadata(admin, kafka, timeout_s)
    if names is None:
        names = sorted(
            n for n, t in metadata.topics.items() if not n.startswith("__") and not t.error
        )
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            raise ChurnstreamError(f"topic {name!r} does not exist at {kafka.bootstrap_servers}")
    partitions = [
        TopicPartition(name, p) for name in names for p in sorted(metadata.topics[name].partitions)
    ]
    low = _list_offsets(admin, partitions, "earliest", timeout_s)
    high = _list_offsets(admin, partitions, "latest", timeout_s)
    described = []
    for name in names:
        parts = []
        for pid, part in sorted(metadata.topics[name].partitions.items()):
            parts.append(
                PartitionDescription(
                    partition=pid,
                    leader=part.leader,
                    replicas=tuple(part.replicas),
                    isr=tuple(part.isrs),
                    low=low.get((name, pid), -1),
                    high=high.get((name, pid), -1),
                )
            )
        described.append(TopicDescription(name, tuple(parts)))
    return described


def topic_partitions(
    kafka: KafkaSettings, topic: str, *, timeout_s: float = ADMIN_TIMEOUT_S
) -> list[int] | None:
    """The partition ids of ``topic``, sorted, or None if it does not exist."""
    found = _metadata(admin_client(kafka), kafka, timeout_s).topics.get(topic)
    if found is None or found.error is not None:
        return None
    return sorted(found.partitions)


def end_offsets(
    kafka: KafkaSettings, topic: str, *, timeout_s: float = ADMIN_TIMEOUT_S
) -> dict[int, int]:
    """The end offset (high watermark) of each partition of ``topic``, as the broker says.

    Exact on Apache Kafka. tansu under-reports it (the last record batch's base offset + 1),
    so never decide from it alone that a topic was read to its end:
    :class:`churnstream.kafka.reader.TopicReader` also waits for end-of-partition and
    idleness. Transient errors (``TRANSIENT_CODES``: leadership still settling right after a
    topic was created) are asked again for ``TRANSIENT_RETRY_S``. A missing topic raises
    ChurnstreamError.
    """
    admin = admin_client(kafka)
    partitions = sorted(_topic_metadata(admin, kafka, topic, timeout_s).partitions)
    found = _list_offsets(
        admin, [TopicPartition(topic, p) for p in partitions], "latest", timeout_s
    )
    return {p: found[(topic, p)] for p in partitions}


# --------------------------------------------------------------------------- internals


def _exists(topic: TopicSettings, partitions: int) -> TopicCreation:
    outcome = TopicCreation(topic.name, "exists", partitions, topic.partitions)
    if outcome.mismatch:
        logger.warning(
            "topic %s already exists with %d partitions, but the settings say %d",
            topic.name,
            partitions,
            topic.partitions,
        )
    return outcome


def _metadata(admin: AdminClient, kafka: KafkaSettings, timeout_s: float) -> Any:
    """Cluster metadata; AuthenticationError or BrokerUnavailableError as check_reachable."""
    watch = admin.watch if isinstance(admin, WatchedAdminClient) else None
    deadline = time.monotonic() + timeout_s
    wait_s = METADATA_FIRST_WAIT_S if watch is not None else timeout_s
    while True:
        slice_s = max(0.01, min(wait_s, deadline - time.monotonic()))
        started = time.monotonic()
        try:
            return admin.list_topics(timeout=slice_s)
        except KafkaException as exc:
            error = exc
        # Failing before the slice ran out is librdkafka giving up, not a timeout: as before
        # slicing, report it now, once the error callback has had its chance to say why.
        gave_up = time.monotonic() - started < slice_s - 0.05
        if watch is not None:
            admin.poll(FAST_FAILURE_POLL_S if gave_up else 0)
            watch.raise_if_failed()
        if gave_up or time.monotonic() >= deadline:
            last = watch.last_error if watch is not None else None
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {kafka.bootstrap_servers} within {timeout_s:g}s "
                f"({error_reason(error)})" + (f"; last error: {last}" if last else "")
            ) from None
        wait_s = min(wait_s * 2, METADATA_MAX_WAIT_S)


def _topic_metadata(admin: AdminClient, kafka: KafkaSettings, name: str, timeout_s: float) -> Any:
    topic = _metadata(admin, kafka, timeout_s).topics.get(name)
    if topic is None or topic.error is not None:
        raise ChurnstreamError(f"topic {name!r} does not exist at {kafka.bootstrap_servers}")
    return topic


def _wait_for_leaders(
    admin: AdminClient, kafka: KafkaSettings, names: Sequence[str], timeout_s: float
) -> None:
    """CreateTopics returns before every broker knows the topic; wait until all have leaders."""
    pending = set(names)

    def check() -> None:
        metadata = _metadata(admin, kafka, timeout_s)
        for name in list(pending):
            topic = metadata.topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                pending.discard(name)
        if pending:
            raise NotYet(f"topics {sorted(pending)} have no leader {timeout_s:g}s after creation")

    policy = retrying(
        deadline_s=timeout_s,
        first_delay_s=LEADER_WAIT_FIRST_S,
        max_delay_s=LEADER_WAIT_MAX_S,
        retry_on=NotYet,
    )
    try:
        policy.call(check)
    except NotYet as exc:
        raise BrokerUnavailableError(str(exc)) from None


def _list_offsets(
    admin: AdminClient,
    partitions: Sequence[TopicPartition],
    which: Literal["earliest", "latest"],
    timeout_s: float,
) -> dict[tuple[str, int], int]:
    """One ListOffsets request for ``partitions``, asked again while errors are transient."""
    if not partitions:
        return {}
    if which == "earliest":
        spec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
    else:
        spec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    where = ", ".join(sorted({tp.topic for tp in partitions}))

    def note(retry: RetryNote) -> None:
        logger.debug(
            "offsets of %s: %s; asking again in %.2fs",
            where,
            error_reason(retry.error),
            retry.delay_s,
            extra={
                TOPIC: where,
                ERROR_CODE: _error_name(retry.error),
                ATTEMPT: retry.attempt,
                DELAY_S: retry.delay_s,
            },
        )

    def ask() -> dict[tuple[str, int], int]:
        futures = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=timeout_s)
        out: dict[tuple[str, int], int] = {}
        for tp, future in futures.items():
            try:
                out[(tp.topic, tp.partition)] = int(future.result(timeout=timeout_s).offset)
            except concurrent.futures.TimeoutError:
                raise BrokerUnavailableError(
                    f"listing offsets of {tp.topic}[{tp.partition}] timed out"
                ) from None
        return out

    policy = retrying(
        deadline_s=TRANSIENT_RETRY_S,
        first_delay_s=RETRY_BACKOFF_S,
        max_delay_s=RETRY_MAX_BACKOFF_S,
        retry_on=_transient,
        on_retry=note,
    )
    try:
        return policy.call(ask)
    except KafkaException as exc:
        error = BrokerUnavailableError if _transient(exc) else BrokerError
        raise error(f"cannot read offsets of {where}: {error_reason(exc)}") from None


def _transient(exc: BaseException) -> bool:
    """Leadership still settling, or an error librdkafka itself calls retriable."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(err, KafkaError) and (err.retriable() or err.code() in TRANSIENT_CODES)


def _error_name(exc: BaseException) -> str | None:
    err = exc.args[0] if exc.args else None
    return str(err.name()) if isinstance(err, KafkaError) else None
