"""Window-summary reports: JSON, Markdown and PNG files, plus a short console rendering.

The summary dict comes from :meth:`churnstream.analytics.WindowStats.summary`. Every file
is written to a temporary name and then moved into place, so a reader never sees half a
report, and an existing report is never overwritten: a clashing name gets a suffix.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table
from rich.text import Text

from churnstream.exceptions import ChurnstreamError, DataError
from churnstream.windows.fields import SUMMARY_KEYS, SUMMARY_SCHEMA_VERSION

logger = logging.getLogger(__name__)

REPORT_PREFIX = "summary_"
MAX_NAME_ATTEMPTS = 1_000
CHART_SIZE_IN = (6.4, 3.6)
CHART_DPI = 100
CONSOLE_TOP_N = 3
REPORT_FILE_MODE = 0o644
_STEM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
# (file suffix, summary section, title); the Markdown embeds each chart under its section.
_GROUP_CHARTS = (
    ("contract", "by_contract", "Churn rate by contract"),
    ("internet_service", "by_internet_service", "Churn rate by internet service"),
)
_RISK_CHART = ("risk", "risk_histogram", "Churn-probability distribution")
_LATENCY_CHART = ("latency", "latency_histogram", "Latency distribution")
_GROUP_TITLES = {
    "by_contract": ("Churn by contract", "Contract"),
    "by_internet_service": ("Churn by internet service", "InternetService"),
    "by_payment_method": ("Churn by payment method", "PaymentMethod"),
}


def write_summary(
    summary: Mapping[str, Any],
    reports_dir: Path,
    *,
    stem: str | None = None,
    charts: bool = True,
) -> tuple[Path, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and the PNG charts into ``reports_dir``.

    The stem defaults to ``summary_<window end, UTC, like 20261123T031500Z>``. If a report
    with that stem exists (two windows ending in the same second), ``_1``, ``_2``... is
    appended. Charts are ``<stem>_contract.png``, ``<stem>_internet_service.png``,
    ``<stem>_risk.png`` and (if the summary has a latency histogram) ``<stem>_latency.png``;
    ``charts=False`` skips them (rendering takes ~0.1 s each).

    Returns:
        The paths of the JSON and the Markdown files.

    Raises:
        DataError: ``summary`` is not a window summary or cannot be serialised.
        ValueError: ``stem`` is not a plain file-name stem.
    """
    _check_summary(summary, source="summary")
    base = stem if stem is not None else REPORT_PREFIX + _compact_utc(summary["window"]["ended_at"])
    if not _STEM_RE.fullmatch(base):
        raise ValueError(f"stem must be a plain file name ([A-Za-z0-9._-]), got {base!r}")
    try:
        payload = orjson.dumps(summary, option=_JSON_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise DataError(f"summary is not JSON-serialisable: {exc}") from exc
    # Render before claiming the name, so a plotting error leaves no orphan JSON behind.
    pngs = _render_charts(summary) if charts else {}

    reports_dir.mkdir(parents=True, exist_ok=True)
    chosen = _claim_stem(reports_dir, base, payload)
    json_path = reports_dir / f"{chosen}.json"
    images: dict[str, str] = {}
    for suffix, png in pngs.items():
        name = f"{chosen}_{suffix}.png"
        _atomic_write(reports_dir / name, png)
        images[suffix] = name
    md_path = reports_dir / f"{chosen}.md"
    _atomic_write(md_path, _markdown(summary, images).encode("utf-8"))
    logger.info("wrote window summary %s (+ .md, %d charts)", json_path, len(images))
    return json_path, md_path


def render_summary(json_path: Path, output_dir: Path | None = None) -> tuple[Path, list[Path]]:
    """Re-render the Markdown and PNG charts of a summary JSON written earlier.

    They go next to the JSON (or into ``output_dir``) under the JSON's stem, replacing the
    previous rendering atomically; the JSON itself is never touched.

    Returns:
        The Markdown path and the chart paths.

    Raises:
        DataError: the file is missing or not a window summary.
    """
    summary = load_summary(json_path)
    target = output_dir if output_dir is not None else json_path.parent
    target.mkdir(parents=True, exist_ok=True)
    stem = json_path.name.removesuffix(".json")
    images: dict[str, str] = {}
    written: list[Path] = []
    for suffix, png in _render_charts(summary).items():
        name = f"{stem}_{suffix}.png"
        _atomic_write(target / name, png)
        images[suffix] = name
        written.append(target / name)
    md_path = target / f"{stem}.md"
    _atomic_write(md_path, _markdown(summary, images).encode("utf-8"))
    logger.info("re-rendered %s (+ %d charts) from %s", md_path, len(images), json_path)
    return md_path, written


def load_summary(path: Path) -> dict[str, Any]:
    """Read a summary written by :func:`write_summary`.

    Raises:
        DataError: the file is missing, unreadable, not JSON, or not a window summary.
    """
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"summary {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read summary {path}: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    _check_summary(data, source=str(path))
    result: dict[str, Any] = data
    return result


def render_console(summary: Mapping[str, Any], console: Console | None = None) -> None:
    """Print a compact view of a summary: counts, churn, latency, throughput, top customers."""
    _check_summary(summary, source="summary")
    console = console if console is not None else Console()
    window, counts, churn = summary["window"], summary["counts"], summary["churn"]
    latency, throughput = summary["latency_ms"], summary["throughput"]

    dead_by_type = ", ".join(
        f"{error_type} {n:,}" for error_type, n in counts["dead_letters_by_type"].items() if n
    )
    dead = f"{counts['dead_lettered']:,}" + (f" ({dead_by_type})" if dead_by_type else "")
    by_contract = " · ".join(
        f"{level} {_pct(stats['churn_rate'])}" for level, stats in summary["by_contract"].items()
    )
    top = " · ".join(
        f"{row['customerID']} {_num(row['churn_probability'], 3)}"
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
            f"{_pct(churn['predicted_churn_rate'])} "
            f"({churn['predicted_churn_count']:,} predicted churners)",
        ),
        ("by contract", by_contract or "-"),
        (
            "latency ms",
            f"inference p50 {_num(latency['inference']['p50'])} / "
            f"p99 {_num(latency['inference']['p99'])} · "
            f"end-to-end p50 {_num(latency['end_to_end']['p50'])} / "
            f"p99 {_num(latency['end_to_end']['p99'])}",
        ),
        (
            "throughput",
            f"{_num(throughput['messages_per_s'])} msg/s · "
            f"{_num(throughput['scored_per_s'])} scored/s",
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
                f"{shadow['shadow_model_version']}: agreement {_pct(shadow['agreement_rate'])}, "
                f"churn {_pct(shadow['shadow_churn_rate'])} vs "
                f"{_pct(shadow['champion_churn_rate'])}",
            )
        )
    table = Table(
        title=(
            f"Window {window['started_at']} → {window['ended_at']} "
            f"({_num(window['duration_s'])} s, {window['mode']}, "
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
    worst = f"max PSI {_num(drift['max_psi'], 3)}"
    if not drift["drifted"]:
        return f"none ({worst})"
    found = list(drift["drifted_features"])
    if drift["churn_rate"]["drifted"]:
        found.append("predicted churn rate")
    return f"DRIFT in {', '.join(found)} ({worst})"


def _check_summary(summary: Any, *, source: str) -> None:
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


def _compact_utc(iso: str) -> str:
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError as exc:
        raise DataError(f"window.ended_at is not ISO 8601: {iso!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _temp_file(directory: Path, data: bytes) -> Path:
    # Same directory as the target, so os.link/os.replace never cross a file system.
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp creates 0600; reports are meant to be read by dashboards and people.
            os.chmod(name, REPORT_FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _atomic_write(target: Path, data: bytes) -> None:
    temp = _temp_file(target.parent, data)
    try:
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _claim_stem(directory: Path, base: str, payload: bytes) -> str:
    """Publish the JSON under the first free stem and return that stem.

    ``os.link`` creates the name atomically with its full content and fails if it exists,
    so two writers racing for the same second cannot overwrite each other.
    """
    temp = _temp_file(directory, payload)
    try:
        for attempt in range(MAX_NAME_ATTEMPTS):
            stem = base if attempt == 0 else f"{base}_{attempt}"
            if (directory / f"{stem}.md").exists():
                continue
            if _publish_exclusive(temp, directory / f"{stem}.json"):
                return stem
    finally:
        temp.unlink(missing_ok=True)
    raise ChurnstreamError(
        f"no free report name for {base} in {directory} after {MAX_NAME_ATTEMPTS} attempts"
    )


def _publish_exclusive(temp: Path, target: Path) -> bool:
    try:
        os.link(temp, target)
        return True
    except FileExistsError:
        return False
    except OSError:
        # No hard links on this file system: reserve the name, then replace it.
        # A reader may briefly see an empty file here, never someone else's report.
        pass
    try:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, REPORT_FILE_MODE))
    except FileExistsError:
        return False
    os.replace(_temp_file(temp.parent, temp.read_bytes()), target)
    return True


def _render_charts(summary: Mapping[str, Any]) -> dict[str, bytes]:
    charts = {
        suffix: _group_chart(summary[section], title) for suffix, section, title in _GROUP_CHARTS
    }
    suffix, section, title = _RISK_CHART
    charts[suffix] = _risk_chart(summary[section], title)
    suffix, section, title = _LATENCY_CHART
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
        f"{_pct(groups[level]['churn_rate'])}\nn={groups[level]['count']:,}" for level in levels
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


def _drift_lines(drift: Mapping[str, Any]) -> list[str]:
    if not drift.get("available"):
        return [f"_not checked: {_cell(drift.get('reason', 'no training profile'))}_"]
    state = "**drift detected**" if drift["drifted"] else "no drift"
    if not drift["evaluated"]:
        state = (
            f"not evaluated: {drift['samples']:,} scored messages, "
            f"fewer than the {drift['min_samples']:,} needed"
        )
    lines = [
        f"Against the training profile of model "
        f"{_cell(drift.get('reference_model_version') or 'unknown')}; PSI threshold "
        f"{drift['psi_threshold']:g}: {state}.",
        "",
        *_table(
            ["Feature", "Kind", "PSI", "Drifted"],
            [
                [
                    _cell(name),
                    _cell(feature["kind"]),
                    _num(feature["psi"], 3),
                    "yes" if feature["drifted"] else "no",
                ]
                for name, feature in drift["features"].items()
            ],
        ),
    ]
    churn = drift["churn_rate"]
    lines += [
        "",
        *_table(
            ["Predicted churn rate", "Expected", "Shift", "Tolerance", "Drifted"],
            [
                [
                    _pct(churn["observed"]),
                    _pct(churn["expected"]),
                    "-" if churn["shift"] is None else f"{100.0 * churn['shift']:+.1f} pts",
                    f"±{100.0 * churn['tolerance']:.0f} pts",
                    "yes" if churn["drifted"] else "no",
                ]
            ],
        ),
    ]
    if churn.get("basis"):
        lines += ["", f"Expected rate: {_cell(churn['basis'])}."]
    return lines


def _markdown(summary: Mapping[str, Any], images: Mapping[str, str]) -> str:
    window, counts, churn = summary["window"], summary["counts"], summary["churn"]
    lines = [
        f"# Churn scoring summary: {window['started_at']} → {window['ended_at']}",
        "",
        f"- Mode: {_cell(window['mode'])}",
        f"- Duration: {_num(window['duration_s'])} s",
        f"- Model version: {_cell(summary['model_version'] or 'unknown')}",
        "",
        "## Counts",
        "",
        *_table(
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
        *_table(
            ["Predicted churners", "Churn rate", "Mean probability"],
            [
                [
                    f"{churn['predicted_churn_count']:,}",
                    _pct(churn["predicted_churn_rate"]),
                    _num(churn["mean_probability"], 3),
                ]
            ],
        ),
    ]
    chart_for = {section: suffix for suffix, section, _ in _GROUP_CHARTS}
    for section, (heading, column) in _GROUP_TITLES.items():
        lines += ["", f"## {heading}", "", *_group_table(column, summary[section])]
        image = images.get(chart_for.get(section, ""))
        if image is not None:
            lines += ["", f"![{heading}]({image})"]

    top = summary["top_risk"]
    lines += ["", f"## Top {len(top)} customers at risk", ""]
    lines += _table(
        ["#", "customerID", "Churn probability", "Contract", "InternetService", "PaymentMethod"],
        [
            [
                str(rank),
                _cell(row["customerID"]),
                _num(row["churn_probability"], 3),
                _cell(row["Contract"]),
                _cell(row["InternetService"]),
                _cell(row["PaymentMethod"]),
            ]
            for rank, row in enumerate(top, start=1)
        ],
    )

    latency = summary["latency_ms"]
    lines += ["", "## Latency (ms)", ""]
    lines += _table(
        ["Stage", "Samples", "p50", "p95", "p99", "max", "mean"],
        [
            [
                label,
                f"{stats['count']:,}" + (" (sampled)" if stats.get("sampled") else ""),
                *(_num(stats[key]) for key in ("p50", "p95", "p99", "max", "mean")),
            ]
            for label, stats in (
                ("Inference", latency["inference"]),
                ("End to end", latency["end_to_end"]),
            )
        ],
    )
    if _LATENCY_CHART[0] in images:
        lines += ["", f"![{_LATENCY_CHART[2]}]({images[_LATENCY_CHART[0]]})"]

    throughput, batches = summary["throughput"], summary["batch_sizes"]
    lines += ["", "## Throughput", ""]
    lines += _table(
        ["Messages/s", "Scored/s"],
        [[_num(throughput["messages_per_s"]), _num(throughput["scored_per_s"])]],
    )
    lines += ["", "## Batch sizes", ""]
    lines += _table(
        ["Batches", "Mean", "p50", "Max"],
        [
            [
                f"{batches['count']:,}",
                _num(batches["mean"]),
                _num(batches["p50"]),
                "-" if batches["max"] is None else f"{batches['max']:,}",
            ]
        ],
    )

    histogram = summary["risk_histogram"]
    edges = histogram["bin_edges"]
    lines += ["", "## Risk distribution", ""]
    lines += _table(
        ["Churn probability", "Scored messages"],
        [
            [f"{edges[i]:.1f}–{edges[i + 1]:.1f}", f"{n:,}"]
            for i, n in enumerate(histogram["counts"])
        ],
    )
    if _RISK_CHART[0] in images:
        lines += ["", f"![{_RISK_CHART[2]}]({images[_RISK_CHART[0]]})"]
    drift = summary.get("drift")
    if isinstance(drift, Mapping):
        lines += ["", "## Drift against the training data", "", *_drift_lines(drift)]
    shadow = summary.get("shadow")
    if isinstance(shadow, Mapping):
        lines += ["", "## Champion and shadow model", "", *_shadow_lines(summary, shadow)]
    return "\n".join(lines) + "\n"


def _shadow_lines(summary: Mapping[str, Any], shadow: Mapping[str, Any]) -> list[str]:
    return _table(
        ["", "Champion", "Shadow"],
        [
            ["model", _cell(summary.get("model_version")), _cell(shadow["shadow_model_version"])],
            ["churn rate", _pct(shadow["champion_churn_rate"]), _pct(shadow["shadow_churn_rate"])],
            ["agreement on Yes/No", _pct(shadow["agreement_rate"]), ""],
            ["mean |Δ probability|", _num(shadow["mean_abs_probability_diff"], 4), ""],
            ["predictions compared", f"{shadow['compared']:,}", ""],
        ],
    )


def _group_table(column: str, groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return _table(
        [column, "Count", "Predicted churners", "Churn rate", "Mean probability"],
        [
            [
                _cell(level),
                f"{stats['count']:,}",
                f"{stats['churn_count']:,}",
                _pct(stats["churn_rate"]),
                _num(stats["mean_probability"], 3),
            ]
            for level, stats in groups.items()
        ],
    )


def _count_table(label: str, counts: Mapping[str, int]) -> list[str]:
    return _table([label, "Count"], [[_cell(key), f"{n:,}"] for key, n in counts.items()])


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    body = [f"| {' | '.join(row)} |" for row in rows]
    if not body:
        return ["_none_"]
    return [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|", *body]


def _cell(value: Any) -> str:
    # A pipe or newline inside a value would break the Markdown table.
    return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}%"
