"""A producer wrapper that counts every delivery and never drops a message silently."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from churnstream.kafka.clients import producer_from_config
from churnstream.logging import ERROR_CODE, PARTITION, TOPIC

logger = logging.getLogger(__name__)

BUFFER_FULL_POLL_S = 0.1
FLUSH_TIMEOUT_S = 30.0

Headers = Sequence[tuple[str, bytes]]


@dataclass
class DeliveryStats:
    """Counts kept by the delivery callback (librdkafka calls it from poll/flush)."""

    delivered: int = 0
    failed: int = 0
    last_error: str | None = None
    errors_by_code: dict[str, int] = field(default_factory=dict)
    #: Highest acknowledged offset per (topic, partition): where this producer's writes end.
    high_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
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
            self.last_error = str(err)
            name = err.name() if hasattr(err, "name") else str(err)
            self.errors_by_code[name] = self.errors_by_code.get(name, 0) + 1
        logger.error(
            "delivery to %s failed: %s",
            msg.topic(),
            err,
            extra={TOPIC: msg.topic(), PARTITION: msg.partition(), ERROR_CODE: name},
        )


class SafeProducer:
    """confluent-kafka Producer plus back-pressure handling and delivery accounting."""

    def __init__(self, config: dict[str, Any], *, on_delivery: Callable[..., None] | None = None):
        """``config`` as the settings render it: ``KafkaSettings.producer_config()`` or
        ``transactional_producer_config()``."""
        self._producer = producer_from_config(config)
        self.stats = DeliveryStats()
        self._extra_callback = on_delivery

    def _callback(self, err: KafkaError | None, msg: Message) -> None:
        self.stats.on_delivery(err, msg)
        if self._extra_callback is not None:
            self._extra_callback(err, msg)

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Queue one message; on a full local queue, serve callbacks and try again."""
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

    def poll(self, timeout_s: float = 0.0) -> int:
        return int(self._producer.poll(timeout_s))

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> int:
        """Wait for outstanding deliveries; returns how many are still not acknowledged."""
        deadline = time.monotonic() + timeout_s
        remaining = int(self._producer.flush(timeout_s))
        while remaining and time.monotonic() < deadline:
            remaining = int(self._producer.flush(max(0.0, deadline - time.monotonic())))
        return remaining

    def __len__(self) -> int:
        return len(self._producer)

    @property
    def raw(self) -> Producer:
        return self._producer
