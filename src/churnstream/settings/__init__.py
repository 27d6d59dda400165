"""Typed, frozen settings.

Precedence, lowest to highest: built-in defaults < YAML file < environment
(``CHURNSTREAM_*``, nested with ``__``) < CLI flags (applied with :func:`with_overrides`).

The YAML file is ``$CHURNSTREAM_CONFIG`` if set, else ``config/churnstream.yaml`` in the
working directory if it exists; without one the built-in defaults apply, and they are the
same values as the shipped YAML (a unit test keeps the two in step).

The package's modules each hold one part: :mod:`~churnstream.settings.kafka` the connection
and every librdkafka client configuration, :mod:`~churnstream.settings.sections` the other
sections, :mod:`~churnstream.settings.load` the root :class:`Settings`, loading, overrides and
masking. The root, its loading and :class:`KafkaSettings` (which the Kafka adapters take on
their own) are imported from ``churnstream.settings``; any other section's class from its
module (:mod:`~churnstream.settings.sections`, :mod:`~churnstream.settings.promotion`).
"""

from __future__ import annotations

from churnstream.settings.kafka import KafkaSettings
from churnstream.settings.load import (
    CONFIG_ENV_VAR,
    Settings,
    load_settings,
    masked_dump,
    with_overrides,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "KafkaSettings",
    "Settings",
    "load_settings",
    "masked_dump",
    "with_overrides",
]
