"""The kafka section: the connection, its security checks, and every client configuration."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from churnstream.exceptions import ConfigError
from churnstream.logging import LIBRDKAFKA_LOG
from churnstream.settings.sections import ConsumerSettings, ProducerSettings, _Frozen

logger = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 10_000


class KafkaSettings(_Frozen):
    """Connection to the cluster. librdkafka's dotted keys live only in :meth:`client_config`.

    Security: ``security_protocol`` SASL_PLAINTEXT or SASL_SSL needs ``sasl_mechanism``,
    ``sasl_username`` and a password, given either as ``sasl_password`` (best from
    ``CHURNSTREAM_KAFKA__SASL_PASSWORD``) or as ``sasl_password_file``. SSL and SASL_SSL verify
    the brokers against ``ssl_ca_location`` (default: the system's CAs); a client certificate
    is ``ssl_certificate_location`` plus ``ssl_key_location``, and an encrypted key's password
    is ``ssl_key_password`` or ``ssl_key_password_file``. Secrets are ``SecretStr``; the
    ``*_file`` ones are read each time a client is configured (so a rotated secret reaches the
    next client) and only their path is ever shown. An incoherent combination is refused when
    the settings load, an unreadable file when a client is configured; settings that the
    protocol does not use are left out of the client configuration, with a warning.
    """

    # Pydantic puts the raw input, secrets included, into validation errors unless told not to.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "churnstream"
    # Quick group joins: a rebalance waits about half of this on small clusters.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: Path | None = None

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
        certificates need ``ssl_ca_location`` is learnt at the TLS handshake.
        """
        if self.sasl_password is not None and self.sasl_password_file is not None:
            return "set kafka.sasl_password or kafka.sasl_password_file, not both"
        if self.ssl_key_password is not None and self.ssl_key_password_file is not None:
            return "set kafka.ssl_key_password or kafka.ssl_key_password_file, not both"
        if self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            missing = []
            if self.sasl_mechanism is None:
                missing.append("kafka.sasl_mechanism")
            if not self.sasl_username:
                missing.append("kafka.sasl_username")
            if self.sasl_password_file is None and (
                self.sasl_password is None or not self.sasl_password.get_secret_value()
            ):
                missing.append("kafka.sasl_password (or kafka.sasl_password_file)")
            if missing:
                return (
                    f"kafka.security_protocol is {self.security_protocol}, which needs "
                    f"{self._listing(missing)}"
                )
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
        unused = []
        if self.security_protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
            unused += ["sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file"]
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            unused += [
                "ssl_ca_location",
                "ssl_certificate_location",
                "ssl_key_location",
                "ssl_key_password",
                "ssl_key_password_file",
            ]
        return [f"kafka.{name}" for name in unused if getattr(self, name) is not None]

    def client_config(self) -> dict[str, Any]:
        """Common librdkafka configuration for producers, consumers and admin clients.

        Reads the ``*_file`` secrets and checks that the TLS files are readable; raises
        ConfigError (naming the setting and the path, never a secret) when one is not.
        """
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
                self._listing(unused),
                self.security_protocol,
                "it" if len(unused) == 1 else "them",
            )
        if self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            if self.sasl_password is not None:
                conf["sasl.password"] = self.sasl_password.get_secret_value()
            elif self.sasl_password_file is not None:
                conf["sasl.password"] = self._read_secret_file(
                    self.sasl_password_file, "kafka.sasl_password_file"
                )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            ca = self.ssl_ca_location
            if ca is not None:
                if str(ca) != "probe":  # librdkafka's "look in the system's usual places"
                    self._check_readable(ca, "kafka.ssl_ca_location", directory_ok=True)
                conf["ssl.ca.location"] = str(ca)
            if self.ssl_certificate_location is not None and self.ssl_key_location is not None:
                cert, key = self.ssl_certificate_location, self.ssl_key_location
                self._check_readable(cert, "kafka.ssl_certificate_location")
                self._check_readable(key, "kafka.ssl_key_location")
                conf["ssl.certificate.location"] = str(cert)
                conf["ssl.key.location"] = str(key)
            if self.ssl_key_password is not None:
                conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            elif self.ssl_key_password_file is not None:
                conf["ssl.key.password"] = self._read_secret_file(
                    self.ssl_key_password_file, "kafka.ssl_key_password_file"
                )
        return conf

    def secret_values(self) -> list[str]:
        """The secrets' values (inline or from their files), to scrub them from messages."""
        values = [s.get_secret_value() for s in (self.sasl_password, self.ssl_key_password) if s]
        for path in (self.sasl_password_file, self.ssl_key_password_file):
            if path is not None:
                try:
                    values.append(path.read_text(encoding="utf-8").rstrip("\r\n"))
                except (OSError, UnicodeDecodeError):
                    pass  # unreadable: client_config() reports it; nothing to scrub
        return [v for v in values if v]

    @staticmethod
    def _listing(names: list[str]) -> str:
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"

    @staticmethod
    def _read_secret_file(path: Path, setting: str) -> str:
        """The secret in ``path``: its only line, without the line break. Never echoed."""
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{setting}: {path} is not UTF-8 text") from None
        except OSError as exc:
            reason = exc.strerror or "unreadable"
            raise ConfigError(f"{setting}: cannot read {path} ({reason})") from None
        secret = text.rstrip("\r\n")
        if not secret:
            raise ConfigError(f"{setting}: {path} is empty")
        if "\n" in secret or "\r" in secret:
            raise ConfigError(f"{setting}: {path} has more than one line, not just the secret")
        return secret

    @staticmethod
    def _check_readable(path: Path, setting: str, *, directory_ok: bool = False) -> None:
        if directory_ok and path.is_dir():
            return
        if not path.is_file():
            raise ConfigError(f"{setting}: {path} does not exist or is not a file")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{setting}: {path} is not readable")

    def producer_config(self, producer: ProducerSettings) -> dict[str, Any]:
        conf = self.client_config()
        conf.update(
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": producer.linger_ms,
                "batch.num.messages": producer.batch_num_messages,
                "batch.size": producer.batch_max_bytes,
                "compression.type": producer.compression,
                "message.timeout.ms": producer.delivery_timeout_ms,
                "queue.buffering.max.messages": producer.queue_max_messages,
            }
        )
        return conf

    def consumer_config(self, consumer: ConsumerSettings, group_id: str) -> dict[str, Any]:
        conf = self.client_config()
        conf.update(
            {
                "group.id": group_id,
                "session.timeout.ms": self.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.session_timeout_ms // 3),
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
            }
        )
        return conf

    def admin_config(self) -> dict[str, Any]:
        return self.client_config()

    def transactional_producer_config(
        self, producer: ProducerSettings, transactional_id: str
    ) -> dict[str, Any]:
        """Producer config for exactly-once scoring (read-process-write transactions)."""
        conf = self.producer_config(producer)
        conf["transactional.id"] = transactional_id
        # Bounds how long an abandoned transaction (a crashed scorer that never comes back
        # with the same id) holds back read_committed readers.
        conf["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
        # librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        conf["message.timeout.ms"] = min(producer.delivery_timeout_ms, TRANSACTION_TIMEOUT_MS)
        return conf
