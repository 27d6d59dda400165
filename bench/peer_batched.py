"""The plain batched peer: what a competent engineer writes in an afternoon.

confluent-kafka consumer, ``consume(1000)``, ``json.loads`` per value, one pandas DataFrame
and ONE scikit-learn ``predict_proba`` per batch, ``json.dumps`` per prediction, produce,
flush, commit. No validation, no dead letters, no headers, no compiled model: the pipeline
churnstream's model loader returns, called as scikit-learn intends.

The peers bench runs it as its own process (``python -m bench.peer_batched --help``), so its
CPU time and memory are measured like the scorer's. It stops after ``--idle-stop-s`` without
a message, as `churnstream consume --mode batch` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from confluent_kafka import Consumer, Producer

from churnstream.model.scorer import Scorer
from churnstream.schemas import FEATURE_COLUMNS, format_ts

logger = logging.getLogger("bench")

BATCH_RECORDS = 1_000
POLL_TIMEOUT_S = 1.0
IDLE_STOP_S = 10.0


def run(
    bootstrap: str, input_topic: str, output_topic: str, group: str, models_dir: Path,
    *, idle_stop_s: float = IDLE_STOP_S,
) -> int:  # fmt: skip
    """Score ``input_topic`` into ``output_topic`` until idle; the number of messages scored."""
    scorer = Scorer.load(models_dir)
    pipeline, threshold, version = scorer.pipeline, scorer.threshold, scorer.version
    columns = list(FEATURE_COLUMNS)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    consumer.subscribe([input_topic])
    scored = 0
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < idle_stop_s:
            messages = [m for m in consumer.consume(BATCH_RECORDS, POLL_TIMEOUT_S) if not m.error()]
            if not messages:
                continue
            idle_since = time.monotonic()
            records = [json.loads(m.value() or b"null") for m in messages]
            started = time.perf_counter()
            frame = pd.DataFrame(records)
            # The 11 customers not billed yet have a blank TotalCharges: 0.0, as in training.
            total = pd.to_numeric(frame["TotalCharges"], errors="coerce")
            frame["TotalCharges"] = total.fillna(0.0)
            probabilities = pipeline.predict_proba(frame[columns])[:, 1].tolist()
            took_ms = (time.perf_counter() - started) * 1000
            processed_ts = format_ts(datetime.now(UTC))
            for msg, record, probability in zip(messages, records, probabilities, strict=True):
                body = {
                    "customerID": record["customerID"],
                    "churn_probability": probability,
                    "prediction": "Yes" if probability >= threshold else "No",
                    "event_ts": record["event_ts"],
                    "processed_ts": processed_ts,
                    "model_version": version,
                    "inference_latency_ms": took_ms,
                }
                producer.produce(output_topic, key=msg.key(), value=json.dumps(body).encode())
                producer.poll(0)
            producer.flush()
            consumer.commit(asynchronous=False)
            scored += len(messages)
    finally:
        consumer.close()
    return scored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peer_batched", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--broker", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--model-path", type=Path, default=Path("models"))
    parser.add_argument("--idle-stop-s", type=float, default=IDLE_STOP_S)
    args = parser.parse_args(argv)
    scored = run(
        args.broker, args.input_topic, args.output_topic, args.group, args.model_path,
        idle_stop_s=args.idle_stop_s,
    )  # fmt: skip
    print(f"scored {scored}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
