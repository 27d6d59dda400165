"""The root Settings, where they come from (YAML, environment), overrides and masking."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from churnstream.exceptions import ConfigError
from churnstream.settings import passthrough
from churnstream.settings.kafka import KafkaSettings
from churnstream.settings.promotion import PromotionSettings
from churnstream.settings.sections import (
    ApiSettings,
    BrokerSettings,
    ConsumerSettings,
    ModelSettings,
    ObservabilitySettings,
    PathsSettings,
    PredictSettings,
    ProducerSettings,
    ScoringSettings,
    SparkSettings,
    TopicsSettings,
)

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("config/churnstream.yaml")
CONFIG_ENV_VAR = "CHURNSTREAM_CONFIG"


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
    spark: SparkSettings = SparkSettings()
    scoring: ScoringSettings = ScoringSettings()
    predict: PredictSettings = PredictSettings()
    paths: PathsSettings = PathsSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    api: ApiSettings = ApiSettings()
    promotion: PromotionSettings = PromotionSettings()

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
    unreadable: str | None = None
    try:
        settings = Settings()
    except ValidationError as exc:
        # `from None`: the chained error holds the raw input, secrets included.
        raise ConfigError(_first_error(exc)) from None
    except SettingsError as exc:
        # e.g. an environment variable for a mapping that is not a JSON object. The text
        # names the field and the source, not the value; the errors chained to it have the
        # value, so the ConfigError is raised outside this block, with no context at all.
        unreadable = str(exc)
    if unreadable is not None:
        raise ConfigError(
            f"invalid setting: {unreadable} (in the environment, a mapping such as "
            "kafka.librdkafka is a JSON object: "
            'CHURNSTREAM_KAFKA__LIBRDKAFKA=\'{"client.rack": "use1-az1"}\')'
        )
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
    """Settings as plain JSON-able data with every secret masked.

    Typed secrets are ``SecretStr`` (dumped as ``**********``); in the ``kafka.librdkafka*``
    mappings, the values of properties whose names say they hold a secret are masked.
    """
    data = settings.model_dump(mode="json")
    for setting in passthrough.PASSTHROUGH_SETTINGS:
        data["kafka"][setting] = passthrough.masked(data["kafka"][setting])
    return data
