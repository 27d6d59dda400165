"""Shadow scoring: a candidate model's predictions beside the champion's, and how they compare.

Shadow bodies follow the same prediction contract, carry the shadow's version, and go to
their own topic; headers link each one to its input and to the champion that served it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from churnstream.headers import CHAMPION_PROBABILITY_HEADER, CHAMPION_VERSION_HEADER, SOURCE_HEADER
from churnstream.model.scorer import Scorer
from churnstream.pipeline.transform import OutMessage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowRecord:
    out: OutMessage
    champion_yes: bool
    shadow_yes: bool
    abs_diff: float


def shadow_records(
    champion: Sequence[OutMessage], shadow_proba: np.ndarray, shadow: Scorer
) -> list[ShadowRecord]:
    """One shadow prediction per champion prediction, in the same order."""
    labels = shadow.label(shadow_proba)
    records = []
    for out, probability, label in zip(champion, shadow_proba.tolist(), labels, strict=True):
        body: dict[str, Any] = orjson.loads(out.value)
        champion_p = float(body["churn_probability"])
        p = min(1.0, max(0.0, float(probability)))
        shadow_body = {
            **body,
            "churn_probability": p,
            "prediction": str(label),
            "model_version": shadow.version,
        }
        headers = [(k, v) for k, v in out.headers if k == SOURCE_HEADER]
        headers += [
            (CHAMPION_VERSION_HEADER, str(body.get("model_version", "")).encode()),
            (CHAMPION_PROBABILITY_HEADER, repr(champion_p).encode()),
        ]
        records.append(
            ShadowRecord(
                out=OutMessage(key=out.key, value=orjson.dumps(shadow_body), headers=headers),
                champion_yes=body["prediction"] == "Yes",
                shadow_yes=str(label) == "Yes",
                abs_diff=abs(p - champion_p),
            )
        )
    return records


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
