"""A compact console view of a window summary (rich)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from churnstream.reports.format import check_summary, num, pct

logger = logging.getLogger(__name__)

CONSOLE_TOP_N = 3


def render_console(summary: Mapping[str, Any], console: Console | None = None) -> None:
    """Print a compact view of a summary: counts, churn, latency, throughput, top customers."""
    check_summary(summary, source="summary")
    console = console if console is not None else Console()
    window, counts, churn = summary["window"], summary["counts"], summary["churn"]
    latency, throughput = summary["latency_ms"], summary["throughput"]

    dead_by_type = ", ".join(
        f"{error_type} {n:,}" for error_type, n in counts["dead_letters_by_type"].items() if n
    )
    dead = f"{counts['dead_lettered']:,}" + (f" ({dead_by_type})" if dead_by_type else "")
    by_contract = " · ".join(
        f"{level} {pct(stats['churn_rate'])}" for level, stats in summary["by_contract"].items()
    )
    top = " · ".join(
        f"{row['customerID']} {num(row['churn_probability'], 3)}"
        for row in summary["top_risk"][:CONSOLE_TOP_N]
    )
    rows = [
        (
            "messages",
            f"{counts['consumed']:,} consumed · {counts['scored']:,} scored · "
            f"{counts['duplicates_skipped']:,} duplicates skipped",
        ),
        ("dead-lettered", dead),
        (
            "churn",
            f"{pct(churn['predicted_churn_rate'])} "
            f"({churn['predicted_churn_count']:,} predicted churners)",
        ),
        ("by contract", by_contract or "-"),
        (
            "latency ms",
            f"inference p50 {num(latency['inference']['p50'])} / "
            f"p99 {num(latency['inference']['p99'])} · "
            f"end-to-end p50 {num(latency['end_to_end']['p50'])} / "
            f"p99 {num(latency['end_to_end']['p99'])}",
        ),
        (
            "throughput",
            f"{num(throughput['messages_per_s'])} msg/s · "
            f"{num(throughput['scored_per_s'])} scored/s",
        ),
        (f"top {CONSOLE_TOP_N} at risk", top or "-"),
    ]
    drift = summary.get("drift")
    if isinstance(drift, Mapping) and drift.get("available"):
        rows.append(("drift", _drift_console(drift)))
    shadow = summary.get("shadow")
    if isinstance(shadow, Mapping) and shadow.get("compared"):
        rows.append(
            (
                "shadow",
                f"{shadow['shadow_model_version']}: agreement {pct(shadow['agreement_rate'])}, "
                f"churn {pct(shadow['shadow_churn_rate'])} vs "
                f"{pct(shadow['champion_churn_rate'])}",
            )
        )
    table = Table(
        title=(
            f"Window {window['started_at']} → {window['ended_at']} "
            f"({num(window['duration_s'])} s, {window['mode']}, "
            f"model {summary['model_version'] or 'unknown'})"
        ),
        show_header=False,
        box=None,
        pad_edge=False,
    )
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        # Text, not markup: a customerID or level with "[" must not be parsed as a tag.
        table.add_row(Text(label), Text(value))
    console.print(table)


def _drift_console(drift: Mapping[str, Any]) -> str:
    if not drift["evaluated"]:
        return f"not evaluated ({drift['samples']:,} < {drift['min_samples']:,} scored)"
    worst = f"max PSI {num(drift['max_psi'], 3)}"
    if not drift["drifted"]:
        return f"none ({worst})"
    found = list(drift["drifted_features"])
    if drift["churn_rate"]["drifted"]:
        found.append("predicted churn rate")
    return f"DRIFT in {', '.join(found)} ({worst})"
