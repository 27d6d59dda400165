"""A rewind whose seek never returns ends the scorer with one line, within its bound.

Against a frozen (SIGSTOPped) broker the scorer's synchronous commit gets no answer, and
the rewind's ``consumer.seek()`` that follows was seen to wait forever. The same seek ends
the recovery of a broken producer (the rewind to the committed offsets). librdkafka cannot
be made to hang on demand, so the consumer here is a fake whose commit and seek block (and
the producer a fake that can fail fatally); the rest is the real ``churnstream consume``
command. No network.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.kafka import clients
from churnstream.streaming import loop, publish, recovery
from churnstream.streaming.recovery import ProgressClock, Recovery
from tests.unit.test_recovery import FATAL, FakeConsumer, FakeRaw, FlakyPublisher, Hooks, tp
from tests.unit.test_schemas import EVENT

BOUND_S = 0.2
#: consumer.recovery_timeout_s: how long the seek is waited for, at most.
RECOVERY_TIMEOUT_S = 2
#: How long the fake's stuck calls block: far past the bounds, then they return, so the
#: scorer of old (which waited for the seek) polls again and meets the assertion below.
HANG_S = 10.0


class FakeRecord:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset
        self._key = f"{partition}{offset:03d}-STUCK".encode()
        self._value = orjson.dumps({**EVENT, "customerID": self._key.decode()})

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "in"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


class SilentBrokerConsumer:
    """A consumer that fetched one batch before its broker froze: from then on its commit
    and its seek get no answer (each returns only after HANG_S)."""

    def __init__(self) -> None:
        self.fetched = [FakeRecord(p, o) for p in (0, 1) for o in (7, 8)]
        self.release = threading.Event()
        self.commits_sent: list[dict[int, int]] = []
        self.commits_done: list[dict[int, int]] = []
        self.seeks: list[tuple[int, int]] = []
        self.closed = False

    def subscribe(self, topics: list[str], on_assign: Any = None, **kwargs: Any) -> None:
        if on_assign is not None:
            on_assign(self, [TopicPartition("in", 0), TopicPartition("in", 1)])

    def consume(self, num_messages: int = 1, timeout: float = 0.0) -> list[FakeRecord]:
        assert not self.seeks or self.closed, "the scorer polled again after a stuck seek"
        taken, self.fetched = self.fetched[:num_messages], self.fetched[num_messages:]
        if not taken:
            time.sleep(min(timeout, 0.05))
        return taken

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("in", 0), TopicPartition("in", 1)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in partitions]

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        sent = {tp.partition: tp.offset for tp in offsets}
        self.commits_sent.append(sent)
        self.release.wait(HANG_S)
        self.commits_done.append(sent)

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self.release.wait(HANG_S)

    def close(self) -> None:
        self.closed = True


def use_fake_clients(
    monkeypatch: pytest.MonkeyPatch,
    consumer: Any,
    producers: list[FakeRaw] | None = None,
    scripts: list[dict[str, list[Any]]] | None = None,
) -> None:
    """The scorer's clients, for an in-process ``consume``: ``consumer`` and fake producers,
    with no broker to wait for. Each producer made is appended to ``producers`` and takes the
    next of ``scripts`` (the rest get none)."""
    made = producers if producers is not None else []
    todo = scripts or []

    def producer(conf: dict[str, Any]) -> FakeRaw:
        made.append(FakeRaw(conf, todo.pop(0) if todo else {}))
        return made[-1]

    monkeypatch.setattr(clients, "Consumer", lambda conf: consumer)
    monkeypatch.setattr(clients, "Producer", producer)
    monkeypatch.setattr(loop, "wait_for_broker", lambda *args, **kwargs: None)


def run_stuck(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, consumer: SilentBrokerConsumer
) -> tuple[str, int, float]:
    """``churnstream consume`` with small bounds until it ends; its output, exit code and
    wall time. The consumer's stuck calls are released afterwards."""
    monkeypatch.setattr(publish, "COMMIT_BOUND_S", BOUND_S)
    monkeypatch.setattr(recovery, "SEEK_SLOW_S", BOUND_S)
    monkeypatch.setenv("CHURNSTREAM_CONSUMER__RECOVERY_TIMEOUT_S", str(RECOVERY_TIMEOUT_S))
    argv = [
        "--log-format", "json", "consume", "--mode", "streaming", "--broker", "127.0.0.1:9",
        "--input-topic", "in", "--output-topic", "out", "--deadletter-topic", "dlq",
        "--consumer-group", "g", "--model-path", str(model_dir), "--no-reports",
    ]  # fmt: skip
    started = time.monotonic()
    try:
        result = CliRunner().invoke(app, argv)
    finally:
        consumer.release.set()
    return result.output, result.exit_code, time.monotonic() - started


def test_a_seek_that_never_returns_ends_the_scorer_with_one_line(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = SilentBrokerConsumer()
    use_fake_clients(monkeypatch, consumer)
    output, exit_code, took_s = run_stuck(model_dir, monkeypatch, consumer)
    assert exit_code == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert re.fullmatch(
        r"error: rewinding a batch of 4: seek to in\[0\]@7 did not return within [12]s \(the "
        r"broker does not answer; consumer.recovery_timeout_s is 2s\); stopping: the batch is "
        r"left uncommitted for the group's next scorer",
        errors[0],
    ), errors
    assert output.count("seek to in[0]@7 has not returned in 0.2s") == 1, output
    assert consumer.commits_sent == [{0: 9, 1: 9}]  # the batch's commit, never answered
    assert consumer.commits_done == []
    assert consumer.seeks == [(0, 7)]  # no second seek on a consumer already stuck
    assert consumer.closed
    assert RECOVERY_TIMEOUT_S <= took_s < HANG_S, took_s  # the budget, not the stuck calls


def test_a_seek_that_never_returns_ends_the_producer_recovery_with_one_line(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first producer fails fatally on the batch's flush; its replacement is fine, and the
    # rewind to the committed offsets (7, 7) that follows meets the silent broker.
    consumer = SilentBrokerConsumer()
    producers: list[FakeRaw] = []
    use_fake_clients(monkeypatch, consumer, producers, scripts=[{"flush": [FATAL]}])
    output, exit_code, took_s = run_stuck(model_dir, monkeypatch, consumer)
    assert exit_code == 1, output
    assert "Traceback" not in output
    assert output.count("producer unusable") == 1, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert re.fullmatch(
        r"error: nothing published for [23]s \(consumer.recovery_timeout_s is 2s\); last error: "
        r"seek to in\[0\]@7 did not return within [12]s \(the broker does not answer; "
        r"consumer.recovery_timeout_s is 2s\); offsets were not committed, so a restart scores "
        r"them again",
        errors[0],
    ), errors
    assert output.count("seek to in[0]@7 has not returned in 0.2s") == 1, output
    assert len(producers) == 2  # replaced once; no second attempt on the stuck consumer
    assert consumer.commits_sent == []  # nothing of the unacknowledged batch
    assert consumer.seeks == [(0, 7)]
    assert consumer.closed
    assert RECOVERY_TIMEOUT_S <= took_s < HANG_S, took_s


def test_a_stop_ends_the_wait_for_a_recoverys_stuck_seek_quietly() -> None:
    # SIGTERM while the recovery's rewind waits for a seek: no error, no second attempt.
    class StuckSeek(FakeConsumer):
        def seek(self, tp: Any) -> None:
            super().seek(tp)
            release.wait(HANG_S)

    release, stop = threading.Event(), threading.Event()
    consumer = StuckSeek([tp(0, 3), tp(1, 4)])
    publisher = FlakyPublisher([])
    recovery = Recovery(ProgressClock(60.0), Hooks(), topic="in", auto_offset_reset="earliest")
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    try:
        assert not recovery.run(consumer, publisher, "fatal", stop)  # type: ignore[arg-type]
    finally:
        release.set()
    assert time.monotonic() - started < 2.0
    assert publisher.calls == 1 and consumer.seeks == [(0, 3)]
