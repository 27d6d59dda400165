"""A detached child started through its state file: record, log, stop. No broker."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from churnstream.exceptions import BrokerError
from churnstream.ops.processes import ProcessState, proc_start_ticks

pytestmark = pytest.mark.integration

SLEEPER = "import sys, time\nprint('up', flush=True)\nwhile True: time.sleep(0.1)"


def test_spawn_records_the_process_and_terminate_stops_it(tmp_path: Path) -> None:
    st = ProcessState(
        tmp_path,
        record_file="thing.pid",
        log_file="thing.log",
        start_marker="--- thing start",
        what="the thing",
        error=BrokerError,
    )
    proc, record = st.spawn(
        [sys.executable, "-c", SLEEPER], fields={"role": "sleeper"}, header=["$ sleeper"]
    )
    try:
        on_disk = json.loads(st.record_path.read_text())
        assert on_disk["pid"] == proc.pid and on_disk["role"] == "sleeper"
        assert on_disk["proc_start"] == proc_start_ticks(proc.pid) is not None
        assert st.read() == record and record.is_running()
        assert record.is_running(cmdline_marker=b"time.sleep")
        assert not record.is_running(cmdline_marker=b"kafka.Kafka")
        first = st.log_path.read_text().splitlines()
        assert first[0].startswith("--- thing start ") and first[1] == "$ sleeper"
        deadline = time.monotonic() + 10
        while st.log_tail(skip=lambda line: line.startswith("$ ")) != "up":
            assert time.monotonic() < deadline, "the child never wrote to its log"
            time.sleep(0.05)
    finally:
        assert st.terminate(proc.pid, 5.0) is True
    assert not record.is_running()
