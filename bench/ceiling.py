"""The ceiling for any Python scorer here: the same loop with no decoding and no model.

A consumer and an idempotent producer with the product's settings; each micro-batch's
messages are produced unchanged (keys, values, headers) with a delivery callback, flushed,
then committed, exactly as the scorer's at-least-once loop does. Whatever this reaches is an
upper bound for `churnstream consume` in one process on this machine.

The peers bench runs the same loop as its own process (``python -m bench.ceiling --help``),
so that its CPU time and memory are measured like the scorer's; that entry point imports
neither the bench's environment nor the model.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from churnstream.settings import Settings

logger = logging.getLogger("bench")

IDLE_STOP_S = 5.0


@dataclass
class CeilingResult:
    events: int
    copied: int
    msgs_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    bootstrap: str, rows: list[dict[str, Any]], *, events: int, partitions: int
) -> CeilingResult:
    from bench import env  # here, not at the top: the copy process must not import it

    raw, out, _ = env.create_topics(bootstrap, partitions)
    env.fill(bootstrap, raw, events, rows)
    copied, first, last = copy(
        bootstrap, raw, out, f"bench-{uuid.uuid4().hex[:8]}", events=events, idle_stop_s=IDLE_STOP_S
    )
    rate = copied / (last - first) if last > first else 0.0
    logger.info("ceiling (consume, produce, flush, commit; no scoring): %.0f msgs/s", rate)
    return CeilingResult(events=events, copied=copied, msgs_per_s=rate)


def copy(
    bootstrap: str, raw: str, out: str, group: str, *, events: int | None, idle_stop_s: float
) -> tuple[int, float, float]:
    """Copy ``raw`` to ``out`` until ``events`` are copied (if given) or nothing came for
    ``idle_stop_s``; (messages copied, perf_counter at the first and the last batch)."""
    settings = Settings()
    consumer_conf = settings.kafka.consumer_config(settings.consumer, group)
    # The scorer's producer, whose loop this is: its own linger (producer.scorer_linger_ms).
    producer_conf = settings.kafka.producer_config(settings.producer.for_scorer())
    for conf in (consumer_conf, producer_conf):
        conf["bootstrap.servers"] = bootstrap
        conf.pop("logger", None)
    consumer = Consumer(consumer_conf)
    producer = Producer(producer_conf)
    delivered = [0]

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            delivered[0] += 1

    consumer.subscribe([raw])
    copied = 0
    first = last = 0.0
    idle_since = time.monotonic()
    batch_records = settings.consumer.max_batch_records
    while (events is None or copied < events) and time.monotonic() - idle_since < idle_stop_s:
        batch = [m for m in consumer.consume(batch_records, 0.1) if m.error() is None]
        if not batch:
            continue
        idle_since = time.monotonic()
        if not first:
            first = time.perf_counter()
        highest: dict[int, int] = {}
        for msg in batch:
            producer.produce(
                out, msg.value(), msg.key(), headers=msg.headers(), on_delivery=on_delivery
            )
            producer.poll(0)
            highest[msg.partition() or 0] = msg.offset() or 0
        producer.flush()
        consumer.commit(
            offsets=[TopicPartition(raw, p, o + 1) for p, o in highest.items()], asynchronous=False
        )
        copied += len(batch)
        last = time.perf_counter()
    consumer.close()
    return copied, first, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ceiling", description="Copy a topic with the scorer's loop."
    )
    parser.add_argument("--broker", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--idle-stop-s", type=float, default=IDLE_STOP_S)
    args = parser.parse_args(argv)
    copied, _, _ = copy(
        args.broker, args.input_topic, args.output_topic, args.group,
        events=None, idle_stop_s=args.idle_stop_s,
    )  # fmt: skip
    print(f"copied {copied}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
