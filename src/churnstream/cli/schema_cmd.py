"""`churnstream schema export`: publish the JSON Schemas generated from our models."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from churnstream.cli._common import new_app
from churnstream.schemas import CONTRACT_MODELS

logger = logging.getLogger(__name__)

app = new_app("The wire contract's JSON Schemas, generated from churnstream's models.")


@app.command("export")
def export(
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Directory to write the schema files into.")
    ] = Path("schemas"),
) -> None:
    """Write customer_event, prediction and dead_letter JSON Schemas."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, model in CONTRACT_MODELS.items():
        path = output_dir / f"{name}.schema.json"
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        typer.echo(str(path))
