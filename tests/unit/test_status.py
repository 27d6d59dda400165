"""`churnstream status` helpers: lag arithmetic, dead-letter tallies, rendering. No broker."""

from __future__ import annotations

import json

import orjson
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from churnstream.cli import dashboard_cmd, report_cmd, status_cmd
from churnstream.cli._common import new_app
from churnstream.observability.status import (
    ClusterStatus,
    DeadLetterTally,
    GroupStatus,
    TopicLag,
    TopicStatus,
    error_type_of,
    group_lag,
    lag_rows,
    model_status,
)

RAW = "telco.raw.customers"


def app() -> typer.Typer:
    """The three commands as the root app registers them."""
    root = new_app("test")
    root.command("status")(status_cmd.status)
    root.command("report")(report_cmd.report)
    root.command("dashboard")(dashboard_cmd.dashboard)
    return root


def test_group_lag_per_topic_clamped_with_uncommitted_partitions() -> None:
    ends = {("raw", 0): 100, ("raw", 1): 50, ("raw", 2): 10, ("other", 0): 5}
    committed = {("raw", 0): 90, ("raw", 1): 60, ("raw", 2): -1001}

    assert group_lag(ends, committed) == (TopicLag("raw", lag=10, partitions=3, uncommitted=1),)
    assert group_lag(ends, {}) == ()
    # An end offset the broker did not give counts 0, never negative.
    assert group_lag({}, {("x", 0): 5}) == (TopicLag("x", 0, 1, 0),)


def letter(error_type: str | None) -> bytes:
    return orjson.dumps({"error_type": error_type, "error_message": "m"})


def test_dead_letter_tally_dedupes_on_source() -> None:
    tally = DeadLetterTally()
    src, code = "churnstream.source", "churnstream.error_code"
    invalid = letter("validation_error")
    assert tally.add([(src, b"raw:0:1"), (code, b"not_json")], invalid)
    assert not tally.add([(src, b"raw:0:1"), (code, b"not_json")], invalid)
    assert tally.add([(src, "raw:0:2"), (code, "inference")], letter("inference_error"))
    assert tally.add(None, b"garbage")  # no source: always counted
    assert tally.as_dict() == {
        "total": 3,
        "duplicates": 1,
        "by_type": {"inference_error": 1, "unreadable": 1, "validation_error": 1},
        "by_code": {"inference": 1, "not_json": 1, "unknown": 1},
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (letter("validation_error"), "validation_error"),
        (letter(None), "unreadable"),
        (b"[1]", "unreadable"),
        (b"{", "unreadable"),
        (None, "unreadable"),
    ],
)
def test_error_type_of(value: bytes | None, expected: str) -> None:
    assert error_type_of(value) == expected


def test_model_status() -> None:
    meta = {
        "version": "v1",
        "created_at": "2026-11-23T03:44:51Z",
        "threshold": {"value": 0.36},
        "summary_metrics": {"roc_auc": 0.8478},
    }
    status = model_status(meta, "/m/v1", None)
    assert (status.version, status.threshold, status.roc_auc) == ("v1", 0.36, 0.8478)
    missing = model_status(None, "models", "no model in models")
    assert missing.version is None and missing.error == "no model in models"


def sample_status() -> ClusterStatus:
    return ClusterStatus(
        bootstrap="127.0.0.1:19092",
        reachable=True,
        brokers=1,
        topics=[
            TopicStatus("telco.raw.customers", 3, (10, 20, 30), 60, "raw"),
            TopicStatus("[weird]", 1, (0,), 0),
        ],
        groups=[
            GroupStatus("churnstream-scorer", "stable", (TopicLag(RAW, 7, 3, 1),)),
            GroupStatus("idle", "empty", ()),
            GroupStatus("broken", "unknown", (), error="offsets unavailable: timeout"),
        ],
        model=model_status({"version": "v1", "threshold": {"value": 0.36}}, "/m/v1", None),
        dead_letters={
            "total": 2,
            "duplicates": 1,
            "by_type": {"validation_error": 2},
            "by_code": {"schema": 2},
        },
        deadletter_topic="telco.deadletter",
    )


def test_lag_rows() -> None:
    rows = lag_rows(sample_status().groups)
    assert rows == [
        ("broken", "unknown", "-", "-", "offsets unavailable: timeout"),
        ("churnstream-scorer", "stable", RAW, "7", "1 partition(s) never committed"),
        ("idle", "empty", "-", "-", "no committed offsets"),
    ]


def test_status_as_dict_is_json() -> None:
    data = sample_status().as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["topics"][0]["end_offset_total"] == 60
    assert data["groups"][0]["total_lag"] == 7


def test_render_shows_everything_literally() -> None:
    console = Console(record=True, width=140)
    status_cmd.render(sample_status(), console)
    text = console.export_text()
    for expected in (
        "reachable (1 broker(s))",
        "model    v1, threshold 0.3600",
        "telco.raw.customers",
        "10 20 30",
        "[weird]",  # not swallowed as markup
        "churnstream-scorer",
        "dead letters in telco.deadletter: 2 (1 duplicate(s) skipped)",
        "by type: validation_error 2",
    ):
        assert expected in text, expected


def test_status_command_with_no_broker_exits_3() -> None:
    result = CliRunner().invoke(
        app(), ["status", "--broker", "127.0.0.1:1", "--timeout", "0.5", "--no-dead-letters"]
    )
    assert result.exit_code == 3, result.output
    assert "UNREACHABLE" in result.output
    json_result = CliRunner().invoke(
        app(), ["status", "--broker", "127.0.0.1:1", "--timeout", "0.5", "--json"]
    )
    assert json_result.exit_code == 3
    assert json.loads(json_result.output)["reachable"] is False
