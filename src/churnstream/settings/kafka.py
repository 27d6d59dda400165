"""The kafka section: the connection, its security checks, and every client configuration."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from churnstream.exceptions import ConfigError
from churnstream.logging import LIBRDKAFKA_LOG
from churnstream.settings import passthrough, sasl
from churnstream.settings.files import (
    SECRETS,
    SecretName,
    check_readable,
    listing,
    peek_secret_file,
    read_secret_file,
)
from churnstream.settings.passthrough import ClientKind, LibrdkafkaValue
from churnstream.settings.sections import ConsumerSettings, ProducerSettings, _Frozen

logger = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 10_000
#: librdkafka evicts a group member that has not called poll/consume for this long (checked
#: twice a second): its partitions go to the other members, and its next consume returns
#: _MAX_POLL_EXCEEDED and rejoins. The scorer's longest stretch without a poll is one batch's
#: publish, bounded to about 30-40 s by churnstream.streaming.publish (LONGEST_PUBLISH_S; a
#: unit test keeps them apart), so a scorer stuck longer than this loses its partitions to a
#: healthy peer after one minute instead of librdkafka's default five.
MAX_POLL_INTERVAL_MS = 60_000
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_TLS_SETTINGS = (
    "ssl_ca_location",
    "ssl_certificate_location",
    "ssl_key_location",
    "ssl_key_password",
    "ssl_key_password_file",
)


class KafkaSettings(_Frozen):
    """Connection to the cluster. librdkafka's dotted keys live only in this module and
    :mod:`~churnstream.settings.sasl`, plus the raw ones of the ``librdkafka*`` settings.

    Security: ``security_protocol`` SASL_PLAINTEXT or SASL_SSL needs ``sasl_mechanism`` and
    what that mechanism needs (see :mod:`churnstream.settings.sasl`): for PLAIN and SCRAM,
    ``sasl_username`` and a password, given either as ``sasl_password`` (best from
    ``CHURNSTREAM_KAFKA__SASL_PASSWORD``) or as ``sasl_password_file``. SSL and SASL_SSL verify
    the brokers against ``ssl_ca_location`` (default: the system's CAs); a client certificate
    is ``ssl_certificate_location`` plus ``ssl_key_location``, and an encrypted key's password
    is ``ssl_key_password`` or ``ssl_key_password_file``. Secrets are ``SecretStr``; the
    ``*_file`` ones are read each time a client is configured (so a rotated secret reaches the
    next client) and only their path is ever shown. An incoherent combination is refused when
    the settings load, an unreadable file when a client is configured; settings that the
    protocol or the mechanism does not use are left out of the client configuration, with a
    warning.

    Pass-through: ``librdkafka`` (every client), ``librdkafka_producer``,
    ``librdkafka_consumer`` and ``librdkafka_admin`` map raw librdkafka properties to values;
    they are applied last, over everything above (see :mod:`churnstream.settings.passthrough`).
    """

    # Pydantic puts the raw input, secrets included, into validation errors unless told not to.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "churnstream"
    # Quick group joins: a rebalance waits about half of this on small clusters.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: sasl.Mechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    #: OAUTHBEARER: "oidc" fetches tokens from an identity provider (client credentials);
    #: "unsecured-jwt" makes unsigned tokens, which only a test cluster accepts.
    sasl_oauthbearer_method: Literal["oidc", "unsecured-jwt"] = "oidc"
    sasl_oauthbearer_client_id: str | None = None
    sasl_oauthbearer_client_secret: SecretStr | None = None
    sasl_oauthbearer_client_secret_file: Path | None = None
    sasl_oauthbearer_token_endpoint_url: str | None = None
    sasl_oauthbearer_scope: str | None = None
    #: Comma-separated key=value pairs (Confluent Cloud: logicalCluster=...,identityPoolId=...).
    sasl_oauthbearer_extensions: str | None = None
    #: unsecured-jwt: librdkafka's token recipe, e.g. "principal=admin scope=a,b".
    sasl_oauthbearer_config: str | None = None
    #: GSSAPI (Kerberos); the service name defaults to librdkafka's "kafka".
    sasl_kerberos_service_name: str | None = None
    sasl_kerberos_principal: str | None = None
    sasl_kerberos_keytab: Path | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: Path | None = None
    librdkafka: dict[str, LibrdkafkaValue] = Field(default_factory=dict)
    librdkafka_producer: dict[str, LibrdkafkaValue] = Field(default_factory=dict)
    librdkafka_consumer: dict[str, LibrdkafkaValue] = Field(default_factory=dict)
    librdkafka_admin: dict[str, LibrdkafkaValue] = Field(default_factory=dict)

    @field_validator(*passthrough.PASSTHROUGH_SETTINGS, mode="before")
    @classmethod
    def _passthrough_properties(cls, value: Any, info: ValidationInfo) -> Any:
        # Raises ClientConfigError, which (like ConfigError below) pydantic does not wrap.
        return passthrough.check_properties(info.field_name or "librdkafka", value)

    @model_validator(mode="after")
    def _coherent_security(self) -> KafkaSettings:
        problem = self.security_problem()
        if problem is not None:
            # Not a ValueError on purpose: pydantic would wrap it in a ValidationError whose
            # text (and the traceback of anything chained to it) shows the whole kafka input,
            # secrets included. A ConfigError passes through validation as it is.
            raise ConfigError(f"invalid kafka settings: {problem}")
        return self

    def security_problem(self) -> str | None:
        """Why the security settings cannot work together, or None when they are coherent.

        Only what can be known without the cluster is checked: e.g. whether the brokers'
        certificates need ``ssl_ca_location`` is learnt at the TLS handshake. The
        ``librdkafka*`` properties are librdkafka's to judge, not checked here.
        """
        for name in SECRETS:
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                return f"set kafka.{name} or kafka.{name}_file, not both"
        if self.security_protocol in SASL_PROTOCOLS:
            problem = sasl.problem(self)
            if problem is not None:
                return problem
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            return (
                "kafka.ssl_certificate_location and kafka.ssl_key_location go together "
                "(a client certificate needs its private key)"
            )
        if self.ssl_key_location is None and (
            self.ssl_key_password is not None or self.ssl_key_password_file is not None
        ):
            return "a key password is set, but kafka.ssl_key_location is not"
        return None

    def unused_settings(self) -> list[str]:
        """Security settings that are set but that ``security_protocol`` does not use.

        Not an error (a secret may be in the environment for another run), but a likely
        mistake: :meth:`client_config` logs a warning naming them.
        """
        unused: list[str] = []
        if self.security_protocol not in SASL_PROTOCOLS:
            unused += sasl.SETTINGS
        if self.security_protocol not in TLS_PROTOCOLS:
            unused += _TLS_SETTINGS
        return [f"kafka.{name}" for name in unused if getattr(self, name) is not None]

    def client_config(self, kind: ClientKind | None = None) -> dict[str, Any]:
        """librdkafka configuration common to producers, consumers and admin clients.

        The ``librdkafka`` properties come last, and after them those of
        ``librdkafka_<kind>`` when ``kind`` says which client this is for. Reads the
        ``*_file`` secrets and checks that the TLS and keytab files are readable; raises
        ConfigError (naming the setting and the path, never a secret) when one is not.
        """
        return self._with_passthrough(self._connection_config(), kind)

    def producer_config(self, producer: ProducerSettings) -> dict[str, Any]:
        conf = self._connection_config()
        conf.update(self._producer_properties(producer))
        return self._with_passthrough(conf, "producer")

    def consumer_config(self, consumer: ConsumerSettings, group_id: str) -> dict[str, Any]:
        conf = self._connection_config()
        conf.update(
            {
                "group.id": group_id,
                "session.timeout.ms": self.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.session_timeout_ms // 3),
                "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
                "auto.offset.reset": consumer.auto_offset_reset,
                # Offsets are committed by hand, only after the batch's outputs are acknowledged.
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "isolation.level": consumer.isolation_level,
                "fetch.min.bytes": consumer.fetch_min_bytes,
                "fetch.wait.max.ms": consumer.fetch_wait_max_ms,
                "max.partition.fetch.bytes": consumer.max_partition_fetch_bytes,
                "queued.max.messages.kbytes": consumer.queued_max_kbytes,
                "fetch.queue.backoff.ms": consumer.fetch_queue_backoff_ms,
            }
        )
        return self._with_passthrough(conf, "consumer")

    def admin_config(self) -> dict[str, Any]:
        return self.client_config("admin")

    def transactional_producer_config(
        self, producer: ProducerSettings, transactional_id: str
    ) -> dict[str, Any]:
        """Producer config for exactly-once scoring (read-process-write transactions)."""
        conf = self._connection_config()
        conf.update(self._producer_properties(producer))
        conf["transactional.id"] = transactional_id
        # Bounds how long an abandoned transaction (a crashed scorer that never comes back
        # with the same id) holds back read_committed readers.
        conf["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
        # librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        conf["message.timeout.ms"] = min(producer.delivery_timeout_ms, TRANSACTION_TIMEOUT_MS)
        return self._with_passthrough(conf, "producer")

    def passthrough(self, kind: ClientKind | None = None) -> dict[str, str]:
        """The pass-through properties a ``kind`` client gets, as librdkafka strings."""
        settings = [passthrough.COMMON_SETTING]
        if kind is not None:
            settings.append(passthrough.KIND_SETTINGS[kind])
        merged: dict[str, str] = {}
        for setting in settings:
            for name, value in getattr(self, setting).items():
                merged[name] = passthrough.librdkafka_value(value)
        return merged

    def passthrough_source(self, name: str, kind: ClientKind | None) -> str | None:
        """Which setting gives a ``kind`` client property ``name``, e.g.
        ``kafka.librdkafka_producer["linger.ms"]``; None if no pass-through setting does."""
        if kind is not None and name in getattr(self, passthrough.KIND_SETTINGS[kind]):
            return passthrough.where(passthrough.KIND_SETTINGS[kind], name)
        if name in self.librdkafka:
            return passthrough.where(passthrough.COMMON_SETTING, name)
        return None

    def credentials_hint(self) -> str:
        """Which settings to check when the cluster refuses our SASL credentials."""
        return sasl.credentials_hint(self)

    def secret_values(self) -> list[str]:
        """The secrets' values (inline, from their files, or passed through), to scrub them."""
        inline = (self.sasl_password, self.ssl_key_password, self.sasl_oauthbearer_client_secret)
        values = [s.get_secret_value() for s in inline if s is not None]
        for path in (
            self.sasl_password_file,
            self.ssl_key_password_file,
            self.sasl_oauthbearer_client_secret_file,
        ):
            values.append(peek_secret_file(path) or "")
        for setting in passthrough.PASSTHROUGH_SETTINGS:
            values += passthrough.secret_values(getattr(self, setting))
        return [v for v in values if v]

    def secret(self, name: SecretName) -> str | None:
        """The secret setting ``name``'s value: inline, or read now from its ``<name>_file``."""
        inline: SecretStr | None = getattr(self, name)
        if inline is not None:
            return inline.get_secret_value()
        file: Path | None = getattr(self, f"{name}_file")
        if file is not None:
            return read_secret_file(file, f"kafka.{name}_file")
        return None

    def _connection_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "logger": LIBRDKAFKA_LOG,
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        unused = self.unused_settings()
        if unused:
            logger.warning(
                "%s set, but kafka.security_protocol is %s, which does not use %s",
                listing(unused),
                self.security_protocol,
                "it" if len(unused) == 1 else "them",
            )
        if self.security_protocol in SASL_PROTOCOLS:
            conf.update(sasl.client_properties(self))
        if self.security_protocol in TLS_PROTOCOLS:
            conf.update(self._tls_properties())
        return conf

    def _tls_properties(self) -> dict[str, Any]:
        conf: dict[str, Any] = {}
        ca = self.ssl_ca_location
        if ca is not None:
            if str(ca) != "probe":  # librdkafka's "look in the system's usual places"
                check_readable(ca, "kafka.ssl_ca_location", directory_ok=True)
            conf["ssl.ca.location"] = str(ca)
        if self.ssl_certificate_location is not None and self.ssl_key_location is not None:
            cert, key = self.ssl_certificate_location, self.ssl_key_location
            check_readable(cert, "kafka.ssl_certificate_location")
            check_readable(key, "kafka.ssl_key_location")
            conf["ssl.certificate.location"] = str(cert)
            conf["ssl.key.location"] = str(key)
        password = self.secret("ssl_key_password")
        if password is not None:
            conf["ssl.key.password"] = password
        return conf

    @staticmethod
    def _producer_properties(producer: ProducerSettings) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": producer.linger_ms,
            "batch.num.messages": producer.batch_num_messages,
            "batch.size": producer.batch_max_bytes,
            "compression.type": producer.compression,
            "message.timeout.ms": producer.delivery_timeout_ms,
            "queue.buffering.max.messages": producer.queue_max_messages,
        }
        if producer.compression == "gzip":
            properties["compression.level"] = producer.gzip_level
        return properties

    def _with_passthrough(self, conf: dict[str, Any], kind: ClientKind | None) -> dict[str, Any]:
        for name, value in self.passthrough(kind).items():
            # Moved to the end, not updated in place: librdkafka sets the properties in this
            # order, so a pass-through alias (queue.buffering.max.ms) beats linger.ms too.
            conf.pop(name, None)
            conf[name] = value
        return conf
