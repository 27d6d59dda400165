"""Spark's Kafka connector jars, fetched once with Maven (``connector/pom.xml``) into a cache.

The same way the broker's jars are fetched: ``mvn dependency:copy-dependencies`` into a
directory with a marker file, never Ivy at run time (``spark.jars.packages``), so a job
starts offline once the cache is filled and every executor gets the same files through
``spark.jars``. Jars pyspark already ships (Spark's own, Scala's, compression codecs) are
dropped from the cache: two versions of a class on one class path fail in odd ways.
"""

from __future__ import annotations

import logging
import re
import time
from importlib import resources
from pathlib import Path

from churnstream.exceptions import SparkError
from churnstream.tools import maven_fetch, read_jars_marker, write_jars_marker

logger = logging.getLogger(__name__)

#: The connector must match pyspark's own version (Maven Central serves 4.2.0 and 4.1.1).
SPARK_VERSION = "4.2.0"
CONNECTOR_JAR = f"spark-sql-kafka-0-10_2.13-{SPARK_VERSION}.jar"
# name-1.2.3.jar -> name: the version is the first "-" part that starts with a dotted number.
_ARTIFACT = re.compile(r"^(?P<name>.+?)-\d+(?:\.\d+)+[^/]*\.jar$")


def artifact_name(jar: str) -> str:
    """``kafka-clients-3.9.2.jar`` -> ``kafka-clients``."""
    match = _ARTIFACT.match(jar)
    return match.group("name") if match else jar.removesuffix(".jar")


def connector_jars(jars_dir: Path) -> list[Path]:
    """The cached jars for ``spark.jars``; SparkError (one line) when the cache is incomplete."""
    jars_dir = jars_dir.resolve()
    marker = read_jars_marker(jars_dir)
    jars = sorted(jars_dir.glob("*.jar"))
    if (
        marker is None
        or marker.get("spark_version") != SPARK_VERSION
        or not (jars_dir / CONNECTOR_JAR).is_file()
    ):
        raise SparkError(
            f"Spark's Kafka connector ({CONNECTOR_JAR}) is not in {jars_dir}; "
            "fetch it with `churnstream consume --engine spark --fetch-jars` (needs Maven)"
        )
    missing = [name for name in marker.get("jars", []) if not (jars_dir / name).is_file()]
    if missing:
        raise SparkError(
            f"{jars_dir} lacks {missing[0]} (and {len(missing) - 1} more) of the Kafka "
            "connector's jars; fetch them again with --fetch-jars"
        )
    return jars


def fetch_connector_jars(jars_dir: Path, *, force: bool = False) -> list[Path]:
    """Download the connector and its dependencies into ``jars_dir`` once; returns the jars."""
    jars_dir = jars_dir.resolve()
    if not force:
        try:
            return connector_jars(jars_dir)
        except SparkError:
            pass
    started = time.monotonic()
    maven_fetch(
        resources.files("churnstream.spark") / "connector" / "pom.xml",
        jars_dir,
        {"spark.version": SPARK_VERSION},
        what=f"Spark {SPARK_VERSION}'s Kafka connector ({CONNECTOR_JAR})",
        error=SparkError,
    )
    dropped = drop_bundled(jars_dir, pyspark_jars())
    jars = sorted(p.name for p in jars_dir.glob("*.jar"))
    if CONNECTOR_JAR not in jars:
        raise SparkError(f"Maven finished but {jars_dir} lacks {CONNECTOR_JAR}")
    marker = {"spark_version": SPARK_VERSION, "jars": jars, "fetched_at": time.time()}
    write_jars_marker(jars_dir, marker)
    logger.info(
        "fetched %d connector jars in %.1fs (%d already in pyspark left out)",
        len(jars),
        time.monotonic() - started,
        len(dropped),
    )
    return sorted(jars_dir.glob("*.jar"))


def pyspark_jars() -> set[str]:
    """Artifact names of the jars pyspark ships (empty without pyspark)."""
    try:
        import pyspark
    except ImportError:
        return set()
    jars = Path(pyspark.__file__).parent / "jars"
    return {artifact_name(p.name) for p in jars.glob("*.jar")}


def drop_bundled(jars_dir: Path, bundled: set[str]) -> list[str]:
    """Delete from ``jars_dir`` every jar whose artifact pyspark already ships."""
    dropped = []
    for jar in jars_dir.glob("*.jar"):
        if artifact_name(jar.name) in bundled:
            jar.unlink()
            dropped.append(jar.name)
    return sorted(dropped)
