"""The latency bench's account of the broker JVM's garbage collection (no broker, no JVM)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from bench import latency

#: `jstat -gc PID` of an embedded broker (Java 17, G1), two samples 30 s apart.
BEFORE = (
    "    S0C    S1C    S0U    S1U      EC       EU        OC         OU       MC     MU    "
    "CCSC   CCSU   YGC     YGCT    FGC    FGCT     CGC    CGCT     GCT   \n"
    "   0.0 2048.0    0.0 1888.9 105472.0  39936.0  256000.0   212058.5  51072.0 49876.6 "
    "6016.0 5456.6     45    1.411     0    0.000    34    0.525    1.937\n"
)
AFTER = BEFORE.replace("    45    1.411", "    53    1.600").replace("34    0.525", "38    0.560")


def fake_jstat(monkeypatch: pytest.MonkeyPatch, pid: int, outputs: list[str]) -> None:
    """``jstat -gc PID`` answering ``outputs`` in turn."""
    answers = iter(outputs)

    def jstat(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert argv == ["jstat", "-gc", str(pid)]
        return subprocess.CompletedProcess(argv, 0, stdout=next(answers))

    monkeypatch.setattr(latency.shutil, "which", lambda name: "/usr/bin/jstat")
    monkeypatch.setattr(latency.subprocess, "run", jstat)


def test_the_pauses_of_the_measured_run_are_the_difference_of_two_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_jstat(monkeypatch, 4242, [BEFORE, AFTER])
    before, after = latency._broker_gc(4242), latency._broker_gc(4242)
    assert latency._gc_delta(before, after) == {
        "young_pauses": 8,
        "young_pause_ms": 189.0,
        "full_pauses": 0,
        "full_pause_ms": 0.0,
        "concurrent_pauses": 4,
        "concurrent_pause_ms": 35.0,
    }


def test_no_counters_without_the_brokers_pid_or_jstat(monkeypatch: pytest.MonkeyPatch) -> None:
    assert latency._broker_gc(None) == {}
    monkeypatch.setattr(latency.shutil, "which", lambda name: None)
    assert latency._broker_gc(4242) == {}
    assert latency._gc_delta({}, {"YGC": 1.0}) == {}


def test_a_collector_without_a_young_generation_reports_what_it_has(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ZGC's `jstat -gc` marks the counters it does not have with "-"."""
    head = "S0C S1C EC EU OC OU YGC YGCT FGC FGCT CGC CGCT GCT\n"
    fake_jstat(monkeypatch, 1, [head + "- - - - 1.0 1.0 - - 0 0.000 5 0.010 0.010\n",
                                head + "- - - - 1.0 1.0 - - 0 0.000 8 0.016 0.016\n"])  # fmt: skip
    before, after = latency._broker_gc(1), latency._broker_gc(1)
    assert latency._gc_delta(before, after) == {
        "full_pauses": 0,
        "full_pause_ms": 0.0,
        "concurrent_pauses": 3,
        "concurrent_pause_ms": 6.0,
    }
