"""The scoring transform: a batch of raw messages in, predictions and dead letters out.

Pure apart from the clock and the model call: no Kafka client here, so most behaviour is
unit-tested without a broker. The poll loop (:mod:`churnstream.pipeline.scorer`) feeds it.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd
from pydantic import ValidationError

from churnstream.events import events_to_frame
from churnstream.exceptions import InvalidEventError
from churnstream.headers import (
    ERROR_CODE_HEADER,
    MODEL_VERSION_HEADER,
    ORIGINAL_HEADER_PREFIX,
    ORIGINAL_KEY_HEADER,
    RETRY_COUNT_HEADER,
    RISK_BAND_HEADER,
    SOURCE_HEADER,
    Headers,
    source_key,
)
from churnstream.logging import ERROR_CODE, OFFSET, PARTITION, TOPIC
from churnstream.model.feature_batch import RAW_CATEGORICAL, FeatureBatch
from churnstream.model.features import to_frame
from churnstream.pipeline import fastpath
from churnstream.schemas import (
    CATEGORICAL_LEVELS,
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

RISK_BANDS = ((0.7, "high"), (0.4, "medium"), (0.0, "low"))

_NO_HEADERS: Headers = []  # shared default; never mutated


class RawMessage(NamedTuple):
    """What the transform needs of a Kafka message (decoupled from confluent_kafka.Message).

    A named tuple rather than a dataclass: the poll loop builds one per message, and a tuple
    costs a third of a frozen dataclass to create.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = _NO_HEADERS


class OutMessage(NamedTuple):
    key: bytes | None
    value: bytes
    headers: Headers


class BatchResult:
    """What a batch became: messages to produce, plus what window analytics need.

    ``scored`` holds one row per prediction (groups, probability, latencies, source). It
    may be given as a function that builds it: the frame is then made on first access, so
    a caller that only needs the messages (or needs them first, as the poll loop does: it
    reads ``scored`` after the batch is committed) does not wait for it.
    """

    def __init__(
        self,
        predictions: list[OutMessage],
        dead_letters: list[OutMessage],
        scored: pd.DataFrame | Callable[[], pd.DataFrame],
        dead_letter_types: dict[str, int],
        dead_letter_codes: dict[str, int],
        inference_ms: float,
    ) -> None:
        self.predictions = predictions
        self.dead_letters = dead_letters
        self._scored = scored
        self.dead_letter_types = dead_letter_types
        self.dead_letter_codes = dead_letter_codes
        self.inference_ms = inference_ms

    @property
    def scored(self) -> pd.DataFrame:
        if not isinstance(self._scored, pd.DataFrame):
            self._scored = self._scored()
        return self._scored

    @scored.setter
    def scored(self, frame: pd.DataFrame) -> None:
        self._scored = frame

    def __repr__(self) -> str:
        return (
            f"BatchResult({len(self.predictions)} predictions, "
            f"{len(self.dead_letters)} dead letters, inference {self.inference_ms:.2f} ms)"
        )


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
    duplicated = _duplicate_keys(value)
    if duplicated:
        raise InvalidEventError(
            f"duplicate key(s) in the body: {', '.join(duplicated)} (which value is meant is "
            "ambiguous)",
            value,
            code="duplicate_key",
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


def _duplicate_keys(value: bytes) -> list[str]:
    """Keys that occur more than once in any object of the body (only the slow path pays)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and key not in found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(value, object_pairs_hook=pairs)
    return found


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
    headers.extend((ORIGINAL_HEADER_PREFIX + name, value) for name, value in message.headers)
    return OutMessage(key=message.key, value=orjson.dumps(dump_body(body)), headers=headers)


def _e2e_ms(event_ts: str, processed: datetime) -> float:
    try:
        return (processed - parse_ts(event_ts)).total_seconds() * 1000
    except ValueError:
        return math.nan


class _Rejects:
    """The dead letters of one batch, with their counts by error type and by reason code.

    Shared by both transforms, so that they reject alike.
    """

    def __init__(self, consumer_group: str | None, failed_ts: str) -> None:
        self.consumer_group = consumer_group
        self.failed_ts = failed_ts
        self.letters: list[OutMessage] = []
        self.types: dict[str, int] = {}
        self.codes: dict[str, int] = {}

    def add(
        self,
        msg: RawMessage,
        error_type: ErrorType,
        reason: str,
        code: str,
        details: Sequence[str] = (),
    ) -> None:
        self.letters.append(
            dead_letter(
                msg,
                error_type=error_type,
                reason=reason,
                code=code,
                details=details,
                consumer_group=self.consumer_group,
                failed_ts=self.failed_ts,
            )
        )
        self.types[error_type] = self.types.get(error_type, 0) + 1
        self.codes[code] = self.codes.get(code, 0) + 1
        logger.warning(
            "dead-lettered %s[%d]@%d: %s (%s)",
            msg.topic,
            msg.partition,
            msg.offset,
            code,
            reason,
            extra={
                TOPIC: msg.topic,
                PARTITION: msg.partition,
                OFFSET: msg.offset,
                ERROR_CODE: code,
            },
        )


def score_batch_reference(
    messages: Sequence[RawMessage],
    predict_proba: Callable[[pd.DataFrame], np.ndarray],
    *,
    threshold: float,
    model_version: str,
    consumer_group: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BatchResult:
    """The reference transform: one pydantic event and one prediction model per message.

    :func:`score_batch` must give the same result (bodies, headers, dead letters, scored
    rows) for every input; the tests compare the two. Kept as the definition of the
    behaviour, and for those tests.
    """
    good: list[tuple[RawMessage, CustomerEvent]] = []
    rejects = _Rejects(consumer_group, format_ts(clock()))
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
        dead_letters=rejects.letters,
        scored=pd.DataFrame(rows, columns=SCORED_COLUMNS),
        dead_letter_types=rejects.types,
        dead_letter_codes=rejects.codes,
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

    This is the fast path (:mod:`churnstream.pipeline.fastpath`): the batch is decoded and
    checked column by column, and only the messages that check does not accept go through
    the pydantic reference, so the result equals :func:`score_batch_reference`'s. When
    ``predict_proba`` is a bound method of an object that also has ``predict_features``
    (a :class:`~churnstream.model.scorer.Scorer`), the model gets the decoded columns
    directly instead of a DataFrame.
    """
    rejects = _Rejects(consumer_group, format_ts(clock()))
    reject = rejects.add

    try:
        fast, slow = fastpath.check_batch([m.value for m in messages], [m.key for m in messages])
    except Exception:  # noqa: BLE001 - the reference decoder can always take over
        logger.exception("fast check failed; decoding this batch message by message")
        fast, slow = fastpath.check_batch([], [])[0], list(range(len(messages)))

    # The messages the fast check did not accept: the reference decides, in message order.
    slow_events: list[tuple[int, CustomerEvent]] = []
    for position in slow:
        msg = messages[position]
        try:
            slow_events.append((position, decode_event(msg)))
        except InvalidEventError as exc:
            reject(msg, "validation_error", exc.reason, exc.code, exc.details)
        except Exception as exc:  # noqa: BLE001 - one odd message must not stop the stream
            logger.exception(
                "unexpected error decoding %s[%d]@%d", msg.topic, msg.partition, msg.offset
            )
            reject(msg, "processing_error", f"{type(exc).__name__}: {exc}", "processing")

    # Valid rows in message order: the fast ones, with any the reference accepted merged in.
    positions = list(fast.positions)
    customer_ids = list(fast.customer_ids)
    stamps = list(fast.event_ts)
    moments: list[datetime | None] = list(fast.event_dt)
    events: list[CustomerEvent | None] = [None] * len(fast)
    features = fast.features
    if slow_events:
        positions += [p for p, _ in slow_events]
        customer_ids += [e.customerID for _, e in slow_events]
        stamps += [e.event_ts for _, e in slow_events]
        moments += [None] * len(slow_events)
        events += [e for _, e in slow_events]
        order = np.argsort(np.asarray(positions), kind="stable")
        features = fastpath.concat_features(
            [features, fastpath.features_of_events([e for _, e in slow_events])], order
        )
        ordered = order.tolist()
        positions = [positions[i] for i in ordered]
        customer_ids = [customer_ids[i] for i in ordered]
        stamps = [stamps[i] for i in ordered]
        moments = [moments[i] for i in ordered]
        events = [events[i] for i in ordered]

    probabilities = np.empty(0)
    inference_ms = 0.0
    n_good = len(positions)
    if n_good:
        owner = getattr(predict_proba, "__self__", None)
        predict_features = getattr(owner, "predict_features", None)
        started = time.perf_counter()
        if callable(predict_features):
            probabilities = _predict(
                lambda rows: predict_features(
                    features if rows is None else fastpath.take_features(features, rows)
                ),
                n_good,
            )
        else:
            frame = to_frame(features)
            probabilities = _predict(
                lambda rows: predict_proba(frame if rows is None else frame.iloc[rows]),
                n_good,
            )
        inference_ms = (time.perf_counter() - started) * 1000

    processed = clock()
    processed_iso = format_ts(processed)
    finite = np.isfinite(probabilities) if n_good else np.zeros(0, dtype=bool)
    # min(1.0, max(0.0, p)) as the reference writes it, element for element.
    clipped = np.where(probabilities > 0.0, probabilities, 0.0)
    clipped = np.where(clipped < 1.0, clipped, 1.0)
    labels_yes = clipped >= threshold
    template = fastpath.prediction_template(processed_iso, model_version, inference_ms)
    texts = fastpath.number_texts(clipped[finite].tolist())
    version_bytes = model_version.encode()
    band_headers = [(RISK_BAND_HEADER, name.encode()) for _, name in RISK_BANDS]
    # Index into band_headers per row, as risk_band() decides (first floor reached).
    band_index = np.full(len(clipped), len(RISK_BANDS) - 1, dtype=np.intp)
    for position in range(len(RISK_BANDS) - 1, -1, -1):
        band_index[clipped >= RISK_BANDS[position][0]] = position
    band_list = band_index.tolist()
    version_header = (MODEL_VERSION_HEADER, version_bytes)

    predictions: list[OutMessage] = []
    kept: list[int] = []
    if n_good and not slow_events and bool(finite.all()):
        # The common case, as comprehensions: every row valid, decoded by the fast check.
        labels = ["Yes" if yes else "No" for yes in labels_yes.tolist()]
        sources = [
            f"{m.topic}:{m.partition}:{m.offset}".encode()
            for m in map(messages.__getitem__, positions)
        ]
        make = tuple.__new__
        predictions = [
            make(
                OutMessage,
                (
                    customer_id.encode(),
                    (template % (customer_id, text, label, stamp)).encode(),
                    [(SOURCE_HEADER, source), band_headers[band], version_header],
                ),
            )
            for customer_id, text, label, stamp, source, band in zip(
                customer_ids, texts, labels, stamps, sources, band_list, strict=True
            )
        ]
        kept = list(range(n_good))
        n_good = 0  # nothing left for the general loop below
    text_index = 0
    finite_list = finite.tolist()
    clipped_list = clipped.tolist()
    yes_list = labels_yes.tolist()
    for row in range(n_good):
        msg = messages[positions[row]]
        if not finite_list[row]:
            reject(msg, "inference_error", "the model could not score this record", "inference")
            continue
        probability = clipped_list[row]
        label = "Yes" if yes_list[row] else "No"
        event = events[row]
        if event is None:
            body = (template % (customer_ids[row], texts[text_index], label, stamps[row])).encode()
        else:  # accepted by the reference: its text may need JSON escapes
            body = orjson.dumps(
                dump_body(
                    Prediction(
                        customerID=event.customerID,
                        churn_probability=probability,
                        prediction=label,
                        event_ts=event.event_ts,
                        processed_ts=processed_iso,
                        model_version=model_version,
                        inference_latency_ms=inference_ms,
                    )
                )
            )
        text_index += 1
        predictions.append(
            OutMessage(
                customer_ids[row].encode(),
                body,
                [
                    (SOURCE_HEADER, f"{msg.topic}:{msg.partition}:{msg.offset}".encode()),
                    band_headers[band_list[row]],
                    version_header,
                ],
            )
        )
        kept.append(row)

    return BatchResult(
        predictions=predictions,
        dead_letters=rejects.letters,
        scored=functools.partial(
            _scored_frame,
            kept,
            messages,
            positions,
            customer_ids,
            stamps,
            moments,
            features,
            clipped,
            labels_yes,
            inference_ms,
            processed,
        ),
        dead_letter_types=rejects.types,
        dead_letter_codes=rejects.codes,
        inference_ms=inference_ms,
    )


def _predict(call: Callable[[Any], Any], n: int) -> np.ndarray:
    """One model call for the batch; if it fails, row by row (NaN where a row fails)."""
    try:
        probabilities = np.asarray(call(None), dtype=float)
        if probabilities.shape != (n,) or not np.isfinite(probabilities).all():
            raise ValueError(f"model returned {probabilities.shape} / non-finite values")
    except Exception:  # noqa: BLE001 - isolate the rows the model cannot score
        logger.warning("batch inference failed; scoring %d rows one by one", n)
        probabilities = np.full(n, np.nan)
        for i in range(n):
            try:
                one = np.asarray(call(slice(i, i + 1)), dtype=float)
                probabilities[i] = float(one[0]) if np.isfinite(one).all() else np.nan
            except Exception as exc:  # noqa: BLE001
                logger.debug("row %d failed: %s", i, exc)
    return probabilities


def _scored_frame(
    kept: list[int],
    messages: Sequence[RawMessage],
    positions: list[int],
    customer_ids: list[str],
    stamps: list[str],
    moments: list[datetime | None],
    features: FeatureBatch,
    clipped: np.ndarray,
    labels_yes: np.ndarray,
    inference_ms: float,
    processed: datetime,
) -> pd.DataFrame:
    """The analytics rows, with the reference's columns and dtypes."""
    if not kept:
        return pd.DataFrame([], columns=SCORED_COLUMNS)
    rows = np.asarray(kept, dtype=np.intp)
    codes = features.codes[rows]
    sources = [messages[positions[i]] for i in kept]
    latencies = []
    processed_utc = processed.astimezone(UTC).replace(tzinfo=None)  # moments are naive UTC
    for i in kept:
        moment = moments[i]
        if moment is None:
            latencies.append(_e2e_ms(stamps[i], processed))
        else:
            latencies.append((processed_utc - moment).total_seconds() * 1000)
    return pd.DataFrame(
        {
            "customerID": [customer_ids[i] for i in kept],
            "Contract": _LEVELS["Contract"][codes[:, _CODE["Contract"]]],
            "InternetService": _LEVELS["InternetService"][codes[:, _CODE["InternetService"]]],
            "PaymentMethod": _LEVELS["PaymentMethod"][codes[:, _CODE["PaymentMethod"]]],
            "tenure": features.tenure[rows],
            "MonthlyCharges": features.monthly_charges[rows],
            "churn_probability": clipped[rows],
            "prediction": np.where(labels_yes[rows], "Yes", "No").astype(object),
            "inference_latency_ms": np.full(len(kept), inference_ms),
            "e2e_latency_ms": np.asarray(latencies, dtype=np.float64),
            "source_topic": [m.topic for m in sources],
            "source_partition": np.fromiter((m.partition for m in sources), np.int64, len(kept)),
            "source_offset": np.fromiter((m.offset for m in sources), np.int64, len(kept)),
        },
        columns=SCORED_COLUMNS,
    )


_LEVELS = {name: np.array(levels, dtype=object) for name, levels in CATEGORICAL_LEVELS.items()}
_CODE = {name: i for i, name in enumerate(RAW_CATEGORICAL)}
