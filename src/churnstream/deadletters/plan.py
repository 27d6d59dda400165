"""Which letters a replay re-sends, and why each of the others is skipped.

:class:`LetterFilter` selects by error type, reason code and failure time;
:func:`plan_replay` applies dedupe, the filter, the replay markers and the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from churnstream.deadletters.letters import ParsedLetter, dedupe
from churnstream.deadletters.markers import MarkerIndex
from churnstream.deadletters.originals import NotReplayableError, reconstruct, replay_headers
from churnstream.headers import Headers

logger = logging.getLogger(__name__)

SKIP_REASONS = ("duplicate", "filtered", "already_replayed", "not_replayable", "over_limit")


def parse_when(text: str) -> datetime:
    """An ISO 8601 date or time for --since/--until; without an offset it means UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time like 2026-11-23T03:00:00Z or 2026-11-23"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class LetterFilter:
    """Which letters to replay: any of the error types, any of the codes, in [since, until)."""

    error_types: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, parsed: ParsedLetter) -> bool:
        if self.error_types and parsed.error_type not in self.error_types:
            return False
        if self.codes and parsed.code not in self.codes:
            return False
        if self.since is not None or self.until is not None:
            if parsed.failed_at is None:
                return False
            if self.since is not None and parsed.failed_at < self.since:
                return False
            if self.until is not None and parsed.failed_at >= self.until:
                return False
        return True

    def describe(self) -> str:
        parts = []
        if self.error_types:
            parts.append("error type " + "|".join(sorted(self.error_types)))
        if self.codes:
            parts.append("code " + "|".join(sorted(self.codes)))
        if self.since is not None:
            parts.append(f"failed at or after {self.since.isoformat()}")
        if self.until is not None:
            parts.append(f"failed before {self.until.isoformat()}")
        return ", ".join(parts) or "all letters"


@dataclass(frozen=True)
class ReplayItem:
    """One letter to re-send: the original key and value, with the replay headers."""

    parsed: ParsedLetter
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass
class ReplayPlan:
    considered: int
    items: list[ReplayItem]
    skipped: dict[str, int]
    not_replayable: list[tuple[str, str]]  # (letter id, reason)


def plan_replay(
    letters: Sequence[ParsedLetter],
    *,
    letter_filter: LetterFilter,
    markers: MarkerIndex,
    force: bool = False,
    limit: int | None = None,
) -> ReplayPlan:
    """Decide, in (partition, offset) order, which letters to re-send and why not the rest.

    Each letter lands in exactly one bucket, checked in this order: ``duplicate`` (another
    letter for the same input came first), ``filtered``, ``already_replayed`` (a marker for
    it or for its input; ignored with ``force``), ``not_replayable``, ``over_limit``, else
    replayed.
    """
    unique, duplicates = dedupe(letters)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    skipped["duplicate"] = len(duplicates)
    items: list[ReplayItem] = []
    refused: list[tuple[str, str]] = []
    for parsed in unique:
        if not letter_filter.matches(parsed):
            skipped["filtered"] += 1
            continue
        if not force and markers.is_replayed(parsed):
            skipped["already_replayed"] += 1
            continue
        try:
            original = reconstruct(parsed)
        except NotReplayableError as exc:
            skipped["not_replayable"] += 1
            refused.append((parsed.id, str(exc)))
            continue
        if limit is not None and len(items) >= limit:
            skipped["over_limit"] += 1
            continue
        items.append(ReplayItem(parsed, original.key, original.value, replay_headers(parsed)))
    return ReplayPlan(considered=len(letters), items=items, skipped=skipped, not_replayable=refused)
