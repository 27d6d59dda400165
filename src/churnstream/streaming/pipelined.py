"""At-least-once with one batch in flight: batch N+1 is scored while batch N is acknowledged.

The order, on the loop's one thread (no locking): produce batch N without waiting, consume
and score batch N+1 while librdkafka's threads compress and send N, then ``flush()`` (which
waits for N only), commit N's offsets, produce N+1, and so on. So no offset is committed
before every output of its batch is acknowledged, as in the sequential loop, and at most one
batch is produced and not yet committed at any time.

If N fails, N+1's scored result is dropped (it was never produced) and the consumer is
rewound to the lowest offset of N and N+1 per partition: both are scored again. A rebalance
between the two makes N's commit fail (logged, as in the sequential loop) and the new owner
scores N again, which at-least-once allows. On shutdown N is finished (flush and commit) and a
scored N+1 is dropped uncommitted. Exactly-once cannot take this path: a producer has one
open transaction, which holds N's records and N's offsets until ``commit_transaction()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer

from churnstream.logging import BATCH_SIZE
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.scoring.shadow import ShadowRecord
from churnstream.streaming.publish import Publisher
from churnstream.streaming.recovery import Failure

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """A consumed batch with what scoring it gave, not yet published."""

    batch: list[RawMessage]
    result: BatchResult
    shadow: Sequence[ShadowRecord] = field(default_factory=list)


#: Called with a batch once its outputs are acknowledged and its offsets committed.
OnPublished = Callable[[Scored], None]
#: Called with every message to score again and why; the callee rewinds the consumer to the
#: first of them per partition (unless the failure replaces the producer).
OnFailed = Callable[[list[RawMessage], Failure], None]


class Pipeline:
    """Holds the batch in flight (produced, not yet acknowledged) between two calls."""

    def __init__(
        self,
        publisher: Publisher,
        consumer: Consumer,
        *,
        on_published: OnPublished,
        on_failed: OnFailed,
    ) -> None:
        self.publisher = publisher
        self.consumer = consumer
        self.on_published = on_published
        self.on_failed = on_failed
        #: Batch N: produced, neither acknowledged nor committed yet.
        self.pending: Scored | None = None

    @property
    def in_flight(self) -> int:
        """Messages consumed but not yet accounted for (the pending batch)."""
        return len(self.pending.batch) if self.pending is not None else 0

    def advance(self, scored: Scored, stop: threading.Event | None = None) -> Failure | None:
        """Finish the pending batch, then send ``scored`` and keep it pending.

        If the pending batch fails, ``scored`` is dropped unpublished and both are given to
        ``on_failed``. If ``stop`` is set once the pending batch is done, ``scored`` is
        dropped uncommitted: a restart scores it again.
        """
        done, self.pending = self.pending, None
        if done is not None:
            failure = self.publisher.settle(done.batch, self.consumer)
            if failure is not None:
                self.on_failed([*done.batch, *scored.batch], failure)
                return failure
            self.on_published(done)
        if stop is not None and stop.is_set():
            logger.info(
                "stopping: a scored batch of %d dropped unpublished and uncommitted",
                len(scored.batch),
                extra={BATCH_SIZE: len(scored.batch)},
            )
            return None
        failure = self.publisher.send(scored.result, scored.shadow)
        if failure is not None:
            self.on_failed(scored.batch, failure)
            return failure
        self.pending = scored
        return None

    def drain(self) -> Failure | None:
        """Finish the pending batch, if there is one: wait for it, commit it."""
        done, self.pending = self.pending, None
        if done is None:
            return None
        failure = self.publisher.settle(done.batch, self.consumer)
        if failure is not None:
            self.on_failed(done.batch, failure)
            return failure
        self.on_published(done)
        return None
