"""POST /predict's answer: the records scored by the scoring core, in ONE model call.

The bodies are the core's (:func:`churnstream.scoring.encode.encode_predictions`), the same
bytes a prediction has on Kafka followed by a last field ``reasons`` (what Kafka carries in
the ``churnstream.reasons`` header); a list answer is those bodies in a JSON array.
"""

from __future__ import annotations

import logging

import numpy as np

from churnstream.api.decode import decode_records
from churnstream.api.holder import LoadedModel
from churnstream.api.metrics import ApiMetrics
from churnstream.exceptions import ModelError
from churnstream.schemas import CustomerEvent, utc_now_iso
from churnstream.scoring.decode import features_of_events
from churnstream.scoring.encode import encode_predictions
from churnstream.scoring.infer import score_features
from churnstream.scoring.reasons import reasons_of

logger = logging.getLogger(__name__)


def score_events(
    events: list[CustomerEvent], loaded: LoadedModel, metrics: ApiMetrics
) -> list[bytes]:
    """Prediction bodies (the contract's fields, in its order, then ``reasons`` when the model
    can give them) from ONE model call."""
    scorer = loaded.scorer
    if not events:
        return []
    features = features_of_events(events)
    scores = score_features(features, scorer.predict_features, threshold=scorer.threshold)
    if not scores.finite.all():
        unscored = int(np.count_nonzero(~scores.finite))
        raise ModelError(f"the model could not score {unscored} of {len(events)} record(s)")
    metrics.inference.observe(scores.inference_ms / 1000)
    metrics.batch_records.observe(len(events))
    positives = int(np.count_nonzero(scores.labels_yes))
    if positives:
        metrics.predictions.labels("Yes").inc(positives)
    if len(events) - positives:
        metrics.predictions.labels("No").inc(len(events) - positives)
    predictions = encode_predictions(
        [event.customerID for event in events],
        [event.event_ts for event in events],
        scores.probabilities,
        scores.labels_yes,
        processed_ts=utc_now_iso(),
        model_version=scorer.version,
        inference_ms=scores.inference_ms,
        reasons=reasons_of(scorer.explain_features, features) if scorer.explains else None,
    )
    return [prediction.value for prediction in predictions]


def predict_body(body: bytes, loaded: LoadedModel, metrics: ApiMetrics, max_records: int) -> bytes:
    """The answer to POST /predict: one body for one record, a JSON array for a list."""
    events, single = decode_records(body, max_records)
    bodies = score_events(events, loaded, metrics)
    return bodies[0] if single else b"[" + b",".join(bodies) + b"]"
