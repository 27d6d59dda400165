"""`churnstream topics ...` against a real broker (and tansu for the dump)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from churnstream.cli.topics import app as topics_app
from churnstream.exceptions import ChurnstreamError
from churnstream.kafka import admin, reader
from churnstream.ops import devbroker
from churnstream.settings import KafkaSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline_topics(
    monkeypatch: pytest.MonkeyPatch, kafka_settings: KafkaSettings
) -> Iterator[dict[str, tuple[str, int]]]:
    """Unique names for the three settings topics, through the environment layer."""
    suffix = uuid.uuid4().hex[:8]
    topics = {"raw": (f"raw-{suffix}", 3), "predictions": (f"pred-{suffix}", 2)}
    topics["deadletter"] = (f"dlq-{suffix}", 1)
    for key, (name, partitions) in topics.items():
        monkeypatch.setenv(f"CHURNSTREAM_TOPICS__{key.upper()}__NAME", name)
        monkeypatch.setenv(f"CHURNSTREAM_TOPICS__{key.upper()}__PARTITIONS", str(partitions))
    yield topics
    admin.delete_topics(kafka_settings, [name for name, _ in topics.values()])


def test_create_is_idempotent_and_reports_partition_mismatch(
    kafka_bootstrap: str,
    kafka_settings: KafkaSettings,
    pipeline_topics: dict[str, tuple[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = CliRunner()
    first = runner.invoke(topics_app, ["create", "--broker", kafka_bootstrap])
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == 3

    existing = {t.name: t.partitions for t in admin.list_topics(kafka_settings)}
    for name, partitions in pipeline_topics.values():
        assert existing[name] == partitions

    second = runner.invoke(topics_app, ["create", "--broker", kafka_bootstrap])
    assert second.exit_code == 0, second.output
    assert "created" not in second.output and second.output.count("exists") == 3

    raw_name, _ = pipeline_topics["raw"]
    monkeypatch.setenv("CHURNSTREAM_TOPICS__RAW__PARTITIONS", "6")
    third = runner.invoke(topics_app, ["create", "--broker", kafka_bootstrap])
    assert third.exit_code == 0, third.output
    assert "expected 6 partitions" in third.output
    assert {t.name: t.partitions for t in admin.list_topics(kafka_settings)}[raw_name] == 3

    listed = runner.invoke(topics_app, ["list", "--broker", kafka_bootstrap])
    assert listed.exit_code == 0 and raw_name in listed.output


def test_describe_shows_leaders_and_watermarks(
    kafka_bootstrap: str, topic_factory: Callable[..., str], produce: Callable[..., int]
) -> None:
    topic = topic_factory(partitions=2)
    # Explicit keys hash to partitions; count per partition from what was acknowledged.
    assert produce(kafka_bootstrap, topic, [(f"k{i}".encode(), b"{}") for i in range(20)]) == 20
    described = admin.describe_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [topic])
    parts = described[0].partitions
    assert [p.partition for p in parts] == [0, 1]
    assert all(p.leader >= 0 and p.low == 0 for p in parts)
    assert sum(p.high for p in parts) == 20  # Apache Kafka's watermarks are exact

    result = CliRunner().invoke(topics_app, ["describe", topic, "--broker", kafka_bootstrap])
    assert result.exit_code == 0, result.output
    assert topic in result.output and "high" in result.output

    missing = CliRunner().invoke(
        topics_app, ["describe", "no-such-topic", "--broker", kafka_bootstrap]
    )
    assert missing.exit_code == 1 and "does not exist" in missing.output


@pytest.mark.parametrize("engine", ["kafka", "tansu"])
def test_dump_reads_every_message_without_trusting_the_watermark(
    engine: str, request: pytest.FixtureRequest, produce: Callable[..., int], tmp_path: Path
) -> None:
    bootstrap: str = request.getfixturevalue(f"{engine}_bootstrap")
    factory = "topic_factory" if engine == "kafka" else "tansu_topic_factory"
    topic: str = request.getfixturevalue(factory)(partitions=3)
    # One linger window: tansu then reports a high watermark far below the real end.
    messages: list[tuple[bytes | None, bytes | None]] = [
        (f"c{i}".encode(), json.dumps({"i": i}).encode()) for i in range(300)
    ]
    messages.append((None, b"not json \xff"))
    assert produce(bootstrap, topic, messages) == 301

    out = tmp_path / "dump.json"
    runner = CliRunner()
    args = ["dump", "--topic", topic, "--limit", "1000", "--output", str(out), "--idle", "1.5"]
    result = runner.invoke(topics_app, [*args, "--broker", bootstrap])
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())
    assert len(records) == 301
    numbers = sorted(r["value"]["i"] for r in records if isinstance(r["value"], dict))
    assert numbers == list(range(300))
    odd = next(r for r in records if r["key"] is None)
    assert odd["value"] == "not json \\xff"
    first = records[0]
    assert set(first) == {"topic", "partition", "offset", "timestamp", "key", "headers", "value"}
    assert first["topic"] == topic and first["headers"] == {"source": "test"}
    assert isinstance(first["timestamp"], int)
    assert records == sorted(records, key=lambda r: (r["partition"], r["offset"]))

    limited = runner.invoke(topics_app, ["dump", "-t", topic, "-n", "10", "--broker", bootstrap])
    assert limited.exit_code == 0, limited.output
    assert len(json.loads(limited.stdout)) == 10


def test_dump_leaves_no_consumer_group_behind(
    kafka_bootstrap: str, topic_factory: Callable[..., str], produce: Callable[..., int]
) -> None:
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, [(b"k", b"1")])
    records = reader.dump_topic(
        KafkaSettings(bootstrap_servers=kafka_bootstrap), topic, limit=5, idle_s=0.5
    )
    assert len(records) == 1
    groups = (
        AdminClient({"bootstrap.servers": kafka_bootstrap})
        .list_consumer_groups(request_timeout=10)
        .result(timeout=10)
    )
    assert not [g.group_id for g in groups.valid if g.group_id.startswith("churnstream-dump")]


def test_unreachable_broker_gives_one_line_error_quickly() -> None:
    dead = f"127.0.0.1:{devbroker.find_free_port()}"
    runner = CliRunner()
    for args in (["list"], ["create"], ["describe"], ["dump", "--topic", "x"]):
        started = time.monotonic()
        result = runner.invoke(topics_app, [*args, "--broker", dead, "--timeout", "1"])
        elapsed = time.monotonic() - started
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: no Kafka broker answered at " + dead)
        assert result.output.count("\n") == 1, result.output
        assert elapsed < 4, (args, elapsed)


@pytest.mark.parametrize("engine", ["kafka", "tansu"])
def test_reader_from_given_offsets_to_the_end_even_where_the_watermark_is_wrong(
    engine: str, request: pytest.FixtureRequest, produce: Callable[..., int]
) -> None:
    """until="end" stops at the fetch's own end of partition, without idling: on tansu,
    whose ListOffsets under-reports the end, every record is still read."""
    bootstrap: str = request.getfixturevalue(f"{engine}_bootstrap")
    factory = "topic_factory" if engine == "kafka" else "tansu_topic_factory"
    topic: str = request.getfixturevalue(factory)(partitions=2)
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    # Explicit partitions: 300 records on 0, 200 on 1, each in one linger window.
    assert produce(bootstrap, topic, [(None, b"%d" % i) for i in range(300)], partition=0) == 300
    assert produce(bootstrap, topic, [(None, b"%d" % i) for i in range(200)], partition=1) == 200
    ends = admin.end_offsets(kafka, topic)
    if engine == "kafka":
        assert ends == {0: 300, 1: 200}
    else:
        assert ends[0] <= 300 and ends[1] <= 200  # tansu: the last batch's base offset + 1

    started = time.monotonic()
    with reader.TopicReader(
        kafka, topic, purpose="test", start={0: 250}, until="end", idle_s=30.0
    ) as r:
        seen = [(m.partition(), m.offset()) for m in r]
    elapsed = time.monotonic() - started
    assert r.complete and r.read == 50 + 200
    assert sorted(seen) == [(0, o) for o in range(250, 300)] + [(1, o) for o in range(200)]
    assert elapsed < 15.0  # stopped at the end, not after idle_s


def test_reader_bounds_a_read_that_does_not_fall_idle_and_names_a_missing_topic(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], produce: Callable[..., int]
) -> None:
    topic = topic_factory(partitions=1)
    produce(kafka_settings.bootstrap_servers, topic, [(b"k", b"1"), (b"k", b"2")])
    started = time.monotonic()
    with reader.TopicReader(
        kafka_settings, topic, purpose="test", idle_s=60.0, max_duration_s=1.5
    ) as r:
        values = [m.value() for m in r]
    assert values == [b"1", b"2"] and not r.complete
    assert time.monotonic() - started < 10.0

    with pytest.raises(ChurnstreamError, match="topic 'no-such-topic' does not exist"):
        with reader.TopicReader(kafka_settings, "no-such-topic", purpose="test") as r:
            list(r)
