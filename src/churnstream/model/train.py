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
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import skops
from sklearn.base import clone
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from churnstream import __version__
from churnstream.data import load_dataset, sha256_of
from churnstream.exceptions import DataError, ModelError
from churnstream.model import artifacts, report, skops_io
from churnstream.model.evaluate import (
    THRESHOLD_METHOD,
    ThresholdChoice,
    check_goals,
    choose_threshold,
    classification_metrics,
    summarize_folds,
)
from churnstream.model.export import export_pipeline, write_compiled
from churnstream.model.features import distribution_profile, feature_schema
from churnstream.model.pipeline import DEFAULT_ALGORITHM, algorithm_params, build_pipeline
from churnstream.schemas import FEATURE_COLUMNS, TARGET_COLUMN
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

POSITIVE_LABEL = "Yes"


def target_vector(frame: pd.DataFrame) -> np.ndarray:
    """``Churn`` as 1 (Yes) / 0 (No)."""
    return (frame[TARGET_COLUMN].astype(str) == POSITIVE_LABEL).to_numpy(dtype=int)


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
        scores.append(
            {
                "roc_auc": float(roc_auc_score(y[val_idx], proba)),
                "pr_auc": float(average_precision_score(y[val_idx], proba)),
                "brier": float(brier_score_loss(y[val_idx], proba)),
            }
        )
    return CrossValidation(summarize_folds(scores), oof)


@dataclass(frozen=True)
class TrainResult:
    """A fitted pipeline with everything measured on the way."""

    pipeline: Pipeline
    algorithm: str
    params: dict[str, Any]
    random_state: int
    test_size: float
    cv_folds: int
    threshold: ThresholdChoice
    test_metrics: dict[str, Any]
    cv: dict[str, Any]
    oof_metrics: dict[str, Any]
    y_test: np.ndarray
    proba_test: np.ndarray
    profile: dict[str, Any]
    schema: dict[str, Any]
    train_rows: int
    test_rows: int
    smoke_row: dict[str, Any]
    smoke_probability: float
    seconds: dict[str, float] = field(default_factory=dict)

    def flat_metrics(self) -> dict[str, Any]:
        """Top-level metrics as in ``models/metrics.json``."""
        keys = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "brier")
        flat: dict[str, Any] = {k: self.test_metrics[k] for k in keys}
        flat["threshold"] = self.threshold.threshold
        for key in ("roc_auc", "pr_auc", "brier"):
            flat[f"cv_{key}_mean"] = self.cv[f"{key}_mean"]
            flat[f"cv_{key}_std"] = self.cv[f"{key}_std"]
        flat["cv_roc_auc_min"] = self.cv["roc_auc_min"]
        flat["confusion_matrix"] = self.test_metrics["confusion_matrix"]
        return flat


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
    positives = int(y.sum())
    if min(positives, len(y) - positives) < 2 * cv_folds:
        raise ModelError(
            f"too few rows of one class to train ({positives} churners out of {len(y)}); "
            f"need at least {2 * cv_folds} of each"
        )
    features = frame.loc[:, list(FEATURE_COLUMNS)]
    train_idx, test_idx = held_out_split(y, test_size, random_state)
    x_train, x_test = features.iloc[train_idx], features.iloc[test_idx]
    y_train, y_test = y[train_idx], y[test_idx]
    pipeline = build_pipeline(algorithm, random_state)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    cv = cross_validate(pipeline, x_train, y_train, cv_folds, random_state)
    seconds["cv"] = time.perf_counter() - started
    threshold = choose_threshold(y_train, cv.oof_proba)
    oof_metrics = classification_metrics(y_train, cv.oof_proba, threshold.threshold)
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
    proba_test = fitted.predict_proba(x_test)[:, 1]
    test_metrics = classification_metrics(y_test, proba_test, threshold.threshold)
    logger.info(
        "held-out ROC AUC %.4f, F1 %.4f, Brier %.4f",
        test_metrics["roc_auc"],
        test_metrics["f1"],
        test_metrics["brier"],
    )

    smoke = x_test.iloc[[0]]
    return TrainResult(
        pipeline=fitted,
        algorithm=algorithm,
        params=params,
        random_state=random_state,
        test_size=test_size,
        cv_folds=cv_folds,
        threshold=threshold,
        test_metrics=test_metrics,
        cv=cv.summary,
        oof_metrics=oof_metrics,
        y_test=y_test,
        proba_test=proba_test,
        profile=distribution_profile(x_train),
        schema=feature_schema(features),
        train_rows=len(x_train),
        test_rows=len(x_test),
        smoke_row={c: _json_scalar(smoke[c].iloc[0]) for c in FEATURE_COLUMNS},
        smoke_probability=float(proba_test[0]),
        seconds=seconds,
    )


def _json_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def build_metadata(
    result: TrainResult,
    *,
    version: str,
    created_at: datetime,
    data_path: Path,
    data_sha256: str,
    data_rows: int,
    sample: int | None,
) -> dict[str, Any]:
    """Everything about a model version except the model file's own hash."""
    flat = result.flat_metrics()
    goals = [
        {
            "name": r.goal.name,
            "metric": r.goal.metric,
            "target": r.goal.target,
            "direction": ">=" if r.goal.higher_is_better else "<=",
            "value": r.value,
            "met": r.met,
        }
        for r in check_goals(flat)
    ]
    return {
        "format_version": artifacts.FORMAT_VERSION,
        "version": version,
        "created_at": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "library_versions": {
            "churnstream": __version__,
            "scikit-learn": sklearn.__version__,
            "skops": skops.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "python": platform.python_version(),
        },
        "data": {
            "path": str(data_path),
            "sha256": data_sha256,
            "rows": data_rows,
            "sample": sample,
            "rows_used": result.train_rows + result.test_rows,
            "train_rows": result.train_rows,
            "test_rows": result.test_rows,
            "test_size": result.test_size,
            "churn_rate": float(np.mean(result.y_test)),
        },
        "engine": artifacts.ENGINE_SKLEARN,
        "algorithm": result.algorithm,
        "params": result.params,
        "random_state": result.random_state,
        "cv_folds": result.cv_folds,
        "feature_schema": result.schema,
        "threshold": {
            "value": result.threshold.threshold,
            "method": THRESHOLD_METHOD,
            "oof_f1": result.threshold.f1,
            "oof_precision": result.threshold.precision,
            "oof_recall": result.threshold.recall,
        },
        "metrics": {"test": result.test_metrics, "cv": result.cv, "oof": result.oof_metrics},
        "summary_metrics": flat,
        "confusion_matrix": {
            "labels": ["No", "Yes"],
            "layout": "rows are the truth, columns the prediction: [[tn, fp], [fn, tp]]",
            "matrix": result.test_metrics["confusion_matrix"],
        },
        "goals": goals,
        "profile": result.profile,
        "smoke": {"row": result.smoke_row, "probability": result.smoke_probability},
        "training_seconds": result.seconds,
    }


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
    if not data_path.is_file():
        raise DataError(
            f"dataset not found at {data_path}; run `churnstream data fetch` first "
            "(or pass --data PATH)"
        )
    started = time.perf_counter()
    frame = load_dataset(data_path)
    data_rows = len(frame)
    if sample is not None:
        frame = stratified_sample(frame, sample, random_state)
    result = train_model(
        frame,
        algorithm=algorithm,
        random_state=random_state,
        test_size=test_size,
        cv_folds=cv_folds,
    )
    created_at = datetime.now(UTC)
    version = artifacts.new_version_name(models_dir, algorithm, created_at)
    result.seconds["total"] = time.perf_counter() - started
    metadata = build_metadata(
        result,
        version=version,
        created_at=created_at,
        data_path=data_path,
        data_sha256=sha256_of(data_path),
        data_rows=data_rows,
        sample=sample,
    )
    # The arrays the scorer process loads, checked bit for bit against the pipeline now.
    compiled, metadata[artifacts.COMPILED_KEY] = export_pipeline(result.pipeline, result.smoke_row)
    version_dir, written = skops_io.write_version(
        models_dir,
        version,
        result.pipeline,
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
