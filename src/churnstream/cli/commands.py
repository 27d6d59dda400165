"""Wires each command group module into the root app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    # Imported here so that `churnstream --help` stays fast and import errors stay local.
    from churnstream.cli import config_cmd

    app.add_typer(config_cmd.app, name="config")
