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

import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from churnstream import __version__
from churnstream.exceptions import ModelError, ModelLoadError
from churnstream.schemas import (
    TIMESTAMP_COLUMN,
    TIMESTAMP_PATTERN,
    TOTAL_CHARGES_BLANK_PATTERN,
    TOTAL_CHARGES_NUMERIC_PATTERN,
    CustomerEvent,
    Prediction,
    utc_now_iso,
)
from churnstream.scoring.decode import features_of_events
from churnstream.settings import Settings

if TYPE_CHECKING:
    from churnstream.model.scorer import Scorer

logger = logging.getLogger(__name__)

NAMESPACE = "churnstream_api"
REQUEST_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
#: Route label for requests that matched no route (keeps the label set bounded).
UNMATCHED_ROUTE = "unmatched"
#: Method labels; any other method (clients may send any token) is counted as "other".
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
JSON_MEDIA_TYPES = ("application/json",)

_EVENTS: TypeAdapter[list[CustomerEvent]] = TypeAdapter(list[CustomerEvent])

#: The README's example customer, as a request would send it (event_ts left to the server).
EXAMPLE_RECORD: dict[str, Any] = {
    "customerID": "7590-VHVEG",
    "gender": "Female",
    "SeniorCitizen": 0,
    "Partner": "Yes",
    "Dependents": "No",
    "tenure": 1,
    "PhoneService": "No",
    "MultipleLines": "No phone service",
    "InternetService": "DSL",
    "OnlineSecurity": "No",
    "OnlineBackup": "Yes",
    "DeviceProtection": "No",
    "TechSupport": "No",
    "StreamingTV": "No",
    "StreamingMovies": "No",
    "Contract": "Month-to-month",
    "PaperlessBilling": "Yes",
    "PaymentMethod": "Electronic check",
    "MonthlyCharges": 29.85,
    "TotalCharges": 29.85,
}
EXAMPLE_RECORD_2: dict[str, Any] = {
    **EXAMPLE_RECORD,
    "customerID": "5575-GNVDE",
    "gender": "Male",
    "Partner": "No",
    "tenure": 34,
    "PhoneService": "Yes",
    "MultipleLines": "No",
    "OnlineSecurity": "Yes",
    "OnlineBackup": "No",
    "DeviceProtection": "Yes",
    "Contract": "One year",
    "PaperlessBilling": "No",
    "PaymentMethod": "Mailed check",
    "MonthlyCharges": 56.95,
    "TotalCharges": "1889.5",
    "event_ts": "2025-10-03T04:00:00Z",
}
EXAMPLE_PREDICTION: dict[str, Any] = {
    "customerID": "7590-VHVEG",
    "churn_probability": 0.6794111683369131,
    "prediction": "Yes",
    "event_ts": "2026-11-23T03:45:56.586452Z",
    "processed_ts": "2026-11-23T03:45:56.586452Z",
    "model_version": "20261123T034451Z-ensemble",
    "inference_latency_ms": 0.41,
}


# --- response bodies (documented in the OpenAPI spec) -------------------------------------


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


# --- the model pointer ----------------------------------------------------------------------


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


# --- metrics --------------------------------------------------------------------------------


class ApiMetrics:
    """The API's Prometheus metrics, on a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            f"{NAMESPACE}_requests",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{NAMESPACE}_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ("method", "route"),
            buckets=REQUEST_BUCKETS_S,
            registry=self.registry,
        )
        self.predictions = Counter(
            f"{NAMESPACE}_predictions",
            "Predictions served, by label.",
            ("prediction",),
            registry=self.registry,
        )
        self.batch_records = Histogram(
            f"{NAMESPACE}_batch_records",
            "Records per scored POST /predict.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            f"{NAMESPACE}_inference_seconds",
            "Duration of the model call of one POST /predict.",
            buckets=REQUEST_BUCKETS_S,
            registry=self.registry,
        )
        self.reloads = Counter(
            f"{NAMESPACE}_model_reloads",
            "POST /model/reload outcomes: changed, unchanged, failed.",
            ("result",),
            registry=self.registry,
        )
        self.model = Info(f"{NAMESPACE}_model", "The model being served.", registry=self.registry)

    def set_model(self, loaded: LoadedModel | None) -> None:
        if loaded is None:
            self.model.info({"version": "", "algorithm": "", "threshold": ""})
            return
        scorer = loaded.scorer
        self.model.info(
            {
                "version": scorer.version,
                "algorithm": str(scorer.metadata.get("algorithm", "")),
                "threshold": f"{scorer.threshold:.6g}",
            }
        )


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by its route *template* (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server error middleware answers if the app raises

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router puts the matched route into the (shared) scope.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "")
            method = method if method in KNOWN_METHODS else "other"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


# --- validation -----------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)  # e.g. the ValueError behind a custom validator's message


def _field_errors(exc: ValidationError, *, single: bool) -> list[dict[str, Any]]:
    """pydantic's errors for ``list[CustomerEvent]``, located in the request body."""
    errors = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if single:
            loc = loc[1:]  # the body was one record, not a list of one
        error: dict[str, Any] = {"type": err["type"], "loc": ["body", *loc], "msg": err["msg"]}
        # A missing field's "input" is the whole record around it: noise, once per field.
        if "input" in err and err["type"] != "missing":
            error["input"] = _json_safe(err["input"])
        if err.get("ctx"):
            error["ctx"] = _json_safe(err["ctx"])
        errors.append(error)
    return errors


def _body_error(kind: str, msg: str, **extra: Any) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ["body"], "msg": msg, **extra}])


def decode_records(body: bytes, max_records: int) -> tuple[list[CustomerEvent], bool]:
    """The body's customer records, validated, and whether it was one record (not a list).

    Raises RequestValidationError (422) with pydantic-style errors located in the body.
    """
    if not body.strip():
        raise _body_error("missing", "a customer record, or a list of them, is required")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", exc.pos],
                    "msg": "JSON decode error",
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    single = isinstance(data, dict)
    if single:
        items: list[Any] = [data]
    elif isinstance(data, list):
        if len(data) > max_records:
            raise _body_error(
                "too_long",
                f"List should have at most {max_records} items, not {len(data)}",
                ctx={"field_type": "List", "max_length": max_records, "actual_length": len(data)},
            )
        items = data
    else:
        raise _body_error(
            "model_type",
            "Input should be a customer record (a JSON object) or a list of them",
            input=data,
        )
    now = utc_now_iso()
    for item in items:
        if isinstance(item, dict):
            item.setdefault(TIMESTAMP_COLUMN, now)
    try:
        events = _EVENTS.validate_python(items)
    except ValidationError as exc:
        raise RequestValidationError(_field_errors(exc, single=single)) from None
    return events, single


def score_events(
    events: list[CustomerEvent], loaded: LoadedModel, metrics: ApiMetrics
) -> list[dict[str, Any]]:
    """Prediction bodies (the contract's fields, in its order) from ONE model call."""
    scorer = loaded.scorer
    if not events:
        return []
    features = features_of_events(events)
    started = time.perf_counter()
    proba = scorer.predict_features(features)
    seconds = time.perf_counter() - started
    labels = scorer.label(proba)
    processed = utc_now_iso()
    latency_ms = seconds * 1000
    metrics.inference.observe(seconds)
    metrics.batch_records.observe(len(events))
    positives = int(np.count_nonzero(labels == "Yes"))
    if positives:
        metrics.predictions.labels("Yes").inc(positives)
    if len(events) - positives:
        metrics.predictions.labels("No").inc(len(events) - positives)
    return [
        {
            "customerID": event.customerID,
            "churn_probability": probability,
            "prediction": label,
            "event_ts": event.event_ts,
            "processed_ts": processed,
            "model_version": scorer.version,
            "inference_latency_ms": latency_ms,
        }
        for event, probability, label in zip(events, proba.tolist(), labels.tolist(), strict=True)
    ]


def _predict_body(body: bytes, loaded: LoadedModel, metrics: ApiMetrics, max_records: int) -> bytes:
    events, single = decode_records(body, max_records)
    bodies = score_events(events, loaded, metrics)
    return orjson.dumps(bodies[0] if single else bodies)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one larger than ``limit`` without reading it all."""
    too_large = HTTPException(413, f"request body larger than {limit} bytes (api.max_body_bytes)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _check_media_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return  # be lenient with clients that send no type at all
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in JSON_MEDIA_TYPES and not media.endswith("+json"):
        raise HTTPException(415, "send the records as JSON (Content-Type: application/json)")


# --- OpenAPI --------------------------------------------------------------------------------


def customer_record_schema() -> dict[str, Any]:
    """The JSON Schema of a request record: ``CustomerEvent``'s, ``event_ts`` optional, and
    the constraints its custom validators enforce spelled out for clients and fuzzers."""
    schema = CustomerEvent.model_json_schema()
    props = schema["properties"]
    money = {"minimum": 0, "maximum": 200}
    props["MonthlyCharges"] = {
        "anyOf": [{"type": "number", **money}, {"type": "integer", **money}],
        "title": "Monthlycharges",
    }
    props["TotalCharges"] = {
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "integer", "minimum": 0},
            {
                "type": "string",
                "pattern": f"{TOTAL_CHARGES_NUMERIC_PATTERN}|{TOTAL_CHARGES_BLANK_PATTERN}",
            },
        ],
        "title": "Totalcharges",
        "description": "A number, a numeric string, or blank for a new customer (scored as 0).",
    }
    props[TIMESTAMP_COLUMN] = {
        "type": "string",
        "pattern": TIMESTAMP_PATTERN,
        "title": "Event Ts",
        "description": "ISO 8601 UTC (a missing Z still means UTC); default: now.",
        "examples": ["2025-10-03T04:00:00Z"],
    }
    schema["required"] = [name for name in schema["required"] if name != TIMESTAMP_COLUMN]
    schema["title"] = "CustomerRecord"
    schema["description"] = (
        "One customer record, as on telco.raw.customers; event_ts is optional here. "
        "Churn, if present, is ignored."
    )
    return schema


def _predict_openapi(max_records: int) -> dict[str, Any]:
    record = {"$ref": "#/components/schemas/CustomerRecord"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            record,
                            {"type": "array", "items": record, "maxItems": max_records},
                        ]
                    },
                    "examples": {
                        "one": {"summary": "one customer", "value": EXAMPLE_RECORD},
                        "batch": {
                            "summary": "a batch (one model call)",
                            "value": [EXAMPLE_RECORD, EXAMPLE_RECORD_2],
                        },
                    },
                }
            },
        }
    }


class _Api(FastAPI):
    def openapi(self) -> dict[str, Any]:
        schema = super().openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("CustomerRecord", customer_record_schema())
        return schema


def _error(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": description}


# --- the app --------------------------------------------------------------------------------


_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="The value of api.token (CHURNSTREAM_API__TOKEN).",
)


def _auth_dependency(token: SecretStr | None) -> list[Any]:
    """Route dependencies enforcing the bearer token; none when no token is configured."""
    if token is None:
        return []
    expected = token.get_secret_value().encode()

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        if credentials is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        # Constant time, so the answer's timing says nothing about how much of it matched.
        # Header values arrive decoded as latin-1: encoding back gives the bytes as sent.
        if not hmac.compare_digest(credentials.credentials.encode("latin-1"), expected):
            raise HTTPException(
                401,
                "invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    return [Depends(require_token)]


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

    app = _Api(
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
        return JSONResponse({"detail": _json_safe(list(exc.errors()))}, status_code=422)

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
        {401: _error("Missing or wrong bearer token (WWW-Authenticate: Bearer).")}
        if api.token is not None
        else {}
    )
    protected = APIRouter(dependencies=_auth_dependency(api.token), responses=auth_errors)
    public = APIRouter(tags=["health"])

    @protected.post(
        "/predict",
        tags=["predict"],
        summary="Score one customer record, or a list of them",
        response_model=Prediction | list[Prediction],
        responses={
            200: {
                "description": "One prediction for one record; a list, in order, for a list.",
                "content": {"application/json": {"example": EXAMPLE_PREDICTION}},
            },
            413: _error("The body is larger than api.max_body_bytes."),
            415: _error("The body is not JSON."),
            422: _error(
                "Invalid records: malformed JSON, wrong types, unknown categories, extra "
                "fields, or more than api.max_batch_records records.",
                ValidationErrorBody,
            ),
            503: _error("No model is loaded."),
        },
        openapi_extra=_predict_openapi(api.max_batch_records),
    )
    async def predict(request: Request) -> Response:
        """Each record follows the `CustomerEvent` contract (`event_ts` optional, default
        now); each answer the `Prediction` contract. A list is scored in one model call."""
        loaded = loaded_or_503()
        _check_media_type(request)
        body = await _read_body(request, api.max_body_bytes)
        content = await run_in_threadpool(
            _predict_body, body, loaded, metrics, api.max_batch_records
        )
        return Response(content, media_type="application/json")

    @protected.get(
        "/model",
        tags=["model"],
        summary="The loaded model's metadata",
        response_model=ModelInfo,
        responses={503: _error("No model is loaded.")},
    )
    def model_info() -> ModelInfo:
        return _model_info(loaded_or_503())

    @protected.post(
        "/model/reload",
        tags=["model"],
        summary="Load the model `latest` points to now",
        response_model=ReloadResult,
        responses={
            409: _error("The new model failed to load or its smoke test; the old one serves.")
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


def _model_info(loaded: LoadedModel) -> ModelInfo:
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
