"""Drift of the scored stream against the model's training distribution. Pure: no I/O.

The model's ``metadata.json`` holds a ``profile`` of its training rows
(:func:`churnstream.model.features.distribution_profile`): for tenure and MonthlyCharges
the quantile bin edges and each bin's share, for Contract, InternetService and
PaymentMethod each level's share. A window of scored rows is binned the same way and
compared with the Population Stability Index,

    PSI = sum over bins of (observed - expected) * ln(observed / expected),

with shares floored at :data:`PSI_EPSILON` so that an empty bin is finite. Rules of thumb:
below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one.

PSI of a small sample is inflated by noise alone (about ``(bins - 1) / n`` for ``n`` rows),
so a window with fewer than ``min_samples`` rows is reported but never flagged.

The predicted churn rate is compared with the rate the model predicted on its held-out
test set at the same threshold (``metrics.test.confusion_matrix``: (fp + tp) / rows), not
with the true churn rate: the threshold maximises F1, so the model flags more customers
than actually churn (about 0.32 against 0.27), and comparing with the true rate would
report drift on the training data itself. Older metadata without a confusion matrix falls
back to the training churn rate (``data.churn_rate``), and the block says which it used.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from churnstream.model.feature_batch import PROFILE_CATEGORICAL, PROFILE_NUMERIC
from churnstream.settings.sections import ObservabilitySettings
from churnstream.windows import columns as cols
from churnstream.windows.columns import Columns, as_floats, counts_by_level

logger = logging.getLogger(__name__)

PSI_EPSILON = 1e-4
DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_MIN_SAMPLES = 200
DEFAULT_CHURN_RATE_TOLERANCE = 0.10
# Raw numeric values buffered before merging into distinct values: tenure has 73 values and
# MonthlyCharges a few thousand, so memory stays small however long the window is.
_COMPACT_AT = 50_000
#: Distinct values kept per column; past it values are rounded (cents, then coarser), so a
#: column of arbitrary floats cannot grow the window. PSI bins move by at most the rounding.
MAX_DISTINCT_VALUES = 20_000

BASIS_HELD_OUT = "predicted churn rate on the held-out test set at the model's threshold"
BASIS_TRAINING = "churn rate of the training data"


def psi(expected: ArrayLike, observed: ArrayLike, *, epsilon: float = PSI_EPSILON) -> float:
    """Population Stability Index of ``observed`` shares against ``expected`` shares.

    Both are sequences of proportions over the same bins (each summing to about 1). Shares
    are floored at ``epsilon`` so that an empty bin adds a large but finite term.
    """
    e = np.asarray(expected, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    if e.shape != o.shape:
        raise ValueError(f"expected {e.shape} and observed {o.shape} shares differ in shape")
    if e.size == 0:
        return 0.0
    e = np.maximum(e, epsilon)
    o = np.maximum(o, epsilon)
    return float(np.sum((o - e) * np.log(o / e)))


def weighted_bin_proportions(
    values: ArrayLike, counts: ArrayLike, edges: Sequence[float]
) -> list[float]:
    """Share of the (value, count) pairs in each bin, with the training profile's rule.

    Same rule as :func:`churnstream.model.features.bin_proportions`: bins are
    ``[edges[i], edges[i+1])``, the last one closed; values below the first edge count in
    the first bin and values above the last edge in the last bin.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(counts, dtype=np.float64)
    n_bins = len(edges) - 1
    total = float(w.sum())
    if n_bins < 1:
        raise ValueError("a profile needs at least two edges")
    if total <= 0:
        return [0.0] * n_bins
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    index = np.searchsorted(inner, v, side="right")
    binned = np.bincount(index, weights=w, minlength=n_bins)
    return [float(c) for c in binned / total]


def level_shares(counts: Mapping[str, int], levels: Sequence[str]) -> list[float]:
    """Share of each known level among rows with a known level (unknown levels ignored)."""
    known = [int(counts.get(level, 0)) for level in levels]
    total = sum(known)
    return [c / total if total else 0.0 for c in known]


class ValueCounts:
    """Exact multiset of floats: distinct values with their counts.

    Raw values are buffered and merged (``np.unique``) once :data:`_COMPACT_AT` are
    pending, so a batch costs a copy, and memory stays bounded by the number of distinct
    values (at most :data:`MAX_DISTINCT_VALUES`, then rounded) plus the buffer.
    """

    def __init__(self) -> None:
        self._values: NDArray[np.float64] = np.empty(0)
        self._counts: NDArray[np.float64] = np.empty(0)
        self._buffer: list[NDArray[np.float64]] = []
        self._pending = 0

    def add(self, values: NDArray[np.float64]) -> None:
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        self._buffer.append(values)
        self._pending += values.size
        if self._pending >= _COMPACT_AT:
            self._compact()

    def _compact(self) -> None:
        if not self._buffer:
            return
        values = np.concatenate([self._values, *self._buffer])
        weights = np.concatenate([self._counts, *(np.ones(b.size) for b in self._buffer)])
        distinct, inverse = np.unique(values, return_inverse=True)
        decimals = 2
        while distinct.size > MAX_DISTINCT_VALUES and decimals >= -6:
            distinct, inverse = np.unique(np.round(values, decimals), return_inverse=True)
            decimals -= 1
        self._values = distinct.astype(np.float64)
        self._counts = np.bincount(inverse, weights=weights).astype(np.float64)
        self._buffer = []
        self._pending = 0

    @property
    def stored(self) -> int:
        """Values held: distinct values and their counts, plus the buffer."""
        return 2 * int(self._values.size) + self._pending

    def pairs(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Distinct values (sorted) and their counts."""
        self._compact()
        return self._values, self._counts


class DriftInputs(Protocol):
    """What :func:`drift_block` reads of a window (a :class:`FeatureAccumulator`, or an
    adapter over :class:`churnstream.windows.stats.WindowStats`' own tallies)."""

    @property
    def rows(self) -> int: ...

    def numeric(self, column: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...

    def levels(self, column: str) -> Mapping[str, int]: ...

    @property
    def predicted_churn_rate(self) -> float | None: ...


class FeatureAccumulator:
    """One window's drift inputs: the profiled features of every scored row, and its labels.

    Feed it the scored frames (``BatchResult.scored``, or the de-duplicated rows of
    :class:`churnstream.windows.stats.WindowStats`); columns it does not find are skipped.
    Memory is bounded by the number of distinct values, not by the number of rows.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.predicted_yes = 0
        self.predicted = 0
        self._numeric = {column: ValueCounts() for column in PROFILE_NUMERIC}
        self._levels: dict[str, Counter[str]] = {
            column: Counter() for column in PROFILE_CATEGORICAL
        }

    def add(self, batch: Columns) -> None:
        """Fold in one batch of scored rows (column -> values, e.g. ``BatchResult.scored``)."""
        names = list(batch)
        n = cols.rows(batch, names[0]) if names else 0
        if n == 0:
            return
        self.rows += n
        for name, acc in self._numeric.items():
            if name in batch:
                acc.add(as_floats(batch[name]))
        for name, counter in self._levels.items():
            if name in batch:
                for level, count in counts_by_level(cols.column(batch, name)).items():
                    if level is not None:  # a missing level is not a level
                        counter[str(level)] += int(count)
        if "prediction" in batch:
            labels = counts_by_level(cols.column(batch, "prediction"))
            self.predicted += sum(c for label, c in labels.items() if label is not None)
            self.predicted_yes += int(labels.get("Yes", 0))

    def numeric(self, column: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Distinct values of ``column`` and how often each was seen."""
        return self._numeric[column].pairs()

    def levels(self, column: str) -> Mapping[str, int]:
        """Count of each level of ``column``."""
        return self._levels[column]

    @property
    def predicted_churn_rate(self) -> float | None:
        return self.predicted_yes / self.predicted if self.predicted else None


@dataclass(frozen=True)
class DriftReference:
    """The training distribution to compare with, and when to call a difference drift."""

    model_version: str | None
    #: column -> (bin edges, expected share per bin)
    numeric: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]]
    #: column -> level -> expected share
    categorical: Mapping[str, Mapping[str, float]]
    expected_churn_rate: float | None
    churn_rate_basis: str | None
    psi_threshold: float = DEFAULT_PSI_THRESHOLD
    min_samples: int = DEFAULT_MIN_SAMPLES
    churn_rate_tolerance: float = DEFAULT_CHURN_RATE_TOLERANCE

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, Any],
        *,
        psi_threshold: float = DEFAULT_PSI_THRESHOLD,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        churn_rate_tolerance: float = DEFAULT_CHURN_RATE_TOLERANCE,
    ) -> DriftReference | None:
        """Build from a model's ``metadata.json``; None (and a warning) without a profile."""
        profile = metadata.get("profile")
        version = metadata.get("version")
        if not isinstance(profile, Mapping):
            logger.warning("model %s has no training profile: drift is not checked", version)
            return None
        numeric: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
        for column, spec in (profile.get("numeric") or {}).items():
            edges = tuple(float(e) for e in spec["edges"])
            shares = tuple(float(p) for p in spec["proportions"])
            if len(edges) != len(shares) + 1:
                logger.warning("profile of %s is malformed; not checked for drift", column)
                continue
            numeric[str(column)] = (edges, shares)
        categorical = {
            str(column): {str(level): float(share) for level, share in shares.items()}
            for column, shares in (profile.get("categorical") or {}).items()
        }
        expected, basis = _expected_churn_rate(metadata)
        return cls(
            model_version=None if version is None else str(version),
            numeric=numeric,
            categorical=categorical,
            expected_churn_rate=expected,
            churn_rate_basis=basis,
            psi_threshold=psi_threshold,
            min_samples=min_samples,
            churn_rate_tolerance=churn_rate_tolerance,
        )


def drift_reference(
    metadata: Mapping[str, Any] | None, settings: ObservabilitySettings
) -> DriftReference | None:
    """The model's training profile with the configured thresholds (None without one)."""
    if metadata is None:
        return None
    return DriftReference.from_metadata(
        metadata,
        psi_threshold=settings.drift_psi_threshold,
        min_samples=settings.drift_min_samples,
        churn_rate_tolerance=settings.drift_churn_rate_tolerance,
    )


def _expected_churn_rate(metadata: Mapping[str, Any]) -> tuple[float | None, str | None]:
    try:
        (tn, fp), (fn, tp) = metadata["metrics"]["test"]["confusion_matrix"]
        rows = tn + fp + fn + tp
        if rows > 0:
            return (fp + tp) / rows, BASIS_HELD_OUT
    except (KeyError, TypeError, ValueError):
        pass
    rate = (metadata.get("data") or {}).get("churn_rate")
    if isinstance(rate, int | float) and math.isfinite(rate):
        return float(rate), BASIS_TRAINING
    return None, None


def drift_block(
    accumulator: DriftInputs,
    reference: DriftReference | Mapping[str, Any],
    *,
    predicted_churn_rate: float | None = None,
) -> dict[str, Any]:
    """The ``drift`` section of a window summary (JSON-able, no NaN).

    ``reference`` is a :class:`DriftReference` or a model's metadata dict (default
    thresholds). ``predicted_churn_rate`` defaults to the accumulator's own labels.
    """
    if not isinstance(reference, DriftReference):
        built = DriftReference.from_metadata(reference)
        if built is None:
            return {"available": False, "reason": "the model metadata has no training profile"}
        reference = built
    samples = accumulator.rows
    evaluated = samples >= reference.min_samples
    features: dict[str, Any] = {}
    for column, (edges, expected) in reference.numeric.items():
        if column not in PROFILE_NUMERIC:
            continue
        values, counts = accumulator.numeric(column)
        observed = weighted_bin_proportions(values, counts, edges)
        features[column] = _feature(
            "numeric",
            [_bin_label(edges, i) for i in range(len(expected))],
            list(expected),
            observed,
            int(counts.sum()),
            reference,
            evaluated,
        )
    for column, shares in reference.categorical.items():
        if column not in PROFILE_CATEGORICAL:
            continue
        levels = list(shares)
        counts_by_level = accumulator.levels(column)
        features[column] = _feature(
            "categorical",
            levels,
            [shares[level] for level in levels],
            level_shares(counts_by_level, levels),
            sum(int(counts_by_level.get(level, 0)) for level in levels),
            reference,
            evaluated,
        )
    scored = [f["psi"] for f in features.values() if f["psi"] is not None]
    drifted_features = [column for column, f in features.items() if f["drifted"]]

    observed_rate = (
        predicted_churn_rate
        if predicted_churn_rate is not None
        else accumulator.predicted_churn_rate
    )
    expected_rate = reference.expected_churn_rate
    shift = None
    if observed_rate is not None and expected_rate is not None:
        shift = observed_rate - expected_rate
    churn_drifted = bool(
        evaluated and shift is not None and abs(shift) > reference.churn_rate_tolerance
    )
    return {
        "available": True,
        "reference_model_version": reference.model_version,
        "samples": samples,
        "min_samples": reference.min_samples,
        "evaluated": evaluated,
        "psi_threshold": reference.psi_threshold,
        "max_psi": max(scored) if scored else None,
        "drifted_features": drifted_features,
        "features": features,
        "churn_rate": {
            "expected": expected_rate,
            "observed": observed_rate,
            "shift": shift,
            "tolerance": reference.churn_rate_tolerance,
            "basis": reference.churn_rate_basis,
            "drifted": churn_drifted,
        },
        "drifted": bool(drifted_features) or churn_drifted,
    }


def _feature(
    kind: str,
    bins: list[str],
    expected: list[float],
    observed: list[float],
    n: int,
    reference: DriftReference,
    evaluated: bool,
) -> dict[str, Any]:
    value = psi(expected, observed) if n > 0 else None
    return {
        "kind": kind,
        "psi": value,
        "drifted": bool(evaluated and value is not None and value > reference.psi_threshold),
        "samples": n,
        "bins": bins,
        "expected": expected,
        "observed": observed,
    }


def _bin_label(edges: Sequence[float], i: int) -> str:
    right = "]" if i == len(edges) - 2 else ")"
    return f"[{edges[i]:g}, {edges[i + 1]:g}{right}"


def drift_warnings(block: Mapping[str, Any]) -> list[str]:
    """One human line per finding of a drift block (empty when nothing drifted)."""
    if not block.get("available") or not block.get("evaluated"):
        return []
    lines = [
        f"drift: PSI of {column} is {feature['psi']:.3f} (threshold "
        f"{block['psi_threshold']:g}) over {feature['samples']} scored messages"
        for column, feature in block["features"].items()
        if feature["drifted"]
    ]
    churn = block["churn_rate"]
    if churn["drifted"]:
        lines.append(
            f"drift: predicted churn rate {churn['observed']:.3f} vs expected "
            f"{churn['expected']:.3f} (tolerance ±{churn['tolerance']:g})"
        )
    return lines
