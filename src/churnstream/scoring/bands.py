"""Risk bands: a prediction's probability as ``high``, ``medium`` or ``low`` (a header)."""

from __future__ import annotations

import logging

import numpy as np

from churnstream.scoring.infer import SMALL_BATCH_ROWS

logger = logging.getLogger(__name__)

#: (lowest probability, band), highest first: a probability gets the first band it reaches.
RISK_BANDS = ((0.7, "high"), (0.4, "medium"), (0.0, "low"))
#: The header value of each band, in the order of RISK_BANDS.
BAND_VALUES = tuple(name.encode() for _, name in RISK_BANDS)
_UPPER_FLOORS = np.array([floor for floor, _ in RISK_BANDS[:-1]])
_UPPER_FLOOR_LIST: list[float] = _UPPER_FLOORS.tolist()
_N_UPPER = len(_UPPER_FLOOR_LIST)


def risk_band(probability: float) -> str:
    for floor, name in RISK_BANDS:
        if probability >= floor:
            return name
    return "low"


def band_indices(probabilities: np.ndarray) -> list[int]:
    """Per row, the index into RISK_BANDS that :func:`risk_band` would pick.

    The floors descend, so a probability reaching one floor reaches every lower one: the
    band is the number of floors above the lowest that it does not reach.
    """
    if len(probabilities) <= SMALL_BATCH_ROWS:  # numpy's per-call overhead dominates
        return [_N_UPPER - sum(p >= f for f in _UPPER_FLOOR_LIST) for p in probabilities.tolist()]
    reached = (probabilities[:, None] >= _UPPER_FLOORS).sum(axis=1)
    indices: list[int] = (len(_UPPER_FLOORS) - reached).tolist()
    return indices
