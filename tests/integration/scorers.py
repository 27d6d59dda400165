"""Scorer processes for fault tests: their command lines, input that keeps coming, metrics
ports, the supervisor's workers, cleanup, and the check of what they published."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from churnstream.headers import SOURCE_HEADER
from churnstream.ops.scorer_health import fetch_counters
from tests.integration.kafka_io import CommittedOffsets, Record, read_topic, send_raw
from tests.integration.streams import customer_events, unique_id

HOST = "127.0.0.1"
#: The scorer's guarantees a loss test runs under, as (exactly_once, pipeline, client):
#: ``pytest.mark.parametrize(("exactly_once", "pipeline", "client"), **GUARANTEES)``.
GUARANTEES = {
    "argvalues": [
        (False, False, "confluent"),
        (False, True, "confluent"),
        (True, False, "confluent"),
        (False, True, "native"),
    ],
    "ids": ["at-least-once", "at-least-once-pipelined", "exactly-once", "native-client-pipelined"],
}
#: Input added whenever the scorers get within LOW_WATER of its end.
TOP_UP = 20_000
LOW_WATER = 10_000
#: send_raw's producer queues at most 100,000 messages.
SEND_CHUNK = 50_000
DRAIN_TIMEOUT_S = 180.0


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "churnstream", "--log-level", "WARNING", *args]


def scorer_args(
    bootstrap: str,
    topics: tuple[str, str, str],
    group: str,
    model_dir: Path,
    tmp_path: Path,
    mode: str,
    batch_records: int = 1000,
) -> list[str]:
    raw, preds, dlq = topics
    return [
        "consume", "--mode", mode, "--broker", bootstrap, "--input-topic", raw,
        "--output-topic", preds, "--deadletter-topic", dlq, "--consumer-group", group,
        "--model-path", str(model_dir), "--batch-records", str(batch_records),
        "--timeout-ms", "6000", "--reports-dir", str(tmp_path / "reports"),
    ]  # fmt: skip


@dataclass
class KillLoop:
    """What a kill loop did: kills that interrupted unfinished work, and kills in all."""

    mid_run: int = 0
    attempts: int = 0


@dataclass(frozen=True)
class Predictions:
    """What the scorers published for events ``0 .. events - 1``, as a reader with the
    guarantee's isolation level sees it."""

    records: list[Record]
    sources: Counter[bytes]
    events: int
    exactly_once: bool

    @property
    def duplicates(self) -> int:
        return len(self.records) - len(self.sources)

    def check(self, max_duplicates: float = 0) -> None:
        """Nothing lost (one prediction per input offset and per unique event); under
        exactly-once nothing doubled, else at most ``max_duplicates`` scored again."""
        lost = self.events - len(self.sources)
        assert lost == 0, f"lost {lost} input message(s)"
        ids = {r.json()["customerID"] for r in self.records}
        assert ids == {unique_id(i) for i in range(self.events)}
        if self.exactly_once:
            dups = self.duplicates
            assert dups == 0, f"{dups} duplicate(s) visible to read_committed readers"
        else:
            assert self.duplicates <= max_duplicates, (self.duplicates, max_duplicates)


def isolation(exactly_once: bool) -> str:
    return "read_committed" if exactly_once else "read_uncommitted"


def read_predictions(
    bootstrap: str, preds: str, events: int, *, exactly_once: bool, timeout_s: float = 120.0
) -> Predictions:
    """Every prediction on ``preds``, counted by the input offset each one names."""
    records = read_topic(
        bootstrap, preds, expect=events, isolation=isolation(exactly_once), timeout_s=timeout_s
    )
    sources = Counter(r.headers[SOURCE_HEADER] for r in records)
    return Predictions(records, sources, events, exactly_once)


def assert_no_dead_letters(bootstrap: str, dlq: str, *, exactly_once: bool) -> None:
    assert read_topic(bootstrap, dlq, idle_s=1.0, isolation=isolation(exactly_once)) == []


def send_events(bootstrap: str, topic: str, first: int, count: int) -> None:
    """Unique customer events ``first`` .. ``first + count - 1``, in chunks send_raw can queue."""
    for start in range(first, first + count, SEND_CHUNK):
        send_raw(bootstrap, topic, customer_events(start, min(SEND_CHUNK, first + count - start)))


class Feeder(threading.Thread):
    """Tops up the input whenever the group's committed progress nears the end of it."""

    def __init__(self, bootstrap: str, raw: str, group: str, sent: int) -> None:
        super().__init__(name="feeder", daemon=True)
        self.bootstrap, self.raw = bootstrap, raw
        self.progress = CommittedOffsets(bootstrap, group, raw)
        self.sent = sent
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.wait(0.5):
                if self.sent - self.progress() < LOW_WATER:
                    send_events(self.bootstrap, self.raw, self.sent, TOP_UP)
                    self.sent += TOP_UP
        except BaseException as exc:  # reported by finish(): a thread cannot fail the test
            self.error = exc
        finally:
            self.progress.close()

    def finish(self) -> int:
        self.stop_event.set()
        self.join(60)
        assert not self.is_alive(), "the feeder did not stop"
        if self.error is not None:
            raise self.error
        return self.sent


@dataclass
class ScoredStream:
    """A fault test's stream: fresh topics filled with unique events, a group of its own,
    consecutive metrics ports, a Feeder that keeps the input coming and the group's
    committed progress (from the ``scored_stream`` fixture, which stops and closes them)."""

    bootstrap: str
    topics: tuple[str, str, str]
    group: str
    port: int
    feeder: Feeder
    committed: CommittedOffsets

    @property
    def raw(self) -> str:
        return self.topics[0]

    @property
    def preds(self) -> str:
        return self.topics[1]

    @property
    def dlq(self) -> str:
        return self.topics[2]

    def argv(self, model_dir: Path, tmp_path: Path, batch_records: int, *extra: str) -> list[str]:
        """``consume --mode streaming`` on this stream, with no reports nor model reloads."""
        args = scorer_args(
            self.bootstrap, self.topics, self.group, model_dir, tmp_path, "streaming",
            batch_records,
        )  # fmt: skip
        return cli(*args, "--no-reports", "--reload-interval", "0", *extra)


def wide_env(**extra: str) -> dict[str, str]:
    """The environment with wide log lines, so that none is wrapped."""
    return {**os.environ, "COLUMNS": "240", **extra}


def wait_drained(
    progress: Callable[[], int], events: int, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Wait until the group has committed all ``events``, while every one of ``procs`` runs."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while progress() < events:
        for proc in procs:
            assert proc.poll() is None, f"process {proc.pid} exited ({proc.returncode})"
        assert time.monotonic() < deadline, f"not drained: {progress()} of {events} committed"
        time.sleep(0.5)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (``--metrics-port P`` gives worker i P+i)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        socks = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((HOST, port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError(f"no {count} consecutive free ports")


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux: /proc/<pid>/task/<pid>/children)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def worker_pids(supervisor_pid: int) -> dict[int, int]:
    """Worker index -> pid of the supervisor's live workers (from their command lines)."""
    out: dict[int, int] = {}
    for pid in children(supervisor_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--worker-index" in argv:
            out[int(argv[argv.index(b"--worker-index") + 1])] = pid
    return out


def consumed(port: int) -> float | None:
    """The scorer's consumed-messages counter at ``port``; None while it does not answer."""
    return fetch_counters(f"http://{HOST}:{port}", timeout_s=2.0).get("consumed")


def wait_until_scoring(port: int, pid: Callable[[], int | None], timeout_s: float) -> int:
    """Wait until the scorer at ``port`` counts new messages between two looks; its pid then.

    ``pid()`` names the process expected behind the port (None: none yet), so a counter
    read from a process that has just died does not count.
    """
    deadline = time.monotonic() + timeout_s
    last: tuple[int | None, float | None] = (None, None)
    while time.monotonic() < deadline:
        now = (pid(), consumed(port))
        if now[0] is not None and now[1] is not None and now[0] == last[0]:
            if last[1] is not None and now[1] > last[1]:
                return now[0]
        last = now
        time.sleep(0.1)
    raise AssertionError(f"the scorer on port {port} did not score within {timeout_s:g}s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is not alive
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM (and SIGCONT, in case it is stopped), then SIGKILL after ``timeout_s``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(10)


def kill_leftovers(pids: set[int], marker: str) -> None:
    """SIGKILL whichever of ``pids`` still runs with ``marker`` (e.g. the test's unique group)
    in its command line: orphaned workers after a failure, never a recycled pid."""
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in argv.split(b"\0") and alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
