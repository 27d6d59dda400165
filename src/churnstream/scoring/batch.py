"""The scoring core's entry point: a batch of raw messages in, predictions and dead letters out.

Pure apart from the clock and the model call: no Kafka client, no files, no pandas, so most
behaviour is unit-tested without a broker. The poll loop feeds it; every message of the batch
ends as exactly one prediction or one dead letter.

The steps, each in its own module: :mod:`~churnstream.scoring.validate` accepts the valid
messages of the batch at once, :mod:`~churnstream.scoring.decode` decides the rest one by one
with the contract model, :mod:`~churnstream.scoring.infer` calls the model once,
:mod:`~churnstream.scoring.encode` writes the prediction bodies and headers, and
:mod:`~churnstream.scoring.dead_letter` the letters.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np

from churnstream.exceptions import InvalidEventError
from churnstream.headers import source_key
from churnstream.model.contributions import REASONS_COLUMN, TopReasons
from churnstream.model.feature_batch import FeatureBatch
from churnstream.schemas import CustomerEvent, format_ts, parse_ts
from churnstream.scoring.dead_letter import Rejects
from churnstream.scoring.decode import decode_event, features_of_events
from churnstream.scoring.encode import encode_predictions
from churnstream.scoring.engine import check_batch
from churnstream.scoring.infer import SMALL_BATCH_ROWS, Predict, score_features
from churnstream.scoring.messages import (
    BatchResult,
    Predicted,
    RawMessage,
    ScoredColumns,
)
from churnstream.scoring.reasons import Explain, reason_features, reasons_of
from churnstream.scoring.validate import empty_rows

logger = logging.getLogger(__name__)


def score_batch(
    messages: Sequence[RawMessage],
    predict: Predict,
    *,
    threshold: float,
    model_version: str,
    consumer_group: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    explain: Explain | None = None,
) -> BatchResult:
    """Decode, validate and score a batch; every message ends as a prediction or a letter.

    ``predict`` gives a probability per row of a FeatureBatch (e.g.
    :meth:`churnstream.model.scorer.Scorer.predict_features`). It is called once for all
    valid events; if that call fails, each row is scored on its own so that only the rows the
    model cannot handle become ``inference_error``. With ``explain`` (e.g.
    :meth:`churnstream.model.scorer.Scorer.explain_features`) each prediction also carries
    its top reasons (the ``churnstream.reasons`` header).
    """
    rejects = Rejects(consumer_group, clock())
    reject = rejects.add

    try:
        fast, slow = check_batch([m.value for m in messages], [m.key for m in messages])
    except Exception:  # noqa: BLE001 - the reference decoder can always take over
        logger.exception("fast check failed; decoding this batch message by message")
        fast, slow = empty_rows(), list(range(len(messages)))

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
    features = fast.features
    if slow_events:
        positions += [p for p, _ in slow_events]
        customer_ids += [e.customerID for _, e in slow_events]
        stamps += [e.event_ts for _, e in slow_events]
        moments += [None] * len(slow_events)
        order = np.argsort(np.asarray(positions), kind="stable")
        features = FeatureBatch.concat(
            [features, features_of_events([e for _, e in slow_events])], order
        )
        ordered = order.tolist()
        positions = [positions[i] for i in ordered]
        customer_ids = [customer_ids[i] for i in ordered]
        stamps = [stamps[i] for i in ordered]
        moments = [moments[i] for i in ordered]

    scores = score_features(features, predict, threshold=threshold)
    processed = clock()
    processed_iso = _format_utc(processed)

    kept = list(range(len(positions)))
    if not _all_true(scores.finite):
        kept = []
        for row, finite in enumerate(scores.finite.tolist()):
            if finite:
                kept.append(row)
            else:
                reject(
                    messages[positions[row]],
                    "inference_error",
                    "the model could not score this record",
                    "inference",
                )
    if len(kept) < len(positions):
        ids, times = [customer_ids[i] for i in kept], [stamps[i] for i in kept]
        probabilities, labels_yes = scores.probabilities[kept], scores.labels_yes[kept]
    else:
        ids, times = customer_ids, stamps
        probabilities, labels_yes = scores.probabilities, scores.labels_yes
    sources = [
        source_key(m.topic, m.partition, m.offset).encode()
        for m in (messages[positions[i]] for i in kept)
    ]
    reasons: TopReasons | None = None
    if explain is not None and kept:
        rows = None if len(kept) == len(positions) else np.asarray(kept, dtype=np.intp)
        reasons = reasons_of(explain, features if rows is None else features.take(rows))
    predicted = Predicted(
        customer_ids=ids,
        event_ts=times,
        sources=sources,
        probabilities=probabilities,
        labels_yes=labels_yes,
        processed_ts=processed_iso,
        model_version=model_version,
        inference_ms=scores.inference_ms,
        reasons=reasons,
    )
    predictions = encode_predictions(
        ids,
        times,
        probabilities,
        labels_yes,
        processed_ts=processed_iso,
        model_version=model_version,
        inference_ms=scores.inference_ms,
        sources=sources,
        reasons=reasons,
    )
    return BatchResult(
        predictions=predictions,
        dead_letters=rejects.letters,
        scored_columns=functools.partial(
            _scored_columns,
            kept,
            [messages[positions[i]] for i in kept],
            stamps,
            moments,
            features,
            predicted,
            processed,
        ),
        dead_letter_types=rejects.types,
        dead_letter_codes=rejects.codes,
        inference_ms=scores.inference_ms,
        predicted=predicted,
    )


def _scored_columns(
    kept: list[int],
    sources: list[RawMessage],
    stamps: list[str],
    moments: list[datetime | None],
    features: FeatureBatch,
    predicted: Predicted,
    processed: datetime,
) -> ScoredColumns:
    """The analytics rows of the predictions, one array per column of SCORED_COLUMNS."""
    rows = np.asarray(kept, dtype=np.intp)
    kept_features = features.take(rows)
    latencies = []
    processed_utc = processed.astimezone(UTC).replace(tzinfo=None)  # moments are naive UTC
    for i in kept:
        moment = moments[i]
        if moment is None:
            latencies.append(_e2e_ms(stamps[i], processed))
        else:
            latencies.append((processed_utc - moment).total_seconds() * 1000)
    n = len(kept)
    columns: ScoredColumns = {
        "customerID": np.array(predicted.customer_ids, dtype=object),
        "Contract": kept_features.levels("Contract"),
        "InternetService": kept_features.levels("InternetService"),
        "PaymentMethod": kept_features.levels("PaymentMethod"),
        "tenure": kept_features.tenure,
        "MonthlyCharges": kept_features.monthly_charges,
        "churn_probability": np.asarray(predicted.probabilities, dtype=np.float64),
        "prediction": np.where(predicted.labels_yes, "Yes", "No").astype(object),
        "inference_latency_ms": np.full(n, predicted.inference_ms),
        "e2e_latency_ms": np.asarray(latencies, dtype=np.float64),
        "source_topic": np.array([m.topic for m in sources], dtype=object),
        "source_partition": np.fromiter((m.partition for m in sources), np.int64, n),
        "source_offset": np.fromiter((m.offset for m in sources), np.int64, n),
    }
    if predicted.reasons is not None:
        columns[REASONS_COLUMN] = reason_features(predicted.reasons)
    return columns


def _format_utc(moment: datetime) -> str:
    """:func:`churnstream.schemas.format_ts`, without strftime for an aware UTC time of a
    four-digit year (the clock's; strftime is a measurable part of scoring one row)."""
    if moment.tzinfo is not UTC or moment.year < 1000:
        return format_ts(moment)
    return _UTC_FORMAT % (
        moment.year, moment.month, moment.day,
        moment.hour, moment.minute, moment.second, moment.microsecond,
    )  # fmt: skip


_UTC_FORMAT = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"


def _all_true(flags: np.ndarray) -> bool:
    """``flags.all()``; in Python for a few rows, where numpy's call costs more."""
    if len(flags) <= SMALL_BATCH_ROWS:
        return all(flags.tolist())
    return bool(flags.all())


def _e2e_ms(event_ts: str, processed: datetime) -> float:
    try:
        return (processed - parse_ts(event_ts)).total_seconds() * 1000
    except ValueError:
        return math.nan
