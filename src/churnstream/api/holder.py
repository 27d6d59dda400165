"""The model being served: swapped as one reference, so a request keeps the model it took."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from churnstream.api.bodies import ModelInfo
from churnstream.schemas import utc_now_iso

if TYPE_CHECKING:
    from churnstream.model.scorer import Scorer  # scikit-learn: only when a model loads

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    scorer: Scorer
    loaded_at: str


class ModelHolder:
    """The model being served. ``current`` is swapped as one reference, so a request that
    took it keeps scoring with it while a reload replaces it for the requests after."""

    def __init__(self, source: Path, scorer: Scorer | None = None) -> None:
        self.source = source
        self.current: LoadedModel | None = (
            LoadedModel(scorer, utc_now_iso()) if scorer is not None else None
        )
        self._lock = threading.Lock()

    def reload(self) -> tuple[LoadedModel | None, LoadedModel]:
        """Load ``source`` (following ``latest``) and swap it in if it differs from the
        current version. Raises ModelLoadError, leaving the current model serving."""
        from churnstream.model.scorer import Scorer  # scikit-learn: only when needed

        with self._lock:
            previous = self.current
            scorer = Scorer.load(self.source)
            if previous is not None and previous.scorer.version == scorer.version:
                return previous, previous
            self.current = LoadedModel(scorer, utc_now_iso())
            return previous, self.current


def describe(loaded: LoadedModel) -> ModelInfo:
    scorer = loaded.scorer
    meta = scorer.metadata
    threshold = meta.get("threshold")
    return ModelInfo(
        version=scorer.version,
        algorithm=str(meta.get("algorithm", "")),
        created_at=meta.get("created_at"),
        threshold=scorer.threshold,
        threshold_method=threshold.get("method") if isinstance(threshold, dict) else None,
        metrics=meta.get("metrics") or {},
        summary_metrics=meta.get("summary_metrics"),
        confusion_matrix=meta.get("confusion_matrix"),
        feature_schema=meta.get("feature_schema") or {},
        data=meta.get("data"),
        library_versions=meta.get("library_versions"),
        model_sha256=str(meta.get("model_sha256", "")),
        loaded_at=loaded.loaded_at,
    )
