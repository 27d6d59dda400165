"""Waiting for a broker at start-up: say so clearly, retry with backoff, give up in time."""

from __future__ import annotations

import logging
import threading

from churnstream.exceptions import BrokerUnavailableError
from churnstream.kafka.admin import check_reachable
from churnstream.logging import ATTEMPT, BOOTSTRAP_SERVERS, DELAY_S
from churnstream.retry import RetryNote, retrying
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
    """Block until a metadata request to ``kafka`` succeeds, retrying with jittered backoff.

    Each failed attempt is logged once as a warning with the next delay; after
    ``timeout_s`` (or at once when ``stop`` is set) the last error is raised as one readable
    line. Errors that retrying cannot fix (authentication, configuration) are not
    BrokerUnavailableError and propagate at once.
    """

    def note(retry: RetryNote) -> None:
        logger.warning(
            "%s: broker at %s not reachable (attempt %d); retrying in %.1fs",
            what,
            kafka.bootstrap_servers,
            retry.attempt,
            retry.delay_s,
            extra={
                BOOTSTRAP_SERVERS: kafka.bootstrap_servers,
                ATTEMPT: retry.attempt,
                DELAY_S: round(retry.delay_s, 3),
            },
        )

    policy = retrying(
        deadline_s=timeout_s,
        first_delay_s=FIRST_BACKOFF_S,
        max_delay_s=MAX_BACKOFF_S,
        retry_on=BrokerUnavailableError,
        stop=stop,
        on_retry=note,
    )
    try:
        policy.call(check_reachable, kafka, timeout_s=min(PROBE_TIMEOUT_S, max(0.5, timeout_s)))
    except BrokerUnavailableError as exc:
        raise BrokerUnavailableError(
            f"{what}: no Kafka broker answered at {kafka.bootstrap_servers} after "
            f"{policy.attempts} attempt(s) in {timeout_s:g}s; is it running? "
            "(`churnstream broker start` for the embedded one)"
        ) from exc
    if policy.attempts > 1:
        logger.info(
            "%s: broker at %s is reachable now",
            what,
            kafka.bootstrap_servers,
            extra={BOOTSTRAP_SERVERS: kafka.bootstrap_servers, ATTEMPT: policy.attempts},
        )
