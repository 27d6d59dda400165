"""PNG charts of a window summary, rendered with a bare matplotlib Figure (no pyplot).

The only report module that imports matplotlib; the scorer process never imports it (the
charts are drawn by the report renderer, a child process; see reports.writer).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from churnstream.reports.format import GROUP_CHARTS, LATENCY_CHART, RISK_CHART, pct

logger = logging.getLogger(__name__)

CHART_SIZE_IN = (6.4, 3.6)
CHART_DPI = 100


def render_charts(summary: Mapping[str, Any]) -> dict[str, bytes]:
    """PNG bytes by file suffix: the group charts, the risk chart and, if the summary has
    a latency histogram, the latency chart."""
    charts = {
        suffix: _group_chart(summary[section], title) for suffix, section, title in GROUP_CHARTS
    }
    suffix, section, title = RISK_CHART
    charts[suffix] = _risk_chart(summary[section], title)
    suffix, section, title = LATENCY_CHART
    if isinstance(summary.get(section), Mapping):
        charts[suffix] = _latency_chart(summary[section], title)
    return charts


def _new_figure(title: str) -> tuple[Figure, Any]:
    # A bare Figure (no pyplot) keeps no global state, so this is safe off the main thread.
    figure = Figure(figsize=CHART_SIZE_IN, dpi=CHART_DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _no_data(axes: Any) -> None:
    axes.text(0.5, 0.5, "no scored messages", ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _group_chart(groups: Mapping[str, Mapping[str, Any]], title: str) -> bytes:
    figure, axes = _new_figure(title)
    if not groups:
        _no_data(axes)
        return _png(figure)
    levels = list(groups)
    rates = [100.0 * (groups[level]["churn_rate"] or 0.0) for level in levels]
    bars = axes.bar(levels, rates, color="#c0504d")
    labels = [
        f"{pct(groups[level]['churn_rate'])}\nn={groups[level]['count']:,}" for level in levels
    ]
    axes.bar_label(bars, labels=labels, padding=2, fontsize=8)
    axes.set_ylabel("predicted churn rate (%)")
    # Headroom for the two-line labels above a 100% bar.
    axes.set_ylim(0, max(max(rates) * 1.3, 10.0))
    axes.tick_params(axis="x", labelsize=8)
    return _png(figure)


def _risk_chart(histogram: Mapping[str, Sequence[float]], title: str) -> bytes:
    figure, axes = _new_figure(title)
    edges, counts = list(histogram["bin_edges"]), list(histogram["counts"])
    if not any(counts):
        _no_data(axes)
        return _png(figure)
    widths = [right - left for left, right in zip(edges[:-1], edges[1:], strict=True)]
    axes.bar(edges[:-1], counts, width=widths, align="edge", color="#4f81bd", edgecolor="white")
    axes.set_xlabel("churn probability")
    axes.set_ylabel("scored messages")
    axes.set_xlim(edges[0], edges[-1])
    return _png(figure)


def _latency_labels(edges: Sequence[float]) -> list[str]:
    def short(ms: float) -> str:
        return f"{ms / 1000:g}s" if ms >= 1000 else f"{ms:g}"

    labels = [f"{short(a)}–{short(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [*labels, f"≥{short(edges[-1])}"]


def _latency_chart(histogram: Mapping[str, Any], title: str) -> bytes:
    figure, axes = _new_figure(title + (" (sampled)" if histogram.get("sampled") else ""))
    edges = list(histogram["bin_edges_ms"])
    series = [
        ("inference", list(histogram["inference"]), "#4f81bd"),
        ("end to end", list(histogram["end_to_end"]), "#c0504d"),
    ]
    if not any(any(counts) for _, counts, _ in series):
        _no_data(axes)
        return _png(figure)
    # Only the span of bins that hold something, so a fast run is not a sliver at the left.
    used = [i for _, counts, _ in series for i, n in enumerate(counts) if n]
    first, last = min(used), max(used) + 1
    labels = _latency_labels(edges)[first:last]
    positions = list(range(len(labels)))
    width = 0.4
    for offset, (label, counts, color) in zip((-width / 2, width / 2), series, strict=True):
        axes.bar(
            [p + offset for p in positions], counts[first:last], width, label=label, color=color
        )
    axes.set_xticks(positions)
    axes.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("scored messages")
    axes.legend(fontsize=8)
    return _png(figure)
