"""Replay markers: one record per replayed letter in ``<dead-letter topic>.replays``.

The marker topic is compacted and keyed by the letter id, so it keeps the latest marker of
each letter; :class:`MarkerIndex` reads it back to skip letters already replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from churnstream.deadletters.letters import ParsedLetter

logger = logging.getLogger(__name__)

#: Suffix of the compacted topic that records which letters were replayed.
MARKER_TOPIC_SUFFIX = ".replays"


@dataclass(frozen=True)
class Marker:
    """One replayed letter, as recorded in the marker topic (key: the letter id)."""

    letter: str
    source: str | None
    replayed_to: str | None
    replayed_ts: str
    retry_count: int


def marker_topic_for(deadletter_topic: str) -> str:
    return f"{deadletter_topic}{MARKER_TOPIC_SUFFIX}"


def marker_message(marker: Marker) -> tuple[bytes, bytes]:
    """(key, value) of a marker record: compaction keeps the latest per letter."""
    value = {
        "letter": marker.letter,
        "source": marker.source,
        "replayed_to": marker.replayed_to,
        "replayed_ts": marker.replayed_ts,
        "retry_count": marker.retry_count,
    }
    return marker.letter.encode(), orjson.dumps(value)


@dataclass
class MarkerIndex:
    """Letters already replayed (by letter id), and the inputs they came from."""

    markers: dict[str, Marker] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Iterable[tuple[bytes | None, bytes | None]]) -> MarkerIndex:
        """Build from (key, value) records in log order; a tombstone (None value) unmarks."""
        index = cls()
        for key, value in records:
            if key is None:
                continue
            letter = key.decode("utf-8", errors="backslashreplace")
            if value is None:
                index.markers.pop(letter, None)
                continue
            try:
                data = orjson.loads(value)
            except orjson.JSONDecodeError:
                data = {}
            data = data if isinstance(data, dict) else {}
            source = data.get("source")
            replayed_to = data.get("replayed_to")
            retry = data.get("retry_count")
            index.markers[letter] = Marker(
                letter=letter,
                source=source if isinstance(source, str) else None,
                replayed_to=replayed_to if isinstance(replayed_to, str) else None,
                replayed_ts=str(data.get("replayed_ts", "")),
                retry_count=retry if isinstance(retry, int) else 0,
            )
        return index

    @property
    def sources(self) -> set[str]:
        return {m.source for m in self.markers.values() if m.source}

    def is_replayed(self, parsed: ParsedLetter) -> bool:
        """True if this letter, or another letter for the same input, was replayed."""
        if parsed.id in self.markers:
            return True
        return parsed.source is not None and parsed.source in self.sources

    def __len__(self) -> int:
        return len(self.markers)
