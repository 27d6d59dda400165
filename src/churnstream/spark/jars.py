"""Spark's Kafka connector jars, fetched once with Maven (``connector/pom.xml``) into a cache.

The same way the broker's jars are fetched: ``mvn dependency:copy-dependencies`` into a
directory with a marker file, never Ivy at run time (``spark.jars.packages``), so a job
starts offline once the cache is filled and every executor gets the same files through
``spark.jars``. Jars pyspark already ships (Spark's own, Scala's, compression codecs) are
dropped from the cache: two versions of a class on one class path fail in odd ways.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from churnstream.exceptions import SparkError

logger = logging.getLogger(__name__)

#: The connector must match pyspark's own version (Maven Central serves 4.2.0 and 4.1.1).
SPARK_VERSION = "4.2.0"
CONNECTOR_JAR = f"spark-sql-kafka-0-10_2.13-{SPARK_VERSION}.jar"
JARS_MARKER = ".complete"
MVN_TIMEOUT_S = 900.0
ERROR_LINE_CHARS = 300
# name-1.2.3.jar -> name: the version is the first "-" part that starts with a dotted number.
_ARTIFACT = re.compile(r"^(?P<name>.+?)-\d+(?:\.\d+)+[^/]*\.jar$")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def artifact_name(jar: str) -> str:
    """``kafka-clients-3.9.2.jar`` -> ``kafka-clients``."""
    match = _ARTIFACT.match(jar)
    return match.group("name") if match else jar.removesuffix(".jar")


def connector_jars(jars_dir: Path) -> list[Path]:
    """The cached jars for ``spark.jars``; SparkError (one line) when the cache is incomplete."""
    jars_dir = jars_dir.resolve()
    try:
        marker = json.loads((jars_dir / JARS_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = None
    jars = sorted(jars_dir.glob("*.jar"))
    if (
        not isinstance(marker, dict)
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
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SparkError(
            f"Maven ('mvn') is not on PATH; it is needed once to download Spark's Kafka "
            f"connector ({CONNECTOR_JAR}) into {jars_dir}"
        )
    jars_dir.mkdir(parents=True, exist_ok=True)
    (jars_dir / JARS_MARKER).unlink(missing_ok=True)
    for old in jars_dir.glob("*.jar"):
        old.unlink()
    logger.info("downloading Spark %s's Kafka connector into %s", SPARK_VERSION, jars_dir)
    started = time.monotonic()
    pom_ref = resources.files("churnstream.spark") / "connector" / "pom.xml"
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
            f"-Dspark.version={SPARK_VERSION}",
        ]
        try:
            proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
                cmd,
                capture_output=True,
                text=True,
                timeout=MVN_TIMEOUT_S,
                check=False,
                cwd=jars_dir,
            )
        except subprocess.TimeoutExpired:
            raise SparkError(f"Maven took over {MVN_TIMEOUT_S:g}s to fetch the connector") from None
        except OSError as exc:
            raise SparkError(f"cannot run Maven: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        raise SparkError(
            f"Maven could not download Spark's Kafka connector (exit {proc.returncode}): "
            f"{_maven_error(proc.stdout + proc.stderr)}"
        )
    dropped = drop_bundled(jars_dir, pyspark_jars())
    jars = sorted(p.name for p in jars_dir.glob("*.jar"))
    if CONNECTOR_JAR not in jars:
        raise SparkError(f"Maven finished but {jars_dir} lacks {CONNECTOR_JAR}")
    marker = {"spark_version": SPARK_VERSION, "jars": jars, "fetched_at": time.time()}
    (jars_dir / JARS_MARKER).write_text(json.dumps(marker), encoding="utf-8")
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
