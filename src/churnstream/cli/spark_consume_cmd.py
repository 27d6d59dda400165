"""`churnstream spark-consume`: what `consume --mode batch --engine spark` runs.

The scorer process stays lean (no pandas, pyarrow or scikit-learn in ``consume``'s imports:
the import-linter contract and tests/integration/test_lean_scorer.py). A Spark run needs all
three in the driver, so ``consume --engine spark`` checks its flags and then replaces its own
process image with this command (``os.execv``: same pid, same signals and exit code); this
module is where the Spark driver's imports start. It is hidden: ``consume --engine spark`` is
the documented entry point.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from churnstream.cli._common import init_logging
from churnstream.cli.options import (
    BrokerOption,
    DeadletterTopicOption,
    ReportsDirOption,
    effective_settings,
    model_path_option,
    setting_option,
)
from churnstream.cli.spark_options import MasterOption, SparkConfOption

logger = logging.getLogger(__name__)

COMMAND = "spark-consume"


def spark_consume(
    ctx: typer.Context,
    broker: BrokerOption = None,
    input_topic: Annotated[str | None, setting_option("topics.raw", "--input-topic")] = None,
    output_topic: Annotated[
        str | None, setting_option("topics.predictions", "--output-topic")
    ] = None,
    deadletter_topic: DeadletterTopicOption = None,
    consumer_group: Annotated[
        str | None, setting_option("consumer.group_id", "--consumer-group")
    ] = None,
    model_path: Annotated[
        Path | None, model_path_option("Model version dir or models root.")
    ] = None,
    batch_records: Annotated[
        int | None, typer.Option("--batch-records", help="Micro-batch size cap.", min=1)
    ] = None,
    reports_dir: ReportsDirOption = None,
    reports: Annotated[
        bool, typer.Option("--reports/--no-reports", help="Write summary files.")
    ] = True,
    master: MasterOption = None,
    spark_conf: SparkConfOption = None,
    checkpoint_location: Annotated[
        Path | None,
        typer.Option("--checkpoint-location", help="Spark's checkpoint; a re-run resumes."),
    ] = None,
    fetch_jars: Annotated[
        bool, typer.Option("--fetch-jars", help="Download the Kafka connector's jars first.")
    ] = False,
) -> None:
    """The backlog through Spark (batch only, at-least-once); see `consume --engine spark`."""
    from churnstream.reports.writer import SummaryWriter
    from churnstream.spark.commands import consume_on_spark
    from churnstream.spark.session import parse_conf

    settings = effective_settings(
        {
            "topics.raw.name": input_topic,
            "topics.predictions.name": output_topic,
            "topics.deadletter.name": deadletter_topic,
            "consumer.group_id": consumer_group,
            "model.models_dir": model_path,
            "paths.reports_dir": reports_dir,
            "spark.checkpoint_location": checkpoint_location,
        },
        broker=broker,
        kafka=True,
    )
    init_logging(ctx, "scorer", settings)
    # The renderer starts with the first window: a bad flag or a missing jar is then one line.
    writer = SummaryWriter(settings.paths.reports_dir) if reports else None
    try:
        summary = consume_on_spark(
            settings,
            master=master,
            conf=parse_conf(spark_conf or []),
            model_path=settings.model.models_dir,
            fetch_jars=fetch_jars,
            max_offsets_per_trigger=batch_records,
            on_window=writer,
        )
    finally:
        if writer is not None:
            writer.close()
    typer.echo(summary.line())
    if writer is not None and writer.paths:
        typer.echo(f"reports: {', '.join(str(p) for p in writer.paths[-2:])}")
