"""``churnstream consume --mode batch --engine spark``: a topic's backlog scored on Spark.

Spark's Kafka source reads the raw topic with trigger ``availableNow`` (everything there at
the start, then stop). Each micro-batch goes through the scoring core
(:func:`churnstream.scoring.batch.score_batch`) in ``mapInArrow`` on the executors, with the
loaded model broadcast once; the predictions and dead letters it returns, bodies and headers
as the core encoded them, are written to their topics by Spark's Kafka sink. The window
statistics are folded on the driver from the scored rows, as the poll loop does, and give
the same window summary.

Spark's Kafka sink is at-least-once: a micro-batch that fails or is cut short after part of
its output was written is written again when the query resumes from its checkpoint
(``spark.checkpoint_location``). Every prediction carries the ``churnstream.source``
header (``topic:partition:offset`` of its input), so readers drop the repeats.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnstream.exceptions import SparkError
from churnstream.scoring.batch import score_batch
from churnstream.scoring.messages import SCORED_COLUMNS, BatchResult, RawMessage, RunCounts
from churnstream.settings import Settings
from churnstream.spark.kafka_security import spark_kafka_options
from churnstream.windows.drift import drift_reference
from churnstream.windows.stats import WindowStats

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from churnstream.model.scorer import Scorer

logger = logging.getLogger(__name__)

#: What a row of the scored frame is: a message to produce, or a count for the driver.
KIND_PREDICTION = "prediction"
KIND_DEAD_LETTER = "dead_letter"
KIND_CONSUMED = "consumed"
KIND_LETTER_TYPE = "letter_type"
KIND_LETTER_CODE = "letter_code"
_STRING_COLUMNS = frozenset(
    {"customerID", "Contract", "InternetService", "PaymentMethod", "prediction", "source_topic"}
)
_LONG_COLUMNS = frozenset({"tenure", "source_partition", "source_offset"})
QUERY_NAME = "churnstream-consume"


def _spark_type(column: str) -> str:
    if column in _STRING_COLUMNS:
        return "string"
    return "bigint" if column in _LONG_COLUMNS else "double"


#: The scored frame: Kafka sink columns, the row's kind, the analytics columns, a count.
SCORED_SCHEMA = ", ".join(
    [
        "topic string",
        "key binary",
        "value binary",
        "headers array<struct<key: string, value: binary>>",
        "kind string",
        *(f"{name} {_spark_type(name)}" for name in SCORED_COLUMNS),
        "name string",
        "n bigint",
    ]
)


def _arrow_schema() -> pa.Schema:
    import pyarrow as pa

    header = pa.struct([("key", pa.string()), ("value", pa.binary())])
    arrow = {"string": pa.string(), "bigint": pa.int64(), "double": pa.float64()}
    return pa.schema(
        [
            ("topic", pa.string()),
            ("key", pa.binary()),
            ("value", pa.binary()),
            ("headers", pa.list_(header)),
            ("kind", pa.string()),
            *((name, arrow[_spark_type(name)]) for name in SCORED_COLUMNS),
            ("name", pa.string()),
            ("n", pa.int64()),
        ]
    )


def result_rows(
    result: BatchResult, consumed: int, predictions_topic: str, deadletter_topic: str
) -> pa.RecordBatch:
    """One scored batch as Arrow rows of :data:`SCORED_SCHEMA`."""
    import pyarrow as pa

    rows: dict[str, list[Any]] = {name: [] for name in _arrow_schema().names}
    kinds = [
        (KIND_PREDICTION, predictions_topic, result.predictions),
        (KIND_DEAD_LETTER, deadletter_topic, result.dead_letters),
    ]
    for kind, topic, messages in kinds:
        for message in messages:
            rows["topic"].append(topic)
            rows["key"].append(message.key)
            rows["value"].append(message.value)
            rows["headers"].append([{"key": k, "value": v} for k, v in message.headers])
            rows["kind"].append(kind)
    scored = result.scored if result.predictions else {}
    for name in SCORED_COLUMNS:
        values = scored[name].tolist() if scored else []
        rows[name] = values + [None] * (len(rows["kind"]) - len(values))
    counts = [
        (KIND_CONSUMED, "", consumed),
        *((KIND_LETTER_TYPE, name, n) for name, n in result.dead_letter_types.items()),
        *((KIND_LETTER_CODE, name, n) for name, n in result.dead_letter_codes.items()),
    ]
    produced = len(rows["kind"])
    for kind, name, n in counts:
        for column in rows:
            if column not in ("kind", "name", "n"):
                rows[column].append(None)
        rows["kind"].append(kind)
        rows["name"].append(name)
        rows["n"].append(n)
    rows["name"] = [None] * produced + rows["name"]
    rows["n"] = [None] * produced + rows["n"]
    return pa.RecordBatch.from_pydict(rows, schema=_arrow_schema())


def score_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    scorer: Any,
    consumer_group: str,
    predictions_topic: str,
    deadletter_topic: str,
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow``'s function: Kafka source rows in, scored rows out (on an executor)."""
    model: Scorer = scorer.value
    for batch in batches:
        if batch.num_rows == 0:
            continue
        columns = [batch.column(c).to_pylist() for c in ("topic", "partition", "offset")]
        keys, values = batch.column("key").to_pylist(), batch.column("value").to_pylist()
        messages = [
            RawMessage(topic, partition, offset, key, value)
            for topic, partition, offset, key, value in zip(*columns, keys, values, strict=True)
        ]
        result = score_batch(
            messages,
            model.predict_features,
            threshold=model.threshold,
            model_version=model.version,
            consumer_group=consumer_group,
        )
        yield result_rows(result, len(messages), predictions_topic, deadletter_topic)


@dataclass
class SparkBatchSummary(RunCounts):
    """What one run did: counts over its micro-batches, and the window summary."""

    window: dict[str, Any] | None = None
    batch_ids: list[int] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"batch (spark): {self.counts()} over {self.batches} micro-batch(es), "
            f"model {self.model_version}"
        )


def kafka_options(settings: Settings) -> dict[str, str]:
    """The Kafka client options of Spark's source and sink (``kafka.``-prefixed).

    Security included: see :mod:`churnstream.spark.kafka_security`, which raises ConfigError
    (one line naming the setting) for what Spark's Java client cannot be given.
    """
    return spark_kafka_options(settings.kafka)


def sink_options(settings: Settings) -> dict[str, str]:
    """The sink's producer: acks from all replicas, the topics' compression."""
    compression = settings.producer.compression
    return {
        **kafka_options(settings),
        "kafka.acks": "all",
        "kafka.compression.type": "none" if compression == "none" else compression,
    }


def run_spark_batch(
    spark: SparkSession,
    settings: Settings,
    scorer: Scorer,
    *,
    checkpoint: Path,
    max_offsets_per_trigger: int | None = None,
    on_window: Callable[[dict[str, Any]], None] | None = None,
) -> SparkBatchSummary:
    """Score everything in ``topics.raw`` not yet in ``checkpoint``'s offsets, then stop."""
    topics = settings.topics
    summary = SparkBatchSummary(model_version=scorer.version)
    stats = WindowStats()
    started_at = datetime.now(UTC)
    source = (
        spark.readStream.format("kafka")
        .options(**kafka_options(settings))
        .option("subscribe", topics.raw.name)
        .option("startingOffsets", "earliest")
    )
    if max_offsets_per_trigger is not None:
        source = source.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    shared = spark.sparkContext.broadcast(scorer)
    score = functools.partial(
        score_partition,
        scorer=shared,
        consumer_group=settings.consumer.group_id,
        predictions_topic=topics.predictions.name,
        deadletter_topic=topics.deadletter.name,
    )
    sink = sink_options(settings)

    def process(frame: DataFrame, batch_id: int) -> None:
        _process_batch(frame, batch_id, score, sink, stats, summary)

    started = time.monotonic()
    query = (
        source.load()
        .select("topic", "partition", "offset", "key", "value")
        .writeStream.queryName(QUERY_NAME)
        .foreachBatch(process)
        .option("checkpointLocation", str(checkpoint.resolve()))
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
    except Exception as exc:  # a StreamingQueryException: the JVM's stack trace is noise
        raise SparkError(f"the Spark query failed ({_first_line(exc)})") from exc
    finally:
        summary.duration_s = time.monotonic() - started
        shared.unpersist()
    summary.window = stats.summary(
        started_at,
        datetime.now(UTC),
        top_k=settings.consumer.top_k,
        model_version=scorer.version,
        mode="batch",
        drift=drift_reference(scorer.metadata, settings.observability),
    )
    if on_window is not None:
        on_window(summary.window)
    return summary


def _process_batch(
    frame: DataFrame,
    batch_id: int,
    score: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
    sink: Mapping[str, str],
    stats: WindowStats,
    summary: SparkBatchSummary,
) -> None:
    """One micro-batch: score once (cached), write the messages, fold the analytics."""
    from pyspark import StorageLevel

    scored = frame.mapInArrow(score, SCORED_SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        messages = scored.where(f"kind IN ('{KIND_PREDICTION}', '{KIND_DEAD_LETTER}')")
        messages.select("topic", "key", "value", "headers").write.format("kafka").options(
            **sink
        ).save()
        counts = scored.where(f"kind NOT IN ('{KIND_PREDICTION}', '{KIND_DEAD_LETTER}')").select(
            "kind", "name", "n"
        )
        rows = counts.collect()
        analytics = scored.where(f"kind = '{KIND_PREDICTION}'").select(*SCORED_COLUMNS).toPandas()
    finally:
        scored.unpersist()
    consumed = sum(int(r["n"]) for r in rows if r["kind"] == KIND_CONSUMED)
    types: dict[str, int] = {}
    codes: dict[str, int] = {}
    for row in rows:
        target = {KIND_LETTER_TYPE: types, KIND_LETTER_CODE: codes}.get(row["kind"])
        if target is not None:
            target[row["name"]] = target.get(row["name"], 0) + int(row["n"])
    stats.add_consumed(consumed)
    stats.add_batch_size(consumed)
    stats.add_dead_letters(types)
    stats.add_dead_letter_codes(codes)
    if len(analytics):
        stats.add_scored({name: analytics[name] for name in analytics.columns})
    summary.consumed += consumed
    summary.scored += len(analytics)
    summary.dead_lettered += sum(types.values())
    summary.batches += 1
    summary.batch_ids.append(batch_id)
    logger.info(
        "micro-batch %d: %d consumed, %d predictions, %d dead letters",
        batch_id,
        consumed,
        len(analytics),
        sum(types.values()),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:400]
