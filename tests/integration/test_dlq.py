"""Dead-letter tools on a real broker: real letters from the real scorer, inspected, replayed.

One scenario carries most of the weight because each scorer run costs a group join: bad
messages are scored into real dead letters, a crash-and-replay duplicate is added, then
inspect, a filtered replay (twice, then forced), the replayed messages scored again (the
retry count flows through), a dry run and a full non-transactional replay.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.deadletters.markers import marker_topic_for
from churnstream.deadletters.reading import ensure_marker_topic
from churnstream.deadletters.replay import transactional_id
from churnstream.headers import (
    ORIGINAL_HEADER_PREFIX,
    REPLAY_OF_HEADER,
    RETRY_COUNT_HEADER,
    ROW_INDEX_HEADER,
    RUN_ID_HEADER,
    SOURCE_HEADER,
)
from churnstream.kafka import admin, clients
from churnstream.scoring.dead_letter import dead_letter
from churnstream.scoring.decode import MAX_BODY_BYTES
from churnstream.scoring.messages import RawMessage
from churnstream.settings import KafkaSettings, Settings
from tests.integration.kafka_io import Record, read_topic, send_raw
from tests.unit.test_schemas import EVENT

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., str]
ID = b"7590-VHVEG"
#: Every letter is written before a command reads; this only ends each read once at the end.
IDLE = "0.3"

#: (key, value) -> reason code the scorer gives it.
BAD: list[tuple[tuple[bytes | None, bytes | None], str]] = [
    ((b"x", b"not json at all"), "not_json"),
    ((None, b"\xff\xfe\xfa"), "not_utf8"),
    ((None, b"[1,2,3]"), "not_object"),
    ((ID, orjson.dumps({**EVENT, "Contract": "Weekly"})), "schema"),
    ((ID, orjson.dumps({**EVENT, "tenure": "ten"})), "schema"),
    ((b"0000-XXXXX", orjson.dumps(EVENT)), "key_mismatch"),
    ((None, b""), "empty_body"),
    ((b"n", None), "empty_body"),  # null, not empty: replayed as null
    ((ID, b"y" * (MAX_BODY_BYTES + 10)), "too_large"),
]
N_BAD = len(BAD)
GOOD = [(ID, orjson.dumps({**EVENT, "tenure": t})) for t in range(5)]


def invoke(args: list[str], *, exit_code: int = 0) -> Any:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == exit_code, f"{args}: {result.output}\n{result.exception!r}"
    return result


def as_json(args: list[str]) -> Any:
    return orjson.loads(invoke([*args, "--json"]).stdout)


def score(
    bootstrap: str, raw: str, preds: str, dlq: str, model_dir: Path, tmp_path: Path, count: int
) -> str:
    """The real scorer over ``count`` messages (--max-messages: a first group join on a fresh
    broker can take longer than a short idle timeout)."""
    args = ["consume", "--mode", "batch", "--broker", bootstrap, "--input-topic", raw]
    args += ["--output-topic", preds, "--deadletter-topic", dlq, "--model-path", str(model_dir)]
    args += ["--consumer-group", f"g-{uuid.uuid4().hex[:8]}", "--max-messages", str(count)]
    args += ["--timeout-ms", "30000", "--reports-dir", str(tmp_path / "reports")]
    return str(invoke(args).output)


def replay_args(bootstrap: str, dlq: str, to: str, *extra: str) -> list[str]:
    # fmt: off
    return ["dlq", "replay", "--broker", bootstrap, "--from-topic", dlq, "--to-topic", to,
            "--idle", IDLE, *extra]
    # fmt: on


def copy_records(bootstrap: str, topic: str, records: list[Record]) -> None:
    """Re-send records with their key, value and headers (a scorer's crash-and-replay)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for r in records:
        producer.produce(topic, value=r.value, key=r.key, headers=list(r.headers.items()))
    assert producer.flush(30) == 0
    producer.close()


def test_inspect_and_replay_real_dead_letters(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    raw, fixed, everything = (topic_factory(partitions=3) for _ in range(3))
    preds = topic_factory(partitions=3)
    dlq = topic_factory(partitions=1)
    markers = marker_topic_for(dlq)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    try:
        _scenario(kafka_bootstrap, raw, preds, dlq, fixed, everything, model_dir, tmp_path)
    finally:
        admin.delete_topics(kafka, [markers])


def _scenario(
    bootstrap: str,
    raw: str,
    preds: str,
    dlq: str,
    fixed: str,
    everything: str,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    send_raw(bootstrap, raw, GOOD[:2] + [m for m, _ in BAD] + GOOD[2:])
    out = score(bootstrap, raw, preds, dlq, model_dir, tmp_path, len(GOOD) + len(BAD))
    assert f"dead-lettered {N_BAD}" in out, out
    letters = read_topic(bootstrap, dlq, expect=N_BAD, idle_s=0.5)
    assert len(letters) == N_BAD
    schema_letters = [r for r in letters if r.headers["churnstream.error_code"] == b"schema"]
    copy_records(bootstrap, dlq, schema_letters[:1])  # the same input dead-lettered twice

    # -- inspect: each input once, the duplicate said so.
    summary = as_json(["dlq", "inspect", "--broker", bootstrap, "--topic", dlq, "--idle", IDLE])
    assert summary["letters"] == N_BAD + 1
    assert summary["unique"] == N_BAD
    assert summary["duplicates_skipped"] == 1
    assert summary["by_error_type"] == {"validation_error": N_BAD}
    assert summary["by_code"] == dict(Counter(code for _, code in BAD)) | {"schema": 2}
    assert summary["by_source_topic"] == {raw: N_BAD}
    assert summary["by_retry_count"] == {"0": N_BAD}
    assert summary["replayed"] == 0
    assert summary["oldest_failed_ts"] <= summary["newest_failed_ts"]
    example = summary["examples"]["schema"][0]
    assert example["customer_or_excerpt"] == "7590-VHVEG"
    assert example["source"].startswith(f"{raw}:") and example["failed_ts"]
    assert "Contract" in example["error_message"]
    assert summary["examples"]["not_json"][0]["customer_or_excerpt"] == "'not json at all'"
    table = invoke(["dlq", "inspect", "--broker", bootstrap, "-t", dlq, "--idle", IDLE, "-k", "1"])
    assert "by reason code" in table.output and "key_mismatch" in table.output

    # -- a filtered replay re-sends exactly the schema originals, byte for byte.
    outcome = as_json(replay_args(bootstrap, dlq, fixed, "--code", "schema"))
    assert outcome["replayed"] == 2 and outcome["failed"] == 0 and outcome["transactional"]
    assert outcome["skipped"] == {
        "duplicate": 1,
        "filtered": N_BAD - 2,
        "already_replayed": 0,
        "not_replayable": 0,
        "over_limit": 0,
    }
    replayed = read_topic(bootstrap, fixed, expect=2, idle_s=0.5)
    schema_ids = {f"{dlq}:{r.partition}:{r.offset}" for r in schema_letters}
    sent = {v for (_, v), code in BAD if code == "schema"}
    assert {r.value for r in replayed} == sent and len(replayed) == 2
    assert all(r.key == ID for r in replayed)
    assert {r.headers[REPLAY_OF_HEADER].decode() for r in replayed} == schema_ids
    assert all(r.headers[RETRY_COUNT_HEADER] == b"1" for r in replayed)
    marks = read_topic(bootstrap, marker_topic_for(dlq), expect=2, idle_s=0.5)
    assert {r.key.decode() for r in marks if r.key} == schema_ids
    assert {r.json()["replayed_to"] for r in marks} == {
        f"{fixed}:{r.partition}:{r.offset}" for r in replayed
    }

    # -- a second replay replays nothing; --force replays again.
    again = as_json(replay_args(bootstrap, dlq, fixed, "--code", "schema"))
    assert again["replayed"] == 0 and again["skipped"]["already_replayed"] == 2
    forced = as_json(replay_args(bootstrap, dlq, fixed, "--code", "schema", "--force"))
    assert forced["replayed"] == 2
    assert len(read_topic(bootstrap, fixed, expect=4, idle_s=0.5)) == 4

    # -- nothing was fixed: the replays dead-letter again, now with retry_count 1.
    out = score(bootstrap, fixed, preds, dlq, model_dir, tmp_path, 4)
    assert "dead-lettered 4" in out, out
    summary = as_json(["dlq", "inspect", "--broker", bootstrap, "--topic", dlq, "--idle", IDLE])
    assert summary["by_retry_count"] == {"0": N_BAD, "1": 4}
    assert summary["by_source_topic"] == {raw: N_BAD, fixed: 4}
    assert summary["replayed"] == 2

    # -- a dry run writes nothing and says what a full replay would do.
    dry = as_json(replay_args(bootstrap, dlq, everything, "--dry-run"))
    expected_skips = {
        "duplicate": 1,
        "filtered": 0,
        "already_replayed": 2,
        "not_replayable": 1,
        "over_limit": 0,
    }
    assert dry["dry_run"] and dry["planned"] == N_BAD + 1 and dry["replayed"] == 0
    assert dry["skipped"] == expected_skips
    assert [n["reason"] for n in dry["not_replayable"]] == [
        f"the letter kept only the start of the body of {MAX_BODY_BYTES + 10} bytes (truncated)"
    ]
    assert read_topic(bootstrap, everything, idle_s=0.5) == []

    # -- a full replay without transactions: every wrapper comes back byte for byte.
    full = as_json(replay_args(bootstrap, dlq, everything, "--no-transactions"))
    assert full["replayed"] == N_BAD + 1 and not full["transactional"]
    assert full["skipped"] == expected_skips
    out = read_topic(bootstrap, everything, expect=N_BAD + 1, idle_s=0.5)
    by_letter = {r.headers[REPLAY_OF_HEADER].decode(): r for r in out}
    sent_raw = read_topic(bootstrap, raw, expect=len(GOOD) + N_BAD)
    inputs = {f"{r.topic}:{r.partition}:{r.offset}": r for r in sent_raw}
    for letter in letters:
        if letter.headers["churnstream.error_code"] in (b"schema", b"too_large"):
            continue
        original = inputs[letter.headers[SOURCE_HEADER].decode()]
        copy = by_letter[f"{dlq}:{letter.partition}:{letter.offset}"]
        assert (copy.key, copy.value) == (original.key, original.value)
        assert copy.headers[RETRY_COUNT_HEADER] == b"1"
    second_generation = [r for r in out if r.headers[RETRY_COUNT_HEADER] == b"2"]
    assert len(second_generation) == 4 and {r.value for r in second_generation} == sent
    final = as_json(["dlq", "inspect", "--broker", bootstrap, "--topic", dlq, "--idle", IDLE])
    assert final["replayed"] == N_BAD + 3  # 2 schema letters, then all the others


def test_a_replayed_message_gets_its_own_headers_back(
    kafka_bootstrap: str, topic_factory: TopicFactory, model_dir: Path, tmp_path: Path
) -> None:
    """The producer's row index and run id (and a client's own header) survive the round
    trip input -> real scorer -> dead letter -> replay."""
    raw, preds, fixed = (topic_factory(partitions=3) for _ in range(3))
    dlq = topic_factory(partitions=1)
    own = [(ROW_INDEX_HEADER, b"17"), (RUN_ID_HEADER, b"run-abc"), ("x-trace", b"t-1")]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(raw, value=b"{broken", key=ID, headers=own)
    assert producer.flush(30) == 0
    try:
        out = score(kafka_bootstrap, raw, preds, dlq, model_dir, tmp_path, 1)
        assert "dead-lettered 1" in out, out
        [letter] = read_topic(kafka_bootstrap, dlq, expect=1, idle_s=0.5)
        assert {n: letter.headers[ORIGINAL_HEADER_PREFIX + n] for n, _ in own} == dict(own)
        assert as_json(replay_args(kafka_bootstrap, dlq, fixed))["replayed"] == 1
        [copy] = read_topic(kafka_bootstrap, fixed, expect=1, idle_s=0.5)
        assert (copy.key, copy.value) == (ID, b"{broken")
        assert copy.headers == {
            **dict(own),
            REPLAY_OF_HEADER: f"{dlq}:0:0".encode(),
            RETRY_COUNT_HEADER: b"1",
        }
    finally:
        admin.delete_topics(
            KafkaSettings(bootstrap_servers=kafka_bootstrap), [marker_topic_for(dlq)]
        )


def synthetic_letters(bootstrap: str, dlq: str, bodies: list[bytes], retry: int = 0) -> None:
    """Letters written by the real transform's dead_letter(), without running a scorer."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, body in enumerate(bodies):
        letter = dead_letter(
            RawMessage("src", 0, i, ID, body, [(RETRY_COUNT_HEADER, str(retry).encode())]),
            error_type="validation_error",
            reason="test",
            code="not_json" if body.startswith(b"nope") else "schema",
            consumer_group="g",
            failed_ts="2026-01-02T03:04:05Z",
        )
        producer.produce(dlq, value=letter.value, key=letter.key, headers=letter.headers)
    assert producer.flush(30) == 0
    producer.close()


def test_a_crashed_transactional_replay_is_aborted_and_replayed_once(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """A replay that died mid-transaction (messages and markers written, no commit) leaves
    nothing visible: the next replay's init_transactions() aborts it, then replays once."""
    dlq, target = topic_factory(partitions=1), topic_factory(partitions=3)
    synthetic_letters(kafka_bootstrap, dlq, [b"nope-1", b"nope-2"])
    crashed = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": transactional_id(dlq)}
    )
    crashed.init_transactions(30)
    crashed.begin_transaction()
    crashed.produce(target, value=b"nope-1", key=ID, headers=[(REPLAY_OF_HEADER, f"{dlq}:0:0")])
    ensure_marker_topic(
        Settings(kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap)), marker_topic_for(dlq)
    )
    crashed.produce(marker_topic_for(dlq), key=f"{dlq}:0:0".encode(), value=b"{}")
    assert crashed.flush(30) == 0  # written, never committed: the process "dies" here
    try:
        outcome = as_json(replay_args(kafka_bootstrap, dlq, target))
        assert outcome["replayed"] == 2 and outcome["skipped"]["already_replayed"] == 0
        committed = read_topic(kafka_bootstrap, target, expect=2, idle_s=0.5)
        assert sorted(r.value or b"" for r in committed) == [b"nope-1", b"nope-2"]
        everything = read_topic(
            kafka_bootstrap, target, expect=3, idle_s=0.5, isolation="read_uncommitted"
        )
        assert len(everything) == 3  # the crashed copy was written, and aborted
        again = as_json(replay_args(kafka_bootstrap, dlq, target))
        assert again["replayed"] == 0 and again["skipped"]["already_replayed"] == 2
    finally:
        with contextlib.suppress(KafkaException):  # it was fenced: "_FENCED" on close
            crashed.close()
        admin.delete_topics(
            KafkaSettings(bootstrap_servers=kafka_bootstrap), [marker_topic_for(dlq)]
        )


def test_a_failed_send_exits_non_zero_and_leaves_the_letter_unmarked(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """A broker that refuses a message: the transactional chunk is aborted (nothing of it
    replayed or marked), the exit code is 1, and a later replay sends the letters."""
    dlq, good = topic_factory(partitions=1), topic_factory(partitions=1)
    tiny = f"test-tiny-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    client = clients.admin_client(kafka)
    new = NewTopic(
        tiny,
        num_partitions=1,
        replication_factor=1,
        config={"max.message.bytes": "2000"},  # the big one, even compressed (random hex)
    )
    client.create_topics([new])[tiny].result(timeout=30)
    synthetic_letters(
        kafka_bootstrap, dlq, [b"nope-small", b"nope-" + os.urandom(10_000).hex().encode()]
    )
    try:
        result = invoke([*replay_args(kafka_bootstrap, dlq, tiny), "--json"], exit_code=1)
        outcome = orjson.loads(result.stdout)
        assert outcome["replayed"] == 0 and outcome["failed"] == 2
        assert "error: replay incomplete: 2 failed" in result.output
        assert read_topic(kafka_bootstrap, tiny, idle_s=0.5) == []

        result = invoke(
            [*replay_args(kafka_bootstrap, dlq, tiny), "--json", "--no-transactions"], exit_code=1
        )
        outcome = orjson.loads(result.stdout)
        # Both went in one batch, which the broker refused as a whole.
        assert outcome["replayed"] == 0 and outcome["failed"] == 2
        assert read_topic(kafka_bootstrap, tiny, idle_s=0.5) == []

        retry = as_json(replay_args(kafka_bootstrap, dlq, good))  # nothing was marked
        assert retry["replayed"] == 2 and retry["skipped"]["already_replayed"] == 0
        sizes = sorted(
            len(r.value or b"") for r in read_topic(kafka_bootstrap, good, expect=2, idle_s=0.5)
        )
        assert sizes == [10, 20_005]
    finally:
        admin.delete_topics(kafka, [tiny, marker_topic_for(dlq)])


def test_replay_markers_work_on_tansu(
    tansu_bootstrap: str, tansu_topic_factory: TopicFactory
) -> None:
    """The compacted marker topic and the transactional replay on the fallback broker."""
    dlq, target = tansu_topic_factory(partitions=1), tansu_topic_factory(partitions=1)
    bodies = [b"nope-1", b"nope-2", orjson.dumps({**EVENT, "tenure": -1})]
    synthetic_letters(tansu_bootstrap, dlq, bodies, retry=4)
    try:
        first = as_json(replay_args(tansu_bootstrap, dlq, target, "--until", "2026-01-03"))
        assert first["replayed"] == 3
        second = as_json(replay_args(tansu_bootstrap, dlq, target))
        assert second["replayed"] == 0 and second["skipped"]["already_replayed"] == 3
        out = read_topic(tansu_bootstrap, target, expect=3, idle_s=0.5)
        assert sorted(r.value or b"" for r in out) == sorted(bodies)
        assert {r.headers[RETRY_COUNT_HEADER] for r in out} == {b"5"}
        assert all(SOURCE_HEADER not in r.headers for r in out)
    finally:
        admin.delete_topics(
            KafkaSettings(bootstrap_servers=tansu_bootstrap), [marker_topic_for(dlq)]
        )
