"""Topic administration: create the pipeline's topics, list, describe and dump them.

Every call is bounded: a broker that does not answer gives BrokerUnavailableError within
``timeout_s`` instead of a hang. Client configuration comes only from
:meth:`KafkaSettings.admin_config` / :meth:`KafkaSettings.client_config`.

Watermarks are reported as the broker gives them; tansu's high watermark is wrong (the last
batch's base offset + 1), which is why :func:`dump_topic` reads until idle instead.

A refused login or a failed TLS handshake is not a timeout: librdkafka retries it for ever
and reports it only to the client's ``error_cb``. Admin clients carry a
:class:`ClientErrorWatch` there, and every call that waits for the cluster checks it, so such a
failure raises AuthenticationError within about a second, with no secret in its message.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, not in __all__
    AdminClient,
    NewTopic,
    OffsetSpec,
)

from churnstream.exceptions import (
    AuthenticationError,
    BrokerError,
    BrokerUnavailableError,
    ChurnstreamError,
)
from churnstream.kafka.clientcheck import refusal
from churnstream.retry import NotYet, retrying
from churnstream.settings import KafkaSettings, Settings, TopicSettings

logger = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 10.0
DUMP_IDLE_S = 2.0
DUMP_POLL_TIMEOUT_S = 0.2
DUMP_BATCH_RECORDS = 500
#: New topics' leaders are looked for again after this, then with jittered backoff up to the cap.
LEADER_WAIT_FIRST_S = 0.1
LEADER_WAIT_MAX_S = 1.0
# Metadata waits are cut into slices that grow from the first to the last value, so that an
# authentication failure reported meanwhile is noticed quickly, while a slow cluster still
# gets long enough a wait to answer.
METADATA_FIRST_WAIT_S = 0.25
METADATA_MAX_WAIT_S = 2.0
FAST_FAILURE_POLL_S = 0.1

# librdkafka's error strings: "[<proto>://]<host:port>/<broker>: <what> (after Nms in state S)".
_RDKAFKA_ORIGIN = re.compile(r"^(?:[a-z_]+://)?(?P<addr>[^/\s]+:\d+)/\S*: ")
_RDKAFKA_AFTER = re.compile(r"\s*\(after \d+ms in state \w+\)\s*$")
_OPENSSL_CODE = re.compile(r"error:[0-9A-Fa-f]+:[^:]*::")
# TLS alerts a broker sends when it does not accept our client certificate.
_TLS_CLIENT_REJECTED = re.compile(
    r"alert (bad certificate|certificate required|unknown ca|certificate unknown|"
    r"certificate expired|certificate revoked|access denied)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TopicCreation:
    """Outcome of creating one topic: ``created`` now, or it already ``exists``."""

    name: str
    status: Literal["created", "exists"]
    partitions: int
    expected_partitions: int

    @property
    def mismatch(self) -> bool:
        """True when an existing topic's partition count differs from the settings."""
        return self.partitions != self.expected_partitions


@dataclass(frozen=True)
class TopicSummary:
    name: str
    partitions: int
    replication_factor: int


@dataclass(frozen=True)
class PartitionDescription:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    low: int
    high: int

    @property
    def messages(self) -> int:
        """high - low: exact on Apache Kafka, understated on tansu, which counts batches badly."""
        return max(0, self.high - self.low)


@dataclass(frozen=True)
class TopicDescription:
    name: str
    partitions: tuple[PartitionDescription, ...]


class RdkafkaDebugLog:
    """Pass as a client's ``logger``: librdkafka's lines (connection refused...) go to DEBUG.

    Without it librdkafka prints every failed connection attempt to stderr; the errors that
    matter reach the caller as exceptions with timeouts instead.
    """

    _logger = logging.getLogger("churnstream.kafka.librdkafka")

    def log(self, level: int, msg: str, *args: Any) -> None:
        self._logger.debug(msg, *args)


class ClientErrorWatch:
    """A client's ``error_cb`` that remembers the first authentication or TLS failure.

    librdkafka retries a refused login or a failed TLS handshake for ever, so a blocking call
    only times out; the reason arrives through the error callback, which ``poll`` (or
    ``consume``, ``flush``) serves. Use it as ``conf["error_cb"] = ClientErrorWatch(kafka)``
    and call :meth:`raise_if_failed` after polling. Messages are scrubbed of the secrets in
    ``kafka``.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._secrets = kafka.secret_values()
        self._lock = threading.Lock()
        self._failure: str | None = None
        self._last_error: str | None = None

    def __call__(self, err: KafkaError) -> None:
        failure = _auth_failure(err, self._kafka)
        text = self.scrub(_strip_origin(str(err.str()))[1])
        with self._lock:
            if failure is not None and self._failure is None:
                self._failure = self.scrub(failure)
            if err.code() != KafkaError._ALL_BROKERS_DOWN:  # "1/1 brokers are down": no news
                self._last_error = text
        logger.debug("librdkafka error %s: %s", err.name(), text)

    @property
    def failure(self) -> str | None:
        """The first authentication or TLS failure's one-line message, if any."""
        with self._lock:
            return self._failure

    @property
    def last_error(self) -> str | None:
        """The last error librdkafka reported (scrubbed), for a timeout's message."""
        with self._lock:
            return self._last_error

    def raise_if_failed(self) -> None:
        """Raise AuthenticationError if an authentication or TLS failure was reported."""
        failure = self.failure
        if failure is not None:
            raise AuthenticationError(failure)

    def scrub(self, text: str) -> str:
        """``text`` with every configured secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class _WatchedAdminClient(AdminClient):
    """An AdminClient that keeps its :class:`ClientErrorWatch` at hand."""

    def __init__(self, conf: dict[str, Any], watch: ClientErrorWatch) -> None:
        super().__init__(conf)
        self.watch = watch


def admin_client(kafka: KafkaSettings) -> AdminClient:
    """An AdminClient configured from ``kafka.admin_config()``, with a ClientErrorWatch.

    Raises ConfigError when a secret or TLS file cannot be read, BrokerError when librdkafka
    refuses the configuration (e.g. a key it cannot decrypt).
    """
    conf = kafka.admin_config()
    conf["logger"] = RdkafkaDebugLog()
    watch = ClientErrorWatch(kafka)
    conf["error_cb"] = watch
    try:
        return _WatchedAdminClient(conf, watch)
    except (KafkaException, ValueError, TypeError) as exc:
        raise refusal("admin", "admin", exc, kafka) from None


def check_reachable(kafka: KafkaSettings, *, timeout_s: float = ADMIN_TIMEOUT_S) -> None:
    """Check that the cluster answers and accepts our credentials; call it before starting.

    Raises AuthenticationError (within about a second) when the cluster refuses our SASL
    credentials or a TLS handshake fails (an untrusted broker certificate, a rejected client
    certificate), BrokerUnavailableError unless a broker answers a metadata request within
    ``timeout_s``, ConfigError when a secret or TLS file cannot be read.
    """
    _metadata(admin_client(kafka), kafka, timeout_s)


def create_topics(
    kafka: KafkaSettings,
    topics: Sequence[TopicSettings],
    *,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> list[TopicCreation]:
    """Create each topic unless it exists; idempotent. Waits until new topics have leaders.

    An existing topic with a different partition count is returned with ``mismatch`` True
    (and logged as a warning); it is not altered.
    """
    admin = admin_client(kafka)
    metadata = _metadata(admin, kafka, timeout_s)
    outcomes: dict[str, TopicCreation] = {}
    missing: list[TopicSettings] = []
    for topic in topics:
        existing = metadata.topics.get(topic.name)
        if existing is not None and existing.error is None:
            outcomes[topic.name] = _exists(topic, len(existing.partitions))
        else:
            missing.append(topic)
    if missing:
        new = [
            NewTopic(t.name, num_partitions=t.partitions, replication_factor=t.replication_factor)
            for t in missing
        ]
        futures = admin.create_topics(new, request_timeout=timeout_s, operation_timeout=timeout_s)
        for topic in missing:
            try:
                futures[topic.name].result(timeout=timeout_s)
            except concurrent.futures.TimeoutError:
                raise BrokerUnavailableError(
                    f"creating topic {topic.name!r} at {kafka.bootstrap_servers} "
                    f"did not finish within {timeout_s:g}s"
                ) from None
            except KafkaException as exc:
                if _code(exc) != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerError(
                        f"could not create topic {topic.name!r}: {_reason(exc)}"
                    ) from None
                # Created concurrently by someone else: report what is there.
                partitions = len(_topic_metadata(admin, kafka, topic.name, timeout_s).partitions)
                outcomes[topic.name] = _exists(topic, partitions)
            else:
                outcomes[topic.name] = TopicCreation(
                    topic.name, "created", topic.partitions, topic.partitions
                )
                logger.info("created topic %s (%d partitions)", topic.name, topic.partitions)
        created = [t.name for t in missing if outcomes[t.name].status == "created"]
        _wait_for_leaders(admin, kafka, created, timeout_s)
    return [outcomes[t.name] for t in topics]


def ensure_topics(settings: Settings, *, timeout_s: float = ADMIN_TIMEOUT_S) -> list[TopicCreation]:
    """Create the pipeline's three topics (raw, predictions, dead letter) from settings."""
    topics = [settings.topics.raw, settings.topics.predictions, settings.topics.deadletter]
    return create_topics(settings.kafka, topics, timeout_s=timeout_s)


def delete_topics(
    kafka: KafkaSettings, names: Iterable[str], *, timeout_s: float = ADMIN_TIMEOUT_S
) -> None:
    """Delete topics; ones that do not exist are ignored."""
    names = list(names)
    if not names:
        return
    admin = admin_client(kafka)
    _metadata(admin, kafka, timeout_s)
    futures = admin.delete_topics(names, request_timeout=timeout_s, operation_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            raise BrokerUnavailableError(f"deleting topic {name!r} timed out") from None
        except KafkaException as exc:
            if _code(exc) != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BrokerError(f"could not delete topic {name!r}: {_reason(exc)}") from None


def list_topics(
    kafka: KafkaSettings,
    *,
    include_internal: bool = False,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> list[TopicSummary]:
    """Topics on the cluster, sorted by name; internal ``__*`` topics only if asked."""
    metadata = _metadata(admin_client(kafka), kafka, timeout_s)
    out = []
    for name, topic in sorted(metadata.topics.items()):
        if topic.error is not None or (name.startswith("__") and not include_internal):
            continue
        replication = max((len(p.replicas) for p in topic.partitions.values()), default=0)
        out.append(TopicSummary(name, len(topic.partitions), replication))
    return out


def describe_topics(
    kafka: KafkaSettings,
    names: Sequence[str] | None = None,
    *,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> list[TopicDescription]:
    """Partitions, leaders, replicas, ISR and low/high watermarks of each topic.

    ``names`` None means every non-internal topic. An unknown name is an error.
    """
    admin = admin_client(kafka)
    metadata = _metadata(admin, kafka, timeout_s)
    if names is None:
        names = sorted(
            n for n, t in metadata.topics.items() if not n.startswith("__") and not t.error
        )
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            raise ChurnstreamError(f"topic {name!r} does not exist at {kafka.bootstrap_servers}")
    partitions = [
        TopicPartition(name, p) for name in names for p in sorted(metadata.topics[name].partitions)
    ]
    earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    low = _list_offsets(admin, partitions, earliest, timeout_s)
    high = _list_offsets(admin, partitions, latest, timeout_s)
    described = []
    for name in names:
        parts = []
        for pid, part in sorted(metadata.topics[name].partitions.items()):
            parts.append(
                PartitionDescription(
                    partition=pid,
                    leader=part.leader,
                    replicas=tuple(part.replicas),
                    isr=tuple(part.isrs),
                    low=low.get((name, pid), -1),
                    high=high.get((name, pid), -1),
                )
            )
        described.append(TopicDescription(name, tuple(parts)))
    return described


def dump_topic(
    kafka: KafkaSettings,
    topic: str,
    *,
    limit: int,
    idle_s: float = DUMP_IDLE_S,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """Read up to ``limit`` messages from the beginning of every partition of ``topic``.

    Uses ``assign()`` with explicit offsets and never commits, so no consumer group is left on
    the broker. Stops at ``limit`` or after ``idle_s`` without a new message once every
    partition has been fetched from; the high watermark is not trusted (tansu's is wrong).
    Records are ``{topic, partition, offset, timestamp, key, headers, value}`` sorted by
    partition and offset; ``value`` is parsed JSON when possible, else text.
    """
    if limit < 1:
        return []
    admin = admin_client(kafka)
    partitions = sorted(_topic_metadata(admin, kafka, topic, timeout_s).partitions)
    conf = kafka.client_config("consumer")
    conf.update(
        {
            # Required by librdkafka even for assign(); nothing is committed under it.
            "group.id": f"churnstream-dump-{uuid.uuid4().hex[:12]}",
            "session.timeout.ms": kafka.session_timeout_ms,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # EOF events only tell us each partition has been fetched from at least once.
            "enable.partition.eof": True,
            "logger": RdkafkaDebugLog(),
        }
    )
    watch = ClientErrorWatch(kafka)
    conf["error_cb"] = watch
    try:
        consumer = Consumer(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise refusal("consumer", "consumer", exc, kafka) from None
    records: list[dict[str, Any]] = []
    messages = iter_from_beginning(
        consumer, topic, partitions, idle_s=idle_s, timeout_s=timeout_s, watch=watch
    )
    with contextlib.closing(messages):
        for msg in messages:
            records.append(message_record(msg))
            if len(records) >= limit:
                break
    records = records[:limit]
    records.sort(key=lambda r: (r["partition"], r["offset"]))
    return records


def iter_from_beginning(
    consumer: Consumer,
    topic: str,
    partitions: Sequence[int],
    *,
    idle_s: float,
    timeout_s: float,
    watch: ClientErrorWatch | None = None,
) -> Generator[Message, None, None]:
    """Every record of ``partitions`` from the beginning, read by ``assign()``; closes
    ``consumer`` when exhausted or closed.

    The consumer needs ``enable.partition.eof``: the reading stops ``idle_s`` after the last
    record once every partition has been fetched from, never trusting the high watermark
    alone (tansu's is wrong). A partition that cannot be fetched from within ``timeout_s``
    raises BrokerUnavailableError.
    """
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        started = last_activity = time.monotonic()
        unfetched = set(partitions)
        while True:
            batch = consumer.consume(num_messages=DUMP_BATCH_RECORDS, timeout=DUMP_POLL_TIMEOUT_S)
            if watch is not None:
                watch.raise_if_failed()
            now = time.monotonic()
            for msg in batch:
                err = msg.error()
                if err is None:
                    unfetched.discard(msg.partition() or 0)
                    last_activity = now
                    yield msg
                elif err.code() == KafkaError._PARTITION_EOF:
                    unfetched.discard(msg.partition() or 0)
                elif err.fatal() or not err.retriable():
                    raise BrokerError(f"reading {topic!r} failed: {err.str()}")
                else:
                    logger.debug("transient error reading %s: %s", topic, err.str())
            if unfetched:
                if now - started > timeout_s:
                    raise BrokerUnavailableError(
                        f"could not fetch from {topic!r} partitions {sorted(unfetched)} "
                        f"within {timeout_s:g}s"
                    )
            elif now - last_activity >= idle_s:
                return
    finally:
        consumer.close()


def message_record(msg: Message) -> dict[str, Any]:
    """One consumed message as JSON-able data (see :func:`dump_topic`)."""
    ts_type, ts_ms = msg.timestamp()
    headers: dict[str, Any] = {}
    raw_headers = msg.headers() or []
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    for name, raw in pairs:
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


def decode_value(raw: bytes | None) -> Any:
    """Parsed JSON if ``raw`` is JSON, else UTF-8 text (undecodable bytes as escapes)."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _text(raw)


# --------------------------------------------------------------------------- internals


def _text(raw: bytes | str | None) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="backslashreplace")


def _exists(topic: TopicSettings, partitions: int) -> TopicCreation:
    outcome = TopicCreation(topic.name, "exists", partitions, topic.partitions)
    if outcome.mismatch:
        logger.warning(
            "topic %s already exists with %d partitions, but the settings say %d",
            topic.name,
            partitions,
            topic.partitions,
        )
    return outcome


def _metadata(admin: AdminClient, kafka: KafkaSettings, timeout_s: float) -> Any:
    """Cluster metadata; AuthenticationError or BrokerUnavailableError as check_reachable."""
    watch = admin.watch if isinstance(admin, _WatchedAdminClient) else None
    deadline = time.monotonic() + timeout_s
    wait_s = METADATA_FIRST_WAIT_S if watch is not None else timeout_s
    while True:
        slice_s = max(0.01, min(wait_s, deadline - time.monotonic()))
        started = time.monotonic()
        try:
            return admin.list_topics(timeout=slice_s)
        except KafkaException as exc:
            error = exc
        # Failing before the slice ran out is librdkafka giving up, not a timeout: as before
        # slicing, report it now, once the error callback has had its chance to say why.
        gave_up = time.monotonic() - started < slice_s - 0.05
        if watch is not None:
            admin.poll(FAST_FAILURE_POLL_S if gave_up else 0)
            watch.raise_if_failed()
        if gave_up or time.monotonic() >= deadline:
            last = watch.last_error if watch is not None else None
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {kafka.bootstrap_servers} within {timeout_s:g}s "
                f"({_reason(error)})" + (f"; last error: {last}" if last else "")
            ) from None
        wait_s = min(wait_s * 2, METADATA_MAX_WAIT_S)


def _topic_metadata(admin: AdminClient, kafka: KafkaSettings, name: str, timeout_s: float) -> Any:
    topic = _metadata(admin, kafka, timeout_s).topics.get(name)
    if topic is None or topic.error is not None:
        raise ChurnstreamError(f"topic {name!r} does not exist at {kafka.bootstrap_servers}")
    return topic


def _wait_for_leaders(
    admin: AdminClient, kafka: KafkaSettings, names: Sequence[str], timeout_s: float
) -> None:
    """CreateTopics returns before every broker knows the topic; wait until all have leaders."""
    pending = set(names)

    def check() -> None:
        metadata = _metadata(admin, kafka, timeout_s)
        for name in list(pending):
            topic = metadata.topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                pending.discard(name)
        if pending:
            raise NotYet(f"topics {sorted(pending)} have no leader {timeout_s:g}s after creation")

    policy = retrying(
        deadline_s=timeout_s,
        first_delay_s=LEADER_WAIT_FIRST_S,
        max_delay_s=LEADER_WAIT_MAX_S,
        retry_on=NotYet,
    )
    try:
        policy.call(check)
    except NotYet as exc:
        raise BrokerUnavailableError(str(exc)) from None


def _list_offsets(
    admin: AdminClient,
    partitions: Sequence[TopicPartition],
    spec: Any,
    timeout_s: float,
) -> dict[tuple[str, int], int]:
    if not partitions:
        return {}
    futures = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=timeout_s)
    out: dict[tuple[str, int], int] = {}
    for tp, future in futures.items():
        try:
            out[(tp.topic, tp.partition)] = int(future.result(timeout=timeout_s).offset)
        except concurrent.futures.TimeoutError:
            raise BrokerUnavailableError(
                f"listing offsets of {tp.topic}[{tp.partition}] timed out"
            ) from None
        except KafkaException as exc:
            raise BrokerError(
                f"could not list offsets of {tp.topic}[{tp.partition}]: {_reason(exc)}"
            ) from None
    return out


def _strip_origin(text: str) -> tuple[str | None, str]:
    """Split librdkafka's "<proto>://<addr>/<broker>: " prefix and "(after ...)" suffix off."""
    text = _RDKAFKA_AFTER.sub("", text.strip())
    match = _RDKAFKA_ORIGIN.match(text)
    if match is None:
        return None, text
    return match.group("addr"), text[match.end() :]


def _auth_failure(err: KafkaError, kafka: KafkaSettings) -> str | None:
    """A one-line message when ``err`` is an authentication or TLS failure, else None."""
    code = err.code()
    addr, detail = _strip_origin(str(err.str()))
    where = addr or kafka.bootstrap_servers
    detail = " ".join(_OPENSSL_CODE.sub("", detail).split())
    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return f"authentication failed at {where}: {detail}; {kafka.credentials_hint()}"
    if code == KafkaError._SSL:
        if "verify failed" in detail:
            reason = detail.removeprefix("SSL handshake failed: ").split(", verify that")[0]
            ca = kafka.ssl_ca_location or "unset, so the system's CAs"
            return (
                f"TLS handshake with {where} failed: the broker's certificate is not trusted "
                f"({reason}); kafka.ssl_ca_location ({ca}) must hold the CA that signed it"
            )
        return f"TLS handshake with {where} failed: {detail}; check the kafka.ssl_* settings"
    if code == KafkaError._TRANSPORT and _TLS_CLIENT_REJECTED.search(detail):
        return (
            f"the broker at {where} rejected our TLS client certificate ({detail}); check "
            "kafka.ssl_certificate_location and kafka.ssl_key_location"
        )
    return None


def _code(exc: KafkaException) -> int | None:
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def _reason(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return str(err.str())
    return str(exc)
