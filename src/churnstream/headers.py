"""Every Kafka header churnstream writes or reads, by name, in one place.

The bodies follow the wire contracts of the system we replace, which have no room for our
own fields, so everything extra travels in these headers. Their names and value formats are
part of the interface: the dashboard, ``status``, the dead-letter tools and outside readers
match on them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

#: Headers as churnstream writes them (and as a dead letter carries its input's).
Headers = list[tuple[str, bytes]]
#: A consumed message's headers as the Kafka client hands them over, unconverted: None when
#: there are none, and a None value for a header without one. This is confluent-kafka's own
#: ``HeadersType``, restated so that the scoring core need not import the client; the poll
#: loop passes it on as it is, since only a dead letter reads it (see :func:`header_pairs`).
ConsumedHeaders = Mapping[str, str | bytes | None] | Sequence[tuple[str, str | bytes | None]] | None

# -- on predictions and dead letters ---------------------------------------------------------
#: The input a prediction or dead letter came from, ``topic:partition:offset`` (see
#: :func:`source_key`): the idempotency key that lets readers drop a replayed batch's copies.
SOURCE_HEADER = "churnstream.source"
#: A prediction's risk band: ``high``, ``medium`` or ``low``.
RISK_BAND_HEADER = "churnstream.risk_band"
#: The version of the model that scored a prediction.
MODEL_VERSION_HEADER = "churnstream.model_version"
#: A prediction's top reasons (``consume --reasons``): a JSON list of up to three
#: ``{"feature", "value", "contribution"}``, largest contribution to the churn probability
#: first (see docs/reasons.md).
REASONS_HEADER = "churnstream.reasons"

# -- on dead letters -------------------------------------------------------------------------
#: Why a message was dead-lettered, as a short reason code (``not_json``, ``schema``...).
ERROR_CODE_HEADER = "churnstream.error_code"
#: The input's Kafka key, byte for byte.
ORIGINAL_KEY_HEADER = "churnstream.original_key"
#: A dead letter carries each header of its input under this prefix (the contract's body has
#: no room for them), so that ``churnstream dlq replay`` can give them back.
ORIGINAL_HEADER_PREFIX = "churnstream.original."

# -- on replayed inputs (``churnstream dlq replay``) -----------------------------------------
#: How often a re-sent message was replayed already.
RETRY_COUNT_HEADER = "churnstream.retry_count"
#: ``<dead-letter topic>:<partition>:<offset>`` of the letter a re-sent message came from.
REPLAY_OF_HEADER = "churnstream.replay_of"

# -- on produced events (``churnstream produce``) --------------------------------------------
#: The row's index in the source file; batch resume reads it back.
ROW_INDEX_HEADER = "churnstream.row_index"
#: The producing run's id.
RUN_ID_HEADER = "churnstream.run_id"

# -- on shadow predictions -------------------------------------------------------------------
#: The version of the champion model that served the same input.
CHAMPION_VERSION_HEADER = "churnstream.champion_version"
#: The champion's probability for the same input (Python's ``repr`` of the float).
CHAMPION_PROBABILITY_HEADER = "churnstream.champion_probability"


def source_key(topic: str, partition: int, offset: int) -> str:
    """The value of :data:`SOURCE_HEADER`: ``topic:partition:offset``."""
    return f"{topic}:{partition}:{offset}"


def header_pairs(headers: ConsumedHeaders) -> Headers:
    """A consumed message's headers as :data:`Headers`, in order: a missing value is ``b""``
    (Kafka has no header without a value on the way out), text is UTF-8."""
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs]
