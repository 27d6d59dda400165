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
