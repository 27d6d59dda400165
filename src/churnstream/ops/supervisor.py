"""Keep one streaming scorer alive in the background: start, check, restart, stop.

For schedulers (the Airflow DAG ``churnstream_streaming``) and for hosts without systemd.
``ensure`` starts ``churnstream consume --mode streaming --metrics-port P ...`` detached (own
session, output to a log file, a JSON pid record in the state dir) unless one already runs,
and restarts one that is alive but stalled (its ``/health/live`` says 503) or whose health
endpoint stays silent past a grace period. A freshly started scorer must answer
``/health/ready`` within a deadline. ``stop`` sends SIGTERM (the scorer drains, flushes and
commits), then SIGKILL after a timeout. ``status`` reads the pid record, ``/health/ready``
and ``/metrics``.

The state dir is a :class:`churnstream.ops.processes.ProcessState`: ``scorer.json`` (the
common pid record, whose start time from ``/proc`` keeps a recycled pid from being taken for
our scorer, plus the command line and metrics address), ``scorer.out`` and the lock that
serialises start and stop. The scorer's endpoints are read by
:mod:`churnstream.ops.scorer_health`.

The pure parts (:class:`ScorerRecord`, :func:`consume_argv`, :func:`decide`) are unit-tested
without processes.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churnstream.exceptions import ChurnstreamError
from churnstream.ops.processes import PidRecord, ProcessState
from churnstream.ops.scorer_health import HealthAnswer, fetch_counters, fetch_health

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(".churnstream/scorer")
RECORD_FILE = "scorer.json"
LOG_FILE = "scorer.out"
#: How long to wait for /health/ready after a start.
READY_TIMEOUT_S = 60.0
#: A scorer this young may not serve its health endpoint yet (model loading, group join).
STARTUP_GRACE_S = 30.0
#: After SIGTERM the scorer drains its batch and commits (under 10 s, tested).
STOP_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 3.0
POLL_INTERVAL_S = 0.25
LOG_TAIL_LINES = 5
LOG_COLUMNS = "160"
#: Options ``ensure`` sets itself; given among the consume options they are refused.
RESERVED_OPTIONS = ("--mode", "--metrics-port", "--workers", "--worker-index")
_START_MARKER = "--- churnstream scorer supervisor: starting"


class SupervisorError(ChurnstreamError):
    """The supervised scorer could not be started, reached or stopped."""


# -- pure parts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScorerRecord:
    """What the supervisor remembers about the scorer it started (``scorer.json``)."""

    pid: int
    argv: list[str]
    consume_args: list[str]
    metrics_port: int
    log_file: str
    started_at: float
    #: Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22).
    proc_start: int | None = None
    metrics_host: str = "127.0.0.1"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_host}:{self.metrics_port}"

    @staticmethod
    def fields(
        argv: Sequence[str], consume_args: Sequence[str], metrics_port: int, metrics_host: str
    ) -> dict[str, Any]:
        """The scorer's own fields of its pid record."""
        return {
            "argv": list(argv),
            "consume_args": list(consume_args),
            "metrics_port": metrics_port,
            "metrics_host": metrics_host,
        }

    def to_pid_record(self) -> PidRecord:
        return PidRecord(
            pid=self.pid,
            log_file=Path(self.log_file),
            started_at=self.started_at,
            proc_start=self.proc_start,
            fields=self.fields(self.argv, self.consume_args, self.metrics_port, self.metrics_host),
        )

    @classmethod
    def from_pid_record(cls, record: PidRecord) -> ScorerRecord:
        """ValueError when the scorer's fields are missing or wrong."""
        data = record.fields
        try:
            return cls(
                pid=record.pid,
                argv=[str(a) for a in data["argv"]],
                consume_args=[str(a) for a in data["consume_args"]],
                metrics_port=int(data["metrics_port"]),
                log_file=str(record.log_file),
                started_at=record.started_at,
                proc_start=record.proc_start,
                metrics_host=str(data.get("metrics_host", "127.0.0.1")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a scorer record: {exc}") from None

    def to_json(self) -> str:
        return self.to_pid_record().to_json()

    @classmethod
    def from_json(cls, text: str) -> ScorerRecord:
        """Parse a record; ValueError when it is not one."""
        try:
            record = PidRecord.from_json(text)
        except ValueError as exc:
            raise ValueError(f"not a scorer record: {exc}") from None
        return cls.from_pid_record(record)


def check_consume_args(consume_args: Sequence[str]) -> None:
    """Refuse consume options that the supervisor sets itself (ValueError)."""
    for arg in consume_args:
        name = arg.split("=", 1)[0]
        if name in RESERVED_OPTIONS:
            raise ValueError(
                f"{name} is set by the supervisor; leave it out of the consume options"
            )


def consume_argv(
    python: str,
    consume_args: Sequence[str],
    metrics_port: int,
    *,
    global_args: Sequence[str] = (),
) -> list[str]:
    """The scorer's command line: ``python -m churnstream [global] consume --mode streaming``."""
    check_consume_args(consume_args)
    return [
        python,
        "-m",
        "churnstream",
        *global_args,
        "consume",
        "--mode",
        "streaming",
        "--metrics-port",
        str(metrics_port),
        *consume_args,
    ]


class Action(enum.Enum):
    KEEP = "keep"
    START = "start"
    RESTART = "restart"


def decide(
    *, alive: bool, live: bool | None, age_s: float, grace_s: float = STARTUP_GRACE_S
) -> tuple[Action, str]:
    """What ``ensure`` does with the current scorer, and why.

    ``alive``: the recorded process runs. ``live``: its ``/health/live`` answer (True 200,
    False 503, None no answer). ``age_s``: seconds since it was started.
    """
    if not alive:
        return Action.START, "no scorer is running"
    if live is True:
        return Action.KEEP, "the scorer is running and live"
    if live is False:
        return Action.RESTART, "the scorer is stalled (/health/live answers 503)"
    if age_s < grace_s:
        return Action.KEEP, f"the scorer started {age_s:.0f}s ago and is still starting"
    return (
        Action.RESTART,
        f"the scorer's health endpoint has not answered for {age_s:.0f}s (> {grace_s:g}s)",
    )


# -- processes and HTTP ----------------------------------------------------------------------


@dataclass(frozen=True)
class ScorerState:
    """What ``status`` found."""

    record: ScorerRecord | None
    alive: bool
    live: HealthAnswer | None = None
    ready: HealthAnswer | None = None
    counters: Mapping[str, float] = field(default_factory=dict)

    @property
    def uptime_s(self) -> float | None:
        return None if self.record is None else max(0.0, time.time() - self.record.started_at)

    def as_dict(self) -> dict[str, Any]:
        rec = self.record
        return {
            "running": self.alive,
            "pid": rec.pid if rec and self.alive else None,
            "metrics_url": rec.metrics_url if rec else None,
            "log_file": rec.log_file if rec else None,
            "uptime_s": self.uptime_s if self.alive else None,
            "consume_args": rec.consume_args if rec else None,
            "live": None if self.live is None else self.live.ok,
            "ready": None if self.ready is None else self.ready.ok,
            "checks": dict(self.ready.checks) if self.ready else {},
            "counters": dict(self.counters),
        }


@dataclass(frozen=True)
class EnsureOutcome:
    action: Action
    reason: str
    record: ScorerRecord
    ready: HealthAnswer | None


class Supervisor:
    """Start, check and stop the scorer of one state dir."""

    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        *,
        python: str = sys.executable,
        http_timeout_s: float = HTTP_TIMEOUT_S,
    ) -> None:
        self.state_dir = state_dir.absolute()  # the record names absolute paths
        self.python = python
        self.http_timeout_s = http_timeout_s
        self.state = ProcessState(
            self.state_dir,
            record_file=RECORD_FILE,
            log_file=LOG_FILE,
            start_marker=_START_MARKER,
            what="the scorer",
            error=SupervisorError,
        )

    @property
    def record_path(self) -> Path:
        return self.state.record_path

    @property
    def log_path(self) -> Path:
        return self.state.log_path

    # -- queries ----------------------------------------------------------------------------
    def read_record(self) -> ScorerRecord | None:
        return self.state.read_as(ScorerRecord.from_pid_record)

    def is_alive(self, record: ScorerRecord) -> bool:
        """The recorded process runs and is still the one we started (not a recycled pid)."""
        return record.to_pid_record().is_running()

    def health(self, record: ScorerRecord, which: str) -> HealthAnswer | None:
        """``/health/<which>`` of the scorer; None when nothing answers."""
        return fetch_health(record.metrics_url, which, self.http_timeout_s)

    def counters(self, record: ScorerRecord) -> dict[str, float]:
        return fetch_counters(record.metrics_url, self.http_timeout_s)

    def status(self) -> ScorerState:
        record = self.read_record()
        if record is None or not self.is_alive(record):
            return ScorerState(record=record, alive=False)
        return ScorerState(
            record=record,
            alive=True,
            live=self.health(record, "live"),
            ready=self.health(record, "ready"),
            counters=self.counters(record),
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the scorer wrote since its last start, joined with ' | '."""
        return self.state.log_tail(lines, skip=lambda line: line.startswith("$ "))

    # -- actions ----------------------------------------------------------------------------
    def ensure(
        self,
        consume_args: Sequence[str],
        *,
        metrics_port: int,
        metrics_host: str = "127.0.0.1",
        global_args: Sequence[str] = (),
        ready_timeout_s: float = READY_TIMEOUT_S,
        grace_s: float = STARTUP_GRACE_S,
    ) -> EnsureOutcome:
        """Start the scorer unless a live one runs; restart a stalled or silent one.

        After a (re)start, waits until ``/health/ready`` answers 200. Raises SupervisorError
        if the new process exits, or is not ready within ``ready_timeout_s`` (it is left
        running then: a later ``ensure`` or ``status`` sees how it fares).
        """
        try:
            check_consume_args(consume_args)
        except ValueError as exc:
            raise SupervisorError(str(exc)) from None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.state.lock():
            record = self.read_record()
            alive = record is not None and self.is_alive(record)
            live: HealthAnswer | None = None
            if record is not None and alive:
                live = self.health(record, "live")
            age = 0.0 if record is None else time.time() - record.started_at
            action, reason = decide(
                alive=alive, live=None if live is None else live.ok, age_s=age, grace_s=grace_s
            )
            if record is not None and not alive:
                logger.warning(
                    "the scorer started at %s (pid %d) is gone; its log says: %s",
                    time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.started_at)),
                    record.pid,
                    self.log_tail(),
                )
                reason = f"the previous scorer (pid {record.pid}) is gone"
            if action is Action.KEEP and record is not None:
                if list(record.consume_args) != list(consume_args):
                    logger.warning(
                        "the running scorer (pid %d) has consume options %s, not %s; "
                        "`churnstream scorer stop` first to apply them",
                        record.pid,
                        record.consume_args,
                        list(consume_args),
                    )
                ready = self.health(record, "ready")
                return EnsureOutcome(action, reason, record, ready)
            if action is Action.RESTART and record is not None:
                logger.warning("restarting the scorer (pid %d): %s", record.pid, reason)
                self._terminate(record.pid, STOP_TIMEOUT_S)
                self.state.clear()
            new = self._start(consume_args, metrics_port, metrics_host, global_args)
        ready = self._wait_ready(new, ready_timeout_s)
        return EnsureOutcome(action, reason, new, ready)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> ScorerRecord | None:
        """SIGTERM the scorer, SIGKILL after ``timeout_s``; the record, or None if none ran."""
        if not self.state_dir.is_dir():
            return None
        with self.state.lock():
            record = self.read_record()
            if record is None or not self.is_alive(record):
                self.state.clear()
                return None
            graceful = self._terminate(record.pid, timeout_s)
            self.state.clear()
        if not graceful:
            logger.warning(
                "the scorer (pid %d) ignored SIGTERM for %gs and was killed", record.pid, timeout_s
            )
        return record

    # -- internals --------------------------------------------------------------------------
    def _start(
        self,
        consume_args: Sequence[str],
        metrics_port: int,
        metrics_host: str,
        global_args: Sequence[str],
    ) -> ScorerRecord:
        argv = consume_argv(self.python, consume_args, metrics_port, global_args=global_args)
        proc, pid_record = self.state.spawn(
            argv,
            fields=ScorerRecord.fields(argv, consume_args, metrics_port, metrics_host),
            header=[f"$ {' '.join(argv)}"],
            # Rich wraps a non-terminal's output at 80 columns; logs read better wider.
            env={**os.environ, "COLUMNS": os.environ.get("COLUMNS", LOG_COLUMNS)},
        )
        record = ScorerRecord.from_pid_record(pid_record)
        logger.info(
            "started the scorer: pid %d, metrics %s, log %s",
            proc.pid,
            record.metrics_url,
            self.log_path,
        )
        return record

    def _wait_ready(self, record: ScorerRecord, timeout_s: float) -> HealthAnswer:
        deadline = time.monotonic() + timeout_s
        last: HealthAnswer | None = None
        while True:
            if not self.is_alive(record):
                self.state.clear()
                raise SupervisorError(
                    f"the scorer (pid {record.pid}) exited while starting; "
                    f"its log ({self.log_path}) says: {self.log_tail()}"
                )
            last = self.health(record, "ready")
            if last is not None and last.ok:
                return last
            if time.monotonic() >= deadline:
                state = "no answer" if last is None else f"not ready: {last.describe()}"
                raise SupervisorError(
                    f"the scorer (pid {record.pid}) is running but not ready after "
                    f"{timeout_s:g}s ({state}); it is left running, see {self.log_path}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _terminate(self, pid: int, timeout_s: float) -> bool:
        """SIGTERM, wait, then SIGKILL. True if it exited on SIGTERM."""
        return self.state.terminate(pid, timeout_s)
