"""`churnstream config show`."""

from __future__ import annotations

import json
import logging

import typer
import yaml

from churnstream.cli._common import new_app
from churnstream.cli.options import effective_settings
from churnstream.settings import masked_dump

logger = logging.getLogger(__name__)

app = new_app("Inspect the effective settings.")


@app.command("show")
def show(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print the effective settings (defaults < YAML < env), secrets masked."""
    data = masked_dump(effective_settings())
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
