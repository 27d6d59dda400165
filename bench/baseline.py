"""The system we replace, re-created for comparison (never part of the product).

Per message: poll one, decode with the json module, build a one-row DataFrame, call
``predict_proba``, encode the prediction, produce it and flush before the next message.
Same broker, same model, same events as the fast path, in the same bench run.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from confluent_kafka import Consumer, Producer

from bench import env
from churnstream.model.scorer import Scorer
from churnstream.schemas import FEATURE_COLUMNS, format_ts

logger = logging.getLogger("bench")

POLL_TIMEOUT_S = 1.0
IDLE_STOP_S = 10.0


@dataclass
class BaselineResult:
    events: int
    scored: int
    msgs_per_s: float
    per_message_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    bootstrap: str, rows: list[dict[str, Any]], scorer: Scorer, *, events: int
) -> BaselineResult:
    raw, predictions, _ = env.create_topics(bootstrap, 1)
    env.fill(bootstrap, raw, events, rows)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-baseline-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    consumer.subscribe([raw])
    pipeline = scorer.pipeline
    scored = 0
    first = last = None
    idle_since = time.monotonic()
    while scored < events and time.monotonic() - idle_since < IDLE_STOP_S:
        msg = consumer.poll(POLL_TIMEOUT_S)
        if msg is None or msg.error():
            continue
        idle_since = time.monotonic()
        if first is None:
            first = time.perf_counter()
        record = json.loads(msg.value() or b"null")
        frame = pd.DataFrame([record])
        total = frame["TotalCharges"].iloc[0]
        frame["TotalCharges"] = float(total) if str(total).strip() else 0.0
        probability = float(pipeline.predict_proba(frame[list(FEATURE_COLUMNS)])[0, 1])
        body = {
            "customerID": record["customerID"],
            "churn_probability": probability,
            "prediction": "Yes" if probability >= scorer.threshold else "No",
            "event_ts": record["event_ts"],
            "processed_ts": format_ts(datetime.now(UTC)),
            "model_version": scorer.version,
        }
        producer.produce(predictions, key=msg.key(), value=json.dumps(body).encode())
        producer.flush()
        scored += 1
        last = time.perf_counter()
    consumer.close()
    took = (last - first) if first is not None and last is not None and last > first else 0.0
    rate = (scored - 1) / took if took > 0 else 0.0
    logger.info("baseline: %d scored at %.1f msgs/s", scored, rate)
    return BaselineResult(
        events=events, scored=scored, msgs_per_s=rate, per_message_ms=1000 / rate if rate else 0.0
    )
