"""Customer events: the producer-side encoding of dataset rows (pure, no I/O)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pandas as pd

from churnstream.schemas import (
    DATASET_COLUMNS,
    FEATURE_COLUMNS,
    ID_COLUMN,
    TARGET_COLUMN,
    TIMESTAMP_COLUMN,
    CustomerEvent,
)

logger = logging.getLogger(__name__)


def frame_to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Typed dataset rows (from :func:`churnstream.data.load_dataset`) as plain dicts.

    ``TotalCharges`` goes out as a number; the 11 blank values of new customers were read
    as 0.0, which the contract allows. ``Churn`` is carried when the file has it: the
    contract of the system we replace requires it, and the scorer ignores it.
    """
    columns = [c for c in DATASET_COLUMNS if c in frame.columns]
    records: list[dict[str, Any]] = frame[columns].to_dict("records")  # type: ignore[assignment]
    for record in records:
        # numpy scalars would not survive JSON; to_dict already gives Python ints/floats,
        # but a Parquet source can carry pandas NA for a missing label.
        if TARGET_COLUMN in record and not isinstance(record[TARGET_COLUMN], str):
            del record[TARGET_COLUMN]
    return records


def frame_to_events(frame: pd.DataFrame, event_ts: str) -> list[dict[str, Any]]:
    """Records stamped with one ``event_ts`` (tests and batch mode)."""
    return [stamp(record, event_ts) for record in frame_to_records(frame)]


def stamp(record: dict[str, Any], event_ts: str) -> dict[str, Any]:
    return {**record, TIMESTAMP_COLUMN: event_ts}


def encode_event(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) for Kafka: keyed by customerID so one customer stays on one partition."""
    return str(event[ID_COLUMN]).encode(), orjson.dumps(event)


def events_to_frame(events: list[CustomerEvent]) -> pd.DataFrame:
    """Model-ready frame from validated events (TotalCharges coerced per the policy)."""
    rows: list[dict[str, Any]] = []
    for event in events:
        row = {c: getattr(event, c) for c in FEATURE_COLUMNS}
        row["TotalCharges"] = event.total_charges_value()
        rows.append(row)
    return pd.DataFrame(rows, columns=list(FEATURE_COLUMNS))
