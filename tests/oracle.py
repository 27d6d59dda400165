"""The reference scoring transform: the definition the scoring core is tested against.

One pydantic event per message (the contract model decides), one DataFrame for the model,
one pydantic ``Prediction`` per body, the risk band by :func:`risk_band` row by row: slow,
and obviously what the contract says. :func:`churnstream.scoring.batch.score_batch` must give
the same result (bodies, headers, dead letters, scored rows) for every input;
``tests/unit/test_validate.py`` compares the two, and ``bench`` measures both.

Not in ``src/``: nothing in production calls it (it needs pandas, which the core must not).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd

from churnstream.events import events_to_frame
from churnstream.exceptions import InvalidEventError
from churnstream.headers import MODEL_VERSION_HEADER, RISK_BAND_HEADER, SOURCE_HEADER, source_key
from churnstream.schemas import CustomerEvent, Prediction, dump_body, format_ts, parse_ts
from churnstream.scoring.bands import risk_band
from churnstream.scoring.dead_letter import Rejects
from churnstream.scoring.decode import decode_event
from churnstream.scoring.messages import (
    SCORED_COLUMNS,
    BatchResult,
    OutMessage,
    Predicted,
    RawMessage,
)

logger = logging.getLogger(__name__)


def score_batch_reference(
    messages: Sequence[RawMessage],
    predict_proba: Callable[[pd.DataFrame], np.ndarray],
    *,
    threshold: float,
    model_version: str,
    consumer_group: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BatchResult:
    """The reference transform: ``predict_proba`` takes the model-ready DataFrame."""
    good: list[tuple[RawMessage, CustomerEvent]] = []
    rejects = Rejects(consumer_group, clock())
    reject = rejects.add

    for msg in messages:
        try:
            good.append((msg, decode_event(msg)))
        except InvalidEventError as exc:
            reject(msg, "validation_error", exc.reason, exc.code, exc.details)
        except Exception as exc:  # noqa: BLE001 - one odd message must not stop the stream
            logger.exception(
                "unexpected error decoding %s[%d]@%d", msg.topic, msg.partition, msg.offset
            )
            reject(msg, "processing_error", f"{type(exc).__name__}: {exc}", "processing")

    probabilities = np.empty(0)
    inference_ms = 0.0
    if good:
        frame = events_to_frame([event for _, event in good])
        started = time.perf_counter()
        try:
            probabilities = np.asarray(predict_proba(frame), dtype=float)
            if probabilities.shape != (len(good),) or not np.isfinite(probabilities).all():
                raise ValueError(f"model returned {probabilities.shape} / non-finite values")
        except Exception:  # noqa: BLE001 - isolate the rows the model cannot score
            probabilities = np.full(len(good), np.nan)
            for i in range(len(good)):
                try:
                    one = np.asarray(predict_proba(frame.iloc[i : i + 1]), dtype=float)
                    probabilities[i] = float(one[0]) if np.isfinite(one).all() else np.nan
                except Exception:  # noqa: BLE001, S112
                    continue
        inference_ms = (time.perf_counter() - started) * 1000

    processed = clock()
    processed_iso = format_ts(processed)
    predictions: list[OutMessage] = []
    rows: list[dict[str, Any]] = []
    for (msg, event), raw_probability in zip(good, probabilities.tolist(), strict=True):
        if not math.isfinite(raw_probability):
            reject(msg, "inference_error", "the model could not score this record", "inference")
            continue
        probability = min(1.0, max(0.0, float(raw_probability)))
        label = "Yes" if probability >= threshold else "No"
        body = Prediction(
            customerID=event.customerID,
            churn_probability=probability,
            prediction=label,
            event_ts=event.event_ts,
            processed_ts=processed_iso,
            model_version=model_version,
            inference_latency_ms=inference_ms,
        )
        predictions.append(
            OutMessage(
                key=event.customerID.encode(),
                value=orjson.dumps(dump_body(body)),
                headers=[
                    (SOURCE_HEADER, source_key(msg.topic, msg.partition, msg.offset).encode()),
                    (RISK_BAND_HEADER, risk_band(probability).encode()),
                    (MODEL_VERSION_HEADER, model_version.encode()),
                ],
            )
        )
        rows.append(
            {
                "customerID": event.customerID,
                "Contract": event.Contract,
                "InternetService": event.InternetService,
                "PaymentMethod": event.PaymentMethod,
                "tenure": event.tenure,
                "MonthlyCharges": float(event.MonthlyCharges),
                "churn_probability": probability,
                "prediction": label,
                "inference_latency_ms": inference_ms,
                "e2e_latency_ms": _e2e_ms(event.event_ts, processed),
                "source_topic": msg.topic,
                "source_partition": msg.partition,
                "source_offset": msg.offset,
            }
        )
    scored = pd.DataFrame(rows, columns=list(SCORED_COLUMNS))
    return BatchResult(
        predictions=predictions,
        dead_letters=rejects.letters,
        scored_columns={column: scored[column].to_numpy() for column in SCORED_COLUMNS},
        dead_letter_types=rejects.types,
        dead_letter_codes=rejects.codes,
        inference_ms=inference_ms,
        predicted=Predicted(
            customer_ids=[row["customerID"] for row in rows],
            event_ts=[orjson.loads(p.value)["event_ts"] for p in predictions],
            sources=[dict(p.headers)[SOURCE_HEADER] for p in predictions],
            probabilities=np.array([row["churn_probability"] for row in rows], dtype=float),
            labels_yes=np.array([row["prediction"] == "Yes" for row in rows], dtype=bool),
            processed_ts=processed_iso,
            model_version=model_version,
            inference_ms=inference_ms,
        ),
    )


def _e2e_ms(event_ts: str, processed: datetime) -> float:
    try:
        return (processed - parse_ts(event_ts)).total_seconds() * 1000
    except ValueError:
        return math.nan
