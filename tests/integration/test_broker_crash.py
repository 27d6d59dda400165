"""The broker itself crashes: its JVM SIGKILLed mid-stream and restarted on its state dir,
or frozen (SIGSTOP) while the scorer is asked to stop.

The tests run on an embedded Apache Kafka of this module's own (``own_broker``, not the
session one) so that they can kill it; each starts it again if an earlier one left it down.
The scorer must come back by itself, without a restart of its process: under
``--exactly-once`` every event ends with exactly one prediction for read_committed readers;
under at-least-once none is lost and the duplicates stay bounded. The batch producer either
rides the crash out or exits non-zero with one line, and a resume completes the file
exactly (no gap, no duplicate).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from churnstream.headers import ROW_INDEX_HEADER, SOURCE_HEADER, source_key
from churnstream.kafka import admin, clients
from churnstream.kafka.producer import FLUSH_TIMEOUT_S
from churnstream.observability import names
from churnstream.ops import devbroker
from churnstream.settings import KafkaSettings
from churnstream.settings.sections import BrokerSettings, TopicSettings
from churnstream.streaming.checkpoint import load_checkpoint
from churnstream.streaming.loop import CONSUMER_CLOSE_BOUND_S
from churnstream.streaming.publish import CLOSE_TIMEOUT_S, COMMIT_BOUND_S
from tests.integration.kafka_io import CommittedOffsets, read_topic, send_raw
from tests.integration.scorers import assert_no_dead_letters, read_predictions
from tests.integration.streams import customer_events, http_get, unique_rows_csv, wait_for

pytestmark = pytest.mark.integration

EVENTS = 50_000
#: Unscored input kept ahead of the scorer before each kill, so that every kill lands mid-stream.
BACKLOG = 15_000
#: Events scored between the kill decision and the kill: the kill lands mid-stream.
PAST = 5_000
#: Sent after the last restart: the scorer that lived through the crashes scores them too.
NEW_EVENTS = 5_000
KILLS = 2
DOWN_S = 3.0
BATCH_RECORDS = 500
PRODUCER_ROWS = 50_000
#: Generous but bounded on a shared 2-core machine: a Kafka start there takes 10-20 s.
PROGRESS_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 120.0
#: After SIGTERM with the broker frozen: the batch in flight's flush (its messages time out),
#: then the bounded commit, producer close and consumer close, and a margin for the last
#: window's report on a loaded machine.
SILENT_EXIT_BOUND_S = (
    FLUSH_TIMEOUT_S + COMMIT_BOUND_S + CLOSE_TIMEOUT_S + CONSUMER_CLOSE_BOUND_S + 15.0
)
FROZEN_BEFORE_SIGTERM_S = 3.0
#: The frozen batch's messages time out this soon (not the default 30 s), so its flush ends
#: early: the same path, 25 s less suite time. The bound above holds for the default.
SILENT_DELIVERY_TIMEOUT_MS = 5000
#: The frozen broker's scorer, not stopping: its commit gets no answer, then the rewind's seek
#: neither, and is waited for until consumer.recovery_timeout_s (counted from the last batch
#: published) is spent; the producer has nothing queued, the consumer's close is bounded; a
#: margin for a loaded machine.
STUCK_REWIND_RECOVERY_TIMEOUT_S = 15.0
STUCK_REWIND_EXIT_BOUND_S = STUCK_REWIND_RECOVERY_TIMEOUT_S + CONSUMER_CLOSE_BOUND_S + 15.0
#: Sent whenever less than half of it is left unscored.
STUCK_REWIND_EVENTS = 5_000
STUCK_REWIND_FREEZES = 10
#: Small batches: the commit's round trip is then a large share of each batch's time, so a
#: freeze catches it more often.
STUCK_REWIND_BATCH = 100
#: A freeze that catches a produce instead shows as a delivery timeout, this soon.
STUCK_REWIND_DELIVERY_TIMEOUT_MS = 2000


def kill_broker(settings: BrokerSettings) -> int:
    """SIGKILL the broker's JVM (no shutdown hook, no flush, no controlled shutdown)."""
    status = devbroker.status(settings)
    assert status.running and status.pid is not None, "the broker is not running"
    os.kill(status.pid, signal.SIGKILL)
    try:
        os.waitpid(status.pid, 0)  # started by this process: reap it
    except ChildProcessError:
        wait_for(lambda: not devbroker.status(settings).running, 30, "the JVM to die")
    return status.pid


def crash_and_restart(settings: BrokerSettings) -> float:
    """Kill the broker, leave it down DOWN_S, start it on the same state dir; seconds down."""
    killed = time.monotonic()
    kill_broker(settings)
    time.sleep(DOWN_S)
    devbroker.start(settings)
    return time.monotonic() - killed


@dataclass
class Process:
    """A churnstream command run in the background, its output (JSON logs) collected."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *args: str, env: dict[str, str] | None = None) -> Process:
        argv = [sys.executable, "-m", "churnstream", "--log-format", "json", *args]
        # faulthandler: a stalled process dumps its threads' stacks on SIGABRT
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        run = cls(proc)
        threading.Thread(target=run._read, daemon=True).start()
        return run

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def logs(self, starting: str) -> list[dict[str, Any]]:
        """The JSON log records whose message starts with ``starting``."""
        found = []
        for line in list(self.lines):
            if line.startswith("{"):
                record = orjson.loads(line)
                if str(record.get("message", "")).startswith(starting):
                    found.append(record)
        return found

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_until(self, progress: Callable[[], int], target: int, timeout_s: float) -> None:
        """Until ``progress()`` reaches ``target``; fails (with the output) if it exits first."""
        deadline = time.monotonic() + timeout_s
        while (done := progress()) < target:
            tail = "\n".join(self.lines[-30:])
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{tail}"
            if time.monotonic() >= deadline:  # stalled: where is it stuck?
                self.proc.send_signal(signal.SIGABRT)
                time.sleep(3)
                tail = "\n".join(x for x in self.lines if "librdkafka" not in x)
            assert time.monotonic() < deadline, f"{done} of {target} after {timeout_s:g}s:\n{tail}"
            time.sleep(0.05)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)


def make_topics(bootstrap: str) -> tuple[str, str, str]:
    raw, preds, dlq = (f"crash-{name}-{uuid.uuid4().hex[:6]}" for name in ("raw", "preds", "dlq"))
    admin.create_topics(
        KafkaSettings(bootstrap_servers=bootstrap),
        [
            TopicSettings(name=raw, partitions=3),
            TopicSettings(name=preds, partitions=3),
            TopicSettings(name=dlq, partitions=1),
        ],
    )
    return raw, preds, dlq


def metric(url: str, name: str) -> float:
    status, text = http_get(url)
    assert status == 200, text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not on {url}")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("exactly_once", [True, False], ids=["exactly-once", "at-least-once"])
def test_scorer_recovers_from_broker_sigkill_by_itself(
    exactly_once: bool, own_broker: BrokerSettings, model_dir: Path, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap
    raw, preds, dlq = make_topics(bootstrap)
    send_raw(bootstrap, raw, customer_events(0, EVENTS))
    sent = EVENTS
    group = f"crash-{uuid.uuid4().hex[:8]}"
    scorer = Process.start(
        "consume", "--mode", "streaming", "--broker", bootstrap, "--input-topic", raw,
        "--output-topic", preds, "--deadletter-topic", dlq, "--consumer-group", group,
        "--model-path", str(model_dir), "--batch-records", str(BATCH_RECORDS),
        "--reports-dir", str(tmp_path / "reports"), "--metrics-port", "0",
        *(["--exactly-once"] if exactly_once else []),
    )  # fmt: skip
    committed = CommittedOffsets(bootstrap, group, raw)
    mid_stream = 0
    try:
        for _ in range(KILLS):
            if sent - committed() < BACKLOG:
                send_raw(bootstrap, raw, customer_events(sent, BACKLOG))
                sent += BACKLOG
            scorer.wait_until(committed, committed() + PAST, PROGRESS_TIMEOUT_S)
            done = committed()
            down_s = crash_and_restart(own_broker)
            mid_stream += done < sent
            print(f"broker SIGKILLed at {done} of {sent} scored, down {down_s:.1f}s")
            # resumed by itself: its committed offsets move on again after the restart
            scorer.wait_until(committed, done + 1, PROGRESS_TIMEOUT_S)
        send_raw(bootstrap, raw, customer_events(sent, NEW_EVENTS))
        sent += NEW_EVENTS
        scorer.wait_until(committed, sent, DRAIN_TIMEOUT_S)
        assert scorer.proc.poll() is None, "the scorer exited:\n" + scorer.output
        urls = [line.split("metrics: ", 1)[1] for line in scorer.lines if "metrics: " in line]
        assert urls, scorer.output
        recoveries = metric(urls[0], names.SCORER_PRODUCER_RECOVERIES)
        rewound = metric(urls[0], names.SCORER_REDELIVERED)
        scorer.proc.send_signal(signal.SIGTERM)
        code = scorer.wait(60)
    finally:
        committed.close()
        if scorer.proc.poll() is None:
            scorer.proc.kill()
        (tmp_path / "scorer.log").write_text(scorer.output)  # for a post-mortem
    assert code == 0, scorer.output
    assert "Traceback" not in scorer.output
    assert mid_stream == KILLS, f"only {mid_stream} kill(s) landed mid-stream"
    assert len(scorer.logs("producer recovered")) == recoveries
    failed_lines = [r for r in scorer.logs("") if r["logger"] == "churnstream.kafka.producer"]
    assert all(
        re.fullmatch(r"\d+ deliver(y|ies) failed: .+ \(first: .+\[\d+\](@\d+)?\)", r["message"])
        for r in failed_lines
    ), failed_lines[:5]
    stuck = [r for r in scorer.logs("producer unusable") if "did not return" in r["message"]]
    # a failed batch is one line per error kind, never one per message
    assert len(failed_lines) <= 3 * (rewound + recoveries), failed_lines[:5]

    scored = read_predictions(bootstrap, preds, sent, exactly_once=exactly_once)
    print(
        f"\n{'exactly' if exactly_once else 'at-least'}-once: {KILLS} broker SIGKILLs "
        f"({mid_stream} mid-stream), {sent} events, {len(scored.records)} predictions, "
        f"{scored.duplicates} duplicate(s), {recoveries:.0f} producer recoveries, "
        f"{rewound:.0f} batches rewound ({len(stuck)} after a call stuck past its bound), "
        f"{len(failed_lines)} delivery-failure log lines"
    )
    # at-least-once: each crash can re-score what was published but not committed: the batch
    # in flight, one more whose commit the restarted coordinator refused, and each rewound batch
    scored.check(max_duplicates=(2 * KILLS + rewound + recoveries) * BATCH_RECORDS)
    assert_no_dead_letters(bootstrap, dlq, exactly_once=exactly_once)


@pytest.mark.timeout(900)
def test_batch_producer_survives_broker_sigkill(
    own_broker: BrokerSettings, dataset_path: Path, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap
    raw = make_topics(bootstrap)[0]
    data = unique_rows_csv(dataset_path, PRODUCER_ROWS, tmp_path / "big.csv")
    ckpt = tmp_path / "ckpt.json"
    args = (
        "produce", "--mode", "batch", "--broker", bootstrap, "--topic", raw,
        "--data-path", str(data), "--batch-size", "300", "--checkpoint-file", str(ckpt),
        "--no-progress",
    )  # fmt: skip

    def sent_rows() -> int:
        saved = load_checkpoint(ckpt) if ckpt.is_file() else None
        return saved.next_row if saved is not None else 0

    first = Process.start(*args)
    wait_for(lambda: sent_rows() >= 5_000, PROGRESS_TIMEOUT_S, "5,000 rows checkpointed")
    at_row = sent_rows()
    down_s = crash_and_restart(own_broker)
    first_code = first.wait(DRAIN_TIMEOUT_S)
    assert "Traceback" not in first.output
    runs = [first_code]
    if first_code != 0:
        errors = [line for line in first.lines if line.startswith("error:")]
        assert len(errors) == 1, first.output  # one readable line, then resume
        resume = Process.start(*args)
        runs.append(resume.wait(DRAIN_TIMEOUT_S))
        assert runs[-1] == 0, resume.output
        assert "Traceback" not in resume.output

    records = read_topic(bootstrap, raw, expect=PRODUCER_ROWS, timeout_s=120)
    rows = Counter(int(r.headers[ROW_INDEX_HEADER]) for r in records)
    missing = PRODUCER_ROWS - len(set(rows) & set(range(PRODUCER_ROWS)))
    duplicates = sum(n - 1 for n in rows.values())
    print(
        f"\nbatch producer: broker SIGKILLed at row {at_row} of {PRODUCER_ROWS}, down "
        f"{down_s:.1f}s; exit codes {runs} "
        f"({'rode it out' if first_code == 0 else 'resumed'}); {len(records)} records, "
        f"{missing} missing, {duplicates} duplicate(s)"
    )
    assert at_row < PRODUCER_ROWS, "the producer had finished before the kill"
    assert missing == 0, f"{missing} row(s) missing"
    assert duplicates == 0, f"{duplicates} duplicate row(s)"
    assert len(records) == PRODUCER_ROWS


@pytest.mark.timeout(600)
def test_sigterm_with_a_silent_broker_exits_within_its_bounds(
    own_broker: BrokerSettings, model_dir: Path, tmp_path: Path
) -> None:
    """The broker's JVM frozen (SIGSTOP: connections stay open, nothing is answered)
    mid-stream, then SIGTERM: the scorer's last flush cannot be acknowledged, and its close
    gets no answer. It still exits 0 within its bounds, says which batch was not
    acknowledged, and has committed nothing it had not published: the rest is redelivered
    to the next scorer (at-least-once)."""
    bootstrap = own_broker.bootstrap
    raw, preds, dlq = make_topics(bootstrap)
    send_raw(bootstrap, raw, customer_events(0, EVENTS))
    group = f"silent-{uuid.uuid4().hex[:8]}"
    scorer = Process.start(
        "consume", "--mode", "streaming", "--broker", bootstrap, "--input-topic", raw,
        "--output-topic", preds, "--deadletter-topic", dlq, "--consumer-group", group,
        "--model-path", str(model_dir), "--batch-records", str(BATCH_RECORDS),
        "--reports-dir", str(tmp_path / "reports"),
        env={"CHURNSTREAM_PRODUCER__DELIVERY_TIMEOUT_MS": str(SILENT_DELIVERY_TIMEOUT_MS)},
    )  # fmt: skip
    committed = CommittedOffsets(bootstrap, group, raw)
    jvm = devbroker.status(own_broker).pid
    assert jvm is not None
    try:
        scorer.wait_until(committed, PAST, PROGRESS_TIMEOUT_S)
        os.kill(jvm, signal.SIGSTOP)
        # the scorer goes on with what it had fetched, and waits on that batch's flush
        time.sleep(FROZEN_BEFORE_SIGTERM_S)
        terminated = time.monotonic()
        scorer.proc.send_signal(signal.SIGTERM)
        code = scorer.wait(SILENT_EXIT_BOUND_S + 60)
        took_s = time.monotonic() - terminated
    finally:
        os.kill(jvm, signal.SIGCONT)
        committed.close()
        (tmp_path / "scorer.log").write_text(scorer.output)
    unacked = scorer.logs("batch of ")
    print(f"\nsilent broker: exit {code} {took_s:.1f}s after SIGTERM; {unacked[:1]}")
    assert code == 0, scorer.output
    assert "Traceback" not in scorer.output
    assert took_s <= SILENT_EXIT_BOUND_S, scorer.output
    assert unacked and "not fully acknowledged" in unacked[0]["message"], scorer.output

    # Committed means published: every input offset below a partition's committed offset
    # has its prediction; what lies past it is read again by the group's next scorer.
    offsets = clients.group_offsets_consumer(KafkaSettings(bootstrap_servers=bootstrap), group)
    try:
        parts = [TopicPartition(raw, p) for p in range(3)]
        ends = {tp.partition: max(tp.offset, 0) for tp in offsets.committed(parts, 30)}
    finally:
        offsets.close()
    sources = {
        r.headers[SOURCE_HEADER].decode()
        for r in read_topic(bootstrap, preds, expect=sum(ends.values()), timeout_s=60)
    }
    unpublished = [
        (p, o)
        for p, end in ends.items()
        for o in range(end)
        if source_key(raw, p, o) not in sources
    ]
    assert PAST <= sum(ends.values()) < EVENTS, ends
    assert unpublished == [], unpublished[:5]


def freeze_until_a_commit_is_stuck(
    scorer: Process, jvm: int, committed: CommittedOffsets, top_up: Callable[[], None]
) -> float:
    """Freeze the broker until a freeze catches the scorer in its commit; returns when.

    A freeze that catches a produce instead is seen as that batch's delivery timing out:
    the broker is thawed, the scorer left to score on, and frozen again. ``top_up`` keeps a
    backlog before each freeze (an idle scorer has nothing to commit)."""
    for _ in range(STUCK_REWIND_FREEZES):
        top_up()
        seen = len(scorer.logs("batch of "))
        os.kill(jvm, signal.SIGSTOP)
        frozen = time.monotonic()
        scorer.wait_until(lambda: len(scorer.logs("batch of ")), seen + 1, PROGRESS_TIMEOUT_S)
        if "commit did not return" in scorer.logs("batch of ")[seen]["message"]:
            return frozen
        os.kill(jvm, signal.SIGCONT)
        scorer.wait_until(committed, committed() + STUCK_REWIND_BATCH, PROGRESS_TIMEOUT_S)
    raise AssertionError(f"no freeze of {STUCK_REWIND_FREEZES} caught a commit:\n{scorer.output}")


@pytest.mark.timeout(600)
def test_a_stuck_rewind_on_a_silent_broker_ends_the_scorer_and_loses_nothing(
    own_broker: BrokerSettings, model_dir: Path, tmp_path: Path
) -> None:
    """The broker's JVM frozen (SIGSTOP) while a scorer that is not stopping commits a batch:
    the commit is abandoned after its bound, and the seek that would rewind the batch gets no
    answer either: it is waited for until consumer.recovery_timeout_s is spent (a broker that
    comes back in time finds the scorer running: test_scorer_recovers_from_broker_sigkill_by_
    itself). The scorer ends within its bounds with one line and exit 1, having
    committed nothing it had not published; after the thaw a fresh scorer in the group scores
    the rest (at-least-once: none lost)."""
    bootstrap = own_broker.bootstrap
    raw, preds, dlq = make_topics(bootstrap)
    sent = 0

    def top_up() -> None:
        nonlocal sent
        if sent - committed() < STUCK_REWIND_EVENTS // 2:
            send_raw(bootstrap, raw, customer_events(sent, STUCK_REWIND_EVENTS))
            sent += STUCK_REWIND_EVENTS

    group = f"stuck-{uuid.uuid4().hex[:8]}"
    args = (
        "consume", "--broker", bootstrap, "--input-topic", raw, "--output-topic", preds,
        "--deadletter-topic", dlq, "--consumer-group", group, "--model-path", str(model_dir),
        "--batch-records", str(STUCK_REWIND_BATCH), "--no-reports",
    )  # fmt: skip
    scorer = Process.start(
        *args,
        "--mode",
        "streaming",
        env={
            "CHURNSTREAM_PRODUCER__DELIVERY_TIMEOUT_MS": str(STUCK_REWIND_DELIVERY_TIMEOUT_MS),
            "CHURNSTREAM_CONSUMER__RECOVERY_TIMEOUT_S": str(STUCK_REWIND_RECOVERY_TIMEOUT_S),
        },
    )
    committed = CommittedOffsets(bootstrap, group, raw)
    top_up()
    jvm = devbroker.status(own_broker).pid
    assert jvm is not None
    try:
        scorer.wait_until(committed, STUCK_REWIND_BATCH, PROGRESS_TIMEOUT_S)
        frozen = freeze_until_a_commit_is_stuck(scorer, jvm, committed, top_up)
        code = scorer.wait(STUCK_REWIND_EXIT_BOUND_S + 60)
        took_s = time.monotonic() - frozen
    finally:
        os.kill(jvm, signal.SIGCONT)
        committed.close()
        (tmp_path / "scorer.log").write_text(scorer.output)
    errors = [line for line in scorer.lines if line.startswith("error:")]
    rewound = len(scorer.logs("batch of "))  # one per freeze, or a delivery timing out early
    print(f"\nstuck rewind: exit {code}, {took_s:.1f}s after the freeze, {rewound} rewinds")
    print(errors)
    assert code == 1, scorer.output
    assert "Traceback" not in scorer.output
    assert took_s <= STUCK_REWIND_EXIT_BOUND_S, scorer.output
    assert len(errors) == 1, scorer.output
    assert "seek to" in errors[0] and "consumer.recovery_timeout_s is 15s" in errors[0], errors
    assert "left uncommitted for the group's next scorer" in errors[0], errors
    assert len(scorer.logs("seek to ")) == 1, scorer.output  # waiting for it: said once

    fresh = Process.start(*args, "--mode", "batch", "--timeout-ms", "2000")
    assert fresh.wait(DRAIN_TIMEOUT_S) == 0, fresh.output
    scored = read_predictions(bootstrap, preds, sent, exactly_once=False)
    # each rewound batch may be scored twice, the one whose commit never returned too
    scored.check(max_duplicates=(rewound + 1) * STUCK_REWIND_BATCH)
    assert_no_dead_letters(bootstrap, dlq, exactly_once=False)


@pytest.mark.timeout(600)
def test_scorer_gives_up_after_recovery_timeout_with_one_line(
    own_broker: BrokerSettings, model_dir: Path, tmp_path: Path
) -> None:
    """The broker killed mid-transaction and not restarted: the scorer keeps trying for
    consumer.recovery_timeout_s without publishing anything, then exits 1 with one line.
    (Last in the module: it leaves the broker down, and a start costs 5-20 s.)"""
    bootstrap = own_broker.bootstrap
    raw, preds, dlq = make_topics(bootstrap)
    send_raw(bootstrap, raw, customer_events(0, EVENTS))
    group = f"crash-{uuid.uuid4().hex[:8]}"
    scorer = Process.start(
        "consume", "--mode", "streaming", "--broker", bootstrap, "--input-topic", raw,
        "--output-topic", preds, "--deadletter-topic", dlq, "--consumer-group", group,
        "--model-path", str(model_dir), "--batch-records", str(BATCH_RECORDS),
        "--reports-dir", str(tmp_path / "reports"), "--exactly-once",
        env={"CHURNSTREAM_CONSUMER__RECOVERY_TIMEOUT_S": "20"},
    )  # fmt: skip
    committed = CommittedOffsets(bootstrap, group, raw)
    try:
        scorer.wait_until(committed, PAST, PROGRESS_TIMEOUT_S)
    finally:
        committed.close()
    kill_broker(own_broker)
    killed = time.monotonic()
    code = scorer.wait(DRAIN_TIMEOUT_S)
    took_s = time.monotonic() - killed
    (tmp_path / "scorer.log").write_text(scorer.output)
    errors = [line for line in scorer.lines if line.startswith("error:")]
    print(f"\ngave up {took_s:.0f}s after the broker died, exit {code}: {errors}")
    assert code == 1, scorer.output
    assert "Traceback" not in scorer.output
    assert len(errors) == 1, scorer.output
    assert "consumer.recovery_timeout_s is 20s" in errors[0]
    assert 20 <= took_s <= 20 + 60  # the budget, plus at most one bounded publish and attempt
