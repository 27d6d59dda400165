"""Build, cross-validate, fit and evaluate the churn pipeline, then write a model version.

Protocol (the numbers in ``metadata.json`` mean exactly this):

1. A stratified split holds out ``test_size`` of the rows (``random_state`` fixed).
2. Stratified k-fold CV on the training part gives the CV ROC AUC (mean/std per fold) and
   out-of-fold probabilities; the decision threshold maximises churn-class F1 on those.
   The test set plays no part in any choice.
3. The pipeline is fitted on the whole training part; that fitted pipeline is the one saved
   and the one whose held-out metrics are reported.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from churnstream.data import load_dataset, sha256_of
from churnstream.exceptions import DataError, ModelError
from churnstream.model import artifacts, report, skops_io
from churnstream.model.evaluate import (
    choose_threshold,
    ranking_scores,
    summarize_folds,
)
from churnstream.model.export import export_pipeline, write_compiled
from churnstream.model.pipeline import DEFAULT_ALGORITHM, algorithm_params, build_pipeline
from churnstream.model.result import TrainResult, build_metadata
from churnstream.schemas import FEATURE_COLUMNS, TARGET_COLUMN
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

POSITIVE_LABEL = "Yes"


def target_vector(frame: pd.DataFrame) -> np.ndarray:
    """``Churn`` as 1 (Yes) / 0 (No)."""
    return (frame[TARGET_COLUMN].astype(str) == POSITIVE_LABEL).to_numpy(dtype=int)


@dataclass(frozen=True)
class TrainingData:
    """The labelled rows a training run uses, and what metadata.json says of their file."""

    path: Path
    frame: pd.DataFrame
    #: Rows in the file, before ``sample``.
    rows: int
    sample: int | None
    #: ``time.perf_counter()`` when loading began: ``training_seconds.total`` counts from it.
    started: float


def load_training_data(data_path: Path, sample: int | None, random_state: int) -> TrainingData:
    """The dataset at ``data_path``, stratified down to ``sample`` rows when given."""
    if not data_path.is_file():
        raise DataError(
            f"dataset not found at {data_path}; run `churnstream data fetch` first "
            "(or pass --data PATH)"
        )
    started = time.perf_counter()
    frame = load_dataset(data_path)
    rows = len(frame)
    if sample is not None:
        frame = stratified_sample(frame, sample, random_state)
    return TrainingData(data_path, frame, rows, sample, started)


def require_both_classes(y: np.ndarray, cv_folds: int) -> None:
    """ModelError unless each class has enough rows for ``cv_folds`` stratified folds."""
    positives = int(y.sum())
    if min(positives, len(y) - positives) < 2 * cv_folds:
        raise ModelError(
            f"too few rows of one class to train ({positives} churners out of {len(y)}); "
            f"need at least {2 * cv_folds} of each"
        )


def stratified_sample(frame: pd.DataFrame, rows: int, random_state: int) -> pd.DataFrame:
    """``rows`` rows keeping the churn rate, in file order; the whole frame if it is smaller."""
    if rows <= 0:
        raise DataError(f"--sample must be positive, got {rows}")
    if rows >= len(frame):
        return frame
    parts: list[pd.DataFrame] = train_test_split(
        frame, train_size=rows, stratify=frame[TARGET_COLUMN], random_state=random_state
    )
    return parts[0].sort_index()


def held_out_split(
    y: np.ndarray, test_size: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the training part and of the held-out part (stratified on ``y``).

    Every engine evaluates on these rows: the split depends only on ``y``, ``test_size`` and
    ``random_state``, so the Spark trainer holds out exactly the rows this one does.
    """
    positions = np.arange(len(y))
    train_idx, test_idx = train_test_split(
        positions, test_size=test_size, stratify=y, random_state=random_state
    )
    return np.asarray(train_idx), np.asarray(test_idx)


def cv_folds_of(
    y: np.ndarray, folds: int, random_state: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (fit, validation) positions of the stratified k-fold CV on the training part."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros(len(y)), y))


@dataclass(frozen=True)
class CrossValidation:
    summary: dict[str, Any]
    oof_proba: np.ndarray


def cross_validate(
    pipeline: Pipeline, features: pd.DataFrame, y: np.ndarray, folds: int, random_state: int
) -> CrossValidation:
    """Stratified k-fold on the given (training) rows: per-fold scores and OOF probabilities."""
    oof = np.full(len(y), np.nan)
    scores: list[dict[str, float]] = []
    for fit_idx, val_idx in cv_folds_of(y, folds, random_state):
        model = clone(pipeline).fit(features.iloc[fit_idx], y[fit_idx])
        proba = model.predict_proba(features.iloc[val_idx])[:, 1]
        oof[val_idx] = proba
        scores.append(ranking_scores(y[val_idx], proba))
    return CrossValidation(summarize_folds(scores), oof)


def train_model(
    frame: pd.DataFrame,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    random_state: int = 42,
    test_size: float = 0.2,
    cv_folds: int = 5,
) -> TrainResult:
    """Split, cross-validate, choose the threshold, fit and evaluate on the held-out part.

    ``frame`` is a labelled, typed frame as returned by :func:`churnstream.data.load_dataset`.
    Deterministic: the same rows and ``random_state`` give identical probabilities.
    """
    params = algorithm_params(algorithm)
    y = target_vector(frame)
    require_both_classes(y, cv_folds)
    features = frame.loc[:, list(FEATURE_COLUMNS)]
    train_idx, test_idx = held_out_split(y, test_size, random_state)
    x_train, x_test = features.iloc[train_idx], features.iloc[test_idx]
    y_train = y[train_idx]
    pipeline = build_pipeline(algorithm, random_state)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    cv = cross_validate(pipeline, x_train, y_train, cv_folds, random_state)
    seconds["cv"] = time.perf_counter() - started
    threshold = choose_threshold(y_train, cv.oof_proba)
    logger.info(
        "CV ROC AUC %.4f +- %.4f; threshold %.4f (OOF F1 %.4f)",
        cv.summary["roc_auc_mean"],
        cv.summary["roc_auc_std"],
        threshold.threshold,
        threshold.f1,
    )

    started = time.perf_counter()
    fitted = pipeline.fit(x_train, y_train)
    seconds["fit"] = time.perf_counter() - started
    result = TrainResult.held_out(
        features,
        y,
        (train_idx, test_idx),
        pipeline=fitted,
        algorithm=algorithm,
        params=params,
        random_state=random_state,
        test_size=test_size,
        cv_folds=cv_folds,
        cv=cv.summary,
        oof_proba=cv.oof_proba,
        threshold=threshold,
        proba_test=fitted.predict_proba(x_test)[:, 1],
        seconds=seconds,
    )
    logger.info(
        "held-out ROC AUC %.4f, F1 %.4f, Brier %.4f",
        result.test_metrics["roc_auc"],
        result.test_metrics["f1"],
        result.test_metrics["brier"],
    )
    return result


@dataclass(frozen=True)
class TrainRun:
    """What ``churnstream train`` did: the result, the version and the files written."""

    result: TrainResult
    version: str
    version_dir: Path
    metadata: dict[str, Any]
    written: list[Path]

    @property
    def metrics(self) -> dict[str, Any]:
        """The flat metrics, as in ``models/metrics.json`` (``roc_auc``, ``f1``, ...)."""
        return self.result.flat_metrics()


def new_version(
    result: TrainResult, models_dir: Path, data: TrainingData
) -> tuple[str, dict[str, Any]]:
    """A fresh version name for ``result`` in ``models_dir``, and its metadata.json."""
    created_at = datetime.now(UTC)
    version = artifacts.new_version_name(models_dir, result.algorithm, created_at)
    result.seconds["total"] = time.perf_counter() - data.started
    metadata = build_metadata(
        result,
        version=version,
        created_at=created_at,
        data_path=data.path,
        data_sha256=sha256_of(data.path),
        data_rows=data.rows,
        sample=data.sample,
    )
    return version, metadata


def run_training(
    data_path: Path,
    models_dir: Path,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    random_state: int = 42,
    test_size: float = 0.2,
    cv_folds: int = 5,
    sample: int | None = None,
) -> TrainRun:
    """Load the CSV, train, evaluate and write ``models_dir/<version>/``, ``latest``, metrics."""
    data = load_training_data(data_path, sample, random_state)
    result = train_model(
        data.frame,
        algorithm=algorithm,
        random_state=random_state,
        test_size=test_size,
        cv_folds=cv_folds,
    )
    version, metadata = new_version(result, models_dir, data)
    # The arrays the scorer process loads, checked bit for bit against the pipeline now.
    compiled, metadata[artifacts.COMPILED_KEY] = export_pipeline(result.pipeline, result.smoke_row)
    version_dir, written = artifacts.write_version(
        models_dir,
        version,
        skops_io.skops_saver(result.pipeline),
        metadata,
        extra_writer=lambda staging, meta: [
            *write_compiled(staging, compiled),
            *report.write_report(staging, meta, result.y_test, result.proba_test),
        ],
    )
    written.append(artifacts.write_latest(models_dir, version))
    written.append(artifacts.write_metrics(models_dir, metadata))
    logger.info("model %s written to %s", version, version_dir)
    return TrainRun(result, version, version_dir, metadata, written)


def train_and_save(
    settings: Settings,
    *,
    data_path: Path | None = None,
    models_dir: Path | None = None,
    sample: int | None = None,
) -> TrainRun:
    """:func:`run_training` with everything taken from ``settings.model`` and ``settings.paths``."""
    model = settings.model
    return run_training(
        data_path or settings.paths.raw_csv,
        models_dir or model.models_dir,
        algorithm=model.algorithm,
        random_state=model.random_state,
        test_size=model.test_size,
        cv_folds=model.cv_folds,
        sample=sample,
    )
