"""The scorer on the native Kafka client (``consumer.client = native``) against confluent-kafka.

The differential test: the same topic scored once by each client gives the same predictions
(bodies but for the clock's fields, every header), the same dead letters, and the same
committed offsets. The Python client is the oracle.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.headers import SOURCE_HEADER
from churnstream.kafka.native import NativeConsumer
from tests.integration.cli_runs import consume_args, invoke
from tests.integration.kafka_io import CommittedOffsets, Record, read_topic, send_raw
from tests.integration.test_pipeline import BAD_MESSAGES
from tests.unit.test_schemas import EVENT

pytest.importorskip("churnstream_native_io")

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., str]
CLIENT_ENV = "CHURNSTREAM_CONSUMER__CLIENT"
#: What differs between two scorings of the same event: the clock.
CLOCK_FIELDS = {"processed_ts", "inference_latency_ms"}
#: A dead letter's own times and the group that wrote it.
LETTER_CLOCK_FIELDS = {"failed_ts", "consumer_group"}


def events() -> list[tuple[bytes | None, bytes | None]]:
    """Valid events of several customers and contracts, with every kind of bad message."""
    good = [
        (
            f"{i:04d}-ABCDE".encode(),
            orjson.dumps(
                {
                    **EVENT,
                    "customerID": f"{i:04d}-ABCDE",
                    "tenure": i % 72,
                    "MonthlyCharges": 20.5 + i % 90,
                    "Contract": ("Month-to-month", "One year", "Two year")[i % 3],
                }
            ),
        )
        for i in range(600)
    ]
    return [*good[:300], *BAD_MESSAGES, (None, None), *good[300:]]


def score(
    client: str,
    monkeypatch: pytest.MonkeyPatch,
    bootstrap: str,
    raw: str,
    topic_factory: TopicFactory,
    model_dir: Path,
) -> tuple[list[Record], list[Record], int, str]:
    preds, dlq = topic_factory(partitions=3), topic_factory(partitions=1)
    group = f"g-{client}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(CLIENT_ENV, client)
    taken: list[int] = []
    take = NativeConsumer.take

    def counted(self: NativeConsumer, *args: Any) -> Any:
        batch = take(self, *args)
        taken.append(len(batch))
        return batch

    monkeypatch.setattr(NativeConsumer, "take", counted)
    out = invoke(consume_args(bootstrap, raw, preds, dlq, model_dir, None, group))
    # The run was on the client asked for: else this comparison could not fail.
    assert (sum(taken) == 610) if client == "native" else not taken
    committed = CommittedOffsets(bootstrap, group, raw)
    try:
        offsets = committed()
    finally:
        committed.close()
    return (
        read_topic(bootstrap, preds, expect=601),
        read_topic(bootstrap, dlq, expect=9),
        offsets,
        out,
    )


def by_source(records: list[Record], drop: set[str]) -> dict[bytes, tuple[Any, ...]]:
    return {
        r.headers[SOURCE_HEADER]: (
            r.key,
            {k: v for k, v in r.json().items() if k not in drop},
            {k: v for k, v in r.headers.items()},
        )
        for r in records
    }


def test_the_native_client_scores_as_confluent_kafka_does(
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    model_dir: Path,
) -> None:
    raw = topic_factory(partitions=3)
    sent = events()
    send_raw(kafka_bootstrap, raw, sent)
    # Input headers, carried into the dead letters: one without a value among them.
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(raw, b"{", b"k", headers=[("trace", b"abc"), ("empty", None)])
    producer.produce(raw, orjson.dumps(EVENT), b"7590-VHVEG", headers=[("trace", b"t2")])
    assert producer.flush(30) == 0
    native = score("native", monkeypatch, kafka_bootstrap, raw, topic_factory, model_dir)
    oracle = score("confluent", monkeypatch, kafka_bootstrap, raw, topic_factory, model_dir)

    for run in (native, oracle):
        assert "consumed 610, scored 601, dead-lettered 9" in run[3]
        assert run[2] == len(sent) + 2  # every input offset committed
    assert len(native[0]) == len(oracle[0]) == 601
    assert by_source(native[0], CLOCK_FIELDS) == by_source(oracle[0], CLOCK_FIELDS)
    assert by_source(native[1], LETTER_CLOCK_FIELDS) == by_source(oracle[1], LETTER_CLOCK_FIELDS)


@pytest.mark.parametrize(
    ("extra", "env", "said"),
    [
        (["--exactly-once"], {}, "does not do exactly-once"),
        ([], {"CHURNSTREAM_KAFKA__SECURITY_PROTOCOL": "SSL"}, "speaks plaintext only"),
    ],
    ids=["exactly-once", "tls"],
)
def test_what_the_native_client_cannot_do_is_one_line(
    extra: list[str],
    env: dict[str, str],
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(CLIENT_ENV, "native")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = consume_args("127.0.0.1:1", "in", "out", "dlq", model_dir, None) + extra
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and said in errors[0], result.output
    assert "Traceback" not in result.output
