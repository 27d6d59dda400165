"""Detached child processes (the embedded broker, the supervised scorer): liveness and stop.

Popen handles of children started by this process are kept, so that a stopped child is
reaped: a zombie would still look alive to ``os.kill(pid, 0)``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from churnstream.exceptions import ChurnstreamError

logger = logging.getLogger(__name__)

KILL_WAIT_S = 10.0
POLL_S = 0.05

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


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
