"""Pure aggregations for window summaries: no I/O, no clocks, no Kafka.

The consumer loop feeds one :class:`WindowStats` per window with each scored micro-batch,
the dead-letter counts and the batch sizes, then calls :meth:`WindowStats.summary` once
and hands the dict to its observers (the report writer among them). Work is done per batch
with numpy (no pandas: this runs in the scorer process); per-row Python work is the level
and idempotency-key lookups and the latest score per customer. The state is bounded: it
does not grow with the number of events (:mod:`churnstream.windows.bounded`).

Given the model's training profile (``summary(..., drift=DriftReference)``), the summary
also holds a ``drift`` block (:mod:`churnstream.windows.drift`): PSI of tenure,
MonthlyCharges and the three segment columns, and the predicted-churn-rate shift, over the
same de-duplicated rows as everything else.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from churnstream.exceptions import DataError
from churnstream.model.contributions import REASONS_COLUMN
from churnstream.model.feature_batch import PROFILE_NUMERIC
from churnstream.windows.bounded import LatestScores, SeenOffsets
from churnstream.windows.columns import (
    Columns,
    as_floats,
    column,
    factorize,
    has_missing,
    is_missing,
)
from churnstream.windows.drift import DriftReference, ValueCounts, drift_block
from churnstream.windows.fields import (
    ERROR_TYPES,
    GROUP_COLUMNS,
    KEY_COLUMNS,
    LATENCY_BIN_EDGES_MS,
    REQUIRED_COLUMNS,
    RISK_BINS,
    SUMMARY_SCHEMA_VERSION,
    TOP_REASON_FEATURES,
    TOP_RISK_COLUMNS,
    UNKNOWN_LEVEL,
)
from churnstream.windows.reservoir import Reservoir

logger = logging.getLogger(__name__)

#: Latency values kept per window for percentiles (a uniform sample past it: p99 within
#: about +-0.06 percentile points at 2 sigma). 8 bytes each, for each of the two latencies;
#: at 1,000,000 the two samples held 16 MB of a scorer's RSS over a long batch window.
MAX_LATENCY_SAMPLES = 100_000
_RESERVOIR_SEED = 0


@dataclass
class _Tally:
    count: int = 0
    churn_count: int = 0
    probability_sum: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "churn_count": self.churn_count,
            "churn_rate": _ratio(self.churn_count, self.count),
            "mean_probability": _ratio(self.probability_sum, self.count),
        }


class WindowStats:
    """Accumulates one window of scoring. Create a new instance per window (there is no reset).

    Counts, rates and the risk histogram are per scored message after de-duplication (a
    missing probability counts as a message but adds nothing to the probability sums);
    ``top_risk`` is per customer, with the customer's latest score in arrival order.
    Memory is bounded, whatever the number of events: at most ``MAX_SEEN_OFFSETS``
    idempotency keys per partition and ``MAX_LATEST_CUSTOMERS`` latest scores (see
    :mod:`churnstream.windows.bounded`), ``max_latency_samples`` floats per latency, and one
    count per distinct value of the profiled features.
    Not thread-safe: feed it from the consumer loop only.
    """

    def __init__(self, *, max_latency_samples: int = MAX_LATENCY_SAMPLES) -> None:
        if max_latency_samples < 1:
            raise ValueError(f"max_latency_samples must be >= 1, got {max_latency_samples}")
        rng = np.random.default_rng(_RESERVOIR_SEED)
        self._consumed = 0
        self._scored = 0
        self._churners_explained = 0
        self._reasons: Counter[str] = Counter()
        self._duplicates = 0
        self._dead_by_type: Counter[str] = Counter({error_type: 0 for error_type in ERROR_TYPES})
        self._dead_by_code: Counter[str] = Counter()
        self._overall = _Tally()
        self._groups: dict[str, dict[str, _Tally]] = {section: {} for section in GROUP_COLUMNS}
        self._histogram = np.zeros(RISK_BINS, dtype=np.int64)
        self._seen: dict[tuple[str, int], SeenOffsets] = {}
        self._latest = LatestScores()
        self._inference = Reservoir("inference latency", max_latency_samples, rng)
        self._end_to_end = Reservoir("end-to-end latency", max_latency_samples, rng)
        self._batch_sizes = Reservoir("batch size", max_latency_samples, rng)
        # Exact value counts of the profiled numeric features, for drift (bounded by the
        # number of distinct values); the segment columns' counts are already in _groups.
        self._numeric = {column: ValueCounts() for column in PROFILE_NUMERIC}

    def add_consumed(self, n: int) -> None:
        """Count ``n`` messages polled from Kafka (scored, dead-lettered or duplicate)."""
        self._consumed += _non_negative("n", n)

    def add_batch_size(self, n: int) -> None:
        """Record the size of one micro-batch, for the batch-size distribution."""
        self._batch_sizes.add(np.array([_non_negative("n", n)], dtype=np.float64))

    def add_dead_letters(self, counts: Mapping[str, int]) -> None:
        """Add dead-letter counts by error type (``validation_error``, ``inference_error``...)."""
        for error_type, n in counts.items():
            self._dead_by_type[error_type] += _non_negative(error_type, n)

    def add_dead_letter_codes(self, counts: Mapping[str, int]) -> None:
        """Add dead-letter counts by reason code (``not_json``, ``schema``...).

        These refine the error types; they do not add to ``dead_lettered``.
        """
        for code, n in counts.items():
            self._dead_by_code[code] += _non_negative(code, n)

    def add_scored(self, batch: Columns) -> int:
        """Fold one scored micro-batch in; return how many rows were new (not duplicates).

        ``batch`` maps each column to one value per row (``BatchResult.scored``). A row
        whose (source_topic, source_partition, source_offset) was already seen in this
        window, or earlier in the same batch, is a replay after a crash: it is counted in
        ``duplicates_skipped`` and nothing else.

        Raises:
            DataError: the batch lacks one of the expected columns.
        """
        missing = sorted(name for name in REQUIRED_COLUMNS if name not in batch)
        if missing:
            raise DataError(f"scored batch lacks columns: {', '.join(missing)}")
        keys = [column(batch, name) for name in KEY_COLUMNS]
        n = keys[0].shape[0]
        if n == 0:
            return 0
        if any(has_missing(values) for values in keys):
            raise DataError("scored batch has rows without source_topic/partition/offset")
        fresh = np.flatnonzero(self._fresh_mask(*keys))
        self._duplicates += n - fresh.size
        if fresh.size == 0:
            return 0
        self._scored += fresh.size

        def take(name: str) -> NDArray[Any]:
            return column(batch, name)[fresh]

        probability = as_floats(take("churn_probability"))
        finite = np.isfinite(probability)
        # Sums skip a missing probability instead of turning NaN.
        weights = np.where(finite, probability, 0.0)
        churned = (take("prediction") == "Yes").astype(np.float64)
        self._overall.count += fresh.size
        self._overall.churn_count += int(churned.sum())
        self._overall.probability_sum += float(weights.sum())

        groups: dict[str, NDArray[Any]] = {}
        for section, name in GROUP_COLUMNS.items():
            groups[name] = take(name)
            codes, levels = factorize(groups[name])
            counts = np.bincount(codes, minlength=len(levels))
            churn_counts = np.bincount(codes, weights=churned, minlength=len(levels))
            probability_sums = np.bincount(codes, weights=weights, minlength=len(levels))
            acc = self._groups[section]
            # One Python step per level (a handful), not per row.
            for level, count, churn_count, probability_sum in zip(
                levels,
                counts.tolist(),
                churn_counts.tolist(),
                probability_sums.tolist(),
                strict=True,
            ):
                tally = acc.setdefault(_level_name(level), _Tally())
                tally.count += int(count)
                tally.churn_count += round(churn_count)
                tally.probability_sum += float(probability_sum)

        clipped = np.clip(probability[finite], 0.0, 1.0)
        # floor(p * bins) rather than np.histogram: its float edges put 0.3 in [0.2, 0.3).
        bins = np.minimum((clipped * RISK_BINS).astype(np.int64), RISK_BINS - 1)
        self._histogram += np.bincount(bins, minlength=RISK_BINS)

        contract, internet, payment = (groups[name] for name in TOP_RISK_COLUMNS[2:])
        self._latest.add(
            take("customerID").tolist(),
            zip(
                probability.tolist(),
                contract.tolist(),
                internet.tolist(),
                payment.tolist(),
                strict=True,
            ),
        )

        for name, values in self._numeric.items():
            if name in batch:
                values.add(as_floats(take(name)))

        if REASONS_COLUMN in batch:
            # Rows of batches scored without reasons are missing (None) once batches are joined.
            explained = [
                r for r in take(REASONS_COLUMN)[churned > 0].tolist() if isinstance(r, str)
            ]
            self._churners_explained += len(explained)
            # A few distinct strings per batch: count those, then split each once.
            for joined, count in Counter(explained).items():
                for feature in joined.split(","):
                    if feature:
                        self._reasons[feature] += count

        self._inference.add(as_floats(take("inference_latency_ms")))
        self._end_to_end.add(as_floats(take("e2e_latency_ms")))
        return int(fresh.size)

    def stored_elements(self) -> int:
        """How many values the window holds (offsets, customers, samples, distinct values):
        what must not grow with the number of events."""
        return (
            sum(len(seen) for seen in self._seen.values())
            + len(self._latest)
            + self._inference.stored
            + self._end_to_end.stored
            + self._batch_sizes.stored
            + sum(values.stored for values in self._numeric.values())
        )

    def summary(
        self,
        started_at: datetime,
        ended_at: datetime,
        *,
        top_k: int,
        model_version: str | None,
        mode: str,
        drift: DriftReference | None = None,
    ) -> dict[str, Any]:
        """The window as a JSON-able dict (plain str/int/float/None/list/dict, no NaN).

        ``started_at``/``ended_at`` must be timezone-aware; they are written as UTC with
        ``Z``. Rates and means of an empty window are ``None``, never a division by zero.
        With ``drift`` (the model's training profile and thresholds, see
        :meth:`DriftReference.from_metadata`) the dict also has a ``drift`` block.
        """
        if started_at.tzinfo is None or ended_at.tzinfo is None:
            raise ValueError("started_at and ended_at must be timezone-aware datetimes")
        if ended_at < started_at:
            raise ValueError(f"window ends ({ended_at}) before it starts ({started_at})")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        duration_s = (ended_at - started_at).total_seconds()
        dead_lettered = sum(self._dead_by_type.values())
        edges = np.linspace(0.0, 1.0, RISK_BINS + 1)
        batch_sizes = self._batch_sizes.as_dict()
        summary: dict[str, Any] = {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "window": {
                "started_at": _iso_utc(started_at),
                "ended_at": _iso_utc(ended_at),
                "duration_s": duration_s,
                "mode": mode,
            },
            "model_version": model_version,
            "counts": {
                "consumed": self._consumed,
                "scored": self._scored,
                "duplicates_skipped": self._duplicates,
                "dead_lettered": dead_lettered,
                "dead_letters_by_type": dict(sorted(self._dead_by_type.items())),
                "dead_letters_by_code": dict(sorted(self._dead_by_code.items())),
            },
            "churn": {
                "predicted_churn_count": self._overall.churn_count,
                "predicted_churn_rate": _ratio(self._overall.churn_count, self._overall.count),
                "mean_probability": _ratio(self._overall.probability_sum, self._overall.count),
            },
            **{
                section: {level: tally.as_dict() for level, tally in sorted(acc.items())}
                for section, acc in self._groups.items()
            },
            "top_risk": self._top_risk(top_k),
            "latency_ms": {
                "inference": self._inference.as_dict(),
                "end_to_end": self._end_to_end.as_dict(),
            },
            "throughput": {
                "messages_per_s": _ratio(self._consumed, duration_s),
                "scored_per_s": _ratio(self._scored, duration_s),
            },
            "batch_sizes": {
                "count": batch_sizes["count"],
                "mean": batch_sizes["mean"],
                "p50": batch_sizes["p50"],
                "max": None if batch_sizes["max"] is None else int(batch_sizes["max"]),
            },
            "risk_histogram": {
                "bin_edges": [round(float(edge), 10) for edge in edges],
                "counts": [int(n) for n in self._histogram],
            },
            "latency_histogram": {
                "bin_edges_ms": list(LATENCY_BIN_EDGES_MS),
                "inference": _latency_counts(self._inference.values()),
                "end_to_end": _latency_counts(self._end_to_end.values()),
                "sampled": self._inference.sampled or self._end_to_end.sampled,
            },
        }
        if drift is not None:
            summary["drift"] = drift_block(_WindowDriftInputs(self), drift)
        if self._churners_explained:
            summary["reasons"] = self._reasons_block()
        return summary

    def _reasons_block(self) -> dict[str, Any]:
        """The most frequent reasons among predicted churners (a churner counts each of its
        up to three reasons once)."""
        n = self._churners_explained
        top = sorted(self._reasons.items(), key=lambda item: (-item[1], item[0]))
        return {
            "predicted_churners": n,
            "top": [
                {"feature": feature, "count": count, "share": count / n}
                for feature, count in top[:TOP_REASON_FEATURES]
            ],
        }

    def _fresh_mask(
        self, topics: NDArray[Any], partitions: NDArray[Any], offsets: NDArray[Any]
    ) -> NDArray[np.bool_]:
        """True for the first row of each idempotency key that is new to this window."""
        topic_codes, topic_names = factorize(topics)
        partitions = partitions.astype(np.int64)
        offsets = offsets.astype(np.int64)
        fresh = np.zeros(offsets.shape[0], dtype=bool)
        # A batch spans a few (topic, partition) pairs; the loop is per pair.
        for topic_code, topic in enumerate(topic_names):
            in_topic = topic_codes == topic_code
            for partition in np.unique(partitions[in_topic]).tolist():
                rows = np.flatnonzero(in_topic & (partitions == partition))
                distinct, first = np.unique(offsets[rows], return_index=True)
                seen = self._seen.get((str(topic), int(partition)))
                if seen is None:
                    seen = self._seen[(str(topic), int(partition))] = SeenOffsets()
                fresh[rows[first[seen.fresh(distinct)]]] = True
        return fresh

    def _top_risk(self, top_k: int) -> list[dict[str, Any]]:
        # Ties broken by customerID so the same window always gives the same report.
        return [
            {
                "customerID": str(customer),
                "churn_probability": _finite_or_none(probability),
                "Contract": _str_or_none(contract),
                "InternetService": _str_or_none(internet),
                "PaymentMethod": _str_or_none(payment),
            }
            for customer, (probability, contract, internet, payment) in self._latest.top(top_k)
        ]


class _WindowDriftInputs:
    """:class:`~churnstream.windows.drift.DriftInputs` over a window's own tallies."""

    def __init__(self, stats: WindowStats) -> None:
        self._stats = stats

    @property
    def rows(self) -> int:
        return self._stats._scored

    def numeric(self, column: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return self._stats._numeric[column].pairs()

    def levels(self, column: str) -> Mapping[str, int]:
        for section, name in GROUP_COLUMNS.items():
            if name == column:
                return {level: t.count for level, t in self._stats._groups[section].items()}
        return {}

    @property
    def predicted_churn_rate(self) -> float | None:
        overall = self._stats._overall
        return _ratio(overall.churn_count, overall.count)


def _latency_counts(values: NDArray[np.float64]) -> list[int]:
    """Counts per bin of LATENCY_BIN_EDGES_MS: [edge[i], edge[i+1]), the last one open."""
    edges = np.asarray(LATENCY_BIN_EDGES_MS, dtype=np.float64)
    counts = np.zeros(len(edges), dtype=np.int64)
    finite = values[np.isfinite(values)]
    if finite.size:
        index = np.searchsorted(edges[1:], np.maximum(finite, 0.0), side="right")
        counts += np.bincount(index, minlength=len(edges))
    return [int(n) for n in counts]


def _non_negative(name: str, n: int) -> int:
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return int(n)


def _ratio(numerator: float, denominator: float) -> float | None:
    if denominator <= 0:
        return None
    return _finite_or_none(numerator / denominator)


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _level_name(value: Any) -> str:
    # A missing level still shows up, under a name that is a valid JSON key.
    return UNKNOWN_LEVEL if is_missing(value) else str(value)


def _str_or_none(value: Any) -> str | None:
    return None if is_missing(value) else str(value)


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
