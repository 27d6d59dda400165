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
from typing import Annotated, Any

import typer

from churnstream.cli._common import echo_run_end
from churnstream.cli.consume_cmd import consume
from churnstream.cli.options import SCORER_SETTINGS, flags_of, kafka_command_settings
from churnstream.cli.spark_options import checkpoint_location_option, fetch_jars_option

logger = logging.getLogger(__name__)

COMMAND = "spark-consume"
#: The settings spark-consume's flags override, by parameter name (--batch-records is the
#: Spark source's maxOffsetsPerTrigger instead).
SPARK_CONSUME_SETTINGS = {**SCORER_SETTINGS, "checkpoint_location": "spark.checkpoint_location"}
#: The flags spark-consume takes from consume (consume_cmd.spark_consume_argv passes them on
#: by name); --checkpoint-location and --fetch-jars are its own, with help that does not say
#: "with --engine spark".
CONSUME_FLAGS = {
    "broker",
    "input_topic",
    "output_topic",
    "deadletter_topic",
    "consumer_group",
    "model_path",
    "batch_records",
    "reports_dir",
    "reports",
    "master",
    "spark_conf",
}


@flags_of(consume, CONSUME_FLAGS)
def spark_consume(
    ctx: typer.Context,
    checkpoint_location: Annotated[
        Path | None, checkpoint_location_option("Spark's checkpoint; a re-run resumes.")
    ] = None,
    fetch_jars: Annotated[
        bool, fetch_jars_option("Download the Kafka connector's jars first.")
    ] = False,
    **flags: Any,
) -> None:
    """The backlog through Spark (batch only, at-least-once); see `consume --engine spark`."""
    from churnstream.reports.writer import SummaryWriter
    from churnstream.spark.commands import consume_on_spark
    from churnstream.spark.session import parse_conf

    settings = kafka_command_settings(ctx, "scorer", SPARK_CONSUME_SETTINGS)
    # The renderer starts with the first window: a bad flag or a missing jar is then one line.
    writer = SummaryWriter(settings.paths.reports_dir) if flags["reports"] else None
    try:
        summary = consume_on_spark(
            settings,
            master=flags["master"],
            conf=parse_conf(flags["spark_conf"] or []),
            model_path=settings.model.models_dir,
            fetch_jars=fetch_jars,
            max_offsets_per_trigger=flags["batch_records"],
            on_window=writer,
        )
    finally:
        if writer is not None:
            writer.close()
    echo_run_end(summary.line(), writer)
