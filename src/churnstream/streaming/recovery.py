"""Coming back from a broken producer without a restart, the way Kafka prescribes.

A transactional call either succeeds, or fails in one of three ways (:func:`verdict`):
retriable (call it again), abortable (abort the transaction, score the batch again), or
fatal (this producer instance is finished). A fatal error, an abort that fails, or a call
still retriable when its time is up all end the same way: the producer is replaced by a new
one with the same configuration (with a transactional id, ``init_transactions`` fences the
old epoch and settles its open transaction), and the consumer is rewound to the group's
committed offsets, which are then exactly what was published. The same holds for the
at-least-once (idempotent) producer, which can fail fatally too (e.g. an
OUT_OF_ORDER_SEQUENCE_NUMBER after a broker crash).

:class:`Recovery` does that in attempts with the project's retry policy while the broker is
away, polling the consumer between attempts so that the group does not evict it, and gives
up only when :class:`ProgressClock` says nothing was published for
``consumer.recovery_timeout_s``. Its rewind's seeks are bounded by what is left of that budget
(:func:`seek_within_budget`, shared with the loop's rewind of a failed batch): a seek that
never returns ends the scorer with one line instead of hanging it.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from churnstream.exceptions import ClientStuckError, DeliveryError
from churnstream.kafka.bounded import BoundedCalls
from churnstream.kafka.producer import is_fatal
from churnstream.logging import ATTEMPT, DELAY_S, OFFSETS, TOPIC
from churnstream.retry import RetryNote, retrying
from churnstream.streaming.batches import take_batch

if TYPE_CHECKING:
    from churnstream.streaming.observers import ScorerObserver

logger = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
#: Bound of the committed-offsets request of one attempt.
COMMITTED_TIMEOUT_S = 10.0
#: Longest single consumer poll while waiting between attempts.
IDLE_POLL_S = 0.5
#: Messages taken per poll while waiting; they are dropped, the rewind reads them again.
IDLE_POLL_MESSAGES = 1000
#: librdkafka waits for a rewind's ``consumer.seek()`` without a limit. After a commit that
#: never returned, a seek was seen to wait until the broker answered again: forever against a
#: silent (SIGSTOPped) broker, where neither a log line nor the recovery timeout could come.
#: It is now waited for as long as the recovery budget lasts (consumer.recovery_timeout_s, so
#: a restarted broker finds the scorer still running), with one WARNING after this long; past
#: the budget the scorer ends with one line, the batch uncommitted for the group's next scorer.
SEEK_SLOW_S = 5.0
SEEK_SLOW = "seek to %s has not returned in %gs (the broker does not answer); waiting up to %.0fs"


class Verdict(enum.Enum):
    """What to do after a failed transactional call."""

    #: It timed out or met a passing condition: the same call may be made again.
    RETRY = "retry"
    #: The transaction failed: abort it and score the batch again.
    ABORT = "abort"
    #: The producer is unusable: replace it and rewind to the committed offsets.
    REPLACE = "replace"


def verdict(err: KafkaError) -> Verdict:
    """Kafka's rule for ``err`` from a transactional call.

    Fatal first (a fatal error may also say it is retriable), then abortable, then
    retriable; librdkafka asks to treat any other error as fatal.
    """
    if is_fatal(err):
        return Verdict.REPLACE
    if err.txn_requires_abort():
        return Verdict.ABORT
    if err.retriable():
        return Verdict.RETRY
    return Verdict.REPLACE


@dataclass(frozen=True)
class Failure:
    """Why a batch was not published, and whether its producer must be replaced first."""

    reason: str
    replace: bool = False


class Reopenable(Protocol):
    """What :class:`Recovery` needs of a publisher."""

    def reopen(self) -> str:
        """Make the producer usable again (replace, initialise); returns what was done."""
        ...


class ProgressClock:
    """How long the scorer has gone without publishing, against its budget.

    Progress is a published batch, or an empty poll with a working producer (nothing to
    publish is not being stuck). A failure starts the clock from the last progress; the
    next progress stops it.
    """

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._last_progress = clock()
        #: The last progress before the current run of failures (None: no failure).
        self.since: float | None = None
        self.last_error: str | None = None

    def failed(self, error: str) -> None:
        self.last_error = error
        if self.since is None:
            self.since = self._last_progress

    def progressed(self) -> None:
        self._last_progress = self._clock()
        self.since = None
        self.last_error = None

    def stalled_s(self) -> float:
        return 0.0 if self.since is None else self._clock() - self.since

    def remaining_s(self) -> float:
        return self.timeout_s - self.stalled_s()

    def check(self) -> None:
        """Raise DeliveryError (one line) once nothing was published for ``timeout_s``."""
        if self.since is not None and self.remaining_s() <= 0:
            raise self.exhausted()

    def exhausted(self) -> DeliveryError:
        """The error that ends the scorer: nothing published for too long."""
        return DeliveryError(
            f"nothing published for {self.stalled_s():.0f}s "
            f"(consumer.recovery_timeout_s is {self.timeout_s:g}s); last error: "
            f"{self.last_error}; offsets were not committed, so a restart scores them again"
        )


def describe(exc: BaseException) -> str:
    """One readable phrase for an error, a KafkaException's code and text included."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if isinstance(err, KafkaError):
        return f"{err.name()}{' (fatal)' if is_fatal(err) else ''}: {err.str()}"
    return str(exc)


def seek_within_budget(
    consumer: Consumer,
    positions: Iterable[TopicPartition],
    *,
    clock: ProgressClock,
    stop: threading.Event,
    on_error: Callable[[TopicPartition, KafkaException], None] | None = None,
) -> None:
    """Seek to each of ``positions``, each seek waited for as long as ``clock``'s budget lasts
    (at least SEEK_SLOW_S), with one WARNING if it takes SEEK_SLOW_S.

    A seek that fails is handed to ``on_error`` if given, else raised.

    Raises:
        ClientStuckError: a seek did not return in time, or ``stop`` was set while waiting
            for it (one line either way); the consumer must not be used again.
        KafkaException: a seek failed and there is no ``on_error``.
    """
    seeks = BoundedCalls("seek")
    try:
        for tp in positions:
            where = f"{tp.topic}[{tp.partition}]@{tp.offset}"
            bound_s = max(SEEK_SLOW_S, clock.remaining_s())
            slow = partial(logger.warning, SEEK_SLOW, where, SEEK_SLOW_S, bound_s)
            try:
                seeks.call(
                    partial(consumer.seek, tp),
                    bound_s=bound_s,
                    what="seek",
                    stop=stop,
                    slow=(SEEK_SLOW_S, slow),
                )
            except KafkaException as exc:
                if on_error is None:
                    raise
                on_error(tp, exc)
    except ClientStuckError:
        if stop.is_set():
            raise ClientStuckError(f"stopping: the seek to {where} had not returned") from None
        raise ClientStuckError(
            f"seek to {where} did not return within {bound_s:.0f}s (the broker does not "
            f"answer; consumer.recovery_timeout_s is {clock.timeout_s:g}s)"
        ) from None
    finally:
        seeks.close()


def rewind_to_committed(
    consumer: Consumer,
    *,
    auto_offset_reset: str,
    clock: ProgressClock,
    stop: threading.Event,
    start_offsets: Mapping[int, int] | None = None,
    timeout_s: float = COMMITTED_TIMEOUT_S,
) -> dict[int, int]:
    """Seek every assigned partition to the group's committed offset; returns them by
    partition (the scorer reads one topic).

    A partition without one goes where a fresh assignment would: its ``start_offsets``
    entry, else the ``auto_offset_reset`` end. With ``isolation.level=read_committed``
    librdkafka asks for stable offsets, so a transaction still being settled is waited for.
    The seeks are bounded by what is left of ``clock``'s budget (:func:`seek_within_budget`).

    Raises:
        ClientStuckError: a seek did not return in time (or ``stop`` was set meanwhile).
        KafkaException: the committed offsets could not be read, or a seek failed.
    """
    assignment = consumer.assignment()
    if not assignment:
        return {}
    targets: list[TopicPartition] = []
    for tp in consumer.committed(assignment, timeout=timeout_s):
        if tp.error is not None:
            raise KafkaException(tp.error)
        offset = tp.offset
        if offset < 0:
            if start_offsets is not None and tp.partition in start_offsets:
                offset = start_offsets[tp.partition]
            else:
                offset = OFFSET_BEGINNING if auto_offset_reset == "earliest" else OFFSET_END
        targets.append(TopicPartition(tp.topic, tp.partition, offset))
    seek_within_budget(consumer, targets, clock=clock, stop=stop)
    return {tp.partition: tp.offset for tp in targets}


@dataclass
class Recovery:
    """Replaces a broken producer and rewinds the consumer, in attempts, within the budget."""

    clock: ProgressClock
    hooks: ScorerObserver
    _: KW_ONLY
    topic: str
    auto_offset_reset: str
    start_offsets: Mapping[int, int] | None = None
    #: A rewind's seek did not return in this run: the consumer is not to be used again.
    _seek_stuck: bool = field(default=False, init=False, repr=False)

    def run(
        self, consumer: Consumer, publisher: Reopenable, cause: str, stop: threading.Event
    ) -> bool:
        """Recover; True once done, False if ``stop`` was set first.

        Raises:
            DeliveryError: still not recovered when the progress clock ran out, or a rewind's
                seek did not return within what was left of it.
        """
        started = time.monotonic()
        self._seek_stuck = False
        self.clock.failed(cause)
        logger.error(
            "producer unusable (%s); replacing it and rewinding to the committed offsets", cause
        )

        def note(retry: RetryNote) -> None:
            self.clock.last_error = describe(retry.error)
            logger.info(
                "recovery attempt %d failed (%s); retrying in %.1fs",
                retry.attempt,
                self.clock.last_error,
                retry.delay_s,
                extra={ATTEMPT: retry.attempt, DELAY_S: round(retry.delay_s, 3)},
            )

        policy = retrying(
            deadline_s=max(0.0, self.clock.remaining_s()),
            first_delay_s=FIRST_BACKOFF_S,
            max_delay_s=MAX_BACKOFF_S,
            retry_on=self._retryable,
            stop=stop,
            on_retry=note,
            sleep=lambda delay_s: self._idle(consumer, delay_s, stop),
        )
        try:
            done, positions = policy.call(self._attempt, consumer, publisher, stop)
        except (KafkaException, DeliveryError) as exc:
            if stop.is_set():
                logger.info("stopping while recovering the producer (%s)", exc)
                return False
            self.clock.last_error = describe(exc)
            raise self.clock.exhausted() from None
        logger.warning(
            "producer recovered in %.1fs (%d attempt(s)) after: %s; %s; rewound to the "
            "committed offsets %s",
            time.monotonic() - started,
            policy.attempts,
            cause,
            done,
            positions,
            extra={TOPIC: self.topic, OFFSETS: positions},
        )
        self.hooks.on_producer_recovered(cause)
        return True

    def _retryable(self, exc: BaseException) -> bool:
        # Unlike a stuck producer, a consumer stuck in a seek cannot be replaced in place (it
        # holds the group membership): no attempt may follow on it, the scorer ends.
        return isinstance(exc, KafkaException | DeliveryError) and not self._seek_stuck

    def _attempt(
        self, consumer: Consumer, publisher: Reopenable, stop: threading.Event
    ) -> tuple[str, dict[int, int]]:
        done = publisher.reopen()
        try:
            positions = rewind_to_committed(
                consumer,
                auto_offset_reset=self.auto_offset_reset,
                clock=self.clock,
                stop=stop,
                start_offsets=self.start_offsets,
            )
        except ClientStuckError:
            self._seek_stuck = True
            raise
        return done, positions

    def _idle(self, consumer: Consumer, delay_s: float, stop: threading.Event) -> None:
        """Wait ``delay_s`` while polling the consumer (its group membership needs it).

        What the polls return is dropped: the rewind that ends the recovery reads it again.
        """
        deadline = time.monotonic() + delay_s
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # Dropped, but a fatal consumer error still ends the scorer.
            take_batch(consumer, IDLE_POLL_MESSAGES, min(left, IDLE_POLL_S))
            self.hooks.on_poll(consumer)
