"""Typed, frozen settings.

Precedence, lowest to highest: built-in defaults < YAML file < environment
(``CHURNSTREAM_*``, nested with ``__``) < CLI flags (applied with :func:`with_overrides`).

The YAML file is ``$CHURNSTREAM_CONFIG`` if set, else ``config/churnstream.yaml`` in the
working directory if it exists; without one the built-in defaults apply, and they are the
same values as the shipped YAML (a unit test keeps the two in step).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from churnstream.exceptions import ConfigError
from churnstream.logging import LIBRDKAFKA_LOG

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("config/churnstream.yaml")
TRANSACTION_TIMEOUT_MS = 10_000
CONFIG_ENV_VAR = "CHURNSTREAM_CONFIG"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSettings(_Frozen):
    name: str
    partitions: int = Field(ge=1)
    replication_factor: int = Field(default=1, ge=1)


class TopicsSettings(_Frozen):
    raw: TopicSettings = TopicSettings(name="telco.raw.customers", partitions=3)
    predictions: TopicSettings = TopicSettings(name="telco.churn.predictions", partitions=3)
    deadletter: TopicSettings = TopicSettings(name="telco.deadletter", partitions=1)


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


class ProducerSettings(_Frozen):
    """Producer tuning; the reasons for each default are in docs/benchmarks.md."""

    events_per_sec: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=500, ge=1)
    # Short: the event producer's linger is part of every event's end-to-end latency, and
    # the scorer flushes each micro-batch anyway (a flush sends at once, linger or not).
    linger_ms: int = Field(default=2, ge=0)
    batch_num_messages: int = Field(default=10_000, ge=1)
    # Bytes per partition batch: 10,000 records of ~250 bytes fit one request.
    batch_max_bytes: int = Field(default=1_000_000, ge=1)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    delivery_timeout_ms: int = Field(default=30_000, ge=1000)
    queue_max_messages: int = Field(default=100_000, ge=1)
    checkpoint_file: Path = Path(".churnstream/producer_checkpoint.json")


class ConsumerSettings(_Frozen):
    """Consumer tuning; the reasons for each default are in docs/benchmarks.md."""

    group_id: str = "churnstream-scorer"
    # Large micro-batches amortise the per-batch flush and commit round trips under load;
    # a short wait keeps latency low when traffic is light (a poll returns as soon as
    # max_batch_records are queued, so the wait only matters below that).
    max_batch_records: int = Field(default=5000, ge=1)
    max_batch_wait_ms: int = Field(default=5, ge=1)
    idle_timeout_ms: int = Field(default=10_000, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    fetch_min_bytes: int = Field(default=1, ge=1)
    fetch_wait_max_ms: int = Field(default=100, ge=0)
    max_partition_fetch_bytes: int = Field(default=1_048_576, ge=1)
    # librdkafka's prefetch queue (default 64 MB): a few batches ahead is enough, and it
    # bounds the scorer's memory when it starts behind a large backlog.
    queued_max_kbytes: int = Field(default=16_384, ge=1)
    summary_interval_s: float = Field(default=60.0, gt=0)
    top_k: int = Field(default=10, ge=1)


class BrokerSettings(_Frozen):
    """The embedded broker, used only when ``kafka.bootstrap_servers`` points at it."""

    engine: Literal["auto", "kafka", "tansu"] = "auto"
    host: str = "127.0.0.1"
    port: int = Field(default=19092, ge=1, le=65535)
    controller_port: int | None = Field(default=None, ge=1, le=65535)
    state_dir: Path = Path(".churnstream/broker")
    kafka_version: str = "4.1.1"
    jars_dir: Path = Path(".churnstream/kafka-jars")
    heap: str = "512m"
    start_timeout_s: float = Field(default=90.0, gt=0)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


class ModelSettings(_Frozen):
    models_dir: Path = Path("models")
    # "ensemble": soft vote of logistic regression and histogram gradient boosting, the best
    # by cross-validated ROC AUC on the training part (see churnstream.model.train).
    algorithm: Literal["logreg", "gbm", "hgb", "ensemble"] = "ensemble"
    random_state: int = 42
    test_size: float = Field(default=0.2, gt=0, lt=1)
    cv_folds: int = Field(default=5, ge=2)


class PathsSettings(_Frozen):
    data_dir: Path = Path("data")
    raw_csv: Path = Path("data/raw/telco_customer_churn.csv")
    reports_dir: Path = Path("reports")
    logs_dir: Path = Path("logs")


class ObservabilitySettings(_Frozen):
    """Metrics and health endpoints, readiness thresholds, drift checks and the dashboard."""

    #: Where ``--metrics-port`` serves /metrics and /health/*; 0.0.0.0 exposes it to others.
    metrics_host: str = "127.0.0.1"
    #: None: no metrics server unless ``--metrics-port`` is given; 0: any free port.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    #: Consumer lag is recomputed (from cached watermarks) at most this often.
    lag_refresh_s: float = Field(default=2.0, gt=0)
    #: /health/ready fails while the scorer's total lag is above this.
    ready_max_lag: int = Field(default=10_000, ge=0)
    #: The broker counts as reachable for this long after a batch or a metadata probe.
    broker_check_interval_s: float = Field(default=10.0, gt=0)
    broker_check_timeout_s: float = Field(default=2.0, gt=0)
    #: /health/live fails if the running loop has not polled for this long.
    stall_timeout_s: float = Field(default=60.0, gt=0)
    #: A feature drifts when its PSI against the training profile is above this.
    drift_psi_threshold: float = Field(default=0.2, gt=0)
    #: Windows with fewer scored messages are reported but never flagged (PSI noise).
    drift_min_samples: int = Field(default=200, ge=1)
    #: Largest tolerated |predicted churn rate - expected rate| before it counts as drift.
    drift_churn_rate_tolerance: float = Field(default=0.1, gt=0, le=1)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8050, ge=0, le=65535)
    #: How often the dashboard page asks for new numbers.
    dashboard_refresh_ms: int = Field(default=1000, ge=100)


class ApiSettings(_Frozen):
    """`churnstream serve`: the REST API (POST /predict, GET /model, /health/*, /metrics).

    ``token`` (best from ``CHURNSTREAM_API__TOKEN``) turns on bearer authentication for every
    route but /health/* and the OpenAPI docs; unset, the API is open, so keep ``host`` on
    127.0.0.1 or put it behind something that authenticates.
    """

    # Pydantic puts the raw input, the token included, into validation errors otherwise.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    #: 0.0.0.0 serves other hosts too.
    host: str = "127.0.0.1"
    #: 0: any free port (printed at start-up).
    port: int = Field(default=8000, ge=0, le=65535)
    token: SecretStr | None = None
    #: Most records one POST /predict may carry (more: 422); one model call scores them all.
    max_batch_records: int = Field(default=1000, ge=1)
    #: Largest request body (more: 413). A record is about 600 bytes of JSON.
    max_body_bytes: int = Field(default=2_097_152, ge=1024)

    @model_validator(mode="after")
    def _token_not_blank(self) -> ApiSettings:
        if self.token is not None and not self.token.get_secret_value().strip():
            # A ConfigError, like the kafka settings': never wrapped with the input in it.
            raise ConfigError("invalid api settings: api.token is blank (unset it for no auth)")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHURNSTREAM_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        # A validation error must never echo a secret it was given.
        hide_input_in_errors=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicsSettings = TopicsSettings()
    producer: ProducerSettings = ProducerSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    broker: BrokerSettings = BrokerSettings()
    model: ModelSettings = ModelSettings()
    paths: PathsSettings = PathsSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    api: ApiSettings = ApiSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = _config_path()
        if yaml_path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        sources.append(file_secret_settings)
        return tuple(sources)

    @property
    def uses_embedded_broker(self) -> bool:
        """True when the configured cluster is the embedded broker's address."""
        servers = [s.strip() for s in self.kafka.bootstrap_servers.split(",") if s.strip()]
        local = {f"127.0.0.1:{self.broker.port}", f"localhost:{self.broker.port}"}
        return len(servers) == 1 and servers[0] in local


def _config_path() -> Path | None:
    explicit = os.environ.get(CONFIG_ENV_VAR)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} (from ${CONFIG_ENV_VAR}) does not exist")
        return path
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Load settings from YAML and environment, then apply dotted CLI overrides.

    ``load_settings(**{"kafka.bootstrap_servers": "host:9092"})``; ``None`` values are ignored
    so that unset CLI flags keep the lower layers' values.
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        # `from None`: the chained error holds the raw input, secrets included.
        raise ConfigError(_first_error(exc)) from None
    return with_overrides(settings, overrides)


def with_overrides(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """Return a copy of ``settings`` with dotted-path overrides applied and validated."""
    data = settings.model_dump()
    changed = False
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            if part not in node or not isinstance(node[part], dict):
                raise ConfigError(f"unknown setting {dotted!r}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"unknown setting {dotted!r}")
        node[leaf] = value
        changed = True
    if not changed:
        return settings
    try:
        return Settings.model_validate(_unwrap_secrets(data))
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None


def _unwrap_secrets(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _unwrap_secrets(v) for k, v in value.items()}
    return value


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    return f"invalid setting {where}: {err['msg']}"


def masked_dump(settings: Settings) -> dict[str, Any]:
    """Settings as plain JSON-able data with every secret masked."""
    return settings.model_dump(mode="json")  # SecretStr dumps as '**********'
