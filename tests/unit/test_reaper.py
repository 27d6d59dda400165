"""The test-session watchdog stops what ran under the session's temp dir, and only that."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

REAPER = Path(__file__).resolve().parents[1] / "reaper.py"
SLEEPER = "import time\nwhile True: time.sleep(1)"
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)"
)


def spawn(code: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, start_new_session=True)


def gone_within(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_reaper_stops_processes_under_the_session_dir_once_the_session_dies(
    tmp_path: Path,
) -> None:
    root = tmp_path / "basetemp"
    state = root / "kafka-broker0"
    state.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    session = spawn(SLEEPER, tmp_path)
    polite, stubborn, bystander = (
        spawn(SLEEPER, state), spawn(STUBBORN, state), spawn(SLEEPER, outside)
    )  # fmt: skip
    reaper = subprocess.Popen(
        [sys.executable, str(REAPER), str(session.pid), str(root), "1.0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        # the session is alive: nothing is touched
        assert reaper.poll() is None
        assert polite.poll() is None and stubborn.poll() is None
        session.send_signal(signal.SIGKILL)
        session.wait()
        _, err = reaper.communicate(timeout=15)
        assert reaper.returncode == 0
        assert gone_within(polite, 5), "a process under the session dir survived"
        assert polite.returncode == -signal.SIGTERM
        assert gone_within(stubborn, 5), "SIGTERM-deaf process under the session dir survived"
        assert stubborn.returncode == -signal.SIGKILL
        assert bystander.poll() is None, "a process outside the session dir was stopped"
        assert f"test session {session.pid} died" in err
    finally:
        for proc in (session, polite, stubborn, bystander, reaper):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
