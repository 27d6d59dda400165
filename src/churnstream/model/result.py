"""What a training run measured (:class:`TrainResult`), and the version's metadata.json built
from it: the same for every engine's trainer (:mod:`churnstream.model.train`,
:mod:`churnstream.spark.train`)."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import skops
from sklearn.pipeline import Pipeline

from churnstream import __version__
from churnstream.model import artifacts
from churnstream.model.evaluate import (
    THRESHOLD_METHOD,
    ThresholdChoice,
    check_goals,
    classification_metrics,
)
from churnstream.model.features import distribution_profile, feature_schema
from churnstream.schemas import FEATURE_COLUMNS

logger = logging.getLogger(__name__)


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

    @classmethod
    def held_out(
        cls,
        features: pd.DataFrame,
        y: np.ndarray,
        split: tuple[np.ndarray, np.ndarray],
        *,
        pipeline: Any,
        algorithm: str,
        params: dict[str, Any],
        random_state: int,
        test_size: float,
        cv_folds: int,
        cv: dict[str, Any],
        oof_proba: np.ndarray,
        threshold: ThresholdChoice,
        proba_test: np.ndarray,
        seconds: dict[str, float],
    ) -> TrainResult:
        """What any engine's trainer measured, with the metrics, profile, schema and smoke row
        derived the same way: ``features`` and ``y`` are every row, ``split`` the (training,
        held-out) positions of :func:`held_out_split`, ``proba_test`` the held-out rows'."""
        train_idx, test_idx = split
        y_train, y_test = y[train_idx], y[test_idx]
        smoke = features.iloc[[int(test_idx[0])]]
        return cls(
            pipeline=pipeline,
            algorithm=algorithm,
            params=params,
            random_state=random_state,
            test_size=test_size,
            cv_folds=cv_folds,
            threshold=threshold,
            test_metrics=classification_metrics(y_test, proba_test, threshold.threshold),
            cv=cv,
            oof_metrics=classification_metrics(y_train, oof_proba, threshold.threshold),
            y_test=y_test,
            proba_test=proba_test,
            profile=distribution_profile(features.iloc[train_idx]),
            schema=feature_schema(features),
            train_rows=len(train_idx),
            test_rows=len(test_idx),
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
