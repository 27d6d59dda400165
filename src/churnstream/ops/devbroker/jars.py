"""Apache Kafka's runtime jars, fetched once with Maven (``embedded/pom.xml``) into a cache."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from importlib import resources
from pathlib import Path

from churnstream.exceptions import BrokerError
from churnstream.ops.devbroker.tools import run_tool
from churnstream.settings import BrokerSettings

logger = logging.getLogger(__name__)

JARS_MARKER = ".complete"
MVN_TIMEOUT_S = 900.0
ERROR_LINE_CHARS = 300

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def kafka_jar(settings: BrokerSettings) -> str:
    """The file name of Kafka's own jar, which every complete fetch holds."""
    return f"kafka_2.13-{settings.kafka_version}.jar"


def jars_complete(settings: BrokerSettings) -> bool:
    """True when :func:`fetch_jars` finished for ``settings.kafka_version`` in ``jars_dir``."""
    jars_dir = settings.jars_dir.resolve()
    try:
        marker = json.loads((jars_dir / JARS_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
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
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"Maven ('mvn') is not on PATH; it is needed once to download Apache Kafka "
            f"{settings.kafka_version}'s jars into {jars_dir} (or use --engine tansu)"
        )
    jars_dir.mkdir(parents=True, exist_ok=True)
    (jars_dir / JARS_MARKER).unlink(missing_ok=True)
    for pattern in ("*.jar", "cds-*"):  # never mix two versions; class archives go stale
        for old in jars_dir.glob(pattern):
            old.unlink()
    logger.info("downloading Apache Kafka %s jars into %s", settings.kafka_version, jars_dir)
    started = time.monotonic()
    pom_ref = resources.files("churnstream.ops.devbroker") / "embedded" / "pom.xml"
    with resources.as_file(pom_ref) as pom:
        cmd = [
            mvn,
            "-q",
            "-B",
            "-U",  # retry artifacts whose earlier download failed (Maven caches failures)
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={jars_dir}",
            f"-Dkafka.version={settings.kafka_version}",
        ]
        proc = run_tool(
            cmd,
            doing=f"downloading Apache Kafka {settings.kafka_version}'s jars with Maven",
            timeout_s=MVN_TIMEOUT_S,
            cwd=jars_dir,
        )
    if proc.returncode != 0:
        raise BrokerError(
            f"Maven could not download Apache Kafka {settings.kafka_version}'s jars "
            f"(exit {proc.returncode}): {_maven_error(proc.stdout + proc.stderr)}"
        )
    jars = sorted(p.name for p in jars_dir.glob("*.jar"))
    expected = kafka_jar(settings)
    if expected not in jars or not any(j.startswith("log4j-slf4j-impl-") for j in jars):
        raise BrokerError(f"Maven finished but {jars_dir} lacks {expected} or the log binding")
    marker = {"kafka_version": settings.kafka_version, "jars": len(jars), "fetched_at": time.time()}
    (jars_dir / JARS_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    logger.info(
        "fetched %d jars for Kafka %s in %.1fs",
        len(jars),
        settings.kafka_version,
        time.monotonic() - started,
    )
    return jars_dir


def _maven_error(output: str) -> str:
    """The most useful line of Maven's output, for a one-line error."""
    output = _ANSI_ESCAPE.sub("", output)  # mvn -q still emits colour resets
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln.removeprefix("[ERROR]").strip() for ln in lines if ln.startswith("[ERROR]")]
    skip = ("->", "Re-run", "To see", "For more", "[Help")
    errors = [e for e in errors if e and not e.startswith(skip)]
    if errors:
        return errors[0][:ERROR_LINE_CHARS]
    return lines[-1][:ERROR_LINE_CHARS] if lines else "no output"
