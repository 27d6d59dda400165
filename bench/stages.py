"""What each fast-path change buys: the transform's stages, reference against fast, in-process.

One batch of real events (the dataset's rows, valid, as the producer encodes them) goes
through each stage of both paths; the figure is the median over repeats, in microseconds
per message, so the stages add up to roughly the whole transform.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from tests.oracle import score_batch_reference

from churnstream.events import encode_event, events_to_frame, stamp
from churnstream.model.scorer import Scorer
from churnstream.schemas import utc_now_iso
from churnstream.scoring import engine
from churnstream.scoring.batch import score_batch
from churnstream.scoring.decode import decode_event
from churnstream.scoring.messages import RawMessage
from churnstream.scoring.validate import check_batch

REPEATS = 7


def measure(scorer: Scorer, rows: list[dict[str, Any]], batch: int = 5000) -> dict[str, Any]:
    messages = []
    for i in range(batch):
        key, value = encode_event(stamp(rows[i % len(rows)], utc_now_iso()))
        messages.append(RawMessage("bench", i % 6, i, key, value))
    values = [m.value for m in messages]
    keys = [m.key for m in messages]
    events = [decode_event(m) for m in messages]
    frame = events_to_frame(events)
    fast, _ = check_batch(values, keys)
    one_frame = frame.iloc[:1]
    one_features = fast.features.take(slice(0, 1))

    def whole(fn: Callable[..., Any], model: Callable[..., Any]) -> Callable[[], Any]:
        return lambda: fn(messages, model, threshold=scorer.threshold, model_version="v")

    def decode_reference() -> Any:
        return [decode_event(m) for m in messages]

    def decode_fast() -> Any:
        return check_batch(values, keys)

    per_message = {
        "decode + validate: pydantic per message": _us(decode_reference, batch),
        "decode + validate: orjson + column checks": _us(decode_fast, batch),
        "features: DataFrame from events": _us(lambda: events_to_frame(events), batch),
        "model: Pipeline.predict_proba (batch)": _us(lambda: scorer.predict_proba(frame), batch),
        "model: compiled (batch)": _us(lambda: scorer.predict_features(fast.features), batch),
        "transform: reference (score_batch_reference)": _us(
            whole(score_batch_reference, scorer.predict_proba), batch
        ),
        "transform: fast (score_batch)": _us(whole(score_batch, scorer.predict_features), batch),
    }
    if engine.NATIVE_ERROR is None:
        # The same two figures with the native fast check (scoring.engine), same batch.
        before = engine.active_engine()
        per_message["decode + validate: native check (Rust)"] = _us(
            lambda: engine.native_check_batch(values, keys), batch
        )
        for name in (engine.PYTHON, engine.NATIVE):
            engine.select_engine(name)
            per_message[f"transform: fast (score_batch), {name} check"] = _us(
                whole(score_batch, scorer.predict_features), batch
            )
        engine.select_engine(before)
    if scorer.explains:
        per_message["reasons: contributions (explain_features)"] = _us(
            lambda: scorer.explain_features(fast.features), batch
        )
        per_message["transform: fast with reasons (score_batch, explain=)"] = _us(
            lambda: score_batch(
                messages, scorer.predict_features, threshold=scorer.threshold,
                model_version="v", explain=scorer.explain_features,
            ),
            batch,
        )  # fmt: skip
    single = {
        "model: Pipeline.predict_proba, 1 row (us)": _us(
            lambda: scorer.predict_proba(one_frame), 1
        ),
        "model: compiled, 1 row (us)": _us(lambda: scorer.predict_features(one_features), 1),
    }
    return {"batch": batch, "us_per_message": per_message, "single_row_us": single}


def _us(fn: Callable[[], Any], per: int) -> float:
    fn()
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(statistics.median(times) / per * 1e6)


def render(stages: dict[str, Any]) -> str:
    lines = [
        f"| stage (batch of {stages['batch']:,}) | us per message |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value:,.2f} |" for name, value in stages["us_per_message"].items()]
    lines += [f"| {name} | {value:,.1f} |" for name, value in stages["single_row_us"].items()]
    return "\n".join(lines)
