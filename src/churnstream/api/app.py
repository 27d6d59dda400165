"""The REST API: score customer records over HTTP with the loaded model (FastAPI).

Routes:

- ``POST /predict``: one customer record (the ``CustomerEvent`` contract, ``event_ts``
  optional and defaulting to now) gives one prediction body (the ``Prediction`` contract);
  a list gives a list, in the same order, scored in one vectorised model call. At most
  ``api.max_batch_records`` records (more: 422) and ``api.max_body_bytes`` bytes (more: 413).
- ``GET /model``: the loaded model's metadata (version, threshold, metrics, feature schema).
- ``POST /model/reload``: re-read the model source (``models/latest``); the new model
  replaces the old one only if it loads and passes its smoke prediction, else 409 and the old
  one keeps serving.
- ``GET /health/live`` (the process answers) and ``GET /health/ready`` (a model is loaded).
- ``GET /metrics``: Prometheus text from the app's own registry.
- ``GET /openapi.json`` and ``/docs``: the spec.

Every invalid request is a 422 with pydantic's field errors (``{"detail": [{"type", "loc",
"msg", ...}]}``), never a 500: malformed JSON (``NaN`` and ``Infinity`` included, JSON has
neither), wrong types, unknown categories, extra fields, too many records. The body is
decoded with orjson and validated as a whole, so the list-size cap applies before any record
is validated.

With ``api.token`` set, every route but ``/health/*`` and the docs needs ``Authorization:
Bearer <token>`` (compared in constant time), else 401 with ``WWW-Authenticate: Bearer``.

A request takes the current model once, at its start, so a reload never mixes two models in
one response: every prediction carries the version that scored it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool

from churnstream import __version__
from churnstream.api.auth import auth_dependencies
from churnstream.api.bodies import (
    HealthBody,
    ModelInfo,
    PredictionAnswer,
    ReloadResult,
    ValidationErrorBody,
)
from churnstream.api.decode import check_media_type, json_safe, read_body
from churnstream.api.holder import LoadedModel, ModelHolder, describe
from churnstream.api.metrics import ApiMetrics, RequestMetricsMiddleware
from churnstream.api.openapi import (
    EXAMPLE_PREDICTION,
    ChurnstreamApi,
    error_response,
    predict_openapi,
)
from churnstream.api.scoring import predict_body
from churnstream.exceptions import ModelError, ModelLoadError
from churnstream.settings import Settings

if TYPE_CHECKING:
    from churnstream.model.scorer import Scorer  # scikit-learn: only when a model loads

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings, scorer: Scorer | None = None, *, model_path: Path | None = None
) -> FastAPI:
    """The API app. Without ``scorer`` it loads one at start-up (lifespan) from
    ``model_path`` or ``settings.model.models_dir`` (following ``latest``); if that fails it
    still starts, not ready, until ``POST /model/reload`` succeeds.
    """
    api = settings.api
    holder = ModelHolder(Path(model_path or settings.model.models_dir), scorer)
    metrics = ApiMetrics()
    metrics.set_model(holder.current)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if holder.current is None:
            try:
                await run_in_threadpool(holder.reload)
            except ModelLoadError as exc:
                logger.error("no model loaded (%s); not ready until a reload succeeds", exc)
            metrics.set_model(holder.current)
        yield

    app = ChurnstreamApi(
        title="churnstream",
        version=__version__,
        summary="Real-time churn scoring: the trained model over HTTP.",
        description=(
            "Score telco customers for churn risk. `POST /predict` takes one customer record "
            "or a list of them and answers with the prediction contract of the Kafka "
            "pipeline. Invalid input is a 422 with pydantic's field errors."
        ),
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.models = holder
    app.state.metrics = metrics
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": json_safe(list(exc.errors()))}, status_code=422)

    @app.exception_handler(ModelError)
    async def _model_error(_request: Request, exc: ModelError) -> JSONResponse:
        logger.error("scoring failed: %s", exc)
        return JSONResponse({"detail": f"scoring failed: {exc}"}, status_code=500)

    def loaded_or_503() -> LoadedModel:
        loaded = holder.current
        if loaded is None:
            raise HTTPException(503, "no model loaded: train one, then POST /model/reload")
        return loaded

    auth_errors: dict[int | str, dict[str, Any]] = (
        {401: error_response("Missing or wrong bearer token (WWW-Authenticate: Bearer).")}
        if api.token is not None
        else {}
    )
    protected = APIRouter(dependencies=auth_dependencies(api.token), responses=auth_errors)
    public = APIRouter(tags=["health"])

    @protected.post(
        "/predict",
        tags=["predict"],
        summary="Score one customer record, or a list of them",
        response_model=PredictionAnswer | list[PredictionAnswer],
        responses={
            200: {
                "description": "One prediction for one record; a list, in order, for a list.",
                "content": {"application/json": {"example": EXAMPLE_PREDICTION}},
            },
            413: error_response("The body is larger than api.max_body_bytes."),
            415: error_response("The body is not JSON."),
            422: error_response(
                "Invalid records: malformed JSON, wrong types, unknown categories, extra "
                "fields, or more than api.max_batch_records records.",
                ValidationErrorBody,
            ),
            503: error_response("No model is loaded."),
        },
        openapi_extra=predict_openapi(api.max_batch_records),
    )
    async def predict(request: Request) -> Response:
        """Each record follows the `CustomerEvent` contract (`event_ts` optional, default
        now); each answer the `Prediction` contract, then `reasons`: the top 3 fields that
        raised the churn probability, with their contributions. A list is scored in one
        model call."""
        loaded = loaded_or_503()
        check_media_type(request)
        body = await read_body(request, api.max_body_bytes)
        content = await run_in_threadpool(
            predict_body, body, loaded, metrics, api.max_batch_records
        )
        return Response(content, media_type="application/json")

    @protected.get(
        "/model",
        tags=["model"],
        summary="The loaded model's metadata",
        response_model=ModelInfo,
        responses={503: error_response("No model is loaded.")},
    )
    def model_info() -> ModelInfo:
        return describe(loaded_or_503())

    @protected.post(
        "/model/reload",
        tags=["model"],
        summary="Load the model `latest` points to now",
        response_model=ReloadResult,
        responses={
            409: error_response(
                "The new model failed to load or its smoke test; the old one serves."
            )
        },
    )
    def reload_model() -> ReloadResult:
        """Swaps models only if the new one loads and passes its smoke prediction."""
        try:
            previous, current = holder.reload()
        except ModelLoadError as exc:
            metrics.reloads.labels("failed").inc()
            serving = holder.current.scorer.version if holder.current else "no model"
            logger.error("model reload refused: %s; still serving %s", exc, serving)
            raise HTTPException(409, f"reload refused, still serving {serving}: {exc}") from None
        changed = previous is None or previous.scorer.version != current.scorer.version
        metrics.reloads.labels("changed" if changed else "unchanged").inc()
        metrics.set_model(current)
        if changed:
            logger.info(
                "model reloaded: %s -> %s",
                previous.scorer.version if previous else "none",
                current.scorer.version,
            )
        return ReloadResult(
            changed=changed,
            previous_version=previous.scorer.version if previous else None,
            version=current.scorer.version,
            loaded_at=current.loaded_at,
        )

    @protected.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def prometheus(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(metrics.registry), media_type=content_type)

    @public.get(
        "/health/live",
        summary="The process answers",
        response_model=HealthBody,
        response_model_exclude_none=True,
    )
    def live() -> HealthBody:
        return HealthBody(status="ok")

    @public.get(
        "/health/ready",
        summary="A model is loaded",
        response_model=HealthBody,
        responses={503: {"model": HealthBody, "description": "No model is loaded."}},
    )
    def ready() -> Response:
        loaded = holder.current
        if loaded is None:
            body = HealthBody(status="not ready", detail="no model loaded")
            return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
        body = HealthBody(status="ready", model_version=loaded.scorer.version)
        return JSONResponse(body.model_dump(exclude_none=True))

    app.include_router(protected)
    app.include_router(public)
    return app
