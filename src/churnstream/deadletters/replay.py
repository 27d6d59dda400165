"""Replaying dead letters: re-send the originals and write a marker for each.

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

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from churnstream.deadletters.markers import Marker, marker_message
from churnstream.deadletters.plan import ReplayItem, ReplayPlan
from churnstream.exceptions import DeliveryError
from churnstream.kafka import clients
from churnstream.retry import retrying
from churnstream.schemas import utc_now_iso
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

REPLAY_CHUNK_RECORDS = 500
TXN_TIMEOUT_S = 30.0
FLUSH_TIMEOUT_S = 60.0
BUFFER_FULL_POLL_S = 0.1
#: A retriable commit error is asked again from the first wait, with jittered backoff up to
#: the cap (see churnstream.retry).
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 1.0
TRANSACTIONAL_ID_PREFIX = "churnstream-dlq-replay."


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
        self.producer = clients.producer(settings, transactional_id=txn_id)
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
