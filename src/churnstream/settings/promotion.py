"""The ``promotion`` section: the MLflow Model Registry and the champion/challenger gate."""

from __future__ import annotations

import logging

from pydantic import Field

from churnstream.settings.sections import _Frozen

logger = logging.getLogger(__name__)


class PromotionSettings(_Frozen):
    """Where models are registered, and what a challenger must show to become champion.

    The held-out gate compares the two models on the challenger's held-out split: the
    challenger's ROC AUC must be at least the champion's plus ``min_roc_auc_gain``, and its
    Brier score at most the champion's minus ``min_brier_gain``. The shadow gate scores the
    input topic's events of the ``shadow_window_s`` seconds after the challenger was
    registered with both models: at least ``shadow_min_events`` of them, labels agreeing on
    at least ``shadow_min_agreement`` of them, and churn rates no more than
    ``shadow_max_churn_rate_shift`` apart.
    """

    #: The registered model's name; its aliases ``champion`` and ``challenger`` are ours.
    registered_model: str = Field(default="churnstream-churn", min_length=1)
    #: None: ``$MLFLOW_TRACKING_URI``, else ``file:./mlruns`` (the registry uses the same URI).
    tracking_uri: str | None = None
    #: ``model evaluate`` (the training DAG) refuses a model under this held-out ROC AUC.
    min_roc_auc: float = Field(default=0.75, ge=0, le=1)
    min_roc_auc_gain: float = Field(default=0.005, ge=0, le=1)
    min_brier_gain: float = Field(default=0.0, ge=0, le=1)
    #: A held-out split under this many rows cannot decide anything (nor can its AUC).
    min_holdout_rows: int = Field(default=200, ge=10)
    shadow_window_s: float = Field(default=3600.0, gt=0)
    shadow_min_events: int = Field(default=1000, ge=1)
    shadow_min_agreement: float = Field(default=0.8, ge=0, le=1)
    shadow_max_churn_rate_shift: float = Field(default=0.1, ge=0, le=1)
