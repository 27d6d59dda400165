"""The pipeline that is fitted: engineered features, one-hot and scaling, a classifier.

What :mod:`churnstream.model.train` fits and cross-validates, and the shape that
:mod:`churnstream.model.compile` knows how to read back into arrays.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from threadpoolctl import ThreadpoolController

from churnstream.exceptions import ModelError
from churnstream.model.feature_batch import (
    CONTRACT_INTERNET_LEVELS,
    MODEL_CATEGORICAL,
    MODEL_COLUMNS,
    MODEL_NUMERIC,
    RAW_CATEGORICAL,
)
from churnstream.model.features import feature_matrix
from churnstream.schemas import CATEGORICAL_LEVELS

logger = logging.getLogger(__name__)

#: Rows BLAS's matrix-vector kernels handle together (the compiled model's blocks are a
#: multiple of it).
BLAS_ROW_GROUP = 4

Algorithm = Literal["logreg", "gbm", "hgb", "ensemble"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
DEFAULT_ALGORITHM: Algorithm = "ensemble"

#: Hyper-parameters per estimator, chosen by CV ROC AUC on the training part only.
LOGREG_PARAMS: dict[str, Any] = {"C": 0.3, "max_iter": 2000}
GBM_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "n_estimators": 200,
    "max_depth": 3,
    "subsample": 0.8,
}
HGB_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "max_iter": 150,
    "max_depth": 3,
    "min_samples_leaf": 40,
    "l2_regularization": 0.5,
    "early_stopping": False,  # fixed iterations: no internal split, same model every run
}


def algorithm_params(algorithm: str) -> dict[str, Any]:
    """The explicit hyper-parameters of ``algorithm`` (what metadata.json records)."""
    if algorithm == "logreg":
        return {"logreg": dict(LOGREG_PARAMS)}
    if algorithm == "gbm":
        return {"gbm": dict(GBM_PARAMS)}
    if algorithm == "hgb":
        return {"hgb": dict(HGB_PARAMS)}
    if algorithm == "ensemble":
        return {
            "voting": "soft",
            "weights": [1, 1],
            "logreg": dict(LOGREG_PARAMS),
            "hgb": dict(HGB_PARAMS),
        }
    raise ModelError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def build_pipeline(algorithm: str = DEFAULT_ALGORITHM, random_state: int = 42) -> Pipeline:
    """An unfitted pipeline: engineered features -> one-hot + scaling -> classifier.

    Its input is a DataFrame holding the 19 ``FEATURE_COLUMNS`` as typed by
    :func:`churnstream.data.validate_frame`; extra columns are ignored. The one-hot levels are
    fixed from the schema, so a sample that lacks a level still yields the same columns, and
    unknown levels are encoded as all zeros rather than failing.
    """
    categories = [list(CATEGORICAL_LEVELS[c]) for c in RAW_CATEGORICAL]
    categories.append(list(CONTRACT_INTERNET_LEVELS))
    # feature_matrix yields an array in MODEL_COLUMNS order, so columns go by position.
    categorical = [MODEL_COLUMNS.index(c) for c in MODEL_CATEGORICAL]
    numeric = [MODEL_COLUMNS.index(c) for c in MODEL_NUMERIC]
    preprocess = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False),
                categorical,
            ),
            ("numeric", StandardScaler(), numeric),
        ],
        remainder="drop",
        sparse_threshold=0.0,
    )
    return Pipeline(
        [
            ("features", FunctionTransformer(feature_matrix, validate=False)),
            ("preprocess", preprocess),
            ("classifier", _classifier(algorithm, random_state)),
        ]
    )


def _classifier(algorithm: str, random_state: int) -> Any:
    makers: dict[str, Callable[[], Any]] = {
        "logreg": lambda: LogisticRegression(**LOGREG_PARAMS),
        "gbm": lambda: GradientBoostingClassifier(**GBM_PARAMS, random_state=random_state),
        "hgb": lambda: HistGradientBoostingClassifier(**HGB_PARAMS, random_state=random_state),
        "ensemble": lambda: VotingClassifier(
            [
                ("logreg", LogisticRegression(**LOGREG_PARAMS)),
                ("hgb", HistGradientBoostingClassifier(**HGB_PARAMS, random_state=random_state)),
            ],
            voting="soft",
        ),
    }
    if algorithm not in makers:
        raise ModelError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    return makers[algorithm]()


def churn_probabilities(pipeline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """``pipeline.predict_proba(frame)[:, 1]``, each row's bits independent of its batch.

    A logistic-regression member's product goes through BLAS, which gives the last
    ``n % 4`` rows of a call, and the last rows of each thread's share, other last bits
    than the rest. Such a pipeline is called with BLAS on one thread and whole groups of 4
    rows (a tail of 1-3 rows is padded with copies of its first), so every row goes through
    the kernel the compiled model's fixed blocks use
    (:func:`churnstream.model.arrays.blocked_product`): the two agree bit for bit on any
    batch. A pipeline without such a member is called once, as it is.
    """
    if len(frame) == 0 or not _has_linear_member(pipeline):
        return np.asarray(pipeline.predict_proba(frame)[:, 1], dtype=float)
    whole = len(frame) - len(frame) % BLAS_ROW_GROUP
    parts = []
    with _blas_threads().limit(limits=1, user_api="blas"):
        if whole:
            parts.append(pipeline.predict_proba(frame.iloc[:whole])[:, 1])
        if whole < len(frame):
            tail = np.r_[whole : len(frame), np.full(BLAS_ROW_GROUP, whole)][:BLAS_ROW_GROUP]
            parts.append(pipeline.predict_proba(frame.iloc[tail])[: len(frame) - whole, 1])
    return np.concatenate(parts).astype(float, copy=False)


@functools.cache
def _blas_threads() -> ThreadpoolController:
    return ThreadpoolController()


def _has_linear_member(pipeline: Pipeline) -> bool:
    classifier = pipeline[-1]
    members = getattr(classifier, "estimators_", None) or [classifier]
    return any(isinstance(member, LogisticRegression) for member in members)
