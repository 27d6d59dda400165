"""The compiled model's inputs for a few rows, on Python numbers instead of numpy arrays.

For one row, :meth:`~churnstream.model.arrays.CompiledPipeline.group_codes` and
:meth:`~churnstream.model.arrays.CompiledPipeline.design_matrix` are some twenty numpy calls
on one-element arrays, each costing about a microsecond whatever its size. Here the same
values come from the same IEEE operations on Python ints and floats (``log1p`` read from a
table numpy fills at import), so the design matrix is byte-identical to numpy's
(``tests/unit/test_lean_model.py`` holds both to that). Whatever does not fit (a code outside
the tables, a tenure outside the contract, a non-finite feature) returns None, and the numpy
path decides the batch as before.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np

from churnstream.model.feature_batch import (
    ADDON_COLUMNS,
    MIN_AVG_CHARGE,
    RAW_CATEGORICAL,
    FeatureBatch,
)
from churnstream.schemas import CATEGORICAL_LEVELS, NUMERIC_BOUNDS

logger = logging.getLogger(__name__)

#: Up to this many rows, the compiled model's inputs are computed on Python numbers.
SMALL_NUMERIC_ROWS = 8
CONTRACT = RAW_CATEGORICAL.index("Contract")
INTERNET = RAW_CATEGORICAL.index("InternetService")
N_INTERNET = len(CATEGORICAL_LEVELS["InternetService"])
#: The engineered features' inputs, shared with the numpy path (``model.arrays``).
YES = CATEGORICAL_LEVELS[ADDON_COLUMNS[0]].index("Yes")
PAYMENT = RAW_CATEGORICAL.index("PaymentMethod")
#: Per PaymentMethod code, 1.0 for an automatic payment.
AUTO_PAY_BY_CODE: list[float] = [
    1.0 if "automatic" in method else 0.0 for method in CATEGORICAL_LEVELS["PaymentMethod"]
]
#: The add-on services' columns of FeatureBatch.codes.
ADDON_POSITIONS: list[int] = [RAW_CATEGORICAL.index(name) for name in ADDON_COLUMNS]
#: log1p of every valid tenure, each computed by numpy on its own as a one-row batch is.
_LOG1P_TENURE: list[float] = [
    float(np.log1p(np.array([float(t)]))[0])
    for t in range(int(NUMERIC_BOUNDS["tenure"][1] or 0) + 1)
]


#: The numeric features a row can have, in the order :func:`_rows` computes them.
_ROW_FIELDS = (
    "log_tenure", "avg_monthly_charge", "charge_ratio", "n_addons", "auto_pay",
    "SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges",
)  # fmt: skip


class Tables(NamedTuple):
    """A compiled pipeline's design-matrix parameters as Python lists."""

    #: Per one-hot group, the design column of each level code (-1: the encoder lacks it).
    columns: list[list[int]]
    #: Per one-hot group, its column of FeatureBatch.codes (see ``engineered``).
    sources: list[int]
    #: The position of the contract_internet group, computed from two code columns.
    engineered: int | None
    n_onehot: int
    #: Per numeric feature of the design matrix, its position in ``_ROW_FIELDS``.
    picks: list[int]
    mean: list[float]
    scale: list[float]


def tables(
    column_table: np.ndarray,
    group_sources: tuple[np.ndarray, int | None],
    n_onehot: int,
    numeric: list[str],
    mean: np.ndarray | None,
    scale: np.ndarray | None,
) -> Tables | None:
    """The parameters :func:`inputs` reads; None where they do not have the design matrix's
    shape (a zero scale, a column past the one-hot block, an unknown numeric feature):
    numpy then scores every batch.

    A missing mean is 0.0 and a missing scale 1.0: subtracting one and dividing by the
    other leave every float as it is, as skipping them does.
    """
    k = len(numeric)
    means = [0.0] * k if mean is None else np.asarray(mean, np.float64).tolist()
    scales = [1.0] * k if scale is None else np.asarray(scale, np.float64).tolist()
    columns: list[list[int]] = np.asarray(column_table).tolist()
    if len(means) != k or len(scales) != k or 0.0 in scales:
        return None
    if any(column >= n_onehot for row in columns for column in row):
        return None
    if not set(numeric) <= set(_ROW_FIELDS):
        return None
    sources, engineered = group_sources
    picks = [_ROW_FIELDS.index(name) for name in numeric]
    return Tables(columns, sources.tolist(), engineered, n_onehot, picks, means, scales)


def inputs(batch: FeatureBatch, params: Tables) -> tuple[np.ndarray, np.ndarray] | None:
    """``(group_codes, design_matrix)`` of a few rows, as the compiled pipeline's numpy path
    computes them; None when a row does not fit (see the module's docstring)."""
    numeric = _rows(batch)
    if numeric is None:
        return None
    engineered = params.engineered
    scaling = list(zip(params.picks, params.mean, params.scale, strict=True))
    all_groups, rows = [], []
    for codes, values in zip(batch.codes.tolist(), numeric, strict=True):
        groups = [codes[source] for source in params.sources]
        if engineered is not None:
            groups[engineered] = codes[CONTRACT] * N_INTERNET + codes[INTERNET]
        row = [0.0] * params.n_onehot
        for columns, code in zip(params.columns, groups, strict=True):
            if not 0 <= code < len(columns):
                return None
            column = columns[code]
            if column >= 0:
                row[column] = 1.0
        # StandardScaler.transform: subtract, then divide, one rounding each as numpy does.
        scaled = [(values[pick] - m) / s for pick, m, s in scaling]
        if not all(map(math.isfinite, scaled)):
            return None
        all_groups.append(groups)
        rows.append(row + scaled)
    return np.array(all_groups, dtype=np.intp), np.array(rows, dtype=np.float64)


def numeric_rows(batch: FeatureBatch, names: list[str]) -> list[list[float]] | None:
    """The numeric features ``names`` of a few rows, unscaled, on Python floats: the same
    IEEE operations as :func:`churnstream.model.feature_batch.numeric_engineered` and the
    compiled pipeline's numpy path. None when a tenure is outside the log1p table."""
    rows = _rows(batch)
    if rows is None:
        return None
    picks = [_ROW_FIELDS.index(name) for name in names]
    return [[row[pick] for pick in picks] for row in rows]


def _rows(batch: FeatureBatch) -> list[tuple[float, ...]] | None:
    """Every row's numeric features, in ``_ROW_FIELDS`` order; None when a tenure is
    outside the log1p table."""
    rows: list[tuple[float, ...]] = []
    for codes, senior, tenure, monthly, total in zip(
        batch.codes.tolist(),
        batch.senior_citizen.tolist(),
        batch.tenure.tolist(),
        batch.monthly_charges.tolist(),
        batch.total_charges.tolist(),
        strict=True,
    ):
        if not 0 <= tenure < len(_LOG1P_TENURE):
            return None
        tenure_f, monthly_f, total_f = float(tenure), float(monthly), float(total)
        # numeric_engineered's formulas, operation for operation.
        avg = total_f / max(tenure_f, 1.0) if tenure_f > 0 else monthly_f
        rows.append(
            (
                _LOG1P_TENURE[tenure],
                avg,
                monthly_f / (avg if avg > MIN_AVG_CHARGE else MIN_AVG_CHARGE),
                float(sum(codes[i] == YES for i in ADDON_POSITIONS)),
                AUTO_PAY_BY_CODE[codes[PAYMENT]],
                float(senior),
                tenure_f,
                monthly_f,
                total_f,
            )
        )
    return rows
