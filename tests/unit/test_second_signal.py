"""A SIGTERM or SIGINT that comes again while the scorer drains is logged once and ignored;
the drain finishes within its bounds and the scorer exits 0.

The real ``churnstream consume`` command, run in this process, signals itself; the consumer
and the producer are fakes (no network), as in test_stuck_rewind.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from typer.testing import CliRunner

from churnstream.cli import app, consume_cmd
from tests.unit.test_stuck_rewind import FakeRecord, use_fake_clients


def signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.1)  # its handler runs on the main thread, between two bytecodes


class DrainedConsumer:
    """Hands over one batch and asks the scorer to stop; signalled again while it closes."""

    def __init__(self) -> None:
        self.fetched = [FakeRecord(0, o) for o in range(5)]
        self.commits: list[dict[int, int]] = []
        self.closed = False

    def subscribe(self, topics: list[str], on_assign: Any = None, **kwargs: Any) -> None:
        if on_assign is not None:
            on_assign(self, [TopicPartition("in", 0)])

    def consume(self, num_messages: int = 1, timeout: float = 0.0) -> list[FakeRecord]:
        taken, self.fetched = self.fetched[:num_messages], self.fetched[num_messages:]
        if taken:
            signal_self(signal.SIGTERM)  # the drain starts
        return taken

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append({tp.partition: tp.offset for tp in offsets})

    def close(self) -> None:  # on a worker thread, the main one waiting for it
        signal_self(signal.SIGTERM)
        signal_self(signal.SIGINT)
        self.closed = True


def test_signals_during_the_drain_are_logged_once_and_ignored(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = DrainedConsumer()
    use_fake_clients(monkeypatch, consumer)
    last_line = consume_cmd.echo_run_end

    def echo_run_end_signalled(*args: Any) -> None:
        # SIGINT, not SIGTERM: should its handler be gone, this must not kill the test run
        signal_self(signal.SIGINT)
        last_line(*args)

    monkeypatch.setattr(consume_cmd, "echo_run_end", echo_run_end_signalled)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    argv = [
        "--log-format", "json", "consume", "--mode", "streaming", "--broker", "127.0.0.1:9",
        "--input-topic", "in", "--output-topic", "out", "--deadletter-topic", "dlq",
        "--consumer-group", "g", "--model-path", str(model_dir), "--no-reports",
    ]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    output = result.output
    assert result.exit_code == 0, output
    assert "interrupted" not in output and "Traceback" not in output
    assert output.count("SIGTERM received: draining") == 1, output
    assert output.count("received again: still draining") == 1, output  # then silence
    assert consumer.commits == [{0: 5}]  # the batch was published and committed
    assert consumer.closed
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
