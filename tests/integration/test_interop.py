"""Interop with the replaced system's clients: kafka-python with no compression libraries.

The replaced system's consumers and producer are kafka-python, installed from their own
requirements (``tests/legacy_client/requirements.txt``, built into ``.venv-legacy`` by
``make setup``). They run here in that venv, isolated (``python -I``: nothing from
churnstream's venv, no user site-packages), against what churnstream writes with its
defaults on a real Kafka, and write what churnstream must read.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from churnstream.events import stamp
from churnstream.schemas import utc_now_iso
from churnstream.streaming.events_producer import load_records
from tests.conftest import CONTRACTS_DIR, REPO_ROOT
from tests.integration.cli_runs import consume_args, invoke, produce_batch_args
from tests.integration.kafka_io import read_topic, send_raw
from tests.unit.test_schemas import EVENT

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., str]

LEGACY_PYTHON = REPO_ROOT / ".venv-legacy" / "bin" / "python"
LEGACY_DIR = REPO_ROOT / "tests" / "legacy_client"
LEGACY_TIMEOUT_S = 180.0
DATASET_ROWS = 7043
EVENT_SCHEMA = "telco_customer_schema.json"
PREDICTION_SCHEMA = "churn_prediction_schema.json"
DEADLETTER_SCHEMA = "deadletter_schema.json"
#: Bodies that are JSON objects but break the contract: dead-lettered, and replayable to a
#: topic the legacy consumer can still json.loads.
BAD_EVENTS = [
    {**EVENT, "Contract": "Weekly"},
    {**EVENT, "tenure": "ten"},
    {**EVENT, "MonthlyCharges": -5},
]


@pytest.fixture(scope="session")
def legacy_python() -> Path:
    if not LEGACY_PYTHON.is_file():
        pytest.skip(f"{LEGACY_PYTHON} absent: `make setup` builds it")
    return LEGACY_PYTHON


def run_legacy(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the legacy venv's interpreter isolated from this one (``-I``)."""
    return subprocess.run(
        [str(python), "-I", *args],
        capture_output=True,
        text=True,
        timeout=LEGACY_TIMEOUT_S,
        check=False,
    )


def legacy_read(
    python: Path, bootstrap: str, topic: str, *, schema: str | None, expect: int
) -> dict[str, Any]:
    """What the replaced system's consumer makes of ``topic``: its counts, or a failure."""
    args = [str(LEGACY_DIR / "consumer.py"), "--bootstrap", bootstrap, "--topic", topic]
    args += ["--group", f"legacy-{uuid.uuid4().hex[:8]}", "--expect", str(expect)]
    if schema is not None:
        path = CONTRACTS_DIR / schema
        if not path.is_file():
            pytest.skip(f"{CONTRACTS_DIR} absent: the contracts live beside the repo")
        args += ["--schema", str(path)]
    done = run_legacy(python, *args)
    assert done.returncode == 0, f"legacy consumer failed on {topic}:\n{done.stderr[-3000:]}"
    counts: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


def produce_batch(bootstrap: str, topic: str, dataset: Path, tmp_path: Path) -> str:
    return invoke(produce_batch_args(bootstrap, topic, dataset, tmp_path / "ckpt.json"))


def consume_batch(
    bootstrap: str, raw: str, preds: str, dlq: str, model_dir: Path, *extra: str
) -> str:
    return invoke([*consume_args(bootstrap, raw, preds, dlq, model_dir, None), *extra])


def test_legacy_client_has_no_codec_libraries(legacy_python: Path) -> None:
    probe = (
        "import importlib.metadata as m, importlib.util as u, json, kafka, kafka.codec as c\n"
        "print(json.dumps({'kafka': kafka.__version__, 'gzip': c.has_gzip(),\n"
        "  'snappy': c.has_snappy(), 'lz4': c.has_lz4(), 'zstd': c.has_zstd(),\n"
        "  'dists': sorted(d.metadata['Name'].lower() for d in m.distributions()),\n"
        "  'churnstream': u.find_spec('churnstream') is not None,\n"
        "  'confluent_kafka': u.find_spec('confluent_kafka') is not None}))\n"
    )
    done = run_legacy(legacy_python, "-c", probe)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["kafka"].startswith("3.0.")
    assert found["gzip"] is True
    assert (found["snappy"], found["lz4"], found["zstd"]) == (False, False, False)
    # kafka-python's optional native extras: the codecs, and a C CRC-32C.
    extras = {"lz4", "python-snappy", "zstandard", "crc32c", "xxhash"}
    assert not extras & set(found["dists"]), found["dists"]
    assert not found["churnstream"] and not found["confluent_kafka"]  # a separate install


def test_legacy_consumer_cannot_read_lz4(
    legacy_python: Path,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failure the default avoids, so the reads below would catch a return to lz4."""
    raw = topic_factory(partitions=1)
    monkeypatch.setenv("CHURNSTREAM_PRODUCER__COMPRESSION", "lz4")
    out = invoke(
        [
            "produce", "--mode", "batch", "--broker", kafka_bootstrap, "--topic", raw,
            "--data-path", str(dataset_path), "--max-events", "100",
            "--checkpoint-file", str(tmp_path / "ckpt.json"), "--no-progress",
        ]
    )  # fmt: skip
    assert "sent 100, failed 0" in out
    done = run_legacy(
        legacy_python,
        str(LEGACY_DIR / "consumer.py"),
        "--bootstrap", kafka_bootstrap, "--topic", raw, "--expect", "100", "--idle", "10",
    )  # fmt: skip
    assert done.returncode != 0
    assert "UnsupportedCodecError" in done.stderr
    assert "lz4" in done.stderr


def test_legacy_consumer_reads_every_batch_event(
    legacy_python: Path,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    tmp_path: Path,
) -> None:
    raw = topic_factory(partitions=3)
    out = produce_batch(kafka_bootstrap, raw, dataset_path, tmp_path)
    assert f"sent {DATASET_ROWS}, failed 0" in out
    counts = legacy_read(
        legacy_python, kafka_bootstrap, raw, schema=EVENT_SCHEMA, expect=DATASET_ROWS
    )
    assert counts["errors"] == []
    assert counts["read"] == counts["valid"] == DATASET_ROWS
    assert counts["distinct_keys"] == DATASET_ROWS  # every customer, once


def test_legacy_consumer_reads_streaming_events(
    legacy_python: Path,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
) -> None:
    raw = topic_factory(partitions=3)
    out = invoke(
        [
            "produce", "--mode", "streaming", "--broker", kafka_bootstrap, "--topic", raw,
            "--data-path", str(dataset_path), "--events-per-sec", "400", "--duration", "3",
            "--no-progress",
        ]
    )  # fmt: skip
    match = re.search(r"streaming: sent (\d+), failed 0", out)
    assert match, out
    sent = int(match.group(1))
    assert sent > 500
    counts = legacy_read(legacy_python, kafka_bootstrap, raw, schema=EVENT_SCHEMA, expect=sent)
    assert counts["errors"] == []
    assert counts["read"] == counts["valid"] == sent


def test_legacy_consumer_reads_predictions_shadow_dead_letters_and_replays(
    legacy_python: Path,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    raw, preds, shadow = (topic_factory(partitions=3) for _ in range(3))
    dlq, replayed = topic_factory(partitions=1), topic_factory(partitions=1)
    produce_batch(kafka_bootstrap, raw, dataset_path, tmp_path)
    send_raw(kafka_bootstrap, raw, [(b"7590-VHVEG", orjson.dumps(bad)) for bad in BAD_EVENTS])
    out = consume_batch(
        kafka_bootstrap, raw, preds, dlq, model_dir,
        "--shadow-model", str(model_dir), "--shadow-topic", shadow,
    )  # fmt: skip
    bad = len(BAD_EVENTS)
    assert f"consumed {DATASET_ROWS + bad}, scored {DATASET_ROWS}, dead-lettered {bad}" in out

    for topic in (preds, shadow):
        counts = legacy_read(
            legacy_python, kafka_bootstrap, topic, schema=PREDICTION_SCHEMA, expect=DATASET_ROWS
        )
        assert counts["errors"] == [], topic
        assert counts["read"] == counts["valid"] == DATASET_ROWS, topic
    letters = legacy_read(legacy_python, kafka_bootstrap, dlq, schema=DEADLETTER_SCHEMA, expect=bad)
    assert letters["errors"] == []
    assert letters["read"] == letters["valid"] == bad

    # dlq replay (transactional by default) writes the originals and its markers.
    invoke(["dlq", "replay", "--broker", kafka_bootstrap, "--from-topic", dlq,
            "--to-topic", replayed])  # fmt: skip
    originals = legacy_read(legacy_python, kafka_bootstrap, replayed, schema=None, expect=bad)
    assert originals["read"] == bad
    markers = legacy_read(legacy_python, kafka_bootstrap, f"{dlq}.replays", schema=None, expect=bad)
    assert markers["read"] == bad


def test_gzip_from_legacy_producer_is_scored(
    legacy_python: Path,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    raw, preds, dlq = topic_factory(partitions=3), topic_factory(partitions=3), topic_factory(1)
    records, rejected = load_records(dataset_path)
    assert rejected == 0
    events = tmp_path / "events.jsonl"
    now = utc_now_iso()
    events.write_text("".join(json.dumps(stamp(r, now)) + "\n" for r in records))
    done = run_legacy(
        legacy_python,
        str(LEGACY_DIR / "producer.py"),
        "--bootstrap", kafka_bootstrap, "--topic", raw, "--events", str(events),
        "--compression", "gzip",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sent": DATASET_ROWS, "failed": 0}

    out = consume_batch(kafka_bootstrap, raw, preds, dlq, model_dir)
    assert f"consumed {DATASET_ROWS}, scored {DATASET_ROWS}, dead-lettered 0" in out
    predictions = read_topic(kafka_bootstrap, preds, expect=DATASET_ROWS)
    assert len(predictions) == DATASET_ROWS
    assert {p.json()["customerID"] for p in predictions} == {r["customerID"] for r in records}
    assert read_topic(kafka_bootstrap, dlq, idle_s=1.0) == []
