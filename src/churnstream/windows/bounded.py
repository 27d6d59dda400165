"""The two per-window states that follow the stream, each with a hard bound.

- :class:`SeenOffsets`: which source offsets a window has counted, to skip replays. Within
  a partition Kafka delivers offsets in order; a replay (after a rewind) re-delivers offsets
  already seen. So each partition keeps a floor (every offset at or below it counts as seen)
  and the set of offsets above it, at most ``limit``: when full, the older half is folded
  into the floor. An offset below the floor that was never seen would be taken for a replay;
  Kafka never delivers one (it would need a rewind past an offset this window never read).
- :class:`LatestScores`: each customer's latest score, for ``top_risk``. Exact up to
  ``limit`` customers in the window; past that, the lower-scored half is dropped (a dropped
  customer comes back with its next score), so the top of the list is what it keeps.

Neither grows with the number of events: a window over ten million events holds the same.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

MAX_SEEN_OFFSETS = 20_000
MAX_LATEST_CUSTOMERS = 50_000

#: (churn_probability, Contract, InternetService, PaymentMethod)
Score = tuple[float, Any, Any, Any]


class SeenOffsets:
    """Offsets of one (topic, partition) already counted in the window."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = _checked_limit(limit, MAX_SEEN_OFFSETS)
        self.floor = -1
        self.top = -1
        self._above: set[int] = set()

    def __len__(self) -> int:
        return len(self._above)

    def fresh(self, distinct: NDArray[np.int64]) -> NDArray[np.bool_]:
        """For sorted distinct offsets: True where new; all of them are seen afterwards."""
        if distinct.size == 0:
            return np.zeros(0, dtype=bool)
        if int(distinct[0]) > self.top:
            new = np.ones(distinct.size, dtype=bool)  # the usual case: past everything seen
        else:
            above = self._above
            new = distinct > self.floor
            candidates = np.flatnonzero(new)
            new[candidates] = np.fromiter(
                (o not in above for o in distinct[candidates].tolist()),
                dtype=bool,
                count=candidates.size,
            )
        self._above.update(distinct[new].tolist())
        self.top = max(self.top, int(distinct[-1]))
        if len(self._above) > self.limit:
            kept = np.sort(np.fromiter(self._above, np.int64, len(self._above)))
            cut = kept.size // 2
            self.floor = int(kept[cut - 1])
            self._above = set(kept[cut:].tolist())
        return new


class LatestScores:
    """Each customer's latest score in arrival order, for at most ``limit`` customers."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = _checked_limit(limit, MAX_LATEST_CUSTOMERS)
        self._latest: dict[Any, Score] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._latest)

    def add(self, customers: Iterable[Any], scores: Iterable[Score]) -> None:
        """Record scores in order: a later row of the same customer replaces an earlier one."""
        latest = self._latest
        latest.update(zip(customers, scores, strict=True))
        if len(latest) > self.limit:
            keep = self.limit // 2
            best = heapq.nsmallest(keep, latest.items(), key=_rank)
            kept = {customer for customer, _ in best}
            self.dropped += len(latest) - len(kept)
            logger.warning(
                "more than %d customers in one window: top_risk keeps the %d highest scores",
                self.limit,
                keep,
            )
            self._latest = {c: s for c, s in latest.items() if c in kept}

    def top(self, k: int) -> list[tuple[Any, Score]]:
        """The ``k`` highest latest scores; ties by customer id, missing scores last."""
        if k <= 0:
            return []
        return heapq.nsmallest(k, self._latest.items(), key=_rank)


def _checked_limit(limit: int | None, default: int) -> int:
    """``limit`` (``default`` if None); at least 2, since a full state keeps half of it."""
    limit = default if limit is None else limit
    if limit < 2:
        raise ValueError(f"limit must be >= 2, got {limit}")
    return limit


def _rank(item: tuple[Any, Score]) -> tuple[int, float, str]:
    customer, (probability, *_rest) = item
    if probability is None or math.isnan(probability):
        return (1, 0.0, str(customer))
    return (0, -probability, str(customer))
