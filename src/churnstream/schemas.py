"""The wire contract: customer events in, predictions and dead letters out.

These models are compatible with the JSON Schemas of the system we replace (its clients keep
working against ours); a test validates what they emit against those files. Anything extra
travels in Kafka headers, never in these bodies.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

CUSTOMER_ID_PATTERN = r"^[0-9]{4}-[A-Z]{5}$"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?$"
TOTAL_CHARGES_NUMERIC_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
TOTAL_CHARGES_BLANK_PATTERN = r"^\s*$"

YES_NO = ("Yes", "No")
INTERNET_ADDON = ("Yes", "No", "No internet service")

#: The categorical features and the levels the contract allows for each.
CATEGORICAL_LEVELS: dict[str, tuple[str, ...]] = {
    "gender": ("Male", "Female"),
    "Partner": YES_NO,
    "Dependents": YES_NO,
    "PhoneService": YES_NO,
    "MultipleLines": ("Yes", "No", "No phone service"),
    "InternetService": ("DSL", "Fiber optic", "No"),
    "OnlineSecurity": INTERNET_ADDON,
    "OnlineBackup": INTERNET_ADDON,
    "DeviceProtection": INTERNET_ADDON,
    "TechSupport": INTERNET_ADDON,
    "StreamingTV": INTERNET_ADDON,
    "StreamingMovies": INTERNET_ADDON,
    "Contract": ("Month-to-month", "One year", "Two year"),
    "PaperlessBilling": YES_NO,
    "PaymentMethod": (
        "Electronic check",
        "Mailed check",
        "Bank transfer (automatic)",
        "Credit card (automatic)",
    ),
}

#: Numeric features with the contract's inclusive bounds (None: unbounded above).
NUMERIC_BOUNDS: dict[str, tuple[float, float | None]] = {
    "SeniorCitizen": (0, 1),
    "tenure": (0, 100),
    "MonthlyCharges": (0, 200),
    "TotalCharges": (0, None),
}

ID_COLUMN = "customerID"
TARGET_COLUMN = "Churn"
TIMESTAMP_COLUMN = "event_ts"
#: The 19 model features, in the dataset's column order. `Churn` is never one of them.
FEATURE_COLUMNS: tuple[str, ...] = (
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
)
#: The dataset's 21 columns, in file order.
DATASET_COLUMNS: tuple[str, ...] = (ID_COLUMN, *FEATURE_COLUMNS, TARGET_COLUMN)

_TS_RE = re.compile(TIMESTAMP_PATTERN)


def format_ts(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``, the form every body uses."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now_iso() -> str:
    return format_ts(datetime.now(UTC))


def parse_ts(value: str) -> datetime:
    """Parse a contract timestamp; a missing ``Z`` still means UTC."""
    if not _TS_RE.match(value):
        raise ValueError(f"{value!r} is not an ISO 8601 UTC timestamp like 2025-10-03T04:00:00Z")
    return datetime.fromisoformat(value.removesuffix("Z")).replace(tzinfo=UTC)


def _check_ts(value: str) -> str:
    parse_ts(value)  # also rejects impossible dates such as 2025-13-40
    return value


def _check_total_charges(value: float | int | str) -> float | int | str:
    if isinstance(value, str):
        if not (
            re.match(TOTAL_CHARGES_NUMERIC_PATTERN, value)
            or re.match(TOTAL_CHARGES_BLANK_PATTERN, value)
        ):
            raise ValueError("must be a number, a numeric string, or blank for a new customer")
    elif value < 0:
        raise ValueError("must be >= 0")
    return value


Timestamp = Annotated[StrictStr, AfterValidator(_check_ts)]
CustomerId = Annotated[StrictStr, Field(pattern=CUSTOMER_ID_PATTERN)]
YesNo = Literal["Yes", "No"]
InternetAddon = Literal["Yes", "No", "No internet service"]
Money = Annotated[StrictFloat | StrictInt, Field(ge=0, le=200, allow_inf_nan=False)]
TotalCharges = Annotated[StrictFloat | StrictInt | StrictStr, AfterValidator(_check_total_charges)]


class _Contract(BaseModel):
    # The contracts say additionalProperties: false, so unknown fields are errors, not noise.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CustomerEvent(_Contract):
    """One customer record on `telco.raw.customers`.

    ``Churn`` is optional: events with or without it are valid input to scoring, and the
    scorer never uses it as a feature. ``TotalCharges`` may be a number, a numeric string,
    or blank (new customers, tenure 0); blank is scored as 0.0.
    """

    customerID: CustomerId
    gender: Literal["Male", "Female"]
    SeniorCitizen: Annotated[StrictInt, Field(ge=0, le=1)]
    Partner: YesNo
    Dependents: YesNo
    tenure: Annotated[StrictInt, Field(ge=0, le=100)]
    PhoneService: YesNo
    MultipleLines: Literal["Yes", "No", "No phone service"]
    InternetService: Literal["DSL", "Fiber optic", "No"]
    OnlineSecurity: InternetAddon
    OnlineBackup: InternetAddon
    DeviceProtection: InternetAddon
    TechSupport: InternetAddon
    StreamingTV: InternetAddon
    StreamingMovies: InternetAddon
    Contract: Literal["Month-to-month", "One year", "Two year"]
    PaperlessBilling: YesNo
    PaymentMethod: Literal[
        "Electronic check",
        "Mailed check",
        "Bank transfer (automatic)",
        "Credit card (automatic)",
    ]
    MonthlyCharges: Money
    TotalCharges: TotalCharges
    Churn: YesNo | None = None
    event_ts: Timestamp

    def total_charges_value(self) -> float:
        return coerce_total_charges(self.TotalCharges)


def coerce_total_charges(value: Any) -> float:
    """The coercion policy for `TotalCharges`: numbers as is, numeric strings parsed, blank 0.0.

    Blank appears for the 11 customers with tenure 0, who have not been billed yet, so 0.0 is
    the true amount rather than a guess.
    """
    if isinstance(value, str):
        return float(value) if value.strip() else 0.0
    return float(value)


class Prediction(_Contract):
    """One prediction on `telco.churn.predictions`."""

    customerID: CustomerId
    churn_probability: Annotated[float, Field(ge=0.0, le=1.0)]
    prediction: YesNo
    event_ts: Timestamp
    processed_ts: Timestamp
    model_version: str | None = None
    inference_latency_ms: Annotated[float, Field(ge=0)] | None = None


ErrorType = Literal["validation_error", "inference_error", "processing_error", "unknown_error"]


class DeadLetter(_Contract):
    """One message that could not be scored, on `telco.deadletter`.

    ``original_message`` must be an object by contract. A body that was not a JSON object
    is wrapped: ``{"raw_text": ...}`` for UTF-8 text, ``{"raw_base64": ...}`` otherwise.
    """

    original_message: dict[str, Any]
    error_type: ErrorType
    error_message: str
    validation_errors: list[str] | None = None
    source_topic: str
    failed_ts: Timestamp
    consumer_group: str | None = None
    retry_count: Annotated[int, Field(ge=0)] | None = None


def dump_body(model: BaseModel) -> dict[str, Any]:
    """The JSON body of a contract model: optional fields left unset are omitted, not null."""
    return model.model_dump(mode="json", exclude_none=True)


CONTRACT_MODELS: dict[str, type[BaseModel]] = {
    "customer_event": CustomerEvent,
    "prediction": Prediction,
    "dead_letter": DeadLetter,
}


def validation_messages(exc: ValidationError) -> list[str]:
    """Readable ``field: message`` lines from a pydantic error."""
    out = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        out.append(f"{where}: {err['msg']}")
    return out
