"""Hooks into the scorer loop, for metrics, live consoles and the demo.

The loop calls every observer at fixed points; an observer overrides what it needs. They
run on the loop's thread, so they must be quick (no blocking I/O per batch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka import Consumer

    from churnstream.pipeline.scorer import ScoreSummary
    from churnstream.scoring.messages import BatchResult, RawMessage

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

    def on_window(self, window: dict[str, Any]) -> None:
        """A window summary was produced (and written, if reports are on)."""

    def on_stop(self, summary: ScoreSummary) -> None:
        """The loop has flushed, committed and closed."""
