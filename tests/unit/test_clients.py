"""The client factory: what each kind of client is configured with, and refused configs.

The configurations are checked through a stand-in for the librdkafka classes (their config
cannot be read back); every client kind runs against a real broker in the integration tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from churnstream.exceptions import BrokerError
from churnstream.kafka import clients
from churnstream.kafka.errors import ClientErrorWatch
from churnstream.settings import KafkaSettings, Settings


class Recorder:
    """Stands in for Consumer / Producer: keeps the configuration it was given."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients, "Consumer", Recorder)
    monkeypatch.setattr(clients, "Producer", Recorder)


def conf_of(client: Any) -> dict[str, Any]:
    return dict(client.conf)


def settings() -> Settings:
    kafka = KafkaSettings(bootstrap_servers="b:9092", client_id="cid")
    return Settings(kafka=kafka)


@pytest.mark.usefixtures("built")
def test_a_reader_never_commits_and_has_a_group_of_its_own() -> None:
    first, watch = clients.reader_consumer(settings().kafka, "dump")
    second, _ = clients.reader_consumer(
        settings().kafka, "dump", isolation_level="read_uncommitted"
    )
    conf = conf_of(first)
    assert conf["bootstrap.servers"] == "b:9092" and conf["client.id"] == "cid"
    assert conf["group.id"].startswith("churnstream-dump-reader-")
    assert conf["group.id"] != conf_of(second)["group.id"]
    assert conf["enable.auto.commit"] is False and conf["enable.auto.offset.store"] is False
    assert conf["enable.partition.eof"] is True
    assert conf["isolation.level"] == "read_committed"
    assert conf_of(second)["isolation.level"] == "read_uncommitted"
    assert conf["error_cb"] is watch and isinstance(watch, ClientErrorWatch)


@pytest.mark.usefixtures("built")
def test_group_members_and_offset_readers_use_the_settings_recipes() -> None:
    s = settings()
    member = conf_of(clients.consumer(s, "g1", overrides={"auto.offset.reset": "latest"}))
    assert member == {**s.kafka.consumer_config(s.consumer, "g1"), "auto.offset.reset": "latest"}
    offsets = conf_of(clients.group_offsets_consumer(s.kafka, "g2"))
    assert offsets["group.id"] == "g2" and offsets["enable.auto.commit"] is False
    assert offsets["bootstrap.servers"] == "b:9092"


@pytest.mark.usefixtures("built")
def test_the_scorer_consumer_bounds_its_fetches_and_prefetch_queue_unless_overridden() -> None:
    # The memory defaults measured in docs/benchmarks.md ("Memory: where the scorer's RSS
    # goes"): librdkafka's own (1 MB per partition, a 64 MB queue) cost the scorer RSS, and
    # its 1,000 ms fetch backoff starves a scorer with a small queue.
    conf = conf_of(clients.consumer(settings(), "scorer"))
    assert conf["max.partition.fetch.bytes"] == 65_536
    assert conf["queued.max.messages.kbytes"] == 2048
    assert conf["fetch.queue.backoff.ms"] == 10
    assert settings().consumer.max_batch_records == 2000
    kafka = KafkaSettings(
        bootstrap_servers="b:9092",
        librdkafka_consumer={"max.partition.fetch.bytes": 1_048_576, "fetch.queue.backoff.ms": 50},
    )
    consumer = Settings().consumer.model_copy(
        update={"queued_max_kbytes": 4096, "fetch_queue_backoff_ms": 1000}
    )
    typed = Settings(kafka=kafka).model_copy(update={"consumer": consumer})
    overridden = conf_of(clients.consumer(typed, "scorer"))
    assert overridden["max.partition.fetch.bytes"] == "1048576"
    assert overridden["queued.max.messages.kbytes"] == 4096
    assert overridden["fetch.queue.backoff.ms"] == "50"  # the pass-through comes last
    typed_only = Settings().model_copy(update={"consumer": consumer})
    assert conf_of(clients.consumer(typed_only, "scorer"))["fetch.queue.backoff.ms"] == 1000


@pytest.mark.usefixtures("built")
def test_producers_are_idempotent_and_transactional_on_request() -> None:
    s = settings()
    plain = conf_of(clients.producer(s))
    assert plain == s.kafka.producer_config(s.producer)
    assert plain["enable.idempotence"] is True and "transactional.id" not in plain
    txn = conf_of(clients.producer(s, transactional_id="t-1"))
    assert txn == s.kafka.transactional_producer_config(s.producer, "t-1")


def test_a_refused_configuration_is_one_line_without_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(conf: dict[str, Any]) -> None:
        raise KafkaException(
            KafkaError(
                KafkaError._INVALID_ARG, f"ssl.key.location failed with {conf['sasl.password']}"
            )
        )

    monkeypatch.setattr(clients, "Producer", refuse)
    conf = {"bootstrap.servers": "b:9092", "sasl.password": "hunter2"}
    with pytest.raises(BrokerError) as info:
        clients.producer_from_config(conf)
    message = str(info.value)
    assert message.startswith("invalid Kafka producer configuration: ")
    assert "hunter2" not in message and "***" in message
    assert "is kafka.ssl_key_location a PEM private key" in message


def test_librdkafka_refuses_an_unknown_key_through_the_factory() -> None:
    with pytest.raises(BrokerError, match="invalid Kafka consumer configuration: .*no.such.key"):
        clients.consumer_from_config({"group.id": "g", "no.such.key": "1"})
