"""The bad-input corpus on a real broker: every kind is dead-lettered with its reason, the
valid messages around it are scored, and the scorer never stops."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.headers import ERROR_CODE_HEADER, SOURCE_HEADER
from tests.integration.kafka_io import read_topic, send_raw
from tests.unit.test_schemas import EVENT, contract

pytestmark = pytest.mark.integration

KEY = EVENT["customerID"].encode()


def body(**changes: Any) -> bytes:
    return orjson.dumps({**EVENT, **changes})


def without(field: str) -> bytes:
    return orjson.dumps({k: v for k, v in EVENT.items() if k != field})


#: (name, key, value, expected reason code, a word the reason must contain)
CORPUS: list[tuple[str, bytes | None, bytes | None, str, str]] = [
    ("not json", KEY, b"customerID=7590-VHVEG", "not_json", "JSON"),
    ("not utf-8", KEY, b'{"customerID": "\xff\xfe"}', "not_utf8", "UTF-8"),
    ("json array", KEY, b"[1, 2, 3]", "not_object", "not an object"),
    ("json string", KEY, b'"hello"', "not_object", "not an object"),
    ("empty body", KEY, b"", "empty_body", "empty"),
    ("null body", KEY, None, "empty_body", "empty"),
    ("huge body", KEY, b'{"pad": "' + b"x" * 200_000 + b'"}', "too_large", "bytes"),
    ("missing field", KEY, without("tenure"), "schema", "tenure: Field required"),
    ("missing event_ts", KEY, without("event_ts"), "schema", "event_ts"),
    ("wrong type", KEY, body(tenure="twelve"), "schema", "tenure"),
    ("numeric string for int", KEY, body(SeniorCitizen="1"), "schema", "SeniorCitizen"),
    ("null value", KEY, body(MonthlyCharges=None), "schema", "MonthlyCharges"),
    ("NaN", KEY, body(MonthlyCharges=1.0).replace(b"1.0", b"NaN"), "not_json", "JSON"),
    ("Infinity", KEY, body(TotalCharges=1.0).replace(b"1.0", b"Infinity"), "not_json", "JSON"),
    ("out of range", KEY, body(tenure=250), "schema", "tenure"),
    ("negative charges", KEY, body(MonthlyCharges=-5.0), "schema", "MonthlyCharges"),
    ("unknown category", KEY, body(Contract="Lifetime"), "schema", "Contract"),
    ("bad customerID", b"bad", body(customerID="bad"), "schema", "customerID"),
    ("bad event_ts", KEY, body(event_ts="2025-13-45T99:00:00Z"), "schema", "event_ts"),
    ("extra field", KEY, body(loyalty_tier="gold"), "schema", "loyalty_tier"),
    (
        "duplicate key",
        KEY,
        body(tenure=3).replace(b'"tenure":3', b'"tenure":3,"tenure":70'),
        "duplicate_key",
        "tenure",
    ),
    ("key differs", b"1111-AAAAA", body(), "key_mismatch", "differs"),
]


def test_bad_input_corpus(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    model_dir: Path,
    tmp_path: Path,
) -> None:
    raw, preds, dlq = topic_factory(3), topic_factory(3), topic_factory(1)
    messages: list[tuple[bytes | None, bytes | None]] = []
    good = 0
    for _name, key, value, _code, _word in CORPUS:
        # a valid event before and after every bad one
        messages.append((KEY, body(tenure=good % 72)))
        messages.append((key, value))
        good += 1
    messages.append((KEY, body(tenure=5)))
    good += 1
    # Valid edge cases the contract allows: no Churn, blank and numeric-string TotalCharges,
    # a timestamp without Z, no key.
    allowed = [
        (KEY, without("Churn")),
        (KEY, body(TotalCharges=" ", tenure=0)),
        (KEY, body(TotalCharges="1889.50")),
        (KEY, body(event_ts="2025-10-03T04:00:00")),
        (None, body()),
    ]
    messages.extend(allowed)
    good += len(allowed)
    send_raw(kafka_bootstrap, raw, messages)

    result = CliRunner().invoke(
        app,
        [
            "consume",
            "--mode",
            "batch",
            "--broker",
            kafka_bootstrap,
            "--input-topic",
            raw,
            "--output-topic",
            preds,
            "--deadletter-topic",
            dlq,
            "--consumer-group",
            f"corpus-{uuid.uuid4().hex[:6]}",
            "--model-path",
            str(model_dir),
            "--timeout-ms",
            "4000",
            "--reports-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"consumed {len(messages)}, scored {good}, dead-lettered {len(CORPUS)}" in result.output

    predictions = read_topic(kafka_bootstrap, preds, expect=good)
    assert len(predictions) == good
    for record in predictions:
        contract("churn_prediction_schema.json").validate(record.json())
        assert math.isfinite(record.json()["churn_probability"])

    letters = read_topic(kafka_bootstrap, dlq, expect=len(CORPUS))
    assert len(letters) == len(CORPUS)
    # Letters come in input order on one partition per input partition; match them by the
    # source offset of each bad message.
    raw_records = read_topic(kafka_bootstrap, raw, expect=len(messages))
    by_value = {(r.partition, r.offset): (r.key, r.value) for r in raw_records}
    checked = set()
    for letter in letters:
        body_json = letter.json()
        contract("deadletter_schema.json").validate(body_json)
        topic, partition, offset = letter.headers[SOURCE_HEADER].decode().rsplit(":", 2)
        original = by_value[(int(partition), int(offset))]
        matches = [c for c in CORPUS if (c[1], c[2]) == original]
        assert len(matches) == 1, f"unexpected dead letter {body_json['error_message']}"
        name, _key, _value, code, word = matches[0]
        assert letter.headers[ERROR_CODE_HEADER].decode() == code, name
        assert body_json["error_type"] == "validation_error", name
        assert word in body_json["error_message"], (name, body_json["error_message"])
        assert topic == raw and body_json["source_topic"] == raw
        json.dumps(body_json)  # readable, JSON-clean
        checked.add(name)
    assert checked == {c[0] for c in CORPUS}
