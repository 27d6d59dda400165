"""The side-by-side report of a scikit-learn and a Spark model version trained on the same rows.

``reports/spark_vs_sklearn.json`` and ``.md``: held-out metrics (the same customers for both;
checked from the two metadata files), training time, and scoring throughput measured here on
the same rows: scikit-learn through the scoring core on one process, Spark through
``PipelineModel.transform`` on the session's executors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnstream.data import load_dataset
from churnstream.exceptions import ModelError
from churnstream.files import atomic_write_text
from churnstream.model import artifacts
from churnstream.model.features import from_frame
from churnstream.model.scorer import Scorer
from churnstream.schemas import FEATURE_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

REPORT_NAME = "spark_vs_sklearn"
#: Rows scored by each engine for the throughput figures (the dataset, repeated).
THROUGHPUT_ROWS = 200_000
#: The best of this many timed runs counts (the first one warms caches and the JIT).
THROUGHPUT_RUNS = 3
METRIC_KEYS = ("roc_auc", "pr_auc", "brier", "accuracy", "precision", "recall", "f1")
#: Metadata fields that must agree for the two held-out parts to be the same rows.
SPLIT_KEYS = ("sha256", "rows", "sample", "rows_used", "test_rows", "test_size")


@dataclass(frozen=True)
class Comparison:
    payload: dict[str, Any]
    json_path: Path
    markdown_path: Path


def same_held_out_rows(
    sklearn_meta: Mapping[str, Any], spark_meta: Mapping[str, Any]
) -> str | None:
    """None when both versions held out the same rows; else what differs."""
    differences = [
        f"data.{key} {sklearn_meta['data'].get(key)!r} vs {spark_meta['data'].get(key)!r}"
        for key in SPLIT_KEYS
        if sklearn_meta["data"].get(key) != spark_meta["data"].get(key)
    ]
    if sklearn_meta.get("random_state") != spark_meta.get("random_state"):
        differences.append("random_state")
    return "; ".join(differences) or None


def sklearn_rows_per_s(scorer: Scorer, frame: pd.DataFrame) -> float:
    """Rows/s of the scoring core's model call (features decoded once, as the core does)."""
    features = from_frame(frame)
    best = float("inf")
    for _ in range(THROUGHPUT_RUNS):
        started = time.perf_counter()
        scorer.predict_features(features)
        best = min(best, time.perf_counter() - started)
    return len(frame) / best


def spark_rows_per_s(spark: SparkSession, model: Any, frame: pd.DataFrame) -> float:
    """Rows/s of ``transform`` on a cached frame, the probabilities written to Spark's no-op
    sink so that every row is scored and nothing is collected."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql.functions import col

    from churnstream.spark.train import PROBABILITY_COLUMN

    data = spark.createDataFrame(frame.loc[:, list(FEATURE_COLUMNS)]).cache()
    data.count()
    best = float("inf")
    try:
        for _ in range(THROUGHPUT_RUNS):
            started = time.perf_counter()
            model.transform(data).select(vector_to_array(col(PROBABILITY_COLUMN))[1]).write.format(
                "noop"
            ).mode("overwrite").save()
            best = min(best, time.perf_counter() - started)
    finally:
        data.unpersist()
    return len(frame) / best


def compare(
    spark: SparkSession,
    spark_model: Any,
    spark_meta: dict[str, Any],
    sklearn_dir: Path,
    data_path: Path,
    reports_dir: Path,
    *,
    rows: int = THROUGHPUT_ROWS,
) -> Comparison:
    """Measure throughput, put both versions' figures side by side, write JSON + Markdown."""
    version_dir = artifacts.resolve_version_dir(sklearn_dir)
    sklearn_meta = artifacts.read_metadata(version_dir)
    artifacts.require_engine(version_dir, sklearn_meta, artifacts.ENGINE_SKLEARN)
    differs = same_held_out_rows(sklearn_meta, spark_meta)
    if differs is not None:
        raise ModelError(
            f"{version_dir} was not evaluated on the Spark model's held-out rows ({differs}); "
            "train both with the same data, --sample and --seed"
        )
    scorer = Scorer.load(version_dir)
    dataset = load_dataset(data_path)
    repeats = max(1, -(-rows // len(dataset)))
    frame = pd.concat([dataset] * repeats, ignore_index=True).iloc[:rows]
    throughput = {
        "sklearn": sklearn_rows_per_s(scorer, frame),
        "spark": spark_rows_per_s(spark, spark_model, frame),
    }
    payload = {
        "held_out": {
            "rows": spark_meta["data"]["test_rows"],
            "same_rows": True,
            "how": "stratified split of churnstream.model.train.held_out_split "
            f"(test_size {spark_meta['data']['test_size']}, "
            f"random_state {spark_meta['random_state']})",
        },
        "engines": {
            "sklearn": _engine_block(sklearn_meta, throughput["sklearn"]),
            "spark": _engine_block(spark_meta, throughput["spark"]),
        },
        "throughput": {
            "rows": len(frame),
            "sklearn": "Scorer.predict_features (the scoring core's model call), one process",
            "spark": f"PipelineModel.transform to the noop sink on {spark.sparkContext.master} "
            f"({spark.sparkContext.defaultParallelism} cores)",
            "runs": THROUGHPUT_RUNS,
            "statistic": "best run",
        },
        "replaced_system": spark_meta.get("replaced_system"),
    }
    reports_dir.mkdir(parents=True, exist_ok=True)
    json_path = artifacts.write_json(reports_dir / f"{REPORT_NAME}.json", payload)
    markdown_path = atomic_write_text(reports_dir / f"{REPORT_NAME}.md", render_markdown(payload))
    return Comparison(payload, json_path, markdown_path)


def _engine_block(metadata: Mapping[str, Any], rows_per_s: float) -> dict[str, Any]:
    test = metadata["metrics"]["test"]
    return {
        "version": metadata["version"],
        "algorithm": metadata["algorithm"],
        "metrics": {key: test[key] for key in METRIC_KEYS},
        "threshold": metadata["threshold"]["value"],
        "cv_roc_auc_mean": metadata["metrics"]["cv"]["roc_auc_mean"],
        "training_seconds": metadata["training_seconds"],
        "scoring_rows_per_s": rows_per_s,
    }


def render_markdown(payload: Mapping[str, Any]) -> str:
    """The report's Markdown, from its JSON alone."""
    sk, sp = payload["engines"]["sklearn"], payload["engines"]["spark"]
    lines = [
        "# scikit-learn vs Spark ML",
        "",
        f"Held-out rows: {payload['held_out']['rows']}, the same customers for both "
        f"({payload['held_out']['how']}).",
        "",
        f"| | scikit-learn `{sk['version']}` | Spark `{sp['version']}` |",
        "|---|---|---|",
        *(
            f"| {name} | {sk['metrics'][key]:.4f} | {sp['metrics'][key]:.4f} |"
            for name, key in (
                ("ROC AUC", "roc_auc"),
                ("PR AUC", "pr_auc"),
                ("Brier score (lower is better)", "brier"),
                ("F1 (churn)", "f1"),
                ("Precision (churn)", "precision"),
                ("Recall (churn)", "recall"),
                ("Accuracy", "accuracy"),
            )
        ),
        f"| CV ROC AUC (mean) | {sk['cv_roc_auc_mean']:.4f} | {sp['cv_roc_auc_mean']:.4f} |",
        f"| threshold | {sk['threshold']:.4f} | {sp['threshold']:.4f} |",
        f"| training, total (s) | {sk['training_seconds'].get('total', float('nan')):.1f} | "
        f"{sp['training_seconds'].get('total', float('nan')):.1f} |",
        f"| final fit (s) | {sk['training_seconds'].get('fit', float('nan')):.1f} | "
        f"{sp['training_seconds'].get('fit', float('nan')):.1f} |",
        f"| scoring (rows/s) | {sk['scoring_rows_per_s']:,.0f} | {sp['scoring_rows_per_s']:,.0f} |",
        "",
        f"Throughput on {payload['throughput']['rows']:,} rows, best of "
        f"{payload['throughput']['runs']}: scikit-learn {payload['throughput']['sklearn']}; "
        f"Spark {payload['throughput']['spark']}.",
    ]
    replaced = payload.get("replaced_system")
    if replaced:
        own, same = replaced["own_random_split"], replaced["held_out"]
        lines += [
            "",
            "## The replaced system's configuration",
            "",
            f"Spark's default forest ({replaced['params']['num_trees']} trees, depth "
            f"{replaced['params']['max_depth']}), no class weights:",
            "",
            f"- on its own random split ({own['split']}, {own['test_rows']} rows): "
            f"areaUnderROC {own['roc_auc']:.4f}, the only figure it reported;",
            f"- on the held-out rows above: ROC AUC {same['roc_auc']:.4f}, PR AUC "
            f"{same['pr_auc']:.4f}, Brier {same['brier']:.4f}.",
        ]
    return "\n".join(lines) + "\n"
