"""`churnstream check`: fail loudly when a window summary crosses an alert threshold."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer

from churnstream.cli.options import JsonOption, ReportsDirOption, effective_settings
from churnstream.exceptions import DataError

logger = logging.getLogger(__name__)

#: Exit code when at least one threshold is crossed (1 means the check itself failed).
EXIT_CROSSED = 3


def check(
    summary: Annotated[
        Path | None, typer.Option("--summary", help="A summary_*.json written by the scorer.")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="Check the newest summary in --reports-dir.")
    ] = False,
    reports_dir: ReportsDirOption = None,
    max_dlq_rate: Annotated[
        float | None,
        typer.Option(
            "--max-dlq-rate", min=0.0, help="Dead-lettered / consumed above this fails. [0.05]"
        ),
    ] = None,
    max_churn_shift: Annotated[
        float | None,
        typer.Option(
            "--max-churn-shift",
            min=0.0,
            help="|predicted - expected churn rate| above this fails. "
            "[observability.drift_churn_rate_tolerance]",
        ),
    ] = None,
    max_psi: Annotated[
        float | None,
        typer.Option(
            "--max-psi",
            min=0.0,
            help="Any feature's PSI above this fails. [observability.drift_psi_threshold]",
        ),
    ] = None,
    min_consumed: Annotated[
        int | None,
        typer.Option("--min-consumed", min=0, help="Fewer consumed messages fails. [0]"),
    ] = None,
    max_age: Annotated[
        float | None,
        typer.Option(
            "--max-age", min=0.001, help="Fail if the window ended more than S seconds ago."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a window summary against thresholds: dead-letter rate, churn-rate shift, PSI.

    Prints one line per check; each crossed threshold is one line on stderr, and the exit
    code is 3. Drift is checked only when the scorer evaluated it (windows of at least
    observability.drift_min_samples scored messages).
    """
    from churnstream.reports.files import load_summary
    from churnstream.windows.thresholds import Thresholds, evaluate

    if (summary is None) == (not latest):
        raise typer.BadParameter("give either --summary FILE or --latest", param_hint="--summary")
    settings = effective_settings({"paths.reports_dir": reports_dir})
    path = summary if summary is not None else newest_summary(settings.paths.reports_dir)
    thresholds = Thresholds.from_settings(
        settings.observability,
        max_dlq_rate=max_dlq_rate,
        max_churn_shift=max_churn_shift,
        max_psi=max_psi,
        min_consumed=min_consumed,
        max_age_s=max_age,
    )
    data = load_summary(path)
    try:
        result = evaluate(data, thresholds, now=datetime.now(UTC))
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None

    if as_json:
        payload = {"summary": str(path), **result.as_dict()}
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        window = data.get("window", {})
        typer.echo(
            f"checked {path} (window ended {window.get('ended_at')}, "
            f"{data['counts']['consumed']:,} consumed, model {data.get('model_version')})"
        )
        for finding in result.findings:
            if not finding.crossed:
                typer.echo(f"ok       {finding.line()}")
        for note in result.notes:
            typer.echo(f"note     {note}")
    for finding in result.crossed:
        typer.echo(f"CROSSED  {finding.line()}", err=True)
    if not result.ok:
        logger.debug("%d threshold(s) crossed in %s", len(result.crossed), path)
        raise typer.Exit(EXIT_CROSSED)


def newest_summary(reports_dir: Path) -> Path:
    """The newest ``summary_*.json`` in ``reports_dir`` (by window end); DataError if none."""
    from churnstream.windows.thresholds import latest_summary_name

    try:
        names = [p.name for p in reports_dir.iterdir() if p.is_file()]
    except FileNotFoundError:
        raise DataError(f"reports directory {reports_dir} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot list {reports_dir}: {exc.strerror or exc}") from None
    name = latest_summary_name(names)
    if name is None:
        raise DataError(f"no window summary (summary_*.json) in {reports_dir}")
    return reports_dir / name
