"""What ``train --engine spark`` and ``consume --engine spark`` do, behind their CLI flags:
a session from :mod:`churnstream.spark.session`, the work, and the session stopped."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnstream.model import artifacts
from churnstream.settings import Settings
from churnstream.spark.session import SparkOptions, build_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from churnstream.spark.compare import Comparison
    from churnstream.spark.kafka_batch import SparkBatchSummary
    from churnstream.spark.train import ForestParams, SparkTrainRun

logger = logging.getLogger(__name__)

#: Pandas <-> Spark conversions through Arrow (training data in, probabilities out).
ARROW_CONF = {"spark.sql.execution.arrow.pyspark.enabled": "true"}


@contextmanager
def spark_session(
    master: str | None, conf: Mapping[str, str], app_name: str
) -> Iterator[SparkSession]:
    """A session with our defaults under the user's ``--spark-conf``; stopped on exit."""
    session = build_session(
        SparkOptions(master=master, conf={**ARROW_CONF, **conf}, app_name=app_name)
    )
    try:
        yield session
    finally:
        session.stop()


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


def consume_on_spark(
    settings: Settings,
    *,
    master: str | None,
    conf: Mapping[str, str],
    model_path: Path,
    checkpoint: Path | None = None,
    fetch_jars: bool = False,
    max_offsets_per_trigger: int | None = None,
    on_window: Callable[[dict[str, Any]], None] | None = None,
) -> SparkBatchSummary:
    """Score the raw topic's backlog on Spark (see :mod:`churnstream.spark.kafka_batch`)."""
    from churnstream.kafka.admin import create_topics
    from churnstream.model.scorer import Scorer
    from churnstream.spark.jars import connector_jars, fetch_connector_jars
    from churnstream.spark.kafka_batch import run_spark_batch

    jars_dir = settings.spark.jars_dir
    jars = fetch_connector_jars(jars_dir) if fetch_jars else connector_jars(jars_dir)
    scorer = Scorer.load(model_path)
    topics = settings.topics
    create_topics(settings.kafka, [topics.raw, topics.predictions, topics.deadletter])
    jar_conf = {"spark.jars": ",".join(str(j) for j in jars)}
    with spark_session(master, {**jar_conf, **conf}, "churnstream-consume") as spark:
        return run_spark_batch(
            spark,
            settings,
            scorer,
            checkpoint=checkpoint or settings.spark.checkpoint_location,
            max_offsets_per_trigger=max_offsets_per_trigger,
            on_window=on_window,
        )
