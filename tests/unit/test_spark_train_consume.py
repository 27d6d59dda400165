"""``train --engine spark`` and ``consume --engine spark`` without a JVM: the shared held-out
split, model engines kept apart, the connector cache, the scored rows' encoding, the
comparison report, and every bad input as one line before Spark starts."""

from __future__ import annotations

import json
import socket
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

from churnstream.cli import app, consume_cmd
from churnstream.exceptions import ModelLoadError, SparkError
from churnstream.headers import MODEL_VERSION_HEADER, RISK_BAND_HEADER, SOURCE_HEADER
from churnstream.model import artifacts
from churnstream.model.lean import LeanScorer
from churnstream.model.scorer import Scorer
from churnstream.model.train import held_out_split
from churnstream.scoring.batch import score_batch
from churnstream.scoring.messages import SCORED_COLUMNS, RawMessage
from churnstream.spark import jars
from churnstream.spark.compare import render_markdown, same_held_out_rows
from churnstream.tools import JARS_MARKER
from tests.unit.test_schemas import EVENT

pytest.importorskip("pyspark")
runner = CliRunner()


def one_line_failure(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def spark_version_dir(root: Path) -> Path:
    """A version directory as ``train --engine spark`` writes it (no real model inside)."""
    version = root / "20260101T000000Z-spark-rf"
    (version / "spark_model").mkdir(parents=True)
    (version / "spark_model" / "part").write_bytes(b"trees")
    metadata = {
        "format_version": artifacts.FORMAT_VERSION,
        "version": version.name,
        "engine": artifacts.ENGINE_SPARK,
        "algorithm": "spark-rf",
        "feature_schema": {},
        "threshold": {"value": 0.4},
        "metrics": {},
        "model_file": "spark_model",
        "model_sha256": artifacts.path_sha256(version / "spark_model"),
        "smoke": {},
    }
    (version / artifacts.METADATA_FILE).write_text(json.dumps(metadata))
    return version


def test_held_out_split_is_the_sklearn_trainers_split() -> None:
    y = np.random.default_rng(3).integers(0, 2, 500)
    frame = pd.DataFrame({"row": np.arange(500)})
    x_train, x_test, _, _ = train_test_split(frame, y, test_size=0.2, stratify=y, random_state=42)
    train_idx, test_idx = held_out_split(y, 0.2, 42)
    assert train_idx.tolist() == x_train["row"].tolist()
    assert test_idx.tolist() == x_test["row"].tolist()


def test_a_spark_model_is_refused_where_scikit_learn_is_expected(tmp_path: Path) -> None:
    version = spark_version_dir(tmp_path)
    with pytest.raises(ModelLoadError, match="is a Spark ML model"):
        Scorer.load(version)
    line = one_line_failure(
        ["predict", "--json", orjson.dumps(EVENT).decode(), "--model-path", str(version)]
    )
    assert "is a Spark ML model" in line and "predict --engine spark" in line
    line = one_line_failure(["serve", "--model-path", str(version), "--port", "0"])
    assert "is a Spark ML model" in line
    # The streaming scorer loads through the lean loader (exported arrays): same refusal.
    with pytest.raises(ModelLoadError, match="is a Spark ML model"):
        LeanScorer.load(version)
    line = one_line_failure(
        ["consume", "--mode", "batch", "--broker", "127.0.0.1:1", "--model-path", str(version)]
    )
    assert "is a Spark ML model" in line


def test_the_spark_loader_refuses_a_scikit_learn_model(tmp_path: Path) -> None:
    from churnstream.spark.model import is_spark_model, load_spark_model

    version = spark_version_dir(tmp_path)
    metadata = json.loads((version / artifacts.METADATA_FILE).read_text())
    del metadata["engine"]  # versions from before Spark, and every scikit-learn one
    (version / artifacts.METADATA_FILE).write_text(json.dumps(metadata))
    assert not is_spark_model(version)
    with pytest.raises(ModelLoadError, match="is a scikit-learn model, not a Spark one"):
        load_spark_model(version)


def test_spark_model_hash_covers_every_file(tmp_path: Path) -> None:
    from churnstream.spark.model import is_spark_model, load_spark_model

    version = spark_version_dir(tmp_path)
    assert is_spark_model(version)
    (version / "spark_model" / "part").write_bytes(b"other trees")
    with pytest.raises(ModelLoadError, match="does not match the sha256"):
        load_spark_model(version)


def test_connector_cache_names_and_bundled_jars(tmp_path: Path) -> None:
    assert jars.artifact_name("spark-sql-kafka-0-10_2.13-4.2.0.jar") == "spark-sql-kafka-0-10_2.13"
    assert jars.artifact_name("zstd-jni-1.5.7-7.jar") == "zstd-jni"
    assert jars.artifact_name("kafka-clients-3.9.2.jar") == "kafka-clients"
    for name in ("kafka-clients-3.9.2.jar", "lz4-java-1.10.1.jar", jars.CONNECTOR_JAR):
        (tmp_path / name).write_bytes(b"")
    assert jars.drop_bundled(tmp_path, jars.pyspark_jars()) == ["lz4-java-1.10.1.jar"]
    with pytest.raises(SparkError, match="is not in"):
        jars.connector_jars(tmp_path)  # no marker: an interrupted fetch
    marker = {"spark_version": jars.SPARK_VERSION, "jars": ["kafka-clients-3.9.2.jar", "x.jar"]}
    (tmp_path / JARS_MARKER).write_text(json.dumps(marker))
    with pytest.raises(SparkError, match="lacks x.jar"):
        jars.connector_jars(tmp_path)


def _predict(batch: Any) -> np.ndarray:
    return np.linspace(0.1, 0.9, len(batch))


def test_scored_rows_carry_the_cores_messages_and_analytics() -> None:
    from churnstream.spark.kafka_batch import (
        KIND_CONSUMED,
        KIND_DEAD_LETTER,
        KIND_LETTER_CODE,
        KIND_PREDICTION,
        result_rows,
    )

    messages = [
        RawMessage("raw", 0, i, b"7590-VHVEG", orjson.dumps({**EVENT, "tenure": i}))
        for i in range(3)
    ] + [RawMessage("raw", 1, 7, b"x", b"not json")]
    result = score_batch(messages, _predict, threshold=0.5, model_version="v1")
    rows = result_rows(result, len(messages), "preds", "dlq").to_pylist()
    kinds = [row["kind"] for row in rows]
    assert kinds[:4] == [KIND_PREDICTION] * 3 + [KIND_DEAD_LETTER]
    predictions = rows[:3]
    assert [r["value"] for r in predictions] == [m.value for m in result.predictions]
    assert [r["topic"] for r in predictions] == ["preds"] * 3
    first_headers = [(h["key"], h["value"]) for h in predictions[0]["headers"]]
    assert first_headers == result.predictions[0].headers
    assert [k for k, _ in first_headers] == [SOURCE_HEADER, RISK_BAND_HEADER, MODEL_VERSION_HEADER]
    assert [r["source_offset"] for r in predictions] == [0, 1, 2]
    assert all(r[name] is not None for r in predictions for name in SCORED_COLUMNS)
    assert rows[3]["topic"] == "dlq" and rows[3]["value"] == result.dead_letters[0].value
    counts = {(r["kind"], r["name"]): r["n"] for r in rows[4:]}
    assert counts[(KIND_CONSUMED, "")] == 4
    assert counts[(KIND_LETTER_CODE, "not_json")] == 1


def test_comparison_needs_the_same_held_out_rows() -> None:
    data = {"sha256": "a", "rows": 10, "sample": None, "rows_used": 10, "test_rows": 2}
    data["test_size"] = 0.2
    base = {"data": data, "random_state": 42}
    assert same_held_out_rows(base, base) is None
    other = {"data": {**data, "sample": 5}, "random_state": 7}
    assert same_held_out_rows(base, other) == "data.sample None vs 5; random_state"


def test_comparison_markdown_from_its_json() -> None:
    def engine(version: str, roc: float, rate: float) -> dict[str, Any]:
        metrics = {k: roc for k in ("roc_auc", "pr_auc", "brier", "accuracy", "precision")}
        return {
            "version": version,
            "metrics": {**metrics, "recall": 0.5, "f1": 0.6},
            "threshold": 0.3,
            "cv_roc_auc_mean": 0.84,
            "training_seconds": {"total": 12.0, "fit": 3.0},
            "scoring_rows_per_s": rate,
        }

    payload = {
        "held_out": {"rows": 1409, "how": "same split"},
        "engines": {"sklearn": engine("sk", 0.85, 90000.0), "spark": engine("sp", 0.84, 20000.0)},
        "throughput": {"rows": 1000, "runs": 3, "sklearn": "core", "spark": "transform"},
        "replaced_system": {
            "params": {"num_trees": 20, "max_depth": 5},
            "own_random_split": {"split": "randomSplit", "test_rows": 1400, "roc_auc": 0.83},
            "held_out": {"roc_auc": 0.82, "pr_auc": 0.6, "brier": 0.14},
        },
    }
    text = render_markdown(payload)
    assert "| ROC AUC | 0.8500 | 0.8400 |" in text
    assert "| scoring (rows/s) | 90,000 | 20,000 |" in text
    assert "areaUnderROC 0.8300" in text


def test_consume_on_spark_bad_input_is_one_line(tmp_path: Path) -> None:
    base = ["consume", "--engine", "spark", "--broker", "127.0.0.1:1"]
    assert "--mode batch only" in one_line_failure([*base, "--mode", "streaming"])
    assert "does not support --exactly-once" in one_line_failure(
        [*base, "--mode", "batch", "--exactly-once"]
    )
    # Past its own checks `consume --engine spark` becomes `spark-consume` (os.execv, which
    # would replace this test process): the Spark side's checks are that command's.
    env_jars = {"CHURNSTREAM_SPARK__JARS_DIR": str(tmp_path / "no-jars")}
    result = runner.invoke(app, ["spark-consume", "--broker", "127.0.0.1:1"], env=env_jars)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "Kafka connector (spark-sql-kafka-0-10_2.13-4.2.0.jar) is not in" in result.output


def test_consume_on_spark_execs_spark_consume_with_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    execs: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        execs.append((path, argv))

    monkeypatch.setattr(consume_cmd.os, "execv", fake_execv)
    argv = [
        "consume",
        "--mode",
        "batch",
        "--engine",
        "spark",
        "--broker",
        "127.0.0.1:1",
        "--master",
        "local[2]",
        "--spark-conf",
        "spark.a=1",
        "--spark-conf",
        "spark.b=2",
        "--no-reports",
        "--batch-records",
        "200",
        "--checkpoint-location",
        str(tmp_path / "ck"),
    ]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    [(path, child)] = execs
    assert path == sys.executable
    assert child[:3] == [sys.executable, "-m", "churnstream"]
    tail = child[child.index("spark-consume") + 1 :]
    assert tail[tail.index("--master") + 1] == "local[2]"
    assert [tail[i + 1] for i, a in enumerate(tail) if a == "--spark-conf"] == [
        "spark.a=1",
        "spark.b=2",
    ]
    assert "--no-reports" in tail and tail[tail.index("--batch-records") + 1] == "200"
    assert tail[tail.index("--checkpoint-location") + 1] == str(tmp_path / "ck")
    assert "--engine" not in tail and "--mode" not in tail


def test_consume_on_spark_unreachable_master_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jars_dir = tmp_path / "jars"
    jars_dir.mkdir()
    (jars_dir / jars.CONNECTOR_JAR).write_bytes(b"")
    marker = {"spark_version": jars.SPARK_VERSION, "jars": [jars.CONNECTOR_JAR]}
    (jars_dir / JARS_MARKER).write_text(json.dumps(marker))
    monkeypatch.setenv("CHURNSTREAM_SPARK__JARS_DIR", str(jars_dir))
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        line = one_line_failure(
            [
                "spark-consume",
                "--master",
                f"spark://127.0.0.1:{port}",
            ]
        )
    assert f"cannot reach the Spark master spark://127.0.0.1:{port}" in line


def test_train_on_spark_without_java_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    line = one_line_failure(["train", "--engine", "spark", "--models-dir", str(tmp_path)])
    assert "has no bin/java" in line
    assert not list(tmp_path.glob("*-spark-rf"))


def test_version_names_keep_engines_apart(tmp_path: Path) -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert artifacts.new_version_name(tmp_path, "spark-rf", moment) == "20260101T000000Z-spark-rf"
    assert artifacts.engine_of({}) == artifacts.ENGINE_SKLEARN
