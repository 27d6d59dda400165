"""The scorer's fast path: decode, check and encode a whole micro-batch with little Python.

The reference for what is a valid event is the pydantic model
:class:`churnstream.schemas.CustomerEvent`; building one per message costs about 17 us.
:func:`check_batch` instead decodes each body once with orjson and checks the batch column by
column. Its check is deliberately *stricter* than the contract where matching pydantic
exactly would be intricate (non-ASCII bodies, string forms of ``TotalCharges`` other than
plain digits or blanks, timestamps not in the plain ``YYYY-MM-DDTHH:MM:SS[.f]Z`` form): a row
it accepts is always valid, and every row it does not accept goes back to the reference
(``decode_event``), which accepts it or rejects it with the exact same error as before. So the
fast path accepts and rejects exactly what the reference does (``tests/unit/test_fastpath.py``
checks this over the bad-input corpus and fuzzed variants).

:func:`encode_predictions` writes the prediction bodies from a template: the fields that vary
per row are customerID, probability, label and event_ts, all of which the fast check has
limited to characters JSON needs no escape for; the probability text is orjson's own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from churnstream.model.feature_batch import RAW_CATEGORICAL, FeatureBatch
from churnstream.schemas import (
    CATEGORICAL_LEVELS,
    FEATURE_COLUMNS,
    ID_COLUMN,
    TARGET_COLUMN,
    TIMESTAMP_COLUMN,
    CustomerEvent,
    coerce_total_charges,
)

logger = logging.getLogger(__name__)

#: Same limit as the reference decoder (transform.MAX_BODY_BYTES); larger bodies go there.
MAX_FAST_BODY_BYTES = 64 * 1024
#: A numeric ``TotalCharges`` string longer than this is left to the reference.
MAX_FAST_NUMBER_CHARS = 32

#: The fields every event has, in the order the fast check reads them.
REQUIRED_FIELDS: tuple[str, ...] = (ID_COLUMN, *FEATURE_COLUMNS, TIMESTAMP_COLUMN)
_N_REQUIRED = len(REQUIRED_FIELDS)
_GET_REQUIRED = itemgetter(*REQUIRED_FIELDS)
_POSITION = {name: i for i, name in enumerate(REQUIRED_FIELDS)}
_CHURN_VALUES = ("Yes", "No")
_MISSING = object()
#: Required fields whose valid values are JSON strings (all but the three numeric ones and
#: TotalCharges, which may be either).
_N_STRING_FIELDS = _N_REQUIRED - 4

# Strict ASCII subsets of the contract's patterns (schemas.py): whatever matches these also
# matches the contract's (Python or Rust) regular expressions.
_CUSTOMER_ID = re.compile(r"[0-9]{4}-[A-Z]{5}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z?")
_TIMESTAMPS = re.compile(f"(?:{_TIMESTAMP.pattern}\n)*{_TIMESTAMP.pattern}")
_NUMERIC_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_BLANK_CHARS = frozenset(" \t\n\r\f\v")

_LEVEL_CODES: dict[str, dict[str, int]] = {
    name: {level: code for code, level in enumerate(levels)}
    for name, levels in CATEGORICAL_LEVELS.items()
}


@dataclass
class FastRows:
    """The events the fast check accepted, column-wise, with their positions in the batch."""

    positions: list[int]
    customer_ids: list[str]
    event_ts: list[str]
    #: event_ts parsed, as naive datetimes in UTC.
    event_dt: list[datetime]
    features: FeatureBatch

    def __len__(self) -> int:
        return len(self.positions)


def check_batch(
    values: Sequence[bytes | None], keys: Sequence[bytes | None]
) -> tuple[FastRows, list[int]]:
    """Split a batch into rows that are certainly valid (decoded) and rows for the reference.

    Returns the accepted rows and the positions (ascending) that need ``decode_event``.
    """
    rows: list[tuple[Any, ...]] = []
    positions: list[int] = []
    slow: list[int] = []
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    for position, value in enumerate(values):
        if not value or len(value) > MAX_FAST_BODY_BYTES or not value.isascii():
            slow.append(position)
            continue
        try:
            data = loads(value)
        except decode_error:
            slow.append(position)
            continue
        if type(data) is not dict:
            slow.append(position)
            continue
        try:
            row = _GET_REQUIRED(data)
        except KeyError:
            slow.append(position)
            continue
        if len(data) != _N_REQUIRED:
            # Exactly one more field is allowed: Churn, as "Yes", "No" or null.
            churn = data.get(TARGET_COLUMN, _MISSING)
            if len(data) != _N_REQUIRED + 1 or not (
                churn is None or (type(churn) is str and churn in _CHURN_VALUES)
            ):
                slow.append(position)
                continue
        # orjson keeps the last of duplicate keys silently. A valid record has no quote inside
        # a string, so its quote count is fixed by its keys and string values; any other
        # count (a duplicate key, an escaped quote) goes to the reference, which says why.
        strings = _N_STRING_FIELDS + (type(data["TotalCharges"]) is str)
        strings += type(data.get(TARGET_COLUMN)) is str
        if value.count(b'"') != 2 * (len(data) + strings):
            slow.append(position)
            continue
        rows.append(row)
        positions.append(position)
    if not rows:
        return _empty_rows(), slow

    columns = list(zip(*rows, strict=True))
    n = len(rows)
    ok = np.ones(n, dtype=bool)
    codes = np.empty((n, len(RAW_CATEGORICAL)), dtype=np.int8)
    for i, name in enumerate(RAW_CATEGORICAL):
        codes[:, i] = _level_codes(columns[_POSITION[name]], _LEVEL_CODES[name], n)
    ok &= (codes >= 0).all(axis=1)
    senior, senior_ok = _int_column(columns[_POSITION["SeniorCitizen"]], 0, 1, n)
    tenure, tenure_ok = _int_column(columns[_POSITION["tenure"]], 0, 100, n)
    monthly, monthly_ok = _number_column(columns[_POSITION["MonthlyCharges"]], n, upper=200.0)
    total, total_ok = _total_charges_column(columns[_POSITION["TotalCharges"]], n)
    ok &= senior_ok & tenure_ok & monthly_ok & total_ok
    customer_ids = columns[_POSITION[ID_COLUMN]]
    ok &= _matches(customer_ids, _CUSTOMER_ID, n)
    stamps = columns[_POSITION[TIMESTAMP_COLUMN]]
    parsed, stamps_ok = _timestamps(stamps, n)
    ok &= stamps_ok
    # The Kafka key, when present, must be the customerID (else: key_mismatch, via the
    # reference, which checks it only after the schema).
    for row, position in enumerate(positions):
        key = keys[position]
        if key is not None and ok[row] and key != customer_ids[row].encode():
            ok[row] = False

    if not ok.all():
        slow.extend(p for p, good in zip(positions, ok.tolist(), strict=True) if not good)
        slow.sort()
    keep = np.flatnonzero(ok)
    kept = keep.tolist()
    features = FeatureBatch(
        codes=codes[keep],
        senior_citizen=senior[keep],
        tenure=tenure[keep],
        monthly_charges=monthly[keep],
        total_charges=total[keep],
    )
    accepted = FastRows(
        positions=[positions[i] for i in kept],
        customer_ids=[customer_ids[i] for i in kept],
        event_ts=[stamps[i] for i in kept],
        event_dt=[parsed[i] for i in kept],  # type: ignore[misc]
        features=features,
    )
    return accepted, slow


def _empty_rows() -> FastRows:
    return FastRows([], [], [], [], features_of_events([]))


def _level_codes(column: Sequence[Any], lookup: dict[str, int], n: int) -> np.ndarray:
    """Level code per value, -1 for anything that is not exactly one of the levels."""
    try:
        return np.fromiter(map(lookup.get, column, repeat(-1)), dtype=np.int8, count=n)
    except TypeError:  # an unhashable value (a list or an object)
        return np.fromiter(
            (lookup.get(v, -1) if type(v) is str else -1 for v in column), dtype=np.int8, count=n
        )


def _int_column(column: Sequence[Any], low: int, high: int, n: int) -> tuple[np.ndarray, Any]:
    """Strict ints (not bool, not float) within [low, high]."""
    if set(map(type, column)) <= {int}:
        try:
            values = np.fromiter(column, dtype=np.int64, count=n)
            return values, (values >= low) & (values <= high)
        except OverflowError:
            pass
    ok = np.fromiter((type(v) is int and low <= v <= high for v in column), dtype=bool, count=n)
    values = np.fromiter(
        (v if good else 0 for v, good in zip(column, ok, strict=True)), np.int64, n
    )
    return values, ok


def _number_column(column: Sequence[Any], n: int, *, upper: float | None) -> tuple[np.ndarray, Any]:
    """Strict JSON numbers (int or float, not bool), finite, >= 0 and <= upper."""
    if set(map(type, column)) <= {int, float}:
        try:
            values = np.fromiter(column, dtype=np.float64, count=n)
        except OverflowError:
            values = None
        if values is not None:
            ok = np.isfinite(values) & (values >= 0)
            if upper is not None:
                ok &= values <= upper
            return values, ok
    values = np.zeros(n, dtype=np.float64)
    ok = np.zeros(n, dtype=bool)
    for i, v in enumerate(column):
        if type(v) in (int, float):
            try:
                number = float(v)
            except OverflowError:
                continue
            if np.isfinite(number) and number >= 0 and (upper is None or number <= upper):
                values[i] = number
                ok[i] = True
    return values, ok


def _total_charges_column(column: Sequence[Any], n: int) -> tuple[np.ndarray, Any]:
    """TotalCharges: a number >= 0, or a plain digits string, or an ASCII-blank string."""
    if set(map(type, column)) <= {int, float}:
        return _number_column(column, n, upper=None)
    values = np.zeros(n, dtype=np.float64)
    ok = np.zeros(n, dtype=bool)
    for i, v in enumerate(column):
        kind = type(v)
        if kind is str:
            if (len(v) <= MAX_FAST_NUMBER_CHARS and _NUMERIC_TEXT.fullmatch(v)) or (
                _BLANK_CHARS.issuperset(v)
            ):
                values[i] = coerce_total_charges(v)
                ok[i] = True
        elif kind is int or kind is float:
            number, good = _number_column([v], 1, upper=None)
            values[i] = number[0]
            ok[i] = bool(good[0])
    return values, ok


def _matches(column: Sequence[Any], pattern: re.Pattern[str], n: int) -> Any:
    if set(map(type, column)) <= {str}:
        return np.fromiter(map(bool, map(pattern.fullmatch, column)), dtype=bool, count=n)
    return np.fromiter(
        (type(v) is str and pattern.fullmatch(v) is not None for v in column), bool, n
    )


def _timestamps(column: Sequence[Any], n: int) -> tuple[list[datetime | None], Any]:
    """Parse ``event_ts`` as the contract does; naive datetimes, in UTC (a missing Z too)."""
    if set(map(type, column)) <= {str}:
        # One regex run over the whole column: the pattern cannot match a newline, so the
        # joined text matches only if every value does.
        if _TIMESTAMPS.fullmatch("\n".join(column)):
            try:
                parsed: list[datetime | None] = [
                    datetime.fromisoformat(v[:-1] if v[-1] == "Z" else v) for v in column
                ]
                return parsed, np.ones(n, dtype=bool)
            except ValueError:
                pass  # an impossible date somewhere: sort it out value by value
    parsed = []
    ok = np.zeros(n, dtype=bool)
    for i, v in enumerate(column):
        moment = None
        if type(v) is str and _TIMESTAMP.fullmatch(v):
            try:
                moment = datetime.fromisoformat(v.removesuffix("Z"))
            except ValueError:
                moment = None
        parsed.append(moment)
        ok[i] = moment is not None
    return parsed, ok


def features_of_events(events: Sequence[CustomerEvent]) -> FeatureBatch:
    """A FeatureBatch from validated events (the rows that went through the reference)."""
    n = len(events)
    codes = np.empty((n, len(RAW_CATEGORICAL)), dtype=np.int8)
    for i, name in enumerate(RAW_CATEGORICAL):
        lookup = _LEVEL_CODES[name]
        codes[:, i] = [lookup[getattr(event, name)] for event in events]
    return FeatureBatch(
        codes=codes,
        senior_citizen=np.array([e.SeniorCitizen for e in events], dtype=np.int64),
        tenure=np.array([e.tenure for e in events], dtype=np.int64),
        monthly_charges=np.array([float(e.MonthlyCharges) for e in events], dtype=np.float64),
        total_charges=np.array([e.total_charges_value() for e in events], dtype=np.float64),
    )


def concat_features(parts: Sequence[FeatureBatch], order: np.ndarray) -> FeatureBatch:
    """Stack batches, then reorder rows by ``order`` (positions into the stacked rows)."""
    return FeatureBatch(
        codes=np.concatenate([p.codes for p in parts])[order],
        senior_citizen=np.concatenate([p.senior_citizen for p in parts])[order],
        tenure=np.concatenate([p.tenure for p in parts])[order],
        monthly_charges=np.concatenate([p.monthly_charges for p in parts])[order],
        total_charges=np.concatenate([p.total_charges for p in parts])[order],
    )


def take_features(batch: FeatureBatch, rows: np.ndarray | slice) -> FeatureBatch:
    return batch.take(rows)


def prediction_template(processed_iso: str, model_version: str, inference_ms: float) -> str:
    """The %-template of a prediction body; the batch-wide fields are filled in already.

    Field order and number formatting are those of ``orjson.dumps(dump_body(Prediction))``.
    """
    tail = (
        orjson.dumps(
            {
                "processed_ts": processed_iso,
                "model_version": model_version,
                "inference_latency_ms": inference_ms,
            }
        )
        .decode()[1:]
        .replace("%", "%%")
    )
    return '{"customerID":"%s","churn_probability":%s,"prediction":"%s","event_ts":"%s",' + tail


def number_texts(values: list[float]) -> list[str]:
    """orjson's text for each float (one call for the whole batch)."""
    if not values:
        return []
    return orjson.dumps(values).decode()[1:-1].split(",")
