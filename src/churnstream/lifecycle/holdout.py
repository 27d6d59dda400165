"""The held-out rows a challenger and its champion are compared on, and their scores there.

Given the challenger's own training file (same sha256 as its metadata records), the rows are
its held-out split, rebuilt exactly as :func:`churnstream.model.train.train_model` made it
(same sample, ``test_size`` and ``random_state``): rows the challenger never saw. Given any
other labelled file, every row of it is held out (the challenger never saw that file).
The champion may have seen some of these rows in its own training; the comparison favours
the champion then, never the challenger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split

from churnstream.data import load_dataset, sha256_of
from churnstream.exceptions import DataError
from churnstream.model.scorer import Scorer
from churnstream.model.train import stratified_sample, target_vector
from churnstream.schemas import FEATURE_COLUMNS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holdout:
    features: pd.DataFrame
    y: np.ndarray
    source: str

    @property
    def rows(self) -> int:
        return len(self.y)


def holdout_for(metadata: dict[str, Any], data_path: Path | None = None) -> Holdout:
    """The held-out rows for the model whose metadata.json is ``metadata`` (see module doc)."""
    data = metadata.get("data", {})
    path = data_path if data_path is not None else Path(str(data.get("path", "")))
    if not path.is_file():
        raise DataError(
            f"held-out data {path} not found (the challenger's training file); pass --data"
        )
    frame = load_dataset(path)
    if sha256_of(path) != data.get("sha256"):
        return Holdout(
            frame.loc[:, list(FEATURE_COLUMNS)],
            target_vector(frame),
            f"all {len(frame)} rows of {path}",
        )
    seed = int(metadata["random_state"])
    if data.get("sample"):
        frame = stratified_sample(frame, int(data["sample"]), seed)
    _, x_test, _, y_test = train_test_split(
        frame.loc[:, list(FEATURE_COLUMNS)],
        target_vector(frame),
        test_size=float(data["test_size"]),
        stratify=target_vector(frame),
        random_state=seed,
    )
    return Holdout(x_test, np.asarray(y_test), f"held-out split of {path} ({len(y_test)} rows)")


def score(scorer: Scorer, holdout: Holdout) -> dict[str, float]:
    """ROC AUC and Brier score of ``scorer`` on the held-out rows."""
    proba = scorer.predict_proba(holdout.features)
    return {
        "roc_auc": float(roc_auc_score(holdout.y, proba)),
        "brier": float(brier_score_loss(holdout.y, proba)),
    }
