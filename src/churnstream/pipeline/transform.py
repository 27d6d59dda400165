"""The scoring transform: a batch of raw messages in, predictions and dead letters out.

Pure apart from the clock and the model call: no Kafka client here, so most behaviour is
unit-tested without a broker. The poll loop (:mod:`churnstream.pipeline.scorer`) feeds it.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
from pydantic import ValidationError

from churnstream.events import events_to_frame
from churnstream.exceptions import InvalidEventError
from churnstream.schemas import (
    CustomerEvent,
    DeadLetter,
    ErrorType,
    Prediction,
    dump_body,
    format_ts,
    parse_ts,
    validation_messages,
)

logger = logging.getLogger(__name__)

#: A customer record is about 600 bytes; anything far larger is not one.
MAX_BODY_BYTES = 64 * 1024
#: How much of an oversized body the dead letter keeps, so the letter itself stays small.
OVERSIZED_KEEP_BYTES = 1024

SOURCE_HEADER = "churnstream.source"  # idempotency key: topic:partition:offset
RISK_BAND_HEADER = "churnstream.risk_band"
MODEL_VERSION_HEADER = "churnstream.model_version"
ERROR_CODE_HEADER = "churnstream.error_code"
ORIGINAL_KEY_HEADER = "churnstream.original_key"
#: Set by `churnstream dlq replay` on a re-sent message: how often it was replayed already.
RETRY_COUNT_HEADER = "churnstream.retry_count"

RISK_BANDS = ((0.7, "high"), (0.4, "medium"), (0.0, "low"))

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class RawMessage:
    """What the transform needs of a Kafka message (decoupled from confluent_kafka.Message)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True)
class OutMessage:
    key: bytes | None
    value: bytes
    headers: Headers


@dataclass
class BatchResult:
    predictions: list[OutMessage]
    dead_letters: list[OutMessage]
    #: One row per prediction, for window analytics (groups, probability, latencies, source).
    scored: pd.DataFrame
    dead_letter_types: dict[str, int]
    dead_letter_codes: dict[str, int]
    inference_ms: float


def source_key(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def risk_band(probability: float) -> str:
    for floor, name in RISK_BANDS:
        if probability >= floor:
            return name
    return "low"


def _original(value: bytes | None) -> dict[str, Any]:
    """The contract wants an object: a JSON object as is, anything else wrapped."""
    if value is None:
        return {"raw_text": None}
    if len(value) > MAX_BODY_BYTES:
        return {
            "raw_base64": base64.b64encode(value[:OVERSIZED_KEEP_BYTES]).decode(),
            "truncated": True,
            "size_bytes": len(value),
        }
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return {"raw_base64": base64.b64encode(value).decode()}
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"raw_text": text}
    return parsed if isinstance(parsed, dict) else {"raw_text": text}


def decode_event(message: RawMessage) -> CustomerEvent:
    """Decode and validate one message, or raise InvalidEventError saying why."""
    value = message.value
    if not value:
        raise InvalidEventError("empty message body", value, code="empty_body")
    if len(value) > MAX_BODY_BYTES:
        raise InvalidEventError(
            f"message body is {len(value)} bytes, more than the {MAX_BODY_BYTES} allowed",
            value,
            code="too_large",
        )
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(f"body is not UTF-8: {exc}", value, code="not_utf8") from exc
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson also refuses NaN and Infinity, which are not JSON.
        raise InvalidEventError(f"body is not valid JSON: {exc}", value, code="not_json") from exc
    if not isinstance(data, dict):
        raise InvalidEventError(
            f"body is JSON {type(data).__name__}, not an object", value, code="not_object"
        )
    try:
        event = CustomerEvent.model_validate(data)
    except ValidationError as exc:
        details = validation_messages(exc)
        raise InvalidEventError(
            f"{len(details)} field error(s): {'; '.join(details)}", value, details=details
        ) from exc
    if message.key is not None and message.key != event.customerID.encode():
        raise InvalidEventError(
            f"message key {message.key!r} differs from customerID {event.customerID!r}",
            value,
            code="key_mismatch",
        )
    return event


def _retry_count(headers: Headers) -> int:
    for name, value in headers:
        if name == RETRY_COUNT_HEADER:
            try:
                return max(0, int(value))
            except ValueError:
                return 0
    return 0


def dead_letter(
    message: RawMessage,
    *,
    error_type: ErrorType,
    reason: str,
    code: str,
    details: Sequence[str] = (),
    consumer_group: str | None,
    failed_ts: str,
) -> OutMessage:
    body = DeadLetter(
        original_message=_original(message.value),
        error_type=error_type,
        error_message=reason,
        validation_errors=list(details) or None,
        source_topic=message.topic,
        failed_ts=failed_ts,
        consumer_group=consumer_group,
        retry_count=_retry_count(message.headers),
    )
    headers: Headers = [
        (SOURCE_HEADER, source_key(message.topic, message.partition, message.offset).encode()),
        (ERROR_CODE_HEADER, code.encode()),
    ]
    if message.key is not None:
        headers.append((ORIGINAL_KEY_HEADER, message.key))
    return OutMessage(key=message.key, value=orjson.dumps(dump_body(body)), headers=headers)


def _e2e_ms(event_ts: str, processed: datetime) -> float:
    try:
        return (processed - parse_ts(event_ts)).total_seconds() * 1000
    except ValueError:
        return math.nan


def score_batch(
    messages: Sequence[RawMessage],
    predict_proba: Callable[[pd.DataFrame], np.ndarray],
    *,
    threshold: float,
    model_version: str,
    consumer_group: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BatchResult:
    """Decode, validate and score a batch; every message ends as a prediction or a letter.

    The model is called once for all valid events. If that call fails, each row is scored
    on its own so that only the rows the model cannot handle become ``inference_error``.
    """
    good: list[tuple[RawMessage, CustomerEvent]] = []
    letters: list[OutMessage] = []
    types: dict[str, int] = {}
    codes: dict[str, int] = {}
    now_iso = format_ts(clock())

    def reject(
        msg: RawMessage, error_type: ErrorType, reason: str, code: str, details: Sequence[str] = ()
    ) -> None:
        letters.append(
            dead_letter(
                msg,
                error_type=error_type,
                reason=reason,
                code=code,
                details=details,
                consumer_group=consumer_group,
                failed_ts=now_iso,
            )
        )
        types[error_type] = types.get(error_type, 0) + 1
        codes[code] = codes.get(code, 0) + 1

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
            logger.warning("batch inference failed; scoring %d rows one by one", len(good))
            probabilities = np.full(len(good), np.nan)
            for i in range(len(good)):
                try:
                    one = np.asarray(predict_proba(frame.iloc[i : i + 1]), dtype=float)
                    probabilities[i] = float(one[0]) if np.isfinite(one).all() else np.nan
                except Exception as exc:  # noqa: BLE001
                    logger.debug("row %d failed: %s", i, exc)
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
        key = source_key(msg.topic, msg.partition, msg.offset)
        predictions.append(
            OutMessage(
                key=event.customerID.encode(),
                value=orjson.dumps(dump_body(body)),
                headers=[
                    (SOURCE_HEADER, key.encode()),
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
    return BatchResult(
        predictions=predictions,
        dead_letters=letters,
        scored=pd.DataFrame(rows, columns=SCORED_COLUMNS),
        dead_letter_types=types,
        dead_letter_codes=codes,
        inference_ms=inference_ms,
    )


SCORED_COLUMNS = [
    "customerID",
    "Contract",
    "InternetService",
    "PaymentMethod",
    "tenure",
    "MonthlyCharges",
    "churn_probability",
    "prediction",
    "inference_latency_ms",
    "e2e_latency_ms",
    "source_topic",
    "source_partition",
    "source_offset",
]
