"""The scorer's window hook hands rendering to a real child process (reports.writer)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from churnstream.reports.files import write_summary_json
from churnstream.reports.render import write_summary
from churnstream.reports.writer import ReportRenderer, SummaryWriter
from tests.unit.test_report_render import drift_summary
from tests.unit.test_reports import IMAGE_LINK, PNG_MAGIC, make_summary

CHART_SUFFIXES = ("contract", "internet_service", "latency", "risk")


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("summary", [make_summary(), drift_summary()], ids=["plain", "drift"])
def test_the_renderer_writes_the_same_bytes_as_rendering_in_process(
    tmp_path: Path, summary: dict[str, object]
) -> None:
    write_summary(summary, tmp_path / "inline")
    with SummaryWriter(tmp_path / "handoff") as writer:
        writer(summary)

    json_path, md_path = writer.paths
    assert md_path == json_path.with_suffix(".md") and md_path.is_file()
    inline, handoff = files(tmp_path / "inline"), files(tmp_path / "handoff")
    assert sorted(handoff) == sorted(inline)
    assert len([n for n in handoff if n.endswith(".png")]) == 4
    for name, data in inline.items():
        assert handoff[name] == data, name


def test_the_scorer_side_writes_the_json_and_never_imports_matplotlib(tmp_path: Path) -> None:
    source = tmp_path / "window.json"
    source.write_text(json.dumps(make_summary()))
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from churnstream.reports.writer import SummaryWriter

        writer = SummaryWriter(Path(sys.argv[2]))
        writer(json.loads(Path(sys.argv[1]).read_text()))
        json_path, md_path = writer.paths
        state = {
            "json_written": json_path.is_file(),
            "pending": [str(p) for p in writer.renderer.pending],
            "left": [str(p) for p in writer.close()],
            "md_written": md_path.is_file(),
            "matplotlib": sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"),
        }
        print(json.dumps(state))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(source), str(tmp_path / "reports")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    state = json.loads(done.stdout)

    assert state["matplotlib"] == []
    assert state["json_written"]
    # The window call returned with the rendering still to do: it never waited for it.
    assert [Path(p).name for p in state["pending"]] == ["summary_20261123T031510Z.json"]
    assert state["left"] == [] and state["md_written"]
    assert len(list((tmp_path / "reports").glob("*.png"))) == 4


def test_a_backlog_gets_markdown_only_except_the_newest(tmp_path: Path) -> None:
    paths = [write_summary_json(make_summary(), tmp_path, stem=f"w{i}") for i in range(4)]
    renderer = ReportRenderer()
    # The child is still starting while all four arrive: one render at a time, so the
    # first three are already superseded when their turn comes.
    assert all(renderer.submit(p) for p in paths)
    assert renderer.starts == 1
    assert renderer.close() == []

    for path in paths[:-1]:
        markdown = path.with_suffix(".md").read_text(encoding="utf-8")
        assert "## Churn" in markdown and not IMAGE_LINK.findall(markdown)
        assert not list(tmp_path.glob(f"{path.stem}_*.png"))
    newest = paths[-1].with_suffix(".md").read_text(encoding="utf-8")
    assert sorted(IMAGE_LINK.findall(newest)) == [f"w3_{s}.png" for s in CHART_SUFFIXES]
    for suffix in CHART_SUFFIXES:
        assert (tmp_path / f"w3_{suffix}.png").read_bytes().startswith(PNG_MAGIC)


def test_close_waits_a_bounded_time_and_names_what_was_not_rendered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    json_path = write_summary_json(make_summary(), tmp_path)
    renderer = ReportRenderer()
    renderer.submit(json_path)
    pid = renderer.pid
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="churnstream.reports.writer"):
        left = renderer.close(timeout_s=0.01)  # far less than the child needs to start

    assert time.monotonic() - started < 10
    assert left == [json_path.absolute()]
    assert pid is not None and not Path(f"/proc/{pid}").exists()  # stopped and reaped
    assert not json_path.with_suffix(".md").exists()
    assert f"`churnstream report --input {json_path.absolute()}` renders it" in caplog.text


def test_a_renderer_that_died_is_replaced_at_the_next_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = (write_summary_json(make_summary(), tmp_path, stem=s) for s in ("a", "b"))
    renderer = ReportRenderer()
    renderer.submit(first)
    wait_until(lambda: renderer.pending == [])
    old_pid = renderer.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    # Dead once reaped: a killed process's pipes outlive its main thread for a moment, and
    # a line written then would be lost with it (and reported as not rendered).
    wait_until(lambda: not renderer.running)

    with caplog.at_level(logging.WARNING, logger="churnstream.reports.writer"):
        assert renderer.submit(second)
        assert renderer.close() == []

    assert renderer.starts == 2 and renderer.pid is None
    assert f"report renderer (pid {old_pid}) exited with -9" in caplog.text
    assert first.with_suffix(".md").is_file() and second.with_suffix(".md").is_file()
    assert (tmp_path / "b_risk.png").is_file()


def test_a_summary_that_cannot_be_rendered_is_logged_and_the_next_one_is_rendered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    good = write_summary_json(make_summary(), tmp_path, stem="good")
    renderer = ReportRenderer()
    with caplog.at_level(logging.WARNING, logger="churnstream.reports.writer"):
        renderer.submit(broken)
        renderer.submit(good)
        assert renderer.close() == []

    assert f"could not render {broken}: DataError: " in caplog.text
    assert not broken.with_suffix(".md").exists()
    assert good.with_suffix(".md").is_file() and (tmp_path / "good_risk.png").is_file()


def test_a_closed_renderer_takes_no_more_work(tmp_path: Path) -> None:
    renderer = ReportRenderer()
    assert renderer.close() == [] and renderer.starts == 0  # never needed, never started
    with pytest.raises(ValueError, match="closed"):
        renderer.submit(write_summary_json(make_summary(), tmp_path))


def test_a_renderer_started_ahead_and_never_used_exits_at_close() -> None:
    renderer = ReportRenderer()
    renderer.start()
    assert renderer.running and renderer.starts == 1
    renderer.start()  # already running: the same child
    assert renderer.starts == 1
    pid = renderer.pid

    assert renderer.close() == []
    assert pid is not None and not Path(f"/proc/{pid}").exists()  # exited and reaped
