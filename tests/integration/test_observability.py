"""Metrics, health, drift and status against a real broker and a real model."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from churnstream.observability import names
from churnstream.observability.cluster import collect_status
from churnstream.observability.metrics.producer import ProducerMetrics
from churnstream.reports.render import write_summary
from churnstream.settings import load_settings
from tests.integration.kafka_io import read_topic, send_raw
from tests.integration.streams import Pump, http_get, records, start_scorer, wait_for
from tests.unit.test_schemas import EVENT
from tests.unit.test_status import app

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., str]
EVENTS = 1500
RATE = 300.0


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = http_get(f"{url}/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return values.get((name, tuple(sorted(labels.items()))), float("nan"))


def bad_messages() -> list[tuple[bytes | None, bytes | None]]:
    schema = orjson.dumps({**EVENT, "Contract": "Weekly"})
    return [
        (b"k1", b"not json"),
        (b"k2", b"{"),
        (b"k3", b"[1]"),
        (EVENT["customerID"].encode(), schema),
    ]


def test_scorer_metrics_health_drift_and_status(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw, preds, dlq = topic_factory(3), topic_factory(3), topic_factory(1)
    group = f"g-obs-{uuid.uuid4().hex[:8]}"
    settings = load_settings(**{"kafka.bootstrap_servers": kafka_bootstrap})
    run = start_scorer(
        settings,
        model_dir,
        raw=raw,
        preds=preds,
        dlq=dlq,
        group=group,
        reports_dir=tmp_path / "reports",
    )
    try:
        # Ready once the loop runs with the model loaded and the broker answers.
        wait_for(lambda: http_get(f"{run.url}/health/ready")[0] == 200, 30, "/health/ready")
        assert http_get(f"{run.url}/health/live")[0] == 200
        assert run.loop.assigned.wait(30)

        producer_metrics = ProducerMetrics()
        pump = Pump(
            settings,
            raw,
            records(dataset_path),
            rate=RATE,
            total=EVENTS,
            on_delivery=producer_metrics.on_delivery,
        )
        pump.start()
        send_raw(kafka_bootstrap, raw, bad_messages())

        # While events flow, the counters move between scrapes.
        seen = []
        for _ in range(4):
            time.sleep(1.0)
            seen.append(sample(scrape(run.url), names.SCORER_CONSUMED))
        assert seen[-1] > seen[0] > 0, seen
        assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)), seen
        pump.join(60)
        total = EVENTS + len(bad_messages())
        consumed = names.SCORER_CONSUMED
        wait_for(lambda: sample(scrape(run.url), consumed) == total, 60, "all consumed")
        time.sleep(2.5)  # one more lag refresh after the last batch
        values = scrape(run.url)
        ready_body = json.loads(http_get(f"{run.url}/health/ready")[1])
    finally:
        summary = run.finish()

    assert sample(values, names.SCORER_SCORED) == EVENTS
    assert sample(values, names.SCORER_PRODUCED, kind="prediction") == EVENTS
    assert sample(values, names.SCORER_PRODUCED, kind="dead_letter") == 4
    assert sample(values, names.SCORER_DEAD_LETTERS, error_type="validation_error") == 4
    assert sample(values, names.SCORER_DEAD_LETTERS, error_type="inference_error") == 0
    assert sample(values, names.SCORER_DEAD_LETTER_CODES, code="not_json") == 2
    assert sample(values, names.SCORER_DEAD_LETTER_CODES, code="not_object") == 1
    assert sample(values, names.SCORER_DEAD_LETTER_CODES, code="schema") == 1
    assert 0 < sample(values, names.SCORER_PREDICTED_CHURN) < EVENTS
    batches = sample(values, names.SCORER_BATCHES)
    assert batches >= 5  # paced at 300/s, polled every 100 ms
    assert sample(values, f"{names.SCORER_BATCH_SIZE}_sum") == total
    assert sample(values, f"{names.SCORER_BATCH_SIZE}_count") == batches
    assert sample(values, f"{names.SCORER_INFERENCE}_count") > 0
    assert (
        0
        < sample(values, f"{names.SCORER_INFERENCE}_sum")
        / sample(values, f"{names.SCORER_INFERENCE}_count")
        < 1.0
    )  # seconds per model call
    e2e_count = sample(values, f"{names.SCORER_END_TO_END}_count")
    assert e2e_count == EVENTS
    mean_e2e = sample(values, f"{names.SCORER_END_TO_END}_sum") / e2e_count
    assert 0 < mean_e2e < 5.0, mean_e2e
    assert sample(values, f"{names.SCORER_END_TO_END}_bucket", le="60.0") == EVENTS
    lags = {k[1]: v for k, v in values.items() if k[0] == names.SCORER_LAG}
    assert len(lags) == 3 and all(v == 0 for v in lags.values()), lags  # caught up
    assert sample(values, names.MODEL_INFO, version=run.loop.scorer.version) == 1
    assert abs(sample(values, names.SCORER_LAST_BATCH) - time.time()) < 60
    assert ready_body["status"] == "ok" and ready_body["checks"]["lag"] == 0

    # The producer side, counted from the real delivery callbacks.
    pm = producer_metrics.registry
    assert pm.get_sample_value(names.PRODUCER_DELIVERED, {"topic": raw}) == EVENTS
    assert pm.get_sample_value(names.PRODUCER_FAILURES, {"topic": raw, "error": "x"}) is None

    # The window written at shutdown carries the drift block: the dataset does not drift.
    assert summary.scored == EVENTS and summary.last_summary is not None
    drift = summary.last_summary["drift"]
    assert drift["available"] and drift["evaluated"] and drift["samples"] == EVENTS
    assert not drift["drifted"], drift["drifted_features"]
    assert drift["max_psi"] < 0.05
    assert run.reports is not None
    report_json = [p for p in run.reports.paths if p.suffix == ".json"][-1]
    assert json.loads(report_json.read_text())["drift"]["samples"] == EVENTS
    markdown = report_json.with_suffix(".md").read_text()
    assert "## Drift against the training data" in markdown and "no drift" in markdown
    # The renderer child wrote, from the JSON, the same bytes as rendering the window's own
    # dict in this process (what the scorer did before rendering moved out of it).
    write_summary(summary.last_summary, tmp_path / "inline")
    inline = {p.name: p.read_bytes() for p in (tmp_path / "inline").iterdir()}
    assert len(inline) == 6  # JSON, Markdown, four charts
    assert inline == {n: (report_json.parent / n).read_bytes() for n in inline}

    # churnstream status: end offsets, the group's lag, dead letters deduped on source.
    letters = read_topic(kafka_bootstrap, dlq, expect=4, idle_s=1.0)
    again = letters[0]
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(dlq, value=again.value, key=again.key, headers=list(again.headers.items()))
    assert producer.flush(10) == 0
    status_settings = load_settings(
        **{
            "kafka.bootstrap_servers": kafka_bootstrap,
            "topics.raw.name": raw,
            "topics.deadletter.name": dlq,
        }
    )
    status = collect_status(status_settings, models_dir=model_dir)
    assert status.reachable and status.model is not None
    assert status.model.version == run.loop.scorer.version
    topics = {t.name: t for t in status.topics}
    assert topics[raw].role == "raw" and topics[raw].end_offset_total == total
    groups = {g.group_id: g for g in status.groups}
    assert groups[group].total_lag == 0
    assert [t.topic for t in groups[group].topics] == [raw]
    assert status.dead_letters == {
        "total": 4,
        "duplicates": 1,
        "by_type": {"validation_error": 4},
        "by_code": {"not_json": 2, "not_object": 1, "schema": 1},
    }

    monkeypatch.setenv("CHURNSTREAM_TOPICS__DEADLETTER__NAME", dlq)
    monkeypatch.setenv("CHURNSTREAM_TOPICS__RAW__NAME", raw)
    result = CliRunner().invoke(
        app(), ["status", "--broker", kafka_bootstrap, "--models-dir", str(model_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "reachable" in result.output and group in result.output
    assert "by type: validation_error 4" in result.output


def test_a_shifted_stream_is_flagged_in_the_window(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    model_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw, preds, dlq = topic_factory(3), topic_factory(3), topic_factory(1)
    settings = load_settings(**{"kafka.bootstrap_servers": kafka_bootstrap})
    shifted = records(
        dataset_path,
        lambda f: f[
            (f["Contract"] == "Month-to-month")
            & (f["InternetService"] == "Fiber optic")
            & (f["tenure"] < 6)
        ],
    )
    pump = Pump(settings, raw, shifted, rate=5000, total=len(shifted))
    pump.start()
    pump.join(60)
    run = start_scorer(
        settings,
        model_dir,
        raw=raw,
        preds=preds,
        dlq=dlq,
        group=f"g-{uuid.uuid4().hex[:8]}",
        reports_dir=tmp_path / "reports",
        mode="batch",
        idle_timeout_ms=2000,
    )
    with caplog.at_level(logging.WARNING, logger="churnstream.observability.metrics.drift"):
        run.thread.join(90)
        values = scrape(run.url)
        summary = run.finish()

    drift = summary.last_summary["drift"] if summary.last_summary else {}
    assert summary.scored == len(shifted)
    assert drift["drifted"] and drift["evaluated"]
    assert {"tenure", "Contract", "InternetService"} <= set(drift["drifted_features"])
    assert drift["features"]["tenure"]["psi"] > 0.2
    assert drift["churn_rate"]["drifted"]  # the model predicts far more churn here
    assert sample(values, names.DRIFT_DETECTED) == 1
    assert sample(values, names.DRIFT_PSI, feature="tenure") == pytest.approx(
        drift["features"]["tenure"]["psi"]
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("drift: PSI of tenure") for w in warnings), warnings
    markdown = next((tmp_path / "reports").glob("*.md")).read_text()
    assert "**drift detected**" in markdown
