"""``consume --mode batch --engine spark`` on the embedded Kafka: a backlog scored through the
scoring core on Spark (local[2]), killed mid-run and resumed from its checkpoint; after
dedupe on the idempotency header every event has exactly one prediction or dead letter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from churnstream.headers import MODEL_VERSION_HEADER, RISK_BAND_HEADER, SOURCE_HEADER
from churnstream.schemas import DeadLetter, Prediction
from tests.integration.kafka_io import read_topic, send_raw
from tests.integration.streams import customer_events
from tests.unit.test_schemas import EVENT

pytest.importorskip("pyspark")

TopicFactory = Callable[..., str]
EVENTS = 400
BATCH_RECORDS = 200  # maxOffsetsPerTrigger: more than one micro-batch, so a kill lands mid-run
BAD = [(b"x", b"not json at all"), (b"7590-VHVEG", orjson.dumps({**EVENT, "tenure": "ten"}))]
RUN_TIMEOUT_S = 600.0


@pytest.fixture(scope="module")
def connector_jars_dir() -> Path:
    """The Kafka connector's jars, fetched once with Maven into the project's cache."""
    from churnstream.settings import Settings
    from churnstream.spark.jars import fetch_connector_jars

    jars_dir = Settings().spark.jars_dir.resolve()
    fetch_connector_jars(jars_dir)
    return jars_dir


def spark_consume_argv(
    bootstrap: str, raw: str, preds: str, dlq: str, model_dir: Path, tmp_path: Path
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "churnstream",
        "consume",
        "--mode",
        "batch",
        "--engine",
        "spark",
        "--master",
        "local[2]",
        "--broker",
        bootstrap,
        "--input-topic",
        raw,
        "--output-topic",
        preds,
        "--deadletter-topic",
        dlq,
        "--model-path",
        str(model_dir),
        "--checkpoint-location",
        str(tmp_path / "checkpoint"),
        "--reports-dir",
        str(tmp_path / "reports"),
        "--batch-records",
        str(BATCH_RECORDS),
    ]


def test_backlog_scored_once_per_event_across_a_kill_and_resume(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    model_dir: Path,
    connector_jars_dir: Path,
    tmp_path: Path,
) -> None:
    raw, preds, dlq = topic_factory(partitions=2), topic_factory(1), topic_factory(1)
    events = customer_events(0, EVENTS)
    send_raw(kafka_bootstrap, raw, events[:200] + BAD + events[200:])
    argv = spark_consume_argv(kafka_bootstrap, raw, preds, dlq, model_dir, tmp_path)
    env = {**os.environ, "CHURNSTREAM_SPARK__JARS_DIR": str(connector_jars_dir)}

    # Run 1: SIGKILLed once Spark has committed its first micro-batch to the checkpoint.
    commits = tmp_path / "checkpoint" / "commits"
    with (tmp_path / "run1.log").open("w") as log:
        first = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not (commits / "0").is_file() and first.poll() is None:
            assert time.monotonic() < deadline, (tmp_path / "run1.log").read_text()[-3000:]
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert first.returncode == -signal.SIGKILL, (tmp_path / "run1.log").read_text()[-3000:]

    # Run 2: resumes from the checkpoint (not from the start) and finishes the backlog.
    second = subprocess.run(  # noqa: S603
        argv, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    line = next(ln for ln in second.stdout.splitlines() if ln.startswith("batch (spark)"))
    consumed = int(line.split("consumed ")[1].split(",")[0])
    assert 0 < consumed <= EVENTS + len(BAD) - BATCH_RECORDS, line

    # Exactly once per event after dedupe on the idempotency header.
    predictions = read_topic(kafka_bootstrap, preds, expect=EVENTS, idle_s=1.0)
    by_source = {r.headers[SOURCE_HEADER]: r for r in predictions}
    assert len(by_source) == EVENTS
    assert {r.json()["customerID"] for r in by_source.values()} == {
        key.decode() for key, _ in events if key is not None
    }
    sample = next(iter(by_source.values()))
    Prediction.model_validate(sample.json())
    assert sample.key == sample.json()["customerID"].encode()
    assert set(sample.headers) == {SOURCE_HEADER, RISK_BAND_HEADER, MODEL_VERSION_HEADER}
    assert list(sample.json()) == list(Prediction.model_fields)
    letters = read_topic(kafka_bootstrap, dlq, expect=len(BAD), idle_s=1.0)
    unique_letters = {r.headers[SOURCE_HEADER]: r for r in letters}
    assert len(unique_letters) == len(BAD)
    for letter in unique_letters.values():
        DeadLetter.model_validate(letter.json())
    codes = Counter(r.headers["churnstream.error_code"].decode() for r in unique_letters.values())
    assert codes == {"not_json": 1, "schema": 1}

    # The second run's window summary, in the poll loop's format.
    (summary_path,) = (tmp_path / "reports").glob("summary_*.json")
    summary = json.loads(summary_path.read_text())
    assert summary["window"]["mode"] == "batch"
    assert summary["counts"]["consumed"] == consumed
    assert summary["counts"]["scored"] + summary["counts"]["dead_lettered"] <= consumed
    assert summary["model_version"] == sample.headers[MODEL_VERSION_HEADER].decode()
