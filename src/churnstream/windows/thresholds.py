"""Alert thresholds on a window summary: dead-letter rate, churn-rate shift, drift. Pure.

``churnstream check`` (and the Airflow DAGs through it) reads one summary written by the
scorer (:meth:`churnstream.windows.stats.WindowStats.summary`) and compares it with limits:

- **dead-letter rate**: ``counts.dead_lettered / counts.consumed`` above ``max_dlq_rate``;
- **churn-rate shift**: ``|drift.churn_rate.shift|`` (predicted churn rate minus the rate
  the model predicted on its held-out set) above ``max_churn_shift``;
- **PSI**: any feature's ``drift.features.<name>.psi`` above ``max_psi``;
- optionally **too few messages** (``consumed < min_consumed``) and a **stale** window
  (it ended more than ``max_age_s`` seconds before ``now``).

The numbers are recomputed from the summary's raw values, not read from its ``drifted``
flags, so limits stricter or looser than the scorer's own settings work. Drift checks are
skipped (with a note) when the summary has no drift block or when the window was too small
for the scorer to evaluate it (``drift.evaluated`` false: PSI of a few rows is noise).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from churnstream.settings.sections import ObservabilitySettings

#: The default limit on dead-lettered / consumed messages in one window.
DEFAULT_MAX_DLQ_RATE = 0.05
_SUMMARY_NAME = re.compile(r"summary_(\d{8}T\d{6}Z)(?:_(\d+))?\.json")


@dataclass(frozen=True)
class Thresholds:
    """The limits one check applies. A value above a limit crosses it."""

    max_dlq_rate: float = DEFAULT_MAX_DLQ_RATE
    max_churn_shift: float = 0.10
    max_psi: float = 0.2
    #: Fewer consumed messages than this crosses a threshold too (0: no minimum).
    min_consumed: int = 0
    #: The window must have ended at most this many seconds before ``now`` (None: no limit).
    max_age_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_dlq_rate", "max_churn_shift", "max_psi"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.min_consumed < 0:
            raise ValueError(f"min_consumed must be >= 0, got {self.min_consumed}")
        if self.max_age_s is not None and self.max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0, got {self.max_age_s}")

    @classmethod
    def from_settings(
        cls,
        observability: ObservabilitySettings,
        *,
        max_dlq_rate: float | None = None,
        max_churn_shift: float | None = None,
        max_psi: float | None = None,
        min_consumed: int | None = None,
        max_age_s: float | None = None,
    ) -> Thresholds:
        """Limits from the ``observability`` settings, each overridden when given.

        The drift limits default to the scorer's own (``drift_churn_rate_tolerance`` and
        ``drift_psi_threshold``), so by default ``check`` fails exactly where the scorer
        logged drift; the dead-letter rate has no setting and defaults to
        :data:`DEFAULT_MAX_DLQ_RATE`.
        """
        return cls(
            max_dlq_rate=DEFAULT_MAX_DLQ_RATE if max_dlq_rate is None else max_dlq_rate,
            max_churn_shift=(
                observability.drift_churn_rate_tolerance
                if max_churn_shift is None
                else max_churn_shift
            ),
            max_psi=observability.drift_psi_threshold if max_psi is None else max_psi,
            min_consumed=0 if min_consumed is None else min_consumed,
            max_age_s=max_age_s,
        )


@dataclass(frozen=True)
class Finding:
    """One comparison of a value with its limit."""

    check: str  # dlq_rate, churn_shift, psi, consumed, age
    subject: str  # what was measured: "dead-letter rate", "PSI of tenure", ...
    value: float | None
    limit: float
    crossed: bool
    detail: str = ""

    def line(self) -> str:
        """One line: ``PSI of tenure 3.2100 > 0.2 (...)`` or ``... <= ...``."""
        if self.value is None:
            text = f"{self.subject}: not measured (limit {self.limit:g})"
        else:
            op = "<" if self.check == "consumed" else ">"
            if not self.crossed:
                op = {">": "<=", "<": ">="}[op]
            value = f"{self.value:.0f}s" if self.check == "age" else _fmt(self.value)
            limit = f"{self.limit:g}s" if self.check == "age" else f"{self.limit:g}"
            text = f"{self.subject} {value} {op} {limit}"
        return f"{text} ({self.detail})" if self.detail else text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckResult:
    """Every comparison made on one summary, plus notes on what could not be checked."""

    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def crossed(self) -> list[Finding]:
        return [f for f in self.findings if f.crossed]

    @property
    def ok(self) -> bool:
        return not self.crossed

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "crossed": [f.line() for f in self.crossed],
            "findings": [f.as_dict() for f in self.findings],
            "notes": list(self.notes),
        }


def evaluate(
    summary: Mapping[str, Any], thresholds: Thresholds, *, now: datetime | None = None
) -> CheckResult:
    """Compare a window summary with ``thresholds``.

    ``now`` (timezone-aware) is needed only with ``thresholds.max_age_s``. Raises
    ValueError when the summary lacks the counts every summary has.
    """
    findings: list[Finding] = []
    notes: list[str] = []
    counts = summary.get("counts")
    if not isinstance(counts, Mapping) or "consumed" not in counts:
        raise ValueError("not a window summary: it has no counts.consumed")
    consumed = int(counts["consumed"])
    dead = int(counts.get("dead_lettered", 0))

    if thresholds.min_consumed > 0:
        findings.append(
            Finding(
                "consumed",
                "consumed messages",
                consumed,
                thresholds.min_consumed,
                consumed < thresholds.min_consumed,
            )
        )
    if thresholds.max_age_s is not None:
        findings.append(_age_finding(summary, thresholds.max_age_s, now))

    if consumed > 0:
        rate = dead / consumed
        by_type = counts.get("dead_letters_by_type") or {}
        kinds = ", ".join(f"{k} {int(v):,}" for k, v in sorted(by_type.items()) if v)
        detail = f"{dead:,} of {consumed:,} consumed messages dead-lettered"
        findings.append(
            Finding(
                "dlq_rate",
                "dead-letter rate",
                rate,
                thresholds.max_dlq_rate,
                rate > thresholds.max_dlq_rate,
                f"{detail}: {kinds}" if kinds else detail,
            )
        )
    else:
        notes.append("dead-letter rate not checked: the window consumed no message")

    findings.extend(_drift_findings(summary.get("drift"), thresholds, notes))
    return CheckResult(findings, notes)


def _age_finding(summary: Mapping[str, Any], max_age_s: float, now: datetime | None) -> Finding:
    if now is None or now.tzinfo is None:
        raise ValueError("a timezone-aware now is needed to check the window's age")
    window = summary.get("window")
    ended = window.get("ended_at") if isinstance(window, Mapping) else None
    try:
        ended_at = datetime.fromisoformat(str(ended).replace("Z", "+00:00"))
    except ValueError:
        return Finding("age", "window age", None, max_age_s, True, "no window.ended_at")
    age = (now - ended_at).total_seconds()
    return Finding("age", "window age", age, max_age_s, age > max_age_s, f"window ended {ended}")


def _drift_findings(drift: Any, thresholds: Thresholds, notes: list[str]) -> list[Finding]:
    if not isinstance(drift, Mapping):
        notes.append("drift not checked: the summary has no drift block")
        return []
    if not drift.get("available"):
        notes.append(f"drift not checked: {drift.get('reason', 'no training profile')}")
        return []
    if not drift.get("evaluated"):
        notes.append(
            f"drift not checked: {int(drift.get('samples', 0)):,} scored messages, "
            f"fewer than the {int(drift.get('min_samples', 0)):,} the scorer evaluates"
        )
        return []
    findings: list[Finding] = []
    churn = drift.get("churn_rate")
    churn = churn if isinstance(churn, Mapping) else {}
    shift = churn.get("shift")
    if shift is None:
        notes.append("churn-rate shift not checked: no expected or observed rate")
    else:
        size = abs(float(shift))
        findings.append(
            Finding(
                "churn_shift",
                "churn-rate shift",
                size,
                thresholds.max_churn_shift,
                size > thresholds.max_churn_shift,
                f"predicted rate {_fmt(churn.get('observed'))} vs expected "
                f"{_fmt(churn.get('expected'))}: {float(shift):+.4f}",
            )
        )
    features = drift.get("features")
    for name, feature in sorted((features or {}).items()):
        value = feature.get("psi") if isinstance(feature, Mapping) else None
        if value is None:
            notes.append(f"PSI of {name} not checked: not computed")
            continue
        findings.append(
            Finding(
                "psi",
                f"PSI of {name}",
                float(value),
                thresholds.max_psi,
                float(value) > thresholds.max_psi,
            )
        )
    return findings


def latest_summary_name(names: Iterable[str]) -> str | None:
    """The newest window summary among file names (``summary_<end, UTC>[_N].json``).

    Ordered by the window end in the name, then by the ``_N`` suffix that
    :func:`churnstream.reports.files.write_summary_json` adds when two windows end in the same
    second.
    Other names (Markdown, charts, other JSON) are ignored; None if there is no summary.
    """
    best: tuple[str, int, str] | None = None
    for name in names:
        match = _SUMMARY_NAME.fullmatch(name)
        if match is None:
            continue
        key = (match.group(1), int(match.group(2) or 0), name)
        if best is None or key > best:
            best = key
    return None if best is None else best[2]


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    number = float(value)
    return f"{number:+.4f}" if number < 0 else f"{number:.4f}"
