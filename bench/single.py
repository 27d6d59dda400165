"""Scoring one record in-process: the scoring core's score_batch, and the reference
(``tests/oracle.py``) for comparison.

``python -m bench.single`` prints where one record's time goes: the median of each step of
``score_batch`` on its own, one dataset event per call (see docs/benchmarks.md, *One record:
where the microseconds go*).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tests.oracle import score_batch_reference

from churnstream.events import encode_event, stamp
from churnstream.headers import source_key
from churnstream.model import small_rows
from churnstream.model.scorer import Scorer
from churnstream.schemas import utc_now_iso
from churnstream.scoring import engine
from churnstream.scoring.batch import score_batch
from churnstream.scoring.encode import encode_predictions
from churnstream.scoring.infer import score_features
from churnstream.scoring.messages import RawMessage
from churnstream.settings.sections import ObservabilitySettings
from churnstream.streaming.window import Window
from churnstream.windows.drift import drift_reference

WARMUP = 200


@dataclass
class SingleResult:
    iterations: int
    fast_p50_ms: float
    fast_p99_ms: float
    reference_p50_ms: float
    reference_p99_ms: float
    #: Handing the scored batch to the window statistics after each call (``Window.add``,
    #: what the poll loop does after commit: it folds the waiting batches' rows with numpy
    #: every FOLD_INTERVAL_S, so most calls only queue the batch and a few pay the fold).
    window_add_p50_ms: float
    window_add_mean_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(scorer: Scorer, rows: list[dict[str, Any]], iterations: int) -> SingleResult:
    messages = []
    for i in range(iterations + WARMUP):
        key, value = encode_event(stamp(rows[i % len(rows)], utc_now_iso()))
        messages.append(RawMessage("bench", 0, i, key, value))
    fast, window = _time(score_batch, scorer.predict_features, scorer, messages)
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
        window_add_p50_ms=float(np.percentile(window, 50)),
        window_add_mean_ms=float(np.mean(window)),
    )


def _time(
    fn: Any, model: Any, scorer: Scorer, messages: list[RawMessage]
) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds per call of ``fn`` on one message, and of handing its result to the
    window statistics as the poll loop does after each committed batch."""
    # The scorer's own window: its mode's summary and the model's drift profile.
    window = Window(
        mode="streaming",
        top_k=10,
        drift=drift_reference(scorer.metadata, ObservabilitySettings()),
    )
    times, adds = [], []
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
        window.add(1, result)
        added = time.perf_counter() - started
        if i >= WARMUP:
            times.append(took * 1000)
            adds.append(added * 1000)
    window.close(model_version=scorer.version, shadow_version=None)
    return np.array(times), np.array(adds)


def steps(scorer: Scorer, rows: list[dict[str, Any]], iterations: int) -> dict[str, float]:
    """Median microseconds of each step of ``score_batch`` for one record, each timed alone."""
    messages = [
        RawMessage("bench", 0, i, *encode_event(stamp(rows[i % len(rows)], utc_now_iso())))
        for i in range(iterations)
    ]
    compiled = scorer.compiled
    if compiled is None:
        raise RuntimeError("the per-step figures need a compiled model")
    accepted = [engine.check_batch([m.value], [m.key])[0] for m in messages]
    features = [rows.features for rows in accepted]
    groups = [compiled.group_codes(f) for f in features]
    designs = [compiled.design_matrix(f, g) for f, g in zip(features, groups, strict=True)]
    tables = compiled._small_tables
    if tables is None:
        raise RuntimeError("this model's one-row inputs go through numpy")
    predict = scorer.predict_features
    scores = [score_features(f, predict, threshold=scorer.threshold) for f in features]

    def median_us(step: Any) -> float:
        for i in range(min(WARMUP, iterations)):
            step(i)
        times = []
        for i in range(iterations):
            started = time.perf_counter()
            step(i)
            times.append(time.perf_counter() - started)
        return float(np.median(times) * 1e6)

    out = {
        "score_batch, whole": median_us(
            lambda i: score_batch(
                [messages[i]], predict, threshold=scorer.threshold, model_version=scorer.version
            )
        ),
        f"fast check ({engine.active_engine()})": median_us(
            lambda i: engine.check_batch([messages[i].value], [messages[i].key])
        ),
        "model call with its checks (score_features)": median_us(
            lambda i: score_features(features[i], predict, threshold=scorer.threshold)
        ),
        "  the model (predict_features)": median_us(lambda i: predict(features[i])),
        "    group codes and design matrix (small_rows.inputs)": median_us(
            lambda i: small_rows.inputs(features[i], tables)
        ),
        "    group codes (numpy, batches over 8 rows)": median_us(
            lambda i: compiled.group_codes(features[i])
        ),
        "    design matrix (numpy, batches over 8 rows)": median_us(
            lambda i: compiled.design_matrix(features[i], groups[i])
        ),
    }
    for member in getattr(compiled.classifier, "members", [compiled.classifier]):
        out[f"    {type(member).__name__} (with its expit)"] = median_us(
            lambda i, member=member: member(designs[i], groups[i])
        )
    out["prediction body and headers (encode_predictions)"] = median_us(
        lambda i: encode_predictions(
            [accepted[i].customer_ids[0]],
            [accepted[i].event_ts[0]],
            scores[i].probabilities,
            scores[i].labels_yes,
            processed_ts=utc_now_iso(),
            model_version=scorer.version,
            inference_ms=scores[i].inference_ms,
            sources=[source_key("bench", 0, i).encode()],
        )
    )
    return out


def main() -> None:
    from bench import env

    scorer = env.model(env.REPO / "models")
    print(f"| step (one record, median of 3,000; engine {engine.active_engine()}) | us |")
    print("|---|---|")
    for name, value in steps(scorer, env.records(), 3000).items():
        print(f"| {name} | {value:.1f} |")


if __name__ == "__main__":
    main()
