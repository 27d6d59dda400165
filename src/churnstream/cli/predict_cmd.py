"""`churnstream predict`: score a CSV/Parquet file, or one JSON record."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from churnstream.cli.options import ModelPathOption, effective_settings
from churnstream.cli.spark_options import (
    Engine,
    EngineOption,
    MasterOption,
    SparkConfOption,
    spark_options_only_with_spark,
)
from churnstream.exceptions import DataError, InvalidEventError

if TYPE_CHECKING:
    from churnstream.model.scorer import Scorer
    from churnstream.predict import PredictResult
    from churnstream.spark.session import SparkOptions

logger = logging.getLogger(__name__)


def predict(
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="CSV or Parquet file of customer records (with --engine spark, also a "
            "directory of parts).",
        ),
    ] = None,
    output_path: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write the scored rows (.csv/.parquet)."),
    ] = None,
    rejects_path: Annotated[
        Path | None,
        typer.Option(
            "--rejects", help="Rejected rows with reasons (default <output>.rejects.<ext>)."
        ),
    ] = None,
    record: Annotated[
        str | None, typer.Option("--json", help="Score one JSON record and print the prediction.")
    ] = None,
    model_path: ModelPathOption = None,
    reasons: Annotated[
        bool,
        typer.Option(
            "--reasons/--no-reasons",
            help="Add each prediction's top 3 reasons (columns reason_1..3; with --json, a "
            "reasons field).",
        ),
    ] = True,
    engine: EngineOption = Engine.PANDAS,
    master: MasterOption = None,
    spark_conf: SparkConfOption = None,
) -> None:
    """Score customers with the trained model."""
    # Imported late: loading scikit-learn costs about a second that --help should not pay.
    from churnstream.model.scorer import Scorer
    from churnstream.predict import parse_record, predict_file, predict_record

    if (record is None) == (input_path is None):
        raise DataError("give either --input FILE --output FILE, or --json RECORD")
    spark_options_only_with_spark(engine, master, spark_conf)
    if record is not None and engine is Engine.SPARK:
        raise DataError("--engine spark scores files (--input); --json is one record")
    settings = effective_settings()
    # Check the cheap things first, so a typo is reported before the model loads.
    if record is not None:
        try:
            event = parse_record(record)
        except InvalidEventError as exc:
            raise DataError(f"invalid record: {exc.reason}") from exc
        scorer = Scorer.load(model_path or settings.model.models_dir)
        typer.echo(predict_record(event, scorer, reasons=reasons).decode())
        return
    assert input_path is not None  # noqa: S101 - guaranteed by the check above
    if output_path is None:
        raise DataError("--output is required with --input")
    models = model_path or settings.model.models_dir
    if engine is Engine.SPARK:
        from churnstream.spark.predict import input_layout
        from churnstream.spark.session import SparkOptions, parse_conf, preflight

        # Everything that can be wrong before a JVM starts is reported before it does.
        input_layout(input_path)
        options = SparkOptions(master=master, conf=parse_conf(spark_conf or []))
        preflight(options)
        if _spark_model_given(models):
            _predict_with_spark_model(input_path, output_path, rejects_path, models, options)
            return
        scorer = Scorer.load(models)
        result = _predict_on_spark(
            input_path, output_path, rejects_path, scorer, options, reasons=reasons
        )
    else:
        if not input_path.is_file():
            raise DataError(f"{input_path} does not exist")
        scorer = Scorer.load(models)
        result = predict_file(
            input_path,
            output_path,
            scorer,
            rejects_path=rejects_path,
            reasons=reasons,
            chunk_rows=settings.predict.chunk_rows,
        )
    rejects = f", rejects in {result.rejects}" if result.rejects else ""
    typer.echo(
        f"scored {result.scored} rows, rejected {result.rejected} "
        f"(predicted churn rate {result.churn_rate:.3f}, model {scorer.version}, "
        f"{result.seconds:.2f}s) -> {result.output}{rejects}"
    )


def _predict_on_spark(
    input_path: Path,
    output_path: Path,
    rejects_path: Path | None,
    scorer: Scorer,
    options: SparkOptions,
    *,
    reasons: bool,
) -> PredictResult:
    from churnstream.spark.predict import predict_dataset
    from churnstream.spark.session import build_session

    spark = build_session(options)
    try:
        return predict_dataset(
            spark, input_path, output_path, scorer, rejects_path=rejects_path, reasons=reasons
        )
    finally:
        spark.stop()


# -- a model from `train --engine spark` (churnstream.spark.model) ---------------------------
def _spark_model_given(models: Path) -> bool:
    from churnstream.spark.model import is_spark_model

    return is_spark_model(models)


def _predict_with_spark_model(
    input_path: Path,
    output_path: Path,
    rejects_path: Path | None,
    models: Path,
    options: SparkOptions,
) -> None:
    from churnstream.spark.model import predict_with_spark_model
    from churnstream.spark.session import build_session

    spark = build_session(options)
    try:
        result, version = predict_with_spark_model(
            spark, input_path, output_path, models, rejects_path=rejects_path
        )
    finally:
        spark.stop()
    rejects = f", rejects in {result.rejects}" if result.rejects else ""
    typer.echo(
        f"scored {result.scored} rows, rejected {result.rejected} "
        f"(predicted churn rate {result.churn_rate:.3f}, model {version}, "
        f"{result.seconds:.2f}s) -> {result.output}{rejects}"
    )
