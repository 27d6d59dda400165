"""The librdkafka pass-through: raw client properties in ``kafka.librdkafka*`` settings.

Four mappings of librdkafka property to value: ``kafka.librdkafka`` for every client,
``kafka.librdkafka_producer``, ``kafka.librdkafka_consumer`` and ``kafka.librdkafka_admin``
for one kind of client. They are applied last, over what churnstream renders from its typed
settings, the client-specific one after the common one. Properties that churnstream's
guarantees or its commands depend on are refused (:data:`REFUSED`). Whether librdkafka knows
a property and accepts its value is learnt only when a client is created; the Kafka commands
do that with throwaway clients before they connect (``churnstream.kafka.clientcheck``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from churnstream.exceptions import ClientConfigError

logger = logging.getLogger(__name__)

ClientKind = Literal["producer", "consumer", "admin"]
LibrdkafkaValue = str | int | float | bool

#: The setting that holds the properties for every client, then the one per client kind.
COMMON_SETTING = "librdkafka"
KIND_SETTINGS: dict[ClientKind, str] = {
    "producer": "librdkafka_producer",
    "consumer": "librdkafka_consumer",
    "admin": "librdkafka_admin",
}
PASSTHROUGH_SETTINGS = (COMMON_SETTING, *KIND_SETTINGS.values())

_OFFSETS = (
    "churnstream stores and commits offsets itself, only after a batch's outputs are "
    "acknowledged (at-least-once)"
)
_IDEMPOTENT = "churnstream's producers are idempotent with acks=all, so a retry never duplicates"
_CALLBACK = "a Python callback that churnstream sets itself; a setting cannot give one"
#: Properties the pass-through may not set, and why (aliases included).
REFUSED: dict[str, str] = {
    "bootstrap.servers": "set kafka.bootstrap_servers (which --broker overrides)",
    "metadata.broker.list": "set kafka.bootstrap_servers (which --broker overrides)",
    "group.id": "each command picks its consumer group (consumer.group_id, --group)",
    "transactional.id": "the exactly-once scorer derives one per instance, for fencing",
    "enable.idempotence": _IDEMPOTENT,
    "acks": _IDEMPOTENT,
    "request.required.acks": _IDEMPOTENT,
    "enable.auto.commit": _OFFSETS,
    "enable.auto.offset.store": _OFFSETS,
    "enable.partition.eof": "churnstream's readers set it to what their loop expects",
    "delivery.report.only.error": (
        "set producer.delivery_reports (the scorer's producer only: churnstream produce and "
        "dlq replay count every delivery)"
    ),
    "logger": _CALLBACK,
    "error_cb": _CALLBACK,
    "throttle_cb": _CALLBACK,
    "stats_cb": _CALLBACK,
    "oauth_cb": _CALLBACK,
    "on_delivery": _CALLBACK,
    "on_commit": _CALLBACK,
}

# Property names that hold a secret: shown masked, scrubbed from messages. Paths, URLs and
# names of things are not secrets even when a marker is part of them.
_SECRET_MARKERS = ("password", "secret", "passphrase", "token", "jaas", "credential", "private")
_SECRET_EXACT = frozenset({"ssl.key.pem"})
_NOT_SECRET_SUFFIXES = (".url", ".location", ".file", ".type", ".method", ".ms", ".name")
MASK = "**********"  # what pydantic shows for a SecretStr
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def is_secret_property(name: str) -> bool:
    """True when librdkafka property ``name`` holds a secret (a password, a client secret...)."""
    lowered = name.lower()
    if lowered in _SECRET_EXACT:
        return True
    if lowered.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return any(marker in lowered for marker in _SECRET_MARKERS)


def where(setting: str, name: str) -> str:
    """How a message names one property of a pass-through setting: kafka.librdkafka["x.y"]."""
    return f'kafka.{setting}["{name}"]'


def check_properties(setting: str, value: Any) -> Any:
    """Refuse what a pass-through mapping may not hold; return ``value`` unchanged otherwise.

    Raises ClientConfigError naming the setting and the property (never the value, which
    may be a secret) for a refused property, a malformed name or a value that is not a
    string, a whole number, a finite number or a boolean.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ClientConfigError(
            f"invalid kafka settings: kafka.{setting} must be a mapping of librdkafka property "
            f'to value (in the environment a JSON object, e.g. {{"client.rack": "use1-az1"}})'
        )
    for name, item in value.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ClientConfigError(
                f"invalid kafka settings: kafka.{setting} has a property name that is not "
                f"a librdkafka property ({name!r})"
            )
        if name in REFUSED:
            raise ClientConfigError(
                f"invalid kafka settings: {where(setting, name)} cannot be set: {REFUSED[name]}"
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise ClientConfigError(
                f"invalid kafka settings: {where(setting, name)} must be a finite number"
            )
        if not isinstance(item, str | int | float | bool):
            raise ClientConfigError(
                f"invalid kafka settings: {where(setting, name)} must be a string, a number "
                f"or a boolean, not {'nothing' if item is None else type(item).__name__}"
            )
    return value


def librdkafka_value(value: LibrdkafkaValue) -> str:
    """``value`` as librdkafka parses it: true/false, whole floats without ``.0``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def masked(properties: Mapping[str, Any]) -> dict[str, Any]:
    """``properties`` with the value of every secret property replaced by a mask."""
    return {k: MASK if is_secret_property(k) else v for k, v in properties.items()}


def secret_values(properties: Mapping[str, LibrdkafkaValue]) -> list[str]:
    """The values of the secret properties, as librdkafka gets them (to scrub messages)."""
    return [librdkafka_value(v) for k, v in properties.items() if is_secret_property(k)]
