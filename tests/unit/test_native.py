"""The native fast check (Rust, ``churnstream_native``) against the Python one, its oracle.

Contract: every row the native check accepts, the Python check accepts too, with the same
customerID, event_ts, parsed moment and feature values, bit for bit; the native check may be
stricter (no escapes, exponents or minus signs), and those rows go to the reference decoder,
so the batch's result (bodies, headers, dead letters, analytics rows) is the same on both
engines. Inputs: the whole dataset, the bad-input corpus and its fuzzed variants, and the
hypothesis-generated message families of ``test_fuzz.py``.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnstream.data import load_dataset
from churnstream.events import encode_event, frame_to_events
from churnstream.exceptions import ChurnstreamError
from churnstream.model import compiled_native
from churnstream.model.arrays import SoftVote, TreeTables
from churnstream.model.export import synthetic_features
from churnstream.model.lean import LeanScorer
from churnstream.scoring import engine, validate
from churnstream.scoring.batch import score_batch
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.settings import load_settings
from tests.unit import test_fuzz, test_validate
from tests.unit.test_schemas import EVENT

pytest.importorskip("churnstream_native", reason="the native scoring core is not built")

NOW = datetime(2025, 10, 3, 4, 0, 1, tzinfo=UTC)
FEATURES = ("codes", "senior_citizen", "tenure", "monthly_charges", "total_charges")


@pytest.fixture(autouse=True)
def _restore_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a test selects, the engine in use before it comes back afterwards."""
    monkeypatch.setattr(engine, "_active", engine._active)
    monkeypatch.setattr(engine, "_active_name", engine._active_name)
    monkeypatch.setattr(compiled_native, "_enabled", compiled_native._enabled)


def same_checks(values: list[bytes | None], keys: list[bytes | None]) -> int:
    """Assert the native check keeps the contract against the Python one; returns how many
    rows it left to the reference that the Python check accepted."""
    py_rows, py_slow = validate.check_batch(values, keys)
    rows, slow = engine.native_check_batch(values, keys)
    assert sorted(rows.positions + slow) == list(range(len(values)))
    assert slow == sorted(slow)
    at = {p: i for i, p in enumerate(py_rows.positions)}
    assert set(rows.positions) <= set(at), "the native check accepted what Python did not"
    mine = [at[p] for p in rows.positions]
    assert rows.customer_ids == [py_rows.customer_ids[i] for i in mine]
    assert rows.event_ts == [py_rows.event_ts[i] for i in mine]
    assert rows.event_dt == [py_rows.event_dt[i] for i in mine]
    index = np.asarray(mine, dtype=np.intp)
    for name in FEATURES:
        got, want = getattr(rows.features, name), getattr(py_rows.features, name)[index]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name
    return len(py_rows) - len(rows)


def on_both(messages: list[RawMessage]) -> tuple[BatchResult, BatchResult]:
    """(native, python) results of the same batch."""
    results = []
    for name in (engine.NATIVE, engine.PYTHON):
        engine.select_engine(name)
        results.append(
            score_batch(
                messages,
                test_fuzz.model,
                threshold=0.5,
                model_version="vnative",
                consumer_group="g",
                clock=lambda: NOW,
            )
        )
    return results[0], results[1]


def msg(value: bytes | None, offset: int, key: bytes | None) -> RawMessage:
    return RawMessage(test_validate.TOPIC, offset % 3, offset, key, value)


def test_the_whole_dataset_is_checked_identically(dataset_path: Path) -> None:
    events = frame_to_events(load_dataset(dataset_path), "2025-10-03T04:00:00.123Z")
    pairs = [encode_event(e) for e in events]
    values, keys = [v for _, v in pairs], [k for k, _ in pairs]
    assert same_checks(values, keys) == 0  # nothing stricter on real events
    rows, slow = engine.native_check_batch(values, keys)
    assert len(rows) == len(events) == 7043 and slow == []
    native, python = on_both([msg(v, i, k) for i, (k, v) in enumerate(pairs)])
    test_validate.assert_same(native, python)


def test_the_bad_input_corpus_and_its_variants_end_the_same() -> None:
    good = orjson.dumps(EVENT)
    bad = test_validate.corpus()
    values: list[bytes | None] = [good, *bad]
    keys: list[bytes | None] = [b"7590-VHVEG"] * len(values)
    rng = random.Random(12)
    for _ in range(3000):
        key, body = test_validate.mutate(rng)
        keys.append(key)
        values.append(body)
    stricter = same_checks(values, keys)
    assert stricter < len(values) // 20  # stricter only on the odd forms, not the common ones
    pairs = zip(values, keys, strict=True)
    native, python = on_both([msg(v, i, k) for i, (v, k) in enumerate(pairs)])
    assert len(native.dead_letters) >= len(bad)
    test_validate.assert_same(native, python)


def test_forms_the_native_check_leaves_to_the_reference_end_the_same() -> None:
    odd = [
        {**EVENT, "MonthlyCharges": -0.0},
        {**EVENT, "tenure": 0, "TotalCharges": ""},
        {**EVENT, "TotalCharges": "   "},
        {**EVENT, "TotalCharges": "\t"},
        {**EVENT, "TotalCharges": "1234.5"},
        {**EVENT, "MonthlyCharges": 1e2},
        {**EVENT, "event_ts": "2025-10-03T04:00:00.1234567Z"},
        {**EVENT, "event_ts": "2024-02-29T23:59:59.5"},
        {**EVENT, "Churn": None},
        {**EVENT, "Churn": "Yes"},
    ]
    values = [orjson.dumps(e) for e in odd]
    values += [values[0].replace(b"-0.0", b"-0"), values[5].replace(b"100.0", b"1e2")]
    values += [orjson.dumps(EVENT).replace(b'"Male"', b'"M\\u0061le"'), b" \r\n" + values[1]]
    keys: list[bytes | None] = [None] * len(values)
    same_checks(values, keys)
    test_validate.assert_same(*on_both([msg(v, i, None) for i, v in enumerate(values)]))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(st.lists(test_fuzz.message_family(), min_size=4, max_size=8))
def test_fuzzed_message_families_end_the_same(families: list[test_fuzz.Family]) -> None:
    flat = [pair for family in families for pair in family]
    same_checks([v for _, v in flat], [k for k, _ in flat])
    messages = [msg(v, i, k) for i, (k, v) in enumerate(flat)]
    logging.disable(logging.ERROR)  # dead letters log a line each
    try:
        test_validate.assert_same(*on_both(messages))
    finally:
        logging.disable(logging.NOTSET)


def test_native_trees_give_the_numpy_trees_bits(model_dir: Path) -> None:
    lean = LeanScorer.load(model_dir)
    assert isinstance(lean.compiled.classifier, SoftVote)
    (trees,) = [m for m in lean.compiled.classifier.members if isinstance(m, TreeTables)]
    assert compiled_native.available() and trees._native is not None
    batch = synthetic_features(3_000, 21)
    groups = lean.compiled.group_codes(batch)
    design = lean.compiled.design_matrix(batch, groups)
    # Values exactly on every threshold and one ulp either side: searchsorted's ties.
    row = 0
    for code in (c for c in trees.codes if c.kind == "numeric"):
        for value in code.thresholds.tolist():
            for near in (np.nextafter(value, -np.inf), value, np.nextafter(value, np.inf)):
                design[row % len(design), code.source] = near
                row += 1
    assert row > 100
    for rows in (1, 7, 300, 3_000):  # both of numpy's ways of summing the trees
        compiled_native.use_native(False)
        expected = trees.raw(design[:rows], groups[:rows])
        compiled_native.use_native(True)
        got = trees.raw(design[:rows], groups[:rows])
        assert got.dtype == np.float64 and got.tobytes() == expected.tobytes(), rows
    # Whole predictions follow the engine setting, and agree bit for bit.
    probabilities = {}
    for name in (engine.NATIVE, engine.PYTHON):
        engine.select_engine(name)
        assert compiled_native.native_enabled() == (name == engine.NATIVE)
        probabilities[name] = lean.predict_features(batch).tobytes()
    assert probabilities[engine.NATIVE] == probabilities[engine.PYTHON]


def test_native_trees_refuse_codes_outside_their_tables(model_dir: Path) -> None:
    lean = LeanScorer.load(model_dir)
    (trees,) = [m for m in lean.compiled.classifier.members if isinstance(m, TreeTables)]
    batch = synthetic_features(2, 3)
    groups = lean.compiled.group_codes(batch)
    design = lean.compiled.design_matrix(batch, groups)
    groups[:, :] = 10_000
    with pytest.raises(ValueError, match="outside"):
        trees._native.raw(design, groups)
    with pytest.raises(ValueError, match="2-d"):
        trees._native.raw(design[0], groups)


def test_the_engine_setting_picks_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    assert engine.select_engine("python") == "python"
    assert engine.check_batch([b"{}"], [None])[1] == [0]
    assert engine.active_engine() == "python"
    assert engine.select_engine("auto") == "native"
    assert engine.select_engine("native") == "native"
    with pytest.raises(ChurnstreamError, match="one of auto, native, python"):
        engine.select_engine("rust")
    monkeypatch.setenv("CHURNSTREAM_SCORING__ENGINE", "python")
    assert load_settings().scoring.engine == "python"


def test_without_the_extension_auto_falls_back_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(engine, "_CHECKER", None)
    monkeypatch.setattr(engine, "NATIVE_ERROR", "No module named 'churnstream_native'")
    monkeypatch.setattr(engine, "_fallback_logged", False)
    with pytest.raises(ChurnstreamError, match="not installed.*make setup"):
        engine.select_engine("native")
    with caplog.at_level(logging.WARNING, logger=engine.__name__):
        assert engine.select_engine("auto") == "python"
        assert engine.select_engine("auto") == "python"
    assert [r.getMessage() for r in caplog.records] == [
        "native scoring core not installed (No module named 'churnstream_native'); using Python"
    ]
    assert engine.check_batch([orjson.dumps(EVENT)], [None])[0].positions == [0]
