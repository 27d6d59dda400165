"""Dead letters as read: one record of a dead-letter topic, its body and headers parsed.

:func:`parse_letter` never raises (an odd letter is reported, not fatal); :func:`dedupe`
keeps one letter per input (the ``churnstream.source`` idempotency key: a scorer that
crashes and replays its last batch can dead-letter the same input twice).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args

import orjson

from churnstream.headers import ERROR_CODE_HEADER, SOURCE_HEADER, Headers
from churnstream.schemas import ErrorType, parse_ts

logger = logging.getLogger(__name__)

#: Reason codes whose letter always wraps the original (``raw_text`` / ``raw_base64``).
WRAPPED_CODES = frozenset({"empty_body", "too_large", "not_utf8", "not_json", "not_object"})
#: Reason codes whose original was a JSON object, kept as is in ``original_message``.
OBJECT_CODES = frozenset({"schema", "duplicate_key", "key_mismatch", "inference"})
#: Every reason code the scorer writes (see the table in the README).
KNOWN_CODES = WRAPPED_CODES | OBJECT_CODES | {"processing"}
KNOWN_ERROR_TYPES = frozenset(get_args(ErrorType))

NO_CODE = "(none)"
UNREADABLE = "(unreadable)"


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
        return f"{self.topic}:{self.partition}:{self.offset}"

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
