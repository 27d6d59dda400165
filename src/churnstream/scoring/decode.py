"""The reference decoder: one message, checked against the contract model, or the reason why not.

:func:`churnstream.scoring.validate.check_batch` accepts most valid messages of a batch at
once; every message it leaves is decided here, by the contract model
(:class:`churnstream.schemas.CustomerEvent`), whose error texts become the dead letter's
``validation_errors``. So a message is rejected with the same reason whichever path saw it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from churnstream.exceptions import InvalidEventError
from churnstream.model.feature_batch import LEVEL_CODES, RAW_CATEGORICAL, FeatureBatch
from churnstream.schemas import CustomerEvent, validation_messages
from churnstream.scoring.messages import RawMessage

logger = logging.getLogger(__name__)

#: A customer record is about 600 bytes; anything far larger is not one.
MAX_BODY_BYTES = 64 * 1024
#: A customer record is flat; JSON nested deeper than this is refused as not a record.
MAX_NESTING_DEPTH = 128


def decode_event(message: RawMessage) -> CustomerEvent:
    """Decode and validate one message, or raise InvalidEventError saying why."""
    value = message.value
    if not value:
        raise InvalidEventError("empty message body", value, code="empty_body")
    if len(value) > MAX_BODY_BYTES:
        raise InvalidEventError(
            f"message body is {len(value)} bytes, more than the {MAX_BODY_BYTES} allowed",
            value,
            code="too_large",
        )
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(f"body is not UTF-8: {exc}", value, code="not_utf8") from exc
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson also refuses NaN and Infinity, which are not JSON.
        raise InvalidEventError(f"body is not valid JSON: {exc}", value, code="not_json") from exc
    if nested_too_deep(value):
        # Checked before anything walks the body recursively (the duplicate-key check, the
        # dead letter's encoders), which would fail on it instead of rejecting it.
        raise InvalidEventError(
            f"body is JSON nested more than {MAX_NESTING_DEPTH} levels deep, not a record",
            value,
            code="not_json",
        )
    if not isinstance(data, dict):
        raise InvalidEventError(
            f"body is JSON {type(data).__name__}, not an object", value, code="not_object"
        )
    duplicated = _duplicate_keys(value)
    if duplicated:
        raise InvalidEventError(
            f"duplicate key(s) in the body: {', '.join(duplicated)} (which value is meant is "
            "ambiguous)",
            value,
            code="duplicate_key",
        )
    try:
        event = CustomerEvent.model_validate(data)
    except ValidationError as exc:
        details = validation_messages(exc)
        raise InvalidEventError(
            f"{len(details)} field error(s): {'; '.join(details)}", value, details=details
        ) from exc
    if message.key is not None and message.key != event.customerID.encode():
        raise InvalidEventError(
            f"message key {message.key!r} differs from customerID {event.customerID!r}",
            value,
            code="key_mismatch",
        )
    return event


_BRACKETS = re.compile(rb"[\[\]{}]")
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')


def nested_too_deep(body: bytes, limit: int = MAX_NESTING_DEPTH) -> bool:
    """Whether arrays and objects in the JSON ``body`` nest more than ``limit`` levels.

    Read from the text, not the decoded value: a duplicate key's earlier value is gone from
    the value but still parsed by the duplicate-key check. ``body`` must be valid JSON.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # every record: one brace
    depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", body)):
        depth += 1 if bracket in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


def _duplicate_keys(value: bytes) -> list[str]:
    """Keys that occur more than once in any object of the body (only the slow path pays)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and key not in found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(value, object_pairs_hook=pairs)
    return found


def features_of_events(events: Sequence[CustomerEvent]) -> FeatureBatch:
    """A FeatureBatch from validated events (TotalCharges coerced by the contract's policy)."""
    n = len(events)
    codes = np.empty((n, len(RAW_CATEGORICAL)), dtype=np.int8)
    for i, name in enumerate(RAW_CATEGORICAL):
        lookup = LEVEL_CODES[name]
        codes[:, i] = [lookup[getattr(event, name)] for event in events]
    return FeatureBatch(
        codes=codes,
        senior_citizen=np.array([e.SeniorCitizen for e in events], dtype=np.int64),
        tenure=np.array([e.tenure for e in events], dtype=np.int64),
        monthly_charges=np.array([float(e.MonthlyCharges) for e in events], dtype=np.float64),
        total_charges=np.array([e.total_charges_value() for e in events], dtype=np.float64),
    )
