"""Drift: PSI, binning like the training profile, the summary block, shifted vs normal data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnstream.data import load_dataset
from churnstream.model.features import bin_proportions, distribution_profile
from churnstream.windows.drift import (
    BASIS_HELD_OUT,
    BASIS_TRAINING,
    DriftReference,
    FeatureAccumulator,
    ValueCounts,
    drift_block,
    drift_warnings,
    psi,
    weighted_bin_proportions,
)
from churnstream.windows.stats import WindowStats

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def metadata_for(frame: pd.DataFrame) -> dict[str, Any]:
    """A model metadata dict as training writes it: profile, test confusion matrix."""
    return {
        "version": "m-test",
        "profile": distribution_profile(frame),
        "data": {"churn_rate": 0.2654},
        "metrics": {"test": {"confusion_matrix": [[842, 193], [110, 264]]}},
    }


@pytest.fixture(scope="module")
def dataset(dataset_path: Path) -> pd.DataFrame:
    return load_dataset(dataset_path)


def scored(frame: pd.DataFrame, *, start: int = 0) -> pd.DataFrame:
    """The dataset as the scorer's ``BatchResult.scored`` frames look (fake probabilities)."""
    out = frame.loc[
        :,
        ["customerID", "Contract", "InternetService", "PaymentMethod", "tenure", "MonthlyCharges"],
    ].copy()
    probability = np.clip(1.0 - out["tenure"].to_numpy() / 72.0, 0, 1) * 0.6
    out["churn_probability"] = probability
    out["prediction"] = frame["Churn"].to_numpy()  # a perfect model, for the churn rate
    out["inference_latency_ms"] = 3.0
    out["e2e_latency_ms"] = 40.0
    out["source_topic"] = "raw"
    out["source_partition"] = 0
    out["source_offset"] = np.arange(start, start + len(out))
    return out.reset_index(drop=True)


def test_psi_basics() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(
        0.4 * np.log(0.9 / 0.5) + (-0.4) * np.log(0.1 / 0.5)
    )
    assert np.isfinite(psi([0.5, 0.5], [1.0, 0.0]))  # an empty bin is floored, not infinite
    assert psi([], []) == 0.0
    with pytest.raises(ValueError, match="shape"):
        psi([0.5, 0.5], [1.0])


def test_weighted_binning_matches_the_training_profile_rule() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(-5, 80, size=2000).astype(float)  # some below/above the edges
    edges = [0.0, 2.0, 6.0, 12.0, 29.0, 72.0]
    distinct, counts = np.unique(values, return_counts=True)

    assert weighted_bin_proportions(distinct, counts, edges) == pytest.approx(
        bin_proportions(values, edges)
    )
    assert weighted_bin_proportions([], [], edges) == [0.0] * 5


def test_value_counts_merge_chunks_exactly() -> None:
    counts = ValueCounts()
    rng = np.random.default_rng(2)
    chunks = [rng.integers(0, 73, size=500).astype(float) for _ in range(300)]
    for chunk in chunks:
        counts.add(chunk)
    counts.add(np.array([np.nan, np.inf]))  # ignored
    values, weights = counts.pairs()
    everything = np.concatenate(chunks)
    expected_values, expected_counts = np.unique(everything, return_counts=True)

    assert values.tolist() == expected_values.tolist()
    assert weights.tolist() == expected_counts.astype(float).tolist()


def test_reference_from_metadata() -> None:
    frame = pd.DataFrame(
        {
            "tenure": [1, 2, 3, 40],
            "MonthlyCharges": [20.0, 30.0, 80.0, 99.0],
            "Contract": ["One year"] * 4,
            "InternetService": ["DSL"] * 4,
            "PaymentMethod": ["Mailed check"] * 4,
        }
    )
    reference = DriftReference.from_metadata(metadata_for(frame), psi_threshold=0.3)
    assert reference is not None
    assert reference.expected_churn_rate == pytest.approx((193 + 264) / 1409)
    assert reference.churn_rate_basis == BASIS_HELD_OUT
    assert reference.psi_threshold == 0.3
    assert set(reference.numeric) == {"tenure", "MonthlyCharges"}
    assert reference.categorical["Contract"]["One year"] == 1.0

    older = {**metadata_for(frame), "metrics": {}}
    fallback = DriftReference.from_metadata(older)
    assert fallback is not None
    assert (fallback.expected_churn_rate, fallback.churn_rate_basis) == (0.2654, BASIS_TRAINING)
    assert DriftReference.from_metadata({"version": "old"}) is None


def test_the_dataset_itself_does_not_drift(dataset: pd.DataFrame) -> None:
    accumulator = FeatureAccumulator()
    for start in range(0, len(dataset), 1000):
        accumulator.add(scored(dataset.iloc[start : start + 1000], start=start))
    block = drift_block(accumulator, metadata_for(dataset))

    assert block["evaluated"] and block["samples"] == len(dataset)
    assert block["max_psi"] < 0.01
    assert not block["drifted"] and block["drifted_features"] == []
    assert drift_warnings(block) == []
    assert set(block["features"]) == {
        "tenure",
        "MonthlyCharges",
        "Contract",
        "InternetService",
        "PaymentMethod",
    }


def test_a_shifted_stream_drifts(dataset: pd.DataFrame) -> None:
    shifted = dataset[
        (dataset["Contract"] == "Month-to-month")
        & (dataset["InternetService"] == "Fiber optic")
        & (dataset["tenure"] < 6)
    ]
    assert len(shifted) > 200
    accumulator = FeatureAccumulator()
    accumulator.add(scored(shifted))
    block = drift_block(accumulator, metadata_for(dataset))

    assert block["drifted"]
    for feature in ("tenure", "MonthlyCharges", "Contract", "InternetService"):
        assert block["features"][feature]["psi"] > 0.2, feature
        assert block["features"][feature]["drifted"], feature
    assert block["churn_rate"]["observed"] > 0.5  # against about 0.32 expected
    assert block["churn_rate"]["drifted"]
    lines = drift_warnings(block)
    assert any(line.startswith("drift: PSI of tenure is") for line in lines)
    assert any("predicted churn rate" in line for line in lines)


def test_a_small_window_is_reported_but_not_flagged(dataset: pd.DataFrame) -> None:
    few = dataset[dataset["tenure"] < 3].head(50)
    accumulator = FeatureAccumulator()
    accumulator.add(scored(few))
    reference = DriftReference.from_metadata(metadata_for(dataset), min_samples=200)
    assert reference is not None
    block = drift_block(accumulator, reference)

    assert not block["evaluated"] and not block["drifted"]
    assert block["features"]["tenure"]["psi"] > 1.0  # computed all the same
    assert drift_warnings(block) == []


def test_an_empty_window() -> None:
    block = drift_block(
        FeatureAccumulator(),
        metadata_for(
            pd.DataFrame(
                {
                    "tenure": [1, 5],
                    "MonthlyCharges": [20.0, 30.0],
                    "Contract": ["One year"] * 2,
                    "InternetService": ["DSL"] * 2,
                    "PaymentMethod": ["Mailed check"] * 2,
                }
            )
        ),
    )
    assert block["samples"] == 0 and block["max_psi"] is None and not block["drifted"]
    assert block["churn_rate"]["observed"] is None
    assert drift_block(FeatureAccumulator(), {"version": "x"})["available"] is False


def test_window_summary_has_the_same_drift_block_with_duplicates_removed(
    dataset: pd.DataFrame,
) -> None:
    reference = DriftReference.from_metadata(metadata_for(dataset))
    assert reference is not None
    sample = dataset.head(3000)
    stats = WindowStats()
    for start in range(0, len(sample), 1000):
        chunk = scored(sample.iloc[start : start + 1000], start=start)
        stats.add_scored(chunk)
        stats.add_scored(chunk.head(100))  # a replay: must not count twice
    summary = stats.summary(
        T0, T0 + timedelta(seconds=60), top_k=3, model_version="m", mode="batch", drift=reference
    )
    accumulator = FeatureAccumulator()
    accumulator.add(scored(sample))
    expected = drift_block(accumulator, reference)

    assert summary["counts"]["duplicates_skipped"] == 300
    got = summary["drift"]
    assert got["samples"] == 3000
    for feature, values in expected["features"].items():
        assert got["features"][feature]["psi"] == pytest.approx(values["psi"]), feature
        assert got["features"][feature]["observed"] == pytest.approx(values["observed"])
    assert got["churn_rate"]["observed"] == pytest.approx(expected["churn_rate"]["observed"])
