"""Pure feature engineering, drift-profile helpers and the feature schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnstream.model.export import synthetic_features
from churnstream.model.feature_batch import (
    CONTRACT_INTERNET_LEVELS,
    ENGINEERED_CATEGORICAL,
    ENGINEERED_NUMERIC,
    MODEL_COLUMNS,
)
from churnstream.model.features import (
    add_features,
    bin_proportions,
    distribution_profile,
    feature_matrix,
    feature_schema,
    from_frame,
    level_proportions,
    quantile_edges,
    to_frame,
)
from churnstream.schemas import CATEGORICAL_LEVELS, FEATURE_COLUMNS, ID_COLUMN, TARGET_COLUMN

BASE = {
    ID_COLUMN: "0001-ABCDE",
    "gender": "Female",
    "SeniorCitizen": 0,
    "Partner": "Yes",
    "Dependents": "No",
    "tenure": 10,
    "PhoneService": "Yes",
    "MultipleLines": "No",
    "InternetService": "Fiber optic",
    "OnlineSecurity": "Yes",
    "OnlineBackup": "No",
    "DeviceProtection": "Yes",
    "TechSupport": "No internet service",
    "StreamingTV": "Yes",
    "StreamingMovies": "No",
    "Contract": "Month-to-month",
    "PaperlessBilling": "Yes",
    "PaymentMethod": "Credit card (automatic)",
    "MonthlyCharges": 60.0,
    "TotalCharges": 500.0,
    TARGET_COLUMN: "Yes",
}


def rows(*changes: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame([{**BASE, **change} for change in changes])


def test_engineered_values_by_hand() -> None:
    out = add_features(rows({}))
    row = out.iloc[0]
    assert row["log_tenure"] == pytest.approx(np.log(11))
    assert row["avg_monthly_charge"] == pytest.approx(50.0)  # 500 / 10
    assert row["charge_ratio"] == pytest.approx(1.2)  # 60 / 50: the price went up
    assert row["n_addons"] == 3  # OnlineSecurity, DeviceProtection, StreamingTV
    assert row["auto_pay"] == 1.0
    assert row["contract_internet"] == "Month-to-month|Fiber optic"


def test_new_customer_with_zero_tenure_and_charges() -> None:
    row = add_features(rows({"tenure": 0, "TotalCharges": 0.0, "MonthlyCharges": 20.0})).iloc[0]
    assert row["log_tenure"] == 0.0
    assert row["avg_monthly_charge"] == pytest.approx(20.0)  # nothing billed: use the monthly
    assert row["charge_ratio"] == pytest.approx(1.0)
    assert np.isfinite(row[list(ENGINEERED_NUMERIC)].astype(float)).all()


def test_tiny_average_charge_does_not_blow_up_the_ratio() -> None:
    row = add_features(rows({"tenure": 5, "TotalCharges": 0.5, "MonthlyCharges": 20.0})).iloc[0]
    assert row["charge_ratio"] == pytest.approx(20.0)  # floored at 1.0, not 20 / 0.1


def test_manual_payment_and_no_addons() -> None:
    none = {
        c: "No internet service"
        for c in (
            "OnlineSecurity",
            "OnlineBackup",
            "DeviceProtection",
            "TechSupport",
            "StreamingTV",
            "StreamingMovies",
        )
    }
    row = add_features(rows({"PaymentMethod": "Electronic check", **none})).iloc[0]
    assert row["auto_pay"] == 0.0
    assert row["n_addons"] == 0


def test_target_and_id_are_dropped_and_input_untouched() -> None:
    frame = rows({}, {"tenure": 3})
    before = frame.copy()
    out = add_features(frame)
    assert TARGET_COLUMN not in out.columns and ID_COLUMN not in out.columns
    assert list(out.columns) == [*FEATURE_COLUMNS, *ENGINEERED_NUMERIC, *ENGINEERED_CATEGORICAL]
    pd.testing.assert_frame_equal(frame, before)
    assert list(out.index) == list(frame.index)


def test_column_order_of_the_input_does_not_matter() -> None:
    frame = rows({}, {"tenure": 30, "Contract": "Two year"})
    shuffled = frame[list(reversed(frame.columns))]
    pd.testing.assert_frame_equal(add_features(frame), add_features(shuffled))


def test_feature_matrix_is_add_features_in_model_order() -> None:
    frame = rows({}, {"tenure": 0, "TotalCharges": 0.0}, {"InternetService": "No"})
    matrix = feature_matrix(frame)
    assert matrix.shape == (3, len(MODEL_COLUMNS)) and matrix.dtype == object
    expected = add_features(frame)[list(MODEL_COLUMNS)].to_numpy(dtype=object)
    assert (matrix == expected).all()


def test_pandas_string_dtypes_work_like_object() -> None:
    frame = rows({}, {"Contract": "One year"})
    as_str = frame.astype({c: "string" for c in CATEGORICAL_LEVELS})
    assert (feature_matrix(frame) == feature_matrix(as_str)).all()


def test_every_contract_internet_value_is_a_declared_level() -> None:
    combos = [
        {"Contract": c, "InternetService": i}
        for c in CATEGORICAL_LEVELS["Contract"]
        for i in CATEGORICAL_LEVELS["InternetService"]
    ]
    values = set(add_features(rows(*combos))["contract_internet"])
    assert values == set(CONTRACT_INTERNET_LEVELS)


# --- profile helpers --------------------------------------------------------------------------


def test_quantile_edges_merge_ties() -> None:
    assert quantile_edges(np.arange(101.0)) == pytest.approx(list(range(0, 101, 10)))
    edges = quantile_edges([1, 1, 1, 1, 1, 1, 1, 1, 72, 72])
    assert edges == sorted(set(edges)) and edges[0] == 1 and edges[-1] == 72
    assert quantile_edges([5, 5, 5]) == [5.0, 5.0]  # constant: one bin
    with pytest.raises(ValueError):
        quantile_edges([])


def test_bin_proportions_rules() -> None:
    edges = [0.0, 10.0, 20.0, 30.0]
    # [0,10) [10,20) [20,30]; below the first edge -> first bin, above the last -> last bin.
    shares = bin_proportions([-5, 0, 9.9, 10, 25, 30, 99, 20], edges)
    assert shares == pytest.approx([3 / 8, 1 / 8, 4 / 8])
    assert bin_proportions([], edges) == [0.0, 0.0, 0.0]
    assert bin_proportions([5, 5], [5.0, 5.0]) == [1.0]


def test_level_proportions_include_absent_levels() -> None:
    shares = level_proportions(
        pd.Series(["DSL", "DSL", "No", "weird"]), ("DSL", "Fiber optic", "No")
    )
    assert shares == {"DSL": 0.5, "Fiber optic": 0.0, "No": 0.25}


def test_distribution_profile_shape() -> None:
    rng = np.random.default_rng(0)
    n = 500
    frame = rows(
        *(
            {"tenure": int(t), "MonthlyCharges": float(m)}
            for t, m in zip(rng.integers(0, 73, n), rng.uniform(18, 120, n), strict=True)
        )
    )
    profile = distribution_profile(frame)
    assert profile["rows"] == n
    for column in ("tenure", "MonthlyCharges"):
        entry = profile["numeric"][column]
        assert len(entry["edges"]) == 11 and len(entry["proportions"]) == 10
        assert sum(entry["proportions"]) == pytest.approx(1.0)
        assert all(p == pytest.approx(0.1, abs=0.03) for p in entry["proportions"])
    assert profile["categorical"]["Contract"]["Month-to-month"] == 1.0
    assert set(profile["categorical"]) == {"Contract", "InternetService", "PaymentMethod"}


def test_feature_schema_lists_the_contract() -> None:
    schema = feature_schema()
    assert schema["names"] == list(FEATURE_COLUMNS)
    assert schema["dtypes"]["MonthlyCharges"] == "float64"
    assert schema["dtypes"]["gender"] == "object"
    assert schema["numeric_bounds"]["TotalCharges"] == [0, None]
    assert schema["engineered"]["numeric"] == list(ENGINEERED_NUMERIC)


def test_feature_batch_and_frame_round_trip() -> None:
    """to_frame and from_frame are inverse: the model sees the same rows either way."""
    batch = synthetic_features(50, 7)
    back = from_frame(to_frame(batch))
    assert np.array_equal(back.codes, batch.codes)
    assert np.array_equal(back.tenure, batch.tenure)
    assert np.array_equal(back.monthly_charges, batch.monthly_charges)
    assert np.array_equal(back.total_charges, batch.total_charges)
    assert np.array_equal(back.senior_citizen, batch.senior_citizen)
    frame = to_frame(batch)
    frame.loc[3, "Contract"] = "Weekly"
    with pytest.raises(ValueError, match="Contract holds a value that is not a known level"):
        from_frame(frame)
