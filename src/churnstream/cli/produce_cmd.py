"""`churnstream produce --mode streaming|batch`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from churnstream.cli._common import stop_signals
from churnstream.cli.options import (
    CONNECT_TIMEOUT_S,
    BrokerOption,
    ConnectTimeoutOption,
    ModeOption,
    checked_mode,
    kafka_command_settings,
    metrics_port_option,
)

logger = logging.getLogger(__name__)

#: The settings produce's flags override, by parameter name.
PRODUCE_SETTINGS = {
    "events_per_sec": "producer.events_per_sec",
    "batch_size": "producer.batch_size",
    "checkpoint_file": "producer.checkpoint_file",
}


def produce(
    ctx: typer.Context,
    mode: ModeOption = "streaming",
    broker: BrokerOption = None,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Target topic (default topics.raw).")
    ] = None,
    data_path: Annotated[
        Path | None, typer.Option("--data-path", help="CSV/Parquet of customers.")
    ] = None,
    events_per_sec: Annotated[
        float | None, typer.Option("--events-per-sec", help="Streaming rate.", min=0.001)
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Batch chunk size.", min=1)
    ] = None,
    checkpoint_file: Annotated[
        Path | None, typer.Option("--checkpoint-file", help="Batch checkpoint.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Build events, send nothing.")] = False,
    validate: Annotated[
        bool, typer.Option("--validate", help="Validate each event against the contract first.")
    ] = False,
    max_events: Annotated[
        int | None, typer.Option("--max-events", help="Stop after N events.", min=1)
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds.", min=0.001)
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Streaming: pick rows at random.")
    ] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for --sample.")] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Batch: ignore the checkpoint.")
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar.")
    ] = True,
    metrics_port: Annotated[
        int | None,
        metrics_port_option(
            "Serve Prometheus /metrics and /health on this port (0: any free port)."
        ),
    ] = None,
    connect_timeout: ConnectTimeoutOption = CONNECT_TIMEOUT_S,
) -> None:
    """Send customer events to Kafka, streaming at a steady rate or the file in chunks."""
    from churnstream.cli.live import bar_columns
    from churnstream.observability.runtime import instrument_producer
    from churnstream.streaming.events_producer import ProduceOptions, run_producer

    run_mode = checked_mode(mode)
    settings = kafka_command_settings(ctx, "producer", PRODUCE_SETTINGS)
    options = ProduceOptions(
        mode=run_mode,
        topic=topic or settings.topics.raw.name,
        data_path=data_path or settings.paths.raw_csv,
        events_per_sec=settings.producer.events_per_sec,
        batch_size=settings.producer.batch_size,
        checkpoint_file=settings.producer.checkpoint_file,
        dry_run=dry_run,
        validate=validate,
        max_events=max_events,
        duration_s=duration,
        sample=sample,
        seed=seed,
        restart=restart,
        connect_timeout_s=connect_timeout,
    )
    console = Console(stderr=True)
    show = progress and console.is_terminal and mode == "batch"
    with (
        stop_signals() as stop,
        Progress(*bar_columns("batch"), console=console, disable=not show, transient=False) as bar,
    ):
        task = bar.add_task("produce", total=None, line="")

        def on_progress(done: int, total: int | None) -> None:
            inst.metrics.on_progress(done, total)
            elapsed = bar.tasks[task].elapsed or 0.0
            rate = f"{bar.tasks[task].completed / elapsed:,.0f}/s" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, line=rate)

        inst = instrument_producer(settings)
        if inst.server is not None:
            typer.echo(f"metrics: {inst.server.url}/metrics", err=True)
        try:
            summary = run_producer(
                settings,
                options,
                stop,
                on_progress=on_progress,
                on_delivery=inst.metrics.on_delivery,
            )
        finally:
            inst.close()
    if summary.already_finished:
        typer.echo(
            f"batch already finished: all rows were sent to {options.topic} "
            f"(checkpoint {options.checkpoint_file}); pass --restart to send again"
        )
        return
    typer.echo(summary.line())
    if summary.failed:
        typer.echo(f"error: {summary.failed} event(s) were not delivered", err=True)
        raise typer.Exit(1)
