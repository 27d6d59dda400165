"""A bounded sample of a stream of values, for window percentiles. Pure: no I/O."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)


class Reservoir:
    """Exact count, sum and max, plus a uniform sample of at most ``capacity`` values.

    Percentiles come from the sample, so they are exact until the capacity is reached and
    unbiased estimates after (Vitter's algorithm R, vectorised per batch).
    """

    def __init__(self, name: str, capacity: int, rng: np.random.Generator) -> None:
        self._name = name
        self._capacity = capacity
        self._rng = rng
        # One array of ``capacity`` slots, allocated at the first value and filled in place.
        # Its untouched pages cost no RSS, and unlike chunks joined when the sample fills up,
        # it never needs a second copy (whose freed heap the allocator keeps).
        self._sample: NDArray[np.float64] | None = None
        self._kept = 0
        self.count = 0
        self.total = 0.0
        self.maximum = -math.inf

    @property
    def stored(self) -> int:
        """Values held (at most the capacity)."""
        return self._kept

    @property
    def sampled(self) -> bool:
        return self.count > self._capacity

    def add(self, values: NDArray[np.float64]) -> None:
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        self.total += float(values.sum())
        self.maximum = max(self.maximum, float(values.max()))
        if self._sample is None:
            self._sample = np.empty(self._capacity, dtype=np.float64)
        room = self._capacity - self._kept
        if room > 0:
            head = values[:room]
            self._sample[self._kept : self._kept + head.size] = head
            self._kept += head.size
            self.count += head.size
            values = values[room:]
            if values.size == 0:
                return
        if self.count == self._capacity:  # the first value past the capacity
            logger.warning(
                "more than %d %s samples in one window; percentiles are now sampled",
                self._capacity,
                self._name,
            )
        # Element i of this batch is stream item count+i; it replaces slot j if j < capacity.
        stream_index = np.arange(self.count, self.count + values.size)
        slots = self._rng.integers(0, stream_index + 1)
        keep = slots < self._capacity
        self._sample[slots[keep]] = values[keep]
        self.count += values.size

    def values(self) -> NDArray[np.float64]:
        if self._sample is None:
            return np.empty(0, dtype=np.float64)
        return self._sample[: self._kept]

    def as_dict(self) -> dict[str, Any]:
        sample = self.values()
        if self.count == 0 or sample.size == 0:
            return {
                "count": 0,
                "p50": None,
                "p95": None,
                "p99": None,
                "max": None,
                "mean": None,
                "sampled": False,
            }
        p50, p95, p99 = (float(v) for v in np.percentile(sample, [50, 95, 99]))
        return {
            "count": self.count,
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "max": self.maximum,
            "mean": self.total / self.count,
            "sampled": self.sampled,
        }
