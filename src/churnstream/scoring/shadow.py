"""Shadow scoring: a candidate model's predictions beside the champion's, and how they compare.

Shadow bodies follow the same prediction contract, carry the shadow's version, and go to
their own topic; headers link each one to its input and to the champion that served it. They
are written by the one encoder from the champion's batch result (no body is parsed back).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from churnstream.scoring.encode import Champion, encode_predictions
from churnstream.scoring.infer import clip
from churnstream.scoring.messages import BatchResult, OutMessage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowRecord:
    out: OutMessage
    champion_yes: bool
    shadow_yes: bool
    abs_diff: float


def shadow_records(
    result: BatchResult, shadow_proba: np.ndarray, *, threshold: float, version: str
) -> list[ShadowRecord]:
    """One shadow prediction per champion prediction of ``result``, in the same order.

    ``shadow_proba`` holds the shadow model's probability for each of those predictions;
    ``threshold`` and ``version`` are the shadow model's.
    """
    champion = result.predicted
    probabilities = clip(np.asarray(shadow_proba, dtype=np.float64))
    labels_yes = probabilities >= threshold
    outs = encode_predictions(
        champion.customer_ids,
        champion.event_ts,
        probabilities,
        labels_yes,
        processed_ts=champion.processed_ts,
        model_version=version,
        inference_ms=champion.inference_ms,
        sources=champion.sources,
        champion=Champion(champion.model_version, champion.probabilities.tolist()),
    )
    return [
        ShadowRecord(out=out, champion_yes=c_yes, shadow_yes=s_yes, abs_diff=abs(s_p - c_p))
        for out, c_yes, s_yes, s_p, c_p in zip(
            outs,
            champion.labels_yes.tolist(),
            labels_yes.tolist(),
            probabilities.tolist(),
            champion.probabilities.tolist(),
            strict=True,
        )
    ]


class ShadowStats:
    """Champion against shadow over one window: agreement and each one's churn rate."""

    def __init__(self) -> None:
        self.count = 0
        self.agree = 0
        self.champion_yes = 0
        self.shadow_yes = 0
        self.abs_diff_sum = 0.0
        self.abs_diff_max = 0.0

    def add(self, records: Sequence[ShadowRecord]) -> None:
        for r in records:
            self.count += 1
            self.agree += r.champion_yes == r.shadow_yes
            self.champion_yes += r.champion_yes
            self.shadow_yes += r.shadow_yes
            self.abs_diff_sum += r.abs_diff
            self.abs_diff_max = max(self.abs_diff_max, r.abs_diff)

    def block(self, shadow_version: str) -> dict[str, Any]:
        n = self.count

        def rate(x: int) -> float | None:
            return x / n if n else None

        return {
            "shadow_model_version": shadow_version,
            "compared": n,
            "agreement_rate": rate(self.agree),
            "champion_churn_rate": rate(self.champion_yes),
            "shadow_churn_rate": rate(self.shadow_yes),
            "mean_abs_probability_diff": self.abs_diff_sum / n if n else None,
            "max_abs_probability_diff": self.abs_diff_max if n else None,
        }
