"""Follow the pipeline's topics for the dashboard: predictions, inputs, dead letters.

A :class:`Follower` thread reads with its own throwaway consumer group (never committing):

- the **predictions** topic, de-duplicated on the ``churnstream.source`` header (the
  idempotency key: a replayed input gives the same key again);
- the **raw** input topic, only to learn each input's Contract and InternetService: the
  prediction body (the legacy contract) has neither, but its ``churnstream.source`` header is
  the input's ``topic:partition:offset``, so the two are joined on it. A prediction whose
  input has not been seen within :data:`JOIN_WAIT_S` counts under ``unknown``;
- optionally the **dead-letter** topic, de-duplicated the same way.

A :class:`MetricsScraper` thread reads the scorer's ``/metrics`` (lag, counters, drift) if
a URL is given, else the scorer group's committed offsets for the lag.

All aggregation lives in :class:`DashboardState` (thread-safe, bounded memory), whose
:meth:`~DashboardState.snapshot` is what the page polls.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import urllib.request
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from churnstream.headers import ERROR_CODE_HEADER, SOURCE_HEADER
from churnstream.logging import ATTEMPT, DELAY_S
from churnstream.retry import RetryNote, retrying
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
POLL_TIMEOUT_S = 0.2
POLL_BATCH = 2000
#: A failed consume is retried after this, then with jittered backoff up to the cap.
CONSUME_RETRY_FIRST_S = 0.5
CONSUME_RETRY_MAX_S = 5.0
#: How long a prediction waits for its input record before it is counted as ``unknown``.
JOIN_WAIT_S = 5.0
SERIES_SECONDS = 300
MIN_SERIES_SECONDS = 60
THROUGHPUT_WINDOW_S = 5
CHURN_WINDOW_S = 30
LATENCY_SAMPLES = 5000
TOP_K = 15
MAX_SEEN_SOURCES = 500_000
MAX_SEGMENTS = 200_000
SCRAPE_INTERVAL_S = 2.0
SCRAPE_TIMEOUT_S = 1.5


class BoundedSet:
    """A set that forgets its oldest members beyond ``capacity`` (FIFO).

    Duplicates come from redeliveries, which follow the original closely, so remembering
    the last ``capacity`` keys is enough and keeps memory bounded on an endless stream.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: set[str] = set()
        self._order: deque[str] = deque()

    def add(self, item: str) -> bool:
        """Add ``item``; False if it was already present."""
        if item in self._items:
            return False
        self._items.add(item)
        self._order.append(item)
        if len(self._order) > self._capacity:
            self._items.discard(self._order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _Tally:
    count: int = 0
    churn: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "churn": self.churn,
            "churn_rate": self.churn / self.count if self.count else None,
        }


def _percentiles(values: Iterable[float]) -> dict[str, float | None]:
    array = np.fromiter(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return {"p50": None, "p95": None, "p99": None, "count": 0}
    p50, p95, p99 = (float(v) for v in np.percentile(array, [50, 95, 99]))
    return {"p50": p50, "p95": p95, "p99": p99, "count": int(array.size)}


def _parse_ts(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def headers_of(msg: Message) -> dict[str, bytes]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: (v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs}


class DashboardState:
    """Live aggregations of the followed topics. Thread-safe; memory is bounded."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        top_k: int = TOP_K,
        join_inputs: bool = True,
    ) -> None:
        self._clock = clock
        #: False when the raw topic is not followed: segments are then all ``unknown``.
        self.join_inputs = join_inputs
        self._lock = threading.Lock()
        self._top_k = top_k
        self.started_at = clock()
        self.predictions = 0
        self.churners = 0
        self.duplicates = 0
        self.dead_duplicates = 0
        self.dead_letters = 0
        self.dead_by_type: Counter[str] = Counter()
        self.dead_by_code: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        self.by_contract: dict[str, _Tally] = {}
        self.by_internet: dict[str, _Tally] = {}
        self._seen = BoundedSet(MAX_SEEN_SOURCES)
        self._seen_dead = BoundedSet(MAX_SEEN_SOURCES)
        self._segments: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._pending: deque[tuple[float, str, bool, str | None]] = deque()
        # second -> [predictions, churners, dead letters]
        self._series: dict[int, list[int]] = {}
        self._inference: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._end_to_end: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._latest: dict[str, dict[str, Any]] = {}
        self.last_message_at: float | None = None
        self.scrape: dict[str, Any] = {}
        self.errors: deque[str] = deque(maxlen=5)

    # -- feeding -------------------------------------------------------------------------
    def add_raw(self, source: str, body: Mapping[str, Any]) -> None:
        """Remember an input's segment, for predictions that name it as their source."""
        contract = str(body.get("Contract") or UNKNOWN)
        internet = str(body.get("InternetService") or UNKNOWN)
        with self._lock:
            self._segments[source] = (contract, internet)
            if len(self._segments) > MAX_SEGMENTS:
                self._segments.popitem(last=False)

    def add_prediction(self, source: str | None, body: Mapping[str, Any]) -> bool:
        """Count one prediction; False if its source was already counted (a replay)."""
        now = self._clock()
        churn = body.get("prediction") == "Yes"
        with self._lock:
            if source is not None and not self._seen.add(source):
                self.duplicates += 1
                return False
            self.predictions += 1
            self.churners += int(churn)
            self._bucket(now)[0] += 1
            self._bucket(now)[1] += int(churn)
            self.last_message_at = now
            version = body.get("model_version")
            if isinstance(version, str):
                self.models[version] += 1
            inference = body.get("inference_latency_ms")
            if isinstance(inference, int | float):
                self._inference.append(float(inference))
            event, processed = _parse_ts(body.get("event_ts")), _parse_ts(body.get("processed_ts"))
            if event is not None and processed is not None:
                self._end_to_end.append(max(0.0, (processed - event) * 1000.0))
            segment = self._segments.get(source) if source is not None else None
            customer = body.get("customerID")
            if segment is None and source is not None and self.join_inputs:
                self._pending.append(
                    (now, source, churn, customer if isinstance(customer, str) else None)
                )
            else:
                self._count_segment(segment, churn)
            probability = body.get("churn_probability")
            if isinstance(customer, str) and isinstance(probability, int | float):
                self._latest[customer] = {
                    "customerID": customer,
                    "churn_probability": float(probability),
                    "prediction": body.get("prediction"),
                    "processed_ts": body.get("processed_ts"),
                    "source": source,
                    "Contract": segment[0] if segment else None,
                    "InternetService": segment[1] if segment else None,
                }
            return True

    def add_dead_letter(
        self, source: str | None, body: Mapping[str, Any] | None, code: str | None
    ) -> bool:
        now = self._clock()
        with self._lock:
            if source is not None and not self._seen_dead.add(source):
                self.dead_duplicates += 1
                return False
            self.dead_letters += 1
            error_type = body.get("error_type") if isinstance(body, Mapping) else None
            self.dead_by_type[str(error_type) if error_type else UNKNOWN] += 1
            self.dead_by_code[code or UNKNOWN] += 1
            self._bucket(now)[2] += 1
            self.last_message_at = now
            return True

    def resolve_pending(self, *, force: bool = False) -> None:
        """Join waiting predictions with inputs seen since; give up after JOIN_WAIT_S."""
        now = self._clock()
        with self._lock:
            waiting: deque[tuple[float, str, bool, str | None]] = deque()
            while self._pending:
                arrived, source, churn, customer = self._pending.popleft()
                segment = self._segments.get(source)
                if segment is not None or force or now - arrived >= JOIN_WAIT_S:
                    self._count_segment(segment, churn)
                    row = self._latest.get(customer) if customer is not None else None
                    if segment is not None and row is not None and row["source"] == source:
                        row["Contract"], row["InternetService"] = segment
                else:
                    waiting.append((arrived, source, churn, customer))
            self._pending = waiting

    def set_scrape(self, scrape: dict[str, Any]) -> None:
        with self._lock:
            self.scrape = scrape

    def note_error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    # -- internals (lock held) ---------------------------------------------------------
    def _bucket(self, now: float) -> list[int]:
        second = int(now)
        bucket = self._series.get(second)
        if bucket is None:
            bucket = self._series[second] = [0, 0, 0]
            cutoff = second - SERIES_SECONDS - CHURN_WINDOW_S
            for old in [s for s in self._series if s < cutoff]:
                del self._series[old]
        return bucket

    def _count_segment(self, segment: tuple[str, str] | None, churn: bool) -> None:
        contract, internet = segment if segment is not None else (UNKNOWN, UNKNOWN)
        for table, level in ((self.by_contract, contract), (self.by_internet, internet)):
            tally = table.setdefault(level, _Tally())
            tally.count += 1
            tally.churn += int(churn)

    # -- reading -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as plain JSON-able data."""
        now = self._clock()
        with self._lock:
            current = int(now)
            # From the first message (at least MIN_SERIES_SECONDS back), at most SERIES_SECONDS.
            first = min(self._series, default=current)
            start = max(
                current - SERIES_SECONDS + 1, min(first - 1, current - MIN_SERIES_SECONDS + 1)
            )
            seconds = list(range(start, current + 1))
            counts = [
                self._series.get(s, [0, 0, 0])
                for s in range(seconds[0] - CHURN_WINDOW_S, current + 1)
            ]
            offset = CHURN_WINDOW_S
            throughput, churn_rate, dead_rate = [], [], []
            for i in range(len(seconds)):
                # The current second is partial: average over the complete ones before it.
                end = offset + i
                window = counts[max(0, end - THROUGHPUT_WINDOW_S) : end]
                throughput.append(sum(c[0] for c in window) / THROUGHPUT_WINDOW_S)
                dead_rate.append(sum(c[2] for c in window) / THROUGHPUT_WINDOW_S)
                churn_window = counts[max(0, end - CHURN_WINDOW_S) : end]
                scored = sum(c[0] for c in churn_window)
                churned = sum(c[1] for c in churn_window)
                churn_rate.append(churned / scored if scored else None)
            top = heapq.nlargest(
                self._top_k,
                self._latest.values(),
                key=lambda r: (r["churn_probability"], r["customerID"]),
            )
            return {
                "now": now,
                "uptime_s": now - self.started_at,
                "last_message_age_s": (
                    None if self.last_message_at is None else now - self.last_message_at
                ),
                "totals": {
                    "predictions": self.predictions,
                    "churners": self.churners,
                    "churn_rate": self.churners / self.predictions if self.predictions else None,
                    "duplicates_skipped": self.duplicates,
                    "dead_letters": self.dead_letters,
                    "customers": len(self._latest),
                },
                "throughput_now": throughput[-1] if throughput else 0.0,
                "series": {
                    "t": seconds,
                    "throughput": throughput,
                    "churn_rate": churn_rate,
                    "dead_letter_rate": dead_rate,
                },
                "by_contract": {k: v.as_dict() for k, v in sorted(self.by_contract.items())},
                "by_internet_service": {
                    k: v.as_dict() for k, v in sorted(self.by_internet.items())
                },
                "latency_ms": {
                    "inference": _percentiles(self._inference),
                    "end_to_end": _percentiles(self._end_to_end),
                },
                "dead_letters": {
                    "total": self.dead_letters,
                    "duplicates_skipped": self.dead_duplicates,
                    "by_type": dict(sorted(self.dead_by_type.items())),
                    "by_code": dict(sorted(self.dead_by_code.items())),
                },
                "models": dict(self.models),
                "top_risk": [{k: v for k, v in row.items() if k != "source"} for row in top],
                "scorer": dict(self.scrape),
                "errors": list(self.errors),
            }


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
        conf = self.settings.kafka.client_config("consumer")
        conf.update(
            {
                "group.id": self.group_id,
                "session.timeout.ms": self.settings.kafka.session_timeout_ms,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "auto.offset.reset": "earliest" if self.options.from_beginning else "latest",
                "isolation.level": "read_committed",
            }
        )
        return Consumer(conf)

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
                self.state.add_prediction(source, body)
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


# -- the scorer's /metrics -----------------------------------------------------------------
def parse_scorer_metrics(text: str) -> dict[str, Any]:
    """The few scorer numbers the dashboard shows, from a ``/metrics`` page."""
    from prometheus_client.parser import text_string_to_metric_families

    lag: dict[str, float] = {}
    psi: dict[str, float] = {}
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "churnstream_scorer_consumer_lag_messages":
                lag[f"{labels.get('topic')}[{labels.get('partition')}]"] = value
            elif name == "churnstream_scorer_consumed_messages_total":
                out["consumed"] = value
            elif name == "churnstream_scorer_scored_messages_total":
                out["scored"] = value
            elif name == "churnstream_scorer_redelivered_batches_total":
                out["redelivered_batches"] = value
            elif name == "churnstream_model_info" and value == 1:
                out["model_version"] = labels.get("version")
            elif name == "churnstream_drift_psi":
                psi[labels.get("feature", "?")] = value
            elif name == "churnstream_drift_detected":
                out["drift_detected"] = bool(value)
            elif name == "churnstream_scorer_running":
                out["running"] = bool(value)
    out["lag_by_partition"] = lag
    out["lag"] = sum(lag.values()) if lag else None
    if psi:
        out["drift_psi"] = psi
    return out


class MetricsScraper(threading.Thread):
    """Every few seconds: the scorer's metrics (if a URL is given), else its group's lag."""

    def __init__(
        self,
        state: DashboardState,
        *,
        metrics_url: str | None,
        settings: Settings | None = None,
        scorer_group: str | None = None,
        raw_topic: str | None = None,
        interval_s: float = SCRAPE_INTERVAL_S,
    ) -> None:
        super().__init__(name="dashboard-scraper", daemon=True)
        self.state = state
        self.metrics_url = metrics_url
        self.settings = settings
        self.scorer_group = scorer_group
        self.raw_topic = raw_topic
        self.interval_s = interval_s
        self._stop_event = threading.Event()
        self._last: tuple[float, float] | None = None

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.state.set_scrape(self.scrape_once())
            except Exception as exc:  # noqa: BLE001 - shown on the page, retried next time
                self.state.set_scrape({"ok": False, "error": str(exc), "source": self._source()})
            self._stop_event.wait(self.interval_s)

    def _source(self) -> str:
        return "metrics" if self.metrics_url else "offsets"

    def scrape_once(self) -> dict[str, Any]:
        if self.metrics_url:
            url = self.metrics_url
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"metrics URL must be http(s): {url}")
            with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:  # noqa: S310
                text = response.read().decode("utf-8")
            data = parse_scorer_metrics(text)
            now = time.monotonic()
            consumed = data.get("consumed")
            if isinstance(consumed, float) and self._last is not None:
                then, before = self._last
                data["rate"] = max(0.0, (consumed - before) / max(now - then, 1e-9))
            if isinstance(consumed, float):
                self._last = (now, consumed)
            return {"ok": True, "source": "metrics", **data}
        if self.settings is not None and self.scorer_group and self.raw_topic:
            from churnstream.kafka import admin
            from churnstream.observability.cluster import consumer_groups

            kafka = self.settings.kafka
            described = admin.describe_topics(
                kafka, [self.raw_topic], timeout_s=SCRAPE_TIMEOUT_S * 2
            )
            ends = {(t.name, p.partition): p.high for t in described for p in t.partitions}
            groups = consumer_groups(
                kafka, ends, only=[self.scorer_group], timeout_s=SCRAPE_TIMEOUT_S * 2
            )
            lag = sum(t.lag for g in groups for t in g.topics if t.topic == self.raw_topic)
            return {"ok": True, "source": "offsets", "lag": lag, "group": self.scorer_group}
        return {"ok": False, "source": "none"}
