"""Dead-letter tools, the Kafka part: read a dead-letter topic, replay letters with markers.

What to report and what to re-send is decided by the pure :mod:`churnstream.dlq`; this
module only reads and writes.

**Reading.** Topics are read with ``assign()`` from the beginning of every partition under a
throwaway group id, never committing, so no consumer group is left behind. A read ends once
every partition has been fetched from and nothing new arrived for ``idle_s``: the high
watermark alone is never trusted (tansu's is wrong).

**Replay markers.** Every replayed letter gets a record in ``<dead-letter topic>.replays``
(1 partition, ``cleanup.policy=compact``, created on first use), keyed by the letter id
``topic:partition:offset``. A replay reads that topic fully (``read_committed``) and skips
letters already marked, or whose input (``churnstream.source``) was already replayed.

By default the replayed messages and their markers are written in **one Kafka transaction**
per chunk (``transactional.id`` = ``churnstream-dlq-replay.<dead-letter topic>``): on Apache
Kafka or Redpanda, a crash leaves either both or neither visible to ``read_committed``
readers, and the next replay's ``init_transactions()`` aborts a transaction a crashed run
left open (else the broker does after ``transaction.timeout.ms``, 10 s, which also bounds
how long it holds back ``read_committed`` readers of the input topic). The same id means a
second replay of one dead-letter topic fences a running one.

Within the transaction the markers are produced only after the replayed messages are
acknowledged, and without transactions (``--no-transactions``) the same order holds across
two steps. So where atomicity is missing (tansu never aborts a crashed producer's
transaction; no transaction at all) a crash errs on the side of *replayed but not marked*:
at-least-once, like the scorer, never a letter marked but not re-sent.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from churnstream.dlq import (
    Letter,
    LetterFilter,
    Marker,
    MarkerIndex,
    ReplayItem,
    ReplayPlan,
    Summary,
    marker_message,
    marker_topic_for,
    parse_letter,
    plan_replay,
    summarise,
)
from churnstream.exceptions import (
    BrokerError,
    BrokerUnavailableError,
    ChurnstreamError,
    DeliveryError,
)
from churnstream.kafka import admin
from churnstream.retry import NotYet, retrying
from churnstream.schemas import utc_now_iso
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

READ_IDLE_S = 2.0
REPLAY_CHUNK_RECORDS = 500
TXN_TIMEOUT_S = 30.0
FLUSH_TIMEOUT_S = 60.0
BUFFER_FULL_POLL_S = 0.1
MARKER_PARTITIONS = 1
#: Retries (a new marker topic becoming visible, a retriable commit error) start at the first
#: wait and back off with jitter up to the cap (see churnstream.retry).
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 1.0
TRANSACTIONAL_ID_PREFIX = "churnstream-dlq-replay."


# --------------------------------------------------------------------------- reading


@dataclass
class ReadResult:
    records: list[Letter]
    limit_reached: bool = False


def topic_partitions(settings: Settings, topic: str, *, timeout_s: float) -> list[int] | None:
    """The partition ids of ``topic``, or None if it does not exist."""
    for summary in admin.list_topics(settings.kafka, include_internal=True, timeout_s=timeout_s):
        if summary.name == topic:
            return list(range(summary.partitions))
    return None


def read_topic(
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
    if partitions is None:
        partitions = topic_partitions(settings, topic, timeout_s=timeout_s)
        if partitions is None:
            raise ChurnstreamError(
                f"topic {topic!r} does not exist at {settings.kafka.bootstrap_servers}"
            )
    conf = settings.kafka.consumer_config(
        settings.consumer, f"churnstream-dlq-reader-{uuid.uuid4().hex[:12]}"
    )
    # A reader, not a group member: nothing is committed under this throwaway group id.
    # EOF events tell us each partition was fetched from; markers and replays are
    # transactional, so only committed records count.
    conf.update({"enable.partition.eof": True, "isolation.level": "read_committed"})
    try:
        consumer = Consumer(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise BrokerError(f"invalid Kafka consumer configuration: {exc}") from None
    records: list[Letter] = []
    limit_reached = False
    messages = admin.iter_from_beginning(
        consumer, topic, partitions, idle_s=idle_s, timeout_s=timeout_s
    )
    with contextlib.closing(messages):
        for msg in messages:
            records.append(_letter(msg))
            if limit is not None and len(records) >= limit:
                limit_reached = True
                break
    if limit is not None:
        records.sort(key=lambda r: (r.partition, r.offset))
        records = records[:limit]
    return ReadResult(records, limit_reached)


def _letter(msg: Message) -> Letter:
    raw_headers = msg.headers() or []
    pairs = list(raw_headers.items()) if isinstance(raw_headers, dict) else raw_headers
    headers = [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs]
    return Letter(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        headers=headers,
    )


def read_markers(
    settings: Settings, marker_topic: str, *, idle_s: float, timeout_s: float
) -> MarkerIndex:
    """The replay markers; empty if the marker topic does not exist yet."""
    partitions = topic_partitions(settings, marker_topic, timeout_s=timeout_s)
    if partitions is None:
        return MarkerIndex()
    result = read_topic(
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
            read_topic, settings, topic, limit=limit, idle_s=idle_s, timeout_s=timeout_s
        )
        markers = pool.submit(
            read_markers, settings, marker_topic_for(topic), idle_s=idle_s, timeout_s=timeout_s
        )
        return letters.result(), markers.result()


def ensure_marker_topic(
    settings: Settings, marker_topic: str, *, timeout_s: float = admin.ADMIN_TIMEOUT_S
) -> bool:
    """Create the compacted marker topic unless it exists; True if created now."""
    if topic_partitions(settings, marker_topic, timeout_s=timeout_s) is not None:
        return False
    client = admin.admin_client(settings.kafka)
    replication = settings.topics.deadletter.replication_factor
    new = NewTopic(
        marker_topic,
        num_partitions=MARKER_PARTITIONS,
        replication_factor=replication,
        config={"cleanup.policy": "compact"},
    )
    future = client.create_topics([new], request_timeout=timeout_s, operation_timeout=timeout_s)[
        marker_topic
    ]
    try:
        future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise BrokerUnavailableError(
            f"creating topic {marker_topic!r} did not finish within {timeout_s:g}s"
        ) from None
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise BrokerError(f"could not create topic {marker_topic!r}: {exc}") from None
    logger.info("created replay marker topic %s (compacted)", marker_topic)
    _wait_for_topic(settings, marker_topic, timeout_s)
    return True


def _wait_for_topic(settings: Settings, topic: str, timeout_s: float) -> None:
    def check() -> None:
        if topic_partitions(settings, topic, timeout_s=timeout_s) is None:
            raise NotYet(f"topic {topic!r} not visible {timeout_s:g}s after creation")

    policy = retrying(
        deadline_s=timeout_s, first_delay_s=RETRY_FIRST_S, max_delay_s=RETRY_MAX_S, retry_on=NotYet
    )
    try:
        policy.call(check)
    except NotYet as exc:
        raise BrokerUnavailableError(str(exc)) from None


# --------------------------------------------------------------------------- replay


def transactional_id(deadletter_topic: str) -> str:
    """One id per dead-letter topic: a second concurrent replay of it fences the first."""
    return f"{TRANSACTIONAL_ID_PREFIX}{deadletter_topic}"


@dataclass
class ReplayOutcome:
    """Counts of one replay run; ``ok`` False means a non-zero exit."""

    considered: int
    skipped: dict[str, int]
    not_replayable: list[tuple[str, str]]
    to_topic: str
    marker_topic: str
    dry_run: bool
    transactional: bool
    planned: int
    replayed: int = 0
    failed: int = 0
    #: Replayed but not marked (only without transactions, when the marker write failed).
    unmarked: int = 0
    not_attempted: int = 0
    last_error: str | None = None
    replayed_to: dict[str, str] = field(default_factory=dict)  # letter id -> topic:part:offset

    @property
    def ok(self) -> bool:
        return not (self.failed or self.unmarked or self.not_attempted or self.last_error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "considered": self.considered,
            "planned": self.planned,
            "replayed": self.replayed,
            "failed": self.failed,
            "unmarked": self.unmarked,
            "not_attempted": self.not_attempted,
            "skipped": self.skipped,
            "not_replayable": [
                {"letter": letter, "reason": reason} for letter, reason in self.not_replayable
            ],
            "to_topic": self.to_topic,
            "marker_topic": self.marker_topic,
            "dry_run": self.dry_run,
            "transactional": self.transactional,
            "last_error": self.last_error,
            "replayed_to": self.replayed_to,
        }


class ReplayProducer:
    """A producer that knows, per message, whether and where it was acknowledged."""

    def __init__(self, settings: Settings, *, txn_id: str | None) -> None:
        if txn_id is None:
            conf = settings.kafka.producer_config(settings.producer)
        else:
            conf = settings.kafka.transactional_producer_config(settings.producer, txn_id)
        try:
            self.producer = Producer(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise BrokerError(f"invalid Kafka producer configuration: {exc}") from None
        self.transactional = txn_id is not None
        self.in_txn = False

    def close(self) -> None:
        """Abort a transaction left open by an error or Ctrl-C, flush, and disconnect."""
        if self.in_txn:
            try:
                self.producer.abort_transaction(TXN_TIMEOUT_S)
            except KafkaException as exc:  # closing must not hide the real outcome
                logger.warning("could not abort the open replay transaction: %s", exc)
            self.in_txn = False
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            logger.error("%d replay message(s) unacknowledged at close", remaining)
        self.producer.close()

    def send(
        self,
        topic: str,
        messages: Sequence[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]],
    ) -> tuple[list[str | None], str | None]:
        """Produce and wait for every ack: (each message's ``topic:partition:offset`` or None
        if not delivered, the last error)."""
        results: list[str | None] = [None] * len(messages)
        errors: list[str] = []

        def callback(index: int) -> Callable[[KafkaError | None, Message], None]:
            def on_delivery(err: KafkaError | None, msg: Message) -> None:
                if err is None:
                    results[index] = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
                else:
                    errors.append(str(err))

            return on_delivery

        for i, (key, value, headers) in enumerate(messages):
            while True:
                try:
                    self.producer.produce(
                        topic,
                        value=value,
                        key=key,
                        headers=list(headers) or None,
                        on_delivery=callback(i),
                    )
                    break
                except BufferError:
                    self.producer.poll(BUFFER_FULL_POLL_S)
            self.producer.poll(0)
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            errors.append(f"{remaining} message(s) not acknowledged within {FLUSH_TIMEOUT_S:g}s")
        return results, errors[-1] if errors else None


def _kafka_error(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def _fatal(exc: KafkaException, what: str) -> DeliveryError:
    err = _kafka_error(exc)
    text = err.str() if err is not None else str(exc)
    if err is not None and err.code() == KafkaError._FENCED:
        text += " (another replay of this dead-letter topic started meanwhile)"
    return DeliveryError(f"replay producer failed fatally while {what}: {text}")


def start_producer(
    settings: Settings, deadletter_topic: str, *, transactional: bool
) -> ReplayProducer:
    """The replay producer; transactional ones are initialised (aborting a crashed run's
    open transaction on Apache Kafka) before the caller reads the markers."""
    replay = ReplayProducer(
        settings, txn_id=transactional_id(deadletter_topic) if transactional else None
    )
    if transactional:
        try:
            replay.producer.init_transactions(TXN_TIMEOUT_S)
        except KafkaException as exc:
            replay.close()
            raise _fatal(exc, "initialising transactions") from None
    return replay


def execute_replay(
    replay: ReplayProducer,
    plan: ReplayPlan,
    *,
    to_topic: str,
    marker_topic: str,
    chunk_records: int = REPLAY_CHUNK_RECORDS,
) -> ReplayOutcome:
    """Send the plan's messages in chunks, each followed by its markers.

    Transactional: one transaction per chunk (messages, ack, markers, commit); a chunk that
    fails is aborted, so none of it is replayed or marked. Not transactional: markers are
    written only for acknowledged messages. Stops at the first failed chunk.
    """
    outcome = ReplayOutcome(
        considered=plan.considered,
        skipped=dict(plan.skipped),
        not_replayable=list(plan.not_replayable),
        to_topic=to_topic,
        marker_topic=marker_topic,
        dry_run=False,
        transactional=replay.transactional,
        planned=len(plan.items),
    )
    for start in range(0, len(plan.items), chunk_records):
        chunk = plan.items[start : start + chunk_records]
        error = _replay_chunk(replay, chunk, to_topic, marker_topic, outcome)
        if error is not None:
            outcome.last_error = error
            outcome.not_attempted = len(plan.items) - start - len(chunk)
            logger.error(
                "replay stopped: %d letter(s) of a chunk not replayed (%s); %d not attempted",
                len(chunk) - sum(1 for i in chunk if i.parsed.id in outcome.replayed_to),
                error,
                outcome.not_attempted,
            )
            break
    return outcome


def _replay_chunk(
    replay: ReplayProducer,
    chunk: Sequence[ReplayItem],
    to_topic: str,
    marker_topic: str,
    outcome: ReplayOutcome,
) -> str | None:
    producer = replay.producer
    if replay.transactional:
        try:
            producer.begin_transaction()
        except KafkaException as exc:
            raise _fatal(exc, "beginning a transaction") from None
        replay.in_txn = True
    sent, error = replay.send(to_topic, [(i.key, i.value, i.headers) for i in chunk])
    delivered = [(item, where) for item, where in zip(chunk, sent, strict=True) if where]
    if replay.transactional and error is not None:
        return _abort(replay, chunk, outcome, error)
    now = utc_now_iso()
    markers = [
        marker_message(
            Marker(
                letter=item.parsed.id,
                source=item.parsed.source,
                replayed_to=where,
                replayed_ts=now,
                retry_count=item.parsed.retry_count + 1,
            )
        )
        for item, where in delivered
    ]
    _, marker_error = replay.send(marker_topic, [(k, v, ()) for k, v in markers])
    if replay.transactional:
        if marker_error is not None:
            return _abort(replay, chunk, outcome, marker_error)
        commit_error = _commit(replay)
        if commit_error is not None:
            return _abort(replay, chunk, outcome, commit_error)
    for item, where in delivered:
        outcome.replayed_to[item.parsed.id] = where or ""
    outcome.replayed += len(delivered)
    outcome.failed += len(chunk) - len(delivered)
    if marker_error is not None:
        # Not transactional: those messages were replayed but are not marked.
        logger.error(
            "replayed %d message(s) but could not mark them (%s); a later replay may send "
            "them again",
            len(delivered),
            marker_error,
        )
        outcome.unmarked += len(delivered)
        return marker_error
    return error


def _commit(replay: ReplayProducer) -> str | None:
    def retriable(exc: BaseException) -> bool:
        err = _kafka_error(exc) if isinstance(exc, KafkaException) else None
        return err is not None and not err.fatal() and bool(err.retriable())

    policy = retrying(
        deadline_s=TXN_TIMEOUT_S,
        first_delay_s=RETRY_FIRST_S,
        max_delay_s=RETRY_MAX_S,
        retry_on=retriable,
    )
    try:
        policy.call(replay.producer.commit_transaction, TXN_TIMEOUT_S)
    except KafkaException as exc:
        err = _kafka_error(exc)
        if err is None or err.fatal():
            raise _fatal(exc, "committing") from None
        return str(err.str())
    replay.in_txn = False
    return None


def _abort(
    replay: ReplayProducer, chunk: Sequence[ReplayItem], outcome: ReplayOutcome, error: str
) -> str:
    try:
        replay.producer.abort_transaction(TXN_TIMEOUT_S)
    except KafkaException as exc:
        raise _fatal(exc, "aborting a failed chunk") from None
    replay.in_txn = False
    outcome.failed += len(chunk)
    return error


# --------------------------------------------------------------------------- commands


def inspect(
    settings: Settings,
    topic: str,
    *,
    limit: int | None = None,
    examples: int = 3,
    idle_s: float = READ_IDLE_S,
    timeout_s: float = admin.ADMIN_TIMEOUT_S,
) -> Summary:
    """Read the dead-letter topic (and its replay markers) and summarise it."""
    admin.check_reachable(settings.kafka, timeout_s=timeout_s)
    result, markers = read_letters_and_markers(
        settings, topic, limit=limit, idle_s=idle_s, timeout_s=timeout_s
    )
    parsed = [parse_letter(r) for r in result.records]
    return summarise(
        topic, parsed, examples=examples, markers=markers, limit_reached=result.limit_reached
    )


@dataclass(frozen=True)
class ReplayRequest:
    from_topic: str
    to_topic: str
    letter_filter: LetterFilter
    limit: int | None = None
    force: bool = False
    dry_run: bool = False
    transactional: bool = True


def replay(
    settings: Settings,
    request: ReplayRequest,
    *,
    idle_s: float = READ_IDLE_S,
    timeout_s: float = admin.ADMIN_TIMEOUT_S,
) -> tuple[ReplayOutcome, ReplayPlan]:
    """Re-send dead-lettered originals to ``request.to_topic``, marking each replayed letter.

    Order: check both topics exist; start (and, if transactional, initialise) the producer,
    which aborts a crashed run's open transaction; read the letters and the markers; plan;
    create the marker topic if needed; send. A dry run writes nothing.
    """
    admin.check_reachable(settings.kafka, timeout_s=timeout_s)
    for name in (request.from_topic, request.to_topic):
        if topic_partitions(settings, name, timeout_s=timeout_s) is None:
            raise ChurnstreamError(
                f"topic {name!r} does not exist at {settings.kafka.bootstrap_servers}"
            )
    marker_topic = marker_topic_for(request.from_topic)
    producer = None
    if not request.dry_run:
        producer = start_producer(settings, request.from_topic, transactional=request.transactional)
    try:
        letters, markers = read_letters_and_markers(
            settings, request.from_topic, idle_s=idle_s, timeout_s=timeout_s
        )
        plan = plan_replay(
            [parse_letter(r) for r in letters.records],
            letter_filter=request.letter_filter,
            markers=markers,
            force=request.force,
            limit=request.limit,
        )
        if producer is None or not plan.items:
            outcome = ReplayOutcome(
                considered=plan.considered,
                skipped=dict(plan.skipped),
                not_replayable=list(plan.not_replayable),
                to_topic=request.to_topic,
                marker_topic=marker_topic,
                dry_run=request.dry_run,
                transactional=request.transactional,
                planned=len(plan.items),
            )
        else:
            ensure_marker_topic(settings, marker_topic, timeout_s=timeout_s)
            outcome = execute_replay(
                producer, plan, to_topic=request.to_topic, marker_topic=marker_topic
            )
    finally:
        if producer is not None:
            producer.close()
    logger.info(
        "replay from %s to %s%s: considered %d, %s %d, failed %d, skipped %s",
        request.from_topic,
        request.to_topic,
        " (dry run)" if request.dry_run else "",
        outcome.considered,
        "would replay" if request.dry_run else "replayed",
        outcome.planned if request.dry_run else outcome.replayed,
        outcome.failed,
        ", ".join(f"{n} {reason}" for reason, n in outcome.skipped.items() if n) or "none",
    )
    return outcome, plan
