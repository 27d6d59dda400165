"""The original message of a dead letter: rebuilt byte for byte, or why it cannot be."""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from churnstream.deadletters.letters import (
    NO_CODE,
    OBJECT_CODES,
    WRAPPED_CODES,
    ParsedLetter,
)
from churnstream.headers import (
    ORIGINAL_HEADER_PREFIX,
    ORIGINAL_KEY_HEADER,
    REPLAY_OF_HEADER,
    RETRY_COUNT_HEADER,
    Headers,
)

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = frozenset({"raw_text", "raw_base64", "truncated", "size_bytes"})


class NotReplayableError(ValueError):
    """The original message cannot be rebuilt from this letter."""


@dataclass(frozen=True)
class Original:
    key: bytes | None
    value: bytes | None


def is_wrapper(original: dict[str, Any], code: str) -> bool:
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
    if not is_wrapper(original, code):
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
