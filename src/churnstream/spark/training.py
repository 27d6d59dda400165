"""What ``train --engine spark`` does behind its CLI flags: train, write the version, then
the comparison report with a scikit-learn version trained on the same rows."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from churnstream.model import artifacts
from churnstream.settings import Settings
from churnstream.spark.commands import spark_options, spark_session
from churnstream.spark.session import preflight

if TYPE_CHECKING:
    from churnstream.spark.compare import Comparison
    from churnstream.spark.train import ForestParams, SparkTrainRun

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SparkTraining:
    run: SparkTrainRun
    comparison: Comparison | None
    #: Why no comparison was written, when it was not.
    comparison_skipped: str | None


def train_on_spark(
    settings: Settings,
    *,
    master: str | None,
    conf: Mapping[str, str],
    data_path: Path | None = None,
    sample: int | None = None,
    compare_with: Path | None = None,
    params: ForestParams | None = None,
    throughput_rows: int | None = None,
) -> SparkTraining:
    """Train on Spark, write the version, then the comparison with a scikit-learn version
    (``compare_with``, else ``models/latest``) when one was trained on the same rows."""
    from churnstream.spark.compare import THROUGHPUT_ROWS, compare
    from churnstream.spark.train import run_spark_training

    model = settings.model
    data = data_path or settings.paths.raw_csv
    preflight(spark_options(master, conf, "churnstream-train"))  # before a JVM starts
    with spark_session(master, conf, "churnstream-train") as spark:
        run = run_spark_training(
            spark,
            data,
            model.models_dir,
            random_state=model.random_state,
            test_size=model.test_size,
            cv_folds=model.cv_folds,
            sample=sample,
            params=params,
        )
        baseline = compare_with or model.models_dir
        if not artifacts.has_model(baseline):
            skipped = (
                f"no scikit-learn model at {baseline} to compare with; run `churnstream train` "
                "(same --sample and --seed) and train on Spark again"
            )
            return SparkTraining(run, None, skipped)
        comparison = compare(
            spark,
            run.trained.model,
            run.metadata,
            baseline,
            data,
            settings.paths.reports_dir,
            rows=throughput_rows or THROUGHPUT_ROWS,
        )
    return SparkTraining(run, comparison, None)
