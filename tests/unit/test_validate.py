"""The scoring core equals the oracle: same accepts, rejects, errors, predictions and rows.

``score_batch`` (the core: the fast check, the one encoder) and ``score_batch_reference``
(``tests/oracle.py``: one pydantic event per message, one pydantic ``Prediction`` per body)
run on the same batches; everything they return must match, except ``inference_latency_ms``,
which is a measured duration. The inputs are the bad-input corpus of ``test_score_batch.py``,
fuzzed variants of it, and the whole dataset scored by a real trained model.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from churnstream.data import load_dataset, validate_frame
from churnstream.events import frame_to_events
from churnstream.exceptions import InvalidEventError
from churnstream.model.export import synthetic_features
from churnstream.model.feature_batch import FeatureBatch
from churnstream.model.features import to_frame
from churnstream.model.scorer import Scorer
from churnstream.schemas import FEATURE_COLUMNS, NUMERIC_BOUNDS, CustomerEvent
from churnstream.scoring.batch import score_batch
from churnstream.scoring.decode import decode_event
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.scoring.validate import check_batch
from tests.oracle import score_batch_reference
from tests.unit import test_score_batch
from tests.unit.test_data import GOOD, HEADER
from tests.unit.test_schemas import EVENT

NOW = datetime(2025, 10, 3, 4, 0, 1, tzinfo=UTC)
TOPIC = "telco.raw.customers"
LATENCY = re.compile(rb'"inference_latency_ms":[^,}]*')


def by_tenure(frame: pd.DataFrame) -> np.ndarray:
    return np.clip(1.0 - frame["tenure"].to_numpy() / 72.0, 0, 1)


def both(
    messages: list[RawMessage],
    model: Callable[[pd.DataFrame], np.ndarray] = by_tenure,
    features_model: Callable[[FeatureBatch], np.ndarray] | None = None,
) -> tuple[BatchResult, BatchResult]:
    """(core, oracle) on the same batch; the core's model is ``model`` on the same rows
    unless ``features_model`` says otherwise."""
    kwargs: dict[str, Any] = {
        "threshold": 0.5,
        "model_version": "vtest",
        "consumer_group": "g",
        "clock": lambda: NOW,
    }
    on_features = features_model or (lambda batch: model(to_frame(batch)))
    return (
        score_batch(messages, on_features, **kwargs),
        score_batch_reference(messages, model, **kwargs),
    )


def assert_same(fast: BatchResult, reference: BatchResult) -> None:
    def outs(result: BatchResult) -> list[tuple[Any, ...]]:
        return [(o.key, LATENCY.sub(b"", o.value), o.headers) for o in result.predictions]

    assert outs(fast) == outs(reference)
    assert [tuple(o) for o in fast.dead_letters] == [tuple(o) for o in reference.dead_letters]
    assert fast.dead_letter_types == reference.dead_letter_types
    assert fast.dead_letter_codes == reference.dead_letter_codes
    fast_rows, reference_rows = pd.DataFrame(fast.scored), pd.DataFrame(reference.scored)
    assert list(fast_rows.columns) == list(reference_rows.columns)
    assert len(fast_rows) == len(reference_rows)
    if len(reference_rows):
        pd.testing.assert_frame_equal(
            fast_rows.drop(columns="inference_latency_ms"),
            reference_rows.drop(columns="inference_latency_ms"),
        )
    # What shadow scoring reads instead of the bodies.
    for name in ("customer_ids", "event_ts", "sources", "processed_ts", "model_version"):
        assert getattr(fast.predicted, name) == getattr(reference.predicted, name), name
    assert np.array_equal(fast.predicted.probabilities, reference.predicted.probabilities)
    assert np.array_equal(fast.predicted.labels_yes, reference.predicted.labels_yes)


def msg(value: bytes | None, offset: int, key: bytes | None = b"7590-VHVEG") -> RawMessage:
    return RawMessage(TOPIC, 1, offset, key, value)


def corpus() -> list[bytes | None]:
    """The bad inputs of test_score_batch.py's parametrised dead-letter test."""
    mark = next(
        m
        for m in test_score_batch.test_bad_messages_are_dead_lettered_and_the_rest_scored.pytestmark
        if m.name == "parametrize"
    )
    return [case[0] for case in mark.args[1]]


def test_bad_input_corpus_gives_the_reference_result() -> None:
    bad = corpus()
    assert len(bad) >= 14
    good = orjson.dumps(EVENT)
    messages = [msg(good, 0)]
    for i, value in enumerate(bad):
        messages += [msg(value, 2 * i + 1), msg(good, 2 * i + 2)]
    fast, reference = both(messages)
    assert len(reference.dead_letters) == len(bad)
    assert_same(fast, reference)
    for i, value in enumerate(bad):  # and each on its own
        assert_same(*both([msg(value, i)]))


# -- fuzzing ---------------------------------------------------------------------------------
TRICKY: list[Any] = [
    None, True, False, 0, 1, -1, 2, 12, 100, 101, 200, 201, 0.0, -0.0, 0.5, 1.0, 199.99,
    200.0, 200.0001, -0.01, 1e308, 2**63 - 1, 2**63, 2**64, 10**30, "", " ", "  ", "\t", "\n",
    "\u00a0", "\u2003", "\x1c", "12", "12.5", "12.", ".5", "1e3", "-1", "0", "12\n", " 12",
    "１２", "12.5.1", "9" * 40, "Yes", "No", "yes", "Yes ", "Yes\n", "No internet service",
    "Fiber optic", "Month-to-month", "Two year", "Electronic check", "Male", "Female",
    "No phone service", "DSL", [], ["Yes"], {}, {"a": 1}, "7590-VHVEG", "7590-VHVEG\n",
    "7590-vhveg", "\u0667\u0665\u0669\u0660-VHVEG", "2025-10-03T04:00:00Z",
    "2025-10-03T04:00:00", "2025-10-03T04:00:00.123456Z", "2025-10-03T04:00:00.1234567Z",
    "2025-10-03T04:00:00Z\n", "2025-10-03T04:00:00\n", "2025-13-40T00:00:00Z",
    "2025-02-29T00:00:00Z", "2024-02-29T00:00:00Z", "2025-10-03T04:00:00+00:00",
    "2025-10-03 04:00:00", "\uff12\uff10\uff12\uff15-10-03T04:00:00Z", "2025-10-03T24:00:00Z",
]  # fmt: skip


def mutate(rng: random.Random) -> tuple[bytes | None, bytes | None]:
    """One event, changed in one to three ways; returns (key, body)."""
    event: dict[str, Any] = dict(EVENT)
    key: bytes | None = b"7590-VHVEG"
    for _ in range(rng.randint(1, 3)):
        action = rng.random()
        field = rng.choice(list(EVENT))
        if action < 0.6:
            event[field] = rng.choice(TRICKY)
        elif action < 0.7:
            event.pop(field, None)
        elif action < 0.75:
            event[rng.choice(["surprise", "churn", "Churn"])] = rng.choice(TRICKY)
        elif action < 0.85:
            key = rng.choice([None, b"1234-ABCDE", b"7590-VHVEG", b"", b"7590-VHVEG\n"])
        else:
            event["customerID"] = rng.choice(["1234-ABCDE", "0000-AAAAA"])
    try:
        body = orjson.dumps(event)
    except TypeError:  # an int beyond 64 bits: the json module writes it
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    roll = rng.random()
    if roll < 0.05:
        body = body[: rng.randint(0, len(body))]
    elif roll < 0.1:
        at = rng.randint(0, len(body))
        body = body[:at] + bytes([rng.randint(0, 255)]) + body[at:]
    elif roll < 0.13:
        body = b"  " + body + b"\n"
    elif roll < 0.15:
        body = body.replace(b'"tenure":', b'"tenure":NaN,"x":', 1)
    elif roll < 0.17:
        body = body.replace(b"7590", "\u0667590".encode(), 1)
    return key, body


@pytest.mark.parametrize("seed", range(6))
def test_fuzzed_batches_give_the_reference_result(seed: int) -> None:
    rng = random.Random(seed)
    good = orjson.dumps(EVENT)
    for batch in range(40):
        messages = []
        for offset in range(50):
            if rng.random() < 0.3:
                messages.append(msg(good, offset))
            else:
                key, body = mutate(rng)
                messages.append(msg(body, offset, key))
        fast, reference = both(messages)
        assert_same(fast, reference)
        assert len(fast.predictions) + len(fast.dead_letters) == len(messages), batch


@pytest.mark.parametrize("seed", range(3))
def test_what_the_fast_check_accepts_is_valid(seed: int) -> None:
    """The fast check is a sufficient condition: pydantic accepts every row it accepts."""
    rng = random.Random(1000 + seed)
    pairs = [mutate(rng) for _ in range(1500)]
    accepted, slow = check_batch([b for _, b in pairs], [k for k, _ in pairs])
    assert sorted(accepted.positions + slow) == list(range(len(pairs)))
    for row, position in enumerate(accepted.positions):
        key, body = pairs[position]
        event = CustomerEvent.model_validate(orjson.loads(body or b""))
        assert key is None or key == event.customerID.encode()
        assert event.event_ts == accepted.event_ts[row]
        assert float(event.total_charges_value()) == accepted.features.total_charges[row]


def test_non_ascii_text_accepted_by_the_reference_is_scored_the_same() -> None:
    """Bodies the fast check leaves to the reference still become the same predictions."""
    odd = [
        orjson.dumps({**EVENT, "TotalCharges": "\u2003"}),
        orjson.dumps({**EVENT, "TotalCharges": "12\n"}),
        orjson.dumps({**EVENT, "TotalCharges": "9" * 40}),
        b" " + orjson.dumps(EVENT),
        orjson.dumps({**EVENT, "event_ts": "2025-10-03T04:00:00\n"}),
    ]
    messages = [msg(orjson.dumps(EVENT), 0)] + [msg(v, i + 1) for i, v in enumerate(odd)]
    assert_same(*both(messages))


def test_features_model_failing_on_one_row_dead_letters_only_that_row() -> None:
    class Fragile:
        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            if (frame["tenure"] == 13).any():
                raise ValueError("cannot score tenure 13")
            return by_tenure(frame)

        def predict_features(self, batch: FeatureBatch) -> np.ndarray:
            return self.predict_proba(to_frame(batch))

    model = Fragile()
    messages = [msg(orjson.dumps({**EVENT, "tenure": t}), i) for i, t in enumerate([1, 13, 5])]
    fast, reference = both(messages, model.predict_proba, model.predict_features)
    assert len(fast.predictions) == 2 and fast.dead_letter_codes == {"inference": 1}
    assert_same(fast, reference)


# -- the real model --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> Scorer:
    return Scorer.load(model_dir)


def test_compiled_model_is_bit_identical_to_the_pipeline(
    scorer: Scorer, dataset_path: Path
) -> None:
    assert scorer.compiled is not None
    frame = load_dataset(dataset_path)
    decoded, slow = check_batch(
        [orjson.dumps(e) for e in frame_to_events(frame, "2025-10-03T04:00:00Z")],
        [None] * len(frame),
    )
    assert not slow
    expected = scorer.predict_proba(frame)
    assert np.array_equal(scorer.compiled.predict_proba(decoded.features), expected)
    # Same batch, same numbers (BLAS may round a 2-row batch differently from 7,043 rows,
    # in the pipeline and the compiled model alike, so each size is compared on its own).
    for size in (1, 2, 7, 64, 1000):
        part = decoded.features.take(slice(0, size))
        assert np.array_equal(scorer.predict_features(part), scorer.predict_proba(frame[:size]))
    check = synthetic_features(300, 5)
    assert np.array_equal(
        scorer.compiled.predict_proba(check), scorer.predict_proba(to_frame(check))
    )


def test_dataset_scored_by_the_real_model_equals_the_reference(
    scorer: Scorer, dataset_path: Path
) -> None:
    frame = load_dataset(dataset_path)
    events = frame_to_events(frame, "2025-10-03T04:00:00.000000Z")
    messages = [
        RawMessage(TOPIC, i % 3, i, e["customerID"].encode(), orjson.dumps(e))
        for i, e in enumerate(events)
    ]
    for start in range(0, len(messages), 2500):
        fast, reference = both(
            messages[start : start + 2500], scorer.predict_proba, scorer.predict_features
        )
        assert_same(fast, reference)
        assert not fast.dead_letters


# -- the CSV loader applies the same rules -------------------------------------------------
CSV_VALUES = [
    "", " ", "0", "1", "2", "-1", "1.0", "1.5", "12", " 12 ", "100", "101", "200", "200.01",
    "1e3", "-0", "nan", "inf", "abc", "Yes", " Yes", "yes", "No", "Month-to-month",
    "Weekly", "DSL", "Cable", "Fiber optic", "7590-VHVEG", "7590-vhveg", " 7590-VHVEG",
    "Male", "Electronic check", "No internet service", "No phone service", "\u0661\u0662",
]  # fmt: skip


def csv_event(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as a typed event, the way data.validate_frame types its text (stripped, and
    numbers read as numbers: whole ones as ints); text that is no number stays text."""
    event: dict[str, Any] = {"event_ts": "2025-10-03T04:00:00Z"}
    for name in ("customerID", *FEATURE_COLUMNS):
        text = row[name].strip()
        event[name] = text
        if name not in NUMERIC_BOUNDS:
            continue
        if name == "TotalCharges" and text == "":
            event[name] = " "  # blank: a new customer
            continue
        number = float(pd.to_numeric(text, errors="coerce"))  # as the loader reads numbers
        if math.isfinite(number):
            whole = number.is_integer() and name in ("SeniorCitizen", "tenure")
            event[name] = int(number) if whole else number
    return event


def event_is_valid(event: dict[str, Any]) -> bool:
    """The core's decision: the fast check, then the reference decoder for the rest."""
    body = orjson.dumps(event)
    accepted, slow = check_batch([body], [None])
    if accepted.positions:
        return True
    try:
        decode_event(RawMessage(TOPIC, 0, 0, None, body))
    except InvalidEventError:
        return False
    return True


def test_the_csv_loader_applies_the_event_rules() -> None:
    """data.validate_frame is the CSV side of the same definition: a row it accepts is a
    valid event once typed, and a row it rejects is not (every field, many values)."""
    good = dict(zip(HEADER.split(","), GOOD.split(","), strict=True))
    rows = [good] + [
        {**good, name: value} for name in ("customerID", *FEATURE_COLUMNS) for value in CSV_VALUES
    ]
    valid, rejects = validate_frame(pd.DataFrame(rows, dtype=object))
    assert len(valid) > 80 and len(rejects) > 500  # both sides are exercised
    for index, row in enumerate(rows):
        assert event_is_valid(csv_event(row)) == (index in valid.index), row
