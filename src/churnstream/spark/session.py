"""One way to get a SparkSession: ``--master``, ``--spark-conf``, spark-submit and SPARK_* env.

Every Spark command builds its session here, so the checks that turn a failed start into one
readable line (no pyspark, no Java, a missing jar, an unreachable master) are made once.

Precedence, lowest first: ``spark-defaults.conf`` and the ``SPARK_*`` environment (read by
pyspark's own launcher, as under ``spark-submit``), then our defaults (no web UI; a driver
on 127.0.0.1 when the master is on this machine), then ``--spark-conf KEY=VALUE``. The
master is ``--master``, else the one spark-submit was given, else ``$MASTER``, else
``local[*]``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from churnstream.exceptions import SparkError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
#: How long a TCP connect to a standalone master may take before it counts as unreachable.
MASTER_CONNECT_TIMEOUT_S = 5.0
LOOPBACK = "127.0.0.1"
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Set by pyspark's launcher in a Python driver started by spark-submit.
_SUBMIT_ENV = "PYSPARK_GATEWAY_PORT"
_JAR_KEYS = ("spark.jars", "spark.driver.extraClassPath", "spark.executor.extraClassPath")


@dataclass(frozen=True)
class SparkOptions:
    """What the user asked for: a master URL (None: see the module doc) and conf pairs."""

    master: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)
    app_name: str = "churnstream"


def parse_conf(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (repeated ``--spark-conf``) as a dict; the last one wins."""
    conf: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SparkError(f"--spark-conf takes KEY=VALUE, got {pair!r}")
        conf[key.strip()] = value
    return conf


def resolve_master(master: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The master URL to set, or None to keep the one spark-submit configured."""
    env = os.environ if env is None else env
    if master:
        return master
    if env.get(_SUBMIT_ENV):
        return None
    return env.get("MASTER") or DEFAULT_MASTER


def _standalone_hosts(master: str) -> list[tuple[str, int]]:
    """(host, port) of each master of a ``spark://h1:p1,h2:p2`` URL; [] for other kinds."""
    if not master.startswith("spark://"):
        return []
    hosts = []
    for part in master[len("spark://") :].split(","):
        parsed = urlsplit(f"spark://{part}")
        try:
            port = parsed.port or 7077
        except ValueError as exc:
            raise SparkError(f"invalid Spark master URL {master!r}: {exc}") from exc
        if not parsed.hostname:
            raise SparkError(f"invalid Spark master URL {master!r}: no host")
        hosts.append((parsed.hostname, port))
    return hosts


def _is_local(master: str | None) -> bool:
    if master is None:
        return False
    if master.startswith("local"):
        return True
    hosts = _standalone_hosts(master)
    return bool(hosts) and all(host in _LOCAL_HOSTS for host, _ in hosts)


def check_master_reachable(master: str, timeout_s: float = MASTER_CONNECT_TIMEOUT_S) -> None:
    """Fail fast (one line) when no master of a ``spark://`` URL accepts a TCP connection.

    Spark itself would retry registering for about a minute and then stop the context from
    a background thread, which a command cannot report as one line.
    """
    hosts = _standalone_hosts(master)
    problems = []
    for host, port in hosts:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return
        except OSError as exc:
            problems.append(f"{host}:{port}: {exc.strerror or exc}")
    if hosts:
        raise SparkError(
            f"cannot reach the Spark master {master} ({'; '.join(problems)}); "
            "is it running? (or use --master local[*])"
        )


def check_java(env: Mapping[str, str] | None = None) -> str:
    """The java executable Spark will start, or SparkError naming what is missing."""
    env = os.environ if env is None else env
    java_home = env.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        if not java.is_file():
            raise SparkError(
                f"JAVA_HOME={java_home} has no bin/java; Spark needs a Java runtime "
                "(JDK 17 or later): fix JAVA_HOME or unset it to use java from PATH"
            )
        return str(java)
    found = shutil.which("java", path=env.get("PATH"))
    if found is None:
        raise SparkError(
            "no Java runtime found: Spark needs a JDK 17 or later on PATH or in JAVA_HOME "
            "(e.g. apt-get install openjdk-17-jre-headless)"
        )
    return found


def check_jars(conf: Mapping[str, str]) -> None:
    """Every local jar named in spark.jars or the extra class paths must exist."""
    for key in _JAR_KEYS:
        separator = "," if key == "spark.jars" else os.pathsep
        for entry in filter(None, (e.strip() for e in conf.get(key, "").split(separator))):
            if "://" in entry or "*" in entry:
                continue  # remote or a wildcard: Spark resolves it
            if not Path(entry).exists():
                raise SparkError(f"{key} names {entry}, which does not exist")


def check_pyspark() -> str:
    """pyspark's version, or SparkError saying how to install it."""
    try:
        import pyspark
    except ImportError as exc:
        raise SparkError(
            "pyspark is not installed: pip install 'churnstream[spark]' (pyspark 4.2.0)"
        ) from exc
    return str(pyspark.__version__)


def session_conf(options: SparkOptions, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our defaults, then the user's ``--spark-conf`` on top."""
    env = os.environ if env is None else env
    master = resolve_master(options.master, env)
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    if _is_local(master) and not env.get("SPARK_LOCAL_IP"):
        # Only when everything runs here: remote executors must be able to reach the driver.
        conf["spark.driver.host"] = LOOPBACK
        conf["spark.driver.bindAddress"] = LOOPBACK
    conf.update(options.conf)
    return conf


def preflight(options: SparkOptions) -> tuple[str | None, dict[str, str]]:
    """The checks that make a failed start one line, done before any JVM starts: pyspark,
    Java, the jars named in the conf, the master. Returns the master and the conf."""
    check_pyspark()
    master = resolve_master(options.master)
    conf = session_conf(options)
    check_jars(conf)
    if not os.environ.get(_SUBMIT_ENV):
        check_java()  # under spark-submit the JVM is already running
    if master is not None:
        check_master_reachable(master)
    return master, conf


def build_session(options: SparkOptions) -> SparkSession:
    """Start (or join) the SparkSession, after the :func:`preflight` checks."""
    master, conf = preflight(options)
    # Executors run our scoring function: they need this interpreter (and churnstream).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if _is_local(master):
        # Else Spark warns that the hostname resolves to loopback and picks another address.
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    # pyspark 4.2 warns on import that pandas 3 is newer than it was tested with; the
    # scoring path uses Arrow batches and is checked bit for bit by the tests.
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(options.app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except (PySparkException, Py4JError, OSError, RuntimeError) as exc:
        raise SparkError(f"Spark did not start ({describe(exc)})") from exc
    session.sparkContext.setLogLevel("WARN")
    logger.info(
        "Spark %s session on %s (%d default parallelism)",
        session.version,
        session.sparkContext.master,
        session.sparkContext.defaultParallelism,
    )
    return session


def describe(exc: BaseException) -> str:
    """The first line of a Spark or Py4J error, without the JVM stack trace."""
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first[:400]
