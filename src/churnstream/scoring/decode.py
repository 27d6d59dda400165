"""The reference decoder: one message, checked against the contract model, or the reason why not.

:func:`churnstream.scoring.validate.check_batch` accepts most valid messages of a batch at
once; every message it leaves is decided here, by the contract model
(:class:`churnstream.schemas.CustomerEvent`), whose error texts become the dead letter's
``validation_errors``. So a message is rejected with the same reason whichever path saw it.
"""

from __future__ import annotations

import json
import logging
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
