"""Keep one streaming scorer alive in the background: start, check, restart, stop.

For schedulers (the Airflow DAG ``churnstream_streaming``) and for hosts without systemd.
``ensure`` starts ``churnstream consume --mode streaming --metrics-port P ...`` detached (own
session, output to a log file, a JSON pid record in the state dir) unless one already runs,
and restarts one that is alive but stalled (its ``/health/live`` says 503) or whose health
endpoint stays silent past a grace period. A freshly started scorer must answer
``/health/ready`` within a deadline. ``stop`` sends SIGTERM (the scorer drains, flushes and
commits), then SIGKILL after a timeout. ``status`` reads the pid record, ``/health/ready``
and ``/metrics``.

The pid record holds the process's start time from ``/proc`` (where there is one), so a
recycled pid is never mistaken for our scorer. Start and stop are serialised per state dir
with a lock file.

The pure parts (:class:`ScorerRecord`, :func:`consume_argv`, :func:`decide`,
:func:`parse_health`, :func:`scorer_counters`) are unit-tested without processes.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from churnstream.exceptions import ChurnstreamError
from churnstream.ops import processes

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(".churnstream/scorer")
RECORD_FILE = "scorer.json"
LOG_FILE = "scorer.out"
LOCK_FILE = ".lock"
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
# Metric names, as in churnstream.observability.metrics (without the _total of counters,
# which the Prometheus text parser strips from family names).
_COUNTER_FAMILIES = {
    "consumed": "churnstream_scorer_consumed_messages",
    "scored": "churnstream_scorer_scored_messages",
    "dead_lettered": "churnstream_scorer_dead_letters",
    "batches": "churnstream_scorer_batches",
    "redelivered_batches": "churnstream_scorer_redelivered_batches",
}
_LAG_FAMILY = "churnstream_scorer_consumer_lag_messages"


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ScorerRecord:
        """Parse a record; ValueError when it is not one."""
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                argv=[str(a) for a in data["argv"]],
                consume_args=[str(a) for a in data["consume_args"]],
                metrics_port=int(data["metrics_port"]),
                log_file=str(data["log_file"]),
                started_at=float(data["started_at"]),
                proc_start=None if data.get("proc_start") is None else int(data["proc_start"]),
                metrics_host=str(data.get("metrics_host", "127.0.0.1")),
            )
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a scorer record: {exc}") from None


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


@dataclass(frozen=True)
class HealthAnswer:
    """One answer of ``/health/live`` or ``/health/ready``."""

    ok: bool
    status: int
    checks: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``model X, broker reachable, lag 0 (max 10000)`` or what fails."""
        c = self.checks
        if not c:
            return f"HTTP {self.status}"
        parts = []
        if not c.get("running", True):
            parts.append("loop not running")
        parts.append(f"model {c['model_version']}" if c.get("model_loaded") else "no model")
        parts.append("broker reachable" if c.get("broker_reachable") else "broker UNREACHABLE")
        lag = c.get("lag")
        lag_text = "unknown" if lag is None else f"{int(lag):,}"
        parts.append(f"lag {lag_text} (max {c.get('max_lag')})")
        if c.get("stalled"):
            parts.append(f"STALLED ({c.get('seconds_since_poll')}s since the last poll)")
        return ", ".join(parts)


def parse_health(status: int, body: bytes) -> HealthAnswer:
    """Read a health endpoint's answer: 200/503 with ``{"status", "checks"}``."""
    checks: Mapping[str, Any] = {}
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("checks"), dict):
            checks = data["checks"]
    except (ValueError, UnicodeDecodeError):
        pass
    return HealthAnswer(ok=status == 200, status=status, checks=checks)


def scorer_counters(metrics_text: str) -> dict[str, float]:
    """Totals from the scorer's ``/metrics``: consumed, scored, dead_lettered, batches,
    redelivered_batches (each summed over labels) and lag (summed over partitions)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {family: key for key, family in _COUNTER_FAMILIES.items()}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        key = wanted.get(family.name)
        if key is not None:
            out[key] = sum(s.value for s in family.samples if s.name.endswith("_total"))
        elif family.name == _LAG_FAMILY:
            out["lag"] = sum(s.value for s in family.samples)
    return out


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

    @property
    def record_path(self) -> Path:
        return self.state_dir / RECORD_FILE

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    # -- queries ----------------------------------------------------------------------------
    def read_record(self) -> ScorerRecord | None:
        try:
            return ScorerRecord.from_json(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable scorer record %s: %s", self.record_path, exc)
            return None

    def is_alive(self, record: ScorerRecord) -> bool:
        """The recorded process runs and is still the one we started (not a recycled pid)."""
        if not processes.pid_alive(record.pid):
            return False
        if record.proc_start is not None:
            current = _proc_start_ticks(record.pid)
            if current is not None and current != record.proc_start:
                return False
        return True

    def health(self, record: ScorerRecord, which: str) -> HealthAnswer | None:
        """``/health/<which>`` of the scorer; None when nothing answers."""
        url = f"{record.metrics_url}/health/{which}"
        try:
            with urllib.request.urlopen(url, timeout=self.http_timeout_s) as resp:  # noqa: S310
                return parse_health(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            return parse_health(exc.code, exc.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            logger.debug("no answer from %s: %s", url, exc)
            return None

    def counters(self, record: ScorerRecord) -> dict[str, float]:
        url = f"{record.metrics_url}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=self.http_timeout_s) as resp:  # noqa: S310
                return scorer_counters(resp.read().decode("utf-8", errors="replace"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            logger.debug("no metrics from %s: %s", url, exc)
            return {}

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
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        text = text.rsplit(_START_MARKER, 1)[-1]
        kept = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
        kept = [ln for ln in kept if not ln.startswith("$ ")]  # the command line we wrote
        return " | ".join(kept[-lines:]) or "(empty log)"

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
        with self._lock():
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
                self.record_path.unlink(missing_ok=True)
            new = self._start(consume_args, metrics_port, metrics_host, global_args)
        ready = self._wait_ready(new, ready_timeout_s)
        return EnsureOutcome(action, reason, new, ready)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> ScorerRecord | None:
        """SIGTERM the scorer, SIGKILL after ``timeout_s``; the record, or None if none ran."""
        if not self.state_dir.is_dir():
            return None
        with self._lock():
            record = self.read_record()
            if record is None or not self.is_alive(record):
                self.record_path.unlink(missing_ok=True)
                return None
            graceful = self._terminate(record.pid, timeout_s)
            self.record_path.unlink(missing_ok=True)
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
        proc = processes.spawn_detached(
            argv,
            self.log_path,
            header=[f"{_START_MARKER} {time.strftime('%Y-%m-%dT%H:%M:%S')}", f"$ {' '.join(argv)}"],
            error=SupervisorError,
            # Rich wraps a non-terminal's output at 80 columns; logs read better wider.
            env={**os.environ, "COLUMNS": os.environ.get("COLUMNS", LOG_COLUMNS)},
        )
        record = ScorerRecord(
            pid=proc.pid,
            argv=argv,
            consume_args=list(consume_args),
            metrics_port=metrics_port,
            log_file=str(self.log_path),
            started_at=time.time(),
            proc_start=_proc_start_ticks(proc.pid),
            metrics_host=metrics_host,
        )
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(record.to_json(), encoding="utf-8")
        tmp.replace(self.record_path)
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
                self.record_path.unlink(missing_ok=True)
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
        return processes.terminate(pid, timeout_s, what="the scorer", error=SupervisorError)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.state_dir / LOCK_FILE).open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _proc_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time since boot), or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
