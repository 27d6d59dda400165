"""Compression: the same events produced with each codec, and what each costs and saves.

For every codec, the same N events (the dataset's rows looped, encoded with the headers
`churnstream produce` sends) go to a fresh topic through churnstream's own producer
(`SafeProducer` with ``KafkaSettings.producer_config``; only ``compression.type`` differs).
Measured per codec:

- producer msgs/s: from the first ``produce()`` to the end of ``flush()`` (every record
  acknowledged), the events encoded beforehand; and the producing process's CPU time per
  event over the same span (``time.process_time``, librdkafka's threads included);
- broker disk: the partitions' log sizes from DescribeLogDirs (kafka-python's
  ``KafkaAdminClient.describe_log_dirs``), so it works on any cluster, not just the
  embedded one. A second topic gets the dataset once (7,043 distinct customers): looped
  events repeat each customer about 1,200 records apart in its partition, which a codec
  with a large window (zstd) could exploit and real traffic would not offer;
- decode msgs/s with confluent-kafka (the scorer's client and settings) and with
  kafka-python (the replaced system's clients, which have no lz4, snappy or zstd library:
  for those the error it raises is recorded instead, once). Both rates count from the
  first message to the last and include fetching: they are what a reader sees.

``gzip:1`` is gzip at level 1 (librdkafka's ``compression.level``) instead of zlib's
default 6. Rounds run the codecs in turn, so a burst of load on the shared machine lands
on one round rather than one codec; rates are the median over rounds.
"""

from __future__ import annotations

import logging
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench import env
from churnstream.kafka.producer import SafeProducer

logger = logging.getLogger("bench")

#: ``codec`` or ``codec:level`` (librdkafka's ``compression.level``; default: the codec's own).
CODECS = ("none", "gzip", "gzip:1", "snappy", "lz4", "zstd")
DECODE_BATCH_RECORDS = 5_000
DECODE_IDLE_S = 10.0


@dataclass
class CodecResult:
    codec: str
    produce_msgs_per_s: float
    #: CPU time of the producing process per event (Python and librdkafka's threads): what
    #: the codec costs, much less sensitive to other load than msgs/s.
    produce_cpu_us_per_event: float
    disk_bytes: int
    disk_bytes_per_event: float
    #: Disk bytes per event for the dataset sent once (no repeated customers).
    one_pass_bytes_per_event: float
    decode_msgs_per_s: float
    #: kafka-python; None when it could not read the topic (see legacy_error).
    legacy_decode_msgs_per_s: float | None
    legacy_error: str | None = None
    rounds: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class CompressionResult:
    events: int
    partitions: int
    rounds: int
    #: Keys, values and headers as produced (uncompressed), for the compression ratios.
    payload_bytes: int
    one_pass_events: int
    one_pass_payload_bytes: int
    codecs: list[CodecResult]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    bootstrap: str,
    rows: list[dict[str, Any]],
    *,
    events: int,
    partitions: int,
    rounds: int = 3,
    codecs: tuple[str, ...] = CODECS,
    legacy: bool = True,
) -> CompressionResult:
    run_id = uuid.uuid4().hex.encode()
    start = datetime.now(UTC)
    messages = [env.event(i, rows, start, run_id) for i in range(events)]
    one_pass = messages[: len(rows)]
    rates: dict[str, dict[str, list[float]]] = {
        c: {"produce": [], "produce_cpu_us": [], "decode": [], "legacy_decode": []} for c in codecs
    }
    disk: dict[str, list[int]] = {c: [] for c in codecs}
    legacy_error: dict[str, str | None] = {}
    # The dataset once per codec first: its own figure, and a warm-up of broker and client
    # before anything is timed (the first topic on a fresh broker was measured slower).
    one_pass_bytes: dict[str, int] = {}
    for codec in codecs:
        single = env.create_topics(bootstrap, partitions)[0]
        _produce(bootstrap, single, codec, one_pass)
        one_pass_bytes[codec] = log_bytes(bootstrap, single)
    for round_no in range(rounds):
        for codec in codecs:
            topic = env.create_topics(bootstrap, partitions)[0]
            rate, cpu_us = _produce(bootstrap, topic, codec, messages)
            size = log_bytes(bootstrap, topic)
            decode = _decode(bootstrap, topic, len(messages))
            rates[codec]["produce"].append(rate)
            rates[codec]["produce_cpu_us"].append(cpu_us)
            rates[codec]["decode"].append(decode)
            disk[codec].append(size)
            if legacy and legacy_error.get(codec) is None:
                rate_or_none, legacy_error[codec] = _legacy_decode(bootstrap, topic, len(messages))
                if rate_or_none is not None:
                    rates[codec]["legacy_decode"].append(rate_or_none)
            logger.info(
                "compression round %d, %s: produce %.0f msgs/s (%.1f us CPU per event), "
                "%d bytes on disk, decode %.0f msgs/s",
                round_no + 1, codec, rate, cpu_us, size, decode,
            )  # fmt: skip
    results = []
    for codec in codecs:
        median_disk = int(statistics.median(disk[codec]))
        results.append(
            CodecResult(
                codec=codec,
                produce_msgs_per_s=statistics.median(rates[codec]["produce"]),
                produce_cpu_us_per_event=statistics.median(rates[codec]["produce_cpu_us"]),
                disk_bytes=median_disk,
                disk_bytes_per_event=median_disk / len(messages),
                one_pass_bytes_per_event=one_pass_bytes[codec] / len(one_pass),
                decode_msgs_per_s=statistics.median(rates[codec]["decode"]),
                legacy_decode_msgs_per_s=_median(rates[codec]["legacy_decode"]),
                legacy_error=legacy_error.get(codec),
                rounds={**rates[codec], "disk_bytes": [float(d) for d in disk[codec]]},
            )
        )
    return CompressionResult(
        events=len(messages),
        partitions=partitions,
        rounds=rounds,
        payload_bytes=sum(map(_record_bytes, messages)),
        one_pass_events=len(one_pass),
        one_pass_payload_bytes=sum(map(_record_bytes, one_pass)),
        codecs=results,
    )


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _record_bytes(message: tuple[bytes, bytes, env.Headers]) -> int:
    key, value, headers = message
    return len(key) + len(value) + sum(len(h) + len(v or b"") for h, v in headers)


def _produce(
    bootstrap: str, topic: str, codec: str, messages: list[tuple[bytes, bytes, env.Headers]]
) -> float:
    """Send with churnstream's producer settings and ``codec``: (msgs/s until all acked,
    CPU microseconds per event of this process, librdkafka's threads included)."""
    settings = env.effective_settings()
    conf = settings.kafka.producer_config(settings.producer)
    conf["bootstrap.servers"] = bootstrap
    name, _, level = codec.partition(":")
    conf["compression.type"] = name
    if level:
        conf["compression.level"] = int(level)
    conf.pop("logger", None)
    producer = SafeProducer(conf)
    started, cpu_started = time.perf_counter(), time.process_time()
    for key, value, headers in messages:
        producer.produce(topic, value, key=key, headers=headers)  # type: ignore[arg-type]
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu_started) * 1e6 / len(messages)
    if remaining or producer.stats.failed:
        raise RuntimeError(
            f"{codec}: {remaining} unacknowledged, {producer.stats.failed} failed "
            f"({producer.stats.last_error})"
        )
    return len(messages) / elapsed, cpu_us


def log_bytes(bootstrap: str, topic: str) -> int:
    """Bytes of ``topic``'s partition logs on the brokers' disks (DescribeLogDirs)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        answer = admin.describe_log_dirs(topic_partitions=[topic])
    finally:
        admin.close()
    return sum(
        partition["partition_size"]
        for broker in answer
        for log_dir in broker["log_dirs"]
        for listed in log_dir["topics"]
        if listed["name"] == topic
        for partition in listed["partitions"]
    )


def _decode(bootstrap: str, topic: str, expect: int) -> float:
    """Read the topic with the scorer's consumer settings; msgs/s first to last message."""
    settings = env.effective_settings()
    conf = settings.kafka.consumer_config(settings.consumer, f"bench-{uuid.uuid4().hex[:8]}")
    conf["bootstrap.servers"] = bootstrap
    conf.pop("logger", None)
    consumer = Consumer(conf)
    metadata = consumer.list_topics(topic, timeout=env.ADMIN_TIMEOUT_S)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    count, first, last = 0, 0.0, 0.0
    idle_since = time.monotonic()
    while count < expect and time.monotonic() - idle_since < DECODE_IDLE_S:
        batch = consumer.consume(DECODE_BATCH_RECORDS, 0.5)
        if not batch:
            continue
        idle_since = time.monotonic()
        first = first or time.perf_counter()
        count += sum(1 for m in batch if m.error() is None and m.value() is not None)
        last = time.perf_counter()
    consumer.close()
    if count != expect:
        raise RuntimeError(f"decoded {count} of {expect} messages from {topic}")
    return count / (last - first) if last > first else 0.0


def _legacy_decode(bootstrap: str, topic: str, expect: int) -> tuple[float | None, str | None]:
    """Read the topic with kafka-python as the replaced system's consumers do (no codec
    libraries installed): (msgs/s, None), or (None, the error it raised)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    count, first, last = 0, 0.0, 0.0
    try:
        consumer.assign([_tp(topic, p) for p in consumer.partitions_for_topic(topic) or ()])
        idle_since = time.monotonic()
        while count < expect and time.monotonic() - idle_since < DECODE_IDLE_S:
            batch = consumer.poll(timeout_ms=500, max_records=DECODE_BATCH_RECORDS)
            if not batch:
                continue
            idle_since = time.monotonic()
            first = first or time.perf_counter()
            count += sum(len(records) for records in batch.values())
            last = time.perf_counter()
    except KafkaError as exc:
        return None, str(exc)  # kafka-python's text starts with the error's class name
    finally:
        consumer.close()
    if count != expect:
        return None, f"read {count} of {expect} messages"
    return (count / (last - first) if last > first else 0.0), None


def _tp(topic: str, partition: int) -> Any:
    from kafka import TopicPartition as KafkaTopicPartition

    return KafkaTopicPartition(topic, partition)


def render(result: dict[str, Any]) -> str:
    """The compression table (markdown)."""
    payload = result["payload_bytes"]
    one_pass_payload = result["one_pass_payload_bytes"] / result["one_pass_events"]
    lines = [
        f"| codec ({result['events']:,} events, {result['partitions']} partitions, "
        f"median of {result['rounds']}) | producer msgs/s | producer CPU per event | "
        f"broker disk | bytes/event "
        f"(ratio) | dataset once ({result['one_pass_events']:,} events): bytes/event "
        f"(ratio) | decode msgs/s, confluent-kafka | kafka-python without codec libraries |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["codecs"]:
        ratio = payload / row["disk_bytes"] if row["disk_bytes"] else 0.0
        one_pass = row["one_pass_bytes_per_event"]
        one_ratio = one_pass_payload / one_pass if one_pass else 0.0
        legacy = (
            f"{row['legacy_decode_msgs_per_s']:,.0f} msgs/s"
            if row["legacy_decode_msgs_per_s"] is not None
            else f"**cannot read**: {row['legacy_error']}"
            if row["legacy_error"]
            else "not measured"
        )
        lines.append(
            f"| {row['codec']} | {row['produce_msgs_per_s']:,.0f} | "
            f"{row['produce_cpu_us_per_event']:.1f} us | "
            f"{row['disk_bytes'] / 1e6:,.1f} MB | {row['disk_bytes_per_event']:,.0f} "
            f"({ratio:.1f}x) | {row['one_pass_bytes_per_event']:,.0f} ({one_ratio:.1f}x) | "
            f"{row['decode_msgs_per_s']:,.0f} | {legacy} |"
        )
    return "\n".join(lines)
