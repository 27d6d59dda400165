"""The pipeline end to end on a real broker: produce, score, dead letters, resume, shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from churnstream.data import load_dataset, read_table, validate_frame
from churnstream.headers import REASONS_HEADER, ROW_INDEX_HEADER, SOURCE_HEADER
from churnstream.model.contributions import top_reasons
from churnstream.model.features import from_frame
from churnstream.model.scorer import Scorer
from churnstream.schemas import DeadLetter, Prediction
from churnstream.settings import load_settings
from churnstream.streaming.checkpoint import load_checkpoint
from churnstream.streaming.events_producer import ProduceOptions, run_producer
from tests.integration.cli_runs import consume_args, invoke, produce_batch_args
from tests.integration.kafka_io import read_topic, send_raw
from tests.integration.scorers import GUARANTEES
from tests.unit.test_schemas import EVENT, contract

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., str]


def topics(topic_factory: TopicFactory) -> tuple[str, str, str]:
    return topic_factory(partitions=3), topic_factory(partitions=3), topic_factory(partitions=1)


def batch_roundtrip(
    bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    model_dir: Path,
    tmp_path: Path,
    *,
    reasons: bool = False,
) -> None:
    raw, preds, dlq = topics(topic_factory)
    args = produce_batch_args(bootstrap, raw, dataset_path, tmp_path / "ckpt.json")
    out = invoke([*args, "--batch-size", "1000"])
    assert "sent 7043, failed 0" in out
    extra = ["--reasons"] if reasons else []
    out = invoke(consume_args(bootstrap, raw, preds, dlq, model_dir, tmp_path / "reports") + extra)
    assert "consumed 7043, scored 7043, dead-lettered 0" in out

    records = read_topic(bootstrap, preds, expect=7043)
    assert len(records) == 7043
    validator = contract("churn_prediction_schema.json")
    bodies = [r.json() for r in records]
    for body in bodies:
        validator.validate(body)
        Prediction.model_validate(body)
    expected_ids = set(load_dataset(dataset_path)["customerID"])
    assert Counter(b["customerID"] for b in bodies) == Counter(expected_ids)  # exactly one each
    sources = {r.headers[SOURCE_HEADER] for r in records}
    assert len(sources) == 7043  # one prediction per input offset
    assert all(r.key == r.json()["customerID"].encode() for r in records)
    assert read_topic(bootstrap, dlq, idle_s=1.0) == []
    summaries = list((tmp_path / "reports").glob("summary_*.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["counts"]["scored"] == 7043
    assert 0.15 < summary["churn"]["predicted_churn_rate"] < 0.5
    if reasons:
        check_reasons(records, dataset_path, model_dir, summary)


def check_reasons(
    records: list[Any], dataset_path: Path, model_dir: Path, summary: dict[str, Any]
) -> None:
    """Every prediction's churnstream.reasons header: the largest positive contributions of an
    explanation whose base plus sum is the body's probability."""
    valid, _ = validate_frame(read_table(dataset_path))
    scorer = Scorer.load(model_dir)
    features = from_frame(valid)
    explained = scorer.explain_features(features)
    expected = dict(zip(valid["customerID"], top_reasons(explained, features).rows(), strict=True))
    total = dict(
        zip(valid["customerID"], explained.base + explained.values.sum(axis=1), strict=True)
    )
    for record in records:
        body = record.json()
        header = orjson.loads(record.headers[REASONS_HEADER])
        want = expected[body["customerID"]]
        # Same reasons and values; contributions to float rounding (the scorer's batches are
        # smaller than the whole dataset, and numpy's row sums may round differently by size).
        assert [(r["feature"], r["value"]) for r in header] == [(r[0], r[1]) for r in want]
        got = [r["contribution"] for r in header]
        assert np.allclose(got, [r.contribution for r in want], rtol=0, atol=1e-12)
        assert 1 <= len(header) <= 3
        assert abs(total[body["customerID"]] - body["churn_probability"]) < 1e-9
    top = summary["reasons"]["top"]
    assert summary["reasons"]["predicted_churners"] == summary["churn"]["predicted_churn_count"]
    assert {row["feature"] for row in top[:3]} & {"Contract", "tenure"}


def test_whole_dataset_batch_roundtrip(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    batch_roundtrip(kafka_bootstrap, topic_factory, dataset_path, model_dir, tmp_path, reasons=True)


def test_whole_dataset_batch_roundtrip_on_tansu(
    tansu_bootstrap: str,
    tansu_topic_factory: TopicFactory,
    dataset_path: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    batch_roundtrip(tansu_bootstrap, tansu_topic_factory, dataset_path, model_dir, tmp_path)


def test_streaming_rate_is_held(
    kafka_bootstrap: str, topic_factory: TopicFactory, dataset_path: Path
) -> None:
    raw = topic_factory(partitions=3)
    settings = load_settings(**{"kafka.bootstrap_servers": kafka_bootstrap})
    options = ProduceOptions(
        mode="streaming",
        topic=raw,
        data_path=dataset_path,
        events_per_sec=200.0,
        batch_size=500,
        checkpoint_file=Path("unused"),
        duration_s=4.0,
    )
    summary = run_producer(settings, options, threading.Event())
    assert summary.failed == 0
    assert abs(summary.rate - 200.0) / 200.0 < 0.01, summary.rate
    assert 790 <= summary.sent <= 801  # 4 s at 200/s
    records = read_topic(kafka_bootstrap, raw, expect=summary.sent)
    assert len(records) == summary.sent
    # the broker's own timestamps agree: measured independently of the producer's clock
    stamps = sorted(r.timestamp_ms for r in records)
    broker_rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)
    assert abs(broker_rate - 200.0) / 200.0 < 0.05, broker_rate
    # in file order, each with an event_ts and keyed by customerID
    first = sorted(records, key=lambda r: int(r.headers[ROW_INDEX_HEADER]))[0].json()
    assert first["customerID"] == "7590-VHVEG" and first["event_ts"].endswith("Z")
    for record in records[:50]:
        contract("telco_customer_schema.json").validate(record.json())
        assert record.key == record.json()["customerID"].encode()


def test_batch_checkpoint_resume(
    kafka_bootstrap: str, topic_factory: TopicFactory, dataset_path: Path, tmp_path: Path
) -> None:
    raw = topic_factory(partitions=3)
    settings = load_settings(**{"kafka.bootstrap_servers": kafka_bootstrap})
    ckpt = tmp_path / "ckpt.json"
    options = ProduceOptions(
        mode="batch",
        topic=raw,
        data_path=dataset_path,
        events_per_sec=1.0,
        batch_size=500,
        checkpoint_file=ckpt,
    )
    stop = threading.Event()

    def interrupt_after_three_chunks(done: int, _total: int | None) -> None:
        if done >= 1500:
            stop.set()  # what SIGINT does in the CLI

    first = run_producer(settings, options, stop, on_progress=interrupt_after_three_chunks)
    assert first.sent == 1500 and not first.finished
    saved = load_checkpoint(ckpt)
    assert saved is not None and saved.next_row == 1500 and not saved.finished

    second = run_producer(settings, options, threading.Event())
    assert second.resumed_from == 1500 and second.sent == 7043 - 1500 and second.finished

    records = read_topic(kafka_bootstrap, raw, expect=7043)
    rows = Counter(int(r.headers[ROW_INDEX_HEADER]) for r in records)
    assert len(records) == 7043 and set(rows) == set(range(7043)) and max(rows.values()) == 1

    out = invoke(produce_batch_args(kafka_bootstrap, raw, dataset_path, ckpt))
    assert "already finished" in out
    assert len(read_topic(kafka_bootstrap, raw, idle_s=1.0)) == 7043


#: One message of each kind the scorer must dead-letter, with its reason code in order:
#: not_json, not_utf8, not_object, schema (twice), key_mismatch, empty_body.
BAD_MESSAGES: list[tuple[bytes | None, bytes | None]] = [
    (b"x", b"not json at all"),
    (None, b"\xff\xfe\xfa"),
    (None, b"[1,2,3]"),
    (b"7590-VHVEG", orjson.dumps({**EVENT, "Contract": "Weekly"})),
    (b"7590-VHVEG", orjson.dumps({**EVENT, "tenure": "ten"})),
    (b"0000-XXXXX", orjson.dumps(EVENT)),
    (None, b""),
]


def test_mixed_batch_scores_good_and_dead_letters_bad(
    kafka_bootstrap: str, topic_factory: TopicFactory, model_dir: Path, tmp_path: Path
) -> None:
    raw, preds, dlq = topics(topic_factory)
    good = [(b"7590-VHVEG", orjson.dumps({**EVENT, "tenure": t})) for t in range(20)]
    send_raw(kafka_bootstrap, raw, good[:10] + BAD_MESSAGES + good[10:])
    out = invoke(consume_args(kafka_bootstrap, raw, preds, dlq, model_dir, tmp_path / "reports"))
    assert "consumed 27, scored 20, dead-lettered 7" in out

    predictions = read_topic(kafka_bootstrap, preds, expect=20)
    assert sorted(r.json()["customerID"] for r in predictions) == ["7590-VHVEG"] * 20
    letters = read_topic(kafka_bootstrap, dlq, expect=7)
    assert len(letters) == 7
    validator = contract("deadletter_schema.json")
    for letter in letters:
        validator.validate(letter.json())
        DeadLetter.model_validate(letter.json())
        assert letter.json()["source_topic"] == raw
    codes = Counter(r.headers["churnstream.error_code"].decode() for r in letters)
    assert codes == {
        "not_json": 1,
        "not_utf8": 1,
        "not_object": 1,
        "schema": 2,
        "key_mismatch": 1,
        "empty_body": 1,
    }
    weekly = next(
        r.json() for r in letters if r.json()["original_message"].get("Contract") == "Weekly"
    )
    assert any(e.startswith("Contract:") for e in weekly["validation_errors"])


#: What the scorer process must never load (the model comes from its exported arrays).
HEAVY_LIBRARIES = {"pandas", "sklearn", "scipy", "pyarrow", "matplotlib", "skops"}


@pytest.mark.parametrize(
    "extra", [[], ["--exactly-once", "--shadow-topic"]], ids=["default", "exactly-once-shadow"]
)
def test_batch_consume_returns_with_its_report_and_never_imports_the_heavy_libraries(
    extra: list[str],
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    raw, preds, dlq = topics(topic_factory)
    send_raw(
        kafka_bootstrap,
        raw,
        [(b"7590-VHVEG", orjson.dumps({**EVENT, "tenure": t})) for t in range(50)],
    )
    args = consume_args(kafka_bootstrap, raw, preds, dlq, model_dir, tmp_path / "reports")
    if extra:  # a champion and a shadow model, one transaction per batch
        args += [*extra, f"{preds}.shadow", "--shadow-model", str(model_dir)]
    # -X importtime: one stderr line per module the scorer process imported. Files, not
    # pipes: the renderer child shares the scorer's stderr, and reading a pipe to its end
    # would wait for the child too, not just for the scorer.
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        code = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "churnstream", *args],
            env={**os.environ, "COLUMNS": "200"},
            stdout=out,
            stderr=err,
            timeout=180,
        ).returncode
    stdout, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert code == 0, stdout + stderr[-3000:]
    assert "consumed 50, scored 50, dead-lettered 0" in stdout
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert {
        "churnstream.reports.writer",
        "churnstream.streaming.loop",
        "churnstream.model.lean",
    } <= imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY_LIBRARIES}

    # Returned with the report complete: the paths it printed, and every chart they link.
    (json_path,) = (tmp_path / "reports").glob("summary_*.json")
    md_path = json_path.with_suffix(".md")
    assert f"reports: {json_path}, {md_path}" in stdout
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md_path.read_text(encoding="utf-8"))
    assert sorted(links) == [
        f"{json_path.stem}_{suffix}.png"
        for suffix in ("contract", "internet_service", "latency", "risk")
    ]
    assert all((tmp_path / "reports" / link).stat().st_size > 0 for link in links)


@pytest.mark.parametrize(("exactly_once", "pipeline", "client"), **GUARANTEES)
def test_sigterm_during_streaming_loses_nothing(
    exactly_once: bool,
    pipeline: bool,
    client: str,
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    if pipeline:  # the scorer and the restart below both score pipelined
        monkeypatch.setenv("CHURNSTREAM_CONSUMER__PIPELINE", "true")
    if client == "native":  # both on the native Kafka client (churnstream.kafka.native)
        pytest.importorskip("churnstream_native_io")
        monkeypatch.setenv("CHURNSTREAM_CONSUMER__CLIENT", "native")
    raw, preds, dlq = topics(topic_factory)
    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = load_settings(**{"kafka.bootstrap_servers": kafka_bootstrap})
    produced = run_producer(
        settings,
        ProduceOptions(
            mode="batch",
            topic=raw,
            data_path=dataset_path,
            events_per_sec=1.0,
            batch_size=7043,
            checkpoint_file=tmp_path / "c.json",
        ),
        threading.Event(),
    ).sent
    assert produced == 7043
    args = consume_args(kafka_bootstrap, raw, preds, dlq, model_dir, tmp_path / "reports", group)
    args[args.index("batch")] = "streaming"
    args += ["--batch-records", "200"]
    if exactly_once:
        args.append("--exactly-once")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "churnstream", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # wait until it is mid-stream: some predictions out, not all
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(read_topic(kafka_bootstrap, preds, idle_s=0.3, timeout_s=2)) >= 200:
                break
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        output, _ = proc.communicate(timeout=20)
        drained_in = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "SIGTERM received" in output
    assert drained_in < 10, f"took {drained_in:.1f}s to drain, flush and commit"
    # The last window's report was rendered (by the renderer child) before the scorer exited.
    windows = list((tmp_path / "reports").glob("summary_*.json"))
    assert windows and all(w.with_suffix(".md").is_file() for w in windows), output
    first_run = read_topic(kafka_bootstrap, preds, idle_s=1.0)
    # restart in batch mode with the same group: it scores only what was not committed
    restart = consume_args(kafka_bootstrap, raw, preds, dlq, model_dir, tmp_path / "reports", group)
    invoke(restart + (["--exactly-once"] if exactly_once else []))
    everything = read_topic(kafka_bootstrap, preds, expect=7043)
    sources = Counter(r.headers[SOURCE_HEADER] for r in everything)
    assert len(sources) == 7043, "an input message was lost"
    assert max(sources.values()) == 1, "a graceful stop must not cause re-scoring"
    assert 0 < len(first_run) <= 7043


def scrape(url: str) -> dict[str, float]:
    """Prometheus text as {sample name with labels: value}."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.split("{")[0] == prefix)


def test_demo_runs_end_to_end(
    kafka_bootstrap: str, model_dir: Path, dataset_path: Path, tmp_path: Path
) -> None:
    from churnstream.ops.devbroker import find_free_port

    port = find_free_port()
    env = {
        **os.environ,
        "CHURNSTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CHURNSTREAM_MODEL__MODELS_DIR": str(model_dir),
        "CHURNSTREAM_PATHS__RAW_CSV": str(dataset_path),
        "CHURNSTREAM_PATHS__REPORTS_DIR": str(tmp_path / "reports"),
        "CHURNSTREAM_PATHS__LOGS_DIR": str(tmp_path / "logs"),
        "COLUMNS": "120",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "churnstream",
            "demo",
            "--duration",
            "8",
            "--events-per-sec",
            "40",
            "--metrics-port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    # Scrape while the demo runs: the last scrape that saw scored events is checked below.
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            samples = scrape(f"http://127.0.0.1:{port}/metrics")
        except OSError:
            samples = {}
        if total(samples, "churnstream_scorer_scored_messages_total") > 0:
            seen = samples
        time.sleep(0.5)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "streaming: sent" in out and "failed 0" in out
    sent = int(out.split("streaming: sent ")[1].split(",")[0])
    assert 300 <= sent <= 321
    assert f"consumed {sent}, scored {sent}" in out
    assert list((tmp_path / "reports").glob("summary_*.md"))
    assert (tmp_path / "logs" / "demo.log").is_file()

    assert seen, "no scrape during the demo saw a scored event"
    scored = total(seen, "churnstream_scorer_scored_messages_total")
    assert 0 < scored <= sent
    assert total(seen, "churnstream_scorer_consumed_messages_total") >= scored
    assert 0 < total(seen, "churnstream_producer_delivered_messages_total") <= sent
    assert total(seen, "churnstream_scorer_dead_letters_total") == 0
    assert total(seen, "churnstream_scorer_batch_size_messages_count") > 0
    assert total(seen, "churnstream_scorer_inference_latency_seconds_count") > 0
    e2e_count = total(seen, "churnstream_scorer_end_to_end_latency_seconds_count")
    e2e_sum = total(seen, "churnstream_scorer_end_to_end_latency_seconds_sum")
    assert e2e_count == scored and 0 < e2e_sum / e2e_count < 5.0  # mean end-to-end under 5 s
    lags = [v for k, v in seen.items() if k.startswith("churnstream_scorer_consumer_lag_messages")]
    assert lags and all(0 <= v < 1000 for v in lags)
    assert any(k.startswith("churnstream_model_info{") for k in seen)
    assert total(seen, "churnstream_scorer_last_batch_timestamp_seconds") > time.time() - 600
