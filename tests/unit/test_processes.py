"""The one process state file: pid record format, recycled-pid guard, lock and log tail."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

import pytest

from churnstream.exceptions import BrokerError
from churnstream.ops.processes import (
    EMPTY_LOG,
    LOG_TAIL_LINE_CHARS,
    PidRecord,
    ProcessState,
    is_same_process,
    locked,
    log_tail,
    proc_start_ticks,
)

NEVER_A_PID = 2**31 - 2  # above any pid_max


def state(tmp_path: Path) -> ProcessState:
    return ProcessState(
        tmp_path,
        record_file="thing.pid",
        log_file="thing.log",
        start_marker="--- thing start",
        what="the thing",
        error=BrokerError,
    )


def test_record_round_trips_with_the_owners_fields_at_the_top_level(tmp_path: Path) -> None:
    rec = PidRecord(
        pid=42,
        log_file=tmp_path / "x.log",
        started_at=1_795_000_000.5,
        proc_start=497_436,
        fields={"engine": "kafka", "port": 19092},
    )
    data = json.loads(rec.to_json())
    assert data == {
        "pid": 42,
        "engine": "kafka",
        "port": 19092,
        "log_file": str(tmp_path / "x.log"),
        "started_at": 1_795_000_000.5,
        "proc_start": 497_436,
    }
    assert PidRecord.from_json(rec.to_json()) == rec
    with pytest.raises(ValueError, match="reserved"):
        PidRecord(1, Path("l"), 0.0, fields={"pid": 2}).to_json()


def test_records_of_earlier_versions_still_read() -> None:
    # broker.pid as the broker wrote it before the shared format: compact, no proc_start.
    old_broker = (
        '{"pid": 7, "engine": "tansu", "host": "127.0.0.1", "port": 1, "bootstrap": '
        '"127.0.0.1:1", "log_file": "/s/broker.log", "started_at": 5.0, "cds_pending": null, '
        '"cds_archive": null}'
    )
    rec = PidRecord.from_json(old_broker)
    assert (rec.pid, rec.proc_start, rec.started_at) == (7, None, 5.0)
    assert rec.fields["engine"] == "tansu" and rec.fields["bootstrap"] == "127.0.0.1:1"
    # a hand-written one without started_at (the broker tolerated that)
    assert PidRecord.from_json('{"pid": 7, "log_file": "l"}').started_at == 0.0


@pytest.mark.parametrize("bad", ["", "[]", "{}", '{"pid": "x", "log_file": "l"}', '{"pid": 1}'])
def test_what_is_not_a_record_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="not a pid record"):
        PidRecord.from_json(bad)


def test_the_recycled_pid_guard() -> None:
    me = os.getpid()
    ticks = proc_start_ticks(me)
    if ticks is None:
        pytest.skip("no /proc here")
    assert is_same_process(me, ticks)
    assert is_same_process(me, None)  # no start time recorded: liveness alone
    assert not is_same_process(me, ticks + 1)  # same pid, another process
    assert is_same_process(me, ticks, cmdline_marker=b"python")
    assert not is_same_process(me, ticks, cmdline_marker=b"kafka.Kafka")
    assert not is_same_process(NEVER_A_PID, None)


def test_state_reads_writes_and_clears_its_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    st = state(tmp_path)
    assert st.read() is None
    rec = PidRecord(pid=NEVER_A_PID, log_file=st.log_path, started_at=1.0, fields={"a": 1})
    st.write(rec)
    assert st.read() == rec
    assert not st.read().is_running()  # type: ignore[union-attr]
    assert [p.name for p in tmp_path.iterdir()] == ["thing.pid"]  # no temporary file left
    st.clear()
    assert st.read() is None
    st.record_path.write_text("{half a rec")
    with caplog.at_level(logging.WARNING):
        assert st.read() is None
    assert "ignoring unreadable pid file" in caplog.text


def test_state_reads_its_record_as_the_owners_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def parse(record: PidRecord) -> int:
        if "port" not in record.fields:
            raise ValueError("no port")
        return int(record.fields["port"])

    st = state(tmp_path)
    assert st.read_as(parse) is None  # no record
    st.write(PidRecord(pid=NEVER_A_PID, log_file=st.log_path, started_at=1.0, fields={"port": 9}))
    assert st.read_as(parse) == 9
    st.write(PidRecord(pid=NEVER_A_PID, log_file=st.log_path, started_at=1.0, fields={"a": 1}))
    with caplog.at_level(logging.WARNING):
        assert st.read_as(parse) is None  # a pid record, but not the owner's
    assert "ignoring unreadable pid file" in caplog.text
    assert "no port" in caplog.text


def test_lock_excludes_another_holder(tmp_path: Path) -> None:
    st = state(tmp_path)
    with st.lock(), (tmp_path / ".lock").open("a") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with locked(tmp_path / ".lock"), (tmp_path / ".lock").open("a") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with (tmp_path / ".lock").open("a") as other:  # released
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_log_tail_reads_only_the_last_run(tmp_path: Path) -> None:
    st = state(tmp_path)
    st.log_path.write_text(
        "--- thing start 2026-01-01T00:00:00\n"
        "old run: failed\n"
        "--- thing start 2026-01-02T00:00:00\n"
        "$ thing --flag\n"
        "\n"
        "one\n"
        "two\n"
        "three\n"
    )
    skip_argv = lambda line: line.startswith("$ ")  # noqa: E731
    assert st.log_tail(2, skip=skip_argv) == "two | three"
    assert st.log_tail(10, skip=skip_argv) == "one | two | three"
    assert "old run" not in st.log_tail(10)


def test_log_tail_offsets_prefer_and_limits(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("before this run\n")
    offsets = {log: log.stat().st_size}
    with log.open("a") as fh:
        fh.write("x" * 1000 + "\nERROR bad\nfine\n")
    prefer = lambda lines: [ln for ln in lines if ln.startswith("ERROR")]  # noqa: E731
    assert log_tail([log], offsets=offsets, prefer=prefer) == "ERROR bad"
    both = log_tail([log], offsets=offsets)
    assert both.split(" | ") == ["x" * LOG_TAIL_LINE_CHARS, "ERROR bad", "fine"]
    assert log_tail([tmp_path / "missing.log"]) == EMPTY_LOG
