"""The shadow gate's evidence: both models on the live input events of one time window.

The window is ``[start, start + shadow_window_s)`` on the records' Kafka timestamps, where
``start`` is when the challenger was registered: the events that arrived while it was the
candidate. The records are read from the input topic with a reader that joins no group and
commits nothing (:class:`churnstream.kafka.reader.TopicReader`), so the serving scorer and
its offsets are untouched, and a window can be evaluated again with the same result.
Messages that fail the contract are counted and skipped (the scorer dead-letters them).
"""

from __future__ import annotations

import logging

import numpy as np
from confluent_kafka import TopicPartition

from churnstream.exceptions import BrokerError, InvalidEventError
from churnstream.kafka import admin
from churnstream.kafka.clients import reader_consumer
from churnstream.kafka.reader import TopicReader
from churnstream.lifecycle.gate import ShadowStats
from churnstream.model.scorer import Scorer
from churnstream.schemas import CustomerEvent
from churnstream.scoring.decode import decode_event, features_of_events
from churnstream.scoring.messages import RawMessage
from churnstream.settings import KafkaSettings

logger = logging.getLogger(__name__)

OFFSETS_TIMEOUT_S = 10.0


def window_events(
    kafka: KafkaSettings, topic: str, start_ms: int, end_ms: int
) -> tuple[list[CustomerEvent], int]:
    """The valid events of ``topic`` with a timestamp in ``[start_ms, end_ms)``, and how many
    records in that window were invalid."""
    partitions = admin.topic_partitions(kafka, topic)
    if partitions is None:
        raise BrokerError(f"topic {topic!r} does not exist at {kafka.bootstrap_servers}")
    consumer, watch = reader_consumer(kafka, "shadow-offsets")
    try:
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, start_ms) for p in partitions], timeout=OFFSETS_TIMEOUT_S
        )
        watch.raise_if_failed()
    except Exception as exc:  # KafkaException: the broker did not answer in time
        if isinstance(exc, BrokerError):
            raise
        raise BrokerError(f"cannot look up offsets of {topic!r} by time: {exc}") from exc
    finally:
        consumer.close()
    # -1: no record at or after start_ms in that partition; nothing to read there.
    start = {tp.partition: tp.offset for tp in found if tp.offset >= 0}
    events: list[CustomerEvent] = []
    invalid = 0
    if not start:
        return events, invalid
    reader = TopicReader(
        kafka, topic, purpose="shadow", start=start, partitions=sorted(start), until="end"
    )
    with reader:
        for msg in reader:
            _, ts = msg.timestamp()
            if ts < start_ms or ts >= end_ms:
                continue
            raw = RawMessage(topic, msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value())
            try:
                events.append(decode_event(raw))
            except InvalidEventError:
                invalid += 1
    return events, invalid


def compare(
    champion: Scorer, challenger: Scorer, events: list[CustomerEvent], invalid: int = 0
) -> ShadowStats:
    """Agreement and churn rates of the two models on the same events (their thresholds)."""
    if not events:
        return ShadowStats(0, 0.0, 0.0, 0.0, 0.0, invalid)
    batch = features_of_events(events)
    p_champion = np.asarray(champion.predict_features(batch), dtype=float)
    p_challenger = np.asarray(challenger.predict_features(batch), dtype=float)
    yes_champion = p_champion >= champion.threshold
    yes_challenger = p_challenger >= challenger.threshold
    return ShadowStats(
        compared=len(events),
        agreement_rate=float(np.mean(yes_champion == yes_challenger)),
        champion_churn_rate=float(np.mean(yes_champion)),
        challenger_churn_rate=float(np.mean(yes_challenger)),
        mean_abs_probability_diff=float(np.mean(np.abs(p_champion - p_challenger))),
        invalid=invalid,
    )
