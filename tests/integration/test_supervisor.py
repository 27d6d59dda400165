"""The scorer supervisor with real processes: a fake scorer that serves /health, no broker.

The fake takes the scorer's command line (``-m churnstream ... --metrics-port P ...``) and
answers ``/health/live`` and ``/health/ready`` as the file ``mode`` in its directory says:
``ok`` (200), ``stalled`` (live 503). With mode ``exit`` it dies at start, with ``deaf`` it
ignores SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from churnstream.ops.devbroker import find_free_port
from churnstream.ops.processes import proc_start_ticks
from churnstream.ops.supervisor import Action, ScorerRecord, Supervisor, SupervisorError

FAKE_SCORER = textwrap.dedent(
    """
    import http.server, json, signal, sys, time
    from pathlib import Path

    mode_file = Path(__file__).with_name("mode")
    mode = mode_file.read_text().strip()
    print("fake scorer", sys.argv[1:], "mode", mode, flush=True)
    if mode == "exit":
        print("error: model directory /nowhere does not exist", flush=True)
        sys.exit(1)
    if mode == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    port = int(sys.argv[sys.argv.index("--metrics-port") + 1])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            now = mode_file.read_text().strip()
            ok = not (now == "stalled" and self.path.endswith("live"))
            body = json.dumps({"status": "ok" if ok else "fail", "checks": {"stalled": not ok}})
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[Supervisor, Path]]:
    """A supervisor whose "python" runs the fake scorer; stops whatever it left running."""
    (tmp_path / "fake_scorer.py").write_text(FAKE_SCORER)
    (tmp_path / "mode").write_text("ok")
    launcher = tmp_path / "python"
    launcher.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "fake_scorer.py"}" "$@"\n'
    )
    launcher.chmod(0o755)
    supervisor = Supervisor(tmp_path / "state", python=str(launcher), http_timeout_s=1.0)
    yield supervisor, tmp_path / "mode"
    (tmp_path / "mode").write_text("ok")
    supervisor.stop(timeout_s=1.0)


def test_ensure_starts_once_then_keeps_status_and_stop(fake: tuple[Supervisor, Path]) -> None:
    supervisor, _ = fake
    first = supervisor.ensure(["--summary-interval", "60"], metrics_port=find_free_port())
    assert first.action is Action.START
    assert first.ready is not None and first.ready.ok
    assert "--summary-interval" in supervisor.log_path.read_text()

    again = supervisor.ensure(["--summary-interval", "60"], metrics_port=find_free_port())
    assert again.action is Action.KEEP
    assert again.record.pid == first.record.pid

    state = supervisor.status()
    assert state.alive and state.live is not None and state.live.ok
    assert state.as_dict()["pid"] == first.record.pid

    stopped = supervisor.stop(timeout_s=5.0)
    assert stopped is not None and stopped.pid == first.record.pid
    assert not supervisor.status().alive
    assert supervisor.stop() is None


def test_a_stalled_scorer_is_restarted(fake: tuple[Supervisor, Path]) -> None:
    supervisor, mode = fake
    first = supervisor.ensure([], metrics_port=find_free_port())
    mode.write_text("stalled")
    # The new process reads the mode too: let it be healthy once it is up.
    restarted = supervisor.ensure([], metrics_port=find_free_port(), ready_timeout_s=10.0)
    assert restarted.action is Action.RESTART
    assert "stalled" in restarted.reason
    assert restarted.record.pid != first.record.pid
    assert not _alive(first.record.pid)


def test_a_dead_scorer_is_started_again(fake: tuple[Supervisor, Path]) -> None:
    supervisor, _ = fake
    first = supervisor.ensure([], metrics_port=find_free_port())
    os.kill(first.record.pid, signal.SIGKILL)
    _wait_dead(supervisor, first.record)
    second = supervisor.ensure([], metrics_port=find_free_port())
    assert second.action is Action.START
    assert f"previous scorer (pid {first.record.pid}) is gone" in second.reason


def test_a_scorer_that_dies_at_start_is_one_error_with_its_log(
    fake: tuple[Supervisor, Path],
) -> None:
    supervisor, mode = fake
    mode.write_text("exit")
    with pytest.raises(SupervisorError, match="exited while starting.*does not exist"):
        supervisor.ensure([], metrics_port=find_free_port(), ready_timeout_s=10.0)
    assert supervisor.read_record() is None


def test_a_scorer_ignoring_sigterm_is_killed(fake: tuple[Supervisor, Path]) -> None:
    supervisor, mode = fake
    mode.write_text("deaf")
    first = supervisor.ensure([], metrics_port=find_free_port())
    started = time.monotonic()
    assert supervisor.stop(timeout_s=0.5) is not None
    assert time.monotonic() - started < 5.0
    assert not _alive(first.record.pid)


def test_a_recycled_pid_is_not_our_scorer(tmp_path: Path) -> None:
    """Our own pid with another start time: a different process that reuses the pid."""
    ticks = proc_start_ticks(os.getpid())
    if ticks is None:
        pytest.skip("no /proc here")
    supervisor = Supervisor(tmp_path)
    mine = ScorerRecord(os.getpid(), [], [], 1, "log", time.time(), proc_start=ticks)
    assert supervisor.is_alive(mine)
    other = ScorerRecord(os.getpid(), [], [], 1, "log", time.time(), proc_start=ticks + 1)
    assert not supervisor.is_alive(other)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _wait_dead(supervisor: Supervisor, record: ScorerRecord) -> None:
    deadline = time.monotonic() + 5.0
    while supervisor.is_alive(record):
        assert time.monotonic() < deadline, "SIGKILLed fake scorer still alive"
        time.sleep(0.05)
