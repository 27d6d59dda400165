"""Follow the pipeline's topics for the dashboard: predictions, inputs, dead letters.

A :class:`Follower` thread reads with its own throwaway consumer group (never committing):

- the **predictions** topic, de-duplicated on the ``churnstream.source`` header (the
  idempotency key: a replayed input gives the same key again);
- the **raw** input topic, only to learn each input's Contract and InternetService: the
  prediction body (the legacy contract) has neither, but its ``churnstream.source`` header is
  the input's ``topic:partition:offset``, so the two are joined on it. A prediction whose
  input has not been seen within :data:`~.state.JOIN_WAIT_S` counts under ``unknown``;
- optionally the **dead-letter** topic, de-duplicated the same way.

All aggregation lives in :class:`~churnstream.dashboard.state.DashboardState`; the
scorer's own numbers come from :mod:`churnstream.dashboard.scraper`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from churnstream.dashboard.state import DashboardState
from churnstream.headers import ERROR_CODE_HEADER, REASONS_HEADER, SOURCE_HEADER
from churnstream.kafka import clients
from churnstream.logging import ATTEMPT, DELAY_S
from churnstream.retry import RetryNote, retrying
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.2
POLL_BATCH = 2000
#: A failed consume is retried after this, then with jittered backoff up to the cap.
CONSUME_RETRY_FIRST_S = 0.5
CONSUME_RETRY_MAX_S = 5.0


def headers_of(msg: Message) -> dict[str, bytes]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: (v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs}


@dataclass(frozen=True)
class FollowOptions:
    predictions_topic: str
    raw_topic: str | None
    deadletter_topic: str | None
    from_beginning: bool = False
    group_id: str | None = None


class Follower(threading.Thread):
    """Reads the topics into a :class:`DashboardState` until :meth:`stop`."""

    def __init__(self, settings: Settings, options: FollowOptions, state: DashboardState) -> None:
        super().__init__(name="dashboard-follower", daemon=True)
        self.settings = settings
        self.options = options
        self.state = state
        self.group_id = options.group_id or f"churnstream-dashboard-{uuid.uuid4().hex[:12]}"
        self.assigned = threading.Event()
        self._stop_event = threading.Event()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout_s)

    def _consumer(self) -> Consumer:
        # A throwaway group that never commits: the dashboard only watches.
        overrides = {
            "auto.offset.reset": "earliest" if self.options.from_beginning else "latest",
            "isolation.level": "read_committed",
        }
        return clients.consumer(self.settings, self.group_id, overrides=overrides)

    def run(self) -> None:
        opts = self.options
        topics = [t for t in (opts.predictions_topic, opts.raw_topic, opts.deadletter_topic) if t]
        consumer = self._consumer()

        def on_assign(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            logger.info("dashboard following %s", ", ".join(sorted({p.topic for p in partitions})))
            self.assigned.set()

        def note(retry: RetryNote) -> None:
            self.state.note_error(f"consume: {retry.error}")
            logger.warning(
                "dashboard consumer: %s; retrying in %.1fs",
                retry.error,
                retry.delay_s,
                extra={ATTEMPT: retry.attempt, DELAY_S: retry.delay_s},
            )

        # No deadline: the page shows the error and the follower keeps trying until stopped.
        policy = retrying(
            first_delay_s=CONSUME_RETRY_FIRST_S,
            max_delay_s=CONSUME_RETRY_MAX_S,
            retry_on=KafkaException,
            stop=self._stop_event,
            on_retry=note,
        )
        try:
            consumer.subscribe(topics, on_assign=on_assign)
            while not self._stop_event.is_set():
                try:
                    messages = policy.call(
                        consumer.consume, num_messages=POLL_BATCH, timeout=POLL_TIMEOUT_S
                    )
                except KafkaException:  # only when stopped while waiting to ask again
                    break
                # Inputs first: a prediction fetched in the same poll can join at once.
                ordered = sorted(messages, key=lambda m: m.topic() != opts.raw_topic)
                for msg in ordered:
                    self._dispatch(msg)
                self.state.resolve_pending()
        except Exception as exc:  # noqa: BLE001 - report on the page instead of dying silently
            logger.exception("dashboard follower stopped")
            self.state.note_error(f"follower stopped: {exc}")
        finally:
            self.state.resolve_pending(force=True)
            try:
                consumer.close()
            except KafkaException as exc:
                logger.debug("dashboard consumer close: %s", exc)

    def _dispatch(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                self.state.note_error(str(err))
            return
        opts = self.options
        topic = msg.topic()
        headers = headers_of(msg)
        source_raw = headers.get(SOURCE_HEADER)
        source = source_raw.decode("utf-8", "replace") if source_raw else None
        body = _json(msg.value())
        if topic == opts.raw_topic:
            if isinstance(body, dict):
                self.state.add_raw(f"{topic}:{msg.partition()}:{msg.offset()}", body)
        elif topic == opts.predictions_topic:
            if isinstance(body, dict):
                reasons = _json(headers.get(REASONS_HEADER))
                self.state.add_prediction(
                    source, body, reasons=reasons if isinstance(reasons, list) else None
                )
        elif topic == opts.deadletter_topic:
            code = headers.get(ERROR_CODE_HEADER)
            self.state.add_dead_letter(
                source,
                body if isinstance(body, dict) else None,
                code.decode("utf-8", "replace") if code else None,
            )


def _json(value: bytes | None) -> Any:
    if not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
