"""Dead-letter tools, pure part: letters written by the real transform, summarised and replayed."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.deadletters.letters import Letter, ParsedLetter, dedupe, parse_letter
from churnstream.deadletters.markers import (
    Marker,
    MarkerIndex,
    marker_message,
    marker_topic_for,
)
from churnstream.deadletters.originals import NotReplayableError, original_value, reconstruct
from churnstream.deadletters.plan import LetterFilter, parse_when, plan_replay
from churnstream.deadletters.summary import excerpt, summarise
from churnstream.headers import (
    ORIGINAL_HEADER_PREFIX,
    REPLAY_OF_HEADER,
    RETRY_COUNT_HEADER,
    ROW_INDEX_HEADER,
    RUN_ID_HEADER,
    SOURCE_HEADER,
)
from churnstream.model.feature_batch import FeatureBatch
from churnstream.scoring.batch import score_batch
from churnstream.scoring.decode import MAX_BODY_BYTES
from churnstream.scoring.messages import RawMessage
from tests.unit.test_schemas import EVENT

DLQ = "telco.deadletter"
RAW = "telco.raw.customers"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ID = b"7590-VHVEG"

#: (key, value) of inputs the scorer dead-letters, one per reason code, and why.
BAD: list[tuple[bytes | None, bytes | None, str]] = [
    (b"x", b"not json at all", "not_json"),
    (None, b"\xff\xfe\xfa", "not_utf8"),
    (None, b"[1,2,3]", "not_object"),
    (ID, orjson.dumps({**EVENT, "Contract": "Weekly"}), "schema"),
    (ID, orjson.dumps({**EVENT, "tenure": "ten"}), "schema"),
    (b"0000-XXXXX", orjson.dumps(EVENT), "key_mismatch"),
    (None, b"", "empty_body"),
    (ID, b"x" * (MAX_BODY_BYTES + 1), "too_large"),
]


def model(batch: FeatureBatch) -> np.ndarray:
    return np.full(len(batch), 0.5)


def letters_for(
    inputs: list[tuple[bytes | None, bytes | None]],
    *,
    first_offset: int = 0,
    dlq_offset: int = 0,
    clock: datetime = NOW,
    headers: list[tuple[str, bytes]] | None = None,
) -> list[ParsedLetter]:
    """Run the real transform over inputs on partition 0 of RAW; read back its letters."""
    messages = [
        RawMessage(RAW, 0, first_offset + i, key, value, list(headers or []))
        for i, (key, value) in enumerate(inputs)
    ]
    result = score_batch(
        messages, model, threshold=0.5, model_version="m", consumer_group="g", clock=lambda: clock
    )
    return [
        parse_letter(Letter(DLQ, 0, dlq_offset + i, out.key, out.value, out.headers))
        for i, out in enumerate(result.dead_letters)
    ]


@pytest.fixture(scope="module")
def letters() -> list[ParsedLetter]:
    return letters_for([(k, v) for k, v, _ in BAD])


# --------------------------------------------------------------------------- parsing


def test_parse_reads_code_type_source_and_time(letters: list[ParsedLetter]) -> None:
    assert [p.code for p in letters] == [code for _, _, code in BAD]
    first = letters[0]
    assert first.error_type == "validation_error"
    assert first.source == f"{RAW}:0:0"
    assert first.source_topic == RAW
    assert first.failed_at == NOW
    assert first.retry_count == 0
    assert first.problem is None
    assert first.id == f"{DLQ}:0:0"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "no body"),
        (b"{oops", "not JSON"),
        (b"[1]", "not an object"),
        (b'{"error_type": "validation_error"}', "no original_message"),
    ],
)
def test_unreadable_letters_are_reported_not_fatal(value: bytes | None, problem: str) -> None:
    parsed = parse_letter(Letter(DLQ, 0, 7, None, value, []))
    assert parsed.problem is not None and problem in parsed.problem
    assert parsed.code == "(none)"
    with pytest.raises(NotReplayableError, match=problem):
        reconstruct(parsed)


# --------------------------------------------------------------------------- originals


def test_every_replayable_original_is_rebuilt_byte_for_byte(letters: list[ParsedLetter]) -> None:
    for (key, value, code), parsed in zip(BAD, letters, strict=True):
        if code == "too_large":
            continue
        original = reconstruct(parsed)
        assert original.value == value, code
        assert original.key == key, code


def test_truncated_letter_is_not_replayable(letters: list[ParsedLetter]) -> None:
    too_large = letters[-1]
    assert too_large.code == "too_large"
    with pytest.raises(NotReplayableError, match="truncated"):
        reconstruct(too_large)


def test_wrappers_decode_and_objects_reencode() -> None:
    assert original_value({"raw_text": "abc"}, "not_json") == b"abc"
    assert original_value({"raw_text": None}, "empty_body") is None
    assert original_value({"raw_base64": base64.b64encode(b"\x00\xff").decode()}) == b"\x00\xff"
    assert original_value({"a": 1, "b": [True, None]}, "schema") == b'{"a":1,"b":[true,null]}'
    with pytest.raises(NotReplayableError, match="base64"):
        original_value({"raw_base64": "%%%"}, "not_utf8")
    with pytest.raises(NotReplayableError, match="without raw_text"):
        original_value({"size_bytes": 3}, "not_json")


def test_object_that_looks_like_a_wrapper_is_kept_when_the_code_says_object() -> None:
    # A schema error on the body {"raw_text": "hi"}: that object was the original.
    assert original_value({"raw_text": "hi"}, "schema") == b'{"raw_text":"hi"}'
    # Without a code, the shape decides.
    assert original_value({"raw_text": "hi"}) == b"hi"


def test_replay_headers_carry_letter_id_and_next_retry_count() -> None:
    retried = letters_for([(ID, b"nope")], headers=[(RETRY_COUNT_HEADER, b"2")])[0]
    assert retried.retry_count == 2  # the transform copied the header into the body
    plan = plan_replay([retried], letter_filter=LetterFilter(), markers=MarkerIndex())
    assert plan.items[0].headers == [
        (REPLAY_OF_HEADER, f"{DLQ}:0:0".encode()),
        (RETRY_COUNT_HEADER, b"3"),
    ]


def test_replay_gives_the_input_its_own_headers_back() -> None:
    own = [(ROW_INDEX_HEADER, b"42"), (RUN_ID_HEADER, b"run-1"), ("trace", b"")]
    earlier = [(REPLAY_OF_HEADER, b"dlq:0:7"), (RETRY_COUNT_HEADER, b"1")]
    letter = letters_for([(ID, b"nope")], headers=own + earlier)[0]
    # the letter keeps them apart from its own headers, under a prefix
    kept = [(n, v) for n, v in letter.letter.headers if n.startswith(ORIGINAL_HEADER_PREFIX)]
    assert kept == [(ORIGINAL_HEADER_PREFIX + n, v) for n, v in own + earlier]
    plan = plan_replay([letter], letter_filter=LetterFilter(), markers=MarkerIndex())
    # the earlier replay's id and count are replaced, not repeated
    assert plan.items[0].headers == [
        *own,
        (REPLAY_OF_HEADER, f"{DLQ}:0:0".encode()),
        (RETRY_COUNT_HEADER, b"2"),
    ]


# --------------------------------------------------------------------------- dedupe


def test_dedupe_keeps_the_first_letter_per_input() -> None:
    first = letters_for([(b"x", b"bad")], dlq_offset=0)
    replayed_batch = letters_for([(b"x", b"bad")], dlq_offset=5)  # same input offset again
    other = letters_for([(b"x", b"bad")], first_offset=1, dlq_offset=6)
    unique, duplicates = dedupe(replayed_batch + other + first)
    assert [p.letter.offset for p in unique] == [0, 6]
    assert [p.letter.offset for p in duplicates] == [5]


def test_letters_without_source_are_never_duplicates() -> None:
    bare = [parse_letter(Letter(DLQ, 0, i, None, b"{}", [])) for i in range(3)]
    unique, duplicates = dedupe(bare)
    assert len(unique) == 3 and not duplicates


# --------------------------------------------------------------------------- summary


def test_summary_counts_by_type_code_topic_and_time(letters: list[ParsedLetter]) -> None:
    later = letters_for(
        [(b"x", b"nope")], first_offset=99, dlq_offset=50, clock=NOW.replace(hour=9)
    )
    duplicate = letters_for([(b"x", b"not json at all")], dlq_offset=60)
    summary = summarise(DLQ, [*letters, *later, *duplicate], examples=1)
    assert summary.letters == 10
    assert summary.unique == 9
    assert summary.duplicates == 1
    assert summary.by_error_type == {"validation_error": 9}
    assert summary.by_code == {
        "not_json": 2,
        "schema": 2,
        "empty_body": 1,
        "key_mismatch": 1,
        "not_object": 1,
        "not_utf8": 1,
        "too_large": 1,
    }
    assert summary.by_source_topic == {RAW: 9}
    assert summary.oldest_failed_ts == "2026-01-02T03:04:05.000000Z"
    assert summary.newest_failed_ts == "2026-01-02T09:04:05.000000Z"
    assert all(len(v) == 1 for v in summary.examples.values())
    schema = summary.examples["schema"][0]
    assert schema["customer_or_excerpt"] == "7590-VHVEG"
    assert schema["source"] == f"{RAW}:0:3"
    assert schema["error_message"].startswith("1 field error(s): Contract")
    as_json = orjson.loads(orjson.dumps(summary.to_dict()))
    assert as_json["duplicates_skipped"] == 1 and as_json["by_retry_count"] == {"0": 9}


def test_excerpts_name_the_raw_body(letters: list[ParsedLetter]) -> None:
    shown = {p.code: excerpt(p) for p in letters}
    assert shown["not_json"] == "'not json at all'"
    assert shown["not_utf8"].startswith("base64:")
    assert shown["empty_body"] == "(empty)"
    assert shown["too_large"] == f"(truncated, {MAX_BODY_BYTES + 1} bytes)"
    assert shown["key_mismatch"] == "7590-VHVEG"


def test_summary_of_nothing() -> None:
    summary = summarise(DLQ, [])
    assert summary.letters == 0 and summary.oldest_failed_ts is None and summary.by_code == {}


# --------------------------------------------------------------------------- filters


def test_filters_combine_types_codes_and_time_window(letters: list[ParsedLetter]) -> None:
    schema = LetterFilter(codes=frozenset({"schema"}))
    assert sum(schema.matches(p) for p in letters) == 2
    assert all(
        LetterFilter(error_types=frozenset({"validation_error"})).matches(p) for p in letters
    )
    assert not any(
        LetterFilter(error_types=frozenset({"inference_error"})).matches(p) for p in letters
    )
    assert all(LetterFilter(since=NOW, until=NOW.replace(hour=4)).matches(p) for p in letters)
    assert not any(LetterFilter(until=NOW).matches(p) for p in letters)  # until is exclusive
    undated = parse_letter(Letter(DLQ, 0, 1, None, b"{}", []))
    assert not LetterFilter(since=NOW).matches(undated)
    assert "code schema" in schema.describe()


def test_parse_when_accepts_dates_zulu_and_offsets() -> None:
    assert parse_when("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_when("2026-01-02T03:04:05Z") == NOW
    assert parse_when("2026-01-02T04:04:05+01:00") == NOW
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_when("yesterday")


# --------------------------------------------------------------------------- markers and plans


def marked(*parsed: ParsedLetter) -> MarkerIndex:
    return MarkerIndex.from_records(
        marker_message(Marker(p.id, p.source, f"{RAW}:0:9", "t", p.retry_count + 1)) for p in parsed
    )


def test_plan_puts_every_letter_in_one_bucket(letters: list[ParsedLetter]) -> None:
    duplicate = letters_for([(b"x", b"not json at all")], dlq_offset=60)
    plan = plan_replay(
        [*letters, *duplicate],
        letter_filter=LetterFilter(error_types=frozenset({"validation_error"})),
        markers=marked(letters[1]),
    )
    assert plan.considered == 9
    assert plan.skipped == {
        "duplicate": 1,
        "filtered": 0,
        "already_replayed": 1,
        "not_replayable": 1,
        "over_limit": 0,
    }
    assert [i.parsed.code for i in plan.items] == [
        "not_json",
        "not_object",
        "schema",
        "schema",
        "key_mismatch",
        "empty_body",
    ]
    assert plan.not_replayable == [(letters[-1].id, plan.not_replayable[0][1])]
    assert plan.considered == len(plan.items) + sum(plan.skipped.values())


def test_plan_filter_limit_and_force(letters: list[ParsedLetter]) -> None:
    markers = marked(letters[3])
    schema = LetterFilter(codes=frozenset({"schema"}))
    plan = plan_replay(letters, letter_filter=schema, markers=markers)
    assert [i.parsed.id for i in plan.items] == [letters[4].id]
    assert plan.skipped["filtered"] == 6 and plan.skipped["already_replayed"] == 1
    forced = plan_replay(letters, letter_filter=schema, markers=markers, force=True, limit=1)
    assert [i.parsed.id for i in forced.items] == [letters[3].id]
    assert forced.skipped["over_limit"] == 1


def test_a_marker_for_the_same_input_covers_its_duplicate_letters() -> None:
    first = letters_for([(b"x", b"bad")], dlq_offset=0)[0]
    again = letters_for([(b"x", b"bad")], dlq_offset=3)[0]
    # Only the later letter survives (the first was deleted by retention), but its input
    # was replayed already through the first one.
    plan = plan_replay([again], letter_filter=LetterFilter(), markers=marked(first))
    assert not plan.items and plan.skipped["already_replayed"] == 1


def test_marker_tombstone_unmarks_and_later_records_win() -> None:
    letter = letters_for([(b"x", b"bad")])[0]
    key, value = marker_message(Marker(letter.id, letter.source, None, "t", 1))
    assert orjson.loads(value)["letter"] == letter.id and key == letter.id.encode()
    index = MarkerIndex.from_records([(key, value), (key, None)])
    assert not index.is_replayed(letter) and len(index) == 0
    index = MarkerIndex.from_records([(key, None), (key, b"garbage"), (None, value)])
    assert index.is_replayed(letter)  # a marker whose body is unreadable still marks
    assert marker_topic_for(DLQ) == "telco.deadletter.replays"


def test_headers_survive_a_retry_generation() -> None:
    """A replayed message dead-letters again with retry_count 1; its replay would carry 2."""
    first = letters_for([(ID, b"nope")])[0]
    plan = plan_replay([first], letter_filter=LetterFilter(), markers=MarkerIndex())
    item = plan.items[0]
    second = letters_for([(item.key, item.value)], headers=list(item.headers), dlq_offset=1)[0]
    assert second.retry_count == 1
    assert second.letter.header(SOURCE_HEADER) == f"{RAW}:0:0".encode()
    assert dict(replay_of(second))[RETRY_COUNT_HEADER] == b"2"


def replay_of(parsed: ParsedLetter) -> list[tuple[str, bytes]]:
    return (
        plan_replay([parsed], letter_filter=LetterFilter(), markers=MarkerIndex()).items[0].headers
    )


# --------------------------------------------------------------------------- CLI


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--code", "nope"], "--code nope is not one of"),
        (["--error-type", "oops"], "--error-type oops is not one of"),
        (["--since", "yesterday"], "ISO 8601"),
        (["--from-topic", "d", "--to-topic", "d"], "into themselves"),
        (["--from-topic", "d", "--to-topic", "d.replays"], "into themselves"),
    ],
)
def test_replay_rejects_bad_filters_in_one_line(args: list[str], needle: str) -> None:
    result = run("dlq", "replay", "--broker", "127.0.0.1:9", *args)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.output


def test_inspect_without_a_broker_is_one_line() -> None:
    result = run("dlq", "inspect", "--broker", "127.0.0.1:9", "--timeout", "0.5")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no Kafka broker answered" in result.output
