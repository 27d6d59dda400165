"""The Markdown and PNG renderings of a window summary, written next to its JSON.

Drawing the charts takes matplotlib and 0.3-0.4 s of CPU per window (seconds of wall time
on a busy machine), so the scorer never calls this module: it writes the JSON
(:mod:`churnstream.reports.files`) and hands the path to the report renderer, a child
process (:mod:`churnstream.reports.render_worker`), which calls :func:`render_summary`, as
``churnstream report --input`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from churnstream.files import atomic_write_bytes
from churnstream.reports.charts import render_charts
from churnstream.reports.files import load_summary, write_summary_json
from churnstream.reports.format import check_summary
from churnstream.reports.markdown import render_markdown

logger = logging.getLogger(__name__)


def write_summary(
    summary: Mapping[str, Any],
    reports_dir: Path,
    *,
    stem: str | None = None,
    charts: bool = True,
) -> tuple[Path, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and the PNG charts into ``reports_dir``, here.

    Naming is :func:`~churnstream.reports.files.write_summary_json`'s. Charts are
    ``<stem>_contract.png``, ``<stem>_internet_service.png``, ``<stem>_risk.png`` and (if
    the summary has a latency histogram) ``<stem>_latency.png``; ``charts=False`` skips
    them.

    Returns:
        The paths of the JSON and the Markdown files.

    Raises:
        DataError: ``summary`` is not a window summary or cannot be serialised.
        ValueError: ``stem`` is not a plain file-name stem.
    """
    check_summary(summary, source="summary")
    # Render before claiming the name, so a plotting error leaves no orphan JSON behind.
    pngs = render_charts(summary) if charts else {}
    json_path = write_summary_json(summary, reports_dir, stem=stem)
    md_path, _ = _write_rendering(summary, reports_dir, _stem(json_path), pngs)
    return json_path, md_path


def render_summary(
    json_path: Path, output_dir: Path | None = None, *, charts: bool = True
) -> tuple[Path, list[Path]]:
    """Render the Markdown and PNG charts of a summary JSON written earlier.

    They go next to the JSON (or into ``output_dir``) under the JSON's stem, replacing any
    previous rendering atomically; the JSON itself is never touched. ``charts=False``
    writes the Markdown alone, without chart links.

    Returns:
        The Markdown path and the chart paths.

    Raises:
        DataError: the file is missing or not a window summary.
    """
    summary = load_summary(json_path)
    target = output_dir if output_dir is not None else json_path.parent
    target.mkdir(parents=True, exist_ok=True)
    pngs = render_charts(summary) if charts else {}
    md_path, written = _write_rendering(summary, target, _stem(json_path), pngs)
    logger.info("rendered %s (+ %d charts) from %s", md_path, len(written), json_path)
    return md_path, written


def _stem(json_path: Path) -> str:
    return json_path.name.removesuffix(".json")


def _write_rendering(
    summary: Mapping[str, Any], directory: Path, stem: str, pngs: Mapping[str, bytes]
) -> tuple[Path, list[Path]]:
    """The charts, then the Markdown that links them (so a reader never sees a dead link)."""
    images: dict[str, str] = {}
    written: list[Path] = []
    for suffix, png in pngs.items():
        name = f"{stem}_{suffix}.png"
        written.append(atomic_write_bytes(directory / name, png))
        images[suffix] = name
    md_path = directory / f"{stem}.md"
    atomic_write_bytes(md_path, render_markdown(summary, images).encode("utf-8"))
    return md_path, written
