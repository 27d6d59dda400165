"""The ``--workers`` supervisor with real tiny child processes (``python -c``), no Kafka.

Each script records its runs in a file, so a test can tell a restart from a first start and
find the pid of a worker it wants to see stopped.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from churnstream.ops.workers import (
    RestartPolicy,
    WorkersGaveUpError,
    WorkersResult,
    WorkerSupervisor,
    describe_exit,
)

#: Short delays so that a test with a few restarts takes about a second.
FAST = RestartPolicy(first_delay_s=0.2, max_delay_s=1.0, restart_limit=5, stop_grace_s=5.0)
#: Handles SIGTERM like a scorer: exit 0 at once.
ON_SIGTERM_EXIT_0 = "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"


def worker(runs: Path, outcomes: list[int | str], *, then: str = "") -> list[str]:
    """A worker whose n-th run ends with ``outcomes[n]`` (the last one repeats).

    An int is an exit code, ``"kill"`` is SIGKILL from itself, ``"hang"`` sleeps for a minute
    (after running ``then``, e.g. a SIGTERM handler). Each run appends its pid to ``runs``.
    """
    code = (
        "import os, signal, sys, time, pathlib\n"
        f"runs = pathlib.Path({str(runs)!r})\n"
        "with runs.open('a') as f: f.write(f'{os.getpid()}\\n')\n"
        f"outcomes = {outcomes!r}\n"
        "outcome = outcomes[min(len(runs.read_text().split()) - 1, len(outcomes) - 1)]\n"
        f"{then}"
        "if outcome == 'kill': os.kill(os.getpid(), signal.SIGKILL)\n"
        "if outcome == 'hang': time.sleep(60); sys.exit(9)\n"
        "sys.exit(outcome)\n"
    )
    return [sys.executable, "-c", code]


def pids(runs: Path) -> list[int]:
    return [int(p) for p in runs.read_text().split()] if runs.is_file() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_later(
    supervisor: WorkerSupervisor, when: Any, timeout_s: float = 20.0
) -> threading.Thread:
    """Call ``supervisor.stop()`` once ``when()`` holds (polled), in a thread."""

    def wait_then_stop() -> None:
        deadline = time.monotonic() + timeout_s
        while not when() and time.monotonic() < deadline:
            time.sleep(0.05)
        supervisor.stop()

    thread = threading.Thread(target=wait_then_stop, daemon=True)
    thread.start()
    return thread


def test_workers_that_exit_0_are_not_restarted(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = WorkerSupervisor([worker(runs, [0]), worker(runs, [0])], FAST).run()
    assert result == WorkersResult(returncodes=[0, 0], restarts=0, killed=[])  # no signal
    assert result.exit_code == 0
    assert len(pids(runs)) == 2
    assert result.line() == "workers: 2, exit codes [0, 0]"


def test_a_dead_worker_is_restarted_with_growing_jittered_delays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs, steady = tmp_path / "runs", tmp_path / "steady"
    caplog.set_level(logging.INFO, logger="churnstream.ops.workers")
    policy = RestartPolicy(first_delay_s=0.4, max_delay_s=2.0, stop_grace_s=5.0)
    supervisor = WorkerSupervisor([worker(runs, [3, "kill", 0]), worker(steady, [0])], policy)
    started = time.monotonic()
    result = supervisor.run()
    elapsed = time.monotonic() - started
    assert result.returncodes == [0, 0]  # the third run of worker 0 finished its work
    assert result.restarts == 2
    assert len(pids(runs)) == 3 and len(pids(steady)) == 1  # only the dead one restarted
    lines = [r.getMessage() for r in caplog.records if "restarting in" in r.getMessage()]
    assert len(lines) == 2, lines
    delays = []
    for line, (pid, how, crash) in zip(
        lines,
        [(pids(runs)[0], "exit code 3", 1), (pids(runs)[1], "signal SIGKILL", 2)],
        strict=True,
    ):
        assert line.startswith(f"worker 0 (pid {pid}) died with {how}; restarting in "), line
        assert f"(crash {crash} of 5 allowed within 60 s)" in line
        match = re.search(r"restarting in ([0-9.]+) s", line)
        assert match is not None
        delays.append(float(match.group(1)))
    # jittered between half and all of 0.4 s, then of 0.8 s; and really waited
    assert 0.2 <= delays[0] <= 0.4 and 0.4 <= delays[1] <= 0.8, delays
    assert elapsed >= 0.6
    assert result.line() == "workers: 2, exit codes [0, 0], 2 restart(s)"


def test_a_crash_loop_gives_up_in_one_line_and_stops_the_others(tmp_path: Path) -> None:
    crashing, steady = tmp_path / "crashing", tmp_path / "steady"
    policy = RestartPolicy(first_delay_s=0.05, max_delay_s=0.2, restart_limit=3, stop_grace_s=5.0)
    supervisor = WorkerSupervisor(
        [worker(crashing, [1]), worker(steady, ["hang"], then=ON_SIGTERM_EXIT_0)], policy
    )
    started = time.monotonic()
    with pytest.raises(WorkersGaveUpError) as caught:
        supervisor.run()
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "worker 0 died 4 times within 60 s (last: exit code 1); giving up, "
        "stopped the other workers"
    )
    assert len(pids(crashing)) == 4  # the first run and 3 restarts
    assert [alive(pid) for pid in pids(steady)] == [False]  # stopped, not orphaned


def test_crashes_older_than_the_window_do_not_count(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # Two crashes allowed per 0.3 s; each restart waits at least 0.3 s, so none accumulate.
    policy = RestartPolicy(
        first_delay_s=0.6, max_delay_s=0.6, restart_limit=2, restart_window_s=0.3
    )
    result = WorkerSupervisor([worker(runs, [1, 1, 1, 1, 0])], policy).run()
    assert result.restarts == 4
    assert result.returncodes == [0]


def test_exit_code_2_is_not_restarted(tmp_path: Path) -> None:
    runs, steady = tmp_path / "runs", tmp_path / "steady"
    # Worker 0 exits only once the steady one has recorded its pid, so that the test can tell
    # that the supervisor stopped it (otherwise a fast give-up can stop it before it records).
    wait_for_steady = f"while not pathlib.Path({str(steady)!r}).exists(): time.sleep(0.02)\n"
    supervisor = WorkerSupervisor(
        [worker(runs, [2], then=wait_for_steady), worker(steady, ["hang"], then=ON_SIGTERM_EXIT_0)],
        FAST,
    )
    with pytest.raises(WorkersGaveUpError, match=r"worker 0 exited with exit code 2 \(its"):
        supervisor.run()
    assert len(pids(runs)) == 1
    assert [alive(pid) for pid in pids(steady)] == [False]


def test_sigterm_is_forwarded_and_a_worker_exiting_then_is_not_restarted(tmp_path: Path) -> None:
    ok, failing = tmp_path / "ok", tmp_path / "failing"
    on_sigterm_exit_1 = "signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))\n"
    supervisor = WorkerSupervisor(
        [
            worker(ok, ["hang"], then=ON_SIGTERM_EXIT_0),
            worker(failing, ["hang"], then=on_sigterm_exit_1),
        ],
        FAST,
    )
    # The real signal, to this process: the supervisor's handler is installed (main thread).
    previous = signal.getsignal(signal.SIGTERM)
    ready = threading.Event()

    def send_sigterm() -> None:
        deadline = time.monotonic() + 20
        while len(pids(ok)) + len(pids(failing)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let both install their handlers
        ready.set()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=send_sigterm, daemon=True).start()
    started = time.monotonic()
    result = supervisor.run()
    assert ready.is_set()
    assert time.monotonic() - started < 15  # stopped by the signal, not by the 60 s sleep
    assert result.returncodes == [0, 1]
    assert result.restarts == 0 and result.killed == []
    assert result.exit_code == 1
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored


def test_a_worker_stuck_past_the_grace_period_is_sigkilled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stuck, ok = tmp_path / "stuck", tmp_path / "ok"
    ignore_sigterm = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    policy = RestartPolicy(stop_grace_s=1.0)
    supervisor = WorkerSupervisor(
        [
            worker(stuck, ["hang"], then=ignore_sigterm),
            worker(ok, ["hang"], then=ON_SIGTERM_EXIT_0),
        ],
        policy,
    )
    stop_later(supervisor, lambda: len(pids(stuck)) + len(pids(ok)) == 2)
    started = time.monotonic()
    result = supervisor.run()
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 10, elapsed  # the grace period, then SIGKILL: bounded
    assert result.killed == [0]
    assert result.returncodes == [-signal.SIGKILL, 0]
    assert result.exit_code == 128 + signal.SIGKILL
    assert not alive(pids(stuck)[0])
    assert any("still running 1 s after the stop signal: SIGKILL" in r.message
               for r in caplog.records)  # fmt: skip
    assert result.line().endswith(", SIGKILLed after the stop grace period: workers [0]")


def test_a_worker_ended_by_the_stop_signal_itself_stopped_cleanly(tmp_path: Path) -> None:
    # A worker still starting (no handler yet) dies of the forwarded SIGTERM: as asked.
    starting, failing = tmp_path / "starting", tmp_path / "failing"
    on_sigterm_exit_1 = "signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))\n"
    supervisor = WorkerSupervisor(
        [worker(starting, ["hang"]), worker(failing, ["hang"], then=on_sigterm_exit_1)], FAST
    )
    stop_later(supervisor, lambda: len(pids(starting)) + len(pids(failing)) == 2)
    result = supervisor.run()
    assert result.returncodes[0] == -signal.SIGTERM
    assert result.exit_code == 1  # worker 1's own failure, not the SIGTERM of worker 0
    assert WorkersResult([-signal.SIGTERM, 0], 0, [], frozenset({signal.SIGTERM})).exit_code == 0
    assert WorkersResult([-signal.SIGTERM, 0], 0, []).exit_code == 128 + signal.SIGTERM


def test_a_stop_cancels_a_pending_restart(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    policy = RestartPolicy(first_delay_s=20.0, max_delay_s=20.0)
    supervisor = WorkerSupervisor([worker(runs, [1, 0])], policy)
    # Once the first run has exited and been reaped (its restart pending), not as soon as it
    # has started: on a loaded machine the stop could otherwise land before its exit 1.
    stop_later(supervisor, lambda: len(pids(runs)) == 1 and not alive(pids(runs)[0]))
    started = time.monotonic()
    result = supervisor.run()
    assert time.monotonic() - started < 10  # not the 10-20 s restart delay
    assert result.restarts == 0 and len(pids(runs)) == 1
    assert result.returncodes == [1]


def test_restart_delays_follow_the_retry_policy() -> None:
    policy = RestartPolicy(first_delay_s=1.0, max_delay_s=8.0)
    for crashes in range(1, 8):
        nominal = min(8.0, 2.0 ** (crashes - 1))
        assert all(nominal / 2 <= policy.delay_s(crashes) <= nominal for _ in range(20))


def test_exits_are_described_the_way_a_shell_would() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-9) == "signal SIGKILL"
    assert WorkersResult(returncodes=[1, -9], restarts=0, killed=[]).exit_code == 128 + 9
    assert WorkersResult(returncodes=[0, 3], restarts=1, killed=[]).exit_code == 3
