"""Wires each command group module into the root app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from churnstream.cli import config_cmd, data_cmd, predict_cmd, schema_cmd

    app.add_typer(config_cmd.app, name="config")
    app.add_typer(data_cmd.app, name="data")
    app.add_typer(schema_cmd.app, name="schema")
    app.command("predict")(predict_cmd.predict)
