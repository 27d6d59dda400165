"""Report writers: files on disk, round trips, Markdown content, PNGs, name clashes."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from churnstream.exceptions import ChurnstreamError, DataError
from churnstream.reports.console import render_console
from churnstream.reports.files import load_summary
from churnstream.reports.render import write_summary
from churnstream.windows.stats import WindowStats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2026, 11, 23, 3, 15, 0, tzinfo=UTC)
STEM = "summary_20261123T031510Z"
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def _scored(rows: list[tuple[str, str, str, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "customerID": customer,
                "Contract": contract,
                "InternetService": internet,
                "PaymentMethod": "Mailed check",
                "churn_probability": probability,
                "prediction": "Yes" if probability >= 0.5 else "No",
                "inference_latency_ms": 4.0,
                "e2e_latency_ms": 20.0 + offset,
                "source_topic": "telco.customers",
                "source_partition": 0,
                "source_offset": offset,
            }
            for customer, contract, internet, probability, offset in rows
        ]
    )


def make_summary(*, model_version: str | None = "m1", empty: bool = False) -> dict[str, Any]:
    stats = WindowStats()
    if not empty:
        stats.add_consumed(6)
        stats.add_batch_size(5)
        stats.add_dead_letters({"validation_error": 1})
        stats.add_dead_letter_codes({"not_json": 1})
        stats.add_scored(
            _scored(
                [
                    ("7590-VHVEG", "Month-to-month", "DSL", 0.91, 1),
                    ("5575-GNVDE", "One year", "DSL", 0.12, 2),
                    ("3668-QPYBK", "Month-to-month", "Fiber optic", 0.35, 3),
                    ("9237-HQITU", "Month-to-month", "Fiber optic", 0.77, 4),
                    ("[bold]X", "Two year", "No", 0.05, 5),
                ]
            )
        )
    return stats.summary(
        T0, T0 + timedelta(seconds=10), top_k=4, model_version=model_version, mode="batch"
    )


def test_write_summary_names_files_after_the_window_end(tmp_path: Path) -> None:
    json_path, md_path = write_summary(make_summary(), tmp_path / "reports")

    assert json_path == tmp_path / "reports" / f"{STEM}.json"
    assert md_path == tmp_path / "reports" / f"{STEM}.md"
    assert json_path.is_file() and md_path.is_file()
    # Atomic writes leave no temporary files behind, and reports are readable by others.
    assert not [p for p in json_path.parent.iterdir() if p.name.startswith(".tmp-")]
    assert json_path.stat().st_mode & 0o044 == 0o044


def test_json_round_trips_to_the_same_summary(tmp_path: Path) -> None:
    summary = make_summary()
    json_path, _ = write_summary(summary, tmp_path)

    assert json.loads(json_path.read_text(encoding="utf-8")) == summary
    assert load_summary(json_path) == summary


def test_markdown_has_the_tables(tmp_path: Path) -> None:
    _, md_path = write_summary(make_summary(), tmp_path)
    markdown = md_path.read_text(encoding="utf-8")

    assert "2026-11-23T03:15:00.000Z → 2026-11-23T03:15:10.000Z" in markdown
    assert "| Consumed | 6 |" in markdown
    assert "| Scored | 5 |" in markdown
    assert "| Dead-lettered | 1 |" in markdown
    assert "| validation_error | 1 |" in markdown
    assert "| not_json | 1 |" in markdown
    # 2 of 5 predicted churners: 0.91 and 0.77.
    assert "| 2 | 40.0% | 0.440 |" in markdown
    # Month-to-month: 0.91, 0.35, 0.77 -> 2 churners of 3, mean 0.677.
    assert "| Month-to-month | 3 | 2 | 66.7% | 0.677 |" in markdown
    assert "| Fiber optic | 2 | 1 | 50.0% | 0.560 |" in markdown
    assert "| Mailed check | 5 | 2 | 40.0% |" in markdown
    assert "## Churn by payment method" in markdown
    top_section = markdown.split("## Top 4 customers at risk")[1].split("##")[0]
    top_rows = [line for line in top_section.splitlines() if re.match(r"\| [1-4] \| ", line)]
    assert [line.split(" | ")[1] for line in top_rows] == [
        "7590-VHVEG",
        "9237-HQITU",
        "3668-QPYBK",
        "5575-GNVDE",
    ]
    assert "| End to end | 5 | 23.0 |" in markdown
    assert "| Inference | 5 | 4.0 | 4.0 | 4.0 | 4.0 | 4.0 |" in markdown
    assert "| 0.6 | 0.5 |" in markdown  # throughput: 6 consumed, 5 scored over 10 s


def test_markdown_image_links_point_at_valid_pngs(tmp_path: Path) -> None:
    _, md_path = write_summary(make_summary(), tmp_path)
    links = IMAGE_LINK.findall(md_path.read_text(encoding="utf-8"))

    assert sorted(links) == [
        f"{STEM}_contract.png",
        f"{STEM}_internet_service.png",
        f"{STEM}_latency.png",
        f"{STEM}_risk.png",
    ]
    for link in links:
        assert (tmp_path / link).read_bytes().startswith(PNG_MAGIC), link


def test_charts_can_be_skipped(tmp_path: Path) -> None:
    _, md_path = write_summary(make_summary(), tmp_path, charts=False)

    assert not list(tmp_path.glob("*.png"))
    assert not IMAGE_LINK.findall(md_path.read_text(encoding="utf-8"))


def test_name_clash_gets_a_suffix_and_never_overwrites(tmp_path: Path) -> None:
    first_json, first_md = write_summary(make_summary(model_version="first"), tmp_path)
    first_png = (tmp_path / f"{STEM}_contract.png").read_bytes()
    second_json, second_md = write_summary(make_summary(model_version="second"), tmp_path)

    assert second_json == tmp_path / f"{STEM}_1.json"
    assert second_md == tmp_path / f"{STEM}_1.md"
    assert load_summary(first_json)["model_version"] == "first"
    assert load_summary(second_json)["model_version"] == "second"
    assert "Model version: first" in first_md.read_text(encoding="utf-8")
    assert (tmp_path / f"{STEM}_contract.png").read_bytes() == first_png
    for link in IMAGE_LINK.findall(second_md.read_text(encoding="utf-8")):
        assert link.startswith(f"{STEM}_1_")
        assert (tmp_path / link).is_file()


def test_existing_markdown_without_json_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / f"{STEM}.md").write_text("someone else's report", encoding="utf-8")
    json_path, _ = write_summary(make_summary(), tmp_path)

    assert json_path.name == f"{STEM}_1.json"
    assert (tmp_path / f"{STEM}.md").read_text(encoding="utf-8") == "someone else's report"


def test_existing_json_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / f"{STEM}.json").write_text("another writer's report", encoding="utf-8")
    json_path, md_path = write_summary(make_summary(), tmp_path)

    assert (json_path.name, md_path.name) == (f"{STEM}_1.json", f"{STEM}_1.md")
    assert (tmp_path / f"{STEM}.json").read_text(encoding="utf-8") == "another writer's report"


def test_no_overwrite_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: Any, dst: Any) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    first, _ = write_summary(make_summary(model_version="first"), tmp_path)
    second, _ = write_summary(make_summary(model_version="second"), tmp_path)

    assert (first.name, second.name) == (f"{STEM}.json", f"{STEM}_1.json")
    assert load_summary(first)["model_version"] == "first"
    assert load_summary(second)["model_version"] == "second"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_explicit_stem_and_unsafe_stems(tmp_path: Path) -> None:
    json_path, md_path = write_summary(make_summary(), tmp_path, stem="nightly")

    assert (json_path.name, md_path.name) == ("nightly.json", "nightly.md")
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            write_summary(make_summary(), tmp_path, stem=bad)


def test_empty_window_writes_a_valid_report(tmp_path: Path) -> None:
    summary = make_summary(empty=True)
    json_path, md_path = write_summary(summary, tmp_path)

    assert load_summary(json_path) == summary
    markdown = md_path.read_text(encoding="utf-8")
    assert "| Consumed | 0 |" in markdown
    for link in IMAGE_LINK.findall(markdown):
        assert (tmp_path / link).read_bytes().startswith(PNG_MAGIC)


def test_write_summary_rejects_something_else(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing"):
        write_summary({"counts": {}}, tmp_path)
    assert not list(tmp_path.iterdir())


def test_load_summary_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_summary(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"counts": {}}', b'{"schema_version": 99}'],
    ids=["not-json", "list", "missing-keys", "future-version"],
)
def test_load_summary_rejects_files_that_are_not_summaries(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(DataError) as excinfo:
        load_summary(path)
    assert isinstance(excinfo.value, ChurnstreamError)


def test_load_summary_rejects_a_newer_schema_version(tmp_path: Path) -> None:
    summary = make_summary()
    summary["schema_version"] = 99
    path = tmp_path / "future.json"
    path.write_text(json.dumps(summary), encoding="utf-8")
    with pytest.raises(DataError, match="schema_version"):
        load_summary(path)


def test_load_summary_of_a_directory_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        load_summary(tmp_path)


def _console_text(summary: dict[str, Any]) -> str:
    console = Console(record=True, width=200, color_system=None)
    render_console(summary, console)
    return console.export_text()


def test_render_console_shows_the_essentials() -> None:
    text = _console_text(make_summary())

    assert "6 consumed" in text and "5 scored" in text
    assert "validation_error 1" in text
    assert "40.0%" in text
    assert "Month-to-month 66.7%" in text and "One year 0.0%" in text
    assert "inference p50 4.0 / p99 4.0" in text
    assert "0.6 msg/s" in text
    top = text[text.index("top 3") :]
    assert "7590-VHVEG 0.910" in top and "9237-HQITU" in top and "3668-QPYBK" in top
    assert "5575-GNVDE" not in top  # fourth customer is cut


def test_render_console_prints_markup_like_ids_literally() -> None:
    summary = make_summary()
    summary["top_risk"][0]["customerID"] = "[bold]X"

    assert "[bold]X" in _console_text(summary)


def test_render_console_of_an_empty_window() -> None:
    text = _console_text(make_summary(empty=True))

    assert "0 consumed" in text
    assert "p50 -" in text
