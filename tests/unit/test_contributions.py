"""Reason codes: contributions computed from the compiled arrays add up to the model's output.

The whole-dataset check uses the session's real model (the served ensemble); the structure
checks fit each algorithm the compiler knows on a small frame.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnstream.data import load_dataset, read_table, validate_frame
from churnstream.model.compile import compile_pipeline
from churnstream.model.contributions import (
    REASON_FEATURES,
    TOP_REASONS,
    explainer,
    top_reasons,
)
from churnstream.model.features import from_frame
from churnstream.model.pipeline import build_pipeline, churn_probabilities
from churnstream.model.scorer import Scorer
from churnstream.schemas import FEATURE_COLUMNS, TARGET_COLUMN

#: base + sum(contributions) must equal the probability to this (it is ~1e-14 here).
SUM_TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> Scorer:
    return Scorer.load(model_dir)


@pytest.fixture(scope="module")
def customers(dataset_path: Path) -> pd.DataFrame:
    valid, rejects = validate_frame(read_table(dataset_path))
    assert len(rejects) == 0
    return valid


def test_contributions_sum_to_the_probability_on_the_whole_dataset(
    scorer: Scorer, customers: pd.DataFrame
) -> None:
    features = from_frame(customers)
    explained = scorer.explain_features(features)
    # The explanation's probabilities are the model's, bit for bit (compiled and pipeline).
    pipeline = churn_probabilities(scorer.pipeline, customers[list(FEATURE_COLUMNS)])
    assert np.array_equal(explained.probabilities, pipeline)
    assert np.array_equal(explained.probabilities, scorer.predict_features(features))
    assert explained.values.shape == (7043, len(REASON_FEATURES))
    error = np.abs(explained.base + explained.values.sum(axis=1) - explained.probabilities)
    print(f"max |base + sum(contributions) - probability| over 7043 customers: {error.max():.3g}")
    assert error.max() < SUM_TOLERANCE
    assert 0.0 < explained.base < 1.0
    # Every field matters for someone; contributions are not all of one sign.
    assert (explained.values > 0).any(axis=0).sum() > len(FEATURE_COLUMNS) // 2
    assert (explained.values < 0).any()


def test_top_reasons_are_the_largest_positive_contributions_with_the_customer_value(
    scorer: Scorer, customers: pd.DataFrame
) -> None:
    rows = customers.head(300)
    features = from_frame(rows)
    explained = scorer.explain_features(features)
    found = top_reasons(explained, features).rows()
    assert len(found) == 300
    for (_, customer), reasons, values in zip(
        rows.iterrows(), found, explained.values, strict=True
    ):
        expected = sorted((v for v in values if v > 0), reverse=True)[:TOP_REASONS]
        assert [r.contribution for r in reasons] == expected
        for reason in reasons:
            if reason.feature in FEATURE_COLUMNS:
                assert reason.value == customer[reason.feature], reason
        by_name = {r.feature: r for r in reasons}
        if "contract_internet" in by_name:
            assert by_name["contract_internet"].value == (
                f"{customer['Contract']}|{customer['InternetService']}"
            )
    # A high-risk first-month customer: short tenure and a monthly contract lead.
    first = found[0]
    assert {r.feature for r in first[:2]} == {"tenure", "Contract"}
    assert first[1].value == "Month-to-month" or first[0].value == "Month-to-month"


@pytest.mark.parametrize("algorithm", ["logreg", "hgb"])
def test_every_compiled_algorithm_is_explained_exactly(dataset_path: Path, algorithm: str) -> None:
    frame = load_dataset(dataset_path).sample(600, random_state=3)
    valid, _ = validate_frame(frame)
    pipeline = build_pipeline(algorithm)
    if algorithm == "hgb":
        pipeline.set_params(classifier__max_iter=30)  # the shape matters here, not the fit
    pipeline.fit(valid, frame.loc[valid.index, TARGET_COLUMN] == "Yes")
    features = from_frame(valid)
    explained = explainer(compile_pipeline(pipeline))(features)
    assert np.array_equal(explained.probabilities, churn_probabilities(pipeline, valid))
    error = np.abs(explained.base + explained.values.sum(axis=1) - explained.probabilities)
    assert error.max() < SUM_TOLERANCE
    # Model columns folded into customer fields: no reason is left for log_tenure/auto_pay.
    assert "log_tenure" not in REASON_FEATURES and "auto_pay" not in REASON_FEATURES
    # One row at a time gives the same numbers (the trees sum differently by batch size).
    one = explainer(compile_pipeline(pipeline))(features.take(slice(0, 1)))
    assert np.allclose(one.values[0], explained.values[0], rtol=0, atol=1e-12)


def test_an_explainer_survives_pickling_with_the_same_reasons(
    scorer: Scorer, customers: pd.DataFrame
) -> None:
    # Spark broadcasts the explainer: its lookup tables must work in the unpickled copy.
    assert scorer.compiled is not None
    original = explainer(scorer.compiled)
    copy = pickle.loads(pickle.dumps(original))  # noqa: S301 - our own object
    features = from_frame(customers.head(500))
    want, got = original(features), copy(features)
    assert np.array_equal(got.probabilities.view(np.int64), want.probabilities.view(np.int64))
    assert np.array_equal(got.values.view(np.int64), want.values.view(np.int64))
    assert got.base == want.base
    assert top_reasons(got, features).rows() == top_reasons(want, features).rows()


def test_a_model_that_is_not_compiled_gives_no_reasons(scorer: Scorer) -> None:
    clone = Scorer(scorer.pipeline, scorer.metadata, scorer.path)  # enable_compiled not run
    assert not clone.explains


def test_large_batches_are_explained_in_chunks_with_the_same_reasons(
    scorer: Scorer, customers: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Explaining a whole file in one call took over 20 GB for 2M rows; chunks bound it.
    from churnstream.scoring import reasons

    features = from_frame(customers)
    whole = reasons.reasons_of(scorer.explain_features, features)
    calls: list[int] = []

    def counted(batch: object) -> object:
        calls.append(len(batch))  # type: ignore[arg-type]
        return scorer.explain_features(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(reasons, "EXPLAIN_CHUNK_ROWS", 1_000)
    chunked = reasons.reasons_of(counted, features)  # type: ignore[arg-type]
    assert calls == [1_000] * 7 + [43]
    assert whole is not None and chunked is not None
    assert np.array_equal(whole.features, chunked.features)
    assert np.allclose(whole.contributions, chunked.contributions, rtol=0, atol=1e-12)
    assert whole.values.keys() == chunked.values.keys()
