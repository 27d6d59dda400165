"""Alert thresholds on window summaries (pure) and `churnstream check` through CliRunner."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from churnstream.cli import check_cmd
from churnstream.cli._common import new_app
from churnstream.settings.sections import ObservabilitySettings
from churnstream.windows.fields import SUMMARY_KEYS, SUMMARY_SCHEMA_VERSION
from churnstream.windows.thresholds import (
    DEFAULT_MAX_DLQ_RATE,
    Thresholds,
    evaluate,
    latest_summary_name,
)

ENDED = "2026-11-23T04:36:45.204Z"


def drift_block(
    *,
    shift: float | None = 0.01,
    psi: dict[str, float | None] | None = None,
    evaluated: bool = True,
    samples: int = 7043,
) -> dict[str, Any]:
    """A drift block shaped like churnstream.windows.drift.drift_block's."""
    psi = {"tenure": 0.008, "Contract": 0.003} if psi is None else psi
    expected = 0.30
    return {
        "available": True,
        "reference_model_version": "v1",
        "samples": samples,
        "min_samples": 200,
        "evaluated": evaluated,
        "psi_threshold": 0.2,
        "max_psi": max((v for v in psi.values() if v is not None), default=None),
        "drifted_features": [],
        "features": {
            name: {"kind": "numeric", "psi": v, "drifted": False} for name, v in psi.items()
        },
        "churn_rate": {
            "expected": expected,
            "observed": None if shift is None else expected + shift,
            "shift": shift,
            "tolerance": 0.1,
            "basis": "test",
            "drifted": False,
        },
        "drifted": False,
    }


def summary(
    consumed: int = 1000,
    dead: int = 0,
    *,
    drift: dict[str, Any] | None = None,
    ended_at: str = ENDED,
) -> dict[str, Any]:
    """A minimal window summary: every key reports need, the counts and drift under test."""
    data: dict[str, Any] = {key: {} for key in SUMMARY_KEYS}
    data.update(
        schema_version=SUMMARY_SCHEMA_VERSION,
        window={"started_at": ENDED, "ended_at": ended_at, "duration_s": 1.0, "mode": "batch"},
        model_version="v1",
        top_risk=[],
        counts={
            "consumed": consumed,
            "scored": consumed - dead,
            "duplicates_skipped": 0,
            "dead_lettered": dead,
            "dead_letters_by_type": {"inference_error": 0, "validation_error": dead},
            "dead_letters_by_code": {"schema": dead} if dead else {},
        },
        churn={"predicted_churn_count": 0, "predicted_churn_rate": 0.3, "mean_probability": 0.3},
    )
    if drift is not None:
        data["drift"] = drift
    return data


# -- evaluate -----------------------------------------------------------------------------------


def test_a_clean_window_passes_every_check() -> None:
    result = evaluate(summary(drift=drift_block()), Thresholds())
    assert result.ok
    assert {f.check for f in result.findings} == {"dlq_rate", "churn_shift", "psi"}
    assert [f.subject for f in result.findings if f.check == "psi"] == [
        "PSI of Contract",
        "PSI of tenure",
    ]
    assert result.notes == []


def test_dead_letter_rate_above_the_limit_is_one_crossed_line_with_the_types() -> None:
    result = evaluate(summary(1000, 60), Thresholds(max_dlq_rate=0.05))
    (crossed,) = result.crossed
    assert crossed.check == "dlq_rate"
    assert crossed.value == pytest.approx(0.06)
    assert crossed.line() == (
        "dead-letter rate 0.0600 > 0.05 "
        "(60 of 1,000 consumed messages dead-lettered: validation_error 60)"
    )


def test_the_limit_itself_is_not_crossed_and_zero_means_any_dead_letter_fails() -> None:
    assert evaluate(summary(1000, 50), Thresholds(max_dlq_rate=0.05)).ok
    assert evaluate(summary(1000, 0), Thresholds(max_dlq_rate=0.0)).ok
    assert not evaluate(summary(1000, 1), Thresholds(max_dlq_rate=0.0)).ok


def test_an_empty_window_has_no_dlq_rate_unless_a_minimum_is_asked_for() -> None:
    empty = evaluate(summary(0, 0), Thresholds())
    assert empty.ok
    assert "the window consumed no message" in empty.notes[0]
    strict = evaluate(summary(0, 0), Thresholds(min_consumed=1))
    assert [f.line() for f in strict.crossed] == ["consumed messages 0 < 1"]


@pytest.mark.parametrize("shift", [0.15, -0.15])
def test_churn_rate_shift_is_checked_in_both_directions(shift: float) -> None:
    result = evaluate(summary(drift=drift_block(shift=shift)), Thresholds(max_churn_shift=0.1))
    (crossed,) = result.crossed
    assert crossed.check == "churn_shift"
    assert crossed.value == pytest.approx(0.15)
    assert f"{shift:+.4f}" in crossed.line()


def test_psi_is_recomputed_against_our_limit_not_the_scorers_flags() -> None:
    drift = drift_block(psi={"tenure": 3.2, "Contract": 0.15, "PaymentMethod": None})
    result = evaluate(summary(drift=drift), Thresholds(max_psi=0.1))
    assert sorted(f.subject for f in result.crossed) == ["PSI of Contract", "PSI of tenure"]
    assert "PSI of PaymentMethod not checked: not computed" in result.notes
    assert evaluate(summary(drift=drift), Thresholds(max_psi=5.0)).ok


def test_drift_of_a_window_too_small_to_evaluate_is_skipped_with_a_note() -> None:
    drift = drift_block(shift=0.5, psi={"tenure": 9.0}, evaluated=False, samples=50)
    result = evaluate(summary(50, 0, drift=drift), Thresholds())
    assert result.ok
    assert result.notes == [
        "drift not checked: 50 scored messages, fewer than the 200 the scorer evaluates"
    ]


@pytest.mark.parametrize(
    ("drift", "note"),
    [
        (None, "drift not checked: the summary has no drift block"),
        ({"available": False, "reason": "no profile"}, "drift not checked: no profile"),
    ],
)
def test_missing_drift_is_a_note_not_a_failure(drift: dict[str, Any] | None, note: str) -> None:
    result = evaluate(summary(drift=drift), Thresholds())
    assert result.ok
    assert result.notes == [note]


def test_unknown_churn_shift_is_a_note() -> None:
    result = evaluate(summary(drift=drift_block(shift=None)), Thresholds())
    assert "churn-rate shift not checked: no expected or observed rate" in result.notes


def test_window_age() -> None:
    ended = datetime(2026, 11, 23, 4, 36, 45, tzinfo=UTC)
    data = summary(ended_at="2026-11-23T04:36:45.000Z")
    fresh = evaluate(data, Thresholds(max_age_s=300), now=ended + timedelta(seconds=299))
    assert fresh.ok
    stale = evaluate(data, Thresholds(max_age_s=300), now=ended + timedelta(seconds=301))
    assert [f.line() for f in stale.crossed] == [
        "window age 301s > 300s (window ended 2026-11-23T04:36:45.000Z)"
    ]
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(data, Thresholds(max_age_s=300))


def test_not_a_summary_and_bad_limits_are_value_errors() -> None:
    with pytest.raises(ValueError, match="counts.consumed"):
        evaluate({"window": {}}, Thresholds())
    with pytest.raises(ValueError, match="max_psi"):
        Thresholds(max_psi=-1)
    with pytest.raises(ValueError, match="max_age_s"):
        Thresholds(max_age_s=0)


def test_defaults_come_from_the_observability_settings_unless_overridden() -> None:
    obs = ObservabilitySettings(drift_psi_threshold=0.3, drift_churn_rate_tolerance=0.07)
    t = Thresholds.from_settings(obs)
    assert (t.max_dlq_rate, t.max_churn_shift, t.max_psi) == (DEFAULT_MAX_DLQ_RATE, 0.07, 0.3)
    t = Thresholds.from_settings(obs, max_dlq_rate=0.0, max_psi=1.0, min_consumed=5)
    assert (t.max_dlq_rate, t.max_psi, t.min_consumed) == (0.0, 1.0, 5)


def test_as_dict_is_json_and_lists_the_crossed_lines() -> None:
    data = evaluate(summary(100, 10), Thresholds()).as_dict()
    assert json.loads(json.dumps(data))["ok"] is False
    assert data["crossed"] == [
        "dead-letter rate 0.1000 > 0.05 "
        "(10 of 100 consumed messages dead-lettered: validation_error 10)"
    ]


def test_latest_summary_is_chosen_by_window_end_then_suffix() -> None:
    names = [
        "summary_20261123T040000Z.json",
        "summary_20261123T050000Z.md",
        "summary_20261123T045959Z.json",
        "summary_20261123T045959Z_2.json",
        "summary_20261123T045959Z_10.json",
        "summary_20261123T045959Z_risk.png",
        "notes.json",
    ]
    assert latest_summary_name(names) == "summary_20261123T045959Z_10.json"
    assert latest_summary_name(["README.md"]) is None


# -- the command --------------------------------------------------------------------------------


def app() -> typer.Typer:
    root = new_app("test")
    root.command("check")(check_cmd.check)
    root.command("other")(lambda: None)  # two commands, so "check" stays a subcommand
    return root


def write(directory: Path, name: str, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_check_passes_and_prints_one_line_per_check(tmp_path: Path) -> None:
    path = write(tmp_path, "summary_20261123T043645Z.json", summary(drift=drift_block()))
    result = CliRunner().invoke(app(), ["check", "--summary", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith(f"checked {path}")
    assert "ok       dead-letter rate 0.0000 <= 0.05" in result.stdout
    assert "CROSSED" not in result.output


def test_check_exits_3_with_one_stderr_line_per_crossed_threshold(tmp_path: Path) -> None:
    drift = drift_block(shift=0.2, psi={"tenure": 1.5, "Contract": 0.01})
    path = write(tmp_path, "summary_20261123T043645Z.json", summary(1000, 100, drift=drift))
    result = CliRunner().invoke(app(), ["check", "--summary", str(path), "--max-psi", "0.2"])
    assert result.exit_code == check_cmd.EXIT_CROSSED
    crossed = result.stderr.splitlines()
    assert [line.split()[1:3] for line in crossed] == [
        ["dead-letter", "rate"],
        ["churn-rate", "shift"],
        ["PSI", "of"],
    ]
    assert all(line.startswith("CROSSED  ") for line in crossed)


def test_check_latest_picks_the_newest_in_reports_dir(tmp_path: Path) -> None:
    write(tmp_path, "summary_20261123T040000Z.json", summary(100, 50))
    newest = write(tmp_path, "summary_20261123T050000Z.json", summary(100, 0))
    result = CliRunner().invoke(app(), ["check", "--latest", "--reports-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert str(newest) in result.stdout
    result = CliRunner().invoke(
        app(), ["check", "--latest", "--reports-dir", str(tmp_path), "--json"]
    )
    payload = json.loads(result.stdout)
    assert payload["ok"] is True and payload["summary"] == str(newest)


def test_check_latest_reports_dir_defaults_to_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "r", "summary_20261123T040000Z.json", summary(100, 50))
    monkeypatch.setenv("CHURNSTREAM_PATHS__REPORTS_DIR", str(tmp_path / "r"))
    result = CliRunner().invoke(app(), ["check", "--latest"])
    assert result.exit_code == check_cmd.EXIT_CROSSED


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "give either --summary FILE or --latest"),
        (["--latest", "--summary", "x.json"], 2, "give either --summary FILE or --latest"),
        (["--summary", "{tmp}/nope.json"], 1, "does not exist"),
        (["--latest", "--reports-dir", "{tmp}/none"], 1, "does not exist"),
        (["--latest", "--reports-dir", "{tmp}"], 1, "no window summary"),
    ],
)
def test_check_usage_and_missing_files_are_one_line_errors(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    argv = ["check", *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    result = CliRunner().invoke(app(), argv)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output
