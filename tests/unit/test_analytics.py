"""WindowStats: hand-made batches, answers worked out by hand in the comments."""

from __future__ import annotations

import json
import math
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnstream.exceptions import DataError
from churnstream.windows import bounded, drift, fields
from churnstream.windows.reservoir import Reservoir
from churnstream.windows.stats import WindowStats

T0 = datetime(2026, 11, 23, 3, 15, 0, tzinfo=UTC)
COLUMNS = [
    "customerID",
    "Contract",
    "InternetService",
    "PaymentMethod",
    "churn_probability",
    "prediction",
    "inference_latency_ms",
    "e2e_latency_ms",
    "source_topic",
    "source_partition",
    "source_offset",
]


def row(
    customer: str,
    offset: int,
    probability: float = 0.5,
    *,
    contract: str = "Month-to-month",
    internet: str = "DSL",
    payment: str = "Mailed check",
    inference_ms: float = 5.0,
    e2e_ms: float = 10.0,
    topic: str = "telco.customers",
    partition: int = 0,
) -> dict[str, Any]:
    return {
        "customerID": customer,
        "Contract": contract,
        "InternetService": internet,
        "PaymentMethod": payment,
        "churn_probability": probability,
        "prediction": "Yes" if probability >= 0.5 else "No",
        "inference_latency_ms": inference_ms,
        "e2e_latency_ms": e2e_ms,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
    }


def batch(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)


def summarize(stats: WindowStats, *, seconds: float = 10.0, top_k: int = 5) -> dict[str, Any]:
    return stats.summary(
        T0, T0 + timedelta(seconds=seconds), top_k=top_k, model_version="m1", mode="batch"
    )


def test_counts_and_overall_churn() -> None:
    stats = WindowStats()
    stats.add_consumed(6)
    added = stats.add_scored(
        batch(row("A", 1, 0.9), row("B", 2, 0.7), row("C", 3, 0.2), row("D", 4, 0.1))
    )
    summary = summarize(stats)

    assert added == 4
    assert summary["counts"]["consumed"] == 6
    assert summary["counts"]["scored"] == 4
    assert summary["counts"]["duplicates_skipped"] == 0
    assert summary["churn"]["predicted_churn_count"] == 2
    assert summary["churn"]["predicted_churn_rate"] == pytest.approx(0.5)
    # (0.9 + 0.7 + 0.2 + 0.1) / 4
    assert summary["churn"]["mean_probability"] == pytest.approx(0.475)
    assert summary["model_version"] == "m1"
    assert summary["schema_version"] == fields.SUMMARY_SCHEMA_VERSION


def test_rates_by_group_accumulate_across_batches_and_are_sorted() -> None:
    stats = WindowStats()
    stats.add_scored(
        batch(
            row("A", 1, 0.9, contract="Two year", internet="Fiber optic"),
            row("B", 2, 0.2, contract="Month-to-month", internet="Fiber optic"),
        )
    )
    stats.add_scored(
        batch(
            row("C", 3, 0.6, contract="Month-to-month", internet="No"),
            row("D", 4, 0.8, contract="Month-to-month", payment="Electronic check"),
            row("E", 5, 0.3, contract="One year"),
        )
    )
    summary = summarize(stats)

    by_contract = summary["by_contract"]
    assert list(by_contract) == ["Month-to-month", "One year", "Two year"]
    # Month-to-month: B 0.2 (No), C 0.6 (Yes), D 0.8 (Yes)
    assert by_contract["Month-to-month"]["count"] == 3
    assert by_contract["Month-to-month"]["churn_count"] == 2
    assert by_contract["Month-to-month"]["churn_rate"] == pytest.approx(2 / 3)
    assert by_contract["Month-to-month"]["mean_probability"] == pytest.approx(1.6 / 3)
    assert by_contract["One year"] == {
        "count": 1,
        "churn_count": 0,
        "churn_rate": 0.0,
        "mean_probability": pytest.approx(0.3),
    }
    assert by_contract["Two year"]["churn_rate"] == pytest.approx(1.0)

    by_internet = summary["by_internet_service"]
    assert list(by_internet) == ["DSL", "Fiber optic", "No"]
    assert by_internet["Fiber optic"]["count"] == 2
    assert by_internet["Fiber optic"]["churn_rate"] == pytest.approx(0.5)
    assert by_internet["DSL"]["count"] == 2  # D, E
    assert by_internet["DSL"]["churn_count"] == 1

    by_payment = summary["by_payment_method"]
    assert list(by_payment) == ["Electronic check", "Mailed check"]
    assert by_payment["Mailed check"]["count"] == 4
    assert by_payment["Electronic check"]["churn_count"] == 1


def test_missing_group_value_is_reported_as_unknown() -> None:
    stats = WindowStats()
    frame = batch(row("A", 1, 0.9), row("B", 2, 0.1))
    frame.loc[0, "Contract"] = None
    stats.add_scored(frame)
    summary = summarize(stats)

    assert summary["by_contract"]["unknown"]["count"] == 1
    assert summary["by_contract"]["Month-to-month"]["count"] == 1


def test_replayed_key_in_a_later_batch_changes_nothing_but_duplicates_skipped() -> None:
    first = batch(row("A", 1, 0.9), row("B", 2, 0.1, contract="One year"))
    # A crash replays offset 2 with a different score: it must not be counted again.
    replay = batch(row("B", 2, 0.95, contract="One year", e2e_ms=999.0), row("C", 3, 0.4))

    clean = WindowStats()
    clean.add_scored(first)
    clean.add_scored(batch(row("C", 3, 0.4)))
    with_replay = WindowStats()
    with_replay.add_scored(first)
    added = with_replay.add_scored(replay)

    expected, got = summarize(clean), summarize(with_replay)
    assert added == 1
    assert got["counts"]["duplicates_skipped"] == 1
    assert expected["counts"]["duplicates_skipped"] == 0
    assert got["counts"]["scored"] == 3
    for key in ("churn", "by_contract", "top_risk", "latency_ms", "risk_histogram"):
        assert got[key] == expected[key], key


def test_duplicate_key_within_one_batch_is_counted_once() -> None:
    stats = WindowStats()
    added = stats.add_scored(batch(row("A", 7, 0.9), row("A", 7, 0.9), row("B", 8, 0.1)))
    summary = summarize(stats)

    assert added == 2
    assert summary["counts"]["scored"] == 2
    assert summary["counts"]["duplicates_skipped"] == 1
    assert summary["churn"]["predicted_churn_count"] == 1
    assert sum(summary["risk_histogram"]["counts"]) == 2


def test_same_offset_on_another_partition_or_topic_is_not_a_duplicate() -> None:
    stats = WindowStats()
    stats.add_scored(batch(row("A", 1, partition=0)))
    added = stats.add_scored(
        batch(row("B", 1, partition=1), row("C", 1, partition=0, topic="other.topic"))
    )

    assert added == 2
    # Same partition and offset on two topics in one batch: two different messages.
    assert stats.add_scored(batch(row("D", 9), row("E", 9, topic="other.topic"))) == 2
    assert summarize(stats)["counts"]["duplicates_skipped"] == 0


def test_missing_probability_counts_the_message_but_not_its_score() -> None:
    stats = WindowStats()
    stats.add_scored(batch(row("A", 1, 0.8), row("B", 2, math.nan)))
    summary = summarize(stats)

    json.dumps(summary, allow_nan=False)
    assert summary["counts"]["scored"] == 2
    assert summary["churn"]["mean_probability"] == pytest.approx(0.4)
    assert summary["by_contract"]["Month-to-month"]["mean_probability"] == pytest.approx(0.4)
    assert sum(summary["risk_histogram"]["counts"]) == 1


def test_top_k_is_ordered_by_probability_with_ties_broken_by_customer_id() -> None:
    stats = WindowStats()
    stats.add_scored(
        batch(
            row("D", 1, 0.40),
            row("B", 2, 0.95, contract="Two year", internet="No", payment="Credit card"),
            row("C", 3, 0.70),
        )
    )
    stats.add_scored(batch(row("A", 4, 0.70), row("E", 5, 0.10)))
    top = summarize(stats, top_k=3)["top_risk"]

    assert [(r["customerID"], r["churn_probability"]) for r in top] == [
        ("B", 0.95),
        ("A", 0.70),
        ("C", 0.70),
    ]
    assert top[0] == {
        "customerID": "B",
        "churn_probability": 0.95,
        "Contract": "Two year",
        "InternetService": "No",
        "PaymentMethod": "Credit card",
    }
    assert summarize(stats, top_k=0)["top_risk"] == []
    assert len(summarize(stats, top_k=50)["top_risk"]) == 5


def test_top_k_keeps_each_customers_latest_score() -> None:
    stats = WindowStats()
    stats.add_scored(batch(row("A", 1, 0.99), row("B", 2, 0.80), row("C", 3, 0.30)))
    # A's newer score is low, so B leads; within the last batch C's last row (0.50) wins.
    stats.add_scored(batch(row("A", 4, 0.05, contract="One year"), row("C", 5, 0.60)))
    stats.add_scored(batch(row("C", 6, 0.90), row("D", 7, 0.10), row("C", 8, 0.50)))
    top = summarize(stats, top_k=4)["top_risk"]

    assert [(r["customerID"], r["churn_probability"]) for r in top] == [
        ("B", 0.80),
        ("C", 0.50),
        ("D", 0.10),
        ("A", 0.05),
    ]
    assert top[3]["Contract"] == "One year"
    # Counts stay per message: all 8 scored rows count.
    assert summarize(stats)["counts"]["scored"] == 8


def test_latency_percentiles_skip_nan() -> None:
    stats = WindowStats()
    e2e = [30.0, 10.0, math.nan, 50.0, 20.0, 40.0]
    stats.add_scored(
        batch(*(row(f"C{i}", i, e2e_ms=ms, inference_ms=4.0) for i, ms in enumerate(e2e[:3])))
    )
    stats.add_scored(
        batch(*(row(f"C{i}", i, e2e_ms=ms, inference_ms=8.0) for i, ms in enumerate(e2e[3:], 3)))
    )
    latency = summarize(stats)["latency_ms"]

    # Sorted 10..50, linear interpolation: p95 at rank 3.8 -> 48, p99 at rank 3.96 -> 49.6.
    assert latency["end_to_end"] == {
        "count": 5,
        "p50": pytest.approx(30.0),
        "p95": pytest.approx(48.0),
        "p99": pytest.approx(49.6),
        "max": 50.0,
        "mean": pytest.approx(30.0),
        "sampled": False,
    }
    # Per message: three at 4 ms, three at 8 ms.
    assert latency["inference"]["count"] == 6
    assert latency["inference"]["p50"] == pytest.approx(6.0)
    assert latency["inference"]["mean"] == pytest.approx(6.0)
    assert latency["inference"]["max"] == 8.0


def test_latency_samples_are_capped_but_count_max_and_mean_stay_exact() -> None:
    stats = WindowStats(max_latency_samples=10)
    values = np.arange(1, 1001, dtype=float)
    for start in range(0, 1000, 100):
        chunk = values[start : start + 100]
        stats.add_scored(batch(*(row(f"C{int(v)}", int(v), e2e_ms=float(v)) for v in chunk)))
    e2e = summarize(stats)["latency_ms"]["end_to_end"]

    assert e2e["count"] == 1000
    assert e2e["sampled"] is True
    assert e2e["max"] == 1000.0
    assert e2e["mean"] == pytest.approx(500.5)
    # The sample is spread over the whole stream, not just the first ten values.
    assert e2e["p99"] > 100.0
    assert len(stats._end_to_end.values()) == 10


def test_empty_window_gives_zeros_and_nulls() -> None:
    summary = WindowStats().summary(T0, T0, top_k=5, model_version=None, mode="streaming")

    json.dumps(summary, allow_nan=False)
    assert summary["window"] == {
        "started_at": "2026-11-23T03:15:00.000Z",
        "ended_at": "2026-11-23T03:15:00.000Z",
        "duration_s": 0.0,
        "mode": "streaming",
    }
    assert summary["counts"] == {
        "consumed": 0,
        "scored": 0,
        "duplicates_skipped": 0,
        "dead_lettered": 0,
        "dead_letters_by_type": {
            "inference_error": 0,
            "processing_error": 0,
            "unknown_error": 0,
            "validation_error": 0,
        },
        "dead_letters_by_code": {},
    }
    assert summary["churn"] == {
        "predicted_churn_count": 0,
        "predicted_churn_rate": None,
        "mean_probability": None,
    }
    assert summary["by_contract"] == summary["by_payment_method"] == {}
    assert summary["top_risk"] == []
    assert summary["latency_ms"]["inference"]["p50"] is None
    assert summary["latency_ms"]["end_to_end"]["max"] is None
    assert summary["throughput"] == {"messages_per_s": None, "scored_per_s": None}
    assert summary["batch_sizes"] == {"count": 0, "mean": None, "p50": None, "max": None}
    assert summary["risk_histogram"]["counts"] == [0] * 10


def test_empty_batch_and_all_nan_latencies_are_harmless() -> None:
    stats = WindowStats()
    assert stats.add_scored(batch()) == 0
    stats.add_scored(batch(row("A", 1, e2e_ms=math.nan)))
    summary = summarize(stats)

    assert summary["latency_ms"]["end_to_end"]["count"] == 0
    assert summary["latency_ms"]["end_to_end"]["p99"] is None
    json.dumps(summary, allow_nan=False)


def test_dead_letter_counts_by_type_and_code() -> None:
    stats = WindowStats()
    stats.add_dead_letters({"validation_error": 2, "inference_error": 1})
    stats.add_dead_letters({"validation_error": 3})
    stats.add_dead_letter_codes({"not_json": 1, "schema": 4})
    stats.add_dead_letter_codes({"not_json": 1})
    counts = summarize(stats)["counts"]

    assert counts["dead_lettered"] == 6  # codes refine types; they do not add to the total
    assert counts["dead_letters_by_type"] == {
        "inference_error": 1,
        "processing_error": 0,
        "unknown_error": 0,
        "validation_error": 5,
    }
    assert counts["dead_letters_by_code"] == {"not_json": 2, "schema": 4}


def test_risk_histogram_uses_ten_half_open_bins() -> None:
    stats = WindowStats()
    probabilities = [0.0, 0.05, 0.1, 0.3, 0.7, 0.95, 1.0]
    stats.add_scored(batch(*(row(f"C{i}", i, p) for i, p in enumerate(probabilities))))
    histogram = summarize(stats)["risk_histogram"]

    assert histogram["bin_edges"] == pytest.approx([i / 10 for i in range(11)])
    # 0.3 and 0.7 land in [0.3, 0.4) and [0.7, 0.8); 1.0 joins the last bin.
    assert histogram["counts"] == [2, 1, 0, 1, 0, 0, 0, 1, 0, 2]


def test_batch_sizes_and_throughput() -> None:
    stats = WindowStats()
    for size in (10, 20, 60):
        stats.add_batch_size(size)
    stats.add_consumed(100)
    stats.add_scored(batch(row("A", 1), row("B", 2)))
    summary = summarize(stats, seconds=4.0)

    assert summary["batch_sizes"] == {"count": 3, "mean": 30.0, "p50": 20.0, "max": 60}
    assert summary["throughput"] == {"messages_per_s": 25.0, "scored_per_s": 0.5}
    assert summary["window"]["duration_s"] == 4.0


def test_window_times_are_converted_to_utc_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2026, 11, 23, 5, 15, 0, 250_000, tzinfo=plus_two)
    summary = WindowStats().summary(
        start, start + timedelta(seconds=1), top_k=1, model_version=None, mode="batch"
    )

    assert summary["window"]["started_at"] == "2026-11-23T03:15:00.250Z"
    assert summary["window"]["ended_at"] == "2026-11-23T03:15:01.250Z"


def test_populated_summary_is_plain_json() -> None:
    stats = WindowStats()
    stats.add_consumed(2)
    stats.add_batch_size(2)
    stats.add_scored(batch(row("A", 1, 0.9), row("B", 2, 0.1)))
    summary = summarize(stats)

    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert set(summary) == {*fields.SUMMARY_KEYS, "latency_histogram"}  # no drift asked


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.summary(T0.replace(tzinfo=None), T0, top_k=1, model_version=None, mode="batch"),
        lambda s: s.summary(
            T0, T0 - timedelta(seconds=1), top_k=1, model_version=None, mode="batch"
        ),
        lambda s: s.summary(T0, T0, top_k=-1, model_version=None, mode="batch"),
        lambda s: s.add_consumed(-1),
        lambda s: s.add_dead_letters({"validation_error": -2}),
    ],
    ids=["naive", "reversed", "negative-top-k", "negative-consumed", "negative-dead"],
)
def test_invalid_arguments_raise_value_error(call: Any) -> None:
    with pytest.raises(ValueError):
        call(WindowStats())


def test_batch_missing_a_column_raises_data_error() -> None:
    with pytest.raises(DataError, match="source_offset"):
        WindowStats().add_scored(batch(row("A", 1)).drop(columns=["source_offset"]))


def test_the_most_frequent_reasons_among_predicted_churners() -> None:
    from churnstream.reports.markdown import render_markdown

    stats = WindowStats()
    plain = summarize(stats)
    assert "reasons" not in plain  # no reasons, no block
    with_reasons = batch(row("A", 1, 0.9), row("B", 2, 0.7), row("C", 3, 0.2), row("D", 4, 0.8))
    with_reasons["reasons"] = [
        "tenure,Contract,TotalCharges",
        "Contract,tenure",
        "PaymentMethod,Contract",  # not a predicted churner: not counted
        "",  # a churner nothing pushed up
    ]
    stats.add_scored(with_reasons)
    stats.add_scored(batch(row("E", 5, 0.95)))  # a batch scored without reasons
    stats.add_scored(with_reasons.iloc[:1])  # a replay: counted once
    summary = summarize(stats)
    assert summary["reasons"] == {
        "predicted_churners": 3,
        "top": [
            {"feature": "Contract", "count": 2, "share": 2 / 3},
            {"feature": "tenure", "count": 2, "share": 2 / 3},
            {"feature": "TotalCharges", "count": 1, "share": 1 / 3},
        ],
    }
    text = render_markdown(summary, {})
    assert "## Why customers are predicted to churn" in text
    assert "| Contract | 2 | 0.667 |" in text


def scored_columns(start: int, n: int, customers: int, rng: np.random.Generator) -> dict[str, Any]:
    """A scored batch as the scorer hands it over (numpy columns): offsets start..start+n."""
    ids = rng.integers(0, customers, n)
    return {
        "customerID": np.array([f"C{i:07d}" for i in ids], dtype=object),
        "Contract": np.array(["Month-to-month"] * n, dtype=object),
        "InternetService": np.array(["Fiber optic"] * n, dtype=object),
        "PaymentMethod": np.array(["Electronic check"] * n, dtype=object),
        "tenure": rng.integers(0, 73, n),
        "MonthlyCharges": rng.uniform(18, 120, n),  # any float: distinct values are bounded too
        "churn_probability": rng.uniform(0, 1, n),
        "prediction": np.where(rng.uniform(0, 1, n) > 0.7, "Yes", "No").astype(object),
        "inference_latency_ms": np.full(n, 0.5),
        "e2e_latency_ms": rng.uniform(0, 50, n),
        "source_topic": np.array(["raw"] * n, dtype=object),
        "source_partition": np.zeros(n, dtype=np.int64),
        "source_offset": np.arange(start, start + n, dtype=np.int64),
    }


def test_a_window_does_not_grow_in_bytes_with_the_number_of_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Bytes, not element counts: memory kept per event anywhere in the window shows here.
    # Small bounds, so that the first 10,000 events reach them; 50,000 more must add less
    # than 2 bytes per event (what is left is the saw-tooth of the bounded buffers).
    monkeypatch.setattr(bounded, "MAX_SEEN_OFFSETS", 2_000)
    monkeypatch.setattr(drift, "MAX_DISTINCT_VALUES", 3_000)
    monkeypatch.setattr(drift, "_COMPACT_AT", 5_000)
    stats = WindowStats(max_latency_samples=5_000)
    rng = np.random.default_rng(11)
    batch_rows = 500
    batches = [scored_columns(0, batch_rows, 3_000, rng) for _ in range(3)]

    def feed(first: int, count: int) -> None:
        for number in range(first, first + count):
            columns = dict(batches[number % 3])
            columns["source_offset"] = np.arange(number * batch_rows, (number + 1) * batch_rows)
            stats.add_scored(columns)
            stats.add_batch_size(batch_rows)

    tracemalloc.start()
    try:
        feed(0, 20)
        warm, _ = tracemalloc.get_traced_memory()
        feed(20, 100)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current - warm < 2 * 100 * batch_rows, (warm, current)
    assert summarize(stats)["latency_ms"]["end_to_end"]["sampled"] is True


def test_a_latency_sample_is_never_copied_as_it_fills() -> None:
    # The sample is one array of its capacity: filling it up and sampling past it allocate
    # no second array of that size (joining chunks did, and the allocator kept the memory).
    capacity = 50_000
    reservoir = Reservoir("latency", capacity, np.random.default_rng(0))
    values = np.random.default_rng(1).uniform(0, 50, 1_000)
    tracemalloc.start()
    try:
        reservoir.add(values)
        first, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(200):
            reservoir.add(values)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reservoir.sampled and reservoir.stored == capacity
    assert peak - first < 8 * capacity // 4, (first, peak)
    assert current - first < 8 * 1_000, (first, current)


def test_a_window_over_many_events_keeps_bounded_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small bounds, so that a few hundred thousand events cross each of them many times.
    monkeypatch.setattr(bounded, "MAX_SEEN_OFFSETS", 2_000)
    monkeypatch.setattr(bounded, "MAX_LATEST_CUSTOMERS", 5_000)
    monkeypatch.setattr(drift, "MAX_DISTINCT_VALUES", 3_000)
    stats = WindowStats(max_latency_samples=1_000)
    rng = np.random.default_rng(7)
    batch_rows, stored = 2_000, []
    for number in range(100):  # 200,000 events, every one a new offset, most new customers
        stats.add_scored(scored_columns(number * batch_rows, batch_rows, 10**6, rng))
        stats.add_batch_size(batch_rows)
        if number % 20 == 19:
            stats.summary(
                datetime.now(UTC), datetime.now(UTC), top_k=5, model_version="v", mode="b"
            )
            stored.append(stats.stored_elements())
    # Within the same bound after 40,000 events as after 200,000: offsets, customers,
    # latency and batch-size samples, distinct values and their counts, the merge buffer.
    bound = 2_000 + 5_000 + 3 * 1_000 + 2 * (2 * 3_000 + drift._COMPACT_AT)
    assert all(n <= bound for n in stored), stored
    assert len(stats._latest) <= 5_000 and all(len(s) <= 2_000 for s in stats._seen.values())
    result = summarize(stats, top_k=3)
    assert result["counts"]["scored"] == 200_000
    # A replay of already-counted offsets (older than the kept set) is still skipped.
    assert stats.add_scored(scored_columns(1_000, 500, 10, rng)) == 0
    assert stats.add_scored(scored_columns(199_999, 2, 10, rng)) == 1
    top = result["top_risk"]
    assert [r["churn_probability"] for r in top] == sorted(
        (r["churn_probability"] for r in top), reverse=True
    )
    assert top[0]["churn_probability"] > 0.999
