"""Report charts (latency histogram, drift section) and `churnstream report` re-rendering."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from churnstream.reports.files import load_summary
from churnstream.reports.render import render_summary, write_summary
from churnstream.windows.drift import DriftReference
from churnstream.windows.fields import LATENCY_BIN_EDGES_MS
from churnstream.windows.stats import WindowStats
from tests.unit.test_reports import PNG_MAGIC, T0, _scored, make_summary
from tests.unit.test_status import app

IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def drift_summary() -> dict[str, object]:
    stats = WindowStats()
    frame = _scored([("7590-VHVEG", "Month-to-month", "DSL", 0.91, 1)] * 1)
    frame["tenure"] = 2
    frame["MonthlyCharges"] = 70.0
    stats.add_scored(frame)
    reference = DriftReference(
        model_version="m-ref",
        numeric={"tenure": ((0.0, 12.0, 72.0), (0.5, 0.5))},
        categorical={"Contract": {"Month-to-month": 0.5, "One year": 0.25, "Two year": 0.25}},
        expected_churn_rate=0.32,
        churn_rate_basis="held-out",
        min_samples=1,
    )
    return stats.summary(
        T0, T0 + timedelta(seconds=5), top_k=3, model_version="m1", mode="batch", drift=reference
    )


def test_summary_has_a_latency_histogram() -> None:
    histogram = make_summary()["latency_histogram"]
    assert histogram["bin_edges_ms"] == list(LATENCY_BIN_EDGES_MS)
    assert sum(histogram["inference"]) == 5 and histogram["inference"][2] == 5  # 4 ms: [2, 5)
    assert sum(histogram["end_to_end"]) == 5 and histogram["end_to_end"][5] == 5  # 21-25: [20, 50)
    assert histogram["sampled"] is False


def test_markdown_has_the_latency_chart_and_the_drift_section(tmp_path: Path) -> None:
    _, md_path = write_summary(drift_summary(), tmp_path)
    markdown = md_path.read_text(encoding="utf-8")

    assert "![Latency distribution](" in markdown
    assert "## Drift against the training data" in markdown
    assert "| tenure | numeric | " in markdown
    assert "**drift detected**" in markdown
    assert "| 100.0% | 32.0% | +68.0 pts | ±10 pts | yes |" in markdown
    for link in IMAGE_LINK.findall(markdown):
        assert (tmp_path / link).read_bytes().startswith(PNG_MAGIC)


def test_render_summary_replaces_markdown_and_charts_but_not_the_json(tmp_path: Path) -> None:
    json_path, md_path = write_summary(make_summary(), tmp_path)
    original_json = json_path.read_bytes()
    md_path.write_text("stale", encoding="utf-8")
    for png in tmp_path.glob("*.png"):
        png.unlink()

    new_md, charts = render_summary(json_path)

    assert new_md == md_path
    assert md_path.read_text(encoding="utf-8").startswith("# Churn scoring summary")
    assert sorted(p.name.removeprefix(json_path.stem + "_") for p in charts) == [
        "contract.png",
        "internet_service.png",
        "latency.png",
        "risk.png",
    ]
    assert json_path.read_bytes() == original_json


def test_an_old_summary_without_new_sections_still_renders(tmp_path: Path) -> None:
    json_path, _ = write_summary(make_summary(), tmp_path)
    data = json.loads(json_path.read_text())
    del data["latency_histogram"]
    old = tmp_path / "summary_old.json"
    old.write_text(json.dumps(data))

    md_path, charts = render_summary(old, tmp_path / "out")
    assert md_path == tmp_path / "out" / "summary_old.md"
    assert len(charts) == 3  # no latency chart without the histogram
    assert load_summary(old)["counts"]["scored"] == 5


def test_report_command(tmp_path: Path) -> None:
    json_path, md_path = write_summary(drift_summary(), tmp_path)
    md_path.unlink()
    result = CliRunner().invoke(app(), ["report", "--input", str(json_path)])

    assert result.exit_code == 0, result.output
    assert f"wrote {md_path} and 4 chart(s)" in result.output
    assert "DRIFT in" in result.output  # the console view has the drift line
    assert md_path.is_file()


def test_report_command_on_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app(), ["report", "--input", str(tmp_path / "nope.json")])
    assert result.exit_code == 1
    assert result.output.startswith("error: summary")
