"""The native prediction bodies (Rust, ``churnstream_native.prediction_bodies``) against the
Python writer, their oracle: the same bytes, every one, through the one
:func:`churnstream.scoring.encode.encode_predictions`.

Inputs: the whole dataset scored by a real model, hypothesis-generated probabilities within
[0, 1] (the edges, subnormals, values around powers of ten, any bit pattern), and strings
JSON must escape, which the native writer hands back to the Python one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnstream.data import load_dataset
from churnstream.events import encode_event, frame_to_events
from churnstream.model import compiled_native
from churnstream.model.lean import LeanScorer
from churnstream.scoring import encode, engine
from churnstream.scoring.batch import score_batch
from churnstream.scoring.encode import encode_predictions
from churnstream.scoring.messages import OutMessage, RawMessage
from tests.unit import test_encode

pytest.importorskip("churnstream_native", reason="the native scoring core is not built")

NOW = datetime(2025, 10, 3, 4, 0, 1, tzinfo=UTC)
PROCESSED = "2025-10-03T04:00:01.000000Z"
VERSION = 'v%1"x'  # the batch-wide tail carries an escape and a %
EDGES = [
    0.0,
    1.0,
    5e-324,
    2.2250738585072014e-308,  # the smallest normal
    2.225073858507201e-308,  # the largest subnormal
    1e-300,
    1e-7,
    1e-6,
    1e-5,
    1e-4,
    0.1,
    0.2,
    0.30000000000000004,
    0.39999999999999997,
    0.5,
    0.9999999999999999,
    1 / 3,
]
NEAR_POWERS = [
    near
    for power in range(-20, 0)
    for near in (
        math.nextafter(10.0**power, 0.0),
        10.0**power,
        math.nextafter(10.0**power, 1.0),
    )
]


@pytest.fixture(autouse=True)
def _restore_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a test selects, the engine in use before it comes back afterwards."""
    monkeypatch.setattr(engine, "_active", engine._active)
    monkeypatch.setattr(engine, "_active_name", engine._active_name)
    monkeypatch.setattr(compiled_native, "_enabled", compiled_native._enabled)


@pytest.fixture
def native_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether each native writer's call wrote the bodies (True) or handed them back (False)."""
    runs: list[bool] = []
    real = engine.native_bodies

    def counted() -> Callable[..., list[bytes] | None] | None:
        writer = real()
        if writer is None:
            return None

        def write(*args: Any) -> list[bytes] | None:
            bodies = writer(*args)
            runs.append(bodies is not None)
            return bodies

        return write

    monkeypatch.setattr(engine, "native_bodies", counted)
    yield runs


def on_both(*args: Any, **kwargs: Any) -> tuple[list[OutMessage], list[OutMessage]]:
    """(native, python) messages of the same call."""
    out = []
    for name in (engine.NATIVE, engine.PYTHON):
        engine.select_engine(name)
        out.append(encode_predictions(*args, **kwargs))
    return out[0], out[1]


def same_bytes(
    probabilities: list[float],
    customer_ids: list[str] | None = None,
    event_ts: list[str] | None = None,
    *,
    with_sources: bool = True,
) -> list[OutMessage]:
    """Assert both engines write the same messages; returns the native ones."""
    n = len(probabilities)
    ids = customer_ids or [f"{i:04d}-ABCDE" for i in range(n)]
    stamps = event_ts or ["2025-10-03T04:00:00.123Z"] * n
    values = np.asarray(probabilities, dtype=np.float64)
    native, python = on_both(
        ids,
        stamps,
        values,
        values >= 0.5,
        processed_ts=PROCESSED,
        model_version=VERSION,
        inference_ms=1.25,
        sources=[f"t:0:{i}".encode() for i in range(n)] if with_sources else None,
    )
    assert [tuple(m) for m in native] == [tuple(m) for m in python]
    return native


def test_the_whole_dataset_scored_gives_the_same_bytes(
    dataset_path: Path, model_dir: Path, native_runs: list[bool]
) -> None:
    events = frame_to_events(load_dataset(dataset_path), "2025-10-03T04:00:00.123Z")
    messages = [
        RawMessage("telco.raw.customers", i % 3, i, key, value)
        for i, (key, value) in enumerate(encode_event(e) for e in events)
    ]
    lean = LeanScorer.load(model_dir)
    assert lean.explains
    engine.select_engine(engine.PYTHON)
    result = score_batch(
        messages,
        lean.predict_features,
        threshold=0.5,
        model_version="v1",
        consumer_group="g",
        clock=lambda: NOW,
        explain=lean.explain_features,
    )
    p = result.predicted
    assert p.reasons is not None
    assert len(p.customer_ids) == 7043 and len(set(p.probabilities.tolist())) > 1000
    call = (p.customer_ids, p.event_ts, p.probabilities, p.labels_yes)
    kwargs: dict[str, Any] = {
        "processed_ts": p.processed_ts,
        "model_version": p.model_version,
        "inference_ms": p.inference_ms,
    }
    native, python = on_both(*call, **kwargs, sources=p.sources)
    assert [tuple(m) for m in native] == [tuple(m) for m in python]
    # The bodies of the scorer's own call too (its latency is the one measured).
    assert [m.value for m in python] == [m.value for m in result.predictions]
    # With reasons in a header (the scorer's --explain), and as an answer without headers.
    native, python = on_both(*call, **kwargs, sources=p.sources, reasons=p.reasons)
    assert [tuple(m) for m in native] == [tuple(m) for m in python]
    native, python = on_both(*call, **kwargs)
    assert [tuple(m) for m in native] == [tuple(m) for m in python]
    # An answer with reasons has them in its body: the Python writer's alone.
    native, python = on_both(*call, **kwargs, reasons=p.reasons)
    assert [tuple(m) for m in native] == [tuple(m) for m in python]
    assert native_runs == [True, True, True]


def test_the_edges_and_the_values_near_powers_of_ten(native_runs: list[bool]) -> None:
    values = EDGES + NEAR_POWERS
    out = same_bytes(values)
    assert b'"churn_probability":5e-324,' in out[2].value
    assert b'"churn_probability":0.00001,' in out[8].value
    assert b'"churn_probability":1e-7,' in out[6].value
    same_bytes(values, with_sources=False)
    assert native_runs == [True, True]


unit_floats = st.floats(min_value=0.0, max_value=1.0, allow_subnormal=True)
bit_patterns = st.integers(0, 0x3FF0000000000000).map(
    lambda bits: float(np.array(bits, dtype=np.int64).view(np.float64))
)
rounded = st.tuples(unit_floats, st.integers(0, 17)).map(lambda pair: round(*pair))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(unit_floats, bit_patterns, rounded, st.sampled_from(EDGES)), max_size=60))
def test_any_probability_in_the_unit_interval(probabilities: list[float]) -> None:
    same_bytes(probabilities)


# What a valid event's strings may hold is narrower; the encoder takes any string.
texts = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=8))
def test_strings_to_escape_take_the_python_path_with_the_same_bytes(
    pairs: list[tuple[str, str]],
) -> None:
    ids, stamps = [i for i, _ in pairs], [t for _, t in pairs]
    out = same_bytes([0.25] * len(pairs), ids, stamps)
    for message, customer_id, stamp in zip(out, ids, stamps, strict=True):
        body = orjson.loads(message.value)
        assert (body["customerID"], body["event_ts"]) == (customer_id, stamp)


def test_the_native_writer_hands_back_what_needs_escaping(native_runs: list[bool]) -> None:
    plain = same_bytes([0.5, 0.1], ["7590-VHVEG", "Ünïcode-✓"])
    assert plain[1].value.startswith('{"customerID":"Ünïcode-✓"'.encode())
    for odd in ('quo"te', "back\\slash", "new\nline", "nul\x00", "unit\x1f"):
        same_bytes([0.5, 0.1], ["7590-VHVEG", odd])
        same_bytes([0.5, 0.1], None, ["2025-10-03T04:00:00Z", odd])
    assert native_runs == [True] + [False] * 10


def test_a_lone_surrogate_fails_alike_on_both() -> None:
    for name in (engine.NATIVE, engine.PYTHON):
        engine.select_engine(name)
        with pytest.raises(UnicodeEncodeError):
            encode_predictions(
                ["\ud800"],
                ["2025-10-03T04:00:00Z"],
                np.array([0.5]),
                np.array([True]),
                processed_ts=PROCESSED,
                model_version=VERSION,
                inference_ms=1.0,
            )


def test_the_pinned_batch_is_written_natively(native_runs: list[bool]) -> None:
    engine.select_engine(engine.NATIVE)
    pinned = score_batch(
        test_encode.messages(),
        test_encode.model,
        threshold=0.4,
        model_version=test_encode.VERSION,
        consumer_group="g",
        clock=lambda: NOW,
    )
    test_encode.test_prediction_bodies_and_headers_are_the_pinned_bytes(pinned)
    assert native_runs and all(native_runs)


def test_the_python_engine_never_calls_the_native_writer() -> None:
    engine.select_engine(engine.PYTHON)
    assert engine.native_bodies() is None
    engine.select_engine(engine.NATIVE)
    assert engine.native_bodies() is not None
    # The pieces around the four fields are the Python template's.
    assert "%s".join(encode._FIELD_PIECES) + "}" == encode._template("}")
