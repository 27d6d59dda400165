"""The flags every command with a Spark engine takes: --engine, --master, --spark-conf."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated

import typer

from churnstream.exceptions import DataError

logger = logging.getLogger(__name__)


class Engine(StrEnum):
    """Where a batch command runs: one pandas process, or Spark (local or a cluster)."""

    PANDAS = "pandas"
    SPARK = "spark"


EngineOption = Annotated[
    Engine, typer.Option("--engine", help="pandas (one process) or spark (local[*] or a cluster).")
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
