"""Golden bytes: the prediction bodies, headers, dead letters and shadow predictions of one
fixed batch, pinned as churnstream wrote them before the scoring core existed (the pydantic
``Prediction`` per body, the header names and their order). Any change to what goes on the
wire fails here first.

``LAT`` stands for ``inference_latency_ms``, a measured duration.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from churnstream.model.contributions import REASON_FEATURES, Contributions, top_reasons
from churnstream.model.feature_batch import FeatureBatch
from churnstream.schemas import CustomerEvent, Prediction, dump_body
from churnstream.scoring.bands import RISK_BANDS, band_indices, risk_band
from churnstream.scoring.batch import score_batch
from churnstream.scoring.decode import features_of_events
from churnstream.scoring.encode import Champion, encode_predictions
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.scoring.shadow import shadow_records
from tests.unit.test_schemas import EVENT

NOW = datetime(2025, 10, 3, 4, 0, 1, tzinfo=UTC)
T = "telco.raw.customers"
VERSION = 'v%1"x'  # a % and a quote: the template must escape both
LATENCY = re.compile(rb'"inference_latency_ms":[^,}]*')
PROBABILITIES = [0.7, 0.4, 0.39999999999999997, 1e-05, 1.0]
SHADOW_PROBABILITIES = [0.5, 0.1, 0.9, 0.49999, 0.6]

PREDICTIONS = [
    (
        b"7590-VHVEG",
        b'{"customerID":"7590-VHVEG","churn_probability":0.7,"prediction":"Yes","event_ts":"2025-10-03T04:00:00Z","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"v%1\\"x","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:2:41"),
            ("churnstream.risk_band", b"high"),
            ("churnstream.model_version", b'v%1"x'),
        ],
    ),
    (
        b"0002-ORFBO",
        b'{"customerID":"0002-ORFBO","churn_probability":0.4,"prediction":"Yes","event_ts":"2025-10-03T04:00:00Z","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"v%1\\"x","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:0:7"),
            ("churnstream.risk_band", b"medium"),
            ("churnstream.model_version", b'v%1"x'),
        ],
    ),
    (
        b"0006-BBBBB",
        b'{"customerID":"0006-BBBBB","churn_probability":0.39999999999999997,"prediction":"No","event_ts":"2025-10-03T04:00:00Z","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"v%1\\"x","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:1:6"),
            ("churnstream.risk_band", b"low"),
            ("churnstream.model_version", b'v%1"x'),
        ],
    ),
    (
        b"0008-CCCCC",
        b'{"customerID":"0008-CCCCC","churn_probability":0.00001,"prediction":"No","event_ts":"2025-10-03T04:00:00Z","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"v%1\\"x","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:1:8"),
            ("churnstream.risk_band", b"low"),
            ("churnstream.model_version", b'v%1"x'),
        ],
    ),
    (
        b"0009-DDDDD",
        b'{"customerID":"0009-DDDDD","churn_probability":1.0,"prediction":"Yes","event_ts":"2025-10-03T04:00:00.5","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"v%1\\"x","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:1:9"),
            ("churnstream.risk_band", b"high"),
            ("churnstream.model_version", b'v%1"x'),
        ],
    ),
]
LETTERS = [
    (
        None,
        b'{"original_message":{"customerID":"0003-MKNFE","gender":"Female","SeniorCitizen":0,"Partner":"Yes","Dependents":"No","tenure":1,"PhoneService":"No","MultipleLines":"No phone service","InternetService":"DSL","OnlineSecurity":"No","OnlineBackup":"Yes","DeviceProtection":"No","TechSupport":"No","StreamingTV":"No","StreamingMovies":"No","Contract":"Month-to-month","PaperlessBilling":"Yes","PaymentMethod":"Electronic check","MonthlyCharges":29.85,"TotalCharges":29.85,"Churn":"No","event_ts":"2025-10-03T04:00:00\\n"},"error_type":"validation_error","error_message":"1 field error(s): event_ts: Value error, Invalid isoformat string: \'2025-10-03T04:00:00\\\\n\'","validation_errors":["event_ts: Value error, Invalid isoformat string: \'2025-10-03T04:00:00\\\\n\'"],"source_topic":"telco.raw.customers","failed_ts":"2025-10-03T04:00:01.000000Z","consumer_group":"g","retry_count":0}',  # noqa: E501
        [("churnstream.source", b"telco.raw.customers:1:3"), ("churnstream.error_code", b"schema")],
    ),
    (
        b"k",
        b'{"original_message":{"raw_text":"{oops"},"error_type":"validation_error","error_message":"body is not valid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)","source_topic":"telco.raw.customers","failed_ts":"2025-10-03T04:00:01.000000Z","consumer_group":"g","retry_count":2}',  # noqa: E501
        [
            ("churnstream.source", b"telco.raw.customers:1:4"),
            ("churnstream.error_code", b"not_json"),
            ("churnstream.original_key", b"k"),
            ("churnstream.original.x-trace", b"t-1"),
            ("churnstream.original.churnstream.retry_count", b"2"),
        ],
    ),
    (
        None,
        b'{"original_message":{"customerID":"0005-AAAAA","gender":"Female","SeniorCitizen":0,"Partner":"Yes","Dependents":"No","tenure":1,"PhoneService":"No","MultipleLines":"No phone service","InternetService":"DSL","OnlineSecurity":"No","OnlineBackup":"Yes","DeviceProtection":"No","TechSupport":"No","StreamingTV":"No","StreamingMovies":"No","Contract":"Weekly","PaperlessBilling":"Yes","PaymentMethod":"Electronic check","MonthlyCharges":29.85,"TotalCharges":29.85,"Churn":"No","event_ts":"2025-10-03T04:00:00Z"},"error_type":"validation_error","error_message":"1 field error(s): Contract: Input should be \'Month-to-month\', \'One year\' or \'Two year\'","validation_errors":["Contract: Input should be \'Month-to-month\', \'One year\' or \'Two year\'"],"source_topic":"telco.raw.customers","failed_ts":"2025-10-03T04:00:01.000000Z","consumer_group":"g","retry_count":0}',  # noqa: E501
        [("churnstream.source", b"telco.raw.customers:1:5"), ("churnstream.error_code", b"schema")],
    ),
]
SHADOW = [
    (
        b"7590-VHVEG",
        b'{"customerID":"7590-VHVEG","churn_probability":0.5,"prediction":"Yes","event_ts":"2025-10-03T04:00:00Z","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"s1","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:2:41"),
            ("churnstream.champion_version", b'v%1"x'),
            ("churnstream.champion_probability", b"0.7"),
        ],
        True,
        True,
        0.19999999999999996,
    ),
    (
        b"0002-ORFBO",
        b'{"customerID":"0002-ORFBO","churn_probability":0.1,"prediction":"No","event_ts":"2025-10-03T04:00:00Z","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"s1","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:0:7"),
            ("churnstream.champion_version", b'v%1"x'),
            ("churnstream.champion_probability", b"0.4"),
        ],
        True,
        False,
        0.30000000000000004,
    ),
    (
        b"0006-BBBBB",
        b'{"customerID":"0006-BBBBB","churn_probability":0.9,"prediction":"Yes","event_ts":"2025-10-03T04:00:00Z","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"s1","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:1:6"),
            ("churnstream.champion_version", b'v%1"x'),
            ("churnstream.champion_probability", b"0.39999999999999997"),
        ],
        False,
        True,
        0.5,
    ),
    (
        b"0008-CCCCC",
        b'{"customerID":"0008-CCCCC","churn_probability":0.49999,"prediction":"No","event_ts":"2025-10-03T04:00:00Z","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"s1","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:1:8"),
            ("churnstream.champion_version", b'v%1"x'),
            ("churnstream.champion_probability", b"1e-05"),
        ],
        False,
        False,
        0.49998,
    ),
    (
        b"0009-DDDDD",
        b'{"customerID":"0009-DDDDD","churn_probability":0.6,"prediction":"Yes","event_ts":"2025-10-03T04:00:00.5","processed_ts":"2025-10-03T04:00:01.000000Z","model_version":"s1","inference_latency_ms":LAT}',
        [
            ("churnstream.source", b"telco.raw.customers:1:9"),
            ("churnstream.champion_version", b'v%1"x'),
            ("churnstream.champion_probability", b"1.0"),
        ],
        True,
        True,
        0.4,
    ),
]


def ev(**changes: object) -> bytes:
    return orjson.dumps({**EVENT, **changes})


def messages() -> list[RawMessage]:
    """Fast-path rows, rows only the reference accepts (a non-ASCII blank TotalCharges, a
    leading space), and three kinds of dead letter (one with headers to carry)."""
    retried = [("x-trace", b"t-1"), ("churnstream.retry_count", b"2")]
    return [
        RawMessage(T, 2, 41, b"7590-VHVEG", orjson.dumps(EVENT)),
        RawMessage(T, 0, 7, None, ev(customerID="0002-ORFBO", TotalCharges=" ", tenure=0)),
        RawMessage(T, 1, 3, None, ev(customerID="0003-MKNFE", event_ts="2025-10-03T04:00:00\n")),
        RawMessage(T, 1, 4, b"k", b"{oops", retried),
        RawMessage(T, 1, 5, None, ev(customerID="0005-AAAAA", Contract="Weekly")),
        RawMessage(T, 1, 6, None, ev(customerID="0006-BBBBB", MonthlyCharges=200)),
        RawMessage(T, 1, 8, None, ev(customerID="0008-CCCCC", TotalCharges="\u2003", tenure=0)),
        RawMessage(
            T, 1, 9, b"0009-DDDDD",
            b" " + ev(customerID="0009-DDDDD", event_ts="2025-10-03T04:00:00.5"),
        ),
    ]  # fmt: skip


def model(batch: FeatureBatch) -> np.ndarray:
    return np.array(PROBABILITIES)[: len(batch)]


@pytest.fixture
def result() -> BatchResult:
    return score_batch(
        messages(), model, threshold=0.4, model_version=VERSION, consumer_group="g",
        clock=lambda: NOW,
    )  # fmt: skip


def test_prediction_bodies_and_headers_are_the_pinned_bytes(result: BatchResult) -> None:
    got = [(o.key, LATENCY.sub(b'"inference_latency_ms":LAT', o.value), o.headers)
           for o in result.predictions]  # fmt: skip
    assert got == PREDICTIONS


def test_dead_letters_are_the_pinned_bytes(result: BatchResult) -> None:
    assert [(o.key, o.value, o.headers) for o in result.dead_letters] == LETTERS


def test_shadow_predictions_are_the_pinned_bytes(result: BatchResult) -> None:
    records = shadow_records(result, np.array(SHADOW_PROBABILITIES), threshold=0.5, version="s1")
    got = [
        (r.out.key, LATENCY.sub(b'"inference_latency_ms":LAT', r.out.value), r.out.headers,
         r.champion_yes, r.shadow_yes, r.abs_diff)
        for r in records
    ]  # fmt: skip
    assert got == SHADOW


def test_without_sources_a_prediction_has_no_headers_and_the_same_body() -> None:
    """The API and `predict --json` get the same body, without Kafka headers."""
    kwargs = {"processed_ts": "2025-10-03T04:00:01.000000Z", "model_version": VERSION,
              "inference_ms": 0.25}  # fmt: skip
    args = (["7590-VHVEG"], ["2025-10-03T04:00:00Z"], np.array([0.7]), np.array([True]))
    bare = encode_predictions(*args, **kwargs)
    on_kafka = encode_predictions(*args, **kwargs, sources=[b"t:0:1"])
    assert bare[0].headers == [] and bare[0].key == b"7590-VHVEG"
    assert bare[0].value == on_kafka[0].value
    expected = Prediction(
        customerID="7590-VHVEG", churn_probability=0.7, prediction="Yes",
        event_ts="2025-10-03T04:00:00Z", processed_ts="2025-10-03T04:00:01.000000Z",
        model_version=VERSION, inference_latency_ms=0.25,
    )  # fmt: skip
    assert bare[0].value == orjson.dumps(dump_body(expected))


@pytest.mark.parametrize(
    ("customer_id", "event_ts"),
    [
        ("7590-VHVEG", 'a"b'),
        ("7590-VHVEG", "back\\slash"),
        ("7590-VHVEG", "line\nbreak\x00\x1f"),
        ("caf\u00e9-\u2028", "2025-10-03T04:00:00Z"),
        ("%s%d", "100%"),
    ],
)
def test_strings_are_written_as_orjson_writes_them(customer_id: str, event_ts: str) -> None:
    """Escapes, non-ASCII and % in the row's strings: the same bytes as orjson's dump."""
    out = encode_predictions(
        [customer_id, "7590-VHVEG"], [event_ts, "2025-10-03T04:00:00Z"],
        np.array([0.25, 0.5]), np.array([False, True]),
        processed_ts="2025-10-03T04:00:01.000000Z", model_version="m", inference_ms=1.5,
    )  # fmt: skip
    expected = {
        "customerID": customer_id, "churn_probability": 0.25, "prediction": "No",
        "event_ts": event_ts, "processed_ts": "2025-10-03T04:00:01.000000Z",
        "model_version": "m", "inference_latency_ms": 1.5,
    }  # fmt: skip
    assert out[0].value == orjson.dumps(expected)
    assert orjson.loads(out[1].value)["customerID"] == "7590-VHVEG"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.1, 1.5])
def test_a_probability_outside_the_contract_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="within"):
        encode_predictions(
            ["7590-VHVEG"], ["2025-10-03T04:00:00Z"], np.array([bad]), np.array([True]),
            processed_ts="2025-10-03T04:00:01.000000Z", model_version="m", inference_ms=0.0,
        )  # fmt: skip


def test_shadow_headers_carry_the_champion() -> None:
    out = encode_predictions(
        ["7590-VHVEG"], ["2025-10-03T04:00:00Z"], np.array([0.3]), np.array([False]),
        processed_ts="2025-10-03T04:00:01.000000Z", model_version="shadow", inference_ms=0.0,
        sources=[b"t:0:1"], champion=Champion("champ", [0.1]),
    )  # fmt: skip
    assert out[0].headers == [
        ("churnstream.source", b"t:0:1"),
        ("churnstream.champion_version", b"champ"),
        ("churnstream.champion_probability", b"0.1"),
    ]


def test_band_indices_pick_what_risk_band_picks() -> None:
    edges = [0.4, 0.7, np.nextafter(0.4, 0), np.nextafter(0.7, 0), np.nan, np.inf, -np.inf]
    p = np.concatenate([np.linspace(-1, 2, 3001), edges])
    names = [name for _, name in RISK_BANDS]
    assert band_indices(p) == [names.index(risk_band(x)) for x in p.tolist()]
    # A few rows at a time are counted in Python: the same bands, edges included.
    for start in range(0, len(p), 5):
        part = p[start : start + 5]
        assert band_indices(part) == [names.index(risk_band(x)) for x in part.tolist()]


def explain_fixed(batch: FeatureBatch) -> Contributions:
    """Contract +0.3 and tenure +0.1 for every row; one row has a negative tenure effect."""
    values = np.zeros((len(batch), len(REASON_FEATURES)))
    values[:, REASON_FEATURES.index("Contract")] = 0.3
    values[:, REASON_FEATURES.index("tenure")] = 0.1
    values[1:2, REASON_FEATURES.index("tenure")] = -0.1
    values[:, REASON_FEATURES.index("charge_ratio")] = 1 / 3
    return Contributions(model(batch), 0.0, values)


def test_reasons_go_in_a_header_and_leave_the_body_as_pinned() -> None:
    result = score_batch(
        messages(), model, threshold=0.4, model_version=VERSION, consumer_group="g",
        clock=lambda: NOW, explain=explain_fixed,
    )  # fmt: skip
    got = [(o.key, LATENCY.sub(b'"inference_latency_ms":LAT', o.value), o.headers[:3])
           for o in result.predictions]  # fmt: skip
    assert got == PREDICTIONS  # bodies and the other headers: byte for byte as before
    reasons = [o.headers[3] for o in result.predictions]
    assert {name for name, _ in reasons} == {"churnstream.reasons"}
    first = orjson.loads(reasons[0][1])
    assert first == [
        {"feature": "charge_ratio", "value": 1.0, "contribution": 1 / 3},
        {"feature": "Contract", "value": "Month-to-month", "contribution": 0.3},
        {"feature": "tenure", "value": 1, "contribution": 0.1},
    ]
    # Only what pushed the probability up: the second row's tenure is not a reason.
    assert [r["feature"] for r in orjson.loads(reasons[1][1])] == ["charge_ratio", "Contract"]
    assert result.scored["reasons"].tolist()[:2] == [
        "charge_ratio,Contract,tenure",
        "charge_ratio,Contract",
    ]


def test_reasons_that_fail_cost_no_prediction(caplog: pytest.LogCaptureFixture) -> None:
    def broken(batch: FeatureBatch) -> Contributions:
        raise ValueError("no paths")

    result = score_batch(
        messages(), model, threshold=0.4, model_version=VERSION, consumer_group="g",
        clock=lambda: NOW, explain=broken,
    )  # fmt: skip
    assert [len(o.headers) for o in result.predictions] == [3] * len(PREDICTIONS)
    assert "without reasons: ValueError: no paths" in caplog.text


def test_reasons_in_an_answer_are_a_last_body_field() -> None:
    batch = features_of_events([CustomerEvent.model_validate(EVENT)])
    reasons = top_reasons(explain_fixed(batch), batch)
    (plain,) = encode_predictions(
        ["7590-VHVEG"], ["2025-10-03T04:00:00Z"], np.array([0.7]), np.array([True]),
        processed_ts="2025-10-03T04:00:01.000000Z", model_version=VERSION, inference_ms=0.5,
    )  # fmt: skip
    (answer,) = encode_predictions(
        ["7590-VHVEG"], ["2025-10-03T04:00:00Z"], np.array([0.7]), np.array([True]),
        processed_ts="2025-10-03T04:00:01.000000Z", model_version=VERSION, inference_ms=0.5,
        reasons=reasons,
    )  # fmt: skip
    assert answer.headers == []
    assert (
        answer.value
        == plain.value[:-1]
        + b',"reasons":'
        + orjson.dumps(
            [
                {"feature": "charge_ratio", "value": 1.0, "contribution": 1 / 3},
                {"feature": "Contract", "value": "Month-to-month", "contribution": 0.3},
                {"feature": "tenure", "value": 1, "contribution": 0.1},
            ]
        )
        + b"}"
    )
