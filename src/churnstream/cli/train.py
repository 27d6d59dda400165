"""`churnstream train`: train, evaluate and write a model version under models/."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from churnstream.cli._common import one_line_errors
from churnstream.cli.options import effective_settings
from churnstream.cli.spark_options import (
    Engine,
    MasterOption,
    SparkConfOption,
    engine_option,
    spark_options_only_with_spark,
)
from churnstream.exceptions import ConfigError

if TYPE_CHECKING:
    from churnstream.model.train import TrainRun

logger = logging.getLogger(__name__)

_ROWS = (
    ("ROC AUC", "roc_auc"),
    ("PR AUC", "pr_auc"),
    ("Accuracy", "accuracy"),
    ("Precision (churn)", "precision"),
    ("Recall (churn)", "recall"),
    ("F1 (churn)", "f1"),
    ("Brier score", "brier"),
)


@one_line_errors
def train(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Labelled CSV (default paths.raw_csv)."),
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option("--models-dir", help="Where versions, latest and metrics.json go."),
    ] = None,
    algorithm: Annotated[
        str | None,
        typer.Option("--algorithm", help="ensemble (default), logreg, gbm or hgb."),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample", min=50, help="Train on a stratified sample of N rows (quick runs)."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Random state for the split, CV and models (default 42)."),
    ] = None,
    engine: Annotated[
        Engine,
        engine_option(
            "pandas (default: scikit-learn in this process) or spark: the Spark ML "
            "pipeline on the same held-out rows, plus reports/spark_vs_sklearn.{json,md}."
        ),
    ] = Engine.PANDAS,
    master: MasterOption = None,
    spark_conf: SparkConfOption = None,
    compare_with: Annotated[
        Path | None,
        typer.Option(
            "--compare-with",
            help="With --engine spark: the scikit-learn version to compare with "
            "(default: the models dir's latest).",
        ),
    ] = None,
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow",
            help="Also log the run to MLflow ($MLFLOW_TRACKING_URI, else file:./mlruns); "
            "needs the [mlflow] extra.",
        ),
    ] = False,
) -> None:
    """Train the churn model, evaluate it on a held-out 20%, and write models/<version>/."""
    # Imported late: scikit-learn and matplotlib cost about a second that --help should not pay.
    from churnstream.model.train import train_and_save

    spark_options_only_with_spark(engine, master, spark_conf)
    if engine is Engine.SPARK:
        if mlflow:
            raise ConfigError("--mlflow logs scikit-learn models only; drop it with --engine spark")
        _train_on_spark(models_dir, seed, data, sample, master, spark_conf or [], compare_with)
        return
    if mlflow:
        from churnstream.model import tracking

        tracking.require_mlflow()  # before training, not after

    settings = effective_settings(
        {
            "model.models_dir": models_dir,
            "model.algorithm": algorithm,
            "model.random_state": seed,
        }
    )
    run = train_and_save(settings, data_path=data, sample=sample)
    _print_run(run, Console(soft_wrap=True))
    if mlflow:
        logged = tracking.log_training_run(run)
        typer.echo(
            f"MLflow run {logged.run_id} ({logged.tracking_uri}), artifacts {logged.artifact_uri}"
        )
        typer.echo(f"promote it with: churnstream model promote --run-id {logged.run_id}")


def _print_run(run: TrainRun, console: Console) -> None:
    result = run.result
    test, cv = result.test_metrics, result.cv
    table = Table(title=f"model {run.version} ({result.algorithm})")
    table.add_column("metric")
    table.add_column("held-out test", justify="right")
    table.add_column(f"CV mean +- std ({result.cv_folds} folds)", justify="right")
    for name, key in _ROWS:
        cv_cell = (
            f"{cv[key + '_mean']:.4f} +- {cv[key + '_std']:.4f}" if f"{key}_mean" in cv else ""
        )
        table.add_row(name, f"{test[key]:.4f}", cv_cell)
    table.add_row("threshold", f"{result.threshold.threshold:.4f}", "max OOF F1 (train part)")
    console.print(table)
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    console.print(f"confusion matrix (held-out, rows = truth No/Yes): [[{tn}, {fp}], [{fn}, {tp}]]")
    console.print(
        f"rows: {result.train_rows} train, {result.test_rows} test; "
        f"training took {result.seconds.get('total', 0.0):.1f}s"
    )
    for goal in run.metadata["goals"]:
        state = "met" if goal["met"] else "NOT met"
        colour = "green" if goal["met"] else "red"
        console.print(
            f"goal {goal['name']} {goal['direction']} {goal['target']}: "
            f"[{colour}]{state}[/] ({goal['value']:.4f})"
        )
    for path in run.written:
        console.print(f"wrote {path}", highlight=False)


def _train_on_spark(
    models_dir: Path | None,
    seed: int | None,
    data: Path | None,
    sample: int | None,
    master: str | None,
    spark_conf: list[str],
    compare_with: Path | None,
) -> None:
    from churnstream.spark.session import parse_conf
    from churnstream.spark.training import train_on_spark

    settings = effective_settings({"model.models_dir": models_dir, "model.random_state": seed})
    done = train_on_spark(
        settings,
        master=master,
        conf=parse_conf(spark_conf),
        data_path=data,
        sample=sample,
        compare_with=compare_with,
    )
    test = done.run.metadata["metrics"]["test"]
    typer.echo(
        f"Spark model {done.run.version}: held-out ROC AUC {test['roc_auc']:.4f}, "
        f"PR AUC {test['pr_auc']:.4f}, Brier {test['brier']:.4f}, F1 {test['f1']:.4f} "
        f"({done.run.metadata['data']['test_rows']} rows, the scikit-learn trainer's); "
        f"training took {done.run.metadata['training_seconds']['total']:.1f}s"
    )
    for path in done.run.written:
        typer.echo(f"wrote {path}")
    typer.echo(
        f"models/latest unchanged: score it with `churnstream predict --engine spark "
        f"--model-path {done.run.version_dir}`"
    )
    if done.comparison is not None:
        spark_rate = done.comparison.payload["engines"]["spark"]["scoring_rows_per_s"]
        sklearn_rate = done.comparison.payload["engines"]["sklearn"]["scoring_rows_per_s"]
        typer.echo(
            f"scoring: scikit-learn {sklearn_rate:,.0f} rows/s, Spark {spark_rate:,.0f} rows/s"
        )
        typer.echo(f"wrote {done.comparison.json_path}")
        typer.echo(f"wrote {done.comparison.markdown_path}")
    else:
        typer.echo(f"no comparison: {done.comparison_skipped}", err=True)
