"""Dead letters: a message that could not be scored, with why, for ``telco.deadletter``.

The body is the ``DeadLetter`` contract; headers say where the input came from, the reason
code, and carry the input's own key and headers so that ``churnstream dlq replay`` can send
the message again exactly as it came.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from churnstream.headers import (
    ERROR_CODE_HEADER,
    ORIGINAL_HEADER_PREFIX,
    ORIGINAL_KEY_HEADER,
    RETRY_COUNT_HEADER,
    SOURCE_HEADER,
    Headers,
    header_pairs,
    source_key,
)
from churnstream.logging import ERROR_CODE, OFFSET, PARTITION, TOPIC
from churnstream.schemas import DeadLetter, ErrorType, dump_body, format_ts
from churnstream.scoring.decode import MAX_BODY_BYTES, nested_too_deep
from churnstream.scoring.messages import OutMessage, RawMessage

logger = logging.getLogger(__name__)

#: How much of an oversized body the dead letter keeps, so the letter itself stays small.
OVERSIZED_KEEP_BYTES = 1024
#: A replay count above this is no count (the body's encoder takes 64-bit integers only).
MAX_RETRY_COUNT = 2**63 - 1


def original_message(value: bytes | None) -> dict[str, Any]:
    """The contract wants an object: a JSON object as is, anything else wrapped."""
    if value is None:
        return {"raw_text": None}
    if len(value) > MAX_BODY_BYTES:
        return {
            "raw_base64": base64.b64encode(value[:OVERSIZED_KEEP_BYTES]).decode(),
            "truncated": True,
            "size_bytes": len(value),
        }
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return {"raw_base64": base64.b64encode(value).decode()}
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"raw_text": text}
    if not isinstance(parsed, dict) or nested_too_deep(value):
        return {"raw_text": text}  # too deep for the letter's encoder: kept as text instead
    return parsed


def retry_count(headers: Headers) -> int:
    """How often the input was replayed already (0 for a first delivery or an unreadable count)."""
    for name, value in headers:
        if name == RETRY_COUNT_HEADER:
            try:
                count = int(value)
            except ValueError:
                return 0
            return count if 0 <= count <= MAX_RETRY_COUNT else 0
    return 0


def dead_letter(
    message: RawMessage,
    *,
    error_type: ErrorType,
    reason: str,
    code: str,
    details: Sequence[str] = (),
    consumer_group: str | None,
    failed_ts: str,
) -> OutMessage:
    carried = header_pairs(message.headers)
    body = DeadLetter(
        original_message=original_message(message.value),
        error_type=error_type,
        error_message=reason,
        validation_errors=list(details) or None,
        source_topic=message.topic,
        failed_ts=failed_ts,
        consumer_group=consumer_group,
        retry_count=retry_count(carried),
    )
    headers: Headers = [
        (SOURCE_HEADER, source_key(message.topic, message.partition, message.offset).encode()),
        (ERROR_CODE_HEADER, code.encode()),
    ]
    if message.key is not None:
        headers.append((ORIGINAL_KEY_HEADER, message.key))
    headers.extend((ORIGINAL_HEADER_PREFIX + name, value) for name, value in carried)
    return OutMessage(key=message.key, value=orjson.dumps(dump_body(body)), headers=headers)


class Rejects:
    """The dead letters of one batch, with their counts by error type and by reason code."""

    def __init__(self, consumer_group: str | None, failed_at: datetime) -> None:
        self.consumer_group = consumer_group
        self.failed_at = failed_at
        self._failed_ts: str | None = None
        self.letters: list[OutMessage] = []
        self.types: dict[str, int] = {}
        self.codes: dict[str, int] = {}

    def failed_ts(self) -> str:
        """The batch's failure time as bodies write it; formatted only once a letter needs it
        (most batches have none, and formatting is a measurable part of scoring one row)."""
        if self._failed_ts is None:
            self._failed_ts = format_ts(self.failed_at)
        return self._failed_ts

    def add(
        self,
        msg: RawMessage,
        error_type: ErrorType,
        reason: str,
        code: str,
        details: Sequence[str] = (),
    ) -> None:
        self.letters.append(
            dead_letter(
                msg,
                error_type=error_type,
                reason=reason,
                code=code,
                details=details,
                consumer_group=self.consumer_group,
                failed_ts=self.failed_ts(),
            )
        )
        self.types[error_type] = self.types.get(error_type, 0) + 1
        self.codes[code] = self.codes.get(code, 0) + 1
        logger.warning(
            "dead-lettered %s[%d]@%d: %s (%s)",
            msg.topic,
            msg.partition,
            msg.offset,
            code,
            reason,
            extra={
                TOPIC: msg.topic,
                PARTITION: msg.partition,
                OFFSET: msg.offset,
                ERROR_CODE: code,
            },
        )
