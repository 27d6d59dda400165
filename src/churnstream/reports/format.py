"""What every report rendering shares: recognising a summary, formatting its numbers, and
which charts there are (the Markdown links them; only the charts module draws them)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from churnstream.exceptions import DataError
from churnstream.windows.fields import SUMMARY_KEYS, SUMMARY_SCHEMA_VERSION

logger = logging.getLogger(__name__)

# (file suffix, summary section, title); the Markdown embeds each chart under its section.
GROUP_CHARTS = (
    ("contract", "by_contract", "Churn rate by contract"),
    ("internet_service", "by_internet_service", "Churn rate by internet service"),
)
RISK_CHART = ("risk", "risk_histogram", "Churn-probability distribution")
LATENCY_CHART = ("latency", "latency_histogram", "Latency distribution")


def check_summary(summary: Any, *, source: str) -> None:
    """Raise DataError unless ``summary`` looks like a window summary this code can read."""
    if not isinstance(summary, Mapping):
        raise DataError(f"{source} is not a window summary: expected an object")
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise DataError(f"{source} is not a window summary: missing {', '.join(missing)}")
    version = summary["schema_version"]
    if not isinstance(version, int) or version > SUMMARY_SCHEMA_VERSION:
        raise DataError(f"{source} has unsupported summary schema_version {version!r}")
    window = summary["window"]
    if not isinstance(window, Mapping) or not isinstance(window.get("ended_at"), str):
        raise DataError(f"{source} is not a window summary: window.ended_at missing")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table as lines (``_none_`` if there are no rows)."""
    body = [f"| {' | '.join(row)} |" for row in rows]
    if not body:
        return ["_none_"]
    return [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|", *body]


def cell(value: Any) -> str:
    """A value as Markdown table text (``-`` for None)."""
    # A pipe or newline inside a value would break the Markdown table.
    return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def num(value: float | None, digits: int = 1) -> str:
    """A number with thousands separators and ``digits`` decimals (``-`` for None)."""
    return "-" if value is None else f"{value:,.{digits}f}"


def pct(value: float | None) -> str:
    """A ratio as a percentage with one decimal (``-`` for None)."""
    return "-" if value is None else f"{100.0 * value:.1f}%"
