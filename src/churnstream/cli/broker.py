"""`churnstream broker fetch|start|stop|status`: the embedded single-node broker."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Literal

import typer

from churnstream.cli._common import new_app
from churnstream.cli.options import JsonOption, StopTimeoutOption, effective_settings
from churnstream.ops import devbroker
from churnstream.settings.sections import BrokerSettings

logger = logging.getLogger(__name__)

app = new_app("Run the embedded Kafka broker (Apache Kafka from Maven jars, or tansu).")

PortOption = Annotated[
    int | None, typer.Option("--port", help="Client port (default broker.port, 19092).")
]
StateDirOption = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Where the pid file, logs and data live (broker.state_dir)."),
]


def _settings(
    port: int | None = None,
    state_dir: Path | None = None,
    engine: str | None = None,
    timeout_s: float | None = None,
) -> BrokerSettings:
    return effective_settings(
        {
            "broker.port": port,
            "broker.state_dir": state_dir,
            "broker.engine": engine,
            "broker.start_timeout_s": timeout_s,
        }
    ).broker


@app.command("fetch")
def fetch(
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if complete.")
    ] = False,
) -> None:
    """Download Apache Kafka's jars with Maven, once (skipped when already complete)."""
    settings = _settings()
    already = devbroker.jars_complete(settings) and not force
    jars_dir = devbroker.fetch_jars(settings, force=force)
    count = len(list(jars_dir.glob("*.jar")))
    verb = "already present" if already else "fetched"
    typer.echo(f"Kafka {settings.kafka_version} jars {verb}: {count} jars in {jars_dir}")


@app.command("start")
def start(
    engine: Annotated[
        Literal["auto", "kafka", "tansu"] | None,
        typer.Option("--engine", help="auto (Kafka if java is found, else tansu), kafka or tansu."),
    ] = None,
    port: PortOption = None,
    state_dir: StateDirOption = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds to wait until it answers.")
    ] = None,
) -> None:
    """Start the broker in the background and wait until it answers; no-op if running."""
    settings = _settings(port, state_dir, engine, timeout)
    before = devbroker.status(settings)
    status = devbroker.start(settings)
    if before.running:
        typer.echo(
            f"broker already running: {status.engine} at {status.bootstrap} (pid {status.pid})"
        )
        return
    took = f" in {status.start_s:.1f}s" if status.start_s is not None else ""
    typer.echo(
        f"broker started{took}: {status.engine} at {status.bootstrap} "
        f"(pid {status.pid}, log {status.log_file})"
    )


@app.command("stop")
def stop(
    state_dir: StateDirOption = None,
    port: PortOption = None,
    timeout: StopTimeoutOption = devbroker.STOP_TIMEOUT_S,
) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after --timeout)."""
    settings = _settings(port, state_dir)
    if devbroker.stop(settings, timeout_s=timeout):
        typer.echo("broker stopped")
    else:
        typer.echo(f"broker was not running (state dir {settings.state_dir})")


@app.command("status")
def status(
    state_dir: StateDirOption = None,
    port: PortOption = None,
    as_json: JsonOption = False,
) -> None:
    """Say whether the broker runs, with its engine, pid, bootstrap and log file."""
    settings = _settings(port, state_dir)
    st = devbroker.status(settings)
    foreign = not st.running and devbroker.is_answering(st.bootstrap)
    if as_json:
        data = {
            "running": st.running,
            "answering": st.answering or foreign,
            "engine": st.engine,
            "pid": st.pid,
            "bootstrap": st.bootstrap,
            "state_dir": str(st.state_dir),
            "log_file": str(st.log_file) if st.log_file else None,
        }
        typer.echo(json.dumps(data, indent=2))
        return
    if st.running:
        answering = "answering" if st.answering else "NOT answering yet"
        typer.echo(f"running: {st.engine} at {st.bootstrap}, pid {st.pid}, {answering}")
        typer.echo(f"log: {st.log_file}")
    elif foreign:
        typer.echo(f"not running from {st.state_dir}, but a Kafka broker answers at {st.bootstrap}")
    else:
        typer.echo(f"not running (state dir {st.state_dir})")
        if st.log_file is not None:
            typer.echo(f"last log: {st.log_file}")
