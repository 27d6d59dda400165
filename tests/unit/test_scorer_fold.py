"""The poll loop folds scored rows into the window in groups; the window comes out the same."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from churnstream.model import train
from churnstream.model.scorer import Scorer
from churnstream.scoring.batch import score_batch
from churnstream.scoring.messages import RawMessage
from churnstream.settings import load_settings
from churnstream.streaming import window as window_module
from churnstream.streaming.loop import ScorerLoop
from churnstream.streaming.options import ScoreOptions
from tests.unit.test_schemas import EVENT
from tests.unit.test_train import train_small

CONTRACTS = ("Month-to-month", "One year", "Two year")
INTERNET = ("DSL", "Fiber optic", "No")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> train.TrainRun:
    return train_small(tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("data"))


def batches() -> list[list[RawMessage]]:
    """Twelve small batches over three partitions; the fifth is redelivered as the sixth."""
    out: list[list[RawMessage]] = []
    offset = 0
    for b in range(11):
        batch = []
        for i in range(7):
            body = {
                **EVENT,
                "customerID": f"{offset % 40:04d}-ABCDE",  # customers come back
                "tenure": (offset * 7) % 72,
                "Contract": CONTRACTS[offset % 3],
                "InternetService": INTERNET[offset % 3],
                "MonthlyCharges": 20.0 + (offset * 13) % 90,
            }
            value = orjson.dumps(body)
            batch.append(RawMessage("in", i % 3, offset, body["customerID"].encode(), value, []))
            offset += 1
        out.append(batch)
        if b == 4:
            out.append(list(batch))  # a rewind after an unacknowledged batch
    return out


def window_after(run: train.TrainRun, fold_interval_s: float) -> dict[str, Any]:
    options = ScoreOptions(
        mode="streaming",
        input_topic="in",
        output_topic="out",
        deadletter_topic="dlq",
        group_id="g",
        model_path=run.version_dir.parent,
        idle_timeout_ms=1000,
        reload_interval_s=None,
    )
    scorer = Scorer.load(run.version_dir.parent)
    loop = ScorerLoop(load_settings(), options, scorer=scorer)
    unfolded_seen = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(window_module, "FOLD_INTERVAL_S", fold_interval_s)
        for batch in batches():
            result = score_batch(
                batch,
                scorer.predict_features,
                threshold=scorer.threshold,
                model_version=scorer.version,
                consumer_group="g",
            )
            loop._account(batch, result)
            unfolded_seen = max(unfolded_seen, loop.window.unfolded_rows)
        loop._close_window()
    summary = loop.summary.last_summary
    assert summary is not None
    summary["_max_unfolded"] = unfolded_seen
    return summary


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """The window's figures by path; floats rounded (sums grouped differently differ in the
    last bit)."""
    keep = ("counts", "churn", "by_contract", "by_internet_service", "top_risk", "risk_histogram")
    flat: dict[str, Any] = {}

    def walk(path: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{path}.{key}", inner)
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                walk(f"{path}[{i}]", inner)
        else:
            flat[path] = round(value, 12) if isinstance(value, float) else value

    for key in keep:
        if key in summary:
            walk(key, summary[key])
    return flat


def test_grouped_folds_give_the_same_window_as_batch_by_batch(run: train.TrainRun) -> None:
    each = window_after(run, fold_interval_s=0.0)
    grouped = window_after(run, fold_interval_s=3600.0)
    assert each["_max_unfolded"] == 0  # folded at every batch
    assert grouped["_max_unfolded"] == 12 * 7  # nothing folded until the window closed
    assert {"counts.scored", "churn.predicted_churn_rate"} <= set(comparable(each))
    assert any(path.startswith("top_risk[") for path in comparable(each))
    assert comparable(grouped) == comparable(each)
    assert each["counts"]["duplicates_skipped"] == 7  # the redelivered batch, in both


def test_a_full_group_is_folded_without_waiting(
    run: train.TrainRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(window_module, "FOLD_MAX_ROWS", 20)
    summary = window_after(run, fold_interval_s=3600.0)
    assert summary["_max_unfolded"] < 20
