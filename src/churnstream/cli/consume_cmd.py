"""`churnstream consume --mode streaming|batch`: the scorer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from churnstream.cli._common import BROKER_HELP, get_settings, init_logging, stop_signals
from churnstream.exceptions import ConfigError

logger = logging.getLogger(__name__)


def consume(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option("--mode", help="streaming or batch.")] = "streaming",
    broker: Annotated[str | None, typer.Option("--broker", help=BROKER_HELP)] = None,
    input_topic: Annotated[
        str | None, typer.Option("--input-topic", help="Default topics.raw.")
    ] = None,
    output_topic: Annotated[
        str | None, typer.Option("--output-topic", help="Default topics.predictions.")
    ] = None,
    deadletter_topic: Annotated[
        str | None, typer.Option("--deadletter-topic", help="Default topics.deadletter.")
    ] = None,
    consumer_group: Annotated[
        str | None, typer.Option("--consumer-group", help="Default consumer.group_id.")
    ] = None,
    model_path: Annotated[
        Path | None, typer.Option("--model-path", help="Model version dir or models root.")
    ] = None,
    timeout_ms: Annotated[
        int | None, typer.Option("--timeout-ms", help="Batch: stop after this long idle.", min=1)
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", help="Stop after N messages.", min=1)
    ] = None,
    batch_records: Annotated[
        int | None, typer.Option("--batch-records", help="Micro-batch size cap.", min=1)
    ] = None,
    batch_wait_ms: Annotated[
        int | None, typer.Option("--batch-wait-ms", help="Micro-batch wait cap.", min=1)
    ] = None,
    summary_interval: Annotated[
        float | None,
        typer.Option("--summary-interval", help="Streaming: report every N s.", min=0.1),
    ] = None,
    reports_dir: Annotated[
        Path | None, typer.Option("--reports-dir", help="Default paths.reports_dir.")
    ] = None,
    reports: Annotated[
        bool, typer.Option("--reports/--no-reports", help="Write summary files.")
    ] = True,
    exactly_once: Annotated[
        bool,
        typer.Option(
            "--exactly-once",
            help="One Kafka transaction per batch (outputs + offsets); readers use read_committed.",
        ),
    ] = False,
    transactional_id: Annotated[
        str | None,
        typer.Option(
            "--transactional-id", help="With --exactly-once: stable id of this scorer instance."
        ),
    ] = None,
    connect_timeout: Annotated[
        float,
        typer.Option("--connect-timeout", help="Seconds to retry an unreachable broker.", min=0),
    ] = 60.0,
) -> None:
    """Score customer events with the model; predictions out, bad messages to dead letters."""
    from churnstream.pipeline.scorer import ScoreOptions, ScorerLoop
    from churnstream.reports import render_console

    if mode not in ("streaming", "batch"):
        raise ConfigError(f"--mode must be 'streaming' or 'batch', not {mode!r}")
    settings = get_settings(
        **{
            "kafka.bootstrap_servers": broker,
            "consumer.group_id": consumer_group,
            "consumer.idle_timeout_ms": timeout_ms,
            "consumer.max_batch_records": batch_records,
            "consumer.max_batch_wait_ms": batch_wait_ms,
            "consumer.summary_interval_s": summary_interval,
            "paths.reports_dir": reports_dir,
        }
    )
    init_logging(ctx, "scorer", settings)
    options = ScoreOptions(
        mode="batch" if mode == "batch" else "streaming",
        input_topic=input_topic or settings.topics.raw.name,
        output_topic=output_topic or settings.topics.predictions.name,
        deadletter_topic=deadletter_topic or settings.topics.deadletter.name,
        group_id=settings.consumer.group_id,
        model_path=model_path or settings.model.models_dir,
        idle_timeout_ms=settings.consumer.idle_timeout_ms,
        max_messages=max_messages,
        max_batch_records=settings.consumer.max_batch_records,
        max_batch_wait_ms=settings.consumer.max_batch_wait_ms,
        summary_interval_s=settings.consumer.summary_interval_s,
        reports_dir=settings.paths.reports_dir if reports else None,
        top_k=settings.consumer.top_k,
        exactly_once=exactly_once,
        transactional_id=transactional_id,
        connect_timeout_s=connect_timeout,
    )
    loop = ScorerLoop(settings, options)
    with stop_signals() as stop:
        summary = loop.run(stop)
    if summary.last_summary is not None:
        render_console(summary.last_summary, Console())
    typer.echo(summary.line())
    if summary.reports:
        typer.echo(f"reports: {', '.join(str(p) for p in summary.reports[-2:])}")
