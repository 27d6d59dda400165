"""`churnstream consume --mode streaming|batch`: the scorer."""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from churnstream.cli._common import echo_run_end, stop_signals
from churnstream.cli.options import (
    CONNECT_TIMEOUT_S,
    SCORER_SETTINGS,
    BatchRecordsOption,
    BrokerOption,
    ConnectTimeoutOption,
    ConsumerGroupOption,
    DeadletterTopicOption,
    InputTopicOption,
    ModeOption,
    OutputTopicOption,
    ReportsDirOption,
    ReportsOption,
    ScorerModelPathOption,
    checked_mode,
    kafka_command_settings,
    metrics_port_option,
)
from churnstream.cli.spark_options import (
    Engine,
    MasterOption,
    SparkConfOption,
    checkpoint_location_option,
    engine_option,
    fetch_jars_option,
    spark_options_only_with_spark,
)
from churnstream.exceptions import ConfigError

logger = logging.getLogger(__name__)

#: The hidden command ``--engine spark`` runs (churnstream.cli.spark_consume_cmd); named here,
#: not imported, so this module's imports stay those of the lean scorer.
SPARK_CONSUME = "spark-consume"
#: The settings consume's flags override, by parameter name.
CONSUME_SETTINGS = {
    **SCORER_SETTINGS,
    "timeout_ms": "consumer.idle_timeout_ms",
    "batch_records": "consumer.max_batch_records",
    "batch_wait_ms": "consumer.max_batch_wait_ms",
    "summary_interval": "consumer.summary_interval_s",
}


def consume(
    ctx: typer.Context,
    mode: ModeOption = "streaming",
    broker: BrokerOption = None,
    input_topic: InputTopicOption = None,
    output_topic: OutputTopicOption = None,
    deadletter_topic: DeadletterTopicOption = None,
    consumer_group: ConsumerGroupOption = None,
    model_path: ScorerModelPathOption = None,
    timeout_ms: Annotated[
        int | None, typer.Option("--timeout-ms", help="Batch: stop after this long idle.", min=1)
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", help="Stop after N messages.", min=1)
    ] = None,
    batch_records: BatchRecordsOption = None,
    batch_wait_ms: Annotated[
        int | None, typer.Option("--batch-wait-ms", help="Micro-batch wait cap.", min=1)
    ] = None,
    summary_interval: Annotated[
        float | None,
        typer.Option("--summary-interval", help="Streaming: report every N s.", min=0.1),
    ] = None,
    reports_dir: ReportsDirOption = None,
    reports: ReportsOption = True,
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
    connect_timeout: ConnectTimeoutOption = CONNECT_TIMEOUT_S,
    metrics_port: Annotated[
        int | None,
        metrics_port_option(
            "Serve /metrics and /health/{live,ready} on this port (0: any free port)."
        ),
    ] = None,
    shadow_model: Annotated[
        Path | None,
        typer.Option(
            "--shadow-model", help="Also score every batch with this model (a candidate)."
        ),
    ] = None,
    shadow_topic: Annotated[
        str | None,
        typer.Option("--shadow-topic", help="Shadow predictions topic (default <output>.shadow)."),
    ] = None,
    reload_interval: Annotated[
        float,
        typer.Option(
            "--reload-interval",
            min=0,
            help="Seconds between looks at models/latest for a new model (0: never reload).",
        ),
    ] = 5.0,
    reasons: Annotated[
        bool,
        typer.Option(
            "--reasons/--no-reasons",
            help="Add each prediction's top 3 reasons as the churnstream.reasons header.",
        ),
    ] = False,
    engine: Annotated[
        Engine,
        engine_option(
            "pandas (default: this process's poll loop) or spark (with --mode batch: "
            "Spark's Kafka source, trigger availableNow)."
        ),
    ] = Engine.PANDAS,
    master: MasterOption = None,
    spark_conf: SparkConfOption = None,
    checkpoint_location: Annotated[
        Path | None,
        checkpoint_location_option(
            "With --engine spark: Spark's checkpoint (default spark.checkpoint_location); "
            "a re-run resumes from it."
        ),
    ] = None,
    fetch_jars: Annotated[
        bool,
        fetch_jars_option("With --engine spark: download the Kafka connector's jars first."),
    ] = False,
    worker_index: Annotated[int, typer.Option("--worker-index", hidden=True, min=0)] = 0,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Run N scorer processes of this command in one consumer group; one that dies "
            "is restarted.",
        ),
    ] = 1,
) -> None:
    """Score customer events with the model; predictions out, bad messages to dead letters."""
    from churnstream.cli.live import LiveConsole
    from churnstream.model.lean import LeanScorer
    from churnstream.observability.runtime import instrument_scorer
    from churnstream.reports.console import render_console
    from churnstream.reports.writer import SummaryWriter
    from churnstream.streaming.loop import ScorerLoop
    from churnstream.streaming.observers import ScorerObserver, WindowCallback
    from churnstream.streaming.options import ScoreOptions

    run_mode = checked_mode(mode)
    spark_options_only_with_spark(engine, master, spark_conf)
    if engine is Engine.SPARK:
        _exec_spark_consume(
            ctx,
            mode=run_mode,
            refused={
                "--exactly-once": exactly_once,
                "--reasons": reasons,
                "--workers": workers > 1,
                "--max-messages": max_messages is not None,
                "--shadow-model": shadow_model is not None,
                "--metrics-port": metrics_port is not None,
            },
        )
        return
    if workers > 1:
        from churnstream.ops.workers import WorkerSupervisor

        result = WorkerSupervisor(worker_commands(ctx, workers)).run()
        typer.echo(result.line())
        if result.exit_code:
            raise typer.Exit(result.exit_code)
        return
    settings = kafka_command_settings(ctx, "scorer", CONSUME_SETTINGS)
    options = ScoreOptions.from_settings(
        settings,
        mode=run_mode,
        max_messages=max_messages,
        exactly_once=exactly_once,
        transactional_id=transactional_id,
        worker=worker_index,
        connect_timeout_s=connect_timeout,
        reload_interval_s=reload_interval or None,
        shadow_model_path=shadow_model,
        shadow_topic=shadow_topic,
        reasons=reasons,
    )
    if options.shadow_topic:
        from churnstream.kafka.admin import create_topics
        from churnstream.settings.sections import TopicSettings

        shadow_settings = settings.topics.predictions.model_copy(
            update={"name": options.shadow_topic}
        )
        create_topics(settings.kafka, [TopicSettings.model_validate(shadow_settings.model_dump())])
    scorer = LeanScorer.load(options.model_path)
    inst = instrument_scorer(settings, metadata=scorer.metadata, drift_in_summary=True)
    if inst.server is not None:
        typer.echo(f"metrics: {inst.server.url}/metrics", err=True)
    live = LiveConsole(options.mode)
    observers: list[ScorerObserver] = [*inst.observers, live]
    writer = SummaryWriter(settings.paths.reports_dir) if reports else None
    if writer is not None:
        writer.start()  # the report renderer, a child process, loads while the scorer does
        # Last, so the files hold whatever the observers before it added to the summary.
        observers.append(WindowCallback(writer))
    loop = ScorerLoop(settings, options, scorer=scorer, observers=observers)
    # Libraries and the model, loaded by now, live as long as the process: take them out of
    # the cyclic garbage collector, whose full passes over them (~0.2 M objects, 100-150 ms
    # here) would otherwise stall a batch now and then.
    gc.collect()
    gc.freeze()
    # The handlers stay until the last line: a SIGTERM while the reports are written would
    # otherwise meet the default action and kill the scorer at the end of its drain.
    with stop_signals(repeated="ignore") as stop:
        try:
            with live:
                summary = loop.run(stop)
        finally:
            inst.close()
            if writer is not None:
                writer.close()  # the last windows' Markdown and charts, waited for (bounded)
        if summary.last_summary is not None:
            render_console(summary.last_summary, Console())
        echo_run_end(summary.line(), writer)


def _exec_spark_consume(ctx: typer.Context, *, mode: str, refused: dict[str, bool]) -> None:
    """``--engine spark``: check the flags, then become ``churnstream spark-consume``.

    The Spark driver needs pandas, pyarrow and scikit-learn, which this (lean) scorer module
    must not import; ``os.execv`` keeps the pid, so signals and the exit code are the run's.
    """
    if mode != "batch":
        raise ConfigError("--engine spark runs --mode batch only (trigger availableNow)")
    given = [flag for flag, used in refused.items() if used]
    if given:
        raise ConfigError(f"--engine spark does not support {', '.join(given)}")
    argv = spark_consume_argv(ctx)
    logger.debug("consume --engine spark: exec %s", argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and CLI, no shell


def spark_consume_argv(ctx: typer.Context) -> list[str]:
    """``python -m churnstream [global options] spark-consume [this run's Spark options]``."""
    root = ctx.find_root()
    group = root.command
    target = group.get_command(root, SPARK_CONSUME) if hasattr(group, "get_command") else None
    if target is None:
        raise ConfigError(f"this churnstream has no {SPARK_CONSUME} command")
    names = {param.name for param in target.params}
    params = {name: value for name, value in ctx.params.items() if name in names}
    return [
        sys.executable,
        "-m",
        "churnstream",
        *_options(group, root.params, {"version"}),
        SPARK_CONSUME,
        *_options(target, params, set()),
    ]


# -- --workers N: N copies of this command under churnstream.ops.workers --------------------
def worker_commands(ctx: typer.Context, workers: int) -> list[list[str]]:
    """The argv of each worker: this same command line with ``--workers 1``.

    Rebuilt from the parsed options (global ones included), so it does not depend on how
    churnstream was started. With ``--transactional-id ID`` each worker gets ``ID-<i>``:
    transactional ids must be unique per producer.
    """
    root = ctx.find_root()
    base = [sys.executable, "-m", "churnstream", *_options(root.command, root.params, {"version"})]
    commands = []
    for index in range(workers):
        params = dict(ctx.params)
        if params.get("transactional_id"):
            params["transactional_id"] = f"{params['transactional_id']}-{index}"
        params["workers"] = 1
        params["worker_index"] = index
        if params.get("metrics_port"):
            params["metrics_port"] = params["metrics_port"] + index  # one port per worker
        name = ctx.info_name or "consume"
        commands.append([*base, name, *_options(ctx.command, params, set())])
    return commands


def _options(command: Any, values: dict[str, Any], skip: set[str]) -> list[str]:
    """Command-line options that reproduce ``values`` for ``command`` (a click command)."""
    argv: list[str] = []
    for param in command.params:
        if param.param_type_name != "option" or param.name in skip or param.name is None:
            continue
        value = values.get(param.name)
        if value is None:
            continue
        if param.is_flag:
            if param.secondary_opts:
                argv.append(param.opts[0] if value else param.secondary_opts[0])
            elif value:
                argv.append(param.opts[0])
            continue
        if isinstance(value, list | tuple):  # a repeatable option (--spark-conf)
            for item in value:
                argv.extend([param.opts[0], str(item)])
            continue
        argv.extend([param.opts[0], str(value)])
    return argv
