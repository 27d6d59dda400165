"""The churnstream CLI run in-process (CliRunner), with the batch produce and consume command
lines that several test modules share."""

from __future__ import annotations

import uuid
from pathlib import Path

from typer.testing import CliRunner

from churnstream.cli import app


def invoke(args: list[str]) -> str:
    """Run ``churnstream ARGS``; its output, once it has exited 0."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result.output


def produce_batch_args(broker: str, topic: str, data: Path, checkpoint: Path) -> list[str]:
    """``produce --mode batch`` of the file ``data`` to ``topic``, resumable from ``checkpoint``."""
    return [
        "produce", "--mode", "batch", "--broker", broker, "--topic", topic,
        "--data-path", str(data), "--checkpoint-file", str(checkpoint), "--no-progress",
    ]  # fmt: skip


def consume_args(
    broker: str,
    raw: str,
    preds: str,
    dlq: str,
    model_dir: Path,
    reports_dir: Path | None,
    group: str | None = None,
) -> list[str]:
    """``consume --mode batch`` until 4 s idle, in a fresh group unless ``group`` is given;
    window reports to ``reports_dir`` (None: ``--no-reports``)."""
    reports = ["--no-reports"] if reports_dir is None else ["--reports-dir", str(reports_dir)]
    return [
        "consume", "--mode", "batch", "--broker", broker, "--input-topic", raw,
        "--output-topic", preds, "--deadletter-topic", dlq,
        "--consumer-group", group or f"g-{uuid.uuid4().hex[:8]}",
        "--model-path", str(model_dir), "--timeout-ms", "4000", *reports,
    ]  # fmt: skip
