"""`churnstream scorer preflight|ensure|status|stop`: a supervised streaming scorer.

For schedulers such as Airflow: ``ensure`` is idempotent (start one if none runs, keep a live
one, restart a stalled one), ``status`` exits non-zero when the scorer is down or unhealthy,
and ``preflight`` checks what a scorer needs before one is started.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer

from churnstream.cli._common import cli_state, new_app
from churnstream.cli.options import (
    AdminTimeoutOption,
    BrokerOption,
    JsonOption,
    StopTimeoutOption,
    effective_settings,
    metrics_port_option,
    model_path_option,
)
from churnstream.ops.supervisor import DEFAULT_STATE_DIR

logger = logging.getLogger(__name__)

app = new_app("Keep a streaming scorer running in the background (for schedulers).")

#: ``status``: no scorer runs.
EXIT_NOT_RUNNING = 3
#: ``status``: a scorer runs but is not live, not ready, or lags more than --max-lag.
EXIT_UNHEALTHY = 4

StateDirOption = Annotated[
    Path,
    typer.Option("--state-dir", help="Where the scorer's pid record and log live."),
]


@app.command("preflight")
def preflight(
    broker: BrokerOption = None,
    model_path: Annotated[
        Path | None, model_path_option("Model version dir or models root (model.models_dir).")
    ] = None,
    timeout: AdminTimeoutOption = 10.0,
) -> None:
    """Check that a scorer can run: the broker answers, the three topics exist, the model loads.

    One line per check; exits 1 if any fails.
    """
    from churnstream.kafka import admin
    from churnstream.model.lean import LeanScorer  # what `consume` loads

    settings = effective_settings(broker=broker, kafka=True)
    failures: list[str] = []
    try:
        topics = {
            t.name: t.partitions for t in admin.list_topics(settings.kafka, timeout_s=timeout)
        }
    except Exception as exc:  # noqa: BLE001 - any failure is reported as one line
        failures.append(f"broker {settings.kafka.bootstrap_servers}: {exc}")
        failures.append("topics: not checked (no broker)")
    else:
        typer.echo(f"ok    broker {settings.kafka.bootstrap_servers} answers")
        wanted = [settings.topics.raw, settings.topics.predictions, settings.topics.deadletter]
        missing = [t.name for t in wanted if t.name not in topics]
        if missing:
            failures.append(
                f"topics: {', '.join(missing)} missing (run `churnstream topics create`)"
            )
        else:
            found = ", ".join(f"{t.name} ({topics[t.name]})" for t in wanted)
            typer.echo(f"ok    topics {found}")
        for t in wanted:
            if t.name in topics and topics[t.name] != t.partitions:
                typer.echo(
                    f"note  {t.name} has {topics[t.name]} partitions, settings say {t.partitions}"
                )
    path = model_path or settings.model.models_dir
    try:
        scorer = LeanScorer.load(path)
    except Exception as exc:  # noqa: BLE001 - any failure is reported as one line
        failures.append(f"model {path}: {exc}")
    else:
        typer.echo(f"ok    model {scorer.version} loads and passes its smoke test ({path})")
    for failure in failures:
        typer.echo(f"FAIL  {failure}", err=True)
    if failures:
        raise typer.Exit(1)


@app.command(
    "ensure",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def ensure(
    ctx: typer.Context,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    metrics_port: Annotated[
        int | None,
        metrics_port_option(
            "The scorer's /metrics and /health port (observability.metrics_port; "
            "unset or 0: a free port, recorded)."
        ),
    ] = None,
    ready_timeout: Annotated[
        float,
        typer.Option("--ready-timeout", min=0.1, help="Seconds a new scorer has to be ready."),
    ] = 60.0,
    grace: Annotated[
        float,
        typer.Option(
            "--grace", min=0.0, help="Seconds a scorer may start up before silence means stuck."
        ),
    ] = 30.0,
) -> None:
    """Start a streaming scorer in the background unless one runs; restart a stalled one.

    Options after `--` go to `churnstream consume --mode streaming` (not --mode,
    --metrics-port or --workers), e.g. `churnstream scorer ensure --metrics-port 9108 --
    --summary-interval 60 --reports-dir reports/streaming`. A new scorer must answer
    /health/ready within --ready-timeout, else this exits 1 (the scorer is left running).
    """
    from churnstream.ops.devbroker import find_free_port
    from churnstream.ops.supervisor import Action, Supervisor

    settings = effective_settings(metrics_port=metrics_port)
    host = settings.observability.metrics_host
    port = settings.observability.metrics_port or find_free_port()
    state = cli_state(ctx)
    global_args = ["--log-level", state.log_level, "--log-format", state.log_format]
    outcome = Supervisor(state_dir).ensure(
        list(ctx.args),
        metrics_port=port,
        metrics_host="127.0.0.1" if host in ("0.0.0.0", "") else host,  # noqa: S104
        global_args=global_args,
        ready_timeout_s=ready_timeout,
        grace_s=grace,
    )
    rec = outcome.record
    ready = (
        "no health answer yet"
        if outcome.ready is None
        else ("ready: " if outcome.ready.ok else "NOT ready: ") + outcome.ready.describe()
    )
    if outcome.action is Action.KEEP:
        up = _duration(time.time() - rec.started_at)
        typer.echo(f"scorer already running: pid {rec.pid}, up {up}, {rec.metrics_url}; {ready}")
    else:
        verb = "restarted" if outcome.action is Action.RESTART else "started"
        typer.echo(
            f"scorer {verb} ({outcome.reason}): pid {rec.pid}, {rec.metrics_url}, "
            f"log {rec.log_file}; {ready}"
        )


@app.command("status")
def status(
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    max_lag: Annotated[
        int | None,
        typer.Option("--max-lag", min=0, help="Also fail when the total lag is above this."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Is the supervised scorer running, live and ready? With its lag and counters.

    Exits 0 when it is running, live and ready (and within --max-lag), 3 when no scorer
    runs, 4 when it runs but is unhealthy.
    """
    from churnstream.ops.supervisor import Supervisor

    supervisor = Supervisor(state_dir)
    state = supervisor.status()
    problems: list[str] = []
    if not state.alive:
        problems.append(f"no scorer is running (state dir {state_dir})")
    else:
        if state.live is None or state.ready is None:
            problems.append("its health endpoint does not answer")
        else:
            if not state.live.ok:
                problems.append(f"not live: {state.live.describe()}")
            if not state.ready.ok:
                problems.append(f"not ready: {state.ready.describe()}")
        lag = state.ready.checks.get("lag") if state.ready is not None else None
        if max_lag is not None and lag is not None and lag > max_lag:
            problems.append(f"lag {int(lag):,} > --max-lag {max_lag:,}")

    if as_json:
        payload = {**state.as_dict(), "ok": not problems, "problems": problems}
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    elif state.alive and state.record is not None:
        rec = state.record
        up = _duration(state.uptime_s or 0.0)
        typer.echo(f"scorer   running: pid {rec.pid}, up {up}, metrics {rec.metrics_url}")
        if state.ready is not None:
            word = "ready" if state.ready.ok else "NOT ready"
            typer.echo(f"health   {word}: {state.ready.describe()}")
        c = state.counters
        if c:
            typer.echo(
                f"counters consumed {c.get('consumed', 0):,.0f}, scored {c.get('scored', 0):,.0f}, "
                f"dead-lettered {c.get('dead_lettered', 0):,.0f}, "
                f"redelivered batches {c.get('redelivered_batches', 0):,.0f}"
            )
        typer.echo(f"log      {rec.log_file}")
    else:
        typer.echo(f"scorer   not running (state dir {state_dir})")
        if state.record is not None:
            typer.echo(f"last log {supervisor.log_tail()}")
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    if not state.alive:
        raise typer.Exit(EXIT_NOT_RUNNING)
    if problems:
        raise typer.Exit(EXIT_UNHEALTHY)


@app.command("stop")
def stop(
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    timeout: StopTimeoutOption = 30.0,
) -> None:
    """Stop the supervised scorer: SIGTERM (it drains, flushes, commits), then SIGKILL."""
    from churnstream.ops.supervisor import Supervisor

    record = Supervisor(state_dir).stop(timeout)
    if record is None:
        typer.echo(f"no scorer was running (state dir {state_dir})")
    else:
        typer.echo(f"scorer stopped (pid {record.pid}); log {record.log_file}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
