"""The OpenAPI spec's extras: the request record's schema, examples, error responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from churnstream.api.bodies import ErrorBody
from churnstream.schemas import (
    TIMESTAMP_COLUMN,
    TIMESTAMP_PATTERN,
    TOTAL_CHARGES_BLANK_PATTERN,
    TOTAL_CHARGES_NUMERIC_PATTERN,
    CustomerEvent,
)

logger = logging.getLogger(__name__)

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
    "reasons": [
        {"feature": "tenure", "value": 1, "contribution": 0.3855996425889299},
        {"feature": "Contract", "value": "Month-to-month", "contribution": 0.28723814005508036},
        {"feature": "TotalCharges", "value": 29.85, "contribution": 0.11415090535263143},
    ],
}


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


def predict_openapi(max_records: int) -> dict[str, Any]:
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


class ChurnstreamApi(FastAPI):
    def openapi(self) -> dict[str, Any]:
        schema = super().openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("CustomerRecord", customer_record_schema())
        return schema


def error_response(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": description}
