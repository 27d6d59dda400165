"""The one place where Kafka clients are built: Consumer, Producer and AdminClient.

Every configuration starts from the settings (:meth:`KafkaSettings.client_config`,
``producer_config``, ``consumer_config``, ``admin_config``), so whatever those add reaches
every client. This module adds only what a kind of client needs on top:

- :func:`admin_client`: topic administration and metadata, with a :class:`ClientErrorWatch`;
  :func:`probe_admin_client`: does the embedded dev broker answer yet;
- :func:`consumer`: a member of a consumer group (the scorer, the dashboard's follower);
- :func:`reader_consumer`: a throwaway reader that uses ``assign()`` under a unique group id
  and never commits, so no consumer group is left on the broker;
- :func:`group_offsets_consumer`: asks for a group's committed offsets without joining it;
- :func:`producer`: idempotent, optionally transactional.

A configuration librdkafka refuses is one line, secrets scrubbed
(:func:`churnstream.kafka.clientcheck.refusal`): ClientConfigError naming the
``kafka.librdkafka*`` property at fault, else BrokerError with a hint when a TLS file is.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from churnstream.exceptions import BrokerError
from churnstream.kafka.clientcheck import config_hint, refusal
from churnstream.kafka.errors import ClientErrorWatch, error_reason, scrub
from churnstream.kafka.native import NativeConsumer, NativeProducer
from churnstream.settings import KafkaSettings, Settings
from churnstream.settings.passthrough import ClientKind

logger = logging.getLogger(__name__)

#: Configuration keys whose values are secrets: never part of an error message.
SECRET_KEYS = ("sasl.password", "ssl.key.password", "ssl.keystore.password")

_Client = TypeVar("_Client")


class RdkafkaDebugLog:
    """Pass as a client's ``logger``: librdkafka's lines (connection refused...) go to DEBUG.

    Short-lived clients (admin calls, readers, probes) report what matters as exceptions
    within their timeouts; without this, librdkafka would print every failed connection
    attempt while a broker is still starting.
    """

    _logger = logging.getLogger("churnstream.kafka.librdkafka")

    def log(self, level: int, msg: str, *args: Any) -> None:
        self._logger.debug(msg, *args)


class WatchedAdminClient(AdminClient):
    """An AdminClient that keeps its :class:`ClientErrorWatch` at hand."""

    def __init__(self, conf: dict[str, Any], watch: ClientErrorWatch) -> None:
        super().__init__(conf)
        self.watch = watch


def admin_client(kafka: KafkaSettings) -> WatchedAdminClient:
    """An AdminClient configured from ``kafka.admin_config()``, with a ClientErrorWatch.

    Raises ConfigError when a secret or TLS file cannot be read, BrokerError when librdkafka
    refuses the configuration (e.g. a key it cannot decrypt).
    """
    conf = kafka.admin_config()
    watch = ClientErrorWatch(kafka)
    conf.update({"logger": RdkafkaDebugLog(), "error_cb": watch})
    return _build("admin", "admin", lambda: WatchedAdminClient(conf, watch), conf, kafka)


def probe_admin_client(bootstrap: str) -> AdminClient:
    """A plaintext AdminClient for ``bootstrap``, without the settings: for asking whether
    the embedded dev broker (which listens in plaintext) answers yet."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        # Short reconnect backoff so that a broker coming up is noticed within ~0.25 s.
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 250,
        "logger": RdkafkaDebugLog(),
    }
    return _build("admin", "admin", lambda: AdminClient(conf), conf, None)


def consumer(
    settings: Settings,
    group_id: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    native: bool = False,
) -> Consumer:
    """A consumer group member configured from ``consumer_config()``, plus ``overrides``;
    on the native client with ``native`` (:mod:`churnstream.kafka.native`)."""
    conf = settings.kafka.consumer_config(settings.consumer, group_id)
    conf.update(overrides or {})
    make: Callable[[], Consumer] = (
        (lambda: NativeConsumer(conf)) if native else (lambda: Consumer(conf))
    )
    return _build("consumer", "consumer", make, conf, settings.kafka)


def reader_consumer(
    kafka: KafkaSettings,
    purpose: str,
    *,
    isolation_level: str = "read_committed",
) -> tuple[Consumer, ClientErrorWatch]:
    """A consumer for :mod:`churnstream.kafka.reader`, and the watch on its errors.

    It reads with ``assign()`` under the unique group id
    ``churnstream-<purpose>-reader-<hex>`` (librdkafka needs one even then) and never
    commits, so the broker never learns of the group. Partition EOF events are on: they
    tell the reader that each partition has been fetched from.
    """
    conf = kafka.client_config("consumer")
    watch = ClientErrorWatch(kafka)
    conf.update(
        {
            "group.id": f"churnstream-{purpose}-reader-{uuid.uuid4().hex[:12]}",
            "session.timeout.ms": kafka.session_timeout_ms,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "isolation.level": isolation_level,
            "logger": RdkafkaDebugLog(),
            "error_cb": watch,
        }
    )
    return _build("consumer", "consumer", lambda: Consumer(conf), conf, kafka), watch


def group_offsets_consumer(kafka: KafkaSettings, group_id: str) -> Consumer:
    """A consumer under ``group_id`` that only asks for the group's committed offsets.

    It never subscribes, so it never joins the group or disturbs its members; and it never
    commits. (Not AdminClient.list_consumer_group_offsets: librdkafka 2.16 crashed with
    SIGSEGV in that call while a group coordinator was still loading after a restart.)
    """
    conf = kafka.client_config("consumer")
    conf.update({"group.id": group_id, "enable.auto.commit": False, "logger": RdkafkaDebugLog()})
    return _build("consumer", "consumer", lambda: Consumer(conf), conf, kafka)


def producer(settings: Settings, *, transactional_id: str | None = None) -> Producer:
    """An idempotent producer from ``producer_config()``; transactional with an id."""
    label = "producer"
    if transactional_id is None:
        conf = settings.kafka.producer_config(settings.producer)
    else:
        conf = settings.kafka.transactional_producer_config(settings.producer, transactional_id)
        label = "transactional producer"
    return _build(label, "producer", lambda: Producer(conf), conf, settings.kafka)


def consumer_from_config(conf: dict[str, Any]) -> Consumer:
    """A Consumer from a configuration the settings rendered (see the functions above)."""
    return _build("consumer", "consumer", lambda: Consumer(conf), conf, None)


def producer_from_config(conf: dict[str, Any], *, native: bool = False) -> Producer:
    """A Producer from a configuration the settings rendered, for
    :class:`churnstream.kafka.producer.SafeProducer` (see :func:`producer`); on the native
    client with ``native`` (:mod:`churnstream.kafka.native`)."""
    make: Callable[[], Producer] = (
        (lambda: NativeProducer(conf)) if native else (lambda: Producer(conf))
    )
    return _build("producer", "producer", make, conf, None)


def _build(
    label: str,
    kind: ClientKind,
    make: Callable[[], _Client],
    conf: Mapping[str, Any],
    kafka: KafkaSettings | None,
) -> _Client:
    try:
        client = make()
    except (KafkaException, ValueError, TypeError) as exc:
        if kafka is not None:
            raise refusal(label, kind, exc, kafka) from None
        # Only the rendered configuration is at hand: scrub the secrets it holds.
        secrets = [str(conf[key]) for key in SECRET_KEYS if conf.get(key)]
        reason = scrub(error_reason(exc), secrets)
        raise BrokerError(
            f"invalid Kafka {label} configuration: {reason}{config_hint(reason)}"
        ) from None
    return client
