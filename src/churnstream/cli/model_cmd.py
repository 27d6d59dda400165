"""`churnstream model ...`: a version's compiled arrays (export); MLflow runs of
`churnstream train --mlflow`, back to models/; and champion/challenger in the MLflow Model
Registry (register, evaluate, compare, shadow, promote, rollback, status:
:mod:`churnstream.lifecycle`).

Everything but export needs the ``mlflow`` extra; MLflow is imported only when a command runs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from churnstream.cli._common import new_app
from churnstream.cli.options import JsonOption, ModelsDirOption, effective_settings

if TYPE_CHECKING:
    from churnstream.lifecycle.promotion import Moved
    from churnstream.settings import Settings

logger = logging.getLogger(__name__)

app = new_app(
    "Model versions: export a version's arrays; MLflow runs: list them, promote one to "
    "models/latest; champion and challenger in the MLflow Model Registry."
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
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Labelled CSV for the held-out gate (default: the challenger's training file, "
        "whose held-out split is rebuilt; any other file is held out whole).",
    ),
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="Wait for the shadow window to end instead of exit 4.")
]
VersionPathArgument = Annotated[
    Path | None,
    typer.Argument(help="A models root (its latest) or a version directory [models]."),
]


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
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="The MLflow run to promote to models/latest as it is (no gate). Without it: "
            "promote the registry's challenger through the gate.",
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
    models_dir: ModelsDirOption = None,
    data: DataOption = None,
    wait: WaitOption = False,
) -> None:
    """Download a run's model into models/<version>/, verify it, then point models/latest at it.

    The model is loaded as a scorer would (trusted types only, sha256, smoke prediction)
    before models/ changes; `latest` is replaced atomically. A running scorer with the same
    models/ switches to it between batches (`consume --reload-interval`, 5 s by default).

    Without --run-id: the registry's challenger becomes champion only after it passed the
    held-out gate and the shadow gate against the current champion (each is run now if it
    has not passed yet; exit 3 when refused, 4 while the shadow window is open).
    """
    if run_id is None:
        _promote_challenger(tracking_uri, models_dir, data, wait)
        return
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


def _settings(tracking_uri: str | None, models_dir: Path | None = None) -> Settings:
    return effective_settings(
        {"promotion.tracking_uri": tracking_uri, "model.models_dir": models_dir}
    )


@app.command("register")
def register(
    path: VersionPathArgument = None,
    tracking_uri: TrackingUriOption = None,
    models_dir: ModelsDirOption = None,
    bootstrap: Annotated[
        bool,
        typer.Option(
            "--bootstrap",
            help="If there is no champion yet, make this one champion (and models/latest).",
        ),
    ] = False,
) -> None:
    """Register a trained model (skops, trusted types) in the MLflow Model Registry as the
    challenger; its shadow window starts now."""
    from churnstream.lifecycle import promotion

    settings = _settings(tracking_uri, models_dir)
    done = promotion.register(settings, path or settings.model.models_dir, bootstrap=bootstrap)
    typer.echo(
        f"registered {done.version.model_version} as {done.version.name} "
        f"v{done.version.number}, alias {done.alias}"
    )


@app.command("evaluate")
def evaluate(
    path: VersionPathArgument = None,
    tracking_uri: TrackingUriOption = None,
    data: DataOption = None,
) -> None:
    """Load a trained model as a scorer would, score its held-out rows again, and refuse it
    (exit 3) under promotion.min_roc_auc. Logged as an MLflow run."""
    from churnstream.lifecycle import promotion

    settings = _settings(tracking_uri)
    done = promotion.evaluate(settings, path or settings.model.models_dir, data)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in done.metrics.items())
    typer.echo(f"{done.version}: {shown} on the {done.source}")


@app.command("compare")
def compare(
    tracking_uri: TrackingUriOption = None,
    data: DataOption = None,
) -> None:
    """Held-out gate: the challenger must beat the champion by promotion.min_roc_auc_gain
    (ROC AUC) and promotion.min_brier_gain (Brier). Exit 3 when it does not."""
    from churnstream.lifecycle import promotion

    typer.echo(promotion.compare(_settings(tracking_uri), data).line())


@app.command("shadow")
def shadow(
    tracking_uri: TrackingUriOption = None,
    wait: WaitOption = False,
) -> None:
    """Shadow gate: both models on the input topic's events of the challenger's shadow window
    (promotion.shadow_window_s from its registration). Exit 3 when refused, 4 while open."""
    from churnstream.lifecycle import promotion

    typer.echo(promotion.run_shadow(_settings(tracking_uri), wait=wait).line())


def _promote_challenger(
    tracking_uri: str | None, models_dir: Path | None, data: Path | None, wait: bool
) -> None:
    from churnstream.lifecycle import promotion
    from churnstream.lifecycle.gate import HOLDOUT, SHADOW
    from churnstream.lifecycle.registry import CHALLENGER, CHAMPION

    settings = _settings(tracking_uri, models_dir)
    registry = promotion.open_registry(settings)
    champion = registry.require(CHAMPION)  # "no champion" first: nothing can be promoted
    challenger = registry.require(CHALLENGER)
    promotion.check_not_refused(challenger, champion)
    pending = promotion.gates_pending(challenger, champion)
    if HOLDOUT in pending:
        typer.echo(promotion.compare(settings, data).line())
    if SHADOW in pending:
        typer.echo(promotion.run_shadow(settings, wait=wait).line())
    _echo_moved(settings, promotion.promote(settings), "was")


def _echo_moved(settings: Settings, moved: Moved, how: str) -> None:
    """The champion now, the one it replaced (``how``: "was", "rolled back from"), and latest."""
    typer.echo(
        f"champion: {moved.current.label} ({how} {moved.previous.label}); "
        f"{settings.model.models_dir / 'latest'} -> {moved.current.model_version}"
    )


@app.command("rollback")
def rollback(tracking_uri: TrackingUriOption = None, models_dir: ModelsDirOption = None) -> None:
    """Move the champion alias (and models/latest) back to the previous champion."""
    from churnstream.lifecycle import promotion

    settings = _settings(tracking_uri, models_dir)
    _echo_moved(settings, promotion.rollback(settings), "rolled back from")


@app.command("status")
def status(
    tracking_uri: TrackingUriOption = None,
    as_json: JsonOption = False,
) -> None:
    """The registry's champion and challenger, the challenger's gates, the champion history."""
    import json

    from churnstream.lifecycle import promotion
    from churnstream.lifecycle.registry import CHALLENGER, CHAMPION

    settings = _settings(tracking_uri)
    registry = promotion.open_registry(settings)
    payload: dict[str, Any] = {"registered_model": registry.name, "tracking_uri": registry.uri}
    for alias in (CHAMPION, CHALLENGER):
        rv = registry.alias(alias)
        payload[alias] = (
            None
            if rv is None
            else {
                "version": rv.number,
                "model_version": rv.model_version,
                "gates": {
                    k.removeprefix(promotion.TAG_GATE): v
                    for k, v in rv.tags.items()
                    if k.startswith(promotion.TAG_GATE)
                },
            }
        )
    payload["champion_history"] = registry.history() if payload[CHAMPION] else []
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"{registry.name} at {registry.uri}")
    for alias in (CHAMPION, CHALLENGER):
        entry = payload[alias]
        if entry is None:
            typer.echo(f"{alias}: none")
            continue
        gates = ", ".join(f"{k} {v}" for k, v in entry["gates"].items()) or "no gates run"
        shown = f"v{entry['version']} ({entry['model_version']})"
        typer.echo(f"{alias}: {shown}" + (f"; {gates}" if alias == CHALLENGER else ""))
    typer.echo(f"champion history: {', '.join('v' + v for v in payload['champion_history'])}")
