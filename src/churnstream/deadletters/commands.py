"""``churnstream dlq inspect`` and ``dlq replay``: read, decide, write.

What to report and what to re-send is decided by the pure modules of this package
(:mod:`.letters`, :mod:`.summary`, :mod:`.plan`); :mod:`.reading` and :mod:`.replay` do the
Kafka I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from churnstream.deadletters.letters import parse_letter
from churnstream.deadletters.markers import marker_topic_for
from churnstream.deadletters.plan import LetterFilter, ReplayPlan, plan_replay
from churnstream.deadletters.reading import ensure_marker_topic, read_letters_and_markers
from churnstream.deadletters.replay import ReplayOutcome, execute_replay, start_producer
from churnstream.deadletters.summary import Summary, summarise
from churnstream.exceptions import ChurnstreamError
from churnstream.kafka import admin
from churnstream.kafka.reader import READ_IDLE_S
from churnstream.settings import Settings

logger = logging.getLogger(__name__)


def inspect(
    settings: Settings,
    topic: str,
    *,
    limit: int | None = None,
    examples: int = 3,
    idle_s: float = READ_IDLE_S,
    timeout_s: float = admin.ADMIN_TIMEOUT_S,
) -> Summary:
    """Read the dead-letter topic (and its replay markers) and summarise it."""
    admin.check_reachable(settings.kafka, timeout_s=timeout_s)
    result, markers = read_letters_and_markers(
        settings, topic, limit=limit, idle_s=idle_s, timeout_s=timeout_s
    )
    parsed = [parse_letter(r) for r in result.records]
    return summarise(
        topic, parsed, examples=examples, markers=markers, limit_reached=result.limit_reached
    )


@dataclass(frozen=True)
class ReplayRequest:
    from_topic: str
    to_topic: str
    letter_filter: LetterFilter
    limit: int | None = None
    force: bool = False
    dry_run: bool = False
    transactional: bool = True


def replay(
    settings: Settings,
    request: ReplayRequest,
    *,
    idle_s: float = READ_IDLE_S,
    timeout_s: float = admin.ADMIN_TIMEOUT_S,
) -> tuple[ReplayOutcome, ReplayPlan]:
    """Re-send dead-lettered originals to ``request.to_topic``, marking each replayed letter.

    Order: check both topics exist; start (and, if transactional, initialise) the producer,
    which aborts a crashed run's open transaction; read the letters and the markers; plan;
    create the marker topic if needed; send. A dry run writes nothing.
    """
    admin.check_reachable(settings.kafka, timeout_s=timeout_s)
    for name in (request.from_topic, request.to_topic):
        if admin.topic_partitions(settings.kafka, name, timeout_s=timeout_s) is None:
            raise ChurnstreamError(
                f"topic {name!r} does not exist at {settings.kafka.bootstrap_servers}"
            )
    marker_topic = marker_topic_for(request.from_topic)
    producer = None
    if not request.dry_run:
        producer = start_producer(settings, request.from_topic, transactional=request.transactional)
    try:
        letters, markers = read_letters_and_markers(
            settings, request.from_topic, idle_s=idle_s, timeout_s=timeout_s
        )
        plan = plan_replay(
            [parse_letter(r) for r in letters.records],
            letter_filter=request.letter_filter,
            markers=markers,
            force=request.force,
            limit=request.limit,
        )
        if producer is None or not plan.items:
            outcome = ReplayOutcome(
                considered=plan.considered,
                skipped=dict(plan.skipped),
                not_replayable=list(plan.not_replayable),
                to_topic=request.to_topic,
                marker_topic=marker_topic,
                dry_run=request.dry_run,
                transactional=request.transactional,
                planned=len(plan.items),
            )
        else:
            ensure_marker_topic(settings, marker_topic, timeout_s=timeout_s)
            outcome = execute_replay(
                producer, plan, to_topic=request.to_topic, marker_topic=marker_topic
            )
    finally:
        if producer is not None:
            producer.close()
    logger.info(
        "replay from %s to %s%s: considered %d, %s %d, failed %d, skipped %s",
        request.from_topic,
        request.to_topic,
        " (dry run)" if request.dry_run else "",
        outcome.considered,
        "would replay" if request.dry_run else "replayed",
        outcome.planned if request.dry_run else outcome.replayed,
        outcome.failed,
        ", ".join(f"{n} {reason}" for reason, n in outcome.skipped.items() if n) or "none",
    )
    return outcome, plan
