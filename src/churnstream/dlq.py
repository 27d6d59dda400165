"""Dead-letter tools, the pure part: read letters, summarise them, plan a replay.

No Kafka client here (the I/O is in :mod:`churnstream.kafka.dlq_io`), so everything that
decides *what* to report or re-send is unit-tested without a broker:

- :func:`parse_letter` reads one dead letter (body and headers) into a :class:`ParsedLetter`;
- :func:`dedupe` keeps one letter per input (the ``churnstream.source`` idempotency key: a
  scorer that crashes and replays its last batch can dead-letter the same input twice);
- :func:`summarise` counts by error type, reason code, source topic and retry count;
- :func:`reconstruct` rebuilds the original message bytes from ``original_message``;
- :func:`plan_replay` applies dedupe, filters and replay markers and says why each letter
  that is not re-sent is skipped;
- :class:`MarkerIndex` reads the replay markers (one per replayed letter, keyed by letter id).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_args

import orjson

from churnstream.pipeline.transform import (
    ERROR_CODE_HEADER,
    ORIGINAL_HEADER_PREFIX,
    ORIGINAL_KEY_HEADER,
    RETRY_COUNT_HEADER,
    SOURCE_HEADER,
    Headers,
    source_key,
)
from churnstream.schemas import ErrorType, parse_ts

logger = logging.getLogger(__name__)

#: Set on a replayed message: ``<dead-letter topic>:<partition>:<offset>`` of its letter.
REPLAY_OF_HEADER = "churnstream.replay_of"
#: Suffix of the compacted topic that records which letters were replayed.
MARKER_TOPIC_SUFFIX = ".replays"

#: Reason codes whose letter always wraps the original (``raw_text`` / ``raw_base64``).
WRAPPED_CODES = frozenset({"empty_body", "too_large", "not_utf8", "not_json", "not_object"})
#: Reason codes whose original was a JSON object, kept as is in ``original_message``.
OBJECT_CODES = frozenset({"schema", "key_mismatch", "inference"})
#: Every reason code the scorer writes (see the table in the README).
KNOWN_CODES = WRAPPED_CODES | OBJECT_CODES | {"processing"}
KNOWN_ERROR_TYPES = frozenset(get_args(ErrorType))
_WRAPPER_KEYS = frozenset({"raw_text", "raw_base64", "truncated", "size_bytes"})

NO_CODE = "(none)"
UNREADABLE = "(unreadable)"
EXCERPT_CHARS = 60

SKIP_REASONS = ("duplicate", "filtered", "already_replayed", "not_replayable", "over_limit")


# --------------------------------------------------------------------------- letters


@dataclass(frozen=True)
class Letter:
    """One record of a dead-letter topic, as read (decoupled from confluent_kafka.Message)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)

    @property
    def id(self) -> str:
        """``topic:partition:offset``: what a replay marker and ``replay_of`` refer to."""
        return source_key(self.topic, self.partition, self.offset)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (None if absent)."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


@dataclass(frozen=True)
class ParsedLetter:
    """A dead letter with its body read; ``problem`` says why a body is unreadable."""

    letter: Letter
    body: dict[str, Any] | None
    error_type: str
    code: str
    source: str | None
    failed_ts: str | None
    failed_at: datetime | None
    retry_count: int
    source_topic: str | None
    problem: str | None = None

    @property
    def id(self) -> str:
        return self.letter.id

    @property
    def dedupe_key(self) -> str:
        """The input it came from (``churnstream.source``), else the letter itself."""
        return self.source or f"letter:{self.id}"

    @property
    def original(self) -> dict[str, Any] | None:
        value = self.body.get("original_message") if self.body else None
        return value if isinstance(value, dict) else None


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="backslashreplace")


def parse_letter(letter: Letter) -> ParsedLetter:
    """Read a letter's body and headers; never raises (an odd letter is reported, not fatal)."""
    code = _text(letter.header(ERROR_CODE_HEADER)) or NO_CODE
    source = _text(letter.header(SOURCE_HEADER))
    body: dict[str, Any] | None = None
    problem: str | None = None
    if letter.value is None:
        problem = "the letter has no body"
    else:
        try:
            parsed = orjson.loads(letter.value)
        except orjson.JSONDecodeError as exc:
            problem = f"the letter body is not JSON: {exc}"
        else:
            if isinstance(parsed, dict):
                body = parsed
            else:
                problem = f"the letter body is JSON {type(parsed).__name__}, not an object"
    if body is not None and not isinstance(body.get("original_message"), dict):
        problem = "the letter has no original_message object"
    error_type = body.get("error_type") if body else None
    failed_ts = body.get("failed_ts") if body else None
    failed_at = None
    if isinstance(failed_ts, str):
        try:
            failed_at = parse_ts(failed_ts)
        except ValueError:
            failed_at = None
    else:
        failed_ts = None
    retry = body.get("retry_count") if body else None
    source_topic = body.get("source_topic") if body else None
    if not isinstance(source_topic, str):
        source_topic = source.rsplit(":", 2)[0] if source and source.count(":") >= 2 else None
    return ParsedLetter(
        letter=letter,
        body=body,
        error_type=error_type if isinstance(error_type, str) else UNREADABLE,
        code=code,
        source=source,
        failed_ts=failed_ts,
        failed_at=failed_at,
        retry_count=retry if isinstance(retry, int) and retry >= 0 else 0,
        source_topic=source_topic,
        problem=problem,
    )


def dedupe(letters: Iterable[ParsedLetter]) -> tuple[list[ParsedLetter], list[ParsedLetter]]:
    """(unique, duplicates): the first letter per input by (partition, offset) is kept.

    The key is the ``churnstream.source`` header, the input's ``topic:partition:offset``; a
    letter without it is its own key.
    """
    ordered = sorted(letters, key=lambda p: (p.letter.topic, p.letter.partition, p.letter.offset))
    seen: set[str] = set()
    unique: list[ParsedLetter] = []
    duplicates: list[ParsedLetter] = []
    for parsed in ordered:
        if parsed.dedupe_key in seen:
            duplicates.append(parsed)
        else:
            seen.add(parsed.dedupe_key)
            unique.append(parsed)
    return unique, duplicates


# --------------------------------------------------------------------------- originals


class NotReplayableError(ValueError):
    """The original message cannot be rebuilt from this letter."""


@dataclass(frozen=True)
class Original:
    key: bytes | None
    value: bytes | None


def _is_wrapper(original: dict[str, Any], code: str) -> bool:
    if code in WRAPPED_CODES:
        return True
    if code in OBJECT_CODES:
        return False  # the body was a JSON object, even one with a "raw_text" field
    # An unknown or missing code: go by shape.
    return (
        bool(original)
        and set(original) <= _WRAPPER_KEYS
        and bool({"raw_text", "raw_base64"} & set(original))
    )


def original_value(original: dict[str, Any], code: str = NO_CODE) -> bytes | None:
    """The original body: the JSON object re-encoded with orjson, or the wrapper decoded.

    ``{"raw_text": null}`` is a message without a value (None). A truncated letter
    (``"truncated": true``, kept for bodies over 64 KiB) raises NotReplayableError.
    """
    if not _is_wrapper(original, code):
        return orjson.dumps(original)
    if original.get("truncated") is True:
        size = original.get("size_bytes")
        of = f" of {size} bytes" if isinstance(size, int) else ""
        raise NotReplayableError(f"the letter kept only the start of the body{of} (truncated)")
    if "raw_base64" in original:
        encoded = original["raw_base64"]
        if not isinstance(encoded, str):
            raise NotReplayableError("raw_base64 is not a string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise NotReplayableError(f"raw_base64 is not valid base64: {exc}") from None
    if "raw_text" in original:
        text = original["raw_text"]
        if text is None:
            return None
        if not isinstance(text, str):
            raise NotReplayableError("raw_text is neither a string nor null")
        return text.encode("utf-8")
    raise NotReplayableError("original_message is a wrapper without raw_text or raw_base64")


def reconstruct(parsed: ParsedLetter) -> Original:
    """The original (key, value) of a letter; the key is the ``original_key`` header."""
    if parsed.problem is not None:
        raise NotReplayableError(parsed.problem)
    original = parsed.original
    if original is None:  # pragma: no cover - parse_letter sets problem then
        raise NotReplayableError("the letter has no original_message object")
    return Original(
        key=parsed.letter.header(ORIGINAL_KEY_HEADER),
        value=original_value(original, parsed.code),
    )


def replay_headers(parsed: ParsedLetter) -> Headers:
    """Headers of a replayed message: the original message's own headers as the letter kept
    them (row index, run id, anything a client set), then which letter it replays and its
    retry count + 1, which replace any earlier replay's."""
    ours = (REPLAY_OF_HEADER, RETRY_COUNT_HEADER)
    restored = [
        (name.removeprefix(ORIGINAL_HEADER_PREFIX), value)
        for name, value in parsed.letter.headers
        if name.startswith(ORIGINAL_HEADER_PREFIX)
        and name.removeprefix(ORIGINAL_HEADER_PREFIX) not in ours
    ]
    return [
        *restored,
        (REPLAY_OF_HEADER, parsed.id.encode()),
        (RETRY_COUNT_HEADER, str(parsed.retry_count + 1).encode()),
    ]


# --------------------------------------------------------------------------- filters


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


# --------------------------------------------------------------------------- markers


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


# --------------------------------------------------------------------------- summary


def excerpt(parsed: ParsedLetter) -> str:
    """customerID if the original has one, else a short excerpt of the raw body."""
    original = parsed.original
    if original is None:
        return f"({parsed.problem})" if parsed.problem else ""
    customer = original.get("customerID")
    if isinstance(customer, str) and not _is_wrapper(original, parsed.code):
        return customer
    if _is_wrapper(original, parsed.code):
        if original.get("truncated") is True:
            return f"(truncated, {original.get('size_bytes', '?')} bytes)"
        if "raw_base64" in original:
            return "base64:" + _short(str(original["raw_base64"]))
        text = original.get("raw_text")
        return "(empty)" if not text else _short(repr(text))
    return _short(orjson.dumps(original).decode())


def _short(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def example(parsed: ParsedLetter) -> dict[str, Any]:
    body = parsed.body or {}
    return {
        "letter": parsed.id,
        "customer_or_excerpt": excerpt(parsed),
        "error_type": parsed.error_type,
        "error_message": body.get("error_message", parsed.problem),
        "source": parsed.source,
        "failed_ts": parsed.failed_ts,
        "retry_count": parsed.retry_count,
    }


@dataclass
class Summary:
    """What `churnstream dlq inspect` reports; :meth:`to_dict` is its ``--json`` form."""

    topic: str
    letters: int
    unique: int
    duplicates: int
    unreadable: int
    limit_reached: bool
    by_error_type: dict[str, int]
    by_code: dict[str, int]
    code_error_types: dict[str, list[str]]
    by_source_topic: dict[str, int]
    by_retry_count: dict[int, int]
    oldest_failed_ts: str | None
    newest_failed_ts: str | None
    replayed: int
    examples: dict[str, list[dict[str, Any]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "letters": self.letters,
            "unique": self.unique,
            "duplicates_skipped": self.duplicates,
            "unreadable": self.unreadable,
            "limit_reached": self.limit_reached,
            "by_error_type": self.by_error_type,
            "by_code": self.by_code,
            "code_error_types": self.code_error_types,
            "by_source_topic": self.by_source_topic,
            "by_retry_count": {str(k): v for k, v in self.by_retry_count.items()},
            "oldest_failed_ts": self.oldest_failed_ts,
            "newest_failed_ts": self.newest_failed_ts,
            "replayed": self.replayed,
            "examples": self.examples,
        }


def _by_count(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def summarise(
    topic: str,
    letters: Sequence[ParsedLetter],
    *,
    examples: int = 3,
    markers: MarkerIndex | None = None,
    limit_reached: bool = False,
) -> Summary:
    """Counts over the letters, each input once, with ``examples`` letters per reason code."""
    unique, duplicates = dedupe(letters)
    by_type: Counter[str] = Counter(p.error_type for p in unique)
    by_code: Counter[str] = Counter(p.code for p in unique)
    by_topic: Counter[str] = Counter(p.source_topic or "(unknown)" for p in unique)
    by_retry: Counter[int] = Counter(p.retry_count for p in unique)
    code_types: dict[str, set[str]] = {}
    picked: dict[str, list[dict[str, Any]]] = {}
    for parsed in unique:
        code_types.setdefault(parsed.code, set()).add(parsed.error_type)
        chosen = picked.setdefault(parsed.code, [])
        if len(chosen) < examples:
            chosen.append(example(parsed))
    dated = [p for p in unique if p.failed_at is not None]
    oldest = min(dated, key=lambda p: p.failed_at or datetime.max, default=None)
    newest = max(dated, key=lambda p: p.failed_at or datetime.min, default=None)
    replayed = sum(1 for p in unique if markers is not None and markers.is_replayed(p))
    return Summary(
        topic=topic,
        letters=len(letters),
        unique=len(unique),
        duplicates=len(duplicates),
        unreadable=sum(1 for p in unique if p.problem is not None),
        limit_reached=limit_reached,
        by_error_type=_by_count(by_type),
        by_code=_by_count(by_code),
        code_error_types={c: sorted(t) for c, t in sorted(code_types.items())},
        by_source_topic=_by_count(by_topic),
        by_retry_count=dict(sorted(by_retry.items())),
        oldest_failed_ts=oldest.failed_ts if oldest else None,
        newest_failed_ts=newest.failed_ts if newest else None,
        replayed=replayed,
        examples={code: picked[code] for code in _by_count(by_code)},
    )


# --------------------------------------------------------------------------- replay plan


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
