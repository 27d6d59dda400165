"""Scoring one record in-process: the scoring core's score_batch, and the reference
(``tests/oracle.py``) for comparison."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from tests.oracle import score_batch_reference

from churnstream.events import encode_event, stamp
from churnstream.model.scorer import Scorer
from churnstream.schemas import utc_now_iso
from churnstream.scoring.batch import score_batch
from churnstream.scoring.messages import RawMessage

WARMUP = 200


@dataclass
class SingleResult:
    iterations: int
    fast_p50_ms: float
    fast_p99_ms: float
    reference_p50_ms: float
    reference_p99_ms: float
    #: Building the analytics frame of BatchResult.scored, which the loop does after commit.
    analytics_frame_p50_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(scorer: Scorer, rows: list[dict[str, Any]], iterations: int) -> SingleResult:
    messages = []
    for i in range(iterations + WARMUP):
        key, value = encode_event(stamp(rows[i % len(rows)], utc_now_iso()))
        messages.append(RawMessage("bench", 0, i, key, value))
    fast, frame = _time(score_batch, scorer.predict_features, scorer, messages)
    reference, _ = _time(
        score_batch_reference,
        scorer.predict_proba,
        scorer,
        messages[: max(WARMUP + 1, len(messages) // 4)],
    )
    return SingleResult(
        iterations=iterations,
        fast_p50_ms=float(np.percentile(fast, 50)),
        fast_p99_ms=float(np.percentile(fast, 99)),
        reference_p50_ms=float(np.percentile(reference, 50)),
        reference_p99_ms=float(np.percentile(reference, 99)),
        analytics_frame_p50_ms=float(np.percentile(frame, 50)),
    )


def _time(
    fn: Any, model: Any, scorer: Scorer, messages: list[RawMessage]
) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds per call of ``fn`` on one message, and to build its analytics frame."""
    times, frames = [], []
    for i, message in enumerate(messages):
        started = time.perf_counter()
        result = fn(
            [message],
            model,
            threshold=scorer.threshold,
            model_version=scorer.version,
        )
        took = time.perf_counter() - started
        if len(result.predictions) != 1:
            raise RuntimeError("a single-record benchmark event was not scored")
        started = time.perf_counter()
        _ = pd.DataFrame(result.scored)
        frame = time.perf_counter() - started
        if i >= WARMUP:
            times.append(took * 1000)
            frames.append(frame * 1000)
    return np.array(times), np.array(frames)
