"""The two gates a challenger passes before it becomes champion. Pure functions of numbers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from churnstream.settings.promotion import PromotionSettings

logger = logging.getLogger(__name__)

HOLDOUT = "holdout"
SHADOW = "shadow"
PASSED = "passed"
REFUSED = "refused"


@dataclass(frozen=True)
class Verdict:
    """A gate's outcome: the numbers it looked at and, when refused, every reason."""

    gate: str
    reasons: list[str]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def state(self) -> str:
        return PASSED if self.passed else REFUSED

    def line(self) -> str:
        """One line: ``holdout gate passed: ...`` or ``holdout gate refused: reason; reason``."""
        if self.passed:
            shown = ", ".join(f"{k} {_fmt(k, v)}" for k, v in self.metrics.items())
            return f"{self.gate} gate passed: {shown}"
        return f"{self.gate} gate refused: {'; '.join(self.reasons)}"


def _fmt(name: str, value: float) -> str:
    return f"{value:.0f}" if name.endswith(("_rows", "_compared")) else f"{value:.4f}"


def holdout_verdict(
    champion: dict[str, float], challenger: dict[str, float], rows: int, cfg: PromotionSettings
) -> Verdict:
    """The challenger must beat the champion by the configured margins, on enough rows."""
    reasons = []
    if rows < cfg.min_holdout_rows:
        reasons.append(f"only {rows} held-out rows (need {cfg.min_holdout_rows})")
    need_auc = champion["roc_auc"] + cfg.min_roc_auc_gain
    if challenger["roc_auc"] < need_auc:
        reasons.append(
            f"challenger ROC AUC {challenger['roc_auc']:.4f} < champion's "
            f"{champion['roc_auc']:.4f} + {cfg.min_roc_auc_gain:g}"
        )
    need_brier = champion["brier"] - cfg.min_brier_gain
    if challenger["brier"] > need_brier:
        reasons.append(
            f"challenger Brier {challenger['brier']:.4f} > champion's "
            f"{champion['brier']:.4f} - {cfg.min_brier_gain:g}"
        )
    metrics = {
        "champion_roc_auc": champion["roc_auc"],
        "challenger_roc_auc": challenger["roc_auc"],
        "champion_brier": champion["brier"],
        "challenger_brier": challenger["brier"],
        "holdout_rows": float(rows),
    }
    return Verdict(HOLDOUT, reasons, metrics)


@dataclass(frozen=True)
class ShadowStats:
    """Champion and challenger on the same window of events."""

    compared: int
    agreement_rate: float
    champion_churn_rate: float
    challenger_churn_rate: float
    mean_abs_probability_diff: float
    invalid: int = 0

    @property
    def churn_rate_shift(self) -> float:
        return abs(self.challenger_churn_rate - self.champion_churn_rate)


def shadow_verdict(stats: ShadowStats, cfg: PromotionSettings) -> Verdict:
    """Enough events, labels agreeing often enough, churn rates close enough."""
    reasons = []
    if stats.compared < cfg.shadow_min_events:
        reasons.append(
            f"only {stats.compared} events in the shadow window (need {cfg.shadow_min_events})"
        )
    elif stats.agreement_rate < cfg.shadow_min_agreement:
        reasons.append(
            f"agreement {stats.agreement_rate:.4f} < {cfg.shadow_min_agreement:g} "
            f"over {stats.compared} events"
        )
    if stats.compared and stats.churn_rate_shift > cfg.shadow_max_churn_rate_shift:
        reasons.append(
            f"churn-rate shift {stats.churn_rate_shift:.4f} > {cfg.shadow_max_churn_rate_shift:g} "
            f"(champion {stats.champion_churn_rate:.4f}, challenger "
            f"{stats.challenger_churn_rate:.4f})"
        )
    metrics = {
        "shadow_compared": float(stats.compared),
        "shadow_agreement_rate": stats.agreement_rate,
        "shadow_churn_rate_shift": stats.churn_rate_shift,
        "shadow_champion_churn_rate": stats.champion_churn_rate,
        "shadow_challenger_churn_rate": stats.challenger_churn_rate,
        "shadow_mean_abs_probability_diff": stats.mean_abs_probability_diff,
    }
    return Verdict(SHADOW, reasons, metrics)
