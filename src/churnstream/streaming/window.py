"""The scorer's current window: committed batches in, one summary dict out when it closes."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from churnstream.scoring.messages import BatchResult, ScoredColumns
from churnstream.scoring.shadow import ShadowRecord, ShadowStats
from churnstream.windows.drift import DriftReference
from churnstream.windows.stats import WindowStats

logger = logging.getLogger(__name__)

#: Scored rows are folded into the window statistics at most this often, or once this many
#: rows wait: the fold has a fixed cost that small streaming batches would otherwise pay
#: one by one, between a commit and the next poll.
FOLD_INTERVAL_S = 0.25
FOLD_MAX_ROWS = 5000


class Window:
    """Window statistics of the committed batches, with the shadow model's comparison.

    ``drift`` (the serving model's training profile) is set again when the model changes.
    """

    def __init__(self, *, mode: str, top_k: int, drift: DriftReference | None) -> None:
        self.mode = mode
        self.top_k = top_k
        self.drift = drift
        self._stats = WindowStats()
        self._started = datetime.now(UTC)
        self._shadow = ShadowStats()
        self._unfolded: list[BatchResult] = []
        #: Scored rows waiting to be folded into the statistics.
        self.unfolded_rows = 0
        self._last_fold = time.monotonic()

    def add(
        self, batch_size: int, result: BatchResult, shadow: Sequence[ShadowRecord] = ()
    ) -> None:
        """Count one committed batch (its scored rows are folded now or with later ones)."""
        self._stats.add_consumed(batch_size)
        self._stats.add_batch_size(batch_size)
        self._unfolded.append(result)
        self.unfolded_rows += len(result.predictions)
        if (
            self.unfolded_rows >= FOLD_MAX_ROWS
            or time.monotonic() - self._last_fold >= FOLD_INTERVAL_S
        ):
            self._fold()
        self._stats.add_dead_letters(result.dead_letter_types)
        self._stats.add_dead_letter_codes(result.dead_letter_codes)
        if shadow:
            self._shadow.add(shadow)

    def close(self, *, model_version: str, shadow_version: str | None) -> dict[str, Any]:
        """The summary of the window so far; the next window starts now."""
        self._fold()
        ended = datetime.now(UTC)
        summary = self._stats.summary(
            self._started,
            ended,
            top_k=self.top_k,
            model_version=model_version,
            mode=self.mode,
            drift=self.drift,
        )
        if shadow_version is not None:
            summary["shadow"] = self._shadow.block(shadow_version)
            self._shadow = ShadowStats()
        self._stats = WindowStats()
        self._started = ended
        return summary

    def _fold(self) -> None:
        """Add the scored rows of the batches added since the last fold to the statistics."""
        self._last_fold = time.monotonic()
        if not self._unfolded:
            return
        parts = [result.scored for result in self._unfolded]
        # Concatenated in order, the rows fold exactly as batch after batch would.
        self._stats.add_scored(parts[0] if len(parts) == 1 else _concat(parts))
        self._unfolded = []
        self.unfolded_rows = 0


def _concat(parts: Sequence[ScoredColumns]) -> ScoredColumns:
    """The rows of several scored batches, in order, as one; a column some batches lack is
    None in their rows."""
    names = list(dict.fromkeys(name for part in parts for name in part))
    return {name: np.concatenate([_column(part, name) for part in parts]) for name in names}


def _column(part: ScoredColumns, name: str) -> np.ndarray:
    if name in part:
        return part[name]
    rows = len(next(iter(part.values()))) if part else 0
    return np.full(rows, None, dtype=object)
