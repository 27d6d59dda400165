"""`churnstream topics create|list|describe|dump`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from churnstream.cli._common import new_app
from churnstream.cli.options import AdminTimeoutOption, BrokerOption, IdleOption, effective_settings
from churnstream.files import atomic_write_bytes
from churnstream.kafka import admin, reader

logger = logging.getLogger(__name__)

app = new_app("Create, list, describe and dump Kafka topics.")


@app.command("create")
def create(
    broker: BrokerOption = None, timeout: AdminTimeoutOption = admin.ADMIN_TIMEOUT_S
) -> None:
    """Create the raw, predictions and dead-letter topics from settings (idempotent)."""
    outcomes = admin.ensure_topics(effective_settings(broker=broker, kafka=True), timeout_s=timeout)
    table = Table(title="topics")
    table.add_column("topic", overflow="fold")
    table.add_column("partitions", justify="right")
    table.add_column("status")
    for outcome in outcomes:
        if outcome.mismatch:
            state = f"[yellow]exists, expected {outcome.expected_partitions} partitions[/]"
        else:
            state = outcome.status
        table.add_row(outcome.name, str(outcome.partitions), state)
    Console().print(table)


@app.command("list")
def list_(
    broker: BrokerOption = None,
    include_internal: Annotated[
        bool, typer.Option("--all", help="Include internal topics (__consumer_offsets...).")
    ] = False,
    timeout: AdminTimeoutOption = admin.ADMIN_TIMEOUT_S,
) -> None:
    """List the topics on the cluster."""
    topics = admin.list_topics(
        effective_settings(broker=broker, kafka=True).kafka,
        include_internal=include_internal,
        timeout_s=timeout,
    )
    table = Table(title=f"{len(topics)} topics")
    table.add_column("topic", overflow="fold")
    table.add_column("partitions", justify="right")
    table.add_column("replication", justify="right")
    for topic in topics:
        table.add_row(topic.name, str(topic.partitions), str(topic.replication_factor))
    Console().print(table)


@app.command("describe")
def describe(
    topics: Annotated[
        list[str] | None, typer.Argument(help="Topics to describe (default: all but internal).")
    ] = None,
    broker: BrokerOption = None,
    timeout: AdminTimeoutOption = admin.ADMIN_TIMEOUT_S,
) -> None:
    """Partitions, leaders, replicas, ISR and low/high watermarks of each topic."""
    described = admin.describe_topics(
        effective_settings(broker=broker, kafka=True).kafka, topics or None, timeout_s=timeout
    )
    console = Console()
    for topic in described:
        table = Table(title=topic.name)
        for column in ("partition", "leader", "replicas", "isr", "low", "high", "messages"):
            table.add_column(column, justify="right")
        for p in topic.partitions:
            table.add_row(
                str(p.partition),
                str(p.leader),
                ",".join(map(str, p.replicas)),
                ",".join(map(str, p.isr)),
                str(p.low),
                str(p.high),
                str(p.messages),
            )
        console.print(table)
    if not described:
        typer.echo("no topics")


@app.command("dump")
def dump(
    topic: Annotated[str, typer.Option("--topic", "-t", help="Topic to read.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 100,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="JSON file to write (default stdout).")
    ] = None,
    idle: IdleOption = reader.READ_IDLE_S,
    broker: BrokerOption = None,
    timeout: AdminTimeoutOption = admin.ADMIN_TIMEOUT_S,
) -> None:
    """Read up to --limit messages from the beginning of a topic into a JSON array."""
    records = reader.dump_topic(
        effective_settings(broker=broker, kafka=True).kafka,
        topic,
        limit=limit,
        idle_s=idle,
        timeout_s=timeout,
    )
    payload = orjson.dumps(records, option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        typer.echo(payload.decode("utf-8"), nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output, payload)
    typer.echo(f"wrote {len(records)} messages from {topic} to {output}")
