"""Batch prediction over files, and single-record prediction.

Invalid rows never stop a run: they go to a rejects file with the reason.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pandas as pd
from pydantic import ValidationError

from churnstream.data import REJECT_REASON_COLUMN, read_table, validate_frame
from churnstream.events import events_to_frame
from churnstream.exceptions import DataError, InvalidEventError
from churnstream.files import atomic_write_bytes, atomic_write_text
from churnstream.model.scorer import Scorer
from churnstream.schemas import (
    FEATURE_COLUMNS,
    CustomerEvent,
    Prediction,
    dump_body,
    utc_now_iso,
    validation_messages,
)

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("churn_probability", "prediction", "model_version")
SUPPORTED_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class PredictResult:
    output: Path
    rejects: Path | None
    scored: int
    rejected: int
    churn_rate: float
    seconds: float


def _check_suffix(path: Path, role: str) -> None:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(f"{role} {path} must end in .csv or .parquet")


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(path, buffer.getvalue())
    else:
        atomic_write_text(path, frame.to_csv(index=False))


def rejects_path_for(output: Path) -> Path:
    return output.with_name(f"{output.stem}.rejects{output.suffix}")


def predict_file(
    input_path: Path, output_path: Path, scorer: Scorer, *, rejects_path: Path | None = None
) -> PredictResult:
    """Score every valid row of a CSV/Parquet file; write rejects with their reason."""
    _check_suffix(input_path, "input")
    _check_suffix(output_path, "output")
    started = time.perf_counter()
    raw = read_table(input_path)
    valid, rejects = validate_frame(raw)
    if len(valid):
        scored = scorer.score_frame(valid[list(FEATURE_COLUMNS)])
        # Keep the caller's text as it was, append our three columns.
        out = raw.loc[valid.index].copy()
        for column in OUTPUT_COLUMNS:
            out[column] = scored[column].to_numpy()
    else:
        out = raw.iloc[0:0].copy()
        for column in OUTPUT_COLUMNS:
            out[column] = pd.Series(dtype=object)
    _write_table(out, output_path)

    written_rejects: Path | None = None
    if len(rejects):
        written_rejects = rejects_path or rejects_path_for(output_path)
        _write_table(rejects, written_rejects)
        logger.warning(
            "%d row(s) rejected, first: %s", len(rejects), rejects[REJECT_REASON_COLUMN].iloc[0]
        )
    churn_rate = float((out["prediction"] == "Yes").mean()) if len(out) else 0.0
    return PredictResult(
        output=output_path,
        rejects=written_rejects,
        scored=len(out),
        rejected=len(rejects),
        churn_rate=churn_rate,
        seconds=time.perf_counter() - started,
    )


def parse_record(text: str | bytes) -> CustomerEvent:
    """Parse one JSON customer record; ``event_ts`` defaults to now when absent."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"not valid JSON: {exc}", code="not_json") from exc
    if not isinstance(data, dict):
        raise InvalidEventError("a customer record must be a JSON object", code="not_object")
    data.setdefault("event_ts", utc_now_iso())
    try:
        return CustomerEvent.model_validate(data)
    except ValidationError as exc:
        details = validation_messages(exc)
        raise InvalidEventError("; ".join(details), details=details) from exc


def predict_record(event: CustomerEvent, scorer: Scorer) -> Prediction:
    started = time.perf_counter()
    proba = scorer.predict_proba(events_to_frame([event]))
    latency_ms = (time.perf_counter() - started) * 1000
    return Prediction(
        customerID=event.customerID,
        churn_probability=float(proba[0]),
        prediction=str(scorer.label(proba)[0]),
        event_ts=event.event_ts,
        processed_ts=utc_now_iso(),
        model_version=scorer.version,
        inference_latency_ms=latency_ms,
    )


def prediction_json(prediction: Prediction) -> str:
    return orjson.dumps(dump_body(prediction)).decode()
