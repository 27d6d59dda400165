"""A scorer run: what it is asked to do (``ScoreOptions``) and what it did (``ScoreSummary``)."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from churnstream.scoring.messages import RunCounts
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

Mode = Literal["streaming", "batch"]


def default_transactional_id(group_id: str, input_topic: str, worker: int = 0) -> str:
    """Stable across restarts of the same scorer, distinct between concurrent ones.

    Restarting with the same id is what lets Kafka abort a crashed scorer's open transaction
    immediately instead of after the transaction timeout.
    """
    return f"churnstream-{group_id}-{input_topic}-{socket.gethostname()}-{worker}"


@dataclass(frozen=True)
class ScoreOptions:
    mode: Mode
    input_topic: str
    output_topic: str
    deadletter_topic: str
    group_id: str
    model_path: Path
    idle_timeout_ms: int
    max_messages: int | None = None
    max_batch_records: int = 1000
    max_batch_wait_ms: int = 100
    summary_interval_s: float = 60.0
    top_k: int = 10
    #: Where to start reading each partition (partition -> offset) instead of the group's
    #: committed offsets; the demo uses it to score only what it produces itself.
    start_offsets: dict[int, int] | None = None
    exactly_once: bool = False
    #: Stable per scorer instance (see :func:`default_transactional_id`).
    transactional_id: str | None = None
    #: How long to keep retrying when no broker answers at start-up.
    connect_timeout_s: float = 60.0
    #: How often to look at `models/latest` for a new model (None: never reload).
    reload_interval_s: float | None = 5.0
    #: A second model scoring every batch too; its predictions go to ``shadow_topic``.
    shadow_model_path: Path | None = None
    shadow_topic: str | None = None
    #: How long the scorer may go without publishing (a broken producer being replaced, a
    #: batch failing again and again) before it gives up and exits non-zero.
    recovery_timeout_s: float = 300.0
    #: Put each prediction's top reasons in its ``churnstream.reasons`` header (costs
    #: throughput: see docs/reasons.md).
    reasons: bool = False
    #: At-least-once: score the next batch while this one is acknowledged
    #: (:mod:`~churnstream.streaming.pipelined`); ignored with ``exactly_once``.
    pipeline: bool = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        mode: Mode,
        max_messages: int | None = None,
        exactly_once: bool = False,
        transactional_id: str | None = None,
        worker: int = 0,
        connect_timeout_s: float = 60.0,
        reload_interval_s: float | None = 5.0,
        shadow_model_path: Path | None = None,
        shadow_topic: str | None = None,
        start_offsets: dict[int, int] | None = None,
        reasons: bool = False,
    ) -> ScoreOptions:
        """Topics, group, model path, batching and windows from ``settings``; the rest as given.

        With ``exactly_once`` and no ``transactional_id``, the id is the default one of
        ``worker``, so a restarted worker fences its own crashed predecessor only. A shadow
        model without ``shadow_topic`` writes to ``<predictions topic>.shadow``.
        """
        consumer, topics = settings.consumer, settings.topics
        if exactly_once and transactional_id is None:
            transactional_id = default_transactional_id(consumer.group_id, topics.raw.name, worker)
        return cls(
            mode=mode,
            input_topic=topics.raw.name,
            output_topic=topics.predictions.name,
            deadletter_topic=topics.deadletter.name,
            group_id=consumer.group_id,
            model_path=settings.model.models_dir,
            idle_timeout_ms=consumer.idle_timeout_ms,
            max_messages=max_messages,
            max_batch_records=consumer.max_batch_records,
            max_batch_wait_ms=consumer.max_batch_wait_ms,
            summary_interval_s=consumer.summary_interval_s,
            top_k=consumer.top_k,
            recovery_timeout_s=consumer.recovery_timeout_s,
            start_offsets=start_offsets,
            exactly_once=exactly_once,
            transactional_id=transactional_id,
            connect_timeout_s=connect_timeout_s,
            reload_interval_s=reload_interval_s,
            shadow_model_path=shadow_model_path,
            shadow_topic=(shadow_topic or f"{topics.predictions.name}.shadow")
            if shadow_model_path
            else None,
            reasons=reasons,
            pipeline=(mode == "batch" and not exactly_once)
            if consumer.pipeline == "auto"
            else consumer.pipeline,
        )


@dataclass
class ScoreSummary(RunCounts):
    """Running totals of one scorer run; the loop returns it, its hooks receive it."""

    mode: str = field(kw_only=True)
    redelivered_batches: int = 0
    #: Producers replaced after a fatal error (see churnstream.streaming.recovery).
    producer_recoveries: int = 0
    last_summary: dict[str, Any] | None = None

    def line(self) -> str:
        recovered = (
            f", producer recovered {self.producer_recoveries}x" if self.producer_recoveries else ""
        )
        return f"{self.mode}: {self.counts()}, model {self.model_version}{recovered}"
