"""Stop the brokers a test session started, should that session die without stopping them.

Run as ``python tests/reaper.py PID BASETEMP [GRACE_S]`` by the ``_broker_reaper`` session fixture.
Brokers are started detached (they must outlive the CLI that starts them), so a pytest that
is killed or segfaults would leave its session broker, and any broker a test had started,
running for good. Every broker started by the tests runs with its working directory in a
state dir under pytest's ``BASETEMP``; once ``PID`` is gone, every process whose working
directory lies there gets SIGTERM, then SIGKILL after a grace period.

It imports nothing of churnstream but :func:`churnstream.ops.processes.pid_alive` (which also
tells a zombie from a live process), so it works whatever state the session died in.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from churnstream.ops.processes import pid_alive

POLL_S = 1.0
GRACE_S = 10.0


def processes_under(root: Path) -> list[int]:
    """Pids (other than ours) whose working directory is ``root`` or below it."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        if cwd == root or root in cwd.parents:
            found.append(int(entry.name))
    return found


def reap(root: Path, grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM everything under ``root``, SIGKILL what is left after the grace period."""
    targets = processes_under(root)
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in targets):
        time.sleep(0.2)
    for pid in targets:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
    return targets


def main(argv: list[str]) -> int:
    session_pid, root = int(argv[1]), Path(argv[2]).resolve()
    grace_s = float(argv[3]) if len(argv) > 3 else GRACE_S
    while pid_alive(session_pid):
        time.sleep(POLL_S)
    reaped = reap(root, grace_s)
    if reaped:
        print(f"reaper: test session {session_pid} died; stopped {reaped}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
