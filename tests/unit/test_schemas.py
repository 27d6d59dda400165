"""Our models against the contracts of the system we replace (../shared/contracts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from churnstream.data import load_dataset
from churnstream.schemas import (
    CustomerEvent,
    DeadLetter,
    Prediction,
    coerce_total_charges,
    dump_body,
    parse_ts,
)
from tests.conftest import CONTRACTS_DIR

EVENT: dict[str, Any] = {
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
    "Churn": "No",
    "event_ts": "2025-10-03T04:00:00Z",
}


def contract(name: str) -> jsonschema.protocols.Validator:
    path = CONTRACTS_DIR / name
    if not path.is_file():
        pytest.skip(f"{CONTRACTS_DIR} absent: the legacy contracts live beside the repo in shared/")
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_event_body_valid_under_contract() -> None:
    body = dump_body(CustomerEvent.model_validate(EVENT))
    contract("telco_customer_schema.json").validate(body)
    assert body == EVENT


def test_every_dataset_row_is_a_valid_event(dataset_path: Path) -> None:
    from churnstream.events import frame_to_events  # the producer's own encoder

    validator = contract("telco_customer_schema.json")
    bodies = frame_to_events(load_dataset(dataset_path), "2025-10-03T04:00:00.000000Z")
    assert len(bodies) == 7043
    for body in bodies:
        validator.validate(body)
        CustomerEvent.model_validate(body)


def test_prediction_body_valid_under_contract() -> None:
    pred = Prediction(
        customerID="7590-VHVEG",
        churn_probability=0.71,
        prediction="Yes",
        event_ts="2025-10-03T04:00:00Z",
        processed_ts="2025-10-03T04:00:00.123456Z",
        model_version="v1",
        inference_latency_ms=0.4,
    )
    contract("churn_prediction_schema.json").validate(dump_body(pred))
    minimal = Prediction(
        customerID="7590-VHVEG",
        churn_probability=0.0,
        prediction="No",
        event_ts="2025-10-03T04:00:00Z",
        processed_ts="2025-10-03T04:00:00Z",
    )
    body = dump_body(minimal)
    assert "model_version" not in body  # optional fields are omitted, never null
    contract("churn_prediction_schema.json").validate(body)


def test_dead_letter_body_valid_under_contract() -> None:
    letter = DeadLetter(
        original_message={"raw_text": "not json"},
        error_type="validation_error",
        error_message="not valid JSON",
        validation_errors=["body: not JSON"],
        source_topic="telco.raw.customers",
        failed_ts="2025-10-03T04:00:00.5Z",
        consumer_group="churnstream-scorer",
        retry_count=0,
    )
    contract("deadletter_schema.json").validate(dump_body(letter))


def test_events_without_churn_are_valid_input() -> None:
    event = CustomerEvent.model_validate({k: v for k, v in EVENT.items() if k != "Churn"})
    assert event.Churn is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customerID", "7590-vhveg"),
        ("SeniorCitizen", 2),
        ("SeniorCitizen", True),
        ("tenure", "12"),
        ("tenure", 101),
        ("tenure", None),
        ("MonthlyCharges", 200.5),
        ("MonthlyCharges", "29.85"),
        ("Contract", "Weekly"),
        ("TotalCharges", "abc"),
        ("TotalCharges", -1),
        ("TotalCharges", None),
        ("event_ts", "yesterday"),
        ("event_ts", "2025-13-40T00:00:00Z"),
        ("extra_field", 1),
    ],
)
def test_contract_violations_are_rejected_by_both(field: str, value: Any) -> None:
    body = {**EVENT, field: value}
    with pytest.raises(ValidationError):
        CustomerEvent.model_validate(body)
    if field == "event_ts" and value.startswith("2025-13"):
        return  # the contract's pattern alone cannot see an impossible month; we can
    with pytest.raises(jsonschema.ValidationError):
        contract("telco_customer_schema.json").validate(body)


@pytest.mark.parametrize("value", [1889.5, 0, "1889.5", " ", ""])
def test_total_charges_forms_the_contract_allows(value: Any) -> None:
    body = {**EVENT, "TotalCharges": value}
    contract("telco_customer_schema.json").validate(body)
    event = CustomerEvent.model_validate(body)
    assert event.total_charges_value() == coerce_total_charges(value)


def test_coercion_policy() -> None:
    assert coerce_total_charges(" ") == 0.0
    assert coerce_total_charges("12.5") == 12.5
    assert coerce_total_charges(7) == 7.0


def test_timestamp_without_z_is_utc() -> None:
    assert parse_ts("2025-10-03T04:00:00").utcoffset() is not None
    assert parse_ts("2025-10-03T04:00:00.5Z") == parse_ts("2025-10-03T04:00:00.500Z")


def test_exported_schemas_round_trip(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from churnstream.cli import app

    result = CliRunner().invoke(app, ["schema", "export", "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    schema = json.loads((tmp_path / "customer_event.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert "Churn" not in schema["required"] and "event_ts" in schema["required"]
    jsonschema.Draft202012Validator(schema).validate(EVENT)
