"""Reason codes for a batch: each prediction's top features, from the model's contributions.

The explanation itself is the model's (:mod:`churnstream.model.contributions`); this module
only calls it for the predicted rows and keeps a failure from costing any prediction: a batch
whose reasons cannot be computed is published without them, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from churnstream.model.contributions import (
    REASON_FEATURES,
    Contributions,
    TopReasons,
    top_reasons,
)
from churnstream.model.feature_batch import FeatureBatch

logger = logging.getLogger(__name__)

#: Gives each row's contributions, e.g. :meth:`churnstream.model.scorer.Scorer.explain_features`.
Explain = Callable[[FeatureBatch], Contributions]

_FEATURE_NAMES = np.array([*REASON_FEATURES, ""], dtype=object)  # -1 (no reason) -> ""

#: Rows explained per call. The tree paths take (code-holding nodes x rows) int64 indices
#: per call: a 2M-row file in one call needed over 20 GB; in chunks it stays near the
#: (rows x reason features) result. A multiple of 4 keeps BLAS on one kernel for full chunks.
EXPLAIN_CHUNK_ROWS = 16_384


def reasons_of(explain: Explain, features: FeatureBatch) -> TopReasons | None:
    """The top reasons of every row of ``features``, or None (logged) if the model cannot
    explain them."""
    try:
        contributions = _explain_in_chunks(explain, features)
    except Exception as exc:  # noqa: BLE001 - reasons must never cost a prediction
        logger.warning("predictions published without reasons: %s: %s", type(exc).__name__, exc)
        return None
    if contributions.values.shape[0] != len(features):
        logger.warning("predictions published without reasons: the explanation lost rows")
        return None
    return top_reasons(contributions, features)


def _explain_in_chunks(explain: Explain, features: FeatureBatch) -> Contributions:
    rows = len(features)
    if rows <= EXPLAIN_CHUNK_ROWS:
        return explain(features)
    parts = [
        explain(features.take(slice(start, start + EXPLAIN_CHUNK_ROWS)))
        for start in range(0, rows, EXPLAIN_CHUNK_ROWS)
    ]
    return Contributions(
        np.concatenate([part.probabilities for part in parts]),
        parts[0].base,
        np.concatenate([part.values for part in parts]),
    )


def reason_features(reasons: TopReasons) -> np.ndarray:
    """Each row's reason features joined by ``,`` (an object array; ``""`` for none)."""
    names = _FEATURE_NAMES[reasons.features]
    if names.shape[1] == 0:
        return np.full(names.shape[0], "", dtype=object)
    joined = names[:, 0]
    for column in range(1, names.shape[1]):
        nonempty = names[:, column] != ""
        joined = np.where(nonempty, joined + "," + names[:, column], joined)
    return np.asarray(joined, dtype=object)
