"""Scorer: load once, score batches, label at the threshold, and fail loudly on bad models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnstream.exceptions import ModelError, ModelLoadError
from churnstream.model import train
from churnstream.model.artifacts import LATEST_FILE, METADATA_FILE
from churnstream.model.features import from_frame
from churnstream.model.scorer import Scorer
from churnstream.schemas import FEATURE_COLUMNS, ID_COLUMN, TARGET_COLUMN
from tests.unit.test_train import small_frame, train_small


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> train.TrainRun:
    return train_small(
        tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("data"), algorithm="ensemble"
    )


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return small_frame(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def scorer(run: train.TrainRun) -> Scorer:
    return Scorer.load(run.version_dir.parent)


@pytest.fixture
def models(run: train.TrainRun, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(run.version_dir.parent, root)
    return root


def test_load_from_root_or_version_dir(run: train.TrainRun, scorer: Scorer) -> None:
    assert scorer.version == run.version
    assert scorer.path == run.version_dir
    assert scorer.threshold == run.metadata["threshold"]["value"]
    assert scorer.metadata["algorithm"] == "ensemble"
    direct = Scorer.load(str(run.version_dir))  # a str path works too
    assert direct.version == scorer.version


def test_round_trip_gives_the_trained_probabilities(
    run: train.TrainRun, scorer: Scorer, frame: pd.DataFrame
) -> None:
    expected = run.result.pipeline.predict_proba(frame)[:, 1]
    got = scorer.predict_proba(frame)
    assert got.dtype == np.float64 and got.shape == (len(frame),)
    assert np.array_equal(got, expected)


def test_batch_is_one_vectorised_call(scorer: Scorer, frame: pd.DataFrame) -> None:
    calls: list[int] = []
    original = scorer.pipeline.predict_proba

    def spy(x: pd.DataFrame) -> np.ndarray:
        calls.append(len(x))
        return np.asarray(original(x))

    scorer.pipeline.predict_proba = spy  # type: ignore[method-assign]
    try:
        scorer.predict_proba(frame.iloc[:300])
    finally:
        del scorer.pipeline.predict_proba
    assert calls == [300]


def test_a_row_scores_the_same_alone_or_in_a_batch(scorer: Scorer, frame: pd.DataFrame) -> None:
    batch = scorer.predict_proba(frame.iloc[:20])
    alone = np.array([scorer.predict_proba(frame.iloc[[i]])[0] for i in range(20)])
    np.testing.assert_allclose(alone, batch, rtol=0, atol=1e-12)


def test_records_built_from_python_values(scorer: Scorer, frame: pd.DataFrame) -> None:
    # As the consumer builds frames: a list of dicts, pandas infers str/int/float dtypes.
    records = frame[list(FEATURE_COLUMNS)].iloc[:5].to_dict(orient="records")
    rebuilt = pd.DataFrame(records, columns=list(FEATURE_COLUMNS))
    np.testing.assert_allclose(
        scorer.predict_proba(rebuilt), scorer.predict_proba(frame.iloc[:5]), rtol=0, atol=1e-12
    )


def test_extra_and_reordered_columns_are_fine(scorer: Scorer, frame: pd.DataFrame) -> None:
    batch = frame.iloc[:10]
    reordered = batch[[TARGET_COLUMN, *reversed(FEATURE_COLUMNS), ID_COLUMN]].assign(extra=1)
    assert np.array_equal(scorer.predict_proba(reordered), scorer.predict_proba(batch))


def test_empty_batch(scorer: Scorer, frame: pd.DataFrame) -> None:
    assert scorer.predict_proba(frame.iloc[:0]).shape == (0,)
    assert scorer.predict_features(from_frame(frame.iloc[:0])).shape == (0,)


def test_missing_feature_column_is_a_model_error(scorer: Scorer, frame: pd.DataFrame) -> None:
    with pytest.raises(ModelError, match="missing feature column.*tenure"):
        scorer.predict_proba(frame.drop(columns=["tenure"]).iloc[:3])


def test_unscoreable_values_are_a_model_error(scorer: Scorer, frame: pd.DataFrame) -> None:
    bad = frame.iloc[:2].assign(MonthlyCharges=["abc", "def"])
    with pytest.raises(ModelError, match="cannot score batch of 2"):
        scorer.predict_proba(bad)


# --- load failures (more in test_artifacts.py) ------------------------------------------------


def _edit(models: Path, change: Any) -> None:
    vdir = models / (models / LATEST_FILE).read_text().strip()
    meta = json.loads((vdir / METADATA_FILE).read_text())
    change(meta)
    (vdir / METADATA_FILE).write_text(json.dumps(meta))


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        Scorer.load(tmp_path / "no-models-here")


def test_smoke_prediction_mismatch(models: Path) -> None:
    _edit(models, lambda m: m["smoke"].update(probability=m["smoke"]["probability"] + 0.01))
    with pytest.raises(ModelLoadError, match="smoke prediction gave"):
        Scorer.load(models)


def test_smoke_prediction_failure(models: Path) -> None:
    _edit(models, lambda m: m["smoke"]["row"].update(tenure="abc"))
    with pytest.raises(ModelLoadError, match="smoke prediction failed"):
        Scorer.load(models)


def test_feature_schema_mismatch(models: Path) -> None:
    _edit(models, lambda m: m["feature_schema"]["names"].remove("gender"))
    with pytest.raises(ModelLoadError, match="feature schema"):
        Scorer.load(models)
