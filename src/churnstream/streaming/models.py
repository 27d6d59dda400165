"""Model lifecycle inside a running scorer: hot reload of `models/latest`, and a shadow tap.

Both act between batches only, so a batch is always scored by one model and every
prediction carries the version that scored it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from churnstream.exceptions import ModelLoadError
from churnstream.logging import MODEL_VERSION
from churnstream.model.artifacts import LATEST_FILE
from churnstream.model.feature_batch import FeatureBatch
from churnstream.model.lean import LeanScorer

logger = logging.getLogger(__name__)


class ModelWatcher:
    """Notices a new `models/latest` and loads it; a model that fails to load or fails its
    smoke prediction is refused once (logged), and the current one keeps serving."""

    def __init__(self, models_path: Path, current: LeanScorer, *, interval_s: float) -> None:
        self.latest = models_path / LATEST_FILE
        self.interval_s = interval_s
        self.current_name = current.path.name
        self.refused: str | None = None
        self._next_check = time.monotonic() + interval_s

    @property
    def enabled(self) -> bool:
        """Only a models root (with a `latest` pointer) can change under a running scorer."""
        return self.latest.is_file()

    def poll(self) -> LeanScorer | None:
        """A newly loaded scorer if `latest` moved to a good model since the last call."""
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.interval_s
        try:
            name = self.latest.read_text(encoding="utf-8").strip()
        except OSError:
            return None  # mid-replace or gone: look again next time
        if not name or name == self.current_name or name == self.refused:
            return None
        try:
            scorer = LeanScorer.load(self.latest.parent)
        except ModelLoadError as exc:
            self.refused = name
            logger.error(
                "refused new model %s (%s); still serving %s",
                name,
                exc,
                self.current_name,
                extra={MODEL_VERSION: name},
            )
            return None
        logger.info(
            "model reloaded: %s -> %s",
            self.current_name,
            scorer.version,
            extra={MODEL_VERSION: scorer.version},
        )
        self.current_name = scorer.path.name
        self.refused = None
        return scorer


class ShadowTap:
    """Stands in for the champion in one batch's model call and also runs the shadow model
    on the very same features, keeping its probabilities for the batch that follows.

    ``score_batch`` calls the model once per batch (row by row only if that call fails); the
    shadow result is kept only for that first whole-batch call.
    """

    def __init__(self, champion: LeanScorer, shadow: LeanScorer) -> None:
        self.champion = champion
        self.shadow = shadow
        self._calls = 0
        self.shadow_proba: np.ndarray | None = None

    def begin(self) -> None:
        self._calls = 0
        self.shadow_proba = None

    def _tap(self, batch: FeatureBatch, champion_proba: np.ndarray) -> np.ndarray:
        self._calls += 1
        if self._calls == 1:
            try:
                proba = np.asarray(self.shadow.predict_features(batch), dtype=float)
                if proba.shape == champion_proba.shape and np.isfinite(proba).all():
                    self.shadow_proba = proba
            except Exception:  # noqa: BLE001 - the shadow must never hurt the champion
                logger.warning(
                    "shadow model %s failed on a batch",
                    self.shadow.version,
                    exc_info=True,
                    extra={MODEL_VERSION: self.shadow.version},
                )
        return champion_proba

    def predict_features(self, batch: FeatureBatch) -> np.ndarray:
        return self._tap(batch, self.champion.predict_features(batch))
