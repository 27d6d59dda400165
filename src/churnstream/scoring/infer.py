"""The model call: one per batch of features, row by row only if that call fails.

The model is any function from a :class:`~churnstream.model.feature_batch.FeatureBatch` to one
probability per row: :meth:`churnstream.model.scorer.Scorer.predict_features` in production
(the compiled arrays of :mod:`churnstream.model.arrays`, or the pipeline when a model cannot
be compiled), a plain function in tests.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from churnstream.model.feature_batch import FeatureBatch

logger = logging.getLogger(__name__)

Predict = Callable[[FeatureBatch], np.ndarray]
#: Up to this many rows, the scoring core's per-row steps (the checks around the model call,
#: risk bands, prediction bytes) run on Python numbers: numpy's per-call overhead dominates.
SMALL_BATCH_ROWS = 16


class Scores(NamedTuple):
    """A batch's model output, row for row."""

    #: Clipped to [0, 1] as the contract wants (0.0 where the row could not be scored).
    probabilities: np.ndarray
    #: False where the model could not score the row (it raised, or gave NaN or infinity).
    finite: np.ndarray
    #: probability >= threshold.
    labels_yes: np.ndarray
    #: How long the model took for the whole batch.
    inference_ms: float


def score_features(features: FeatureBatch, predict: Predict, *, threshold: float) -> Scores:
    """Probabilities and labels for every row of ``features``, from one model call."""
    n = len(features)
    inference_ms = 0.0
    raw = np.empty(0)
    if n:
        started = time.perf_counter()
        raw = _predict(lambda rows: predict(features if rows is None else features.take(rows)), n)
        inference_ms = (time.perf_counter() - started) * 1000
    if n <= SMALL_BATCH_ROWS:
        # The same comparisons on Python floats: numpy's per-call overhead dominates here.
        values = raw.tolist()
        clipped = [_clip_one(p) for p in values]
        return Scores(
            np.array(clipped, dtype=np.float64),
            np.array([math.isfinite(p) for p in values], dtype=bool),
            np.array([p >= threshold for p in clipped], dtype=bool),
            inference_ms,
        )
    finite = np.isfinite(raw)
    probabilities = clip(raw)
    return Scores(probabilities, finite, probabilities >= threshold, inference_ms)


def clip(probabilities: np.ndarray) -> np.ndarray:
    """``min(1.0, max(0.0, p))`` element for element; NaN becomes 0.0."""
    clipped = np.where(probabilities > 0.0, probabilities, 0.0)
    return np.where(clipped < 1.0, clipped, 1.0)


def _clip_one(probability: float) -> float:
    """:func:`clip` of one value."""
    clipped = probability if probability > 0.0 else 0.0
    return clipped if clipped < 1.0 else 1.0


def _all_finite(values: np.ndarray) -> bool:
    if values.shape[0] <= SMALL_BATCH_ROWS:
        return all(map(math.isfinite, values.tolist()))
    return bool(np.isfinite(values).all())


def _predict(call: Callable[[Any], Any], n: int) -> np.ndarray:
    """One model call for the batch; if it fails, row by row (NaN where a row fails)."""
    try:
        probabilities = np.asarray(call(None), dtype=float)
        if probabilities.shape != (n,) or not _all_finite(probabilities):
            raise ValueError(f"model returned {probabilities.shape} / non-finite values")
    except Exception:  # noqa: BLE001 - isolate the rows the model cannot score
        logger.warning("batch inference failed; scoring %d rows one by one", n)
        probabilities = np.full(n, np.nan)
        for i in range(n):
            try:
                one = np.asarray(call(slice(i, i + 1)), dtype=float)
                probabilities[i] = float(one[0]) if np.isfinite(one).all() else np.nan
            except Exception as exc:  # noqa: BLE001
                logger.debug("row %d failed: %s", i, exc)
    return probabilities
