"""Scored columns as numpy arrays: the few column operations window analytics need.

A scored batch is a mapping of column name to array (``BatchResult.scored``); anything with
``name in batch`` and ``batch[name]`` giving an array-like works (a DataFrame too). numpy
only: the scorer process never imports pandas.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

#: A scored batch: column name -> one value per row.
Columns = Mapping[str, Any]


def is_missing(value: Any) -> bool:
    """None, or a float NaN (what a missing cell holds in an object column)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def column(batch: Columns, name: str) -> NDArray[Any]:
    """``batch[name]`` as a 1-d numpy array (a pandas Series gives its values)."""
    values = batch[name]
    to_numpy = getattr(values, "to_numpy", None)
    return np.asarray(to_numpy() if callable(to_numpy) else values)


def rows(batch: Columns, name: str) -> int:
    """Number of rows, read from the column ``name``."""
    return int(column(batch, name).shape[0])


def as_floats(values: ArrayLike) -> NDArray[np.float64]:
    """A column as float64, with anything that is not a number as NaN."""
    to_numpy = getattr(values, "to_numpy", None)
    if callable(to_numpy):  # a pandas Series, possibly with pd.NA
        try:
            return np.asarray(to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        except (TypeError, ValueError):
            values = np.asarray(to_numpy(), dtype=object)
    array = np.asarray(values)
    if array.dtype.kind in "iufb":
        return array.astype(np.float64, copy=False)
    return np.fromiter((_float_or_nan(v) for v in array.tolist()), np.float64, array.shape[0])


def _float_or_nan(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def has_missing(values: NDArray[Any]) -> bool:
    """Whether any cell is missing (NaN, or None in an object column)."""
    if values.dtype.kind == "f":
        return bool(np.isnan(values).any())
    if values.dtype.kind == "O":
        return any(is_missing(v) for v in values.tolist())
    return False


def factorize(values: NDArray[Any]) -> tuple[NDArray[np.intp], list[Any]]:
    """Codes (first appearance order) and the distinct values; all missing cells share one
    code, whose value is None."""
    lookup: dict[Any, int] = {}
    items = values.tolist()
    codes = np.fromiter(
        (lookup.setdefault(v, len(lookup)) for v in items), dtype=np.intp, count=len(items)
    )
    levels = list(lookup)
    missing = [code for code, level in enumerate(levels) if is_missing(level)]
    if len(missing) <= 1:
        if missing:
            levels[missing[0]] = None
        return codes, levels
    # Several NaN objects (NaN != NaN) are one missing level, as pandas would count them.
    remap = np.arange(len(levels))
    remap[missing] = missing[0]
    kept = np.unique(remap)
    dense = np.searchsorted(kept, remap)
    levels = [None if code == missing[0] else levels[code] for code in kept.tolist()]
    return dense[codes], levels


def counts_by_level(values: NDArray[Any]) -> Mapping[Any, int]:
    """How many rows hold each distinct value (missing cells under None)."""
    codes, levels = factorize(values)
    counts = np.bincount(codes, minlength=len(levels))
    return dict(zip(levels, counts.tolist(), strict=True))
