"""Shared CLI plumbing: one-line errors, the app class, global options, logging, signals."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import typer

from churnstream.exceptions import ChurnstreamError
from churnstream.logging import configure_logging
from churnstream.settings import CONFIG_ENV_VAR, Settings

if TYPE_CHECKING:
    from churnstream.reports.writer import SummaryWriter

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1


@dataclass
class CliState:
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    quiet: bool = False


def one_line_errors(func: F) -> F:
    """Turn a ChurnstreamError into one readable line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ChurnstreamError as exc:
            logger.debug("command failed", exc_info=True)
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class App(typer.Typer):
    """A Typer app whose commands all report ChurnstreamError as one line."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(func: F) -> F:
            register(one_line_errors(func))
            return func

        return decorator


def new_app(help_text: str) -> App:
    return App(help=help_text, no_args_is_help=True, add_completion=False)


def cli_state(ctx: typer.Context | None) -> CliState:
    root = ctx.find_root() if ctx is not None else None
    obj = root.obj if root is not None else None
    return obj if isinstance(obj, CliState) else CliState()


def set_config_path(path: Path | None) -> None:
    if path is not None:
        os.environ[CONFIG_ENV_VAR] = str(path)


def init_logging(
    ctx: typer.Context | None,
    log_name: str | None = None,
    settings: Settings | None = None,
    *,
    console_level: str | None = None,
) -> None:
    """(Re)configure logging for a command; long-running commands also log to logs/<name>.log."""
    state = cli_state(ctx)
    log_file = None
    if log_name is not None:
        logs_dir = settings.paths.logs_dir if settings is not None else Path("logs")
        log_file = logs_dir / f"{log_name}.log"
    if console_level is not None and state.log_level == "DEBUG":
        console_level = None  # asking for DEBUG means wanting to see everything
    configure_logging(
        state.log_level,
        log_file=log_file,
        fmt=state.log_format,
        quiet=state.quiet,
        console_level=console_level,
    )


@contextlib.contextmanager
def stop_signals(*, repeated: Literal["abort", "ignore"] = "abort") -> Iterator[threading.Event]:
    """SIGINT/SIGTERM ask the running loop to drain, flush and commit. A second one aborts,
    or with ``repeated="ignore"`` is logged once and ignored: for a drain whose every step is
    bounded, which a supervisor's repeated SIGTERM must not cut short (SIGKILL still can).

    The previous handlers come back afterwards, so a command run in-process (tests) leaves
    no trace.
    """
    stop = threading.Event()
    told = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            if repeated == "abort":
                raise KeyboardInterrupt
            if not told.is_set():
                told.set()
                logger.warning("%s received again: still draining, within its bounds", name)
            return
        logger.warning("%s received: draining, flushing and committing", name)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be handled on the main thread
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def echo_run_end(line: str, writer: SummaryWriter | None) -> None:
    """A scorer run's last lines: its one-line summary, then the newest report files."""
    typer.echo(line)
    if writer is not None and writer.paths:
        typer.echo(f"reports: {', '.join(str(p) for p in writer.paths[-2:])}")
