"""`churnstream consume --workers N`: the worker command lines and the supervisor."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from churnstream.cli import app, consume_cmd


def test_workers_run_the_same_command_with_one_worker_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    captured: list[list[str]] = []

    def fake_supervise(commands: list[list[str]]) -> int:
        captured.extend(commands)
        return 0

    monkeypatch.setattr(consume_cmd, "supervise", fake_supervise)
    args = ["--log-level", "WARNING", "consume", "--mode", "batch", "--broker", "h:1"]
    args += ["--batch-records", "200", "--no-reports", "--exactly-once"]
    args += ["--transactional-id", "scorer", "--workers", "2", "--metrics-port", "9108"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(captured) == 2
    for index, command in enumerate(captured):
        assert command[:3] == [sys.executable, "-m", "churnstream"]
        text = " ".join(command)
        assert "--log-level WARNING" in text
        assert "consume --mode batch --broker h:1" in text
        assert "--batch-records 200" in text and "--no-reports" in text
        assert "--exactly-once" in text
        assert f"--transactional-id scorer-{index}" in text  # unique per producer
        assert f"--worker-index {index}" in text
        assert f"--metrics-port {9108 + index}" in text  # two servers cannot share a port
        assert command[-2:] == ["--workers", "1"]


def test_default_transactional_ids_differ_per_worker() -> None:
    from churnstream.streaming.options import default_transactional_id

    ids = {default_transactional_id("g", "t", worker) for worker in range(3)}
    assert len(ids) == 3
    assert default_transactional_id("g", "t", 1) == default_transactional_id("g", "t", 1)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_exit_code_is_the_worst_one() -> None:
    assert consume_cmd.supervise([_python("pass"), _python("raise SystemExit(3)")]) == 3
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert consume_cmd.supervise([_python("raise SystemExit(1)"), _python(killed)]) == 128 + 9


def test_sigterm_is_forwarded_to_every_worker() -> None:
    waits = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "time.sleep(60)\n"
        "sys.exit(5)\n"
    )
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    previous: Any = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    timer.start()
    try:
        code = consume_cmd.supervise([_python(waits), _python(waits)])
    finally:
        timer.cancel()
    assert code == 0  # both stopped by the forwarded SIGTERM, not by the 60 s sleep
    assert time.monotonic() - started < 30
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
