"""Apache Kafka's runtime jars, fetched once with Maven (``embedded/pom.xml``) into a cache."""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path

from churnstream.exceptions import BrokerError
from churnstream.settings.sections import BrokerSettings
from churnstream.tools import maven_fetch, read_jars_marker, write_jars_marker

logger = logging.getLogger(__name__)


def kafka_jar(settings: BrokerSettings) -> str:
    """The file name of Kafka's own jar, which every complete fetch holds."""
    return f"kafka_2.13-{settings.kafka_version}.jar"


def jars_complete(settings: BrokerSettings) -> bool:
    """True when :func:`fetch_jars` finished for ``settings.kafka_version`` in ``jars_dir``."""
    jars_dir = settings.jars_dir.resolve()
    marker = read_jars_marker(jars_dir)
    return (
        marker is not None
        and marker.get("kafka_version") == settings.kafka_version
        and (jars_dir / kafka_jar(settings)).is_file()
    )


def fetch_jars(settings: BrokerSettings, *, force: bool = False) -> Path:
    """Download Apache Kafka's runtime jars into ``settings.jars_dir`` once, with Maven.

    Skips the download when a previous run completed (a marker file records it) unless
    ``force``. Returns the jars directory. Raises BrokerError when mvn is missing or fails.
    """
    jars_dir = settings.jars_dir.resolve()
    if not force and jars_complete(settings):
        logger.debug("Kafka %s jars already in %s", settings.kafka_version, jars_dir)
        return jars_dir
    started = time.monotonic()
    maven_fetch(
        resources.files("churnstream.ops.devbroker") / "embedded" / "pom.xml",
        jars_dir,
        {"kafka.version": settings.kafka_version},
        what=f"Apache Kafka {settings.kafka_version}'s jars",
        error=BrokerError,
        hint=" (or use --engine tansu)",
        stale=("*.jar", "cds-*"),  # class-data archives of other jars go stale too
    )
    jars = sorted(p.name for p in jars_dir.glob("*.jar"))
    expected = kafka_jar(settings)
    if expected not in jars or not any(j.startswith("log4j-slf4j-impl-") for j in jars):
        raise BrokerError(f"Maven finished but {jars_dir} lacks {expected} or the log binding")
    marker = {"kafka_version": settings.kafka_version, "jars": len(jars), "fetched_at": time.time()}
    write_jars_marker(jars_dir, marker)
    logger.info(
        "fetched %d jars for Kafka %s in %.1fs",
        len(jars),
        settings.kafka_version,
        time.monotonic() - started,
    )
    return jars_dir
