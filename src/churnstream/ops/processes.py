"""Detached child processes (the dev broker, the supervised scorer) and their state files.

A detached child outlives the command that started it, so what is known about it lives in a
state dir (:class:`ProcessState`): a pid record, a log that every start appends to after a
marker line, and a lock file that serialises start and stop across processes. Every owner
writes the same pid-record format (:class:`PidRecord`), a JSON object::

    {"pid": 4242, <the owner's own fields>, "log_file": "/abs/scorer.out",
     "started_at": 1795000000.5, "proc_start": 497436}

``proc_start`` is the process's start time in clock ticks since boot (``/proc/<pid>/stat``),
which tells our process from a later one that got the same pid; an owner may also name a
string its command line must contain (:func:`is_same_process`), which covers records
written where ``proc_start`` could not be read.

Popen handles of children started by this process are kept, so that a stopped child is
reaped: a zombie would still look alive to ``os.kill(pid, 0)``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from churnstream.exceptions import ChurnstreamError
from churnstream.files import atomic_write_text

logger = logging.getLogger(__name__)

R = TypeVar("R")

KILL_WAIT_S = 10.0
POLL_S = 0.05
LOCK_FILE = ".lock"
LOG_TAIL_LINES = 5
LOG_TAIL_LINE_CHARS = 300
#: How much of a log's end :func:`log_tail` reads when it is not told where this run began.
LOG_TAIL_BYTES = 64 * 1024
EMPTY_LOG = "(the log is empty)"
_RECORD_KEYS = ("pid", "log_file", "started_at", "proc_start")

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


# -- one process --------------------------------------------------------------------------


def track(proc: subprocess.Popen[bytes]) -> None:
    _CHILDREN[proc.pid] = proc


def spawn_detached(
    argv: Sequence[str],
    log_path: Path,
    *,
    header: Sequence[str],
    error: type[ChurnstreamError],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, stdout and stderr appended to ``log_path``.

    ``header`` lines go into the log first (a start marker that readers of the log split
    on). An own session survives the caller's terminal (Ctrl-C) and process group, and never
    holds the caller's stdout open (a scheduler reading it would wait forever). The child
    is tracked, so :func:`pid_alive` sees it exit. A program that cannot be run raises
    ``error`` in one line.
    """
    with log_path.open("ab") as out:
        out.write("".join(f"{line}\n" for line in header).encode())
        out.flush()
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise error(f"could not run {argv[0]}: {exc}") from None
    track(proc)
    return proc


def pid_alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) still accepts signal 0
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def proc_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time since boot), or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_same_process(
    pid: int, proc_start: int | None, *, cmdline_marker: bytes | None = None
) -> bool:
    """``pid`` runs and is still the process a record was written for, not a recycled pid.

    Where /proc tells: its start time must equal ``proc_start`` (when recorded), and its
    command line must contain ``cmdline_marker`` (when given).
    """
    if not pid_alive(pid):
        return False
    if proc_start is not None:
        current = proc_start_ticks(pid)
        if current is not None and current != proc_start:
            return False
    if cmdline_marker is not None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True
        return cmdline_marker in cmdline
    return True


def send(pid: int, sig: signal.Signals, *, what: str, error: type[ChurnstreamError]) -> bool:
    """Signal ``pid``; False if it no longer exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise error(f"not allowed to signal {what} (pid {pid}): {exc}") from None
    return True


def wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    _CHILDREN.pop(pid, None)
    return True


def terminate(pid: int, timeout_s: float, *, what: str, error: type[ChurnstreamError]) -> bool:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL. True if it exited on SIGTERM."""
    if not send(pid, signal.SIGTERM, what=what, error=error):
        return True
    if wait_exit(pid, timeout_s):
        return True
    send(pid, signal.SIGKILL, what=what, error=error)
    if not wait_exit(pid, KILL_WAIT_S):
        raise error(f"{what} (pid {pid}) survived SIGKILL")
    return False


# -- its state dir ------------------------------------------------------------------------


@dataclass(frozen=True)
class PidRecord:
    """What a state dir remembers about the process it started (see the module doc).

    ``fields`` are the owner's own (the broker's engine and port, the scorer's command
    line...); they sit beside the common keys at the top level of the JSON object.
    """

    pid: int
    log_file: Path
    started_at: float
    proc_start: int | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        clash = set(self.fields) & set(_RECORD_KEYS)
        if clash:
            raise ValueError(f"pid record fields {sorted(clash)} are reserved")
        data = {
            "pid": self.pid,
            **self.fields,
            "log_file": str(self.log_file),
            "started_at": self.started_at,
            "proc_start": self.proc_start,
        }
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> PidRecord:
        """Parse a record; ValueError when it is not one.

        ``started_at`` and ``proc_start`` may be missing (records of older versions).
        """
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            proc_start = data.get("proc_start")
            return cls(
                pid=int(data["pid"]),
                log_file=Path(data["log_file"]),
                started_at=float(data.get("started_at") or 0.0),
                proc_start=None if proc_start is None else int(proc_start),
                fields={k: v for k, v in data.items() if k not in _RECORD_KEYS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a pid record: {exc}") from None

    def is_running(self, *, cmdline_marker: bytes | None = None) -> bool:
        """The recorded process runs and is still the one that was started."""
        return is_same_process(self.pid, self.proc_start, cmdline_marker=cmdline_marker)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing), across processes."""
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class ProcessState:
    """The state dir of one detached process: its pid record, its log and its lock.

    ``start_marker`` begins the line written to the log at every start; :meth:`log_tail`
    reads only what came after the last one. ``what`` names the process in errors, which
    are raised as ``error``.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        record_file: str,
        log_file: str,
        start_marker: str,
        what: str,
        error: type[ChurnstreamError],
    ) -> None:
        self.state_dir = state_dir
        self.record_path = state_dir / record_file
        self.log_path = state_dir / log_file
        self.start_marker = start_marker
        self.what = what
        self.error = error

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise start and stop on this state dir (which must exist)."""
        with locked(self.state_dir / LOCK_FILE):
            yield

    def read(self) -> PidRecord | None:
        """The pid record, or None when there is none or it cannot be read (logged)."""
        try:
            return PidRecord.from_json(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable pid file %s: %s", self.record_path, exc)
            return None

    def read_as(self, parse: Callable[[PidRecord], R]) -> R | None:
        """The pid record as its owner's own, by ``parse``; None when there is none or it
        cannot be read or parsed (``parse`` raises ValueError; logged)."""
        record = self.read()
        if record is None:
            return None
        try:
            return parse(record)
        except ValueError as exc:
            logger.warning("ignoring unreadable pid file %s: %s", self.record_path, exc)
            return None

    def write(self, record: PidRecord) -> None:
        """Replace the pid record atomically (a reader never sees half a file)."""
        atomic_write_text(self.record_path, record.to_json())

    def clear(self) -> None:
        self.record_path.unlink(missing_ok=True)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        fields: Mapping[str, Any],
        output: Path | None = None,
        header: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> tuple[subprocess.Popen[bytes], PidRecord]:
        """Start ``argv`` detached and write its pid record (``fields`` are the owner's).

        Its output goes to ``output`` (default: the state's log), after the start marker
        and the ``header`` lines.
        """
        marker = f"{self.start_marker} {time.strftime('%Y-%m-%dT%H:%M:%S')}"
        proc = spawn_detached(
            argv,
            output or self.log_path,
            header=[marker, *header],
            error=self.error,
            env=env,
            cwd=cwd,
        )
        record = PidRecord(
            pid=proc.pid,
            log_file=self.log_path,
            started_at=time.time(),
            proc_start=proc_start_ticks(proc.pid),
            fields=fields,
        )
        self.write(record)
        return proc, record

    def terminate(self, pid: int, timeout_s: float) -> bool:
        """SIGTERM, wait, then SIGKILL. True if it exited on SIGTERM."""
        return terminate(pid, timeout_s, what=self.what, error=self.error)

    def log_tail(
        self,
        lines: int = LOG_TAIL_LINES,
        *,
        paths: Sequence[Path] | None = None,
        offsets: Mapping[Path, int] | None = None,
        skip: Callable[[str], bool] | None = None,
        prefer: Callable[[list[str]], list[str]] | None = None,
    ) -> str:
        """:func:`log_tail` of ``paths`` (default: the state's log), after the start marker."""
        return log_tail(
            paths or [self.log_path],
            lines,
            offsets=offsets,
            marker=self.start_marker,
            skip=skip,
            prefer=prefer,
        )


def log_tail(
    paths: Sequence[Path],
    lines: int = LOG_TAIL_LINES,
    *,
    offsets: Mapping[Path, int] | None = None,
    marker: str | None = None,
    skip: Callable[[str], bool] | None = None,
    prefer: Callable[[list[str]], list[str]] | None = None,
) -> str:
    """What the logs say last, as one line (for an error message).

    Per file: the text after ``offsets[path]`` (what this run wrote; else the last
    ``LOG_TAIL_BYTES``) and after the last ``marker`` line, without blank lines and lines
    that ``skip``; of those, what ``prefer`` picks (such as error lines) if it picks any,
    else all; the last ``lines`` of them, each cut at ``LOG_TAIL_LINE_CHARS``.
    """
    picked: list[str] = []
    for path in paths:
        text = _read_log(path, None if offsets is None else offsets.get(path))
        if marker is not None and marker in text:
            after = text.rsplit(marker, 1)[1]
            text = after.split("\n", 1)[1] if "\n" in after else ""  # the rest of its line
        kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if skip is not None:
            kept = [ln for ln in kept if not skip(ln)]
        chosen = prefer(kept) if prefer is not None else []
        picked += (chosen or kept)[-lines:]
    tail = [ln[:LOG_TAIL_LINE_CHARS] for ln in picked]
    return " | ".join(tail) if tail else EMPTY_LOG


def log_sizes(paths: Sequence[Path]) -> dict[Path, int]:
    """Each file's size now (0 if missing): ``offsets`` for a later :func:`log_tail`."""
    sizes = {}
    for path in paths:
        try:
            sizes[path] = path.stat().st_size
        except OSError:
            sizes[path] = 0
    return sizes


def _read_log(path: Path, start: int | None) -> str:
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            window = max(0, size - LOG_TAIL_BYTES)
            fh.seek(window if start is None else max(start, window))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
