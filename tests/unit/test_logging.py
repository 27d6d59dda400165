"""Log formats: JSON lines carry a millisecond UTC timestamp and the structured fields; the text
format for people is pinned as it was."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from churnstream.logging import (
    BATCH_SIZE,
    ERROR_CODE,
    LIBRDKAFKA_LOG,
    LOG_FIELDS,
    MODEL_VERSION,
    OFFSET,
    OFFSETS,
    PARTITION,
    TOPIC,
    JsonFormatter,
    configure_logging,
)

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
FIELDS = {
    TOPIC: "churn.raw",
    PARTITION: 2,
    OFFSET: 41,
    OFFSETS: {0: 10, 2: 42},
    BATCH_SIZE: 500,
    MODEL_VERSION: "20261127T120000Z",
    ERROR_CODE: "not_json",
}


def emit(**extra: object) -> None:
    logging.getLogger("churnstream.test").warning(
        "dead-lettered %s[%d]@%d: %s", "churn.raw", 2, 41, "not_json", extra=extra
    )


def test_json_line_has_ms_utc_time_level_logger_message_and_fields(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log_file = tmp_path / "scorer.log"
    configure_logging(fmt="json", log_file=log_file)
    before = datetime.now(UTC)
    emit(**FIELDS, color_message="not ours")  # extras outside LOG_FIELDS stay out
    console = capsys.readouterr().err.strip().splitlines()
    assert len(console) == 1
    for line in (console[0], log_file.read_text(encoding="utf-8").strip()):
        record = json.loads(line)
        assert TS.fullmatch(record["ts"]), record["ts"]
        stamped = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs((stamped - before).total_seconds()) < 5
        assert record == {
            "ts": record["ts"],
            "level": "WARNING",
            "logger": "churnstream.test",
            "message": "dead-lettered churn.raw[2]@41: not_json",
            **FIELDS,
            OFFSETS: {"0": 10, "2": 42},  # JSON object keys are strings
        }
        assert list(record)[:4] == ["ts", "level", "logger", "message"]
    # The console and the file render the same record with the same time.
    assert json.loads(console[0])["ts"] == json.loads(log_file.read_text())["ts"]


def test_json_ts_is_exactly_milliseconds_even_on_a_whole_second() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    record.created = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC).timestamp()
    assert json.loads(JsonFormatter().format(record))["ts"] == "2026-11-27T12:00:00.000Z"
    record.created += 0.1239
    assert json.loads(JsonFormatter().format(record))["ts"] == "2026-11-27T12:00:00.123Z"


def test_json_exception_goes_to_exc(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("churnstream.test").exception("failed", extra={ERROR_CODE: "x"})
    record = json.loads(capsys.readouterr().err)
    assert record["message"] == "failed" and record[ERROR_CODE] == "x"
    assert "ValueError: boom" in record["exc"] and "Traceback" in record["exc"]


def test_log_fields_are_the_agreed_names() -> None:
    assert {TOPIC, PARTITION, OFFSET, OFFSETS, BATCH_SIZE, MODEL_VERSION, ERROR_CODE} == {
        "topic",
        "partition",
        "offset",
        "offsets",
        "batch_size",
        "model_version",
        "error_code",
    }
    assert len(set(LOG_FIELDS)) == len(LOG_FIELDS)
    reserved = set(logging.LogRecord("x", 0, "", 0, "", (), None).__dict__) | {"message"}
    assert not reserved & set(LOG_FIELDS)  # usable as extra= keys


def test_text_format_is_unchanged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log_file = tmp_path / "scorer.log"
    configure_logging(fmt="text", log_file=log_file)
    emit(**FIELDS)
    line = log_file.read_text(encoding="utf-8")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING churnstream.test: "
        r"dead-lettered churn\.raw\[2\]@41: not_json\n",
        line,
    ), line
    console = capsys.readouterr().err
    assert "WARNING" in console and "dead-lettered churn.raw[2]@41: not_json" in console
    assert "{" not in console and "error_code" not in console


@pytest.mark.parametrize(
    ("python_level", "expected"),
    [
        (logging.CRITICAL, logging.WARNING),
        (logging.ERROR, logging.WARNING),
        (logging.WARNING, logging.INFO),
        (logging.INFO, logging.INFO),
        (logging.DEBUG, logging.DEBUG),
    ],
)
def test_librdkafka_levels_arrive_as_python_levels(
    python_level: int, expected: int, caplog: pytest.LogCaptureFixture
) -> None:
    """confluent-kafka maps librdkafka's syslog levels to Python's before calling log()."""
    caplog.set_level(logging.DEBUG, logger="churnstream.librdkafka")
    LIBRDKAFKA_LOG.log(python_level, "%s|%s", "FAIL", "broker down")
    assert [r.levelno for r in caplog.records] == [expected]
