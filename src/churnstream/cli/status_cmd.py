"""`churnstream status`: broker, topics, consumer-group lag, model and dead letters."""

from __future__ import annotations

import logging
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from churnstream.cli.options import (
    AdminTimeoutOption,
    BrokerOption,
    JsonOption,
    ModelsDirOption,
    effective_settings,
)
from churnstream.observability.status import ClusterStatus, lag_rows

logger = logging.getLogger(__name__)

EXIT_UNREACHABLE = 3


def status(
    broker: BrokerOption = None,
    models_dir: ModelsDirOption = None,
    dead_letters: Annotated[
        bool,
        typer.Option(
            "--dead-letters/--no-dead-letters",
            help="Read the dead-letter topic from the start to count letters by type.",
        ),
    ] = True,
    timeout: AdminTimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """One screen: broker reachable, topics and end offsets, group lag, model, dead letters.

    Exits 3 when no broker answers (the rest of the screen is still printed).
    """
    from churnstream.observability.cluster import collect_status

    settings = effective_settings(broker=broker, kafka=True)
    result = collect_status(
        settings, models_dir=models_dir, dead_letters=dead_letters, timeout_s=timeout
    )
    if as_json:
        typer.echo(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        render(result, Console())
    if not result.reachable:
        raise typer.Exit(EXIT_UNREACHABLE)


def render(result: ClusterStatus, console: Console) -> None:
    """Print a status overview (plain text cells: names are never parsed as markup)."""
    if result.reachable:
        console.print(Text(f"broker   {result.bootstrap}: reachable ({result.brokers} broker(s))"))
    else:
        console.print(Text(f"broker   {result.bootstrap}: UNREACHABLE - {result.error}"))
    model = result.model
    if model is not None:
        if model.version is None:
            console.print(Text(f"model    none ({model.error})"))
        else:
            auc = "" if model.roc_auc is None else f", ROC AUC {model.roc_auc:.4f}"
            threshold = "" if model.threshold is None else f", threshold {model.threshold:.4f}"
            console.print(Text(f"model    {model.version}{threshold}{auc} ({model.path})"))
    if not result.reachable:
        return

    topics = Table(title="topics", title_justify="left")
    for column, justify in (("topic", "left"), ("role", "left"), ("partitions", "right")):
        topics.add_column(column, justify=justify)  # type: ignore[arg-type]
    topics.add_column("end offsets", justify="right")
    topics.add_column("messages", justify="right")
    for topic in result.topics:
        topics.add_row(
            Text(topic.name),
            Text(topic.role or ""),
            str(topic.partitions),
            Text(" ".join(str(o) for o in topic.end_offsets)),
            f"{topic.messages:,}",
        )
    console.print(topics)

    groups = Table(title="consumer groups", title_justify="left")
    for column in ("group", "state", "topic", "lag", "note"):
        groups.add_column(column, justify="right" if column == "lag" else "left")
    for row in lag_rows(result.groups):
        groups.add_row(*(Text(cell) for cell in row))
    if result.groups:
        console.print(groups)
    else:
        console.print(Text("consumer groups: none"))

    if result.dead_letters is not None:
        dl = result.dead_letters
        by_type = ", ".join(f"{k} {v:,}" for k, v in dl["by_type"].items()) or "none"
        by_code = ", ".join(f"{k} {v:,}" for k, v in dl["by_code"].items()) or "none"
        dup = f" ({dl['duplicates']:,} duplicate(s) skipped)" if dl["duplicates"] else ""
        console.print(Text(f"dead letters in {result.deadletter_topic}: {dl['total']:,}{dup}"))
        console.print(Text(f"  by type: {by_type}"))
        console.print(Text(f"  by code: {by_code}"))
    for note in result.notes:
        console.print(Text(f"note: {note}"))
