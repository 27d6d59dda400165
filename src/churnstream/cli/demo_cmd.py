"""`churnstream demo`: what `make demo` runs."""

from __future__ import annotations

import logging
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from churnstream.cli._common import stop_signals
from churnstream.cli.options import BrokerOption, kafka_command_settings, metrics_port_option

logger = logging.getLogger(__name__)


def demo(
    ctx: typer.Context,
    duration: Annotated[
        float, typer.Option("--duration", help="Seconds of streaming.", min=1)
    ] = 60.0,
    events_per_sec: Annotated[
        float, typer.Option("--events-per-sec", help="Producer rate.", min=0.1)
    ] = 10.0,
    broker: BrokerOption = None,
    metrics_port: Annotated[
        int | None, metrics_port_option("Serve /metrics during the demo.")
    ] = None,
    keep_broker: Annotated[
        bool,
        typer.Option("--keep-broker", help="Leave an embedded broker the demo started running."),
    ] = False,
) -> None:
    """Start what is needed, stream events through the scorer, print the summary."""
    from churnstream.cli.live import logs_above
    from churnstream.ops.demo import DemoState, run_demo
    from churnstream.reports.console import render_console

    # The demo narrates on the console; the full INFO log goes to logs/demo.log.
    settings = kafka_command_settings(ctx, "demo", console_level="WARNING")
    console = Console()

    def say(text: str) -> None:
        console.print(f"[bold cyan]demo[/] {text}")

    def table(state: DemoState) -> Table:
        elapsed = time.monotonic() - state.started
        grid = Table(title="churnstream demo: live", show_header=True, header_style="bold")
        for column in ("elapsed", "produced", "consumed", "scored", "dead-lettered", "scored/s"):
            grid.add_column(column, justify="right")
        rate = state.scored / elapsed if elapsed > 0 else 0.0
        grid.add_row(
            f"{elapsed:.0f}s / {duration:.0f}s",
            str(state.produced),
            str(state.consumed),
            str(state.scored),
            str(state.dead_lettered),
            f"{rate:.1f}",
        )
        return grid

    live = Live(table(DemoState()), console=console, refresh_per_second=4, transient=False)
    with stop_signals() as stop, logs_above(live):
        result = run_demo(
            settings,
            duration_s=duration,
            events_per_sec=events_per_sec,
            stop=stop,
            say=say,
            on_tick=lambda state: live.update(table(state)),
            keep_broker=keep_broker,
        )
    console.print()
    if result.scorer.last_summary is not None:
        render_console(result.scorer.last_summary, console)
    say(result.producer.line())
    say(result.scorer.line())
    for path in result.reports[-2:]:
        say(f"report: {path}")
    say(f"logs: {settings.paths.logs_dir}/")
    if result.producer.failed:
        raise typer.Exit(1)
