"""`churnstream consume --workers N`: the worker command lines and how the CLI ends."""

from __future__ import annotations

import sys

import pytest
from click.testing import Result
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.ops import workers
from churnstream.ops.workers import WorkersGaveUpError, WorkersResult


def test_workers_run_the_same_command_with_one_worker_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    captured: list[list[str]] = []

    class FakeSupervisor:
        def __init__(self, commands: list[list[str]]) -> None:
            captured.extend(commands)

        def run(self) -> WorkersResult:
            return WorkersResult(returncodes=[0, 0], restarts=0, killed=[])

    monkeypatch.setattr(workers, "WorkerSupervisor", FakeSupervisor)
    args = ["--log-level", "WARNING", "consume", "--mode", "batch", "--broker", "h:1"]
    args += ["--batch-records", "200", "--no-reports", "--exactly-once"]
    args += ["--transactional-id", "scorer", "--workers", "2", "--metrics-port", "9108"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "workers: 2, exit codes [0, 0]" in result.output
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


def _consume_with(monkeypatch: pytest.MonkeyPatch, outcome: WorkersResult | Exception) -> Result:
    """``consume --workers 2`` with a supervisor whose run ends with ``outcome``."""

    class FakeSupervisor:
        def __init__(self, commands: list[list[str]]) -> None:
            pass

        def run(self) -> WorkersResult:
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

    monkeypatch.setattr(workers, "WorkerSupervisor", FakeSupervisor)
    args = ["consume", "--mode", "batch", "--broker", "h:1", "--workers", "2"]
    return CliRunner().invoke(app, args)


def test_the_worst_worker_outcome_is_the_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _consume_with(monkeypatch, WorkersResult(returncodes=[0, -9], restarts=1, killed=[1]))
    assert result.exit_code == 128 + 9
    assert result.output.strip().splitlines()[-1] == (
        "workers: 2, exit codes [0, -9], 1 restart(s), "
        "SIGKILLed after the stop grace period: workers [1]"
    )


def test_giving_up_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    error = WorkersGaveUpError("worker 1 died 6 times within 60 s (last: exit code 1)")
    result = _consume_with(monkeypatch, error)
    assert result.exit_code == 1
    assert result.output.strip() == "error: worker 1 died 6 times within 60 s (last: exit code 1)"
