"""`churnstream predict` through the scoring core: the same files and bodies as before it.

The oracle is what ``predict`` computed before the core: the scikit-learn pipeline over the
typed frame (``Scorer.predict_proba``), labelled at the threshold, and one pydantic
``Prediction`` per body.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from churnstream.data import read_table, validate_frame
from churnstream.events import events_to_frame
from churnstream.exceptions import ModelError
from churnstream.model.contributions import REASON_FEATURES
from churnstream.model.feature_batch import FeatureBatch
from churnstream.model.features import from_frame
from churnstream.model.scorer import Scorer
from churnstream.predict import (
    REASON_COLUMNS,
    UNSCORED_REASON,
    parse_record,
    predict_file,
    predict_record,
)
from churnstream.schemas import FEATURE_COLUMNS, Prediction, dump_body
from tests.unit.test_data import GOOD, HEADER, NEW_CUSTOMER
from tests.unit.test_schemas import EVENT


def write_whole(frame: pd.DataFrame, path: Path) -> None:
    """The table written whole, as ``predict`` wrote it before it wrote in chunks."""
    if path.suffix == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        path.write_bytes(buffer.getvalue())
    else:
        path.write_text(frame.to_csv(index=False))


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> Scorer:
    return Scorer.load(model_dir)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_output_file_is_what_the_pipeline_gave(
    tmp_path: Path, scorer: Scorer, dataset_path: Path, suffix: str
) -> None:
    out = tmp_path / f"out{suffix}"
    result = predict_file(dataset_path, out, scorer, reasons=False)
    assert result.scored == 7043 and result.rejects is None

    raw = read_table(dataset_path)
    valid, _ = validate_frame(raw)
    expected = raw.loc[valid.index].copy()
    probability = scorer.predict_proba(valid[list(FEATURE_COLUMNS)])
    expected["churn_probability"] = probability
    expected["prediction"] = np.where(probability >= scorer.threshold, "Yes", "No").astype(object)
    expected["model_version"] = pd.Series(scorer.version, index=expected.index).to_numpy()
    pinned = tmp_path / f"expected{suffix}"
    write_whole(expected, pinned)
    if suffix == ".csv":
        assert out.read_bytes() == pinned.read_bytes()
    else:
        pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(pinned))


def test_reason_columns_name_the_largest_contributions(
    tmp_path: Path, scorer: Scorer, dataset_path: Path
) -> None:
    out = tmp_path / "out.csv"
    predict_file(dataset_path, out, scorer)
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(scored.columns[-3:]) == list(REASON_COLUMNS)
    valid, _ = validate_frame(read_table(dataset_path))
    explained = scorer.explain_features(from_frame(valid))
    names = np.array(REASON_FEATURES)
    for row in (0, 1, 2, 7042):
        values = explained.values[row]
        order = [i for i in np.argsort(-values, kind="stable")[:3] if values[i] > 0]
        cells = [scored[c].iloc[row] for c in REASON_COLUMNS]
        assert [cell.split("=")[0] for cell in cells if cell] == list(names[order])
        assert [float(cell.rsplit("(", 1)[1].rstrip(")")) for cell in cells if cell] == [
            round(float(values[i]), 4) for i in order
        ]
    # The first customer: a first-month month-to-month contract.
    assert scored["reason_1"].iloc[0].startswith("tenure=1 (+")
    assert scored["reason_2"].iloc[0].startswith("Contract=Month-to-month (+")


def test_rows_the_model_cannot_score_go_to_the_rejects(
    tmp_path: Path, scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("\n".join([HEADER, GOOD, NEW_CUSTOMER]) + "\n")

    def fails_on_new_customers(batch: FeatureBatch) -> np.ndarray:
        if (batch.tenure == 0).any():
            raise ValueError("no tenure")
        return np.full(len(batch), 0.25)

    monkeypatch.setattr(scorer, "predict_features", fails_on_new_customers)
    result = predict_file(src, tmp_path / "out.csv", scorer)
    assert (result.scored, result.rejected) == (1, 1)
    assert result.rejects is not None
    rejects = pd.read_csv(result.rejects)
    assert list(rejects["reject_reason"]) == [UNSCORED_REASON]
    assert list(rejects["customerID"]) == ["4472-LVYGI"]


def test_one_record_body_is_the_prediction_contract(scorer: Scorer) -> None:
    event = parse_record(orjson.dumps({k: v for k, v in EVENT.items() if k != "event_ts"}))
    body = predict_record(event, scorer, reasons=False)
    data = orjson.loads(body)
    expected = Prediction(
        customerID=event.customerID,
        churn_probability=float(scorer.predict_proba(events_to_frame([event]))[0]),
        prediction="Yes" if data["churn_probability"] >= scorer.threshold else "No",
        event_ts=event.event_ts,
        processed_ts=data["processed_ts"],
        model_version=scorer.version,
        inference_latency_ms=data["inference_latency_ms"],
    )
    assert body == orjson.dumps(dump_body(expected))
    assert math.isfinite(data["inference_latency_ms"])
    # With reasons: the same contract fields, then the reasons as a last field.
    explained = predict_record(event, scorer)
    data = orjson.loads(explained)
    reasons = data.pop("reasons")
    assert [r["feature"] for r in reasons][:2] == ["tenure", "Contract"]
    assert reasons[0]["value"] == 1 and reasons[1]["value"] == "Month-to-month"
    assert orjson.dumps({**data, "reasons": reasons}) == explained


def test_one_record_the_model_cannot_score_is_a_model_error(
    scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scorer, "predict_features", lambda batch: np.full(len(batch), np.nan))
    with pytest.raises(ModelError, match="could not score customer 7590-VHVEG"):
        predict_record(parse_record(orjson.dumps(EVENT)), scorer)
