"""`--log-format json` through the CLI on a real broker: a dead letter's warning carries where
the message was and why, as fields of its own."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from tests.integration.cli_runs import consume_args
from tests.integration.kafka_io import send_raw
from tests.unit.test_schemas import EVENT

pytestmark = pytest.mark.integration

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_dead_letter_warning_line_carries_topic_partition_offset_and_code(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw, preds, dlq = topic_factory(partitions=1), topic_factory(partitions=1), topic_factory(1)
    good = [(b"7590-VHVEG", orjson.dumps({**EVENT, "tenure": t})) for t in range(3)]
    send_raw(kafka_bootstrap, raw, [*good[:2], (b"x", b"not json at all"), good[2]])
    monkeypatch.setenv("CHURNSTREAM_PATHS__LOGS_DIR", str(tmp_path / "logs"))

    result = CliRunner().invoke(
        app,
        [
            "--log-format",
            "json",
            *consume_args(kafka_bootstrap, raw, preds, dlq, model_dir, tmp_path / "reports"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "consumed 4, scored 3, dead-lettered 1" in result.stdout

    log_file = tmp_path / "logs" / "scorer.log"
    for where, text in (("stderr", result.stderr), ("scorer.log", log_file.read_text())):
        records = [json.loads(line) for line in text.splitlines() if line]  # all JSON
        assert records, where
        assert all(TS.fullmatch(r["ts"]) for r in records), where
        letters = [r for r in records if r["message"].startswith("dead-lettered")]
        assert len(letters) == 1, (where, records)
        letter = letters[0]
        assert letter["level"] == "WARNING"
        assert letter["logger"] == "churnstream.scoring.dead_letter"
        assert (letter["topic"], letter["partition"], letter["offset"]) == (raw, 0, 2)
        assert letter["error_code"] == "not_json"
