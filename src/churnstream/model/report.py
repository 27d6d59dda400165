"""``report.md`` with ROC and reliability plots (PNG, Agg backend) for a model version.

Figures are drawn on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never through
``pyplot``, so training leaves no global matplotlib state behind and needs no display.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

logger = logging.getLogger(__name__)

ROC_FILE = "roc.png"
CALIBRATION_FILE = "calibration.png"
REPORT_FILE = "report.md"
CALIBRATION_BINS = 10
FIGURE_SIZE_IN = (5.0, 5.0)
FIGURE_DPI = 110


def plot_roc(y_true: np.ndarray, proba: np.ndarray, path: Path, threshold: float) -> Path:
    """ROC curve of the held-out part, with the operating point at ``threshold`` marked."""
    fpr, tpr, _ = roc_curve(y_true, proba)
    pred = proba >= threshold
    positives = max(int(np.sum(y_true == 1)), 1)
    negatives = max(int(np.sum(y_true == 0)), 1)
    point = (np.sum(pred & (y_true == 0)) / negatives, np.sum(pred & (y_true == 1)) / positives)
    fig = Figure(figsize=FIGURE_SIZE_IN)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.scatter([point[0]], [point[1]], color="red", zorder=3, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC (held-out)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    return path


def plot_calibration(y_true: np.ndarray, proba: np.ndarray, path: Path) -> Path:
    """Reliability diagram (quantile bins) of the held-out part."""
    observed, predicted = calibration_curve(
        y_true, proba, n_bins=CALIBRATION_BINS, strategy="quantile"
    )
    fig = Figure(figsize=FIGURE_SIZE_IN)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.set(
        xlabel="Mean predicted probability",
        ylabel="Observed churn rate",
        title=f"Reliability ({CALIBRATION_BINS} quantile bins, held-out)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    return path


def render_report(metadata: Mapping[str, Any]) -> str:
    """The Markdown text of report.md, from metadata.json's content alone."""
    test = metadata["metrics"]["test"]
    cv = metadata["metrics"]["cv"]
    threshold = metadata["threshold"]
    data = metadata["data"]
    (tn, fp), (fn, tp) = metadata["confusion_matrix"]["matrix"]
    lines = [
        f"# Churn model {metadata['version']}",
        "",
        f"- Created: {metadata['created_at']}",
        f"- Algorithm: `{metadata['algorithm']}`, random_state {metadata['random_state']}",
        f"- Parameters: `{metadata['params']}`",
        f"- Data: `{data['path']}` (sha256 `{data['sha256'][:16]}...`, {data['rows']} rows"
        + (f", stratified sample of {data['sample']}" if data.get("sample") else "")
        + f"); train {data['train_rows']}, held-out test {data['test_rows']}",
        f"- Libraries: {', '.join(f'{k} {v}' for k, v in metadata['library_versions'].items())}",
        "",
        "## Held-out test metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *(
            f"| {name} | {test[key]:.4f} |"
            for name, key in (
                ("ROC AUC", "roc_auc"),
                ("PR AUC (average precision)", "pr_auc"),
                ("Accuracy", "accuracy"),
                ("Precision (churn)", "precision"),
                ("Recall (churn)", "recall"),
                ("F1 (churn)", "f1"),
                ("Brier score", "brier"),
            )
        ),
        "",
        f"## Cross-validation ({cv['folds']}-fold stratified, training part only)",
        "",
        f"- ROC AUC {cv['roc_auc_mean']:.4f} +- {cv['roc_auc_std']:.4f} "
        f"(min {cv['roc_auc_min']:.4f}; folds "
        + ", ".join(f"{v:.4f}" for v in cv["roc_auc_per_fold"])
        + ")",
        f"- PR AUC {cv['pr_auc_mean']:.4f} +- {cv['pr_auc_std']:.4f}",
        f"- Brier {cv['brier_mean']:.4f} +- {cv['brier_std']:.4f}",
        "",
        "## Decision threshold",
        "",
        f"Threshold **{threshold['value']:.4f}**: {threshold['method']} "
        f"Out-of-fold F1 at this threshold: {threshold['oof_f1']:.4f} "
        f"(precision {threshold['oof_precision']:.4f}, recall {threshold['oof_recall']:.4f}).",
        "",
        "Confusion matrix on the held-out test set:",
        "",
        "| | predicted No | predicted Yes |",
        "|---|---|---|",
        f"| actual No | {tn} | {fp} |",
        f"| actual Yes | {fn} | {tp} |",
        "",
        "## Goals",
        "",
        "| goal | target | value | met |",
        "|---|---|---|---|",
        *(
            f"| {g['name']} | {g['direction']} {g['target']} | {g['value']:.4f} | "
            f"{'yes' if g['met'] else 'NO'} |"
            for g in metadata["goals"]
        ),
        "",
        "## Plots",
        "",
        f"![ROC curve]({ROC_FILE})",
        "",
        f"![Reliability diagram]({CALIBRATION_FILE})",
        "",
    ]
    return "\n".join(lines)


def write_report(
    version_dir: Path, metadata: Mapping[str, Any], y_test: np.ndarray, proba_test: np.ndarray
) -> list[Path]:
    """Write report.md, roc.png and calibration.png into ``version_dir``."""
    threshold = float(metadata["threshold"]["value"])
    roc = plot_roc(y_test, proba_test, version_dir / ROC_FILE, threshold)
    calibration = plot_calibration(y_test, proba_test, version_dir / CALIBRATION_FILE)
    report = version_dir / REPORT_FILE
    report.write_text(render_report(metadata), encoding="utf-8")
    return [report, roc, calibration]
