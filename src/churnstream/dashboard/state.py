"""What the dashboard shows, aggregated from the followed topics (thread-safe, bounded).

:class:`DashboardState` is fed by the :class:`~churnstream.dashboard.follower.Follower`
(predictions, inputs, dead letters) and the
:class:`~churnstream.dashboard.scraper.MetricsScraper`; its
:meth:`~DashboardState.snapshot` is what the page polls.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
#: How long a prediction waits for its input record before it is counted as ``unknown``.
JOIN_WAIT_S = 5.0
SERIES_SECONDS = 300
MIN_SERIES_SECONDS = 60
THROUGHPUT_WINDOW_S = 5
CHURN_WINDOW_S = 30
LATENCY_SAMPLES = 5000
TOP_K = 15
MAX_SEEN_SOURCES = 500_000
MAX_SEGMENTS = 200_000


class BoundedSet:
    """A set that forgets its oldest members beyond ``capacity`` (FIFO).

    Duplicates come from redeliveries, which follow the original closely, so remembering
    the last ``capacity`` keys is enough and keeps memory bounded on an endless stream.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: set[str] = set()
        self._order: deque[str] = deque()

    def add(self, item: str) -> bool:
        """Add ``item``; False if it was already present."""
        if item in self._items:
            return False
        self._items.add(item)
        self._order.append(item)
        if len(self._order) > self._capacity:
            self._items.discard(self._order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _Tally:
    count: int = 0
    churn: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "churn": self.churn,
            "churn_rate": self.churn / self.count if self.count else None,
        }


def _percentiles(values: Iterable[float]) -> dict[str, float | None]:
    array = np.fromiter(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return {"p50": None, "p95": None, "p99": None, "count": 0}
    p50, p95, p99 = (float(v) for v in np.percentile(array, [50, 95, 99]))
    return {"p50": p50, "p95": p95, "p99": p99, "count": int(array.size)}


def _parse_ts(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def _reason_texts(reasons: list[Any] | None) -> list[str]:
    """``feature=value`` of each reason, largest first (whatever is malformed is skipped)."""
    texts = []
    for reason in reasons or []:
        if isinstance(reason, dict) and isinstance(reason.get("feature"), str):
            texts.append(f"{reason['feature']}={reason.get('value')}")
    return texts


class DashboardState:
    """Live aggregations of the followed topics. Thread-safe; memory is bounded."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        top_k: int = TOP_K,
        join_inputs: bool = True,
    ) -> None:
        self._clock = clock
        #: False when the raw topic is not followed: segments are then all ``unknown``.
        self.join_inputs = join_inputs
        self._lock = threading.Lock()
        self._top_k = top_k
        self.started_at = clock()
        self.predictions = 0
        self.churners = 0
        self.duplicates = 0
        self.dead_duplicates = 0
        self.dead_letters = 0
        self.dead_by_type: Counter[str] = Counter()
        self.dead_by_code: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        self.by_contract: dict[str, _Tally] = {}
        self.by_internet: dict[str, _Tally] = {}
        self._seen = BoundedSet(MAX_SEEN_SOURCES)
        self._seen_dead = BoundedSet(MAX_SEEN_SOURCES)
        self._segments: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._pending: deque[tuple[float, str, bool, str | None]] = deque()
        # second -> [predictions, churners, dead letters]
        self._series: dict[int, list[int]] = {}
        self._inference: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._end_to_end: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._latest: dict[str, dict[str, Any]] = {}
        self.last_message_at: float | None = None
        self.scrape: dict[str, Any] = {}
        self.errors: deque[str] = deque(maxlen=5)

    # -- feeding -------------------------------------------------------------------------
    def add_raw(self, source: str, body: Mapping[str, Any]) -> None:
        """Remember an input's segment, for predictions that name it as their source."""
        contract = str(body.get("Contract") or UNKNOWN)
        internet = str(body.get("InternetService") or UNKNOWN)
        with self._lock:
            self._segments[source] = (contract, internet)
            if len(self._segments) > MAX_SEGMENTS:
                self._segments.popitem(last=False)

    def add_prediction(
        self, source: str | None, body: Mapping[str, Any], *, reasons: list[Any] | None = None
    ) -> bool:
        """Count one prediction; False if its source was already counted (a replay).

        ``reasons`` is its ``churnstream.reasons`` header, parsed (when the scorer adds it).
        """
        now = self._clock()
        churn = body.get("prediction") == "Yes"
        with self._lock:
            if source is not None and not self._seen.add(source):
                self.duplicates += 1
                return False
            self.predictions += 1
            self.churners += int(churn)
            self._bucket(now)[0] += 1
            self._bucket(now)[1] += int(churn)
            self.last_message_at = now
            version = body.get("model_version")
            if isinstance(version, str):
                self.models[version] += 1
            inference = body.get("inference_latency_ms")
            if isinstance(inference, int | float):
                self._inference.append(float(inference))
            event, processed = _parse_ts(body.get("event_ts")), _parse_ts(body.get("processed_ts"))
            if event is not None and processed is not None:
                self._end_to_end.append(max(0.0, (processed - event) * 1000.0))
            segment = self._segments.get(source) if source is not None else None
            customer = body.get("customerID")
            if segment is None and source is not None and self.join_inputs:
                self._pending.append(
                    (now, source, churn, customer if isinstance(customer, str) else None)
                )
            else:
                self._count_segment(segment, churn)
            probability = body.get("churn_probability")
            if isinstance(customer, str) and isinstance(probability, int | float):
                self._latest[customer] = {
                    "customerID": customer,
                    "churn_probability": float(probability),
                    "prediction": body.get("prediction"),
                    "processed_ts": body.get("processed_ts"),
                    "source": source,
                    "Contract": segment[0] if segment else None,
                    "InternetService": segment[1] if segment else None,
                    "reasons": _reason_texts(reasons),
                }
            return True

    def add_dead_letter(
        self, source: str | None, body: Mapping[str, Any] | None, code: str | None
    ) -> bool:
        now = self._clock()
        with self._lock:
            if source is not None and not self._seen_dead.add(source):
                self.dead_duplicates += 1
                return False
            self.dead_letters += 1
            error_type = body.get("error_type") if isinstance(body, Mapping) else None
            self.dead_by_type[str(error_type) if error_type else UNKNOWN] += 1
            self.dead_by_code[code or UNKNOWN] += 1
            self._bucket(now)[2] += 1
            self.last_message_at = now
            return True

    def resolve_pending(self, *, force: bool = False) -> None:
        """Join waiting predictions with inputs seen since; give up after JOIN_WAIT_S."""
        now = self._clock()
        with self._lock:
            waiting: deque[tuple[float, str, bool, str | None]] = deque()
            while self._pending:
                arrived, source, churn, customer = self._pending.popleft()
                segment = self._segments.get(source)
                if segment is not None or force or now - arrived >= JOIN_WAIT_S:
                    self._count_segment(segment, churn)
                    row = self._latest.get(customer) if customer is not None else None
                    if segment is not None and row is not None and row["source"] == source:
                        row["Contract"], row["InternetService"] = segment
                else:
                    waiting.append((arrived, source, churn, customer))
            self._pending = waiting

    def set_scrape(self, scrape: dict[str, Any]) -> None:
        with self._lock:
            self.scrape = scrape

    def note_error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    # -- internals (lock held) ---------------------------------------------------------
    def _bucket(self, now: float) -> list[int]:
        second = int(now)
        bucket = self._series.get(second)
        if bucket is None:
            bucket = self._series[second] = [0, 0, 0]
            cutoff = second - SERIES_SECONDS - CHURN_WINDOW_S
            for old in [s for s in self._series if s < cutoff]:
                del self._series[old]
        return bucket

    def _count_segment(self, segment: tuple[str, str] | None, churn: bool) -> None:
        contract, internet = segment if segment is not None else (UNKNOWN, UNKNOWN)
        for table, level in ((self.by_contract, contract), (self.by_internet, internet)):
            tally = table.setdefault(level, _Tally())
            tally.count += 1
            tally.churn += int(churn)

    # -- reading -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as plain JSON-able data."""
        now = self._clock()
        with self._lock:
            current = int(now)
            # From the first message (at least MIN_SERIES_SECONDS back), at most SERIES_SECONDS.
            first = min(self._series, default=current)
            start = max(
                current - SERIES_SECONDS + 1, min(first - 1, current - MIN_SERIES_SECONDS + 1)
            )
            seconds = list(range(start, current + 1))
            counts = [
                self._series.get(s, [0, 0, 0])
                for s in range(seconds[0] - CHURN_WINDOW_S, current + 1)
            ]
            offset = CHURN_WINDOW_S
            throughput, churn_rate, dead_rate = [], [], []
            for i in range(len(seconds)):
                # The current second is partial: average over the complete ones before it.
                end = offset + i
                window = counts[max(0, end - THROUGHPUT_WINDOW_S) : end]
                throughput.append(sum(c[0] for c in window) / THROUGHPUT_WINDOW_S)
                dead_rate.append(sum(c[2] for c in window) / THROUGHPUT_WINDOW_S)
                churn_window = counts[max(0, end - CHURN_WINDOW_S) : end]
                scored = sum(c[0] for c in churn_window)
                churned = sum(c[1] for c in churn_window)
                churn_rate.append(churned / scored if scored else None)
            top = heapq.nlargest(
                self._top_k,
                self._latest.values(),
                key=lambda r: (r["churn_probability"], r["customerID"]),
            )
            return {
                "now": now,
                "uptime_s": now - self.started_at,
                "last_message_age_s": (
                    None if self.last_message_at is None else now - self.last_message_at
                ),
                "totals": {
                    "predictions": self.predictions,
                    "churners": self.churners,
                    "churn_rate": self.churners / self.predictions if self.predictions else None,
                    "duplicates_skipped": self.duplicates,
                    "dead_letters": self.dead_letters,
                    "customers": len(self._latest),
                },
                "throughput_now": throughput[-1] if throughput else 0.0,
                "series": {
                    "t": seconds,
                    "throughput": throughput,
                    "churn_rate": churn_rate,
                    "dead_letter_rate": dead_rate,
                },
                "by_contract": {k: v.as_dict() for k, v in sorted(self.by_contract.items())},
                "by_internet_service": {
                    k: v.as_dict() for k, v in sorted(self.by_internet.items())
                },
                "latency_ms": {
                    "inference": _percentiles(self._inference),
                    "end_to_end": _percentiles(self._end_to_end),
                },
                "dead_letters": {
                    "total": self.dead_letters,
                    "duplicates_skipped": self.dead_duplicates,
                    "by_type": dict(sorted(self.dead_by_type.items())),
                    "by_code": dict(sorted(self.dead_by_code.items())),
                },
                "models": dict(self.models),
                "top_risk": [{k: v for k, v in row.items() if k != "source"} for row in top],
                "scorer": dict(self.scrape),
                "errors": list(self.errors),
            }
