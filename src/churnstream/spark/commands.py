"""What ``consume --engine spark`` does behind its CLI flags, and the session helper every
Spark command shares (a session from :mod:`churnstream.spark.session`, stopped on exit).

Nothing here imports the trainer: ``consume`` must never load matplotlib."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnstream.settings import Settings
from churnstream.spark.session import SparkOptions, build_session, preflight

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from churnstream.spark.kafka_batch import SparkBatchSummary

logger = logging.getLogger(__name__)

#: Pandas <-> Spark conversions through Arrow (training data in, probabilities out).
ARROW_CONF = {"spark.sql.execution.arrow.pyspark.enabled": "true"}


@contextmanager
def spark_session(
    master: str | None, conf: Mapping[str, str], app_name: str
) -> Iterator[SparkSession]:
    """A session with our defaults under the user's ``--spark-conf``; stopped on exit."""
    session = build_session(spark_options(master, conf, app_name))
    try:
        yield session
    finally:
        session.stop()


def spark_options(master: str | None, conf: Mapping[str, str], app_name: str) -> SparkOptions:
    return SparkOptions(master=master, conf={**ARROW_CONF, **conf}, app_name=app_name)


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
    from churnstream.spark.kafka_security import REDACTION_REGEX, spark_kafka_options

    # What Spark's Java client cannot be given is one line now, not a failed query later.
    spark_kafka_options(settings.kafka)
    jars_dir = settings.spark.jars_dir
    jars = fetch_connector_jars(jars_dir) if fetch_jars else connector_jars(jars_dir)
    conf = {
        "spark.jars": ",".join(str(j) for j in jars),
        "spark.sql.redaction.options.regex": REDACTION_REGEX,
        **conf,
    }
    # Java, the master and the jars, before the model loads and a JVM starts.
    preflight(spark_options(master, conf, "churnstream-consume"))
    scorer = Scorer.load(model_path)
    topics = settings.topics
    create_topics(settings.kafka, [topics.raw, topics.predictions, topics.deadletter])
    with spark_session(master, conf, "churnstream-consume") as spark:
        return run_spark_batch(
            spark,
            settings,
            scorer,
            checkpoint=checkpoint or settings.spark.checkpoint_location,
            max_offsets_per_trigger=max_offsets_per_trigger,
            on_window=on_window,
        )
