"""Kafka header names churnstream writes and reads: one place for every name.

The values are part of the wire contract: a renamed header breaks every reader of the
topics, so they never change.
"""

from __future__ import annotations

#: On predictions and dead letters: the input's ``topic:partition:offset`` (the
#: idempotency key; a crash-and-replay writes a second output with the same value).
SOURCE_HEADER = "churnstream.source"
#: On dead letters: the reason code (``schema``, ``not_json``...).
ERROR_CODE_HEADER = "churnstream.error_code"
#: On dead letters: the input's key, which the letter's own key may not keep.
ORIGINAL_KEY_HEADER = "churnstream.original_key"
#: Set by `churnstream dlq replay` on a re-sent message: how often it was replayed already.
RETRY_COUNT_HEADER = "churnstream.retry_count"
#: A dead letter carries each header of its input under this prefix (the contract's body has
#: no room for them), so that `churnstream dlq replay` can give them back.
ORIGINAL_HEADER_PREFIX = "churnstream.original."
#: Set on a replayed message: ``<dead-letter topic>:<partition>:<offset>`` of its letter.
REPLAY_OF_HEADER = "churnstream.replay_of"
