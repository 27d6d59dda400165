"""Batch prediction over files, and single-record prediction.

File I/O and the typed loading of rows stay here (pandas); the probabilities, labels and
prediction bodies come from the scoring core (:mod:`churnstream.scoring`), as they do for the
Kafka scorer and the REST API. Invalid rows never stop a run: they go to a rejects file with
the reason.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from pydantic import ValidationError

from churnstream.data import REJECT_REASON_COLUMN, read_table, validate_frame
from churnstream.exceptions import DataError, InvalidEventError, ModelError
from churnstream.files import atomic_write_bytes, atomic_write_text
from churnstream.model.contributions import TOP_REASONS, TopReasons
from churnstream.model.features import from_frame
from churnstream.model.scorer import Scorer
from churnstream.schemas import CustomerEvent, utc_now_iso, validation_messages
from churnstream.scoring.decode import features_of_events
from churnstream.scoring.encode import NEGATIVE_LABEL, POSITIVE_LABEL, encode_predictions
from churnstream.scoring.infer import Predict, score_features
from churnstream.scoring.reasons import Explain, reasons_of

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("churn_probability", "prediction", "model_version")
#: With reasons, each scored row also gets these: ``feature=value (+contribution)``, the
#: largest contribution to the churn probability first, empty where fewer pushed it up.
REASON_COLUMNS = tuple(f"reason_{i + 1}" for i in range(TOP_REASONS))
#: The reject reason of a row the model could not score.
UNSCORED_REASON = "churn_probability: the model could not score this record"
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


def score_frame(
    raw: pd.DataFrame,
    predict: Predict,
    *,
    threshold: float,
    model_version: str,
    explain: Explain | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw text rows in; the scored rows (the caller's columns as they were, then
    OUTPUT_COLUMNS, then with ``explain`` the REASON_COLUMNS) and the rejected rows (then
    ``reject_reason``) out.

    Every engine of ``churnstream predict`` calls this on its rows: the whole file for pandas,
    each Arrow batch for Spark.
    """
    valid, rejects = validate_frame(raw)
    if len(valid):
        features = from_frame(valid)
        scores = score_features(features, predict, threshold=threshold)
        if not scores.finite.all():
            unscored = raw.loc[valid.index[~scores.finite]].copy()
            unscored[REJECT_REASON_COLUMN] = UNSCORED_REASON
            rejects = pd.concat([rejects, unscored]).sort_index()
        # Keep the caller's text as it was, append our three columns.
        out = raw.loc[valid.index[scores.finite]].copy()
        out["churn_probability"] = scores.probabilities[scores.finite]
        out["prediction"] = np.where(
            scores.labels_yes[scores.finite], POSITIVE_LABEL, NEGATIVE_LABEL
        ).astype(object)
        out["model_version"] = np.full(len(out), model_version, dtype=object)
        if explain is not None:
            rows = np.flatnonzero(scores.finite)
            found = reasons_of(explain, features.take(rows))
            for column, texts in zip(REASON_COLUMNS, _reason_cells(found, len(out)), strict=True):
                out[column] = texts
    else:
        out = raw.iloc[0:0].copy()
        for column in OUTPUT_COLUMNS + (REASON_COLUMNS if explain is not None else ()):
            out[column] = pd.Series(dtype=object)
    return out, rejects


def predict_file(
    input_path: Path,
    output_path: Path,
    scorer: Scorer,
    *,
    rejects_path: Path | None = None,
    reasons: bool = True,
) -> PredictResult:
    """Score every valid row of a CSV/Parquet file; write rejects with their reason.

    With ``reasons`` (and a model that can give them) the scored rows also get the
    :data:`REASON_COLUMNS`.
    """
    _check_suffix(input_path, "input")
    _check_suffix(output_path, "output")
    started = time.perf_counter()
    out, rejects = score_frame(
        read_table(input_path),
        scorer.predict_features,
        threshold=scorer.threshold,
        model_version=scorer.version,
        explain=scorer.explain_features if reasons and scorer.explains else None,
    )
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


def _reason_cells(reasons: TopReasons | None, rows: int) -> list[list[str]]:
    """The REASON_COLUMNS' cells: ``feature=value (+contribution)``, empty for no reason."""
    columns: list[list[str]] = [[""] * rows for _ in REASON_COLUMNS]
    if reasons is None:
        return columns
    for row, found in enumerate(reasons.rows()):
        for position, reason in enumerate(found):
            columns[position][row] = f"{reason.feature}={reason.value} ({reason.contribution:+.4f})"
    return columns


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


def predict_record(event: CustomerEvent, scorer: Scorer, *, reasons: bool = True) -> bytes:
    """The prediction body of one record (the ``Prediction`` contract, as JSON), with a last
    field ``reasons`` when asked for and the model can give them."""
    features = features_of_events([event])
    scores = score_features(features, scorer.predict_features, threshold=scorer.threshold)
    if not scores.finite.all():
        raise ModelError(f"the model could not score customer {event.customerID}")
    (prediction,) = encode_predictions(
        [event.customerID],
        [event.event_ts],
        scores.probabilities,
        scores.labels_yes,
        processed_ts=utc_now_iso(),
        model_version=scorer.version,
        inference_ms=scores.inference_ms,
        reasons=(
            reasons_of(scorer.explain_features, features) if reasons and scorer.explains else None
        ),
    )
    return prediction.value
