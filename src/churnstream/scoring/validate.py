"""The one fast check of a valid customer event: a whole batch decoded and checked at once.

The definition of a valid event is the wire contract (:mod:`churnstream.schemas`): its rule
tables (``CATEGORICAL_LEVELS``, ``NUMERIC_BOUNDS``, the patterns) and the pydantic model
:class:`~churnstream.schemas.CustomerEvent` built on them. Building one pydantic model per
message costs about 17 us, so :func:`check_batch` instead decodes each body once with orjson and
checks the batch column by column, against the same tables.

Its check is deliberately *stricter* than the contract where matching pydantic exactly would
be intricate (non-ASCII bodies, string forms of ``TotalCharges`` other than plain digits or
blanks, timestamps not in the plain ``YYYY-MM-DDTHH:MM:SS[.f]Z`` form): a row it accepts is
always valid, and every row it does not accept goes to the reference decoder
(:func:`churnstream.scoring.decode.decode_event`), which accepts it or rejects it with the
contract model's own error texts. So the core accepts and rejects exactly what the contract
model does: ``tests/unit/test_validate.py`` checks this with the model as the oracle, over the
bad-input corpus and fuzzed variants.
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

from churnstream.model.feature_batch import LEVEL_CODES, RAW_CATEGORICAL, FeatureBatch
from churnstream.schemas import (
    CUSTOMER_ID_PATTERN,
    FEATURE_COLUMNS,
    ID_COLUMN,
    NUMERIC_BOUNDS,
    TARGET_COLUMN,
    TIMESTAMP_COLUMN,
    YES_NO,
    coerce_total_charges,
)
from churnstream.scoring.decode import MAX_BODY_BYTES

logger = logging.getLogger(__name__)

#: A numeric ``TotalCharges`` string longer than this is left to the reference.
MAX_FAST_NUMBER_CHARS = 32

#: The fields every event has, in the order the fast check reads them.
REQUIRED_FIELDS: tuple[str, ...] = (ID_COLUMN, *FEATURE_COLUMNS, TIMESTAMP_COLUMN)
_N_REQUIRED = len(REQUIRED_FIELDS)
_GET_REQUIRED = itemgetter(*REQUIRED_FIELDS)
_POSITION = {name: i for i, name in enumerate(REQUIRED_FIELDS)}
_CHURN_VALUES = YES_NO
_MISSING = object()
#: Required fields whose valid values are JSON strings (all but the three numeric ones and
#: TotalCharges, which may be either).
_N_STRING_FIELDS = _N_REQUIRED - 4

# Strict ASCII subsets of the contract's patterns (schemas.py): whatever matches these also
# matches the contract's (Python or Rust) regular expressions.
_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN.removeprefix("^").removesuffix("$"))  # ASCII
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z?")
_TIMESTAMPS = re.compile(f"(?:{_TIMESTAMP.pattern}\n)*{_TIMESTAMP.pattern}")
_NUMERIC_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_BLANK_CHARS = frozenset(" \t\n\r\f\v")
#: The integer fields' bounds, as ints (the contract's table holds them as numbers).
_INT_BOUNDS = {
    name: (int(low), int(high))
    for name, (low, high) in NUMERIC_BOUNDS.items()
    if name in ("SeniorCitizen", "tenure") and high is not None
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
    Rows it accepts are valid events whose key, when present, is their customerID.
    """
    rows: list[tuple[Any, ...]] = []
    positions: list[int] = []
    slow: list[int] = []
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    for position, value in enumerate(values):
        if not value or len(value) > MAX_BODY_BYTES or not value.isascii():
            slow.append(position)
            continue
        try:
            data = loads(value)
            # Only an object can be indexed by field names: any other JSON is a TypeError.
            row = _GET_REQUIRED(data)
        except (decode_error, KeyError, TypeError):
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
        return empty_rows(), slow

    columns = list(zip(*rows, strict=True))
    n = len(rows)
    ok = np.ones(n, dtype=bool)
    codes = np.empty((n, len(RAW_CATEGORICAL)), dtype=np.int8)
    for i, name in enumerate(RAW_CATEGORICAL):
        codes[:, i] = _level_codes(columns[_POSITION[name]], LEVEL_CODES[name], n)
    ok &= (codes >= 0).all(axis=1)
    senior, senior_ok = _int_column(columns[_POSITION["SeniorCitizen"]], "SeniorCitizen", n)
    tenure, tenure_ok = _int_column(columns[_POSITION["tenure"]], "tenure", n)
    monthly, monthly_ok = _number_column(columns[_POSITION["MonthlyCharges"]], "MonthlyCharges", n)
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


def empty_rows() -> FastRows:
    """No accepted rows."""
    empty = np.empty(0)
    features = FeatureBatch(
        codes=np.empty((0, len(RAW_CATEGORICAL)), dtype=np.int8),
        senior_citizen=empty.astype(np.int64),
        tenure=empty.astype(np.int64),
        monthly_charges=empty,
        total_charges=empty,
    )
    return FastRows([], [], [], [], features)


def _level_codes(column: Sequence[Any], lookup: dict[str, int], n: int) -> np.ndarray:
    """Level code per value, -1 for anything that is not exactly one of the levels."""
    try:
        return np.fromiter(map(lookup.get, column, repeat(-1)), dtype=np.int8, count=n)
    except TypeError:  # an unhashable value (a list or an object)
        return np.fromiter(
            (lookup.get(v, -1) if type(v) is str else -1 for v in column), dtype=np.int8, count=n
        )


def _int_column(column: Sequence[Any], name: str, n: int) -> tuple[np.ndarray, Any]:
    """Strict ints (not bool, not float) within the contract's bounds for ``name``."""
    low, high = _INT_BOUNDS[name]
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


def _number_column(column: Sequence[Any], name: str, n: int) -> tuple[np.ndarray, Any]:
    """Strict JSON numbers (int or float, not bool), finite, within the bounds for ``name``."""
    lower, upper = NUMERIC_BOUNDS[name]
    if set(map(type, column)) <= {int, float}:
        try:
            values = np.fromiter(column, dtype=np.float64, count=n)
        except OverflowError:
            values = None
        if values is not None:
            ok = np.isfinite(values) & (values >= lower)
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
            if np.isfinite(number) and number >= lower and (upper is None or number <= upper):
                values[i] = number
                ok[i] = True
    return values, ok


def _total_charges_column(column: Sequence[Any], n: int) -> tuple[np.ndarray, Any]:
    """TotalCharges: a number within bounds, or a plain digits string, or an ASCII-blank string."""
    if set(map(type, column)) <= {int, float}:
        return _number_column(column, "TotalCharges", n)
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
            number, good = _number_column([v], "TotalCharges", 1)
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
