"""Pure pieces of ``churnstream status``: lag arithmetic, dead-letter tallies, the overview.

The Kafka calls that fill these live in :mod:`churnstream.observability.cluster`; this
module takes plain numbers and bytes, so every rule is unit-tested without a broker.

Lag of a group on a partition is ``end offset - committed offset``, clamped at 0 (tansu's
end offset is understated: see :mod:`churnstream.kafka.admin`). A partition the group has
never committed on has no lag number; it is counted as ``uncommitted``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from churnstream.headers import ERROR_CODE_HEADER, SOURCE_HEADER

logger = logging.getLogger(__name__)

UNREADABLE = "unreadable"

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True)
class TopicLag:
    topic: str
    lag: int
    partitions: int
    uncommitted: int


@dataclass(frozen=True)
class GroupStatus:
    group_id: str
    state: str
    topics: tuple[TopicLag, ...]
    error: str | None = None

    @property
    def total_lag(self) -> int:
        return sum(t.lag for t in self.topics)


def group_lag(
    end_offsets: Mapping[TopicPartitionKey, int],
    committed: Mapping[TopicPartitionKey, int],
) -> tuple[TopicLag, ...]:
    """Lag per topic of one group, for every topic it has committed on.

    ``committed`` maps (topic, partition) to the committed offset (negative: none);
    ``end_offsets`` the high watermarks. Partitions of those topics that the group never
    committed on are ``uncommitted``; a partition whose end offset is unknown counts 0.
    """
    topics = sorted({topic for topic, _ in committed})
    out = []
    for topic in topics:
        partitions = sorted(
            {p for t, p in end_offsets if t == topic} | {p for t, p in committed if t == topic}
        )
        lag = uncommitted = 0
        for partition in partitions:
            offset = committed.get((topic, partition), -1)
            end = end_offsets.get((topic, partition), -1)
            if offset < 0:
                uncommitted += 1
            elif end >= 0:
                lag += max(0, end - offset)
        out.append(TopicLag(topic, lag, len(partitions), uncommitted))
    return tuple(out)


@dataclass
class DeadLetterTally:
    """Counts dead letters by ``error_type`` (body) and code (header), once per source.

    A replayed or re-scored input produces a second letter with the same
    ``churnstream.source`` header; it is counted in ``duplicates`` only.
    """

    by_type: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    total: int = 0
    duplicates: int = 0
    _seen: set[bytes] = field(default_factory=set, repr=False)

    def add(
        self, headers: Iterable[tuple[str, bytes | str | None]] | None, value: bytes | None
    ) -> bool:
        """Count one letter; False if its source was already counted."""
        found = {name: raw for name, raw in (headers or [])}
        source = _bytes(found.get(SOURCE_HEADER))
        if source is not None:
            if source in self._seen:
                self.duplicates += 1
                return False
            self._seen.add(source)
        self.total += 1
        self.by_type[error_type_of(value)] += 1
        code = _bytes(found.get(ERROR_CODE_HEADER))
        self.by_code[code.decode("utf-8", "replace") if code else "unknown"] += 1
        return True

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "duplicates": self.duplicates,
            "by_type": dict(sorted(self.by_type.items())),
            "by_code": dict(sorted(self.by_code.items())),
        }


def error_type_of(value: bytes | None) -> str:
    """The ``error_type`` field of a dead letter's JSON body, or ``unreadable``."""
    if not value:
        return UNREADABLE
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return UNREADABLE
    error_type = body.get("error_type") if isinstance(body, dict) else None
    return str(error_type) if isinstance(error_type, str) and error_type else UNREADABLE


def _bytes(value: bytes | str | None) -> bytes | None:
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else bytes(value)


@dataclass(frozen=True)
class TopicStatus:
    name: str
    partitions: int
    end_offsets: tuple[int, ...]
    messages: int
    role: str | None = None  # "raw", "predictions", "deadletter" for ours

    @property
    def end_offset_total(self) -> int:
        return sum(max(0, o) for o in self.end_offsets)


@dataclass(frozen=True)
class ModelStatus:
    version: str | None
    path: str | None
    created_at: str | None = None
    threshold: float | None = None
    roc_auc: float | None = None
    error: str | None = None


@dataclass
class ClusterStatus:
    """Everything ``churnstream status`` shows."""

    bootstrap: str
    reachable: bool
    brokers: int = 0
    error: str | None = None
    topics: list[TopicStatus] = field(default_factory=list)
    groups: list[GroupStatus] = field(default_factory=list)
    model: ModelStatus | None = None
    dead_letters: dict[str, Any] | None = None
    deadletter_topic: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for topic, topic_status in zip(data["topics"], self.topics, strict=True):
            topic["end_offset_total"] = topic_status.end_offset_total
        for group, group_status in zip(data["groups"], self.groups, strict=True):
            group["total_lag"] = group_status.total_lag
        result: dict[str, Any] = orjson.loads(orjson.dumps(data))  # tuples -> lists: plain JSON
        return result


def model_status(
    metadata: Mapping[str, Any] | None, path: str | None, error: str | None
) -> ModelStatus:
    """Summarise a model's metadata (or why there is none)."""
    if metadata is None:
        return ModelStatus(version=None, path=path, error=error or "no model")
    threshold = metadata.get("threshold")
    metrics = metadata.get("summary_metrics") or {}
    return ModelStatus(
        version=str(metadata.get("version")),
        path=path,
        created_at=metadata.get("created_at"),
        threshold=float(threshold["value"]) if isinstance(threshold, Mapping) else None,
        roc_auc=metrics.get("roc_auc"),
    )


def topic_role(name: str, roles: Mapping[str, str]) -> str | None:
    return roles.get(name)


def lag_rows(groups: Sequence[GroupStatus]) -> list[tuple[str, str, str, str, str]]:
    """(group, state, topic, lag, note) rows, one per topic a group committed on."""
    rows = []
    for group in sorted(groups, key=lambda g: g.group_id):
        if group.error is not None:
            rows.append((group.group_id, group.state, "-", "-", group.error))
            continue
        if not group.topics:
            rows.append((group.group_id, group.state, "-", "-", "no committed offsets"))
            continue
        for topic in group.topics:
            note = f"{topic.uncommitted} partition(s) never committed" if topic.uncommitted else ""
            rows.append((group.group_id, group.state, topic.topic, f"{topic.lag:,}", note))
    return rows
