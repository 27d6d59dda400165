"""Training: files and keys written, determinism, threshold choice, goals, the CLI command.

The helpers at the top (``small_dataset``, ``synthetic_dataset``) are shared with
test_scorer.py and test_artifacts.py: the real CSV when present, else a valid synthetic one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnstream.cli import train as train_cli
from churnstream.cli._common import new_app
from churnstream.data import load_dataset, sha256_of
from churnstream.exceptions import DataError, ModelError
from churnstream.model import evaluate, train
from churnstream.model.artifacts import LATEST_FILE, METADATA_FILE, METRICS_FILE, MODEL_FILE
from churnstream.model.evaluate import (
    GOALS,
    check_goals,
    choose_threshold,
    classification_metrics,
    summarize_folds,
)
from churnstream.model.pipeline import build_pipeline
from churnstream.model.report import CALIBRATION_FILE, REPORT_FILE, ROC_FILE
from churnstream.schemas import (
    CATEGORICAL_LEVELS,
    DATASET_COLUMNS,
    FEATURE_COLUMNS,
    ID_COLUMN,
    TARGET_COLUMN,
)
from tests.conftest import DATASET

SMALL_ROWS = 800
SMALL_FOLDS = 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_dataset(rows: int = SMALL_ROWS, seed: int = 0) -> pd.DataFrame:
    """A raw, text-typed frame that passes ``load_dataset``, with a learnable churn signal."""
    rng = np.random.default_rng(seed)
    frame: dict[str, Any] = {
        ID_COLUMN: [f"{i:04d}-{''.join(rng.choice(list('ABCDEFGHIJ'), 5))}" for i in range(rows)]
    }
    for column, levels in CATEGORICAL_LEVELS.items():
        frame[column] = rng.choice(levels, rows)
    tenure = rng.integers(0, 73, rows)
    monthly = rng.uniform(18.0, 120.0, rows).round(2)
    frame["SeniorCitizen"] = rng.integers(0, 2, rows)
    frame["tenure"] = tenure
    frame["MonthlyCharges"] = monthly
    frame["TotalCharges"] = np.where(tenure == 0, " ", (tenure * monthly).round(2).astype(str))
    logit = (
        -1.0
        + 1.5 * (frame["Contract"] == "Month-to-month")
        + 0.8 * (frame["InternetService"] == "Fiber optic")
        - 0.05 * tenure
        + 0.01 * (monthly - 60)
    )
    frame[TARGET_COLUMN] = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    return pd.DataFrame(frame)[list(DATASET_COLUMNS)].astype(str)


def small_dataset(directory: Path) -> tuple[Path, int | None]:
    """(csv path, sample size): the real CSV sampled to 800 rows, or an 800-row synthetic CSV."""
    if DATASET.is_file():
        return DATASET, SMALL_ROWS
    path = directory / "synthetic.csv"
    synthetic_dataset().to_csv(path, index=False)
    return path, None


def small_frame(directory: Path) -> pd.DataFrame:
    path, sample = small_dataset(directory)
    frame = load_dataset(path)
    return train.stratified_sample(frame, sample, 42) if sample else frame


def train_small(models_dir: Path, data_dir: Path, **kwargs: Any) -> train.TrainRun:
    path, sample = small_dataset(data_dir)
    return train.run_training(
        path, models_dir, cv_folds=SMALL_FOLDS, sample=sample, **{"algorithm": "logreg", **kwargs}
    )


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return small_frame(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> train.TrainRun:
    return train_small(
        tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("data"), algorithm="ensemble"
    )


# --- files and keys ---------------------------------------------------------------------------


def test_training_writes_every_file(run: train.TrainRun) -> None:
    root = run.version_dir.parent
    for name in (MODEL_FILE, METADATA_FILE, REPORT_FILE, ROC_FILE, CALIBRATION_FILE):
        assert (run.version_dir / name).is_file(), name
    assert (root / LATEST_FILE).read_text().strip() == run.version
    assert (root / METRICS_FILE).is_file()
    assert set(run.written) >= {run.version_dir / MODEL_FILE, root / LATEST_FILE}
    assert all(p.exists() for p in run.written)
    for png in (ROC_FILE, CALIBRATION_FILE):
        assert (run.version_dir / png).read_bytes()[:8] == PNG_MAGIC
    # Nothing half-written is left behind.
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_metadata_has_the_documented_keys(run: train.TrainRun) -> None:
    meta = json.loads((run.version_dir / METADATA_FILE).read_text())
    assert meta["version"] == run.version == run.version_dir.name
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", meta["created_at"])
    assert {"churnstream", "scikit-learn", "skops"} <= set(meta["library_versions"])
    assert meta["data"]["sha256"] == sha256_of(Path(meta["data"]["path"]))
    assert meta["data"]["rows_used"] == meta["data"]["train_rows"] + meta["data"]["test_rows"]
    assert meta["algorithm"] == "ensemble" and "hgb" in meta["params"]
    schema = meta["feature_schema"]
    assert schema["names"] == list(FEATURE_COLUMNS)
    assert TARGET_COLUMN not in schema["names"]
    assert schema["dtypes"]["tenure"] == "int64" and schema["dtypes"]["Contract"] == "object"
    assert schema["categorical_levels"]["Contract"] == list(CATEGORICAL_LEVELS["Contract"])
    assert schema["numeric_bounds"]["tenure"] == [0, 100]
    assert 0.0 < meta["threshold"]["value"] < 1.0
    assert "out-of-fold" in meta["threshold"]["method"]
    test = meta["metrics"]["test"]
    for key in ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "brier"):
        assert 0.0 <= test[key] <= 1.0, key
    assert len(meta["metrics"]["cv"]["roc_auc_per_fold"]) == SMALL_FOLDS
    matrix = meta["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == meta["data"]["test_rows"]
    assert {g["metric"] for g in meta["goals"]} == {g.metric for g in GOALS}
    profile = meta["profile"]
    for column in ("tenure", "MonthlyCharges"):
        edges, shares = (
            profile["numeric"][column]["edges"],
            profile["numeric"][column]["proportions"],
        )
        assert len(shares) == len(edges) - 1 <= 10
        assert sum(shares) == pytest.approx(1.0)
    assert len(profile["numeric"]["MonthlyCharges"]["edges"]) == 11  # continuous: all 10 bins
    for column in ("Contract", "InternetService", "PaymentMethod"):
        shares = profile["categorical"][column]
        assert list(shares) == list(CATEGORICAL_LEVELS[column])
        assert sum(shares.values()) == pytest.approx(1.0)
    assert len(meta["model_sha256"]) == 64


def test_metrics_json_is_a_flat_copy(run: train.TrainRun) -> None:
    metrics = json.loads((run.version_dir.parent / METRICS_FILE).read_text())
    for key in ("roc_auc", "pr_auc", "accuracy", "f1", "brier", "threshold", "cv_roc_auc_mean"):
        assert isinstance(metrics[key], float), key
    assert metrics["version"] == run.version
    assert metrics["roc_auc"] == run.metadata["metrics"]["test"]["roc_auc"]
    assert metrics["threshold"] == run.metadata["threshold"]["value"]
    assert metrics["cv_roc_auc_mean"] == run.metadata["metrics"]["cv"]["roc_auc_mean"]


def test_report_mentions_metrics_and_embeds_plots(run: train.TrainRun) -> None:
    text = (run.version_dir / REPORT_FILE).read_text()
    assert f"]({ROC_FILE})" in text and f"]({CALIBRATION_FILE})" in text
    assert f"{run.metadata['metrics']['test']['roc_auc']:.4f}" in text
    assert "out-of-fold" in text


def test_a_second_run_adds_a_version_and_moves_latest(tmp_path: Path) -> None:
    first = train_small(tmp_path / "models", tmp_path)
    second = train_small(tmp_path / "models", tmp_path)
    assert first.version != second.version
    assert first.version_dir.is_dir() and second.version_dir.is_dir()
    assert (tmp_path / "models" / LATEST_FILE).read_text().strip() == second.version


# --- protocol ---------------------------------------------------------------------------------


def test_same_data_and_seed_give_identical_probabilities(frame: pd.DataFrame) -> None:
    for algorithm in ("ensemble", "gbm"):
        a = train.train_model(frame, algorithm=algorithm, random_state=7, cv_folds=SMALL_FOLDS)
        b = train.train_model(frame, algorithm=algorithm, random_state=7, cv_folds=SMALL_FOLDS)
        assert np.array_equal(a.proba_test, b.proba_test), algorithm
        assert a.threshold == b.threshold
        assert a.cv == b.cv
        probe = frame.iloc[:50]
        assert np.array_equal(a.pipeline.predict_proba(probe), b.pipeline.predict_proba(probe)), (
            algorithm
        )


def test_another_seed_gives_another_split(frame: pd.DataFrame) -> None:
    a = train.train_model(frame, algorithm="logreg", random_state=1, cv_folds=SMALL_FOLDS)
    b = train.train_model(frame, algorithm="logreg", random_state=2, cv_folds=SMALL_FOLDS)
    assert not np.array_equal(a.proba_test, b.proba_test)


def test_split_is_stratified_80_20(frame: pd.DataFrame) -> None:
    result = train.train_model(frame, algorithm="logreg", cv_folds=SMALL_FOLDS)
    assert result.test_rows == round(0.2 * len(frame))
    overall = train.target_vector(frame).mean()
    assert abs(result.y_test.mean() - overall) < 0.01


def test_threshold_is_chosen_on_training_oof_only(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def spy(y_true: np.ndarray, proba: np.ndarray) -> evaluate.ThresholdChoice:
        seen.append(len(y_true))
        assert not np.isnan(proba).any()  # every training row has an out-of-fold probability
        return choose_threshold(y_true, proba)

    monkeypatch.setattr(train, "choose_threshold", spy)
    result = train.train_model(frame, algorithm="logreg", cv_folds=SMALL_FOLDS)
    assert seen == [result.train_rows]


def test_churn_column_is_never_a_feature(frame: pd.DataFrame) -> None:
    pipeline = build_pipeline("logreg").fit(frame, train.target_vector(frame))
    flipped = frame.assign(**{TARGET_COLUMN: np.where(frame[TARGET_COLUMN] == "Yes", "No", "Yes")})
    assert np.array_equal(pipeline.predict_proba(frame), pipeline.predict_proba(flipped))
    without = frame.drop(columns=[TARGET_COLUMN, ID_COLUMN])
    assert np.array_equal(pipeline.predict_proba(frame), pipeline.predict_proba(without))


def test_unknown_category_is_ignored_not_fatal(frame: pd.DataFrame) -> None:
    pipeline = build_pipeline("ensemble").fit(frame, train.target_vector(frame))
    odd = frame.iloc[:3].assign(PaymentMethod="Bitcoin")
    proba = pipeline.predict_proba(odd)[:, 1]
    assert np.all((proba >= 0) & (proba <= 1))


def test_stratified_sample_keeps_the_churn_rate(frame: pd.DataFrame) -> None:
    sample = train.stratified_sample(frame, 200, 42)
    assert len(sample) == 200
    assert abs(train.target_vector(sample).mean() - train.target_vector(frame).mean()) < 0.01
    assert list(sample.index) == sorted(sample.index)
    assert train.stratified_sample(frame, 10**6, 42) is frame
    with pytest.raises(DataError):
        train.stratified_sample(frame, 0, 42)


def test_unknown_algorithm_and_too_few_rows_fail_clearly(frame: pd.DataFrame) -> None:
    with pytest.raises(ModelError, match="unknown algorithm"):
        build_pipeline("forest")
    tiny = pd.concat([frame[frame[TARGET_COLUMN] == "Yes"].iloc[:3], frame.iloc[:40]])
    with pytest.raises(ModelError, match="too few rows"):
        train.train_model(tiny.drop_duplicates(ID_COLUMN), cv_folds=5)


def test_missing_dataset_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="churnstream data fetch"):
        train.run_training(tmp_path / "absent.csv", tmp_path / "models")


# --- evaluate: pure functions -----------------------------------------------------------------


def _brute_force_best_f1(y: np.ndarray, p: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(p):
        pred = p >= t
        tp = np.sum(pred & (y == 1))
        if tp:
            precision, recall = tp / pred.sum(), tp / y.sum()
            best = max(best, 2 * precision * recall / (precision + recall))
    return float(best)


def test_choose_threshold_by_hand() -> None:
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    choice = choose_threshold(y, p)
    # At 0.3: tp 3, fp 1 -> P 0.75, R 1.0, F1 0.857; at 0.8: P 1, R 0.667, F1 0.8.
    assert choice.threshold == pytest.approx(0.3)
    assert choice.f1 == pytest.approx(6 / 7)
    assert (choice.precision, choice.recall) == (pytest.approx(0.75), pytest.approx(1.0))


def test_choose_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 2, 300)
        p = np.clip(0.3 * y + rng.random(300) * 0.8, 0, 1).round(2)  # ties on purpose
        choice = choose_threshold(y, p)
        assert choice.f1 == pytest.approx(_brute_force_best_f1(y, p))
        pred = p >= choice.threshold
        assert classification_metrics(y, p, choice.threshold)["f1"] == pytest.approx(choice.f1)
        assert pred.any()


def test_choose_threshold_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        choose_threshold(np.array([1, 1]), np.array([0.2, 0.3]))
    with pytest.raises(ValueError):
        choose_threshold(np.array([0, 1]), np.array([0.2]))


def test_classification_metrics_layout() -> None:
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.2, 0.7, 0.4])
    metrics = classification_metrics(y, p, threshold=0.5)
    assert metrics["confusion_matrix"] == [[2, 1], [1, 1]]  # [[tn, fp], [fn, tp]]
    assert metrics["precision"] == pytest.approx(0.5) and metrics["recall"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert metrics["roc_auc"] == pytest.approx(5 / 6)


def test_summarize_folds_and_goals() -> None:
    summary = summarize_folds([{"roc_auc": 0.8}, {"roc_auc": 0.9}])
    assert summary["roc_auc_mean"] == pytest.approx(0.85)
    assert summary["roc_auc_std"] == pytest.approx(0.05)
    assert summary["roc_auc_min"] == pytest.approx(0.8)
    flat = {"roc_auc": 0.849, "cv_roc_auc_mean": 0.846, "brier": 0.14, "f1": 0.63}
    met = {(r.goal.name, r.met) for r in check_goals(flat)}
    assert ("held-out ROC AUC", False) in met
    assert ("minimum held-out ROC AUC", True) in met
    assert ("Brier score", False) in met  # lower is better
    assert ("churn-class F1", True) in met  # the target itself counts as met


# --- CLI --------------------------------------------------------------------------------------


def _cli() -> Any:
    app = new_app("test")
    app.command("train")(train_cli.train)
    app.command("noop")(lambda: None)  # a second command keeps `train` a named subcommand
    return app


def test_cli_train_prints_metrics_goals_and_paths(tmp_path: Path) -> None:
    path, sample = small_dataset(tmp_path)
    args = ["train", "--data", str(path), "--models-dir", str(tmp_path / "m"), "--seed", "3"]
    args += ["--algorithm", "logreg"] + (["--sample", str(sample)] if sample else [])
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert "ROC AUC" in result.output and "Brier score" in result.output
    assert result.output.count("goal ") == len(GOALS)
    assert re.search(r"goal held-out ROC AUC >= 0\.85: (met|NOT met)", result.output)
    version = (tmp_path / "m" / LATEST_FILE).read_text().strip()
    assert f"wrote {tmp_path / 'm' / version / MODEL_FILE}" in result.output
    meta = json.loads((tmp_path / "m" / version / METADATA_FILE).read_text())
    assert meta["random_state"] == 3 and meta["algorithm"] == "logreg"


def test_cli_train_without_data_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["train", "--data", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert "churnstream data fetch" in result.output
    assert "Traceback" not in result.output


def test_cli_train_rejects_unknown_algorithm(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["train", "--algorithm", "forest"])
    assert result.exit_code == 1
    assert "model.algorithm" in result.output
