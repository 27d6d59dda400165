"""The scorer's second Kafka client: librdkafka driven from Rust (``churnstream_native_io``).

With ``consumer.client = "native"`` the scorer's consumer and producer are this module's
:class:`NativeConsumer` and :class:`NativeProducer`. Each wraps a client of the extension
built from ``native_io/`` (the ``rdkafka`` crate over its own static librdkafka), so a batch
crosses into Python as one list of the scoring core's raw messages, built in Rust
(:meth:`NativeConsumer.take`), and a batch's outputs go out in one call
(:meth:`NativeProducer.produce_all`), with no Python object or callback per delivery: only a
failed delivery comes back to Python. The poll loop, the publisher, the pipeline and the
recovery are the same code for both clients.

They are confluent-kafka's ``Consumer`` and ``Producer`` by type, so that code takes either,
but the base class is never initialised: a method this module does not provide raises
``RuntimeError`` ("Consumer closed"), never talks to a broker behind the scorer's back.
Errors come out as confluent-kafka's ``KafkaException(KafkaError)`` with librdkafka's own
error codes (both clients are librdkafka), so the recovery judges them alike.

What it does not do (the settings refuse it in one line, see :func:`unsupported`):
exactly-once (transactions) and TLS or SASL (the extension is built without OpenSSL and
Cyrus SASL). librdkafka's own log lines are not forwarded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from churnstream.exceptions import BrokerUnavailableError
from churnstream.logging import ERROR_CODE, PARTITION, TOPIC

logger = logging.getLogger(__name__)

T = TypeVar("T")

try:
    import churnstream_native_io as _io

    NATIVE_IO_ERROR: str | None = None
except ImportError as exc:  # not built on this machine: the confluent-kafka client serves
    _io = None
    NATIVE_IO_ERROR = str(exc)

#: A seek waits for its answer as long as it takes, as confluent-kafka's does: the recovery
#: bounds the call with its own budget and, past it, ends the scorer with the batch left
#: uncommitted (``seek_within_budget``). A seek that gave up by itself would be taken for a
#: revoked partition and the batch skipped. (librdkafka's limit is in int milliseconds.)
SEEK_TIMEOUT_S = 1e6
#: Configuration entries that are Python objects for confluent-kafka, not librdkafka
#: properties: the extension takes the ones it needs as arguments.
_PYTHON_ENTRIES = frozenset({"logger", "error_cb", "stats_cb", "throttle_cb", "on_delivery"})
#: librdkafka's security protocols this client speaks.
PLAINTEXT = "plaintext"


def available() -> bool:
    """Whether the extension was built and imports."""
    return _io is not None


def unsupported(*, exactly_once: bool, security_protocol: str) -> str | None:
    """Why the native client cannot serve a scorer with these settings, or None."""
    if _io is None:
        return (
            f"consumer.client=native, but the native Kafka client is not built "
            f"({NATIVE_IO_ERROR}); run make setup, or use consumer.client=confluent"
        )
    if exactly_once:
        return "consumer.client=native does not do exactly-once yet; use consumer.client=confluent"
    if security_protocol.lower() != PLAINTEXT:
        return (
            f"consumer.client=native speaks plaintext only, not {security_protocol}; "
            "use consumer.client=confluent"
        )
    return None


def _properties(config: dict[str, Any]) -> dict[str, str]:
    """librdkafka's properties as text, as confluent-kafka renders them."""
    text: dict[str, str] = {}
    for key, value in config.items():
        if key in _PYTHON_ENTRIES or value is None:
            continue
        text[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text


def _raise(exc: BaseException) -> NoReturn:
    """The extension's KafkaError as confluent-kafka's ``KafkaException(KafkaError)``."""
    code, _name, text, fatal, retriable = exc.args
    raise KafkaException(KafkaError(code, text, fatal=fatal, retriable=retriable)) from None


def _error_cb(config: dict[str, Any]) -> Callable[[int, str, str, bool], None] | None:
    callback = config.get("error_cb")
    if callback is None:
        return None

    def forward(code: int, _name: str, text: str, fatal: bool) -> None:
        callback(KafkaError(code, text, fatal=fatal))

    return forward


class NativeConsumer(Consumer):
    """A consumer group member on the native client, for the scorer's poll loop."""

    def __init__(self, config: dict[str, Any]) -> None:  # noqa: D107 - the base stays uninitialised
        if _io is None:
            raise BrokerUnavailableError(f"the native Kafka client is not built: {NATIVE_IO_ERROR}")
        self._client = _io.Consumer(_properties(config), _error_cb(config))

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[[Consumer, list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[Consumer, list[TopicPartition]], None] | None = None,
        on_lost: Callable[[Consumer, list[TopicPartition]], None] | None = None,
    ) -> None:
        if on_revoke is not None or on_lost is not None:
            raise ValueError("the native consumer reports assignments only")
        assigned = None
        if on_assign is not None:
            callback = on_assign

            def assigned(partitions: list[tuple[str, int]]) -> None:
                callback(self, [TopicPartition(t, p) for t, p in partitions])

        self._call(self._client.subscribe, topics, assigned)

    def take(
        self, max_records: int, wait_s: float, make: Callable[[str, int, int, Any, Any, Any], T]
    ) -> list[T]:
        """Up to ``max_records`` messages, each as ``make(topic, partition, offset, key,
        value, headers)`` (a RawMessage): at most ``wait_s`` of waiting for the first, then
        only those already queued (as :func:`churnstream.streaming.batches.next_batch`).

        Raises:
            BrokerUnavailableError: the consumer reported a fatal error.
        """
        try:
            messages, errors = self._client.take(max_records, wait_s, make)
        except _io.KafkaError as exc:
            raise BrokerUnavailableError(f"fatal consumer error: {exc.args[2]}") from None
        for code, name, text, _fatal, topic, partition in errors:
            logger.warning(
                "consumer error: %s",
                text,
                extra={TOPIC: topic, PARTITION: partition, ERROR_CODE: name or code},
            )
        return messages  # type: ignore[no-any-return]

    def commit(  # type: ignore[override]
        self, *, offsets: Sequence[TopicPartition], asynchronous: bool = False
    ) -> None:
        if asynchronous:
            raise ValueError("the native consumer commits synchronously only")
        self._call(self._client.commit, [(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def seek(self, partition: TopicPartition) -> None:
        tp = partition
        self._call(self._client.seek, tp.topic, tp.partition, tp.offset, SEEK_TIMEOUT_S)

    def committed(
        self, partitions: list[TopicPartition], timeout: float = -1
    ) -> list[TopicPartition]:
        wanted = [(tp.topic, tp.partition) for tp in partitions]
        found = self._call(self._client.committed, wanted, _timeout(timeout))
        return [TopicPartition(t, p, o) for t, p, o in found]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        wanted = [(tp.topic, tp.partition) for tp in partitions]
        return [TopicPartition(t, p, o) for t, p, o in self._call(self._client.position, wanted)]

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self._call(self._client.assignment)]

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._call(self._client.assign, [(tp.topic, tp.partition, tp.offset) for tp in partitions])

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        tp = partition
        low, high = self._call(
            self._client.get_watermark_offsets, tp.topic, tp.partition, _timeout(timeout), cached
        )
        return int(low), int(high)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        """Only whether the broker answers: the end offsets of ``topic``'s partition 0."""
        if topic is None:
            raise ValueError("the native consumer asks about one topic at a time")
        return self._call(self._client.get_watermark_offsets, topic, 0, _timeout(timeout), False)

    def close(self) -> None:
        self._call(self._client.close)

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except _io.KafkaError as exc:
            _raise(exc)


class NativeProducer(Producer):
    """An idempotent producer on the native client, for :class:`SafeProducer`.

    The configuration's ``on_delivery`` is called for failed deliveries only, with
    confluent-kafka's ``(KafkaError, message)`` arguments (the message answers ``topic()``,
    ``partition()`` and ``offset()``); successes are counted in Rust (:attr:`delivered`).
    """

    def __init__(self, config: dict[str, Any]) -> None:  # noqa: D107 - the base stays uninitialised
        if _io is None:
            raise BrokerUnavailableError(f"the native Kafka client is not built: {NATIVE_IO_ERROR}")
        on_delivery = config.get("on_delivery")
        failed = None
        if on_delivery is not None:
            callback = on_delivery

            def failed(
                code: int,
                _name: str,
                text: str,
                fatal: bool,
                topic: str,
                partition: int,
                offset: int | None,
            ) -> None:
                callback(
                    KafkaError(code, text, fatal=fatal), _Undelivered(topic, partition, offset)
                )

        self._client = _io.Producer(_properties(config), failed, _error_cb(config))

    @property
    def delivered(self) -> int:
        return int(self._client.delivered)

    def produce(  # type: ignore[override]
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: object = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> None:
        """One message; ``on_delivery`` is ignored: the configuration's serves them all."""
        self._call(self._client.produce, topic, value, key, list(headers) if headers else None)

    def produce_all(self, topic: str, messages: Iterable[tuple[bytes | None, bytes, Any]]) -> None:
        """Every ``(key, value, headers)`` in order, waiting for room when the queue is full."""
        batch = messages if isinstance(messages, list) else list(messages)
        self._call(self._client.produce_all, topic, batch)

    def poll(self, timeout: float = -1) -> int:
        return int(self._call(self._client.poll, _timeout(timeout)))

    def flush(self, timeout: float = -1) -> int:
        return int(self._call(self._client.flush, _timeout(timeout)))

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self._call(self._client.purge, in_queue, in_flight)

    def __len__(self) -> int:
        return len(self._client)

    def __bool__(self) -> bool:
        return True

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except _io.KafkaError as exc:
            _raise(exc)


class _Undelivered:
    """Where a failed delivery was going, as confluent-kafka's Message answers it."""

    __slots__ = ("_offset", "_partition", "_topic")

    def __init__(self, topic: str, partition: int, offset: int | None) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int | None:
        return self._offset


def _timeout(timeout: float) -> float:
    """confluent-kafka's "-1: no limit" as the extension's seconds."""
    return 1e9 if timeout < 0 else timeout
