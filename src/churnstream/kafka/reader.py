"""The one topic reader: a topic's records from the beginning (or given offsets) to its end.

:class:`TopicReader` reads with ``assign()`` under a throwaway group id and never commits,
so no consumer group is joined or left behind (see
:func:`churnstream.kafka.clients.reader_consumer`). It is used by ``topics dump``, the
dead-letter tools, ``status`` and the producer's read-back after a crash.

**When is a topic read to its end?** Not when the high watermark says so: tansu's is wrong
(ListOffsets answers the last record batch's base offset + 1; measured here: 20,005
records in two batches reported 20,001), so :func:`churnstream.kafka.admin.end_offsets`
must not decide it. The end-of-partition events of the fetches themselves are right on
both brokers (the same read got its EOF at offset 20,005). So a partition is at its end
when its last fetch said so; ``until="end"`` stops as soon as every partition is, and
``until="idle"`` (the default) also waits ``idle_s`` without a new record, which picks up
records written while the read ran.

Every wait is bounded: a partition that cannot be fetched from within ``timeout_s`` raises
BrokerUnavailableError, a refused login AuthenticationError within about a second, and
``max_duration_s`` (if given) ends a read that never falls idle, with ``complete`` False.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    Message,
    TopicPartition,
)

from churnstream.exceptions import BrokerError, BrokerUnavailableError, ChurnstreamError
from churnstream.headers import Headers, header_pairs
from churnstream.kafka import admin
from churnstream.kafka.clients import reader_consumer
from churnstream.settings import KafkaSettings

logger = logging.getLogger(__name__)

READ_IDLE_S = 2.0
#: How long a partition may go without a first fetch (a record or its end) before the
#: broker is reported unavailable.
READ_TIMEOUT_S = admin.ADMIN_TIMEOUT_S
POLL_TIMEOUT_S = 0.2
BATCH_RECORDS = 500

Until = Literal["idle", "end"]


@dataclass(eq=False)
class TopicReader:
    """Iterate over the records of ``topic``; use as a context manager.

    ``start`` maps partitions to the offset to read from; the others are read from the
    beginning. ``partitions`` (default: every partition of the topic) limits the read.
    After the iteration, ``complete`` says whether the topic was read to its end (False
    when ``max_duration_s`` ran out or the caller stopped early) and ``read`` how many
    records it yielded. Raises ChurnstreamError when the topic does not exist.
    """

    kafka: KafkaSettings
    topic: str
    _: KW_ONLY
    purpose: str
    start: Mapping[int, int] = field(default_factory=dict)
    partitions: Sequence[int] | None = None
    until: Until = "idle"
    idle_s: float = READ_IDLE_S
    timeout_s: float = READ_TIMEOUT_S
    max_duration_s: float | None = None
    isolation_level: str = "read_committed"
    complete: bool = field(default=False, init=False)
    read: int = field(default=0, init=False)
    _messages: Generator[Message, None, None] | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and close the consumer (also done when the iteration ends)."""
        messages, self._messages = self._messages, None
        if messages is not None:
            messages.close()

    def __iter__(self) -> Generator[Message, None, None]:
        self.close()
        self._messages = self._read()
        return self._messages

    def _read(self) -> Generator[Message, None, None]:
        partitions = self.partitions
        if partitions is None:
            partitions = admin.topic_partitions(self.kafka, self.topic, timeout_s=self.timeout_s)
            if partitions is None:
                raise ChurnstreamError(
                    f"topic {self.topic!r} does not exist at {self.kafka.bootstrap_servers}"
                )
        self.complete = False
        self.read = 0
        consumer, watch = reader_consumer(
            self.kafka, self.purpose, isolation_level=self.isolation_level
        )
        try:
            consumer.assign(
                [
                    TopicPartition(self.topic, p, self.start.get(p, OFFSET_BEGINNING))
                    for p in partitions
                ]
            )
            started = last_record = time.monotonic()
            unfetched = set(partitions)
            at_end: set[int] = set()
            while True:
                batch = consumer.consume(num_messages=BATCH_RECORDS, timeout=POLL_TIMEOUT_S)
                watch.raise_if_failed()
                now = time.monotonic()
                for msg in batch:
                    partition = msg.partition() or 0
                    err = msg.error()
                    if err is None:
                        unfetched.discard(partition)
                        at_end.discard(partition)
                        last_record = now
                        self.read += 1
                        yield msg
                    elif err.code() == KafkaError._PARTITION_EOF:
                        unfetched.discard(partition)
                        at_end.add(partition)
                    elif err.fatal() or not err.retriable():
                        raise BrokerError(f"reading {self.topic!r} failed: {err.str()}")
                    else:
                        logger.debug("transient error reading %s: %s", self.topic, err.str())
                if len(at_end) == len(partitions) and (
                    self.until == "end" or now - last_record >= self.idle_s
                ):
                    self.complete = True
                    return
                if unfetched and now - started > self.timeout_s:
                    raise BrokerUnavailableError(
                        f"could not fetch from {self.topic!r} partitions {sorted(unfetched)} "
                        f"within {self.timeout_s:g}s"
                    )
                if self.max_duration_s is not None and now - started >= self.max_duration_s:
                    logger.warning(
                        "stopped reading %s after %gs (%d records): not at its end yet",
                        self.topic,
                        self.max_duration_s,
                        self.read,
                    )
                    return
        finally:
            consumer.close()


def dump_topic(
    kafka: KafkaSettings,
    topic: str,
    *,
    limit: int,
    idle_s: float = READ_IDLE_S,
    timeout_s: float = READ_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """Up to ``limit`` records from the beginning of every partition of ``topic``.

    Records are ``{topic, partition, offset, timestamp, key, headers, value}`` sorted by
    partition and offset; ``value`` is parsed JSON when possible, else text.
    """
    if limit < 1:
        return []
    records: list[dict[str, Any]] = []
    with TopicReader(kafka, topic, purpose="dump", idle_s=idle_s, timeout_s=timeout_s) as reader:
        for msg in reader:
            records.append(message_record(msg))
            if len(records) >= limit:
                break
    records.sort(key=lambda r: (r["partition"], r["offset"]))
    return records


def message_record(msg: Message) -> dict[str, Any]:
    """One consumed message as JSON-able data (see :func:`dump_topic`)."""
    ts_type, ts_ms = msg.timestamp()
    headers: dict[str, Any] = {}
    for name, raw in message_headers(msg):
        value = _text(raw)
        if name in headers:  # a repeated header name becomes a list, in order
            prev = headers[name]
            headers[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            headers[name] = value
    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts_ms,
        "key": _text(msg.key()),
        "headers": headers,
        "value": decode_value(msg.value()),
    }


#: A consumed record as plain values: topic, partition, offset, key, value, headers.
RecordFields = tuple[str, int, int, bytes | None, bytes | None, Headers]


def record_fields(msg: Message) -> RecordFields:
    """A consumed record's values, in the field order of the types built from them.

    Header values are bytes, a missing one ``b""`` (:func:`~churnstream.headers.header_pairs`),
    as a dead letter carries them. The scorer's poll loop does not come here: it hands the
    client's headers over unconverted (:func:`churnstream.streaming.batches.raw_message`).
    """
    return (
        msg.topic() or "",
        msg.partition() or 0,
        msg.offset() or 0,
        msg.key(),
        msg.value(),
        header_pairs(msg.headers()),
    )


def message_headers(msg: Message) -> list[tuple[str, bytes | None]]:
    """A message's headers as (name, value) pairs, in order."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in pairs]


def decode_value(raw: bytes | None) -> Any:
    """Parsed JSON if ``raw`` is JSON, else UTF-8 text (undecodable bytes as escapes)."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _text(raw)


def _text(raw: bytes | str | None) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="backslashreplace")
