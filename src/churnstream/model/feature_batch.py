"""The model's features as numpy arrays: column definitions, engineered formulas, FeatureBatch.

numpy only (no pandas, no scikit-learn), so the scoring core can decode events straight into
a :class:`FeatureBatch` and the compiled model (:mod:`churnstream.model.arrays`) can score it.
The DataFrame side of the same definitions is :mod:`churnstream.model.features`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from churnstream.schemas import CATEGORICAL_LEVELS, INTERNET_ADDON, NUMERIC_BOUNDS

logger = logging.getLogger(__name__)

#: The six internet add-ons (the contract gives them the add-on levels); "Yes" counts as one
#: service each.
ADDON_COLUMNS: tuple[str, ...] = tuple(
    name for name, levels in CATEGORICAL_LEVELS.items() if levels == INTERNET_ADDON
)
RAW_CATEGORICAL: tuple[str, ...] = tuple(CATEGORICAL_LEVELS)
RAW_NUMERIC: tuple[str, ...] = tuple(NUMERIC_BOUNDS)
#: Engineered numeric columns (see :func:`churnstream.model.features.add_features`).
ENGINEERED_NUMERIC: tuple[str, ...] = (
    "log_tenure",
    "avg_monthly_charge",
    "charge_ratio",
    "n_addons",
    "auto_pay",
)
#: Engineered categorical columns (see :func:`churnstream.model.features.add_features`).
ENGINEERED_CATEGORICAL: tuple[str, ...] = ("contract_internet",)
MODEL_CATEGORICAL: tuple[str, ...] = RAW_CATEGORICAL + ENGINEERED_CATEGORICAL
MODEL_NUMERIC: tuple[str, ...] = RAW_NUMERIC + ENGINEERED_NUMERIC
#: Column order of :func:`churnstream.model.features.feature_matrix`'s output.
MODEL_COLUMNS: tuple[str, ...] = MODEL_CATEGORICAL + MODEL_NUMERIC

#: Columns whose training distribution a model's metadata profiles, for drift.
PROFILE_NUMERIC: tuple[str, ...] = ("tenure", "MonthlyCharges")
PROFILE_CATEGORICAL: tuple[str, ...] = ("Contract", "InternetService", "PaymentMethod")
#: Levels of the engineered categorical, so the encoder's categories are fixed up front.
CONTRACT_INTERNET_LEVELS: tuple[str, ...] = tuple(
    f"{contract}|{internet}"
    for contract in CATEGORICAL_LEVELS["Contract"]
    for internet in CATEGORICAL_LEVELS["InternetService"]
)
# Below one currency unit an average charge is noise (and would blow up the ratio).
MIN_AVG_CHARGE = 1.0
#: Each categorical's levels as an object array, to turn level codes back into strings.
LEVEL_ARRAYS: dict[str, np.ndarray] = {
    name: np.array(levels, dtype=object) for name, levels in CATEGORICAL_LEVELS.items()
}
#: Each categorical's level -> its code in :attr:`FeatureBatch.codes`.
LEVEL_CODES: dict[str, dict[str, int]] = {
    name: {level: code for code, level in enumerate(levels)}
    for name, levels in CATEGORICAL_LEVELS.items()
}


def numeric_engineered(
    tenure: np.ndarray, monthly: np.ndarray, total: np.ndarray
) -> dict[str, np.ndarray]:
    """``log_tenure``, ``avg_monthly_charge`` and ``charge_ratio`` as float64 arrays.

    The one definition of these formulas, shared by ``feature_matrix`` (inside the
    pipeline) and the compiled model (:mod:`churnstream.model.arrays`), so that both
    produce bit-identical values.
    """
    tenure_f = tenure.astype(float)
    monthly_f = monthly.astype(float)
    total_f = total.astype(float)
    avg = np.where(tenure_f > 0, total_f / np.maximum(tenure_f, 1.0), monthly_f)
    return {
        "log_tenure": np.log1p(np.maximum(tenure_f, 0.0)),
        "avg_monthly_charge": avg,
        "charge_ratio": monthly_f / np.maximum(avg, MIN_AVG_CHARGE),
    }


@dataclass(frozen=True)
class FeatureBatch:
    """The 19 model features of ``n`` rows, column-wise, as the scoring core decodes them.

    ``codes[:, i]`` is the position of row's value in ``CATEGORICAL_LEVELS[RAW_CATEGORICAL[i]]``
    (so every categorical value is a known level); the numeric columns are typed arrays, with
    ``TotalCharges`` already coerced by the contract's policy (blank is 0.0).
    """

    codes: np.ndarray  # (n, len(RAW_CATEGORICAL)) small ints
    senior_citizen: np.ndarray  # int64
    tenure: np.ndarray  # int64
    monthly_charges: np.ndarray  # float64
    total_charges: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.tenure.shape[0])

    def take(self, rows: np.ndarray | slice) -> FeatureBatch:
        """The rows selected by an index array or a slice."""
        return FeatureBatch(
            codes=self.codes[rows],
            senior_citizen=self.senior_citizen[rows],
            tenure=self.tenure[rows],
            monthly_charges=self.monthly_charges[rows],
            total_charges=self.total_charges[rows],
        )

    def levels(self, name: str) -> np.ndarray:
        """The categorical column ``name`` as its level strings (an object array)."""
        return np.asarray(LEVEL_ARRAYS[name][self.codes[:, RAW_CATEGORICAL.index(name)]])

    @classmethod
    def concat(cls, parts: Sequence[FeatureBatch], order: np.ndarray) -> FeatureBatch:
        """Stack batches, then reorder rows by ``order`` (positions into the stacked rows)."""
        return cls(
            codes=np.concatenate([p.codes for p in parts])[order],
            senior_citizen=np.concatenate([p.senior_citizen for p in parts])[order],
            tenure=np.concatenate([p.tenure for p in parts])[order],
            monthly_charges=np.concatenate([p.monthly_charges for p in parts])[order],
            total_charges=np.concatenate([p.total_charges for p in parts])[order],
        )
