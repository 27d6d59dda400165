"""`churnstream model export|runs|promote`: a version's compiled arrays; MLflow runs of
`churnstream train --mlflow`, back to models/.

runs/promote need the ``mlflow`` extra; MLflow is imported only when a command runs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from churnstream.cli._common import new_app
from churnstream.cli.options import effective_settings

logger = logging.getLogger(__name__)

app = new_app(
    "Model versions: export a version's arrays; MLflow runs: list them, promote one to "
    "models/latest."
)

TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else file:./mlruns).",
    ),
]
EXPERIMENT_HELP = "MLflow experiment (default $MLFLOW_EXPERIMENT_NAME, else churnstream)."
_RUN_METRICS = ("roc_auc", "f1", "brier", "cv_roc_auc_mean")


@app.command("runs")
def runs(
    tracking_uri: TrackingUriOption = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help=EXPERIMENT_HELP)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N runs.")] = 20,
) -> None:
    """List the newest training runs logged with `churnstream train --mlflow`."""
    from churnstream.model import tracking

    found = tracking.list_runs(tracking_uri=tracking_uri, experiment=experiment, limit=limit)
    if not found:
        typer.echo(
            f"no runs at {tracking.resolve_tracking_uri(tracking_uri)}; "
            "log one with `churnstream train --mlflow`"
        )
        return
    # Plain aligned lines, not a table: run ids are long, must never be cut, and get copied.
    typer.echo(f"MLflow runs at {tracking.resolve_tracking_uri(tracking_uri)}, newest first:")
    width = max(len("model version"), *(len(run.version) for run in found))
    header = ["run id".ljust(32), "started (UTC)".ljust(19), "status".ljust(8)]
    header.append("model version".ljust(width))
    typer.echo("  ".join([*header, *_RUN_METRICS]))
    for run in found:
        started = datetime.fromtimestamp(run.started_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        values = [f"{run.metrics[m]:.4f}" if m in run.metrics else "-" for m in _RUN_METRICS]
        cells = [
            run.run_id.ljust(32),
            started,
            run.status.ljust(8),
            (run.version or "-").ljust(width),
        ]
        typer.echo("  ".join([*cells, *values]))


@app.command("promote")
def promote(
    run_id: Annotated[str, typer.Option("--run-id", help="The MLflow run to promote.")],
    tracking_uri: TrackingUriOption = None,
    models_dir: Annotated[
        Path | None,
        typer.Option("--models-dir", help="Default model.models_dir (models)."),
    ] = None,
) -> None:
    """Download a run's model into models/<version>/, verify it, then point models/latest at it.

    The model is loaded as a scorer would (trusted types only, sha256, smoke prediction)
    before models/ changes; `latest` is replaced atomically. A running scorer with the same
    models/ switches to it between batches (`consume --reload-interval`, 5 s by default).
    """
    from churnstream.model import tracking

    target = models_dir or effective_settings().model.models_dir
    result = tracking.promote(run_id, target, tracking_uri=tracking_uri)
    source = "downloaded to" if result.downloaded else "already in"
    typer.echo(f"run {result.run_id}: model {result.version} {source} {result.version_dir}")
    was = f" (was {result.previous})" if result.previous else ""
    typer.echo(f"{target / 'latest'} -> {result.version}{was}")


@app.command("export")
def export(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A model version directory, or a models root (its latest version). "
            "Default model.models_dir."
        ),
    ] = None,
) -> None:
    """Write a version's compiled arrays (compiled.npz), which `consume` loads.

    Training exports them itself; this is for versions trained before it did. The arrays
    are checked bit for bit against the pipeline before metadata.json records their hash.
    """
    from churnstream.model.export import export_version

    target = path or effective_settings().model.models_dir
    written, block = export_version(target)
    typer.echo(
        f"{written}: sha256 {block['sha256']}, identical to the pipeline on "
        f"{block['checked_rows']} rows"
    )
