"""`churnstream report --input reports/summary_X.json`: re-render a window summary."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

logger = logging.getLogger(__name__)


def report(
    input_path: Annotated[
        Path, typer.Option("--input", "-i", help="A summary_*.json written by the scorer.")
    ],
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", "-o", help="Where to write (default: next to the JSON)."),
    ] = None,
    show: Annotated[
        bool, typer.Option("--show/--no-show", help="Also print the summary here.")
    ] = True,
) -> None:
    """Re-render the Markdown and PNG charts (churn by segment, risk, latency) of a summary."""
    from churnstream.reports.console import render_console
    from churnstream.reports.render import render_summary

    md_path, charts = render_summary(input_path, output_dir)
    if show:
        from churnstream.reports.files import load_summary

        render_console(load_summary(input_path), Console())
    typer.echo(f"wrote {md_path} and {len(charts)} chart(s)")
