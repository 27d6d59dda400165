"""``churnstream predict --engine spark``: the batch scorer as a Spark job.

Each Arrow batch of the input goes through :func:`churnstream.predict.score_frame`, the
function the pandas engine calls on the whole file, so validation, reject reasons, the
scoring core and the output columns are the same code. The model's compiled arrays
(:class:`~churnstream.model.arrays.CompiledPipeline`) are broadcast once; executors never
call the pipeline. Probabilities are bit-identical to ``--engine pandas`` (the compiled
model scores a row the same whatever batch it is in; the tests check the whole dataset and a
generated 2M-row file).

Rejects cost a second pass over the input, and only when the first pass counted any: most
runs have none, and persisting a whole scored dataset to split it in two would cost more.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnstream.data import REJECT_REASON_COLUMN, as_text
from churnstream.exceptions import DataError, SparkError
from churnstream.model.contributions import Explainer, explainer
from churnstream.predict import (
    OUTPUT_COLUMNS,
    REASON_COLUMNS,
    PredictResult,
    rejects_path_for,
    score_frame,
)
from churnstream.schemas import FEATURE_COLUMNS, ID_COLUMN
from churnstream.scoring.encode import POSITIVE_LABEL
from churnstream.spark.session import describe

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from churnstream.model.scorer import Scorer
    from churnstream.scoring.infer import Predict

logger = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")
#: Rows per Arrow batch handed to the scoring function (Spark's default is 10,000).
ARROW_BATCH_ROWS = 50_000
#: Read and write CSV as pandas does: quotes doubled, spaces kept, empty fields as "".
CSV_READ_OPTIONS = {"header": "true", "escape": '"'}
CSV_WRITE_OPTIONS = {
    "header": "true",
    "escape": '"',
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
    "emptyValue": "",
}


@dataclass(frozen=True)
class InputLayout:
    """What a file or a directory of parts holds: format, partition keys, first file."""

    format: str
    partition_columns: tuple[str, ...]
    sample: Path


def input_layout(path: Path) -> InputLayout:
    """The format of a .csv/.parquet file or of the data files of a directory, with the
    columns checked on its first file (before Spark starts, so a wrong file costs no JVM).

    Raises DataError for a missing or unreadable path, an unknown suffix, an empty
    directory or one that mixes formats, and a missing column.
    """
    if path.is_file():
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise DataError(f"input {path} must end in .csv or .parquet")
        layout = InputLayout(fmt, (), path)
    elif not path.is_dir():
        raise DataError(f"{path} does not exist")
    else:
        files = [
            f
            for f in sorted(path.rglob("*"))
            if f.is_file()
            and f.suffix.lower().lstrip(".") in FORMATS
            and not any(p.startswith(("_", ".")) for p in f.relative_to(path).parts)
        ]
        formats = {f.suffix.lower().lstrip(".") for f in files}
        if not formats:
            raise DataError(f"{path} holds no .csv or .parquet files")
        if len(formats) > 1:
            raise DataError(f"{path} mixes .csv and .parquet files; give one format")
        keys = tuple(
            part.split("=", 1)[0] for part in files[0].relative_to(path).parts[:-1] if "=" in part
        )
        layout = InputLayout(formats.pop(), keys, files[0])
    _check_columns([*_file_columns(layout), *layout.partition_columns])
    return layout


def _file_columns(layout: InputLayout) -> list[str]:
    """The column names of the first data file: its CSV header or its Parquet schema."""
    try:
        if layout.format == "csv":
            with layout.sample.open(newline="", encoding="utf-8") as fh:
                return next(csv.reader(fh), [])
        import pyarrow.parquet as pq

        return list(pq.read_schema(layout.sample).names)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise DataError(f"cannot read {layout.sample}: {exc}") from exc


def _check_columns(columns: list[str]) -> None:
    required = (ID_COLUMN, *FEATURE_COLUMNS)
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"input is missing column {missing[0]!r} (expected {', '.join(required)})")


def output_format(output: Path, layout: InputLayout) -> str:
    """The output's format: its suffix (.csv/.parquet), else the input's."""
    fmt = output.suffix.lower().lstrip(".")
    return fmt if fmt in FORMATS else layout.format


def read_input(spark: SparkSession, path: Path, layout: InputLayout) -> DataFrame:
    """The input as Spark reads it (CSV all text), with its columns checked."""
    from pyspark.errors import PySparkException

    # Partition directories (key=value) stay text, as every CSV column is.
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    try:
        if layout.format == "csv":
            frame = spark.read.options(**CSV_READ_OPTIONS).csv(str(path))
        else:
            frame = spark.read.parquet(str(path))
    except PySparkException as exc:
        raise DataError(f"cannot read {path}: {describe(exc)}") from exc
    required = (ID_COLUMN, *FEATURE_COLUMNS)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"input is missing column {missing[0]!r} (expected {', '.join(required)})")
    return frame


def _schemas(columns: list[str], reasons: bool) -> tuple[pa.Schema, pa.Schema]:
    """The scored and the rejected rows: the input's columns as text, then ours."""
    import pyarrow as pa

    text = [pa.field(c, pa.string()) for c in columns]
    scored = pa.schema(
        [
            *text,
            pa.field("churn_probability", pa.float64()),
            pa.field("prediction", pa.string()),
            pa.field("model_version", pa.string()),
            *(pa.field(c, pa.string()) for c in (REASON_COLUMNS if reasons else ())),
        ]
    )
    rejected = pa.schema([*text, pa.field(REJECT_REASON_COLUMN, pa.string())])
    return scored, rejected


@dataclass(frozen=True)
class _Scoring:
    """What every task needs, pickled into the job (the model itself is a broadcast).."""

    model: Any  # Broadcast[tuple[Predict, Explainer | None]]
    threshold: float
    model_version: str
    csv: bool
    keep_rejects: bool
    schema: pa.Schema
    scored: Any  # Accumulator[int] (Spark's types are not worth importing here)
    churners: Any
    rejected: Any

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        predict, explain = self.model.value
        for batch in batches:
            raw = as_text(batch.to_pandas())
            if self.csv:
                raw = raw.fillna("")  # pandas reads an empty CSV field as ""
            out, rejects = score_frame(
                raw,
                predict,
                threshold=self.threshold,
                model_version=self.model_version,
                explain=explain,
            )
            self.scored.add(len(out))
            self.churners.add(int((out["prediction"] == POSITIVE_LABEL).sum()) if len(out) else 0)
            self.rejected.add(len(rejects))
            rows = rejects if self.keep_rejects else out
            yield pa.RecordBatch.from_pandas(rows, schema=self.schema, preserve_index=False)


def _write(frame: DataFrame, path: Path, fmt: str, partition_columns: tuple[str, ...]) -> None:
    writer = frame.write.mode("overwrite")
    if partition_columns:
        writer = writer.partitionBy(*partition_columns)
    if fmt == "csv":
        writer.options(**CSV_WRITE_OPTIONS).csv(str(path))
    else:
        writer.parquet(str(path))


def model_predict(scorer: Scorer) -> Predict:
    """What executors call: the compiled arrays when the model has them (numpy only)."""
    if scorer.compiled is not None:
        return scorer.compiled.predict_proba
    logger.warning("model %s has no compiled arrays; executors get the pipeline", scorer.version)
    return scorer.predict_features


def predict_dataset(
    spark: SparkSession,
    input_path: Path,
    output_path: Path,
    scorer: Scorer,
    *,
    rejects_path: Path | None = None,
    predict: Callable[[Scorer], Predict] = model_predict,
    reasons: bool = True,
) -> PredictResult:
    """Score a file or directory of parts on Spark; write output (and rejects) as parts.

    With ``reasons`` (and a model that can give them) the scored rows also get the
    REASON_COLUMNS, as with the pandas engine.
    """
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    started = time.perf_counter()
    layout = input_layout(input_path)
    fmt = output_format(output_path, layout)
    frame = read_input(spark, input_path, layout)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
    # Broadcast with its lookup tables built (explainer() checks them), so that executors
    # never rebuild them.
    explain: Explainer | None = None
    if reasons and scorer.compiled is not None and scorer.explains:
        explain = explainer(scorer.compiled)
    scored_schema, rejected_schema = _schemas(frame.columns, explain is not None)
    model = spark.sparkContext.broadcast((predict(scorer), explain))

    def run(keep_rejects: bool, path: Path) -> tuple[int, int, int]:
        counts = [spark.sparkContext.accumulator(0) for _ in range(3)]
        scoring = _Scoring(
            model,
            scorer.threshold,
            scorer.version,
            layout.format == "csv",
            keep_rejects,
            rejected_schema if keep_rejects else scored_schema,
            *counts,
        )
        result = frame.mapInArrow(scoring, _spark_schema(scoring.schema))
        try:
            _write(result, path, fmt, layout.partition_columns)
        except (PySparkException, Py4JError) as exc:
            raise SparkError(f"Spark job failed: {describe(exc)}") from exc
        scored, churners, rejected = (int(c.value) for c in counts)
        return scored, churners, rejected

    try:
        scored, churners, rejected = run(False, output_path)
        written_rejects = None
        if rejected:
            written_rejects = rejects_path or rejects_path_for(output_path)
            run(True, written_rejects)
            logger.warning("%d row(s) rejected; see %s", rejected, written_rejects)
    finally:
        model.destroy()
    return PredictResult(
        output=output_path,
        rejects=written_rejects,
        scored=scored,
        rejected=rejected,
        churn_rate=churners / scored if scored else 0.0,
        seconds=time.perf_counter() - started,
    )


def _spark_schema(schema: pa.Schema) -> Any:
    """The Spark StructType of an Arrow schema of text and double columns."""
    import pyarrow as pa
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    return StructType(
        [
            StructField(f.name, DoubleType() if f.type == pa.float64() else StringType(), True)
            for f in schema
        ]
    )


__all__ = ["OUTPUT_COLUMNS", "input_layout", "predict_dataset"]
