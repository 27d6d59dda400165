"""The scorer's poll loop: micro-batches in, predictions and dead letters out, then commit.

Consume a batch, score it, publish it (:mod:`~churnstream.streaming.publish`: at-least-once,
or one transaction per batch with ``exactly_once=True``), account for it. A batch that was
not published whole is rewound and scored again; a producer that became unusable is replaced
and the consumer rewound to the committed offsets (:mod:`~churnstream.streaming.recovery`).
The scorer gives up after ``consumer.recovery_timeout_s`` without publishing anything, or
when a rewind's seek has not returned within that budget
(:func:`~churnstream.streaming.recovery.seek_within_budget`).
With ``consumer.pipeline`` (at-least-once only) batch N+1 is scored while batch N
is acknowledged (:mod:`~churnstream.streaming.pipelined`).
Between batches the loop may swap in a new model (:mod:`~churnstream.streaming.models`) and
close a window. Everything it reports goes
through its observers' hooks (:mod:`~churnstream.streaming.observers`), which the command
that runs it wires: metrics, the console, the report files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException, TopicPartition

from churnstream.exceptions import ClientStuckError, ConfigError
from churnstream.kafka import clients, native
from churnstream.kafka.bounded import BoundedCalls
from churnstream.kafka.connect import wait_for_broker
from churnstream.logging import (
    BATCH_SIZE,
    CONSUMER_GROUP,
    MODEL_VERSION,
    OFFSET,
    OFFSETS,
    PARTITION,
    TOPIC,
)
from churnstream.model.lean import LeanScorer
from churnstream.scoring.batch import score_batch
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.scoring.shadow import ShadowRecord, shadow_records
from churnstream.settings import Settings
from churnstream.streaming.batches import first_offsets, take_batch
from churnstream.streaming.models import ModelWatcher, ShadowTap
from churnstream.streaming.observers import Observers, ScorerObserver
from churnstream.streaming.options import ScoreOptions, ScoreSummary
from churnstream.streaming.pipelined import Pipeline, Scored
from churnstream.streaming.publish import Publisher, open_publisher
from churnstream.streaming.recovery import Failure, ProgressClock, Recovery, seek_within_budget
from churnstream.streaming.window import Window
from churnstream.windows.drift import drift_reference

logger = logging.getLogger(__name__)

#: Wait before scoring a failed batch again: this times the failures in a row, capped.
RETRY_BACKOFF_S = 1.0
MAX_RETRY_BACKOFF_S = 8.0
#: Empty polls for this long with a working producer count as progress: after a failure
#: there was nothing left to publish (a rewound batch comes back well within it).
QUIET_PROGRESS_S = 5.0
#: The longest the scorer waits for ``consumer.close()`` at shutdown. librdkafka's close has
#: no timeout of its own and is reported to block indefinitely while the broker is
#: unreachable (librdkafka issue 4519); against a silent (SIGSTOPped) broker it took about
#: 5 s here (its LeaveGroup request timing out). Nothing is lost by giving up: close commits
#: nothing (offsets are committed per batch), so what was not committed is redelivered.
CONSUMER_CLOSE_BOUND_S = 15.0


class ScorerLoop:
    """One scorer: a consumer, a publisher and a model, driven by :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        options: ScoreOptions,
        *,
        scorer: LeanScorer | None = None,
        observers: Sequence[ScorerObserver] = (),
    ) -> None:
        if settings.consumer.native_client:
            why = native.unsupported(
                exactly_once=options.exactly_once,
                security_protocol=settings.kafka.security_protocol,
            )
            if why is not None:
                raise ConfigError(why)
        self.settings = settings
        self.options = options
        self.scorer = scorer or LeanScorer.load(options.model_path)
        self.hooks = Observers(observers)
        self.summary = ScoreSummary(mode=options.mode, model_version=self.scorer.version)
        # The model's training profile, so every window summary carries its drift block.
        self.window = Window(
            mode=options.mode,
            top_k=options.top_k,
            drift=drift_reference(self.scorer.metadata, settings.observability),
        )
        self.assigned = threading.Event()
        self._assigned_at: float | None = None
        #: The stop event of the running loop (set by :meth:`run`).
        self._stop = threading.Event()
        self.progress = ProgressClock(options.recovery_timeout_s)
        self.watcher = (
            ModelWatcher(options.model_path, self.scorer, interval_s=options.reload_interval_s)
            if options.reload_interval_s is not None
            else None
        )
        self.shadow = (
            LeanScorer.load(options.shadow_model_path) if options.shadow_model_path else None
        )
        if self.shadow is not None and not options.shadow_topic:
            raise ConfigError("a shadow model needs a shadow topic")
        if options.reasons and not self.scorer.explains:
            logger.warning(
                "model %s cannot give reasons (it is not compiled); predictions carry none",
                self.scorer.version,
                extra={MODEL_VERSION: self.scorer.version},
            )

    def run(self, stop: threading.Event) -> ScoreSummary:
        """Score until ``stop`` is set (or, in batch mode, until the topic is idle)."""
        opts = self.options
        self._stop = stop
        wait_for_broker(
            self.settings.kafka, timeout_s=opts.connect_timeout_s, stop=stop, what="scorer"
        )
        consumer = clients.consumer(
            self.settings, opts.group_id, native=self.settings.consumer.native_client
        )
        publisher = open_publisher(self.settings, opts)
        recovery = Recovery(
            self.progress,
            self.hooks,
            topic=opts.input_topic,
            auto_offset_reset=self.settings.consumer.auto_offset_reset,
            start_offsets=opts.start_offsets,
        )
        pipe = self._pipeline(consumer, publisher)
        started = last_message = last_report = time.monotonic()
        quiet_since: float | None = None
        retries = 0
        self._starting()
        self.progress.progressed()  # waiting for the broker at start-up is not a stall
        try:
            consumer.subscribe([opts.input_topic], on_assign=self._on_assign)
            while not stop.is_set():
                if publisher.broken:
                    if not recovery.run(consumer, publisher, self.progress.last_error or "", stop):
                        break
                    self.summary.producer_recoveries += 1
                    last_message = time.monotonic()  # batch mode: the rewound input is not idle
                    continue
                self._maybe_reload()
                want = self._room(pipe.in_flight if pipe is not None else 0)
                if want <= 0:
                    break
                # With a batch in flight, take only what is already fetched: waiting for
                # more would delay that batch's acknowledgement.
                wait_ms = 0 if pipe is not None and pipe.pending else opts.max_batch_wait_ms
                batch = take_batch(consumer, want, wait_ms / 1000)
                self.hooks.on_poll(consumer)
                now = time.monotonic()
                if opts.mode == "streaming" and now - last_report >= opts.summary_interval_s:
                    self._close_window()
                    last_report = now
                if batch:
                    last_message = now
                    quiet_since = None
                    failure = self._process(batch, consumer, publisher, pipe, stop)
                elif pipe is not None and pipe.pending:
                    failure = pipe.drain()  # nothing to overlap with: finish the batch now
                else:
                    quiet_since = quiet_since or now
                    if now - quiet_since >= QUIET_PROGRESS_S:
                        self.progress.progressed()
                    if opts.mode == "batch" and self._idle_for(now, last_message) >= (
                        opts.idle_timeout_ms / 1000
                    ):
                        logger.info(
                            "no new message for %d ms; closing the window", opts.idle_timeout_ms
                        )
                        break
                    continue
                if failure is None:
                    retries = 0
                    self.progress.progressed()
                elif not failure.replace:  # rewound: try again after a pause
                    retries += 1
                    self.progress.check()
                    stop.wait(min(RETRY_BACKOFF_S * retries, MAX_RETRY_BACKOFF_S))
                    last_message = time.monotonic()
            if pipe is not None:
                pipe.drain()  # stopping: finish the batch in flight (a failure stays uncommitted)
        finally:
            self.summary.duration_s = time.monotonic() - started
            publisher.close()
            close_consumer(consumer)
        self._close_window()
        self.hooks.on_stop(self.summary)
        logger.info(
            "scorer finished: %s",
            self.summary.line(),
            extra={TOPIC: self.options.input_topic, MODEL_VERSION: self.scorer.version},
        )
        return self.summary

    # -- one batch -----------------------------------------------------------------------
    def _process(
        self,
        batch: list[RawMessage],
        consumer: Consumer,
        publisher: Publisher,
        pipe: Pipeline | None = None,
        stop: threading.Event | None = None,
    ) -> Failure | None:
        """Score, publish and account for one batch; why not, if it must be scored again.

        With ``pipe`` the batch is only sent, and the one sent before it finished.
        """
        scored = self._score(batch)
        if pipe is not None:
            return pipe.advance(scored, stop)
        failure = publisher.publish(batch, scored.result, consumer, scored.shadow)
        if failure is not None:
            self._failed(batch, failure, consumer, publisher)
            return failure
        self._published(scored)
        return None

    def _score(self, batch: list[RawMessage]) -> Scored:
        tap = ShadowTap(self.scorer, self.shadow) if self.shadow is not None else None
        if tap is not None:
            tap.begin()
        result = score_batch(
            batch,
            tap.predict_features if tap is not None else self.scorer.predict_features,
            threshold=self.scorer.threshold,
            model_version=self.scorer.version,
            consumer_group=self.options.group_id,
            explain=(
                self.scorer.explain_features
                if self.options.reasons and self.scorer.explains
                else None
            ),
        )
        return Scored(batch, result, self._shadow_outputs(result, tap))

    def _failed(
        self, batch: list[RawMessage], failure: Failure, consumer: Consumer, publisher: Publisher
    ) -> None:
        """Account for a batch (or two, pipelined) to be scored again, and rewind to it."""
        self.progress.failed(failure.reason)
        self.summary.redelivered_batches += 1
        self.hooks.on_redelivery(len(batch), failure.reason)
        if not failure.replace:  # else the recovery rewinds to the committed offsets
            self._rewind(batch, consumer, publisher, failure.reason)

    def _pipeline(self, consumer: Consumer, publisher: Publisher) -> Pipeline | None:
        if not self.options.pipeline:
            return None
        if self.options.exactly_once:
            # One open transaction per producer: N+1 cannot be produced before N commits.
            logger.info("consumer.pipeline applies to at-least-once only; scoring sequentially")
            return None
        return Pipeline(
            publisher,
            consumer,
            on_published=self._published,
            on_failed=lambda batch, failure: self._failed(batch, failure, consumer, publisher),
        )

    def _shadow_outputs(self, result: BatchResult, tap: ShadowTap | None) -> list[ShadowRecord]:
        """Shadow predictions aligned with the champion's (none if they cannot be aligned)."""
        if tap is None or tap.shadow_proba is None or self.shadow is None:
            return []
        if len(tap.shadow_proba) != len(result.predictions):
            return []  # the champion lost rows to inference errors: skip this batch's shadow
        return shadow_records(
            result, tap.shadow_proba, threshold=self.shadow.threshold, version=self.shadow.version
        )

    def _rewind(
        self, batch: list[RawMessage], consumer: Consumer, publisher: Publisher, error: str
    ) -> None:
        stopping = self._stop.is_set()
        logger.error(
            "batch of %d not %s (%s); %s",
            len(batch),
            publisher.failure,
            error,
            # Stopping, the consumer closes without committing it, so the group's next scorer
            # reads it again; no seek either: after a commit that never returned, a seek was
            # seen to block forever on the same consumer.
            "stopping: left uncommitted" if stopping else "rewinding to score it again",
            extra={
                TOPIC: self.options.input_topic,
                BATCH_SIZE: len(batch),
                OFFSETS: {tp.partition: tp.offset for tp in first_offsets(batch)},
            },
        )
        if stopping:
            return

        def revoked(tp: TopicPartition, exc: KafkaException) -> None:
            # Typically the partition was revoked meanwhile: its new owner reads it again.
            logger.warning(
                "seek %s[%d]: %s",
                tp.topic,
                tp.partition,
                exc,
                extra={TOPIC: tp.topic, PARTITION: tp.partition, OFFSET: tp.offset},
            )

        try:
            seek_within_budget(
                consumer,
                first_offsets(batch),
                clock=self.progress,
                stop=self._stop,
                on_error=revoked,
            )
        except ClientStuckError as exc:
            if self._stop.is_set():
                logger.warning("%s; left uncommitted", exc)
                return
            raise ClientStuckError(
                f"rewinding a batch of {len(batch)}: {exc}; stopping: the batch is left "
                "uncommitted for the group's next scorer"
            ) from None

    def _published(self, scored: Scored) -> None:
        self._account(scored.batch, scored.result, scored.shadow)

    def _account(
        self, batch: list[RawMessage], result: BatchResult, shadow: Sequence[ShadowRecord] = ()
    ) -> None:
        s = self.summary
        s.consumed += len(batch)
        s.scored += len(result.predictions)
        s.dead_lettered += len(result.dead_letters)
        s.batches += 1
        self.window.add(len(batch), result, shadow)
        if result.dead_letters:
            logger.info(
                "batch %d: %d dead-lettered %s",
                s.batches,
                len(result.dead_letters),
                result.dead_letter_codes,
                extra={BATCH_SIZE: len(batch), MODEL_VERSION: self.scorer.version},
            )
        self.hooks.on_batch(batch, result, s)

    # -- between batches -------------------------------------------------------------------
    def _room(self, in_flight: int = 0) -> int:
        """How many messages the next batch may hold (0: max_messages reached), with
        ``in_flight`` consumed but not yet accounted for."""
        opts = self.options
        if opts.max_messages is None:
            return opts.max_batch_records
        return min(opts.max_batch_records, opts.max_messages - self.summary.consumed - in_flight)

    def _close_window(self) -> None:
        summary = self.window.close(
            model_version=self.scorer.version,
            shadow_version=self.shadow.version if self.shadow is not None else None,
        )
        self.summary.last_summary = summary
        self.hooks.on_window(summary)

    def _maybe_reload(self) -> None:
        if self.watcher is None or not self.watcher.enabled:
            return
        fresh = self.watcher.poll()
        if fresh is None:
            return
        old = self.scorer.version
        self.scorer = fresh
        self.summary.model_version = fresh.version
        self.window.drift = drift_reference(fresh.metadata, self.settings.observability)
        self.hooks.on_model_change(old, fresh.version)

    def _starting(self) -> None:
        opts = self.options
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
        self.hooks.on_start(
            model_version=self.scorer.version, group_id=opts.group_id, input_topic=opts.input_topic
        )

    def _idle_for(self, now: float, last_message: float) -> float:
        """How long a batch window has had nothing to read.

        The clock starts at the group's first assignment: joining can take longer than the
        idle timeout on a loaded broker ("coordinator load in progress"), and a window that
        closed then would score nothing from a full topic. Without any assignment the wait
        is bounded by the broker connect timeout instead.
        """
        if self._assigned_at is None:
            waited = now - last_message
            return waited if waited >= self.options.connect_timeout_s else 0.0
        return now - max(last_message, self._assigned_at)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned_at = time.monotonic()
        logger.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))
        if self.options.start_offsets is not None:
            for tp in partitions:
                if tp.partition in self.options.start_offsets:
                    tp.offset = self.options.start_offsets[tp.partition]
            consumer.assign(partitions)
        self.assigned.set()


def close_consumer(consumer: Consumer, bound_s: float = CONSUMER_CLOSE_BOUND_S) -> None:
    """``consumer.close()``, waited for at most ``bound_s``; never raises (closing must not
    hide the run's real outcome). A close still blocked is left behind on its worker."""
    calls = BoundedCalls("consumer-close")
    try:
        calls.call(consumer.close, bound_s=bound_s, what="consumer close")
    except ClientStuckError as exc:
        logger.error("%s; stopping anyway: uncommitted input is redelivered", exc)
    except KafkaException as exc:
        logger.warning("consumer close: %s", exc)
    finally:
        calls.close()
