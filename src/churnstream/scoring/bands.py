"""Risk bands: a prediction's probability as ``high``, ``medium`` or ``low`` (a header)."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

#: (lowest probability, band), highest first: a probability gets the first band it reaches.
RISK_BANDS = ((0.7, "high"), (0.4, "medium"), (0.0, "low"))
#: The header value of each band, in the order of RISK_BANDS.
BAND_VALUES = tuple(name.encode() for _, name in RISK_BANDS)


def risk_band(probability: float) -> str:
    for floor, name in RISK_BANDS:
        if probability >= floor:
            return name
    return "low"


def band_indices(probabilities: np.ndarray) -> list[int]:
    """Per row, the index into RISK_BANDS that :func:`risk_band` would pick."""
    index = np.full(len(probabilities), len(RISK_BANDS) - 1, dtype=np.intp)
    for position in range(len(RISK_BANDS) - 1, -1, -1):
        index[probabilities >= RISK_BANDS[position][0]] = position
    indices: list[int] = index.tolist()
    return indices
