"""Ports and readiness: is a port free, does a broker answer, wait until one does."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Collection
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from churnstream.exceptions import BrokerError, BrokerUnavailableError
from churnstream.kafka.clients import probe_admin_client

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.0
PROBE_INTERVAL_S = 0.1


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_except(host: str, avoid: Collection[int]) -> int:
    """:func:`find_free_port`, never one of ``avoid`` (ports chosen but not yet bound)."""
    while True:
        port = find_free_port(host)
        if port not in avoid:
            return port


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def check_port_free(host: str, port: int, state_dir: Path, what: str = "broker") -> None:
    """Raise BrokerError, saying who holds it, unless ``host:port`` can be listened on."""
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


def is_answering(bootstrap: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when a metadata request to ``bootstrap`` succeeds within ``timeout_s``."""
    if _refused(bootstrap):
        return False  # nothing listens: no need to let librdkafka retry for timeout_s
    return answers(probe_admin_client(bootstrap), timeout_s)


def wait_ready(bootstrap: str, timeout_s: float) -> None:
    """Block until a metadata request to ``bootstrap`` succeeds; BrokerUnavailableError if not."""
    client = probe_admin_client(bootstrap)
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {bootstrap} within {timeout_s:g}s"
            )
        if answers(client, min(PROBE_TIMEOUT_S, remaining)):
            return
        time.sleep(PROBE_INTERVAL_S)


def answers(client: AdminClient, timeout_s: float) -> bool:
    """One metadata request: True when it names at least one broker."""
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


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
