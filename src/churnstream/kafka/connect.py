"""Waiting for a broker at start-up: say so clearly, retry with backoff, give up in time."""

from __future__ import annotations

import logging
import threading
import time

from churnstream.exceptions import BrokerUnavailableError
from churnstream.kafka.admin import check_reachable
from churnstream.settings import KafkaSettings

logger = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
PROBE_TIMEOUT_S = 3.0


def wait_for_broker(
    kafka: KafkaSettings,
    *,
    timeout_s: float,
    stop: threading.Event | None = None,
    what: str = "churnstream",
) -> None:
    """Block until a metadata request to ``kafka`` succeeds, retrying with backoff.

    Each failed attempt is logged once as a warning with the next delay; after
    ``timeout_s`` the last error is raised as one readable line. Errors that retrying
    cannot fix (authentication, configuration) are not BrokerUnavailableError and propagate
    at once.
    """
    deadline = time.monotonic() + timeout_s
    backoff = FIRST_BACKOFF_S
    attempt = 0
    while True:
        attempt += 1
        try:
            check_reachable(kafka, timeout_s=min(PROBE_TIMEOUT_S, max(0.5, timeout_s)))
        except BrokerUnavailableError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                raise BrokerUnavailableError(
                    f"{what}: no Kafka broker answered at {kafka.bootstrap_servers} after "
                    f"{attempt} attempt(s) in {timeout_s:g}s; is it running? "
                    "(`churnstream broker start` for the embedded one)"
                ) from exc
            delay = min(backoff, remaining)
            logger.warning(
                "%s: broker at %s not reachable (attempt %d); retrying in %.1fs",
                what,
                kafka.bootstrap_servers,
                attempt,
                delay,
            )
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
            continue
        if attempt > 1:
            logger.info("%s: broker at %s is reachable now", what, kafka.bootstrap_servers)
        return
