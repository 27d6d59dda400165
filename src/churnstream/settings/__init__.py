"""Typed, frozen settings.

Precedence, lowest to highest: built-in defaults < YAML file < environment
(``CHURNSTREAM_*``, nested with ``__``) < CLI flags (applied with :func:`with_overrides`).

The YAML file is ``$CHURNSTREAM_CONFIG`` if set, else ``config/churnstream.yaml`` in the
working directory if it exists; without one the built-in defaults apply, and they are the
same values as the shipped YAML (a unit test keeps the two in step).

The package's modules each hold one part: :mod:`~churnstream.settings.kafka` the connection
and every librdkafka client configuration, :mod:`~churnstream.settings.sections` the other
sections, :mod:`~churnstream.settings.load` the root :class:`Settings`, loading, overrides and
masking. Import from ``churnstream.settings``.
"""

from __future__ import annotations

from churnstream.settings.kafka import TRANSACTION_TIMEOUT_MS, KafkaSettings
from churnstream.settings.load import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    Settings,
    load_settings,
    masked_dump,
    with_overrides,
)
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
    TopicSettings,
    TopicsSettings,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "TRANSACTION_TIMEOUT_MS",
    "ApiSettings",
    "BrokerSettings",
    "ConsumerSettings",
    "KafkaSettings",
    "ModelSettings",
    "ObservabilitySettings",
    "PathsSettings",
    "PredictSettings",
    "ProducerSettings",
    "PromotionSettings",
    "ScoringSettings",
    "SparkSettings",
    "Settings",
    "TopicSettings",
    "TopicsSettings",
    "load_settings",
    "masked_dump",
    "with_overrides",
]
