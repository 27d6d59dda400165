"""The bench's environment: an embedded broker, fresh topics, events, the model, the machine."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from churnstream.events import encode_event, stamp
from churnstream.headers import ROW_INDEX_HEADER, RUN_ID_HEADER
from churnstream.model.export import export_version
from churnstream.model.scorer import Scorer
from churnstream.model.train import run_training
from churnstream.ops import devbroker
from churnstream.schemas import format_ts
from churnstream.settings import Settings
from churnstream.settings.sections import BrokerSettings
from churnstream.streaming.events_producer import load_records

logger = logging.getLogger("bench")

REPO = Path(__file__).resolve().parents[1]
JARS_DIR = REPO / ".churnstream" / "kafka-jars"
DATASET = REPO / "data" / "raw" / "telco_customer_churn.csv"
ADMIN_TIMEOUT_S = 30.0
READ_IDLE_S = 5.0
FILL_PRODUCER = {
    # Filling is set-up, not what is measured: large batches, no delivery callbacks.
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 1_000_000,
    "enable.idempotence": True,
    "acks": "all",
}


#: The JVM of each embedded broker started here, by bootstrap address (for its GC counters).
BROKER_PIDS: dict[str, int] = {}


@contextlib.contextmanager
def embedded_broker(bootstrap: str | None) -> Iterator[str]:
    """The given cluster, or a fresh embedded Apache Kafka on a free port (stopped after)."""
    if bootstrap:
        devbroker.wait_ready(bootstrap, ADMIN_TIMEOUT_S)
        yield bootstrap
        return
    with tempfile.TemporaryDirectory(prefix="churnstream-bench-") as state:
        settings = BrokerSettings(
            engine="kafka",
            port=devbroker.find_free_port(),
            state_dir=Path(state),
            jars_dir=JARS_DIR,
            heap="1g",
        )
        status = devbroker.start(settings)
        if status.pid is not None:
            BROKER_PIDS[status.bootstrap] = status.pid
        logger.info(
            "embedded Apache Kafka at %s (%.1fs to start)", status.bootstrap, status.start_s or 0
        )
        try:
            yield status.bootstrap
        finally:
            devbroker.stop(settings)


def create_topics(
    bootstrap: str,
    partitions: int,
    *,
    log_append_time: bool = False,
    input_append_time: bool = False,
) -> tuple[str, str, str]:
    """Fresh (input, predictions, dead letters) topics with unique names.

    ``log_append_time``: the predictions topic is stamped with the broker's append time;
    ``input_append_time``: the input topic too.
    """
    tag = uuid.uuid4().hex[:8]
    names = (f"bench-{tag}-raw", f"bench-{tag}-predictions", f"bench-{tag}-deadletter")
    append_time = {"message.timestamp.type": "LogAppendTime"}
    predictions_config = append_time if log_append_time else {}
    input_config = append_time if input_append_time else {}
    topics = [
        NewTopic(names[0], num_partitions=partitions, replication_factor=1, config=input_config),
        NewTopic(
            names[1], num_partitions=partitions, replication_factor=1, config=predictions_config
        ),
        NewTopic(names[2], num_partitions=1, replication_factor=1),
    ]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(topics, operation_timeout=ADMIN_TIMEOUT_S).values():
        future.result(ADMIN_TIMEOUT_S)
    _wait_for_leaders(admin, names)
    return names


def _wait_for_leaders(admin: AdminClient, names: tuple[str, ...]) -> None:
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
        ready = all(
            name in metadata.topics
            and metadata.topics[name].partitions
            and all(p.leader >= 0 for p in metadata.topics[name].partitions.values())
            for name in names
        )
        if ready:
            return
        time.sleep(0.1)
    raise RuntimeError(f"topics {names} have no leaders after {ADMIN_TIMEOUT_S}s")


def records() -> list[dict[str, Any]]:
    """The dataset's valid rows as event records (what `churnstream produce` sends)."""
    if not DATASET.is_file():
        subprocess.run([sys.executable, "-m", "churnstream", "data", "fetch"], check=True, cwd=REPO)
    rows, _ = load_records(DATASET)
    return rows


Headers = list[tuple[str, str | bytes | None]]


def event(
    i: int, rows: list[dict[str, Any]], start: datetime, run_id: bytes
) -> tuple[bytes, bytes, Headers]:
    """Event ``i`` of the file looped, as `churnstream produce` encodes it: (key, value,
    headers), with its own ``event_ts`` (``start`` plus ``i`` microseconds)."""
    record = rows[i % len(rows)]
    key, value = encode_event(stamp(record, format_ts(start + timedelta(microseconds=i))))
    return key, value, [(ROW_INDEX_HEADER, str(i % len(rows)).encode()), (RUN_ID_HEADER, run_id)]


def fill(bootstrap: str, topic: str, count: int, rows: list[dict[str, Any]]) -> float:
    """Produce ``count`` events (the file, looped) as `churnstream produce` encodes them.

    Each event gets its own ``event_ts`` (microseconds apart, ending now) and the producer's
    headers, compressed with the product's default codec. Returns the seconds it took.
    """
    codec = effective_settings().producer.compression
    producer = Producer(
        {"bootstrap.servers": bootstrap, **FILL_PRODUCER, "compression.type": codec}
    )
    run_id = uuid.uuid4().hex.encode()
    start = datetime.now(UTC) - timedelta(microseconds=count)
    started = time.perf_counter()
    for i in range(count):
        key, value, headers = event(i, rows, start, run_id)
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} fill events not acknowledged")
    return time.perf_counter() - started


def read_all(bootstrap: str, topic: str, *, expect: int | None = None) -> list[Any]:
    """Every message of ``topic`` (all partitions, from the start to the end offsets)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.min.bytes": 1,
            "queued.max.messages.kbytes": 262_144,
        }
    )
    metadata = consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S)
    partitions = list(metadata.topics[topic].partitions)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=ADMIN_TIMEOUT_S)[1]
        for p in partitions
    }
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: list[Any] = []
    done = {p for p, end in ends.items() if end == 0}
    last = time.monotonic()
    while len(done) < len(partitions) and time.monotonic() - last < READ_IDLE_S:
        batch = consumer.consume(50_000, 0.5)
        for msg in batch:
            if msg.error():
                continue
            out.append(msg)
            partition, offset = msg.partition() or 0, msg.offset() or 0
            if offset + 1 >= ends[partition]:
                done.add(partition)
        if batch:
            last = time.monotonic()
    consumer.close()
    if expect is not None and len(out) < expect:
        logger.warning("read %d of %d expected messages from %s", len(out), expect, topic)
    return out


def committed_complete(bootstrap: str, topic: str, group: str) -> bool:
    """True when the group's committed offsets equal the end offsets of every partition."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    metadata = consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S)
    tps = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
    committed = consumer.committed(tps, timeout=ADMIN_TIMEOUT_S)
    ok = all(
        tp.offset == consumer.get_watermark_offsets(tp, timeout=ADMIN_TIMEOUT_S)[1]
        for tp in committed
    )
    consumer.close()
    return ok


def model(models_dir: Path) -> Scorer:
    """The current model (models/latest), trained first if there is none or it is unusable."""
    try:
        scorer = Scorer.load(models_dir)
    except Exception as exc:  # noqa: BLE001 - any reason to retrain
        logger.info("no usable model in %s (%s); training one", models_dir, exc)
        records()  # makes sure the dataset is there
        run_training(DATASET, models_dir)
        return Scorer.load(models_dir)
    if not (scorer.metadata.get("compiled") or {}).get("file"):
        # Trained before training exported arrays: `consume` loads only those.
        export_version(models_dir)
        return Scorer.load(models_dir)
    return scorer


@dataclass(frozen=True)
class Machine:
    cpus: int
    load_before: tuple[float, float, float]
    python: str
    platform: str
    git_commit: str

    @classmethod
    def now(cls) -> Machine:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
        return cls(
            cpus=os.cpu_count() or 0,
            load_before=os.getloadavg(),
            python=platform.python_version(),
            platform=platform.platform(),
            git_commit=commit,
        )


def effective_settings() -> Settings:
    return Settings()
