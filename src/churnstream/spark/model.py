"""``predict --engine spark --model <Spark version>``: a model from ``train --engine spark``.

A Spark ML ``PipelineModel`` scores DataFrames, not Arrow batches on an executor, so this
path differs from the scikit-learn one in one step only: each Arrow batch is validated and
typed by the pandas engine's own :func:`churnstream.data.validate_frame` (same reject
reasons), the valid rows go through ``PipelineModel.transform``, and the output columns
(``churn_probability``, ``prediction`` at the version's threshold, ``model_version``) are
those of every other engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnstream.data import REJECT_REASON_COLUMN, as_text, validate_frame
from churnstream.exceptions import ModelLoadError, SparkError
from churnstream.model import artifacts
from churnstream.predict import PredictResult, rejects_path_for
from churnstream.schemas import CATEGORICAL_LEVELS, FEATURE_COLUMNS
from churnstream.scoring.encode import NEGATIVE_LABEL, POSITIVE_LABEL
from churnstream.spark.predict import _write, input_layout, output_format, read_input
from churnstream.spark.session import describe
from churnstream.spark.train import PROBABILITY_COLUMN, SPARK_MODEL_DIR

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

#: The input's own text columns travel under this prefix while the typed features use
#: their names (the names the PipelineModel was fitted on).
RAW_PREFIX = "__raw__"


def is_spark_model(path: Path) -> bool:
    """Whether ``path`` (models root or version dir) leads to a Spark model version."""
    try:
        version_dir = artifacts.resolve_version_dir(path)
        return artifacts.engine_of(artifacts.read_metadata(version_dir)) == artifacts.ENGINE_SPARK
    except ModelLoadError:
        return False


@dataclass(frozen=True)
class SparkModel:
    model: Any
    metadata: dict[str, Any]
    version_dir: Path

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"]["value"])


def load_spark_model(path: Path) -> SparkModel:
    """The PipelineModel of a ``train --engine spark`` version, its hash checked."""
    from pyspark.errors import PySparkException
    from pyspark.ml import PipelineModel

    version_dir = artifacts.resolve_version_dir(path)
    metadata = artifacts.read_metadata(version_dir)
    if artifacts.engine_of(metadata) != artifacts.ENGINE_SPARK:
        raise ModelLoadError(
            f"{version_dir} is a scikit-learn model, not a Spark one; it needs no Spark model "
            "loader (predict --engine spark scores it through the scoring core)"
        )
    model_path = version_dir / str(metadata.get("model_file", SPARK_MODEL_DIR))
    if not model_path.is_dir():
        raise ModelLoadError(f"{model_path} is missing")
    if artifacts.path_sha256(model_path) != metadata["model_sha256"]:
        raise ModelLoadError(
            f"{model_path} does not match the sha256 in metadata.json; the files were modified"
        )
    try:
        model = PipelineModel.load(str(model_path))
    except PySparkException as exc:
        raise ModelLoadError(f"{model_path} could not be loaded: {describe(exc)}") from exc
    return SparkModel(model, metadata, version_dir)


def _typed_schema(columns: list[str]) -> pa.Schema:
    import pyarrow as pa

    typed = [
        pa.field(c, pa.string() if c in CATEGORICAL_LEVELS else pa.float64())
        for c in FEATURE_COLUMNS
    ]
    return pa.schema(
        [
            *(pa.field(RAW_PREFIX + c, pa.string()) for c in columns),
            *typed,
            pa.field(REJECT_REASON_COLUMN, pa.string()),
        ]
    )


@dataclass(frozen=True)
class _Validate:
    """``mapInArrow``: raw text rows in; the same rows with typed features or a reason."""

    columns: list[str]
    csv: bool
    schema: Any

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pandas as pd
        import pyarrow as pa

        for batch in batches:
            raw = as_text(batch.to_pandas())
            if self.csv:
                raw = raw.fillna("")  # pandas reads an empty CSV field as ""
            valid, rejects = validate_frame(raw)
            out = raw.add_prefix(RAW_PREFIX)
            for column in FEATURE_COLUMNS:
                values = valid[column] if column in valid else pd.Series(dtype=object)
                out[column] = values.reindex(raw.index)
                if column not in CATEGORICAL_LEVELS:
                    out[column] = out[column].astype("float64")
            out[REJECT_REASON_COLUMN] = rejects[REJECT_REASON_COLUMN].reindex(raw.index)
            yield pa.RecordBatch.from_pandas(out, schema=self.schema, preserve_index=False)


def predict_with_spark_model(
    spark: SparkSession,
    input_path: Path,
    output_path: Path,
    model_path: Path,
    *,
    rejects_path: Path | None = None,
) -> tuple[PredictResult, str]:
    """Score a file or directory of parts with a Spark model; returns the result and the
    model's version."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F  # noqa: N812 - Spark's own idiom

    from churnstream.spark.predict import _spark_schema

    started = time.perf_counter()
    loaded = load_spark_model(model_path)
    layout = input_layout(input_path)
    fmt = output_format(output_path, layout)
    frame = read_input(spark, input_path, layout)
    schema = _typed_schema(frame.columns)
    checked = frame.mapInArrow(
        _Validate(frame.columns, layout.format == "csv", schema), _spark_schema(schema)
    ).cache()
    raw_columns = [F.col(RAW_PREFIX + c).alias(c) for c in frame.columns]
    valid = checked.where(F.col(REJECT_REASON_COLUMN).isNull())
    probability = vector_to_array(F.col(PROBABILITY_COLUMN))[1]
    out = (
        loaded.model.transform(valid)
        .withColumn("churn_probability", probability)
        .select(
            *raw_columns,
            "churn_probability",
            F.when(F.col("churn_probability") >= loaded.threshold, POSITIVE_LABEL)
            .otherwise(NEGATIVE_LABEL)
            .alias("prediction"),
            F.lit(loaded.version).alias("model_version"),
        )
    )
    rejected_rows = checked.where(F.col(REJECT_REASON_COLUMN).isNotNull()).select(
        *raw_columns, REJECT_REASON_COLUMN
    )
    try:
        _write(out, output_path, fmt, layout.partition_columns)
        counts = out.groupBy("prediction").count().collect()
        rejected = rejected_rows.count()
        written_rejects = None
        if rejected:
            written_rejects = rejects_path or rejects_path_for(output_path)
            _write(rejected_rows, written_rejects, fmt, layout.partition_columns)
    except (PySparkException, Py4JError) as exc:
        raise SparkError(f"Spark job failed: {describe(exc)}") from exc
    finally:
        checked.unpersist()
    by_label = {row["prediction"]: int(row["count"]) for row in counts}
    scored = sum(by_label.values())
    return (
        PredictResult(
            output=output_path,
            rejects=written_rejects,
            scored=scored,
            rejected=int(rejected),
            churn_rate=by_label.get(POSITIVE_LABEL, 0) / scored if scored else 0.0,
            seconds=time.perf_counter() - started,
        ),
        loaded.version,
    )
