"""The scorer's poll loop: micro-batches in, predictions and dead letters out, then commit.

At-least-once by default: a batch's offsets are committed only after every prediction and
dead letter of that batch has been acknowledged by the broker. If any is not, the consumer
is rewound to the batch's first offsets and the batch is processed again.

Exactly-once (``exactly_once=True``): each batch is one Kafka transaction holding its
predictions, its dead letters and its input offsets (``send_offsets_to_transaction``).
Readers with ``isolation.level=read_committed`` see every batch once or not at all. The
transactional id is stable per scorer instance, so a restarted scorer fences its crashed
predecessor and aborts its open transaction at once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from churnstream.exceptions import BrokerUnavailableError, ConfigError, DeliveryError
from churnstream.kafka.connect import wait_for_broker
from churnstream.kafka.producer import SafeProducer
from churnstream.logging import (
    BATCH_SIZE,
    CONSUMER_GROUP,
    ERROR_CODE,
    MODEL_VERSION,
    OFFSET,
    OFFSETS,
    PARTITION,
    TOPIC,
)
from churnstream.model.scorer import Scorer
from churnstream.pipeline.models import ModelWatcher, ShadowTap
from churnstream.pipeline.observers import ScorerObserver
from churnstream.reports.files import write_summary
from churnstream.scoring.batch import score_batch
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.scoring.shadow import ShadowRecord, ShadowStats, shadow_records
from churnstream.settings import Settings
from churnstream.windows.drift import drift_reference
from churnstream.windows.stats import WindowStats

logger = logging.getLogger(__name__)

#: Consecutive unacknowledged batches before the scorer gives up (and exits non-zero).
MAX_DELIVERY_RETRIES = 5
RETRY_BACKOFF_S = 1.0
CLOSE_TIMEOUT_S = 10.0
TXN_TIMEOUT_S = 30.0
#: Scored rows are folded into the window statistics at most this often, or once this many
#: rows wait: the fold has a fixed pandas cost (about 3 ms) that small streaming batches
#: would otherwise pay one by one, between a commit and the next poll.
FOLD_INTERVAL_S = 0.25
FOLD_MAX_ROWS = 5000


@dataclass(frozen=True)
class ScoreOptions:
    mode: Literal["streaming", "batch"]
    input_topic: str
    output_topic: str
    deadletter_topic: str
    group_id: str
    model_path: Path
    idle_timeout_ms: int
    max_messages: int | None = None
    max_batch_records: int = 1000
    max_batch_wait_ms: int = 100
    summary_interval_s: float = 60.0
    reports_dir: Path | None = Path("reports")
    top_k: int = 10
    #: Where to start reading each partition (partition -> offset) instead of the group's
    #: committed offsets; the demo uses it to score only what it produces itself.
    start_offsets: dict[int, int] | None = None
    exactly_once: bool = False
    #: Stable per scorer instance (see :func:`default_transactional_id`).
    transactional_id: str | None = None
    #: How long to keep retrying when no broker answers at start-up.
    connect_timeout_s: float = 60.0
    #: How often to look at `models/latest` for a new model (None: never reload).
    reload_interval_s: float | None = 5.0
    #: A second model scoring every batch too; its predictions go to ``shadow_topic``.
    shadow_model_path: Path | None = None
    shadow_topic: str | None = None


def default_transactional_id(group_id: str, input_topic: str, worker: int = 0) -> str:
    """Stable across restarts of the same scorer, distinct between concurrent ones.

    Restarting with the same id is what lets Kafka abort a crashed scorer's open transaction
    immediately instead of after the transaction timeout.
    """
    return f"churnstream-{group_id}-{input_topic}-{socket.gethostname()}-{worker}"


@dataclass
class ScoreSummary:
    mode: str
    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    batches: int = 0
    redelivered_batches: int = 0
    duration_s: float = 0.0
    model_version: str = ""
    reports: list[Path] = field(default_factory=list)
    last_summary: dict[str, Any] | None = None

    @property
    def rate(self) -> float:
        return self.consumed / self.duration_s if self.duration_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.mode}: consumed {self.consumed}, scored {self.scored}, dead-lettered "
            f"{self.dead_lettered} in {self.duration_s:.2f}s ({self.rate:,.1f} msgs/s), "
            f"model {self.model_version}"
        )


def _raw(msg: Message) -> RawMessage:
    headers = msg.headers() or []
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    return RawMessage(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        headers=[(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs],
    )


def _next_offsets(batch: Sequence[RawMessage]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for m in batch:
        key = (m.topic, m.partition)
        highest[key] = max(highest.get(key, -1), m.offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]


def _first_offsets(batch: Sequence[RawMessage]) -> list[TopicPartition]:
    lowest: dict[tuple[str, int], int] = {}
    for m in batch:
        key = (m.topic, m.partition)
        lowest[key] = min(lowest.get(key, m.offset), m.offset)
    return [TopicPartition(t, p, o) for (t, p), o in lowest.items()]


class ScorerLoop:
    """One scorer: a consumer, a producer and a model, driven by :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        options: ScoreOptions,
        *,
        scorer: Scorer | None = None,
        observers: Sequence[ScorerObserver] = (),
    ) -> None:
        self.settings = settings
        self.options = options
        self.scorer = scorer or Scorer.load(options.model_path)
        self.observers = list(observers)
        self.summary = ScoreSummary(mode=options.mode, model_version=self.scorer.version)
        self._window = WindowStats()
        self._window_started = datetime.now(UTC)
        self._unfolded: list[BatchResult] = []
        self._unfolded_rows = 0
        self._last_fold = time.monotonic()
        self.assigned = threading.Event()
        self._in_txn = False
        # The model's training profile, so every window summary carries its drift block.
        self.drift = drift_reference(self.scorer.metadata, settings.observability)
        self.watcher = (
            ModelWatcher(options.model_path, self.scorer, interval_s=options.reload_interval_s)
            if options.reload_interval_s is not None
            else None
        )
        self.shadow = Scorer.load(options.shadow_model_path) if options.shadow_model_path else None
        self._shadow_stats = ShadowStats()
        if self.shadow is not None and not options.shadow_topic:
            raise ConfigError("a shadow model needs a shadow topic")

    def _producer(self) -> SafeProducer:
        kafka, opts = self.settings.kafka, self.options
        if not opts.exactly_once:
            return SafeProducer(kafka.producer_config(self.settings.producer))
        txn_id = opts.transactional_id or default_transactional_id(opts.group_id, opts.input_topic)
        producer = SafeProducer(kafka.transactional_producer_config(self.settings.producer, txn_id))
        try:
            # Fences any earlier instance with this id and aborts its open transaction.
            producer.raw.init_transactions(TXN_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerUnavailableError(
                f"could not initialise transactions as {txn_id!r}: {exc.args[0].str()}"
            ) from exc
        logger.info("exactly-once: transactional id %s", txn_id)
        return producer

    def _abort(self, producer: SafeProducer) -> None:
        try:
            producer.raw.abort_transaction(TXN_TIMEOUT_S)
        except KafkaException as exc:
            logger.warning("abort_transaction: %s", exc)
        self._in_txn = False

    # -- reports -----------------------------------------------------------------------
    def _fold(self) -> None:
        """Add the scored rows of the batches accounted since the last fold to the window."""
        self._last_fold = time.monotonic()
        if not self._unfolded:
            return
        frames = [pd.DataFrame(result.scored) for result in self._unfolded]
        # Concatenated in order, the rows fold exactly as batch after batch would.
        self._window.add_scored(frames[0] if len(frames) == 1 else pd.concat(frames))
        self._unfolded = []
        self._unfolded_rows = 0

    def _close_window(self) -> None:
        self._fold()
        ended = datetime.now(UTC)
        summary = self._window.summary(
            self._window_started,
            ended,
            top_k=self.options.top_k,
            model_version=self.scorer.version,
            mode=self.options.mode,
            drift=self.drift,
        )
        if self.shadow is not None:
            summary["shadow"] = self._shadow_stats.block(self.shadow.version)
            self._shadow_stats = ShadowStats()
        self.summary.last_summary = summary
        for observer in self.observers:
            observer.on_window(summary)
        if self.options.reports_dir is not None:
            json_path, md_path = write_summary(summary, self.options.reports_dir)
            self.summary.reports.extend([json_path, md_path])
            logger.info("window summary written to %s", md_path)
        self._window = WindowStats()
        self._window_started = ended

    # -- the loop ----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> ScoreSummary:
        opts = self.options
        wait_for_broker(
            self.settings.kafka, timeout_s=opts.connect_timeout_s, stop=stop, what="scorer"
        )
        consumer = Consumer(
            self.settings.kafka.consumer_config(self.settings.consumer, opts.group_id)
        )
        producer = self._producer()
        started = time.monotonic()
        last_message = started
        last_report = started
        retries = 0
        logger.info(
            "scoring %s -> %s (dead letters: %s) as group %s with model %s, mode %s, %s",
            opts.input_topic,
            opts.output_topic,
            opts.deadletter_topic,
            opts.group_id,
            self.scorer.version,
            opts.mode,
            "exactly-once" if opts.exactly_once else "at-least-once",
            extra={
                TOPIC: opts.input_topic,
                CONSUMER_GROUP: opts.group_id,
                MODEL_VERSION: self.scorer.version,
            },
        )
        for observer in self.observers:
            observer.on_start(
                model_version=self.scorer.version,
                group_id=opts.group_id,
                input_topic=opts.input_topic,
            )
        try:
            consumer.subscribe([opts.input_topic], on_assign=self._on_assign)
            while not stop.is_set():
                self._maybe_reload()
                want = opts.max_batch_records
                if opts.max_messages is not None:
                    want = min(want, opts.max_messages - self.summary.consumed)
                    if want <= 0:
                        break
                messages = consumer.consume(
                    num_messages=want, timeout=opts.max_batch_wait_ms / 1000
                )
                batch = self._usable(messages)
                for observer in self.observers:
                    observer.on_poll(consumer)
                now = time.monotonic()
                if opts.mode == "streaming" and now - last_report >= opts.summary_interval_s:
                    self._close_window()
                    last_report = now
                if not batch:
                    if opts.mode == "batch" and now - last_message >= opts.idle_timeout_ms / 1000:
                        logger.info(
                            "no new message for %d ms; closing the window", opts.idle_timeout_ms
                        )
                        break
                    continue
                last_message = now
                if self._process(batch, consumer, producer):
                    retries = 0
                else:
                    retries += 1
                    self.summary.redelivered_batches += 1
                    if retries > MAX_DELIVERY_RETRIES:
                        raise DeliveryError(
                            f"{retries} batches in a row were not acknowledged "
                            f"({producer.stats.last_error}); offsets were not committed, "
                            "so a restart scores them again"
                        )
                    stop.wait(RETRY_BACKOFF_S * retries)
        finally:
            self.summary.duration_s = time.monotonic() - started
            if self._in_txn:
                self._abort(producer)
            remaining = producer.flush(CLOSE_TIMEOUT_S)
            if remaining:
                logger.error(
                    "%d output message(s) unacknowledged at shutdown (not committed)", remaining
                )
            try:
                consumer.close()
            except KafkaException as exc:  # closing must not hide the real outcome
                logger.warning("consumer close: %s", exc)
        self._close_window()
        for observer in self.observers:
            observer.on_stop(self.summary)
        logger.info(
            "scorer finished: %s",
            self.summary.line(),
            extra={TOPIC: self.options.input_topic, MODEL_VERSION: self.scorer.version},
        )
        return self.summary

    def _maybe_reload(self) -> None:
        if self.watcher is None or not self.watcher.enabled:
            return
        fresh = self.watcher.poll()
        if fresh is None:
            return
        old = self.scorer.version
        self.scorer = fresh
        self.summary.model_version = fresh.version
        self.drift = drift_reference(fresh.metadata, self.settings.observability)
        for observer in self.observers:
            observer.on_model_change(old, fresh.version)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))
        if self.options.start_offsets is not None:
            for tp in partitions:
                if tp.partition in self.options.start_offsets:
                    tp.offset = self.options.start_offsets[tp.partition]
            consumer.assign(partitions)
        self.assigned.set()

    def _usable(self, messages: list[Message]) -> list[RawMessage]:
        batch: list[RawMessage] = []
        for msg in messages:
            err = msg.error()
            if err is None:
                batch.append(_raw(msg))
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

    def _process(self, batch: list[RawMessage], consumer: Consumer, producer: SafeProducer) -> bool:
        opts = self.options
        tap = ShadowTap(self.scorer, self.shadow) if self.shadow is not None else None
        if tap is not None:
            tap.begin()
        result = score_batch(
            batch,
            tap.predict_features if tap is not None else self.scorer.predict_features,
            threshold=self.scorer.threshold,
            model_version=self.scorer.version,
            consumer_group=opts.group_id,
        )
        shadow_out = self._shadow_outputs(result, tap)
        publish = self._publish_transactional if opts.exactly_once else self._publish
        error = publish(batch, result, consumer, producer, shadow_out)
        if error is not None:
            logger.error(
                "batch of %d not %s (%s); rewinding to score it again",
                len(batch),
                "committed" if opts.exactly_once else "fully acknowledged",
                error,
                extra={
                    TOPIC: opts.input_topic,
                    BATCH_SIZE: len(batch),
                    OFFSETS: {tp.partition: tp.offset for tp in _first_offsets(batch)},
                },
            )
            for observer in self.observers:
                observer.on_redelivery(len(batch), error)
            for tp in _first_offsets(batch):
                try:
                    consumer.seek(tp)
                except KafkaException as exc:  # partition revoked meanwhile: its new owner rereads
                    logger.warning(
                        "seek %s[%d]: %s",
                        tp.topic,
                        tp.partition,
                        exc,
                        extra={TOPIC: tp.topic, PARTITION: tp.partition, OFFSET: tp.offset},
                    )
            return False
        self._account(batch, result)
        if shadow_out:
            self._shadow_stats.add(shadow_out)
        return True

    def _shadow_outputs(self, result: BatchResult, tap: ShadowTap | None) -> list[ShadowRecord]:
        """Shadow predictions aligned with the champion's (none if they cannot be aligned)."""
        if tap is None or tap.shadow_proba is None or self.shadow is None:
            return []
        if len(tap.shadow_proba) != len(result.predictions):
            return []  # the champion lost rows to inference errors: skip this batch's shadow
        return shadow_records(
            result, tap.shadow_proba, threshold=self.shadow.threshold, version=self.shadow.version
        )

    def _produce_outputs(
        self, result: BatchResult, producer: SafeProducer, shadow: Sequence[ShadowRecord] = ()
    ) -> None:
        opts = self.options
        for out in result.predictions:
            producer.produce(opts.output_topic, out.value, out.key, out.headers)
        for out in result.dead_letters:
            producer.produce(opts.deadletter_topic, out.value, out.key, out.headers)
        if opts.shadow_topic:
            for record in shadow:
                producer.produce(opts.shadow_topic, record.out.value, record.out.key,
                                 record.out.headers)  # fmt: skip

    def _publish(
        self,
        batch: list[RawMessage],
        result: BatchResult,
        consumer: Consumer,
        producer: SafeProducer,
        shadow: Sequence[ShadowRecord] = (),
    ) -> str | None:
        """At-least-once: outputs acknowledged, then offsets committed. None on success."""
        failed_before = producer.stats.failed
        self._produce_outputs(result, producer, shadow)
        remaining = producer.flush()
        if remaining or producer.stats.failed > failed_before:
            return producer.stats.last_error or f"{remaining} still queued"
        try:
            consumer.commit(offsets=_next_offsets(batch), asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance: the partition's new owner re-scores from the last commit.
            logger.warning(
                "commit failed (%s); those messages will be scored again",
                exc,
                extra={
                    BATCH_SIZE: len(batch),
                    OFFSETS: {tp.partition: tp.offset for tp in _next_offsets(batch)},
                },
            )
        return None

    def _publish_transactional(
        self,
        batch: list[RawMessage],
        result: BatchResult,
        consumer: Consumer,
        producer: SafeProducer,
        shadow: Sequence[ShadowRecord] = (),
    ) -> str | None:
        """Exactly-once: outputs and input offsets in one transaction. None on success."""
        raw = producer.raw
        try:
            raw.begin_transaction()
            self._in_txn = True
            self._produce_outputs(result, producer, shadow)
            raw.send_offsets_to_transaction(
                _next_offsets(batch), consumer.consumer_group_metadata(), TXN_TIMEOUT_S
            )
            raw.commit_transaction(TXN_TIMEOUT_S)
            self._in_txn = False
            return None
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                # Fenced by a newer instance with our id, or a broken producer: stop now.
                raise DeliveryError(f"exactly-once producer failed fatally: {err.str()}") from exc
            self._abort(producer)
            return str(err.str())

    def _account(self, batch: list[RawMessage], result: BatchResult) -> None:
        s = self.summary
        s.consumed += len(batch)
        s.scored += len(result.predictions)
        s.dead_lettered += len(result.dead_letters)
        s.batches += 1
        self._window.add_consumed(len(batch))
        self._window.add_batch_size(len(batch))
        self._unfolded.append(result)
        self._unfolded_rows += len(result.predictions)
        if (
            self._unfolded_rows >= FOLD_MAX_ROWS
            or time.monotonic() - self._last_fold >= FOLD_INTERVAL_S
        ):
            self._fold()
        self._window.add_dead_letters(result.dead_letter_types)
        self._window.add_dead_letter_codes(result.dead_letter_codes)
        if result.dead_letters:
            logger.info(
                "batch %d: %d dead-lettered %s",
                s.batches,
                len(result.dead_letters),
                result.dead_letter_codes,
                extra={BATCH_SIZE: len(batch), MODEL_VERSION: self.scorer.version},
            )
        for observer in self.observers:
            observer.on_batch(batch, result, s)
