"""Metrics, threshold choice and goal checks. Pure functions of labels and probabilities."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

logger = logging.getLogger(__name__)

THRESHOLD_METHOD = (
    "maximises churn-class F1 on the out-of-fold probabilities of the stratified k-fold CV "
    "on the training part; the test set is never used to choose it. A row is labelled "
    "'Yes' when its probability is >= the threshold."
)


@dataclass(frozen=True)
class ThresholdChoice:
    """The decision threshold and the F1 it reached on the data it was chosen on."""

    threshold: float
    f1: float
    precision: float
    recall: float


@dataclass(frozen=True)
class Goal:
    """One target from the issue: ``metric`` must be ``>=`` (or ``<=``) ``target``."""

    name: str
    metric: str
    target: float
    higher_is_better: bool = True

    def met(self, value: float) -> bool:
        return value >= self.target if self.higher_is_better else value <= self.target


@dataclass(frozen=True)
class GoalResult:
    goal: Goal
    value: float
    met: bool


#: The issue's targets. ``roc_auc_floor`` is the hard minimum for held-out ROC AUC.
GOALS: tuple[Goal, ...] = (
    Goal("held-out ROC AUC", "roc_auc", 0.85),
    Goal("CV mean ROC AUC", "cv_roc_auc_mean", 0.845),
    Goal("Brier score", "brier", 0.135, higher_is_better=False),
    Goal("churn-class F1", "f1", 0.63),
    Goal("minimum held-out ROC AUC", "roc_auc", 0.84),
)


def choose_threshold(y_true: Sequence[int] | np.ndarray, proba: np.ndarray) -> ThresholdChoice:
    """The probability cut-off that maximises churn-class F1 (label 1 when ``proba >= t``).

    Candidates are the distinct probabilities themselves, so the result is exact for the
    given data; ties go to the lowest threshold, i.e. the higher recall.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    if y.shape != p.shape or y.size == 0:
        raise ValueError("y_true and proba must be non-empty and of the same length")
    if y.min() == y.max():
        raise ValueError("choosing a threshold needs both classes in y_true")
    precision, recall, thresholds = precision_recall_curve(y, p)
    # The curve's last point (precision 1, recall 0) has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))  # first maximum = lowest threshold among ties
    return ThresholdChoice(
        threshold=float(thresholds[best]),
        f1=float(f1[best]),
        precision=float(precision[best]),
        recall=float(recall[best]),
    )


def ranking_scores(y_true: Sequence[int] | np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC and Brier score of ``proba`` for the churn class: one CV fold's scores."""
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "pr_auc": float(average_precision_score(y_true, proba)),
        "brier": float(brier_score_loss(y_true, proba)),
    }


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, proba: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Ranking, calibration and thresholded metrics for the churn class (label 1).

    The confusion matrix is ``[[tn, fp], [fn, tp]]`` with rows = truth, columns = prediction.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    pred = (p >= threshold).astype(int)
    matrix = confusion_matrix(y, pred, labels=[0, 1])
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "brier": float(brier_score_loss(y, p)),
        "threshold": float(threshold),
        "confusion_matrix": [[int(v) for v in row] for row in matrix],
        "rows": int(y.size),
        "positives": int(y.sum()),
    }


def summarize_folds(fold_scores: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Mean, std (population) and per-fold values for every metric in the fold dicts."""
    if not fold_scores:
        raise ValueError("no folds to summarise")
    summary: dict[str, Any] = {"folds": len(fold_scores)}
    for key in fold_scores[0]:
        values = np.array([fold[key] for fold in fold_scores], dtype=float)
        summary[f"{key}_mean"] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
        summary[f"{key}_min"] = float(values.min())
        summary[f"{key}_per_fold"] = [float(v) for v in values]
    return summary


def check_goals(metrics: Mapping[str, Any], goals: Sequence[Goal] = GOALS) -> list[GoalResult]:
    """Compare flat metrics (``roc_auc``, ``cv_roc_auc_mean``, ...) with the targets."""
    results = []
    for goal in goals:
        value = float(metrics[goal.metric])
        results.append(GoalResult(goal, value, goal.met(value)))
    return results
