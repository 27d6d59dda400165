"""The flags of the commands with a Spark engine: --engine, --master, --spark-conf, and the
Spark source's --checkpoint-location and --fetch-jars (consume and spark-consume)."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated, Any

import typer

from churnstream.exceptions import DataError

logger = logging.getLogger(__name__)


class Engine(StrEnum):
    """Where a batch command runs: one pandas process, or Spark (local or a cluster)."""

    PANDAS = "pandas"
    SPARK = "spark"


def engine_option(help_text: str) -> Any:
    """``--engine``: pandas or spark; each command says what the two mean for it."""
    return typer.Option("--engine", help=help_text)


def checkpoint_location_option(help_text: str) -> Any:
    """``--checkpoint-location``: where the Spark Kafka source keeps its progress."""
    return typer.Option("--checkpoint-location", help=help_text)


def fetch_jars_option(help_text: str) -> Any:
    """``--fetch-jars``: download the Spark Kafka connector's jars before the run."""
    return typer.Option("--fetch-jars", help=help_text)


EngineOption = Annotated[
    Engine, engine_option("pandas (one process) or spark (local[*] or a cluster).")
]
MasterOption = Annotated[
    str | None,
    typer.Option(
        "--master",
        help="Spark master URL (with --engine spark); default: spark-submit's, $MASTER, "
        "else local[*].",
    ),
]
SparkConfOption = Annotated[
    list[str] | None,
    typer.Option(
        "--spark-conf", help="Spark property KEY=VALUE (with --engine spark); repeatable."
    ),
]


def spark_options_only_with_spark(
    engine: Engine, master: str | None, spark_conf: list[str] | None
) -> None:
    """--master and --spark-conf mean nothing to the pandas engine: say so, not ignore them."""
    if engine is not Engine.SPARK and (master or spark_conf):
        raise DataError("--master and --spark-conf need --engine spark")
