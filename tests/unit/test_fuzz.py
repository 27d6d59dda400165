"""Fuzz: no input from the outside world crashes the scorer, and each one ends as the contract says.

Property-based (hypothesis) over the scoring core (:func:`churnstream.scoring.batch.score_batch`)
and over the poll loop's message handling (:func:`churnstream.streaming.batches.usable`, fed
fake ``confluent_kafka.Message`` objects, then the core). Inputs: random bytes, truncated and
byte-damaged records, bodies over the size limit, deeply nested JSON, invalid UTF-8, ``NaN`` and
``Infinity``, duplicate keys, every field of the contract given a value of every JSON type,
keys that differ from the body's customerID, and garbage headers.

The properties, for every message of every batch:

- nothing raises, and nothing is an internal ``processing`` error;
- it comes out exactly once: one prediction or one dead letter, matched by the source header;
- it is scored if and only if :func:`oracle` accepts it (``CustomerEvent``, the pydantic
  contract model, plus the documented rules before it), and a dead letter carries the reason
  code the oracle gives, one the dead-letter tools know, in a body the contract accepts.

Each run generates at least 10,000 messages from a fixed seed (the ``churnstream`` settings
profile in ``tests/conftest.py``); the regressions it found are pinned as ``@example``s.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import KafkaError
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from churnstream.deadletters.letters import KNOWN_CODES
from churnstream.exceptions import BrokerUnavailableError
from churnstream.headers import (
    ERROR_CODE_HEADER,
    ORIGINAL_HEADER_PREFIX,
    RETRY_COUNT_HEADER,
    SOURCE_HEADER,
    source_key,
)
from churnstream.model.feature_batch import FeatureBatch
from churnstream.schemas import (
    CATEGORICAL_LEVELS,
    NUMERIC_BOUNDS,
    TARGET_COLUMN,
    CustomerEvent,
    DeadLetter,
    Prediction,
)
from churnstream.scoring.batch import score_batch
from churnstream.scoring.decode import MAX_BODY_BYTES, MAX_NESTING_DEPTH
from churnstream.scoring.messages import BatchResult, RawMessage
from churnstream.streaming.batches import usable

TOPIC = "telco.raw.customers"
NOW = datetime(2025, 10, 3, 4, 0, 1, tzinfo=UTC)
#: The stand-in model cannot score this tenure (its probability is NaN): the inference path.
UNSCORABLE_TENURE = 13
#: Messages per run, at least (the issue's figure); each example is a batch.
MIN_MESSAGES = 10_000
CORE_EXAMPLES = 180
LOOP_EXAMPLES = 30
BATCH_SIZE = (15, 17)  # families of messages: about 45 messages a batch


def model(batch: FeatureBatch) -> np.ndarray:
    """A transparent stand-in model: probability falls with tenure; one tenure is unscorable."""
    p = np.clip(1.0 - batch.tenure / 72.0, 0.0, 1.0)
    return np.where(batch.tenure == UNSCORABLE_TENURE, np.nan, p)


# -- the oracle --------------------------------------------------------------------------------
class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key-value pairs, in order, duplicates kept."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not np.isfinite(number):  # 1e400: no double holds it
        raise ValueError(f"{text} is out of range")
    return number


def _depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text (one character at a time)."""
    if text.count("[") + text.count("{") <= MAX_NESTING_DEPTH:
        return 1  # no deeper than the brackets it has: within the limit, however they nest
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@contextmanager
def _deep_recursion() -> Iterator[None]:
    """The stdlib parser recurses per nesting level; let the oracle read any depth we make."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def oracle(key: bytes | None, value: bytes | None) -> tuple[str | None, CustomerEvent | None]:
    """(reason code, None) for a message the contract refuses; (None, event) for a valid one.

    The contract model decides, after the documented rules before it (docs/operating.md):
    a body, at most 64 KiB, UTF-8, strict JSON (no NaN/Infinity) nested at most
    MAX_NESTING_DEPTH deep, an object, without duplicate keys; after it, the Kafka key (if
    any) is the customerID. Written with the standard library, independently of the core.
    """
    if not value:
        return "empty_body", None
    if len(value) > MAX_BODY_BYTES:
        return "too_large", None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8", None
    with _deep_recursion():
        try:
            tree = json.loads(
                text,
                object_pairs_hook=_Pairs,
                parse_constant=_refuse_constant,
                parse_float=_finite_float,
            )
        except ValueError:  # JSONDecodeError, NaN/Infinity, a number beyond a double
            return "not_json", None
    if _depth(text) > MAX_NESTING_DEPTH or _has_surrogate(tree):
        return "not_json", None
    if not isinstance(tree, _Pairs):
        return "not_object", None
    if _has_duplicates(tree):
        return "duplicate_key", None
    data = dict(tree)
    try:
        event = CustomerEvent.model_validate(data)
    except ValidationError:
        return "schema", None
    if key is not None and key != event.customerID.encode():
        return "key_mismatch", None
    if event.tenure == UNSCORABLE_TENURE:
        return "inference", None
    return None, event


def _walk(value: Any) -> Iterator[Any]:
    """Every value, key and object in a parsed tree (iterative: it may be deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, _Pairs):
            stack.extend(k for k, _ in item)
            stack.extend(v for _, v in item)
        elif isinstance(item, list):
            stack.extend(item)


def _has_duplicates(tree: _Pairs) -> bool:
    return any(
        isinstance(item, _Pairs) and len({k for k, _ in item}) != len(item) for item in _walk(tree)
    )


def _has_surrogate(value: Any) -> bool:
    """``"\\ud800"`` escapes a lone surrogate, which is no Unicode text (RFC 8259, 8.2)."""
    return any(isinstance(v, str) and _lone_surrogate(v) for v in _walk(value))


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# -- the strategies ------------------------------------------------------------------------------
# Hypothesis pays per draw, and this machine is slow: a valid record is picked from the
# contract's value tables by one drawn seed (it shrinks to record 0); what the test is about,
# the changes to it, are drawn one by one so that a failure shrinks to the change that matters.
def valid_values(name: str) -> list[Any]:
    """Values the contract accepts for field ``name``, edges included (from its rule tables)."""
    if name in CATEGORICAL_LEVELS:
        return list(CATEGORICAL_LEVELS[name])
    if name == "customerID":
        pick = random.Random(15)  # noqa: S311 - test data
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return [
            f"{pick.randrange(10_000):04d}-{''.join(pick.choices(letters, k=5))}" for _ in range(40)
        ]
    if name == TARGET_COLUMN:
        return ["Yes", "No", None]
    if name == "event_ts":
        return [
            "2025-10-03T04:00:00Z", "2025-10-03T04:00:00", "2025-10-03T04:00:00.123456Z",
            "2025-10-03T04:00:00.1Z", "2024-02-29T23:59:59Z", "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ]  # fmt: skip
    low, high = NUMERIC_BOUNDS[name]
    if name in ("SeniorCitizen", "tenure"):
        ints = list(range(int(low), int(high or 0) + 1))
        return ints if name == "SeniorCitizen" else [0, 1, 12, UNSCORABLE_TENURE, 72, 99, 100]
    if name == "MonthlyCharges":
        return [0, 0.0, 18.25, 70.7, 199.99, 200, 200.0, 5e-324]
    return [  # TotalCharges: a number, a numeric string, or blank
        0, 0.0, 1889.5, 1e308, 2**70, "0", "12", "1889.50", "", " ", "\t", "\u2003", "12\n",
        "9" * 40,
    ]  # fmt: skip


def _check_contract_fields() -> dict[str, list[Any]]:
    # Every field of the contract has values here (KeyError if one is added without).
    table = {name: valid_values(name) for name in CustomerEvent.model_fields}
    for name, values in table.items():
        for value in values:  # and they are valid
            CustomerEvent.model_validate({**BASE_EVENT, name: value})
    return table


BASE_EVENT: dict[str, Any] = {
    "customerID": "7590-VHVEG", "gender": "Female", "SeniorCitizen": 0, "Partner": "Yes",
    "Dependents": "No", "tenure": 1, "PhoneService": "No", "MultipleLines": "No phone service",
    "InternetService": "DSL", "OnlineSecurity": "No", "OnlineBackup": "Yes",
    "DeviceProtection": "No", "TechSupport": "No", "StreamingTV": "No", "StreamingMovies": "No",
    "Contract": "Month-to-month", "PaperlessBilling": "Yes", "PaymentMethod": "Electronic check",
    "MonthlyCharges": 29.85, "TotalCharges": 29.85, "event_ts": "2025-10-03T04:00:00Z",
}  # fmt: skip
VALID = _check_contract_fields()
FIELDS = tuple(VALID)


def valid_event(seed: int) -> dict[str, Any]:
    """A valid event, each field's value picked from its table by ``seed`` (0: the first)."""
    if seed == 0:
        return {name: values[0] for name, values in VALID.items()}
    pick = random.Random(seed)  # noqa: S311 - test data
    event = {name: pick.choice(values) for name, values in VALID.items()}
    if pick.random() < 0.5:
        del event[TARGET_COLUMN]
    return event


#: A JSON value of every type: null, booleans, integers of any size, floats including NaN and
#: the infinities (the stdlib encoder writes them as NaN/Infinity tokens), strings with any
#: characters, arrays and objects.
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["Yes", "No", "yes", "Yes ", "12", "", "7590-VHVEG", "2025-10-03T04:00:00Z"]),
)
#: Values of every type, the awkward ones first; drawn from a list (one draw) most of the time.
AWKWARD: list[Any] = [
    None, True, False, 0, -0.0, 1, -1, 2, 13, 100, 101, 200.0001, -0.01, 2**63, 2**64, -(2**63) - 1,
    10**30, 1e308, float("nan"), float("inf"), float("-inf"), "", " ", "\u00a0", "12", "12.5",
    "12.", ".5", "1e3", "\uff11\uff12", "Yes", "yes", "Yes ", "No internet service", "Male",
    "7590-VHVEG", "7590-vhveg", "7590-VHVEG\n", "2025-10-03T04:00:00Z", "2025-13-40T00:00:00Z",
    "2025-02-29T00:00:00Z", "2025-10-03 04:00:00", "2025-10-03T04:00:00+00:00", "\ud800",
    "\x00", "\U0001f600", [], [1], ["Yes"], {}, {"a": 1}, {"customerID": "7590-VHVEG"},
    [[[[[]]]]],
]  # fmt: skip
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=5,
)
_POOL = st.sampled_from(AWKWARD)
ANY_VALUE = st.one_of(_POOL, _POOL, _POOL, JSON_VALUES)


def _encode(value: Any, draw: st.DrawFn) -> bytes:
    text = json.dumps(
        value,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    )
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def damage(draw: st.DrawFn, body: bytes, spare: bool = False) -> bytes:
    """Byte-level damage to an encoded body (if ``spare``, most often none)."""
    kinds = ["truncate", "truncate", "insert_byte", "invalid_utf8", "bom", "pad", "nan"]
    kinds += ["too_large", "deep", "overlong"]
    how = draw(st.sampled_from(["none"] * 12 + kinds if spare else kinds))
    if how == "truncate":
        return body[: draw(st.integers(0, max(0, len(body) - 1)))]
    if how == "insert_byte":
        at = draw(st.integers(0, len(body)))
        return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at:]
    if how == "invalid_utf8":
        at = draw(st.integers(0, len(body)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80"]))
        return body[:at] + bad + body[at:]
    if how == "bom":
        return b"\xef\xbb\xbf" + body
    if how == "pad":
        return b" \n\t" + body + b"\r\n "
    if how == "nan":
        token = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"]))
        return body.replace(b'"tenure":', b'"tenure":' + token + b',"x":', 1).replace(
            b'"MonthlyCharges": ', b'"MonthlyCharges": ' + token + b', "y": ', 1
        )
    if how == "too_large":
        # Whitespace is valid JSON: a valid record that is simply too big.
        size = draw(st.sampled_from([MAX_BODY_BYTES - len(body), MAX_BODY_BYTES + 1 - len(body)]))
        return body + b" " * max(0, size)
    if how == "deep":
        depth = draw(st.sampled_from([2, 50, MAX_NESTING_DEPTH - 2, MAX_NESTING_DEPTH + 1, 300]))
        depth = draw(st.sampled_from([depth, 900, 990, 1030, 3000]))
        inner = _nested(depth, draw(st.sampled_from(["list", "object"]))).encode()
        return body.replace(b'"tenure":', b'"tenure":' + inner + b',"z":', 1)
    if how == "overlong":
        return body.replace(b'"gender":', b'"gender":"' + b"x" * 70_000 + b'","w":', 1)
    return body


@st.composite
def record(draw: st.DrawFn) -> tuple[bytes | None, bytes | None]:
    """A customer record, often valid, with up to three field-level changes and byte damage."""
    event = valid_event(draw(st.integers(0, 2**31)))
    duplicates: list[tuple[str, Any]] = []
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        field = draw(st.sampled_from(FIELDS))
        change = draw(st.sampled_from(["retype", "retype", "drop", "extra", "duplicate"]))
        if change == "retype":  # every field, every type
            event[field] = draw(ANY_VALUE)
        elif change == "drop":
            event.pop(field, None)
        elif change == "extra":
            event[draw(st.sampled_from(["surprise", "churn", "CustomerID", ""]))] = draw(ANY_VALUE)
        else:
            duplicates.append((field, draw(st.one_of(st.sampled_from(VALID[field]), ANY_VALUE))))
    body = _encode(event, draw)
    for field, value in duplicates:  # a key given twice: json.dumps cannot write that
        extra = json.dumps({field: value})[1:-1].encode("utf-8", "surrogatepass")
        body = b"{" + extra + b"," + body[1:] if body != b"{}" else b"{" + extra + b"}"
    customer = event.get("customerID")
    own_key = customer.encode("utf-8", "surrogatepass") if isinstance(customer, str) else b"x"
    key = draw(st.sampled_from([own_key, own_key, None, None, b"1234-ABCDE", b"", b"\xff"]))
    return key, body


def _top_level_json(draw: st.DrawFn) -> bytes:
    return _encode(draw(JSON_VALUES), draw)


Family = list[tuple[bytes | None, bytes | None]]


@st.composite
def message_family(draw: st.DrawFn) -> Family:
    """(key, value) of a few messages: a record and damaged copies of it, else raw noise.

    A record's copies (truncated, bytes inserted, invalid UTF-8...) cost a few draws each
    rather than a whole record's, so a run reaches its 10,000 messages in time.
    """
    kind = draw(st.sampled_from(["record"] * 6 + ["bytes", "json", "empty", "deep"]))
    if kind == "record":
        key, body = draw(record())
        family: Family = [(key, draw(damage(body, spare=True)))]
        family += [(key, draw(damage(body))) for _ in range(draw(st.integers(3, 7)))]
        return family
    key = draw(st.one_of(st.none(), st.binary(max_size=12)))
    if kind == "bytes":
        return [(key, draw(st.binary(max_size=120)))]
    if kind == "json":
        return [(key, _top_level_json(draw))]
    if kind == "empty":
        return [(key, draw(st.sampled_from([None, b""])))]
    depth = draw(st.sampled_from([MAX_NESTING_DEPTH, MAX_NESTING_DEPTH + 1, 500, 1100, 5000]))
    return [(key, _nested(depth, draw(st.sampled_from(["list", "object"]))).encode())]


HEADER_NAMES = st.one_of(
    st.sampled_from([RETRY_COUNT_HEADER, SOURCE_HEADER, ERROR_CODE_HEADER, "", "x"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=16),
)
HEADER_VALUES = st.one_of(
    st.binary(max_size=24),
    st.sampled_from(
        [b"", b"0", b"-1", b"7", b" 7 ", b"1_000", b"9" * 30, b"9" * 5000, b"\xff", b"nan", b"1e3"]
    ),
)


#: Header lists as they come (none, ours, a replayed input's), and now and then drawn garbage.
HEADER_SETS: list[list[tuple[str, bytes]]] = [
    [],
    [],
    [],
    [("churnstream.row_index", b"17"), ("churnstream.run_id", b"r1")],
    [(RETRY_COUNT_HEADER, b"2"), ("churnstream.replay_of", b"telco.deadletter:0:5")],
    [(RETRY_COUNT_HEADER, b"9" * 30)],
    [(RETRY_COUNT_HEADER, b"-3"), (RETRY_COUNT_HEADER, b"\xff")],
    [(SOURCE_HEADER, b"forged:0:0"), (ERROR_CODE_HEADER, b"schema")],
]


def raw_headers() -> st.SearchStrategy[list[tuple[str, bytes]]]:
    drawn = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), min_size=1, max_size=3)
    return st.one_of(st.sampled_from(HEADER_SETS), drawn)


# -- the properties ----------------------------------------------------------------------------
def score(batch: list[RawMessage]) -> BatchResult:
    return score_batch(
        batch, model, threshold=0.5, model_version="vfuzz", consumer_group="g", clock=lambda: NOW
    )


def assert_as_the_oracle_says(batch: list[RawMessage], result: BatchResult) -> dict[str, int]:
    """Every message once, scored iff the oracle accepts it, else with the oracle's code."""
    outputs: dict[bytes, tuple[str, Any]] = {}
    for out in result.predictions:
        headers = dict(out.headers)
        assert headers[SOURCE_HEADER] not in outputs
        outputs[headers[SOURCE_HEADER]] = ("scored", out)
    for out in result.dead_letters:
        source = dict(out.headers)[SOURCE_HEADER]
        assert source not in outputs
        outputs[source] = ("dead", out)
    assert len(outputs) == len(batch) == len(result.predictions) + len(result.dead_letters)

    outcomes: dict[str, int] = {}
    for msg in batch:
        source = source_key(msg.topic, msg.partition, msg.offset).encode()
        what, out = outputs[source]
        code, event = oracle(msg.key, msg.value)
        outcomes[code or "scored"] = outcomes.get(code or "scored", 0) + 1
        if event is not None:
            assert what == "scored", (msg, out)
            body = Prediction.model_validate(orjson.loads(out.value))
            assert body.customerID == event.customerID and body.event_ts == event.event_ts
            assert out.key == event.customerID.encode()
            continue
        assert what == "dead", (msg, code)
        got = dict(out.headers)[ERROR_CODE_HEADER].decode()
        assert got == code, (msg, got, code)
        assert got in KNOWN_CODES
        letter = DeadLetter.model_validate(orjson.loads(out.value))
        assert letter.source_topic == msg.topic
        assert letter.error_type == (
            "inference_error" if code == "inference" else "validation_error"
        )
        carried = [(n, v) for n, v in out.headers if n.startswith(ORIGINAL_HEADER_PREFIX)]
        # A header without a value (None from the client) is carried as b"".
        originals = [(ORIGINAL_HEADER_PREFIX + n, v or b"") for n, v in msg.headers or []]
        assert carried == originals
    return outcomes


@dataclass
class Tally:
    messages: int = 0
    batches: int = 0
    outcomes: dict[str, int] | None = None

    def add(self, outcomes: dict[str, int]) -> None:
        self.outcomes = self.outcomes or {}
        for code, n in outcomes.items():
            self.outcomes[code] = self.outcomes.get(code, 0) + n
            self.messages += n
        self.batches += 1


@pytest.fixture
def quiet_dead_letters(caplog: pytest.LogCaptureFixture) -> None:
    """One warning per dead letter is the scorer's job, not this test's output (thousands);
    errors (an unexpected exception) still show."""
    caplog.set_level(logging.ERROR, logger="churnstream.scoring")


# Regressions the fuzzer found, replayed first on every run.
DEEP_IN_OBJECT = (None, b'{"a":' + b"[" * 300 + b"]" * 300 + b"}")
DEEP_FOR_THE_DUPLICATE_CHECK = (None, b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}")
HUGE_RETRY_COUNT = [(RETRY_COUNT_HEADER, b"9" * 30)]


def test_fuzzed_batches_are_scored_or_dead_lettered_as_the_contract_says(
    quiet_dead_letters: None,
) -> None:
    tally = Tally()

    @settings(max_examples=CORE_EXAMPLES)
    @given(
        st.lists(
            st.tuples(message_family(), raw_headers()),
            min_size=BATCH_SIZE[0],
            max_size=BATCH_SIZE[1],
        )
    )
    @example([([DEEP_IN_OBJECT], [])])
    @example([([DEEP_FOR_THE_DUPLICATE_CHECK], [])])
    @example([([(None, b"{}")], HUGE_RETRY_COUNT)])
    def check(items: list[tuple[Family, list[tuple[str, bytes]]]]) -> None:
        flat = [(message, headers) for family, headers in items for message in family]
        batch = [
            RawMessage(TOPIC, offset % 3, offset, key, value, headers)
            for offset, ((key, value), headers) in enumerate(flat)
        ]
        tally.add(assert_as_the_oracle_says(batch, score(batch)))

    check()
    print(f"fuzz (core): {tally.messages} messages in {tally.batches} batches: {tally.outcomes}")
    assert tally.messages >= MIN_MESSAGES
    outcomes = tally.outcomes or {}
    # The generator reaches both sides and every refusal the contract has.
    assert outcomes["scored"] >= tally.messages // 20
    assert set(outcomes) == {"scored"} | (KNOWN_CODES - {"processing"})


# -- the poll loop's message handling ------------------------------------------------------------
class FakeMessage:
    """What ``consumer.consume`` returns, as far as the poll loop reads it."""

    def __init__(
        self,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None,
        error: KafkaError | None = None,
    ) -> None:
        self._offset, self._key, self._value, self._headers = offset, key, value, headers
        self._error = error

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._offset % 3

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._headers

    def error(self) -> KafkaError | None:
        return self._error


SOFT_ERRORS = st.sampled_from(
    [None] * 12
    + [
        KafkaError(KafkaError._PARTITION_EOF),
        KafkaError(KafkaError._TRANSPORT, "broker down"),
        KafkaError(KafkaError._MSG_TIMED_OUT),
    ]
)
LOOP_HEADERS = st.one_of(
    st.none(),
    st.lists(st.tuples(HEADER_NAMES, st.one_of(st.none(), HEADER_VALUES)), max_size=3),
)


def test_fuzzed_polls_reach_the_core_whole(quiet_dead_letters: None) -> None:
    """The loop's handling: records become RawMessages (headers as the client gave them; a
    letter carries a null header value as b""), EOF and soft errors are skipped, a fatal
    error stops the batch; the core then holds as above."""
    tally = Tally()

    @settings(max_examples=LOOP_EXAMPLES)
    @given(
        st.lists(
            st.tuples(message_family(), LOOP_HEADERS, SOFT_ERRORS),
            min_size=BATCH_SIZE[0],
            max_size=BATCH_SIZE[1],
        ),
        st.integers(0, 9),
    )
    def check(items: list[tuple[Family, Any, KafkaError | None]], fatal: int) -> None:
        flat = [
            (message, headers, error if i == 0 else None)
            for family, headers, error in items
            for i, message in enumerate(family)
        ]
        polled = [
            FakeMessage(offset, key, value, headers, error)
            for offset, ((key, value), headers, error) in enumerate(flat)
        ]
        if fatal == 0:  # now and then a fatal consumer error: the loop must stop, not score
            polled.insert(
                len(polled) // 2,
                FakeMessage(
                    -1, None, None, None, KafkaError(KafkaError._FATAL, "fenced", fatal=True)
                ),
            )
            with pytest.raises(BrokerUnavailableError):
                usable(polled)  # type: ignore[arg-type]
            return
        batch = usable(polled)  # type: ignore[arg-type]
        records = [m for m in polled if m.error() is None]
        assert [(m.offset, m.key, m.value) for m in batch] == [
            (m.offset(), m.key(), m.value()) for m in records
        ]
        for raw, m in zip(batch, records, strict=True):
            assert raw.headers is m.headers()  # handed over as is, not copied
        tally.add(assert_as_the_oracle_says(batch, score(batch)))

    check()
    print(f"fuzz (poll loop): {tally.messages} messages in {tally.batches} batches")
    assert tally.messages >= LOOP_EXAMPLES * BATCH_SIZE[0] // 2
