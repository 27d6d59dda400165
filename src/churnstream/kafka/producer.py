"""A producer wrapper that counts every delivery and never drops a message silently.

Failed deliveries are logged as one summary line per error kind (count and first example)
when a batch ends (:meth:`SafeProducer.flush`, :meth:`SafeProducer.report_failures`) or at
most every ``FAILURE_REPORT_INTERVAL_S`` while producing, never one line per message: a
broker outage fails every queued message with the same error.

A fatal error (librdkafka's "this producer instance cannot be used any more": an idempotent
or transactional producer whose guarantees broke, e.g. after a broker crash) is raised as
:class:`~churnstream.exceptions.ProducerFatalError`; :meth:`SafeProducer.reopen` replaces the
librdkafka producer with a new one built from the same configuration.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from churnstream.exceptions import ProducerFatalError
from churnstream.kafka.clients import producer_from_config
from churnstream.kafka.native import NativeProducer
from churnstream.logging import ERROR_CODE, PARTITION, TOPIC

logger = logging.getLogger(__name__)

BUFFER_FULL_POLL_S = 0.1
FLUSH_TIMEOUT_S = 30.0
#: While producing without a flush (a rate generator), pending failures are summarised at
#: most this often.
FAILURE_REPORT_INTERVAL_S = 5.0
#: Messages purged by an abort or a shutdown: the consequence of an error logged elsewhere.
PURGED = frozenset({"_PURGE_QUEUE", "_PURGE_INFLIGHT"})

Headers = Sequence[tuple[str, bytes]]
#: A message for :meth:`SafeProducer.produce_all`: key, value, headers (an OutMessage is one).
Outgoing = tuple[bytes | None, bytes, Headers]


def is_fatal(err: KafkaError) -> bool:
    """True when the producer that raised ``err`` can no longer be used and must be replaced."""
    return bool(err.fatal()) or err.code() == KafkaError._FATAL


@dataclass
class FailureKind:
    """Failed deliveries with the same error since the last report."""

    code: str
    count: int
    #: Where the first of them was going: ``topic[partition]``, plus ``@offset`` if known.
    first: str
    topic: str
    partition: int | None


@dataclass
class DeliveryStats:
    """Counts kept by the delivery callback (librdkafka calls it from poll/flush)."""

    delivered: int = 0
    failed: int = 0
    last_error: str | None = None
    errors_by_code: dict[str, int] = field(default_factory=dict)
    #: Highest acknowledged offset per (topic, partition): where this producer's writes end.
    high_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Failures not reported yet, by error text; and when the first of them came in.
    pending: dict[str, FailureKind] = field(default_factory=dict)
    pending_since: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
                key = (msg.topic() or "", msg.partition() or 0)
                offset = msg.offset() or 0
                if offset > self.high_offsets.get(key, -1):
                    self.high_offsets[key] = offset
                return
            self.failed += 1
            text = str(err.str()) if hasattr(err, "str") else str(err)
            self.last_error = text
            name = err.name() if hasattr(err, "name") else text
            self.errors_by_code[name] = self.errors_by_code.get(name, 0) + 1
            kind = self.pending.get(text)
            if kind is not None:
                kind.count += 1
                return
            topic, partition, at = msg.topic() or "", msg.partition(), msg.offset()
            where = f"{topic}[{partition if partition is not None else '?'}]"
            if at is not None:
                where += f"@{at}"
            self.pending[text] = FailureKind(name, 1, where, topic, partition)
            if self.pending_since is None:
                self.pending_since = time.monotonic()

    def take_failures(self) -> list[tuple[str, FailureKind]]:
        """The failures not reported yet (by error text), forgetting them."""
        with self._lock:
            taken = list(self.pending.items())
            self.pending = {}
            self.pending_since = None
        return taken


class SafeProducer:
    """confluent-kafka Producer plus back-pressure handling and delivery accounting."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        on_delivery: Callable[..., None] | None = None,
        native: bool = False,
    ):
        """``config`` as the settings render it: ``KafkaSettings.producer_config()`` or
        ``transactional_producer_config()``. ``native``: on the native client
        (:class:`churnstream.kafka.native.NativeProducer`), which calls ``on_delivery`` and
        the stats' callback for failed deliveries only."""
        self.stats = DeliveryStats()
        self.native = native
        self._extra_callback = on_delivery
        # The delivery callback is set once for the producer rather than per message:
        # produce_all then passes nothing but the message.
        self._config = {**config, "on_delivery": self._callback}
        self._producer = producer_from_config(self._config, native=native)
        #: librdkafka reports failed deliveries only (``delivery.report.only.error``):
        #: ``stats.delivered`` and ``stats.high_offsets`` stay empty, and a clean flush is
        #: what says a message was acknowledged.
        self.errors_only = str(config.get("delivery.report.only.error", "false")).lower() in {
            "true",
            "1",
        }
        #: The fatal error that broke the current librdkafka producer, if one did.
        self.fatal_error: str | None = None

    def _callback(self, err: KafkaError | None, msg: Message) -> None:
        self.stats.on_delivery(err, msg)
        if self._extra_callback is not None:
            self._extra_callback(err, msg)

    def _fatal(self, exc: KafkaException) -> NoReturn:
        """Re-raise ``exc``: as ProducerFatalError (remembered) if it broke the producer."""
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and is_fatal(err):
            self.fatal_error = str(err.str())
            raise ProducerFatalError(f"producer failed fatally: {err.name()}: {err.str()}") from exc
        raise exc

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Queue one message; on a full local queue, serve callbacks and try again.

        Raises:
            ProducerFatalError: the producer is broken; :meth:`reopen` it.
        """
        try:
            while True:
                try:
                    self._producer.produce(
                        topic,
                        value=value,
                        key=key,
                        headers=list(headers) if headers else None,
                        on_delivery=self._callback,
                    )
                    break
                except BufferError:
                    self._producer.poll(BUFFER_FULL_POLL_S)
            self._producer.poll(0)
        except KafkaException as exc:
            self._fatal(exc)
        if self.stats.pending_since is not None:
            self._report_if_due()

    def produce_all(self, topic: str, messages: Iterable[Outgoing]) -> None:
        """Queue every ``(key, value, headers)`` of ``messages`` to ``topic``, then serve
        the delivery callbacks that are ready; on a full local queue, serve them and retry.

        The lean path for a batch: one call of librdkafka per message, with the producer's
        own delivery callback and the caller's header list as it is (not copied).

        Raises:
            ProducerFatalError: the producer is broken; :meth:`reopen` it.
        """
        raw = self._producer
        produce = raw.produce
        try:
            if isinstance(raw, NativeProducer):
                raw.produce_all(topic, messages)  # one call: the loop runs in Rust
                messages = ()
            for key, value, headers in messages:
                try:
                    # The stubs' list type is invariant; a list of (str, bytes) is what
                    # librdkafka takes. A cast per message would cost a call.
                    produce(topic, value, key, headers=headers or None)  # type: ignore[arg-type]
                except BufferError:
                    self._produce_when_room(topic, value, key, headers)
            raw.poll(0)
        except KafkaException as exc:
            self._fatal(exc)
        if self.stats.pending_since is not None:
            self._report_if_due()

    def _produce_when_room(
        self, topic: str, value: bytes, key: bytes | None, headers: Headers | None
    ) -> None:
        while True:
            self._producer.poll(BUFFER_FULL_POLL_S)
            try:
                self._producer.produce(topic, value, key, headers=headers or None)  # type: ignore[arg-type]
                return
            except BufferError:
                continue

    def poll(self, timeout_s: float = 0.0) -> int:
        try:
            served = int(self._producer.poll(timeout_s))
        except KafkaException as exc:
            self._fatal(exc)
        if self.stats.pending_since is not None:
            self._report_if_due()
        return served

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> int:
        """Wait for outstanding deliveries; returns how many are still not acknowledged.

        Failed deliveries are then logged, one line per error kind.
        """
        deadline = time.monotonic() + timeout_s
        try:
            remaining = int(self._producer.flush(timeout_s))
            while remaining and time.monotonic() < deadline:
                remaining = int(self._producer.flush(max(0.0, deadline - time.monotonic())))
        except KafkaException as exc:
            self.report_failures()
            self._fatal(exc)
        self.report_failures()
        return remaining

    def report_failures(self) -> None:
        """Log the failures since the last report: one line per error kind, with its count."""
        for text, kind in self.stats.take_failures():
            logger.log(
                logging.INFO if kind.code in PURGED else logging.ERROR,
                "%d deliver%s failed: %s (first: %s)",
                kind.count,
                "y" if kind.count == 1 else "ies",
                text,
                kind.first,
                extra={TOPIC: kind.topic, PARTITION: kind.partition, ERROR_CODE: kind.code},
            )

    def _report_if_due(self) -> None:
        since = self.stats.pending_since
        if since is not None and time.monotonic() - since >= FAILURE_REPORT_INTERVAL_S:
            self.report_failures()

    def close(self, timeout_s: float = FLUSH_TIMEOUT_S) -> int:
        """Flush for at most ``timeout_s``; never raises. Returns what is still unacknowledged.

        A producer that failed fatally is not flushed (it cannot deliver): its queue is
        counted and dropped.
        """
        if self.fatal_error is None:
            try:
                return self.flush(timeout_s)
            except ProducerFatalError as exc:
                logger.error("at shutdown: %s", exc)
        remaining = len(self._producer)
        self.report_failures()
        return remaining

    def reopen(self, *, purge: bool = True) -> None:
        """Replace the librdkafka producer with a new one of the same configuration.

        What the old one still held is purged without waiting (and without callbacks): the
        caller sends it again. A transactional producer must then ``init_transactions()``,
        which fences the old one's epoch and completes or aborts its open transaction.
        ``purge=False`` leaves the old one untouched (a call of another thread is stuck in
        it; that thread's reference keeps it from being destroyed under the call).
        """
        self.report_failures()
        old = self._producer
        # The new one does not connect before it is used, by which time the old one is gone.
        self._producer = producer_from_config(self._config, native=self.native)
        self.fatal_error = None
        if not purge:
            return
        try:
            old.purge(in_queue=True, in_flight=True, blocking=False)
            old.poll(0)  # serve the purged messages' callbacks that are ready (counted)
        except KafkaException as exc:  # a broken producer may refuse even this
            logger.debug("purge before reopening: %s", exc)
        self.stats.take_failures()  # purged on purpose: already reported as the cause
        del old  # the last reference: rd_kafka_destroy, which does not wait for deliveries

    def __len__(self) -> int:
        return len(self._producer)

    @property
    def raw(self) -> Producer:
        return self._producer
