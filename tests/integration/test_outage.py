"""Broker trouble, for real: the tests stop and start an embedded Apache Kafka of this
module's own (``own_broker``), each on topics and a group of its own.

The test that leaves the broker down comes last: a start costs 5-20 s on a shared machine.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from churnstream.headers import ROW_INDEX_HEADER, SOURCE_HEADER
from churnstream.kafka import admin
from churnstream.ops import devbroker
from churnstream.settings import load_settings
from churnstream.settings.sections import BrokerSettings, TopicSettings
from churnstream.streaming.events_producer import ProduceOptions, run_producer
from tests.integration.kafka_io import CommittedOffsets, read_topic, send_raw
from tests.unit.test_schemas import EVENT

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Outage:
    broker: BrokerSettings
    raw: str
    preds: str
    dlq: str
    group: str

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap


@pytest.fixture
def outage(own_broker: BrokerSettings) -> Outage:
    """The module's broker, running, with three fresh topics and a fresh group name."""
    tag = uuid.uuid4().hex[:8]
    raw, preds, dlq = (f"outage-{tag}.{name}" for name in ("raw", "preds", "dlq"))
    kafka = load_settings(**{"kafka.bootstrap_servers": own_broker.bootstrap}).kafka
    admin.create_topics(
        kafka,
        [
            TopicSettings(name=raw, partitions=3),
            TopicSettings(name=preds, partitions=3),
            TopicSettings(name=dlq, partitions=1),
        ],
    )
    return Outage(own_broker, raw, preds, dlq, f"outage-{tag}")


def events(start: int, count: int) -> list[tuple[bytes | None, bytes | None]]:
    out: list[tuple[bytes | None, bytes | None]] = []
    for i in range(start, start + count):
        body = {**EVENT, "customerID": f"{i % 10000:04d}-OUTAG", "tenure": i % 72}
        out.append((body["customerID"].encode(), orjson.dumps(body)))
    return out


def scorer(outage: Outage, model_dir: Path, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "churnstream",
        "consume",
        "--broker",
        outage.bootstrap,
        "--input-topic",
        outage.raw,
        "--output-topic",
        outage.preds,
        "--deadletter-topic",
        outage.dlq,
        "--consumer-group",
        outage.group,
        "--model-path",
        str(model_dir),
        "--reports-dir",
        str(tmp_path / "reports"),
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    # A file, not a pipe: nothing reads a pipe while the broker is down, and librdkafka's
    # reconnect warnings fill one (64 KiB) and then block the scorer on its next log line.
    with (tmp_path / "scorer.out").open("w") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


def output_of(proc: subprocess.Popen[str], tmp_path: Path, timeout_s: float) -> str:
    """Wait for the scorer to exit; what it printed."""
    proc.wait(timeout_s)
    return (tmp_path / "scorer.out").read_text()


def test_scorer_started_while_broker_down_waits_then_scores(
    outage: Outage, model_dir: Path, tmp_path: Path
) -> None:
    send_raw(outage.bootstrap, outage.raw, events(0, 500))
    devbroker.stop(outage.broker)  # the data stays in its state dir
    proc = scorer(
        outage,
        model_dir,
        tmp_path,
        "--mode",
        "batch",
        "--timeout-ms",
        "5000",
        "--connect-timeout",
        "90",
    )
    # Start the broker only once the scorer has found it down: on a loaded machine the
    # scorer's own start-up (imports, model load) can take longer than any fixed sleep.
    deadline = time.monotonic() + 60
    while "not reachable (attempt 2)" not in (tmp_path / "scorer.out").read_text():
        assert proc.poll() is None, "the scorer gave up while it should be retrying"
        assert time.monotonic() < deadline, "the scorer never reported the broker down"
        time.sleep(0.2)
    devbroker.start(outage.broker)
    output = output_of(proc, tmp_path, 120)
    assert proc.returncode == 0, output
    assert "not reachable (attempt 1); retrying" in output
    assert "Traceback" not in output
    assert "consumed 500, scored 500" in output
    assert len(read_topic(outage.bootstrap, outage.preds, expect=500)) == 500


def wait_committed(
    outage: Outage, target: int, proc: subprocess.Popen[str], timeout_s: float
) -> None:
    """Until the scorer's group has committed ``target`` offsets: all of them published."""
    committed = CommittedOffsets(outage.bootstrap, outage.group, outage.raw)
    try:
        deadline = time.monotonic() + timeout_s
        while (done := committed()) < target:
            assert proc.poll() is None, f"the scorer exited ({proc.returncode})"
            assert time.monotonic() < deadline, f"{done} of {target} committed"
            time.sleep(0.1)
    finally:
        committed.close()


def test_scorer_survives_a_broker_restart_mid_stream(
    outage: Outage, model_dir: Path, tmp_path: Path
) -> None:
    bootstrap = outage.bootstrap
    send_raw(bootstrap, outage.raw, events(0, 3000))
    proc = scorer(outage, model_dir, tmp_path, "--mode", "streaming", "--batch-records", "20")
    try:
        wait_committed(outage, 100, proc, 60)
        devbroker.stop(outage.broker)
        time.sleep(5)
        devbroker.start(outage.broker)
        send_raw(bootstrap, outage.raw, events(3000, 2000))
        wait_committed(outage, 5000, proc, 90)
        proc.send_signal(signal.SIGTERM)
        output = output_of(proc, tmp_path, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    records = read_topic(bootstrap, outage.preds, expect=5000)
    sources = Counter(r.headers[SOURCE_HEADER] for r in records)
    assert len(sources) == 5000, f"lost {5000 - len(sources)} across the restart:\n{output}"


def test_producer_survives_a_broker_restart(outage: Outage, dataset_path: Path) -> None:
    # The broker is down for its stop, 4 s and its start: on a loaded machine that outlasted
    # the default 30 s delivery timeout once (379 events "Message timed out"). The test is
    # about surviving the restart, not about that timeout (the next test is).
    settings = load_settings(
        **{"kafka.bootstrap_servers": outage.bootstrap, "producer.delivery_timeout_ms": 120_000}
    )
    options = ProduceOptions(
        mode="streaming",
        topic=outage.raw,
        data_path=dataset_path,
        events_per_sec=200,
        batch_size=500,
        checkpoint_file=Path("unused"),
        duration_s=12.0,
    )
    broker = outage.broker
    bounce = threading.Timer(
        3.0, lambda: (devbroker.stop(broker), time.sleep(4), devbroker.start(broker))
    )
    bounce.start()
    summary = run_producer(settings, options, threading.Event())
    bounce.join()
    assert summary.failed == 0
    records = read_topic(outage.bootstrap, outage.raw, expect=summary.sent)
    rows = Counter(r.headers[ROW_INDEX_HEADER] for r in records)
    assert len(records) == summary.sent  # every acknowledged event is there, once
    assert max(rows.values()) == 1


def test_producer_reports_what_it_could_not_deliver(
    outage: Outage,
    dataset_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CHURNSTREAM_PRODUCER__DELIVERY_TIMEOUT_MS", "2000")
    settings = load_settings(**{"kafka.bootstrap_servers": outage.bootstrap})
    options = ProduceOptions(
        mode="streaming",
        topic=outage.raw,
        data_path=dataset_path,
        events_per_sec=100,
        batch_size=500,
        checkpoint_file=Path("unused"),
        duration_s=6.0,
    )
    threading.Timer(2.0, lambda: devbroker.stop(outage.broker)).start()
    with caplog.at_level(logging.ERROR, logger="churnstream.kafka.producer"):
        summary = run_producer(settings, options, threading.Event())
    assert summary.failed > 0, "events sent while the broker was gone must count as failed"
    # one summary line per error kind and report (at the flush, or every 5 s), not per event
    lines = [r.getMessage() for r in caplog.records if r.name == "churnstream.kafka.producer"]
    assert 1 <= len(lines) <= 6, lines
    counts = [int(line.split()[0]) for line in lines]
    assert all(" failed: " in line and "(first: " in line for line in lines), lines
    assert sum(counts) == summary.failed, (lines, summary.failed)
    devbroker.start(outage.broker)
    delivered = read_topic(outage.bootstrap, outage.raw, idle_s=2)
    # Every acknowledged event is there. An event in flight when the broker stopped can be
    # appended without its acknowledgement reaching the producer, which then reports it
    # timed out: it counts as failed, and may be there too (seen once: 184 for 183 sent).
    assert summary.sent <= len(delivered) <= summary.sent + summary.failed
    assert len({r.headers[ROW_INDEX_HEADER] for r in delivered}) == len(delivered)
    assert summary.sent + summary.failed >= 500  # 6 s at 100/s, every one accounted for


def test_scorer_gives_up_after_connect_timeout_with_one_line(
    outage: Outage, model_dir: Path, tmp_path: Path
) -> None:
    """Last in the module: it leaves the broker down."""
    devbroker.stop(outage.broker)
    started = time.monotonic()
    proc = scorer(outage, model_dir, tmp_path, "--mode", "batch", "--connect-timeout", "4")
    output = output_of(proc, tmp_path, 60)
    assert proc.returncode == 1, output
    assert time.monotonic() - started < 30
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no Kafka broker answered" in errors[0], output
    assert "Traceback" not in output
