"""librdkafka's verdict on every client configuration churnstream builds, before it connects.

librdkafka judges a property (is it known, is the value valid, does it fit with the others)
only when a client is created. The ``kafka.librdkafka*`` settings pass properties through that
churnstream does not know, so the Kafka commands first call :func:`check_client_configs`: it
creates, and at once destroys, one throwaway client of each kind churnstream uses (admin
client, producer, transactional producer, consumer) from the configuration that kind really
gets, minus the bootstrap servers, so that nothing connects. A refusal becomes one line naming
the property and the setting it came from, with every secret scrubbed.

Two things would still reach the network when such a client is created, so the throwaway
clients do without them: an OIDC token request (its endpoint is replaced by a closed local
port) and a Kerberos ``kinit`` (the relogin is turned off).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from churnstream.exceptions import BrokerError, ChurnstreamError, ClientConfigError
from churnstream.settings import KafkaSettings, Settings
from churnstream.settings.passthrough import ClientKind

logger = logging.getLogger(__name__)

#: The group and transactional id of the throwaway clients (nothing is created under them).
CHECK_ID = "churnstream-config-check"
#: Where a throwaway client asks for an OIDC token: nothing listens on port 0, so the request
#: fails at once, without leaving the machine.
NO_TOKEN_ENDPOINT = "http://127.0.0.1:0/"  # noqa: S105 - a URL, not a password

_WARNED_PROPERTY = re.compile(r"[Pp]roperty \"?([A-Za-z0-9_.-]+)\"? is a")


class _Collector:
    """A throwaway client's ``logger``: keeps librdkafka's configuration warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def log(self, level: int, msg: str, *args: object) -> None:
        text = msg % args if args else msg
        if "CONFWARN" in text and "bootstrap.servers" not in text:  # we removed those
            self.warnings.append(text.split("]: ", 1)[-1])


def check_client_configs(settings: Settings) -> None:
    """Create and destroy a throwaway client of every kind, as the commands configure them.

    Raises ClientConfigError (exit 2) naming the ``kafka.librdkafka*`` property librdkafka
    refused; BrokerError when it refuses what churnstream rendered from the typed settings
    (e.g. a TLS key it cannot decrypt, as :func:`churnstream.kafka.clients.admin_client`
    does); ConfigError when a secret or TLS file cannot be read. librdkafka's warnings (a
    consumer property given to a producer...) are logged once each.
    """
    kafka = settings.kafka
    clients: list[tuple[str, ClientKind, Callable[[dict[str, Any]], Any], dict[str, Any]]] = [
        ("admin", "admin", AdminClient, kafka.admin_config()),
        ("producer", "producer", Producer, kafka.producer_config(settings.producer)),
        (
            "transactional producer",
            "producer",
            Producer,
            kafka.transactional_producer_config(settings.producer, CHECK_ID),
        ),
        ("consumer", "consumer", Consumer, kafka.consumer_config(settings.consumer, CHECK_ID)),
    ]
    warned: set[str] = set()
    for label, kind, factory, conf in clients:
        collector = _Collector()
        try:
            client = factory({**offline(conf), "logger": collector})
        except (KafkaException, ValueError, TypeError) as exc:
            raise refusal(label, kind, exc, kafka) from None
        try:
            if isinstance(client, Consumer):
                client.poll(0)  # serves the log queue
                client.close()
            else:
                client.poll(0)
        finally:
            del client
        for text in collector.warnings:
            if text not in warned:
                warned.add(text)
                logger.warning("%s", _named(text, kind, kafka))
    logger.debug("librdkafka accepts the admin, producer and consumer configurations")


def offline(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` for a throwaway client: no bootstrap servers, no token request, no kinit."""
    conf = dict(conf)
    conf.pop("bootstrap.servers", None)
    conf.pop("metadata.broker.list", None)
    if str(conf.get("sasl.oauthbearer.method", "")).lower() == "oidc":
        conf["sasl.oauthbearer.token.endpoint.url"] = NO_TOKEN_ENDPOINT
    if "sasl.oauthbearer.metadata.authentication.type" in conf:
        # A cloud metadata service would be asked for a token (azure_imds).
        conf["sasl.oauthbearer.metadata.authentication.type"] = "none"
    mechanism = conf.get("sasl.mechanism", conf.get("sasl.mechanisms", ""))
    if str(mechanism).upper() == "GSSAPI":
        conf["sasl.kerberos.min.time.before.relogin"] = 0
    return conf


def refusal(
    label: str, kind: ClientKind, exc: BaseException, kafka: KafkaSettings
) -> ChurnstreamError:
    """The one-line error for librdkafka refusing a ``label`` client's configuration.

    Names the ``kafka.librdkafka*`` property at fault: the one librdkafka's text names, else
    the one librdkafka refuses on its own (its text may name a property by its canonical
    name, e.g. queue.buffering.max.ms for linger.ms). Scrubs every configured secret.
    """
    reason = _scrub(_text(exc), kafka)
    given = kafka.passthrough(kind)
    culprit = next((name for name in given if _mentions(reason, name)), None)
    if culprit is None and not reason.startswith("Failed to create"):
        # A property librdkafka refused as it was set (not in a check of the whole).
        culprit = _refused_alone(given)
    client = "admin client" if label == "admin" else label
    if culprit is not None:
        source = kafka.passthrough_source(culprit, kind)
        return ClientConfigError(f"{source}: librdkafka refused it for the {client}: {reason}")
    if given:
        return ClientConfigError(
            f"librdkafka refused the {client} configuration (kafka.librdkafka* properties "
            f"included): {reason}{config_hint(reason)}"
        )
    return BrokerError(f"invalid Kafka {label} configuration: {reason}{config_hint(reason)}")


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", text) is not None


def _refused_alone(properties: dict[str, str]) -> str | None:
    """The first property librdkafka refuses even with nothing else set, if any."""
    for name, value in properties.items():
        try:
            client = Producer({name: value, "logger": _Collector()})
        except (KafkaException, ValueError, TypeError):
            return name
        del client
    return None


def config_hint(reason: str) -> str:
    """What to check when librdkafka refuses a TLS file at client creation."""
    for key, setting, what in (
        (
            "ssl.key.location",
            "kafka.ssl_key_location",
            "a PEM private key, and is kafka.ssl_key_password (or _file) its password",
        ),
        ("ssl.certificate.location", "kafka.ssl_certificate_location", "a PEM certificate"),
        ("ssl.ca.location", "kafka.ssl_ca_location", "a PEM CA certificate or bundle"),
    ):
        if key in reason:
            return f"; is {setting} {what}?"
    return ""


def _named(warning: str, kind: ClientKind, kafka: KafkaSettings) -> str:
    match = _WARNED_PROPERTY.search(warning)
    source = kafka.passthrough_source(match.group(1), kind) if match else None
    if source is None:
        return f"librdkafka: {warning}"
    return (
        f"{source}: librdkafka: {warning} (a property of one kind of client belongs in "
        "kafka.librdkafka_producer, kafka.librdkafka_consumer or kafka.librdkafka_admin)"
    )


def _text(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return str(err.str())
    return str(exc)


def _scrub(text: str, kafka: KafkaSettings) -> str:
    for secret in kafka.secret_values():
        text = text.replace(secret, "***")
    return " ".join(text.split())
