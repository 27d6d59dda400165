"""Ctrl-C on the soak bench: it stops its scorer and feeder within seconds, reports the
samples taken so far and exits 130. The broker and the Kafka clients are replaced by
stand-ins; the scorer is a real child process that must be stopped and reaped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from bench import env, soak

#: The stand-in scorer: exits 0 on SIGTERM, as churnstream's does after its drain.
SCORER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "time.sleep(120)\n"
)
INTERRUPT_AFTER_S = 1.0
#: Clean-up after Ctrl-C: SIGTERM to a scorer that exits at once, a feeder that stops.
EXIT_WITHIN_S = 5.0


class FakeFeeder:
    def __init__(self, *_args: Any) -> None:
        self.sent = self.acked = self.failed = 0
        self.acked_by_partition: dict[int, int] = {}
        self.stop_event = threading.Event()
        self.flush_timeout_s = 60.0

    def start(self) -> None:
        self.sent = self.acked = 100
        self.acked_by_partition = {0: 100}

    def is_alive(self) -> bool:
        return False

    def join(self, _timeout: float | None = None) -> None:
        return None


class FakeReader:
    def __init__(self, *_args: Any) -> None:
        self.read = 0
        self.stop_event = threading.Event()

    def start(self) -> None:
        self.read = 100

    def join(self, _timeout: float | None = None) -> None:
        return None

    def take_latencies(self) -> np.ndarray:
        return np.array([1.0, 2.0, 3.0])

    def tally(self, acked_by_partition: dict[int, int]) -> tuple[int, int, int]:
        return sum(acked_by_partition.values()), 0, 0


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    @contextlib.contextmanager
    def no_broker(_bootstrap: str | None) -> Iterator[str]:
        yield "127.0.0.1:1"

    monkeypatch.setattr(env, "model", lambda _dir: SimpleNamespace(version="test"))
    monkeypatch.setattr(env, "records", list)
    monkeypatch.setattr(env, "embedded_broker", no_broker)
    monkeypatch.setattr(env, "create_topics", lambda *_a: ("raw", "predictions", "dead"))
    monkeypatch.setattr(soak, "scorer_command", lambda *_a: [sys.executable, "-c", SCORER])
    monkeypatch.setattr(soak, "_wait_ready", lambda *_a: None)
    monkeypatch.setattr(soak, "scrape_lag", lambda *_a: None)
    monkeypatch.setattr(soak, "Feeder", FakeFeeder)
    monkeypatch.setattr(soak, "PredictionReader", FakeReader)
    # the stand-in gets no SIGINT of its own (only this process is signalled): no grace
    monkeypatch.setattr(soak, "INTERRUPTED_GRACE_S", 0.1)
    previous = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_the_soak_and_reports_what_was_measured(
    stand_ins: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--minutes", "5", "--sample-every", "0.2", "--results-dir", str(tmp_path)]
    ctrl_c = threading.Timer(INTERRUPT_AFTER_S, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    ctrl_c.start()
    try:
        code = soak.main(argv)
    finally:
        ctrl_c.cancel()
    took_s = time.monotonic() - started

    assert code == soak.EXIT_INTERRUPTED
    assert took_s < INTERRUPT_AFTER_S + EXIT_WITHIN_S
    out = capsys.readouterr().out
    assert "| the run ran its course | 5 min | interrupted at t=" in out
    assert "| scorer stops cleanly | exit 0 | 0 | yes |" in out  # SIGTERMed and reaped
    (saved,) = tmp_path.glob("soak_*.json")
    results = json.loads(saved.read_text())
    assert results["interrupted"] is True
    assert results["samples"], "the samples taken before Ctrl-C are kept"
    assert results["summary"]["events_sent"] == 100
    # the clean-up ignored a second Ctrl-C; main gives Python's handler back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_before_the_first_sample_measures_nothing(
    stand_ins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(soak, "_wait_ready", interrupted)
    argv = ["--minutes", "5", "--results-dir", str(tmp_path)]
    assert soak.main(argv) == soak.EXIT_INTERRUPTED
    assert not list(tmp_path.glob("soak_*.json"))
