"""The supervised scorer's pure parts: record, command line, decisions, health and metrics."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from churnstream.observability.metrics.scorer import PrometheusScorerObserver
from churnstream.ops.scorer_health import parse_health, scorer_counters
from churnstream.ops.supervisor import Action, ScorerRecord, consume_argv, decide


def record(**overrides: object) -> ScorerRecord:
    values: dict[str, object] = {
        "pid": 4242,
        "argv": ["python", "-m", "churnstream", "consume"],
        "consume_args": ["--summary-interval", "60"],
        "metrics_port": 9108,
        "log_file": "/tmp/scorer.out",
        "started_at": 1_795_000_000.5,
        "proc_start": 497_436,
    }
    values.update(overrides)
    return ScorerRecord(**values)  # type: ignore[arg-type]


def test_record_round_trips_through_json() -> None:
    rec = record()
    assert ScorerRecord.from_json(rec.to_json()) == rec
    assert rec.metrics_url == "http://127.0.0.1:9108"


def test_record_without_proc_start_reads_and_bad_records_are_value_errors() -> None:
    data = json.loads(record().to_json())
    del data["proc_start"], data["metrics_host"]
    assert ScorerRecord.from_json(json.dumps(data)).proc_start is None
    for bad in ("", "[]", "{}", json.dumps({**data, "pid": "x"})):
        with pytest.raises(ValueError, match="not a scorer record"):
            ScorerRecord.from_json(bad)


def test_consume_argv_is_a_streaming_scorer_on_the_given_port() -> None:
    argv = consume_argv(
        "/venv/bin/python",
        ["--summary-interval", "60", "--reports-dir", "reports/streaming"],
        9108,
        global_args=["--log-level", "INFO"],
    )
    assert argv == [
        "/venv/bin/python",
        "-m",
        "churnstream",
        "--log-level",
        "INFO",
        "consume",
        "--mode",
        "streaming",
        "--metrics-port",
        "9108",
        "--summary-interval",
        "60",
        "--reports-dir",
        "reports/streaming",
    ]


@pytest.mark.parametrize(
    "arg", ["--mode", "--mode=batch", "--metrics-port", "--workers=2", "--worker-index"]
)
def test_options_the_supervisor_sets_are_refused(arg: str) -> None:
    with pytest.raises(ValueError, match="set by the supervisor"):
        consume_argv("python", ["--batch-records", "10", arg, "1"], 9108)


@pytest.mark.parametrize(
    ("alive", "live", "age", "action", "why"),
    [
        (False, None, 0.0, Action.START, "no scorer is running"),
        (True, True, 5.0, Action.KEEP, "running and live"),
        (True, True, 1e6, Action.KEEP, "running and live"),
        (True, False, 5.0, Action.RESTART, "stalled"),
        (True, None, 10.0, Action.KEEP, "still starting"),
        (True, None, 31.0, Action.RESTART, "has not answered for 31s"),
    ],
)
def test_decide(alive: bool, live: bool | None, age: float, action: Action, why: str) -> None:
    got, reason = decide(alive=alive, live=live, age_s=age, grace_s=30.0)
    assert got is action
    assert why in reason


def test_parse_health_reads_the_checks_and_describes_them() -> None:
    checks = {
        "running": True,
        "model_loaded": True,
        "model_version": "v1",
        "broker_reachable": True,
        "lag": 12345,
        "max_lag": 10000,
        "lag_ok": False,
        "seconds_since_poll": 0.1,
        "stalled": False,
    }
    answer = parse_health(503, json.dumps({"status": "fail", "checks": checks}).encode())
    assert not answer.ok and answer.status == 503
    assert answer.describe() == "model v1, broker reachable, lag 12,345 (max 10000)"
    stalled = {**checks, "broker_reachable": False, "stalled": True, "seconds_since_poll": 75}
    text = parse_health(503, json.dumps({"checks": stalled}).encode()).describe()
    assert "broker UNREACHABLE" in text and "STALLED (75s since the last poll)" in text


def test_parse_health_tolerates_bodies_that_are_not_json() -> None:
    answer = parse_health(200, b"ok\n")
    assert answer.ok and answer.checks == {}
    assert answer.describe() == "HTTP 200"
    assert not parse_health(500, b"\xff").ok


def test_scorer_counters_sum_the_scorers_own_metrics() -> None:
    """Parsed from what PrometheusScorerObserver really exposes, so a renamed metric fails."""
    registry = CollectorRegistry()
    observer = PrometheusScorerObserver(registry)
    observer.consumed.inc(120)
    observer.scored.inc(110)
    observer.dead_letters.labels(error_type="validation_error").inc(7)
    observer.dead_letters.labels(error_type="inference_error").inc(3)
    observer.redelivered.inc(2)
    observer.lag.labels(topic="raw", partition="0").set(5)
    observer.lag.labels(topic="raw", partition="1").set(4)
    counters = scorer_counters(generate_latest(registry).decode())
    assert counters["consumed"] == 120
    assert counters["scored"] == 110
    assert counters["dead_lettered"] == 10
    assert counters["redelivered_batches"] == 2
    assert counters["lag"] == 9


def test_scorer_counters_of_an_empty_page_is_empty() -> None:
    assert scorer_counters("") == {}
