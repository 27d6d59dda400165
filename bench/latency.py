"""Latency at a fixed offered load: a streaming scorer, events sent at a steady rate.

The measured run is preceded by a warm-up at the same rate (``--latency-warmup``, 5 s by
default) whose events are left out of the percentiles and reported on their own: in the
first seconds of load a freshly started broker and scorer ran slower than in the
steady state (measured; the cause, JIT warm-up or otherwise, was not pinned down).
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer

from bench import env
from churnstream.events import encode_event, stamp
from churnstream.headers import ROW_INDEX_HEADER, RUN_ID_HEADER
from churnstream.schemas import format_ts, parse_ts

logger = logging.getLogger("bench")

READY_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0
#: The legs of one event's latency (see LatencyResult.stages_ms).
STAGES = (
    "event sent -> input appended",
    "input appended -> processed",
    "processed -> prediction appended",
)


@dataclass
class LatencyResult:
    rate_per_s: float
    duration_s: float
    warmup_s: float
    sent: int
    measured: int
    achieved_send_rate: float
    #: processed_ts (in the prediction body) minus event_ts.
    processed_ms: dict[str, float] = field(default_factory=dict)
    #: The broker's append time of the prediction record (LogAppendTime) minus event_ts.
    acknowledged_ms: dict[str, float] = field(default_factory=dict)
    #: Where the milliseconds go, per event (joined on event_ts): the broker's append time
    #: of the input event minus event_ts (the event producer's linger and the broker's
    #: append), processed_ts minus that (fetch, waiting for the batch, scoring), and the
    #: prediction's append time minus processed_ts (produce, flush, broker append).
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    #: processed_ts - event_ts of the warm-up events (not in the figures above).
    warmup_processed_ms: dict[str, float] = field(default_factory=dict)
    batch_sizes: dict[str, float] = field(default_factory=dict)
    #: The embedded broker JVM's stop-the-world collections during the measured run
    #: (``jstat -gc``: young, full and concurrent-cycle pauses; count and total ms), empty
    #: when the broker is not the bench's own or jstat is missing. Each pause holds every
    #: record in flight, so their total against the run's length says how much of the
    #: tail they can explain.
    broker_gc: dict[str, float] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    bootstrap: str,
    rows: list[dict[str, Any]],
    *,
    rate: float,
    duration_s: float,
    partitions: int,
    models_dir: Path,
    warmup_s: float = 5.0,
) -> LatencyResult:
    topics = env.create_topics(bootstrap, partitions, log_append_time=True, input_append_time=True)
    raw, predictions_topic, deadletter = topics
    settings = env.effective_settings()
    command = [
        sys.executable, "-m", "churnstream", "--log-level", "WARNING",
        "consume", "--mode", "streaming", "--broker", bootstrap,
        "--input-topic", raw, "--output-topic", predictions_topic, "--deadletter-topic", deadletter,
        "--consumer-group", f"bench-{uuid.uuid4().hex[:8]}", "--model-path", str(models_dir),
        "--no-reports", "--summary-interval", "3600",
    ]  # fmt: skip
    scorer = subprocess.Popen(command, cwd=env.REPO, stdout=subprocess.DEVNULL)
    conf = settings.kafka.producer_config(settings.producer)
    conf["bootstrap.servers"] = bootstrap
    conf.pop("logger", None)
    producer = Producer(conf)
    run_id = uuid.uuid4().hex.encode()
    try:
        _wait_until_scoring(bootstrap, producer, raw, predictions_topic, rows)
        warmup_started = datetime.now(UTC)
        if warmup_s > 0:
            _offer(producer, raw, rows, rate, warmup_s, run_id)
        started = datetime.now(UTC)
        gc_before = _broker_gc(env.BROKER_PIDS.get(bootstrap))
        sent, send_rate = _offer(producer, raw, rows, rate, duration_s, run_id)
        gc_after = _broker_gc(env.BROKER_PIDS.get(bootstrap))
        _drain(bootstrap, predictions_topic, started, sent)
    finally:
        scorer.send_signal(signal.SIGTERM)
        try:
            scorer.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            scorer.kill()
    processed, acknowledged, batches, warmup, stages = _latencies(
        bootstrap, raw, predictions_topic, started, warmup_started
    )
    result = LatencyResult(
        rate_per_s=rate,
        duration_s=duration_s,
        warmup_s=warmup_s,
        sent=sent,
        measured=len(processed),
        achieved_send_rate=send_rate,
        processed_ms=_percentiles(processed),
        acknowledged_ms=_percentiles(acknowledged),
        stages_ms={name: _percentiles(values) for name, values in stages.items()},
        warmup_processed_ms=_percentiles(warmup),
        batch_sizes=_percentiles(batches),
        broker_gc=_gc_delta(gc_before, gc_after),
        command=command,
    )
    if result.broker_gc:
        logger.info("broker GC during the measured run: %s", result.broker_gc)
    logger.info(
        "latency at %.0f/s: processed p50 %.1f p99 %.1f ms, acknowledged p50 %.1f p99 %.1f ms",
        rate,
        result.processed_ms.get("p50", float("nan")),
        result.processed_ms.get("p99", float("nan")),
        result.acknowledged_ms.get("p50", float("nan")),
        result.acknowledged_ms.get("p99", float("nan")),
    )
    return result


def _broker_gc(pid: int | None) -> dict[str, float]:
    """The JVM's cumulative GC counters (``jstat -gc``), or {} if they cannot be read."""
    if pid is None or shutil.which("jstat") is None:
        return {}
    try:
        out = subprocess.run(
            ["jstat", "-gc", str(pid)], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split("\n")
        # "-" marks a counter the collector does not have (ZGC has no young generation).
        fields = zip(out[0].split(), out[1].split(), strict=True)
        return {name: float(value) for name, value in fields if value != "-"}
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        logger.warning("broker GC counters not read: %s", exc)
        return {}


def _gc_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Collections between two ``jstat -gc`` samples, times in ms: young (YGC), full (FGC)
    and concurrent cycles (CGC). With G1 all three count stop-the-world pauses (CGC: the
    remark and cleanup pauses of its concurrent cycles); a collector without some counter
    (ZGC has only CGC, whose time is not all stop-the-world) leaves it out."""
    if not before or not after:
        return {}
    pauses = {"young": ("YGC", "YGCT"), "full": ("FGC", "FGCT"), "concurrent": ("CGC", "CGCT")}
    delta: dict[str, float] = {}
    for name, (count, seconds) in pauses.items():
        if all(key in sample for key in (count, seconds) for sample in (before, after)):
            delta[f"{name}_pauses"] = after[count] - before[count]
            delta[f"{name}_pause_ms"] = round((after[seconds] - before[seconds]) * 1000, 1)
    return delta


def _send(producer: Producer, topic: str, record: dict[str, Any], headers: list[Any]) -> None:
    key, value = encode_event(stamp(record, format_ts(datetime.now(UTC))))
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers)
            break
        except BufferError:
            producer.poll(0.01)
    producer.poll(0)


def _wait_until_scoring(
    bootstrap: str, producer: Producer, raw: str, predictions: str, rows: list[dict[str, Any]]
) -> None:
    """Send a warm-up event every 200 ms until predictions come back (model loaded, joined)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([predictions])
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen = 0
    try:
        while time.monotonic() < deadline:
            _send(producer, raw, rows[0], [])
            producer.flush(5)
            for msg in consumer.consume(100, 0.2):
                if msg.error() is None:
                    seen += 1
            if seen >= 3:
                time.sleep(1.0)  # let the warm-up batches finish
                return
    finally:
        consumer.close()
    raise RuntimeError(f"the scorer produced no prediction within {READY_TIMEOUT_S}s")


def _offer(
    producer: Producer,
    topic: str,
    rows: list[dict[str, Any]],
    rate: float,
    duration_s: float,
    run_id: bytes,
) -> tuple[int, float]:
    """Event i is due at i / rate (a late wake-up sends the backlog, as `produce` does)."""
    total = int(rate * duration_s)
    start = time.perf_counter()
    first = last = start
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        headers = [(ROW_INDEX_HEADER, str(i % len(rows)).encode()), (RUN_ID_HEADER, run_id)]
        _send(producer, topic, rows[i % len(rows)], headers)
        last = time.perf_counter()
        if i == 0:
            first = last
    producer.flush(30)
    send_rate = (total - 1) / (last - first) if total > 1 and last > first else 0.0
    return total, send_rate


def _drain(bootstrap: str, topic: str, started: datetime, sent: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        got = sum(
            1
            for m in env.read_all(bootstrap, topic)
            if m.timestamp()[1] / 1000 >= started.timestamp()
            and parse_ts(orjson.loads(m.value())["event_ts"]) >= started  # not the warm-up's
        )
        if got >= sent:
            return
        time.sleep(1.0)
    logger.warning("not every offered event was scored within %.0fs", DRAIN_TIMEOUT_S)


def _latencies(
    bootstrap: str, raw: str, topic: str, started: datetime, warmup_started: datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    processed: list[float] = []
    acknowledged: list[float] = []
    warmup: list[float] = []
    batches: dict[str, int] = {}
    # The input topic is stamped with LogAppendTime: when each event reached the broker.
    appended_at = {
        orjson.loads(m.value())["event_ts"]: m.timestamp()[1] for m in env.read_all(bootstrap, raw)
    }
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for msg in env.read_all(bootstrap, topic):
        body = orjson.loads(msg.value())
        event = parse_ts(body["event_ts"])
        done = parse_ts(body["processed_ts"])
        if event < started:
            if event >= warmup_started:  # before that: the readiness probes
                warmup.append((done - event).total_seconds() * 1000)
            continue
        processed.append((done - event).total_seconds() * 1000)
        acknowledged.append(msg.timestamp()[1] - event.timestamp() * 1000)
        batches[body["processed_ts"]] = batches.get(body["processed_ts"], 0) + 1
        appended = appended_at.get(body["event_ts"])
        if appended is not None:
            stages[STAGES[0]].append(appended - event.timestamp() * 1000)
            stages[STAGES[1]].append(done.timestamp() * 1000 - appended)
        stages[STAGES[2]].append(msg.timestamp()[1] - done.timestamp() * 1000)
    return (
        np.array(processed),
        np.array(acknowledged),
        np.array(list(batches.values()), dtype=float),
        np.array(warmup),
        {name: np.array(values) for name, values in stages.items()},
    )


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }
