"""The dashboard's aggregations and metrics parsing, fed by hand (no Kafka, no browser)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from churnstream.dashboard.scraper import parse_scorer_metrics
from churnstream.dashboard.state import JOIN_WAIT_S, BoundedSet, DashboardState
from churnstream.observability.metrics.drift import DriftObserver
from churnstream.observability.metrics.scorer import PrometheusScorerObserver


def prediction(customer: str, probability: float, *, yes: bool | None = None) -> dict[str, Any]:
    label = "Yes" if (probability >= 0.5 if yes is None else yes) else "No"
    return {
        "customerID": customer,
        "churn_probability": probability,
        "prediction": label,
        "event_ts": "2026-11-23T03:00:00.000Z",
        "processed_ts": "2026-11-23T03:00:00.250Z",
        "model_version": "m1",
        "inference_latency_ms": 4.0,
    }


def test_bounded_set_forgets_the_oldest() -> None:
    seen = BoundedSet(2)
    assert seen.add("a") and seen.add("b") and not seen.add("a")
    assert seen.add("c")  # evicts "a"
    assert seen.add("a") and len(seen) == 2


def test_predictions_are_deduplicated_and_joined_with_their_inputs() -> None:
    now = [1000.0]
    state = DashboardState(clock=lambda: now[0])
    state.add_raw("raw:0:1", {"Contract": "Month-to-month", "InternetService": "Fiber optic"})
    state.add_raw("raw:0:2", {"Contract": "Two year", "InternetService": "DSL"})

    assert state.add_prediction("raw:0:1", prediction("0001-AAAAA", 0.9))
    assert not state.add_prediction("raw:0:1", prediction("0001-AAAAA", 0.9))  # replay
    assert state.add_prediction("raw:0:2", prediction("0002-BBBBB", 0.1))
    # Its input arrives after the prediction (another partition's fetch): joined later.
    assert state.add_prediction("raw:1:7", prediction("0003-CCCCC", 0.7))
    state.add_raw("raw:1:7", {"Contract": "Month-to-month", "InternetService": "DSL"})
    state.resolve_pending()
    # An input never seen: counted as unknown once JOIN_WAIT_S has passed.
    assert state.add_prediction("raw:2:9", prediction("0004-DDDDD", 0.2))
    state.resolve_pending()
    now[0] += JOIN_WAIT_S + 0.1
    state.resolve_pending()

    snap = state.snapshot()
    assert snap["totals"]["predictions"] == 4
    assert snap["totals"]["duplicates_skipped"] == 1
    assert snap["totals"]["churners"] == 2
    assert snap["by_contract"] == {
        "Month-to-month": {"count": 2, "churn": 2, "churn_rate": 1.0},
        "Two year": {"count": 1, "churn": 0, "churn_rate": 0.0},
        "unknown": {"count": 1, "churn": 0, "churn_rate": 0.0},
    }
    assert snap["by_internet_service"]["DSL"] == {"count": 2, "churn": 1, "churn_rate": 0.5}
    top = snap["top_risk"]
    order = [r["customerID"] for r in top]
    assert order == ["0001-AAAAA", "0003-CCCCC", "0004-DDDDD", "0002-BBBBB"]
    assert top[1]["Contract"] == "Month-to-month"  # filled in when the input arrived
    assert top[2]["Contract"] is None
    assert snap["latency_ms"]["end_to_end"]["p50"] == pytest.approx(250.0)
    assert snap["latency_ms"]["inference"]["p99"] == pytest.approx(4.0)
    assert snap["models"] == {"m1": 4}


def test_without_inputs_segments_are_unknown_at_once() -> None:
    state = DashboardState(join_inputs=False)
    state.add_prediction("raw:0:1", prediction("0001-AAAAA", 0.9))
    assert state.snapshot()["by_contract"] == {
        "unknown": {"count": 1, "churn": 1, "churn_rate": 1.0}
    }


def test_latest_score_per_customer_and_top_k() -> None:
    state = DashboardState(top_k=2)
    state.add_prediction("r:0:1", prediction("0001-AAAAA", 0.9))
    state.add_prediction("r:0:2", prediction("0002-BBBBB", 0.8))
    state.add_prediction("r:0:3", prediction("0003-CCCCC", 0.7))
    state.add_prediction("r:0:4", prediction("0001-AAAAA", 0.1))  # rescored lower
    top = state.snapshot()["top_risk"]
    assert [(r["customerID"], r["churn_probability"]) for r in top] == [
        ("0002-BBBBB", 0.8),
        ("0003-CCCCC", 0.7),
    ]
    assert state.snapshot()["totals"]["customers"] == 3


def test_the_top_risk_rows_show_the_reasons_header() -> None:
    state = DashboardState(top_k=2)
    reasons = [
        {"feature": "tenure", "value": 1, "contribution": 0.38},
        {"feature": "Contract", "value": "Month-to-month", "contribution": 0.29},
        "not a reason",
    ]
    state.add_prediction("r:0:1", prediction("0001-AAAAA", 0.9), reasons=reasons)
    state.add_prediction("r:0:2", prediction("0002-BBBBB", 0.8))  # scored without reasons
    top = state.snapshot()["top_risk"]
    assert [r["reasons"] for r in top] == [["tenure=1", "Contract=Month-to-month"], []]


def test_dead_letters_by_type_and_code_deduplicated() -> None:
    state = DashboardState()
    assert state.add_dead_letter("r:0:1", {"error_type": "validation_error"}, "not_json")
    assert not state.add_dead_letter("r:0:1", {"error_type": "validation_error"}, "not_json")
    assert state.add_dead_letter("r:0:2", None, None)
    dead = state.snapshot()["dead_letters"]
    assert dead == {
        "total": 2,
        "duplicates_skipped": 1,
        "by_type": {"unknown": 1, "validation_error": 1},
        "by_code": {"not_json": 1, "unknown": 1},
    }


def test_series_throughput_and_rolling_churn_rate() -> None:
    now = [10_000.0]
    state = DashboardState(clock=lambda: now[0])
    for second in range(10):
        for i in range(4):  # 4 per second, half of them churners
            state.add_prediction(f"r:0:{second * 4 + i}", prediction("0001-AAAAA", 0.5, yes=i < 2))
        now[0] += 1.0
    snap = state.snapshot()
    series = snap["series"]
    # From the first message, but at least a minute (and at most SERIES_SECONDS).
    assert len(series["t"]) == len(series["throughput"]) == len(series["churn_rate"]) == 60
    assert series["t"][-1] == 10_010
    assert snap["throughput_now"] == pytest.approx(4.0)  # last 5 complete seconds
    assert series["churn_rate"][-1] == pytest.approx(0.5)
    assert series["churn_rate"][0] is None  # nothing that long ago
    assert snap["last_message_age_s"] == pytest.approx(1.0)
    now[0] += 1000.0
    assert len(state.snapshot()["series"]["t"]) == 300


def test_parse_scorer_metrics_from_a_real_registry() -> None:
    observer = PrometheusScorerObserver()
    observer.on_start(model_version="m9", group_id="g", input_topic="raw")
    observer.set_lags({("raw", 0): 3, ("raw", 1): 4})
    observer.consumed.inc(42)
    drift = DriftObserver(None, observer.registry)
    drift.psi.labels(feature="tenure").set(0.31)
    data = parse_scorer_metrics(generate_latest(observer.registry).decode())

    assert data["lag"] == 7
    assert data["lag_by_partition"] == {"raw[0]": 3, "raw[1]": 4}
    assert data["consumed"] == 42
    assert data["model_version"] == "m9"
    assert data["running"] is True
    assert data["drift_psi"] == {"tenure": 0.31}
    assert parse_scorer_metrics("")["lag"] is None
