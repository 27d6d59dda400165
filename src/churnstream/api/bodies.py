"""The API's response bodies besides predictions, as documented in the OpenAPI spec."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from churnstream.schemas import Prediction

logger = logging.getLogger(__name__)


class ReasonBody(BaseModel):
    """One reason: a customer field (or engineered feature), the customer's value of it, and
    how much it added to the churn probability."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    value: str | int | float
    contribution: float


class PredictionAnswer(Prediction):
    """A prediction over HTTP: the ``Prediction`` contract, then its top reasons (up to
    three, largest contribution first; absent when the model cannot give them)."""

    reasons: list[ReasonBody] | None = None


class ErrorBody(BaseModel):
    """An error that is not about a field: auth, size, media type, no model."""

    detail: str


class FieldError(BaseModel):
    """One validation error, as pydantic reports it; ``loc`` starts with ``body``."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrorBody(BaseModel):
    detail: list[FieldError]


class HealthBody(BaseModel):
    status: Literal["ok", "ready", "not ready"]
    model_version: str | None = None
    detail: str | None = None


class ModelInfo(BaseModel):
    """What the loaded model is and how good it was on held-out data (from metadata.json)."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    algorithm: str
    created_at: str | None = None
    threshold: float = Field(description="A probability >= this is labelled 'Yes'.")
    threshold_method: str | None = None
    metrics: dict[str, Any] = Field(description="Held-out test, cross-validation and OOF.")
    summary_metrics: dict[str, Any] | None = None
    confusion_matrix: dict[str, Any] | None = None
    feature_schema: dict[str, Any]
    data: dict[str, Any] | None = Field(default=None, description="Training data hash, rows.")
    library_versions: dict[str, str] | None = None
    model_sha256: str
    loaded_at: str = Field(description="When this server loaded the model (UTC).")


class ReloadResult(BaseModel):
    changed: bool
    previous_version: str | None
    version: str
    loaded_at: str
