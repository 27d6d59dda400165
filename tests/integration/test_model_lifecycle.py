"""Hot reload of models/latest during a stream, refusing a bad model, and a shadow model."""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from churnstream.headers import CHAMPION_VERSION_HEADER, MODEL_VERSION_HEADER, SOURCE_HEADER
from churnstream.model.train import run_training
from churnstream.reports.writer import SummaryWriter
from churnstream.settings import load_settings
from churnstream.streaming.loop import ScorerLoop
from churnstream.streaming.observers import WindowCallback
from churnstream.streaming.options import ScoreOptions, ScoreSummary
from tests.integration.kafka_io import Record, read_topic, send_raw
from tests.unit.test_schemas import EVENT, contract

pytestmark = pytest.mark.integration
TopicFactory = Callable[..., str]


def events(start: int, count: int) -> list[tuple[bytes | None, bytes | None]]:
    out: list[tuple[bytes | None, bytes | None]] = []
    for i in range(start, start + count):
        body = {**EVENT, "customerID": f"{i:04d}-RELOD", "tenure": i % 72}
        out.append((body["customerID"].encode(), orjson.dumps(body)))
    return out


def wait_for(bootstrap: str, topic: str, count: int, timeout_s: float = 60) -> list[Record]:
    deadline = time.monotonic() + timeout_s
    records: list[Record] = []
    while time.monotonic() < deadline:
        records = read_topic(bootstrap, topic, idle_s=0.3, timeout_s=5)
        if len(records) >= count:
            return records
    raise AssertionError(f"only {len(records)} of {count} records on {topic}")


class Running:
    """A ScorerLoop on a thread, stopped the way SIGTERM stops it."""

    def __init__(self, loop: ScorerLoop) -> None:
        self.loop = loop
        self.stop = threading.Event()
        self.result: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result["summary"] = self.loop.run(self.stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised in finish()
            self.result["error"] = exc

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.loop.assigned.wait(30), "no partitions assigned"
        return self

    def finish(self) -> ScoreSummary:
        self.stop.set()
        self.thread.join(60)
        if "error" in self.result:
            raise self.result["error"]
        summary: ScoreSummary = self.result["summary"]
        return summary

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def options(
    topics: tuple[str, str, str], models: Path, tmp_path: Path, **extra: Any
) -> ScoreOptions:
    raw, preds, dlq = topics
    return ScoreOptions(
        mode="streaming",
        input_topic=raw,
        output_topic=preds,
        deadletter_topic=dlq,
        group_id=f"life-{uuid.uuid4().hex[:6]}",
        model_path=models,
        idle_timeout_ms=5000,
        max_batch_records=50,
        max_batch_wait_ms=50,
        summary_interval_s=3600,
        **extra,
    )


def reports(tmp_path: Path) -> SummaryWriter:
    """The report writer the CLI wires: each window's report files under tmp_path/reports
    (the CLI closes it after the loop, waiting for the Markdown and charts)."""
    return SummaryWriter(tmp_path / "reports")


def test_hot_reload_during_a_stream_and_refusing_a_bad_model(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    model_dir: Path,
    dataset_path: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    models = tmp_path / "models"
    shutil.copytree(model_dir, models)
    first = (models / "latest").read_text().strip()
    topics = (topic_factory(3), topic_factory(3), topic_factory(1))
    raw, preds, _ = topics
    settings = load_settings(**{"kafka.bootstrap_servers": kafka_bootstrap})
    writer = reports(tmp_path)
    loop = ScorerLoop(
        settings,
        options(topics, models, tmp_path, reload_interval_s=0.5),
        observers=[WindowCallback(writer)],
    )
    with Running(loop) as running:
        send_raw(kafka_bootstrap, raw, events(0, 1000))
        wait_for(kafka_bootstrap, preds, 1000)
        second = run_training(dataset_path, models, cv_folds=2, sample=1500).version
        assert second != first
        time.sleep(2)  # > the reload interval: the swap happens between batches
        send_raw(kafka_bootstrap, raw, events(1000, 1000))
        wait_for(kafka_bootstrap, preds, 2000)

        # a broken model: files present, content garbage
        bad = models / "29991231T000000Z-broken"
        shutil.copytree(models / second, bad)
        (bad / "model.skops").write_bytes(b"garbage, not a skops archive")
        # What the scorer loads: the exported arrays.
        (bad / "compiled.npz").write_bytes(b"garbage, not an npz archive")
        with caplog.at_level(logging.ERROR, logger="churnstream.streaming.models"):
            (models / "latest").write_text(bad.name + "\n")
            time.sleep(2)
            send_raw(kafka_bootstrap, raw, events(2000, 500))
            records = wait_for(kafka_bootstrap, preds, 2500)
        summary = running.finish()
    assert writer.close() == []

    assert any("refused new model 29991231T000000Z-broken" in r.message for r in caplog.records)
    assert summary.model_version == second  # the bad model never served
    sources = Counter(r.headers[SOURCE_HEADER] for r in records)
    assert len(records) == 2500 and len(sources) == 2500  # none lost, none scored twice
    by_customer = {r.json()["customerID"]: r for r in records}
    for i in range(2500):
        record = by_customer[f"{i:04d}-RELOD"]
        body = record.json()
        contract("churn_prediction_schema.json").validate(body)
        expected = first if i < 1000 else second
        assert body["model_version"] == expected, (i, body["model_version"])
        assert record.headers[MODEL_VERSION_HEADER].decode() == expected


def test_shadow_model_scores_every_batch_and_is_compared(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    model_dir: Path,
    dataset_path: Path,
    tmp_path: Path,
) -> None:
    candidate = tmp_path / "candidate"
    shadow_version = run_training(
        dataset_path, candidate, algorithm="logreg", cv_folds=2, sample=2000
    ).version
    topics = (topic_factory(3), topic_factory(3), topic_factory(1))
    raw, preds, _ = topics
    shadow_topic = topic_factory(3)
    settings = load_settings(**{"kafka.bootstrap_servers": kafka_bootstrap})
    opts = options(
        topics, model_dir, tmp_path, shadow_model_path=candidate, shadow_topic=shadow_topic
    )
    writer = reports(tmp_path)
    with Running(ScorerLoop(settings, opts, observers=[WindowCallback(writer)])) as running:
        send_raw(kafka_bootstrap, raw, events(0, 600))
        champion = wait_for(kafka_bootstrap, preds, 600)
        shadow = wait_for(kafka_bootstrap, shadow_topic, 600)
        summary = running.finish()
    assert writer.close() == []

    assert len(shadow) == 600
    assert {r.headers[SOURCE_HEADER] for r in shadow} == {
        r.headers[SOURCE_HEADER] for r in champion
    }
    champion_version = champion[0].json()["model_version"]
    for record in shadow:
        body = record.json()
        contract("churn_prediction_schema.json").validate(body)
        assert body["model_version"] == shadow_version != champion_version
        assert record.headers[CHAMPION_VERSION_HEADER].decode() == champion_version
    block = summary.last_summary["shadow"] if summary.last_summary else {}
    assert block["compared"] == 600 and block["shadow_model_version"] == shadow_version
    champion_yes = sum(r.json()["prediction"] == "Yes" for r in champion) / 600
    shadow_yes = sum(r.json()["prediction"] == "Yes" for r in shadow) / 600
    assert block["champion_churn_rate"] == pytest.approx(champion_yes)
    assert block["shadow_churn_rate"] == pytest.approx(shadow_yes)
    by_source = {r.headers[SOURCE_HEADER]: r.json()["prediction"] for r in champion}
    agree = sum(by_source[r.headers[SOURCE_HEADER]] == r.json()["prediction"] for r in shadow)
    assert block["agreement_rate"] == pytest.approx(agree / 600)
    report = next((tmp_path / "reports").glob("summary_*.md")).read_text()
    assert "Champion and shadow model" in report
