"""A Prometheus histogram fed with whole arrays, and counter and gauge creation by full name."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

logger = logging.getLogger(__name__)


def counter(
    name: str, doc: str, registry: CollectorRegistry, labels: Sequence[str] = ()
) -> Counter:
    """A counter registered under ``name`` (a full ``..._total`` name, as in names.py)."""
    # prometheus_client appends "_total" itself.
    return Counter(name.removesuffix("_total"), doc, labelnames=labels, registry=registry)


def gauge(name: str, doc: str, registry: CollectorRegistry, labels: Sequence[str] = ()) -> Gauge:
    """A gauge registered under ``name`` (as in names.py)."""
    return Gauge(name, doc, labelnames=labels, registry=registry)


class ArrayHistogram(Collector):
    """A label-less Prometheus histogram fed with whole arrays of observations.

    Same exposition as ``prometheus_client.Histogram`` (cumulative ``_bucket{le}``,
    ``_sum``, ``_count``); non-finite values are ignored. Thread-safe.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None,
    ) -> None:
        upper = sorted(float(b) for b in buckets)
        if not upper or upper[-1] != float("inf"):
            upper.append(float("inf"))
        self.name = name
        self._doc = documentation
        self._upper = np.asarray(upper, dtype=np.float64)
        self._counts = np.zeros(len(upper), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, values: ArrayLike) -> None:
        """Add every finite value of ``values`` (a scalar or any array-like)."""
        array = np.asarray(values, dtype=np.float64).ravel()
        array = array[np.isfinite(array)]
        if array.size == 0:
            return
        # le semantics: a value equal to a bound belongs to that bucket.
        index = np.searchsorted(self._upper, array, side="left")
        counts = np.bincount(index, minlength=len(self._upper))
        total = float(array.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    @property
    def count(self) -> int:
        with self._lock:
            return int(self._counts.sum())

    @property
    def sum(self) -> float:
        with self._lock:
            return self._sum

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self._doc)]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        buckets = [
            (floatToGoString(bound), float(n))  # type: ignore[no-untyped-call]
            for bound, n in zip(self._upper.tolist(), cumulative, strict=True)
        ]
        return [HistogramMetricFamily(self.name, self._doc, buckets=buckets, sum_value=total)]
