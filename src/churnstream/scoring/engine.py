"""Which fast check runs: the native extension (Rust, ``churnstream_native``) or Python.

The same choice picks how the compiled model's trees are evaluated
(:mod:`churnstream.model.compiled_native`): natively with the native check, with numpy with
the Python one; and who writes the prediction bodies (:func:`native_bodies`).

``make setup`` builds the extension from ``native/``; where that build fails, churnstream
runs on the Python check (:func:`churnstream.scoring.validate.check_batch`), which stays the
fallback and the oracle of the differential tests. Both keep one contract: a row they accept
is a valid event, with the same feature values; every other row goes to the reference
decoder. The native check is stricter (no escapes, exponents or minus signs in a body it
accepts), so what it leaves, the reference decides, and the batch's result is the same.

The setting ``scoring.engine`` (``CHURNSTREAM_SCORING__ENGINE``) picks one: ``auto`` (native
when importable, the default), ``native`` or ``python``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from churnstream.exceptions import ChurnstreamError, ConfigError
from churnstream.model import compiled_native
from churnstream.model.feature_batch import RAW_CATEGORICAL, FeatureBatch
from churnstream.schemas import (
    CATEGORICAL_LEVELS,
    ID_COLUMN,
    NUMERIC_BOUNDS,
    TARGET_COLUMN,
    TIMESTAMP_COLUMN,
    YES_NO,
)
from churnstream.scoring import validate
from churnstream.scoring.decode import MAX_BODY_BYTES
from churnstream.scoring.validate import MAX_FAST_NUMBER_CHARS, REQUIRED_FIELDS, FastRows

logger = logging.getLogger(__name__)

AUTO, NATIVE, PYTHON = "auto", "native", "python"
ENGINES: tuple[str, ...] = (AUTO, NATIVE, PYTHON)

CheckBatch = Callable[[Sequence[bytes | None], Sequence[bytes | None]], tuple[FastRows, list[int]]]

try:
    import churnstream_native as _native

    NATIVE_ERROR: str | None = None
except ImportError as exc:  # not built on this machine: the Python check serves
    _native = None
    NATIVE_ERROR = str(exc)

_INTEGERS = ("SeniorCitizen", "tenure")
_NUMBERS = ("MonthlyCharges", "TotalCharges")


def _new_checker() -> Any:
    """The native check, configured with the contract's tables (they live in schemas.py)."""
    assert _native is not None  # noqa: S101 - callers check first
    checker = _native.Checker(
        ID_COLUMN,
        TIMESTAMP_COLUMN,
        TARGET_COLUMN,
        list(YES_NO),
        [(name, list(CATEGORICAL_LEVELS[name])) for name in RAW_CATEGORICAL],
        [
            (name, int(NUMERIC_BOUNDS[name][0]), int(NUMERIC_BOUNDS[name][1] or 0))
            for name in _INTEGERS
        ],
        [
            (name, float(NUMERIC_BOUNDS[name][0]), NUMERIC_BOUNDS[name][1], name == "TotalCharges")
            for name in _NUMBERS
        ],
        MAX_BODY_BYTES,
        MAX_FAST_NUMBER_CHARS,
    )
    covered = {ID_COLUMN, TIMESTAMP_COLUMN, *RAW_CATEGORICAL, *_INTEGERS, *_NUMBERS}
    if covered != set(REQUIRED_FIELDS):
        raise ChurnstreamError("the native check does not cover the contract's fields")
    return checker


_CHECKER = _new_checker() if _native is not None else None


def native_check_batch(
    values: Sequence[bytes | None], keys: Sequence[bytes | None]
) -> tuple[FastRows, list[int]]:
    """:func:`churnstream.scoring.validate.check_batch`, in Rust (same contract, stricter)."""
    if _CHECKER is None:
        raise ChurnstreamError(f"the native scoring core is not installed ({NATIVE_ERROR})")
    values = values if type(values) is list else list(values)
    keys = keys if type(keys) is list else list(keys)
    positions, ids, stamps, moments, codes, integers, numbers, slow = _CHECKER.check(values, keys)
    n = len(positions)
    if not n:
        return validate.empty_rows(), slow
    ints = np.frombuffer(integers, dtype="<i8").reshape(2, n)
    floats = np.frombuffer(numbers, dtype="<f8").reshape(2, n)
    features = FeatureBatch(
        codes=np.frombuffer(codes, dtype=np.int8).reshape(n, len(RAW_CATEGORICAL)),
        senior_citizen=ints[0],
        tenure=ints[1],
        monthly_charges=floats[0],
        total_charges=floats[1],
    )
    event_dt: list[datetime] = moments
    return FastRows(positions, ids, stamps, event_dt, features), slow


_active: CheckBatch = native_check_batch if _CHECKER is not None else validate.check_batch
_active_name = NATIVE if _CHECKER is not None else PYTHON
_fallback_logged = False


def select_engine(engine: str) -> str:
    """Use ``engine`` (auto, native or python) for :func:`check_batch`; returns the one in use.

    ``native`` where the extension is not installed raises ConfigError (one line);
    ``auto`` then falls back to Python and logs it once.
    """
    global _active, _active_name, _fallback_logged
    if engine not in ENGINES:
        raise ChurnstreamError(
            f"scoring engine must be one of {', '.join(ENGINES)}, not {engine!r}"
        )
    if engine == NATIVE and _CHECKER is None:
        raise ConfigError(
            f"scoring.engine is native, but the native scoring core is not installed "
            f"({NATIVE_ERROR}); run `make setup`, or set scoring.engine to auto or python"
        )
    chosen = PYTHON if engine == PYTHON or _CHECKER is None else NATIVE
    if chosen == PYTHON and engine == AUTO and not _fallback_logged:
        logger.warning("native scoring core not installed (%s); using Python", NATIVE_ERROR)
        _fallback_logged = True
    _active = native_check_batch if chosen == NATIVE else validate.check_batch
    _active_name = chosen
    # The compiled model's trees follow the check: all native, or all Python (the oracle).
    compiled_native.use_native(chosen == NATIVE)
    return chosen


def active_engine() -> str:
    """``native`` or ``python``: which check :func:`check_batch` runs."""
    return _active_name


def check_batch(
    values: Sequence[bytes | None], keys: Sequence[bytes | None]
) -> tuple[FastRows, list[int]]:
    """The selected fast check (see :func:`churnstream.scoring.validate.check_batch`)."""
    return _active(values, keys)


def native_bodies() -> Callable[..., list[bytes] | None] | None:
    """The native writer of prediction bodies when the native engine is in use, else None.

    :func:`churnstream.scoring.encode.encode_predictions` calls it; the Python writer stays
    the fallback and the oracle, as the Python check does for the native one.
    """
    if _active_name != NATIVE or _native is None:
        return None
    # An extension built before the writer existed has none: Python writes the bodies.
    writer: Callable[..., list[bytes] | None] | None = getattr(_native, "prediction_bodies", None)
    return writer
