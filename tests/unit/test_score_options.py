"""ScoreOptions from settings, and the hooks through which the scorer loop reports."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from churnstream.exceptions import ChurnstreamError
from churnstream.reports.writer import SummaryWriter
from churnstream.settings import load_settings
from churnstream.spark.kafka_batch import SparkBatchSummary
from churnstream.streaming.observers import Observers, ScorerObserver, WindowCallback
from churnstream.streaming.options import ScoreOptions, ScoreSummary
from tests.unit.test_reports import make_summary


def test_options_come_from_the_settings() -> None:
    settings = load_settings(
        **{
            "topics.raw.name": "in",
            "topics.predictions.name": "out",
            "topics.deadletter.name": "dead",
            "consumer.group_id": "g",
            "consumer.idle_timeout_ms": 1234,
            "consumer.max_batch_records": 77,
            "consumer.max_batch_wait_ms": 9,
            "consumer.summary_interval_s": 12.5,
            "consumer.top_k": 4,
            "model.models_dir": "somewhere/models",
        }
    )
    options = ScoreOptions.from_settings(settings, mode="batch", max_messages=10)
    assert options == ScoreOptions(
        mode="batch",
        input_topic="in",
        output_topic="out",
        deadletter_topic="dead",
        group_id="g",
        model_path=Path("somewhere/models"),
        idle_timeout_ms=1234,
        max_messages=10,
        max_batch_records=77,
        max_batch_wait_ms=9,
        summary_interval_s=12.5,
        top_k=4,
        pipeline=True,  # consumer.pipeline "auto": batch mode, at-least-once
    )


def test_pipeline_auto_is_on_for_an_at_least_once_batch_window_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auto = load_settings()
    assert auto.consumer.pipeline == "auto"
    assert ScoreOptions.from_settings(auto, mode="batch").pipeline is True
    assert ScoreOptions.from_settings(auto, mode="streaming").pipeline is False
    assert ScoreOptions.from_settings(auto, mode="batch", exactly_once=True).pipeline is False
    for value, mode, expected in (("true", "streaming", True), ("false", "batch", False)):
        monkeypatch.setenv("CHURNSTREAM_CONSUMER__PIPELINE", value)
        assert ScoreOptions.from_settings(load_settings(), mode=mode).pipeline is expected
    monkeypatch.setenv("CHURNSTREAM_CONSUMER__PIPELINE", "sometimes")
    with pytest.raises(ChurnstreamError, match="consumer.pipeline"):
        load_settings()


def test_exactly_once_gets_a_stable_id_per_worker() -> None:
    settings = load_settings(**{"topics.raw.name": "in", "consumer.group_id": "g"})
    host = socket.gethostname()
    second = ScoreOptions.from_settings(settings, mode="streaming", exactly_once=True, worker=1)
    assert second.transactional_id == f"churnstream-g-in-{host}-1"
    given = ScoreOptions.from_settings(
        settings, mode="streaming", exactly_once=True, transactional_id="mine", worker=1
    )
    assert given.transactional_id == "mine"
    assert ScoreOptions.from_settings(settings, mode="streaming").transactional_id is None


def test_a_shadow_model_defaults_to_the_predictions_topic_dot_shadow() -> None:
    settings = load_settings(**{"topics.predictions.name": "out"})
    plain = ScoreOptions.from_settings(settings, mode="streaming", shadow_topic="ignored")
    assert plain.shadow_topic is None
    shadow = ScoreOptions.from_settings(settings, mode="streaming", shadow_model_path=Path("m"))
    assert shadow.shadow_topic == "out.shadow"
    named = ScoreOptions.from_settings(
        settings, mode="streaming", shadow_model_path=Path("m"), shadow_topic="cand"
    )
    assert named.shadow_topic == "cand"


class _AddsBlock(ScorerObserver):
    def on_window(self, window: dict[str, Any]) -> None:
        window["extra"] = {"added": True}


def test_window_hooks_run_in_order_and_the_writer_sees_what_came_before(
    tmp_path: Path,
) -> None:
    writer = SummaryWriter(tmp_path / "reports")
    hooks = Observers([_AddsBlock(), WindowCallback(writer)])
    summary = make_summary()
    hooks.on_window(summary)
    assert writer.close() == []
    json_path, md_path = writer.paths
    assert json_path.suffix == ".json" and md_path.suffix == ".md"
    assert md_path.is_file()
    assert '"extra"' in json_path.read_text()


def test_the_summary_lines_of_both_engines_are_pinned() -> None:
    counts = {"consumed": 1200, "scored": 1190, "dead_lettered": 10, "duration_s": 0.5}
    kafka = ScoreSummary(mode="batch", model_version="v1", producer_recoveries=2, **counts)
    spark = SparkBatchSummary(batches=3, model_version="v2", **counts)
    assert kafka.line() == (
        "batch: consumed 1200, scored 1190, dead-lettered 10 in 0.50s (2,400.0 msgs/s), "
        "model v1, producer recovered 2x"
    )
    assert spark.line() == (
        "batch (spark): consumed 1200, scored 1190, dead-lettered 10 in 0.50s "
        "(2,400.0 msgs/s) over 3 micro-batch(es), model v2"
    )
    assert ScoreSummary(mode="stream").rate == 0.0
