"""What ``churnstream dlq inspect`` reports: counts by error type, reason code, source
topic and retry count, each input once, with a few examples per code."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from churnstream.deadletters.letters import ParsedLetter, dedupe
from churnstream.deadletters.markers import MarkerIndex
from churnstream.deadletters.originals import is_wrapper

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 60


def excerpt(parsed: ParsedLetter) -> str:
    """customerID if the original has one, else a short excerpt of the raw body."""
    original = parsed.original
    if original is None:
        return f"({parsed.problem})" if parsed.problem else ""
    customer = original.get("customerID")
    if isinstance(customer, str) and not is_wrapper(original, parsed.code):
        return customer
    if is_wrapper(original, parsed.code):
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
