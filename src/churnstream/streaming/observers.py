"""Hooks into the scorer loop: the only way it reports (metrics, consoles, report files, demo).

The loop calls every observer at fixed points; an observer overrides what it needs. The
command that starts the loop chooses the observers, so the loop itself knows nothing of
Prometheus, terminals or report files. They run on the loop's thread, so they must be quick
(no blocking I/O per batch), and in the order given: an observer that adds to a window
summary (drift) goes before one that writes it out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka import Consumer

    from churnstream.scoring.messages import BatchResult, RawMessage
    from churnstream.streaming.options import ScoreSummary

logger = logging.getLogger(__name__)


class ScorerObserver:
    """No-op base: subclass and override the hooks you need."""

    def on_start(self, *, model_version: str, group_id: str, input_topic: str) -> None:
        """The loop is about to subscribe."""

    def on_poll(self, consumer: Consumer) -> None:
        """After every poll, batch or not (cheap calls only: e.g. cached watermarks)."""

    def on_batch(
        self, batch: Sequence[RawMessage], result: BatchResult, summary: ScoreSummary
    ) -> None:
        """A batch was acknowledged and committed; ``summary`` holds the running totals."""

    def on_model_change(self, old_version: str, new_version: str) -> None:
        """A new model was hot-loaded between batches; the next batch uses it."""

    def on_redelivery(self, batch_size: int, error: str | None) -> None:
        """A batch was not fully acknowledged and will be processed again."""

    def on_producer_recovered(self, cause: str) -> None:
        """The producer was replaced after ``cause`` and the consumer rewound to the committed
        offsets (:mod:`churnstream.streaming.recovery`)."""

    def on_window(self, window: dict[str, Any]) -> None:
        """A window closed; ``window`` is its summary (observers may add blocks to it)."""

    def on_stop(self, summary: ScoreSummary) -> None:
        """The loop has flushed, committed and closed."""


class WindowCallback(ScorerObserver):
    """Calls ``callback(summary)`` for every closed window: e.g. a report writer."""

    def __init__(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self.callback = callback

    def on_window(self, window: dict[str, Any]) -> None:
        self.callback(window)


class Observers(ScorerObserver):
    """Several observers as one: each hook is called on each of them, in order."""

    def __init__(self, observers: Iterable[ScorerObserver] = ()) -> None:
        self.observers = list(observers)

    def on_start(self, *, model_version: str, group_id: str, input_topic: str) -> None:
        for o in self.observers:
            o.on_start(model_version=model_version, group_id=group_id, input_topic=input_topic)

    def on_poll(self, consumer: Consumer) -> None:
        for o in self.observers:
            o.on_poll(consumer)

    def on_batch(
        self, batch: Sequence[RawMessage], result: BatchResult, summary: ScoreSummary
    ) -> None:
        for o in self.observers:
            o.on_batch(batch, result, summary)

    def on_model_change(self, old_version: str, new_version: str) -> None:
        for o in self.observers:
            o.on_model_change(old_version, new_version)

    def on_redelivery(self, batch_size: int, error: str | None) -> None:
        for o in self.observers:
            o.on_redelivery(batch_size, error)

    def on_producer_recovered(self, cause: str) -> None:
        for o in self.observers:
            o.on_producer_recovered(cause)

    def on_window(self, window: dict[str, Any]) -> None:
        for o in self.observers:
            o.on_window(window)

    def on_stop(self, summary: ScoreSummary) -> None:
        for o in self.observers:
            o.on_stop(summary)
