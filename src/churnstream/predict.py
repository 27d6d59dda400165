"""Batch prediction over files, and single-record prediction.

File I/O and the typed loading of rows stay here (pandas); the probabilities, labels and
prediction bodies come from the scoring core (:mod:`churnstream.scoring`), as they do for the
Kafka scorer and the REST API. Invalid rows never stop a run: they go to a rejects file with
the reason.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import orjson
import pandas as pd
from pydantic import ValidationError

from churnstream.data import REJECT_REASON_COLUMN, iter_table, validate_frame
from churnstream.exceptions import DataError, InvalidEventError, ModelError
from churnstream.files import atomic_writer
from churnstream.model.contributions import TOP_REASONS, TopReasons
from churnstream.model.features import from_frame
from churnstream.model.scorer import Scorer
from churnstream.schemas import CustomerEvent, utc_now_iso, validation_messages
from churnstream.scoring.decode import features_of_events
from churnstream.scoring.encode import NEGATIVE_LABEL, POSITIVE_LABEL, encode_predictions
from churnstream.scoring.infer import Predict, score_features
from churnstream.scoring.reasons import Explain, reasons_of
from churnstream.settings.sections import PredictSettings

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

#: Rows read, scored and written at a time by :func:`predict_file`: the setting's default.
DEFAULT_CHUNK_ROWS: int = PredictSettings.model_fields["chunk_rows"].default

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
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> PredictResult:
    """Score every valid row of a CSV/Parquet file; write rejects with their reason.

    With ``reasons`` (and a model that can give them) the scored rows also get the
    :data:`REASON_COLUMNS`. The file is read, scored and written ``chunk_rows`` rows at a
    time, so memory stays flat whatever its size; the files are the same as scoring it whole
    (CSV byte for byte; Parquet the same table, one row group per chunk). Both appear only
    complete: each is written to a temporary file that replaces the target at the end.
    """
    _check_suffix(input_path, "input")
    _check_suffix(output_path, "output")
    if chunk_rows < 1:
        raise DataError(f"chunk_rows must be at least 1, got {chunk_rows}")
    started = time.perf_counter()
    explain = scorer.explain_features if reasons and scorer.explains else None
    written_rejects = rejects_path or rejects_path_for(output_path)
    scored = rejected = churned = 0
    first_reason = ""
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as files:
        output = _TableSink(output_path, files)
        rejects_sink = _TableSink(written_rejects, files)
        for raw in iter_table(input_path, chunk_rows):
            out, rejects = score_frame(
                raw,
                scorer.predict_features,
                threshold=scorer.threshold,
                model_version=scorer.version,
                explain=explain,
            )
            output.write(out)
            scored += len(out)
            churned += int((out["prediction"] == POSITIVE_LABEL).sum())
            if len(rejects):
                written_rejects.parent.mkdir(parents=True, exist_ok=True)
                rejects_sink.write(rejects)
                first_reason = first_reason or str(rejects[REJECT_REASON_COLUMN].iloc[0])
                rejected += len(rejects)
        output.finish()
        rejects_sink.finish()
    if rejected:
        logger.warning("%d row(s) rejected, first: %s", rejected, first_reason)
    return PredictResult(
        output=output_path,
        rejects=written_rejects if rejected else None,
        scored=scored,
        rejected=rejected,
        churn_rate=churned / scored if scored else 0.0,
        seconds=time.perf_counter() - started,
    )


class _TableSink:
    """One output table written chunk by chunk, through the atomic write (opened at the
    first chunk, so that a table that never gets a row is never created).

    CSV: the header once, then each chunk's rows, as ``to_csv`` writes them (so the bytes
    are those of the whole frame). Parquet: one ``ParquetWriter`` with the schema of the
    first chunk that has rows (an empty chunk's text columns have no Arrow type yet); a
    table with no row at all is written as ``to_parquet`` writes an empty frame.
    """

    def __init__(self, path: Path, files: contextlib.ExitStack) -> None:
        self._path = path
        self._files = files
        self._parquet = path.suffix.lower() == ".parquet"
        self._handle: BinaryIO | None = None
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._empty: pd.DataFrame | None = None

    def _open(self) -> BinaryIO:
        if self._handle is None:
            self._handle = self._files.enter_context(atomic_writer(self._path))
        return self._handle

    def write(self, frame: pd.DataFrame) -> None:
        if not self._parquet:
            first = self._handle is None
            self._open().write(frame.to_csv(index=False, header=first).encode())
            return
        if not len(frame):
            if self._empty is None:
                self._empty = frame
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        if self._writer is None:
            self._schema = table.schema
            # The writer's defaults are to_parquet's (snappy, one row group per write).
            self._writer = pq.ParquetWriter(self._open(), table.schema, compression="snappy")
            self._files.callback(self._writer.close)
        self._writer.write_table(table)

    def finish(self) -> None:
        """Write the empty table if no chunk had a row (the file is then just as before)."""
        if self._parquet and self._writer is None and self._empty is not None:
            buffer = io.BytesIO()
            self._empty.to_parquet(buffer, index=False)
            self._open().write(buffer.getvalue())


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
