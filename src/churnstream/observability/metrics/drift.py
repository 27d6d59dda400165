"""Drift of each window as Prometheus gauges and log warnings (a scorer observer)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from churnstream.observability.metrics.histogram import gauge
from churnstream.observability.names import (
    DRIFT_CHURN_RATE,
    DRIFT_DETECTED,
    DRIFT_EXPECTED_CHURN_RATE,
    DRIFT_PSI,
    DRIFT_SAMPLES,
)
from churnstream.streaming.observers import ScorerObserver
from churnstream.windows.drift import (
    DriftReference,
    FeatureAccumulator,
    drift_block,
    drift_warnings,
)

if TYPE_CHECKING:
    from churnstream.scoring.messages import BatchResult, RawMessage
    from churnstream.streaming.options import ScoreSummary

logger = logging.getLogger(__name__)


class DriftObserver(ScorerObserver):
    """Per window: PSI gauges, a WARNING per drifted feature, and the summary's ``drift``.

    If the window summary already has a ``drift`` block (the scorer passed the reference to
    ``WindowStats.summary``), that block is used and this observer stops accumulating;
    otherwise it accumulates ``result.scored`` itself (about 0.4 ms per 1,000 rows) and
    adds the block to the summary dict (the loop calls ``on_window`` before writing the
    report). ``accumulate=False`` skips that work from the start, for a scorer known to
    compute the block.
    """

    def __init__(
        self,
        reference: DriftReference | None,
        registry: CollectorRegistry | None = None,
        *,
        accumulate: bool = True,
    ) -> None:
        self.reference = reference
        self.registry = registry if registry is not None else CollectorRegistry()
        self._own: FeatureAccumulator | None = (
            FeatureAccumulator() if reference is not None and accumulate else None
        )
        self.last_block: dict[str, Any] | None = None
        r = self.registry
        self.psi = gauge(
            DRIFT_PSI,
            "Population Stability Index of a feature in the last window vs training.",
            r,
            ["feature"],
        )
        self.churn_rate = gauge(DRIFT_CHURN_RATE, "Predicted churn rate of the last window.", r)
        self.expected_churn_rate = gauge(
            DRIFT_EXPECTED_CHURN_RATE,
            "Predicted churn rate expected from the model's held-out test set.",
            r,
        )
        self.samples = gauge(DRIFT_SAMPLES, "Scored messages in the last window.", r)
        self.detected = gauge(DRIFT_DETECTED, "1 if the last evaluated window drifted, else 0.", r)
        if reference is not None and reference.expected_churn_rate is not None:
            self.expected_churn_rate.set(reference.expected_churn_rate)

    def on_batch(
        self, batch: Sequence[RawMessage], result: BatchResult, summary: ScoreSummary
    ) -> None:
        if self._own is not None:
            self._own.add(result.scored)

    def on_window(self, window: dict[str, Any]) -> None:
        block = window.get("drift")
        if isinstance(block, dict):
            self._own = None  # the scorer computes it (de-duplicated): no need to here
        elif self.reference is not None and self._own is not None:
            block = drift_block(self._own, self.reference)
            window["drift"] = block
            self._own = FeatureAccumulator()
        if not isinstance(block, dict) or not block.get("available"):
            return
        self.last_block = block
        self.export(block)

    def export(self, block: Mapping[str, Any]) -> None:
        """Set the gauges from a drift block and log its findings."""
        self.samples.set(block["samples"])
        for feature, values in block["features"].items():
            if values["psi"] is not None:
                self.psi.labels(feature=feature).set(values["psi"])
        churn = block["churn_rate"]
        if churn["observed"] is not None:
            self.churn_rate.set(churn["observed"])
        if block["evaluated"]:
            self.detected.set(1 if block["drifted"] else 0)
        for line in drift_warnings(block):
            logger.warning(line)
