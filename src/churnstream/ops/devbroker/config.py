"""The Kafka engine's configuration: server.properties, cluster identity, KRaft storage format.

A state dir holds ``server.properties`` (rewritten at every start), ``log4j2.properties`` (a
copy of ``embedded/log4j2.properties``), ``kafka.json`` (the cluster id and controller port,
chosen once) and ``kafka-data`` (the KRaft log, formatted on the first start).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from churnstream.exceptions import BrokerError
from churnstream.ops.devbroker.probe import free_port_except, port_is_free
from churnstream.settings.sections import BrokerSettings
from churnstream.tools import failure_detail, run_tool

logger = logging.getLogger(__name__)

KAFKA_STATE_FILE = "kafka.json"
SERVER_PROPERTIES = "server.properties"
LOG4J_CONFIG = "log4j2.properties"
KAFKA_DATA_DIR = "kafka-data"
FORMAT_TIMEOUT_S = 120.0
FORMAT_HEAP = "256m"
FORMAT_ERROR_LINES = 5


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


def write_config(
    settings: BrokerSettings, state_dir: Path, controller_port: int, extras: KafkaExtras
) -> tuple[Path, Path]:
    """Write ``server.properties`` and ``log4j2.properties``; return both paths."""
    props_path = state_dir / SERVER_PROPERTIES
    text = render_server_properties(
        settings.host,
        settings.port,
        controller_port,
        state_dir / KAFKA_DATA_DIR,
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
    return props_path, log4j_path


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (like Uuid)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):  # Kafka's own generator avoids these (CLI-unfriendly)
            return cid


def kafka_identity(
    settings: BrokerSettings, state_dir: Path, other_ports: Collection[int] = ()
) -> tuple[str, int]:
    """The cluster id and controller port, chosen once and remembered in ``kafka.json``.

    The port is never the broker's or one of ``other_ports`` (extra listeners' ports, picked
    free but not yet bound, so the OS may hand the same one out again).
    """
    path = state_dir / KAFKA_STATE_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    data_dir = state_dir / KAFKA_DATA_DIR
    cluster_id = _formatted_cluster_id(data_dir) or saved.get("cluster_id") or new_cluster_id()
    port = settings.controller_port or saved.get("controller_port")
    avoid = {settings.port, *other_ports}
    if not isinstance(port, int) or (
        settings.controller_port is None
        and (port in avoid or not port_is_free(settings.host, port))
    ):
        if isinstance(port, int):
            logger.info("remembered controller port %d is taken; choosing another", port)
        port = free_port_except(settings.host, avoid)
    if saved != {"cluster_id": cluster_id, "controller_port": port}:
        path.write_text(
            json.dumps({"cluster_id": cluster_id, "controller_port": port}), encoding="utf-8"
        )
    return str(cluster_id), int(port)


def is_formatted(state_dir: Path) -> bool:
    return (state_dir / KAFKA_DATA_DIR / "meta.properties").is_file()


def format_storage(
    java: str,
    classpath: str,
    jvm_flags: list[str],
    props_path: Path,
    cluster_id: str,
    state_dir: Path,
    *,
    extra_args: Sequence[str] = (),
) -> None:
    """Format the KRaft storage (``StorageTool format --standalone``); BrokerError if it fails."""
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
    proc = run_tool(
        cmd,
        doing="formatting Kafka storage",
        timeout_s=FORMAT_TIMEOUT_S,
        cwd=state_dir,
        error=BrokerError,
    )
    if proc.returncode != 0:
        detail = failure_detail(proc.stdout + proc.stderr, proc.returncode, FORMAT_ERROR_LINES)
        raise BrokerError(f"could not format Kafka storage in {state_dir}: {detail}")


def _formatted_cluster_id(data_dir: Path) -> str | None:
    try:
        text = (data_dir / "meta.properties").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^cluster\.id=(\S+)$", text, flags=re.MULTILINE)
    return match.group(1) if match else None
