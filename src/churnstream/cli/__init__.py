"""The ``churnstream`` command line: one module per command group, assembled here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from churnstream import __version__
from churnstream.cli._common import CliState, init_logging, new_app, set_config_path

app = new_app("Real-time and batch customer-churn scoring on Kafka.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"churnstream {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML settings file (default config/churnstream.yaml)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR.")
    ] = "INFO",
    log_format: Annotated[str, typer.Option("--log-format", help="text or json.")] = "text",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    if log_format not in ("text", "json"):
        raise typer.BadParameter("must be 'text' or 'json'", param_hint="--log-format")
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("must be DEBUG, INFO, WARNING or ERROR", param_hint="--log-level")
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"{config} does not exist", param_hint="--config")
    set_config_path(config)
    fmt: Literal["text", "json"] = "json" if log_format == "json" else "text"
    ctx.obj = CliState(log_level=log_level.upper(), log_format=fmt, quiet=quiet)
    init_logging(ctx)


def _register() -> None:
    from churnstream.cli import commands

    commands.register(app)


_register()


def main() -> None:
    app()
