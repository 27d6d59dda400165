"""The scoring core's score_batch: every message becomes a prediction or a dead letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pytest

from churnstream.headers import ERROR_CODE_HEADER, SOURCE_HEADER
from churnstream.model.feature_batch import FeatureBatch
from churnstream.schemas import DeadLetter, Prediction, format_ts
from churnstream.scoring.batch import _format_utc, score_batch
from churnstream.scoring.infer import score_features
from churnstream.scoring.messages import RawMessage
from tests.unit.test_schemas import EVENT, contract

NOW = datetime(2025, 10, 3, 4, 0, 1, tzinfo=UTC)


def msg(value: bytes | None, offset: int, key: bytes | None = b"7590-VHVEG") -> RawMessage:
    return RawMessage("telco.raw.customers", 1, offset, key, value)


def event(**changes: Any) -> bytes:
    return orjson.dumps({**EVENT, **changes})


def by_tenure(batch: FeatureBatch) -> np.ndarray:
    """A transparent stand-in model: probability falls with tenure."""
    return np.clip(1.0 - batch.tenure / 72.0, 0, 1)


def run(messages: list[RawMessage], model: Any = by_tenure) -> Any:
    return score_batch(
        messages, model, threshold=0.5, model_version="vtest", consumer_group="g", clock=lambda: NOW
    )


def test_good_messages_become_contract_valid_predictions() -> None:
    result = run([msg(event(tenure=1), 10), msg(event(tenure=70), 11)])
    assert not result.dead_letters
    bodies = [json.loads(p.value) for p in result.predictions]
    for body in bodies:
        contract("churn_prediction_schema.json").validate(body)
        Prediction.model_validate(body)
    assert [b["prediction"] for b in bodies] == ["Yes", "No"]
    assert bodies[0]["churn_probability"] == pytest.approx(1 - 1 / 72)
    assert bodies[0]["model_version"] == "vtest"
    assert dict(result.predictions[0].headers)[SOURCE_HEADER] == b"telco.raw.customers:1:10"
    assert result.predictions[0].key == b"7590-VHVEG"
    # processed 1 s after event_ts
    assert result.scored["e2e_latency_ms"][0] == pytest.approx(1000.0)


@pytest.mark.parametrize(
    ("value", "code", "needle"),
    [
        (b"", "empty_body", "empty"),
        (None, "empty_body", "empty"),
        (b"\xff\xfe\x00", "not_utf8", "UTF-8"),
        (b"{not json", "not_json", "JSON"),
        (b'{"tenure": NaN}', "not_json", "JSON"),
        (b"[1, 2]", "not_object", "not an object"),
        (b"x" * 70_000, "too_large", "bytes"),
        (event(tenure="12"), "schema", "tenure"),
        (event(Contract="Weekly"), "schema", "Contract"),
        (event(customerID="bad"), "schema", "customerID"),
        (event(event_ts="yesterday"), "schema", "event_ts"),
        (event(surprise=1), "schema", "surprise"),
        (event(MonthlyCharges=None), "schema", "MonthlyCharges"),
        (event(customerID="1234-ABCDE"), "key_mismatch", "differs"),
        (event().replace(b'"tenure":1', b'"tenure":1,"tenure":50'), "duplicate_key", "tenure"),
    ],
)
def test_bad_messages_are_dead_lettered_and_the_rest_scored(
    value: bytes | None, code: str, needle: str
) -> None:
    result = run([msg(event(), 1), msg(value, 2), msg(event(), 3)])
    assert [json.loads(p.value)["customerID"] for p in result.predictions] == ["7590-VHVEG"] * 2
    assert len(result.dead_letters) == 1
    letter = result.dead_letters[0]
    body = json.loads(letter.value)
    contract("deadletter_schema.json").validate(body)
    DeadLetter.model_validate(body)
    assert body["error_type"] == "validation_error"
    assert needle in body["error_message"]
    assert dict(letter.headers)[ERROR_CODE_HEADER] == code.encode()
    assert dict(letter.headers)[SOURCE_HEADER] == b"telco.raw.customers:1:2"
    assert result.dead_letter_codes == {code: 1}


def test_dead_letter_keeps_the_original_object() -> None:
    result = run([msg(event(Contract="Weekly"), 5)])
    original = json.loads(result.dead_letters[0].value)["original_message"]
    assert original["Contract"] == "Weekly" and original["customerID"] == "7590-VHVEG"
    details = json.loads(result.dead_letters[0].value)["validation_errors"]
    assert any(d.startswith("Contract:") for d in details)


def test_model_failure_on_one_row_dead_letters_only_that_row() -> None:
    def fragile(batch: FeatureBatch) -> np.ndarray:
        if (batch.tenure == 13).any():
            raise ValueError("cannot score tenure 13")
        return by_tenure(batch)

    result = run(
        [msg(event(tenure=1), 1), msg(event(tenure=13), 2), msg(event(tenure=5), 3)], fragile
    )
    assert len(result.predictions) == 2
    assert [json.loads(d.value)["error_type"] for d in result.dead_letters] == ["inference_error"]
    assert result.dead_letter_types == {"inference_error": 1}


def test_total_charges_forms_are_scored() -> None:
    result = run([msg(event(TotalCharges=" ", tenure=0), 1), msg(event(TotalCharges="12.5"), 2)])
    assert len(result.predictions) == 2 and not result.dead_letters


def test_events_without_churn_and_without_key_are_scored() -> None:
    body = {k: v for k, v in EVENT.items() if k != "Churn"}
    result = run([msg(orjson.dumps(body), 1, key=None)])
    assert len(result.predictions) == 1


def test_empty_batch() -> None:
    result = run([])
    assert result.predictions == [] and result.dead_letters == []
    assert all(len(column) == 0 for column in result.scored.values())


def test_replayed_message_that_fails_again_counts_its_retries() -> None:
    replayed = RawMessage(
        "telco.raw.customers", 0, 9, None, b"{oops", [("churnstream.retry_count", b"2")]
    )
    result = run([replayed])
    assert json.loads(result.dead_letters[0].value)["retry_count"] == 2


def test_label_at_the_threshold() -> None:
    """A probability equal to the threshold is "Yes"; clipped into [0, 1]; NaN unscored."""
    t = 0.37
    raw = np.array([0.0, np.nextafter(t, 0), t, np.nextafter(t, 1), 1.0, 1.5, -0.2, np.nan])
    batch = FeatureBatch(
        codes=np.zeros((len(raw), 15), dtype=np.int8),
        senior_citizen=np.zeros(len(raw), dtype=np.int64),
        tenure=np.arange(len(raw), dtype=np.int64),  # the row's position in raw
        monthly_charges=np.zeros(len(raw)),
        total_charges=np.zeros(len(raw)),
    )
    scores = score_features(batch, lambda rows: raw[rows.tenure], threshold=t)
    assert scores.labels_yes[:5].tolist() == [False, False, True, True, True]
    assert scores.probabilities[5:7].tolist() == [1.0, 0.0]
    assert scores.finite.tolist() == [True] * 7 + [False]


@pytest.mark.parametrize(
    "moment",
    [
        NOW,
        datetime(2025, 10, 3, 4, 0, 1, 7, tzinfo=UTC),
        datetime(1000, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(999, 1, 1, tzinfo=UTC),  # strftime's year is not zero-padded: it decides
        datetime(2025, 10, 3, 6, 0, 1, 5, tzinfo=timezone(timedelta(hours=2))),
        datetime(2025, 10, 3, 4, 0, 1),  # naive: local time, as format_ts reads it
    ],
)
def test_processed_ts_is_written_as_format_ts_writes_it(moment: datetime) -> None:
    # score_batch formats its clock without strftime; the text must be format_ts's.
    assert _format_utc(moment) == format_ts(moment)
    (out,) = score_batch(
        [RawMessage("t", 0, 0, None, orjson.dumps(EVENT))],
        lambda f: np.full(len(f), 0.5),
        threshold=0.5,
        model_version="v",
        clock=lambda: moment,
    ).predictions
    assert orjson.loads(out.value)["processed_ts"] == format_ts(moment)
