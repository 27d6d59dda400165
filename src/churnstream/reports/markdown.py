"""The Markdown rendering of a window summary, with its charts embedded by file name."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from churnstream.reports.format import (
    GROUP_CHARTS,
    LATENCY_CHART,
    RISK_CHART,
    cell,
    num,
    pct,
    table,
)

logger = logging.getLogger(__name__)

_GROUP_TITLES = {
    "by_contract": ("Churn by contract", "Contract"),
    "by_internet_service": ("Churn by internet service", "InternetService"),
    "by_payment_method": ("Churn by payment method", "PaymentMethod"),
}


def render_markdown(summary: Mapping[str, Any], images: Mapping[str, str]) -> str:
    """The report's Markdown; ``images`` maps a chart's suffix to its file name."""
    window, counts, churn = summary["window"], summary["counts"], summary["churn"]
    lines = [
        f"# Churn scoring summary: {window['started_at']} → {window['ended_at']}",
        "",
        f"- Mode: {cell(window['mode'])}",
        f"- Duration: {num(window['duration_s'])} s",
        f"- Model version: {cell(summary['model_version'] or 'unknown')}",
        "",
        "## Counts",
        "",
        *table(
            ["Metric", "Value"],
            [
                ["Consumed", f"{counts['consumed']:,}"],
                ["Scored", f"{counts['scored']:,}"],
                ["Duplicates skipped", f"{counts['duplicates_skipped']:,}"],
                ["Dead-lettered", f"{counts['dead_lettered']:,}"],
            ],
        ),
        "",
        "### Dead letters by error type",
        "",
        *_count_table("Error type", counts["dead_letters_by_type"]),
        "",
        "### Dead letters by reason code",
        "",
        *_count_table("Reason code", counts["dead_letters_by_code"]),
        "",
        "## Churn",
        "",
        *table(
            ["Predicted churners", "Churn rate", "Mean probability"],
            [
                [
                    f"{churn['predicted_churn_count']:,}",
                    pct(churn["predicted_churn_rate"]),
                    num(churn["mean_probability"], 3),
                ]
            ],
        ),
    ]
    chart_for = {section: suffix for suffix, section, _ in GROUP_CHARTS}
    for section, (heading, column) in _GROUP_TITLES.items():
        lines += ["", f"## {heading}", "", *_group_table(column, summary[section])]
        image = images.get(chart_for.get(section, ""))
        if image is not None:
            lines += ["", f"![{heading}]({image})"]

    top = summary["top_risk"]
    lines += ["", f"## Top {len(top)} customers at risk", ""]
    lines += table(
        ["#", "customerID", "Churn probability", "Contract", "InternetService", "PaymentMethod"],
        [
            [
                str(rank),
                cell(row["customerID"]),
                num(row["churn_probability"], 3),
                cell(row["Contract"]),
                cell(row["InternetService"]),
                cell(row["PaymentMethod"]),
            ]
            for rank, row in enumerate(top, start=1)
        ],
    )

    reasons = summary.get("reasons")
    if reasons:
        lines += ["", "## Why customers are predicted to churn", "", *_reason_lines(reasons)]

    latency = summary["latency_ms"]
    lines += ["", "## Latency (ms)", ""]
    lines += table(
        ["Stage", "Samples", "p50", "p95", "p99", "max", "mean"],
        [
            [
                label,
                f"{stats['count']:,}" + (" (sampled)" if stats.get("sampled") else ""),
                *(num(stats[key]) for key in ("p50", "p95", "p99", "max", "mean")),
            ]
            for label, stats in (
                ("Inference", latency["inference"]),
                ("End to end", latency["end_to_end"]),
            )
        ],
    )
    if LATENCY_CHART[0] in images:
        lines += ["", f"![{LATENCY_CHART[2]}]({images[LATENCY_CHART[0]]})"]

    throughput, batches = summary["throughput"], summary["batch_sizes"]
    lines += ["", "## Throughput", ""]
    lines += table(
        ["Messages/s", "Scored/s"],
        [[num(throughput["messages_per_s"]), num(throughput["scored_per_s"])]],
    )
    lines += ["", "## Batch sizes", ""]
    lines += table(
        ["Batches", "Mean", "p50", "Max"],
        [
            [
                f"{batches['count']:,}",
                num(batches["mean"]),
                num(batches["p50"]),
                "-" if batches["max"] is None else f"{batches['max']:,}",
            ]
        ],
    )

    histogram = summary["risk_histogram"]
    edges = histogram["bin_edges"]
    lines += ["", "## Risk distribution", ""]
    lines += table(
        ["Churn probability", "Scored messages"],
        [
            [f"{edges[i]:.1f}–{edges[i + 1]:.1f}", f"{n:,}"]
            for i, n in enumerate(histogram["counts"])
        ],
    )
    if RISK_CHART[0] in images:
        lines += ["", f"![{RISK_CHART[2]}]({images[RISK_CHART[0]]})"]
    drift = summary.get("drift")
    if isinstance(drift, Mapping):
        lines += ["", "## Drift against the training data", "", *_drift_lines(drift)]
    shadow = summary.get("shadow")
    if isinstance(shadow, Mapping):
        lines += ["", "## Champion and shadow model", "", *_shadow_lines(summary, shadow)]
    return "\n".join(lines) + "\n"


def _reason_lines(reasons: Mapping[str, Any]) -> list[str]:
    churners = reasons["predicted_churners"]
    return [
        f"The most frequent of the top three reasons of the {churners:,} predicted churners.",
        "",
        *table(
            ["Reason", "Churners", "Share"],
            [
                [cell(row["feature"]), f"{row['count']:,}", num(row["share"], 3)]
                for row in reasons["top"]
            ],
        ),
    ]


def _drift_lines(drift: Mapping[str, Any]) -> list[str]:
    if not drift.get("available"):
        return [f"_not checked: {cell(drift.get('reason', 'no training profile'))}_"]
    state = "**drift detected**" if drift["drifted"] else "no drift"
    if not drift["evaluated"]:
        state = (
            f"not evaluated: {drift['samples']:,} scored messages, "
            f"fewer than the {drift['min_samples']:,} needed"
        )
    lines = [
        f"Against the training profile of model "
        f"{cell(drift.get('reference_model_version') or 'unknown')}; PSI threshold "
        f"{drift['psi_threshold']:g}: {state}.",
        "",
        *table(
            ["Feature", "Kind", "PSI", "Drifted"],
            [
                [
                    cell(name),
                    cell(feature["kind"]),
                    num(feature["psi"], 3),
                    "yes" if feature["drifted"] else "no",
                ]
                for name, feature in drift["features"].items()
            ],
        ),
    ]
    churn = drift["churn_rate"]
    lines += [
        "",
        *table(
            ["Predicted churn rate", "Expected", "Shift", "Tolerance", "Drifted"],
            [
                [
                    pct(churn["observed"]),
                    pct(churn["expected"]),
                    "-" if churn["shift"] is None else f"{100.0 * churn['shift']:+.1f} pts",
                    f"±{100.0 * churn['tolerance']:.0f} pts",
                    "yes" if churn["drifted"] else "no",
                ]
            ],
        ),
    ]
    if churn.get("basis"):
        lines += ["", f"Expected rate: {cell(churn['basis'])}."]
    return lines


def _shadow_lines(summary: Mapping[str, Any], shadow: Mapping[str, Any]) -> list[str]:
    return table(
        ["", "Champion", "Shadow"],
        [
            ["model", cell(summary.get("model_version")), cell(shadow["shadow_model_version"])],
            ["churn rate", pct(shadow["champion_churn_rate"]), pct(shadow["shadow_churn_rate"])],
            ["agreement on Yes/No", pct(shadow["agreement_rate"]), ""],
            ["mean |Δ probability|", num(shadow["mean_abs_probability_diff"], 4), ""],
            ["predictions compared", f"{shadow['compared']:,}", ""],
        ],
    )


def _group_table(column: str, groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return table(
        [column, "Count", "Predicted churners", "Churn rate", "Mean probability"],
        [
            [
                cell(level),
                f"{stats['count']:,}",
                f"{stats['churn_count']:,}",
                pct(stats["churn_rate"]),
                num(stats["mean_probability"], 3),
            ]
            for level, stats in groups.items()
        ],
    )


def _count_table(label: str, counts: Mapping[str, int]) -> list[str]:
    return table([label, "Count"], [[cell(key), f"{n:,}"] for key, n in counts.items()])
