"""The poll loop hands a consumed message's headers to the scoring core as the client gave
them (no copy per message); only a dead letter converts them, and its headers are byte for
byte what they were when the loop converted every message."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Message

from churnstream.headers import (
    ERROR_CODE_HEADER,
    ORIGINAL_HEADER_PREFIX,
    ORIGINAL_KEY_HEADER,
    RETRY_COUNT_HEADER,
    SOURCE_HEADER,
    ConsumedHeaders,
    Headers,
    header_pairs,
)
from churnstream.kafka.reader import record_fields
from churnstream.scoring.messages import RawMessage
from churnstream.streaming.batches import usable
from tests.unit.test_score_batch import event, run

TOPIC = "telco.raw.customers"
KEY = b"7590-VHVEG"


def consumed(offset: int, value: bytes, headers: ConsumedHeaders) -> Message:
    """A real confluent_kafka.Message, as ``consumer.consume`` returns one."""
    return Message(topic=TOPIC, partition=1, offset=offset, key=KEY, value=value, headers=headers)


def test_null_header_values_and_no_headers_reach_the_dead_letter_as_before() -> None:
    null_value = consumed(
        10, b"{not json", [("trace", None), (RETRY_COUNT_HEADER, b"2"), ("tag", b"x")]
    )
    no_headers = consumed(11, b"{not json", None)
    valid = consumed(12, event(tenure=1), [("trace", None), ("tag", b"x")])
    polled = [null_value, no_headers, valid]

    batch = usable(polled)
    assert batch[0].headers is null_value.headers()  # handed over, not copied
    assert batch[1].headers is None
    result = run(batch)

    [scored] = result.predictions
    assert json.loads(scored.value)["customerID"] == "7590-VHVEG"
    assert dict(scored.headers)[SOURCE_HEADER] == f"{TOPIC}:1:12".encode()
    letter, bare = result.dead_letters
    assert letter.headers == [
        (SOURCE_HEADER, f"{TOPIC}:1:10".encode()),
        (ERROR_CODE_HEADER, b"not_json"),
        (ORIGINAL_KEY_HEADER, KEY),
        (ORIGINAL_HEADER_PREFIX + "trace", b""),
        (ORIGINAL_HEADER_PREFIX + RETRY_COUNT_HEADER, b"2"),
        (ORIGINAL_HEADER_PREFIX + "tag", b"x"),
    ]
    assert json.loads(letter.value)["retry_count"] == 2
    assert bare.headers == [
        (SOURCE_HEADER, f"{TOPIC}:1:11".encode()),
        (ERROR_CODE_HEADER, b"not_json"),
        (ORIGINAL_KEY_HEADER, KEY),
    ]
    # The same letters, key, body and headers, as from messages converted up front.
    before = run([RawMessage(*record_fields(m)) for m in polled])
    assert [tuple(m) for m in result.dead_letters] == [tuple(m) for m in before.dead_letters]


@pytest.mark.parametrize(
    ("given", "pairs"),
    [
        (None, []),
        ([], []),
        ([("a", None), ("b", b"1"), ("a", b"")], [("a", b""), ("b", b"1"), ("a", b"")]),
        ({"a": None, "b": "é"}, [("a", b""), ("b", "é".encode())]),
    ],
)
def test_header_pairs_gives_bytes_in_order(given: ConsumedHeaders, pairs: Headers) -> None:
    assert header_pairs(given) == pairs
