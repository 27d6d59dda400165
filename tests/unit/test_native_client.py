"""The native Kafka client's adapter, without a broker: configuration and refusals."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from churnstream.kafka import native
from churnstream.settings import Settings
from churnstream.settings.sections import ConsumerSettings


def test_the_configuration_reaches_librdkafka_as_confluent_kafka_renders_it() -> None:
    conf = {
        "bootstrap.servers": "b:9092",
        "enable.idempotence": True,
        "enable.auto.commit": False,
        "linger.ms": 5,
        "logger": object(),
        "on_delivery": print,
        "error_cb": print,
        "sasl.password": None,
    }
    assert native._properties(conf) == {
        "bootstrap.servers": "b:9092",
        "enable.idempotence": "true",
        "enable.auto.commit": "false",
        "linger.ms": "5",
    }


def test_the_settings_choose_confluent_kafka_unless_told() -> None:
    assert Settings().consumer.client == "confluent"
    assert ConsumerSettings(client="native").client == "native"
    with pytest.raises(ValueError, match="confluent"):
        ConsumerSettings(client="kcat")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exactly_once", "protocol", "said"),
    [
        (True, "PLAINTEXT", "does not do exactly-once"),
        (False, "SASL_SSL", "plaintext only, not SASL_SSL"),
        (False, "SSL", "plaintext only, not SSL"),
    ],
)
def test_what_it_cannot_do_is_said(exactly_once: bool, protocol: str, said: str) -> None:
    if not native.available():
        pytest.skip("the native Kafka client is not built")
    why = native.unsupported(exactly_once=exactly_once, security_protocol=protocol)
    assert why is not None and said in why


def test_at_least_once_in_plaintext_is_served() -> None:
    if not native.available():
        pytest.skip("the native Kafka client is not built")
    assert native.unsupported(exactly_once=False, security_protocol="PLAINTEXT") is None


def test_an_unbuilt_client_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_io", None)
    monkeypatch.setattr(native, "NATIVE_IO_ERROR", "No module named 'churnstream_native_io'")
    why = native.unsupported(exactly_once=False, security_protocol="PLAINTEXT")
    assert why is not None
    assert "not built" in why and "make setup" in why and "\n" not in why


def test_its_errors_are_confluent_kafkas() -> None:
    class Raised(Exception):
        pass

    with pytest.raises(KafkaException) as caught:
        native._raise(Raised(-195, "_TRANSPORT", "broker down", False, True))
    err = caught.value.args[0]
    assert isinstance(err, KafkaError)
    assert err.code() == KafkaError._TRANSPORT
    assert err.str() == "broker down" and err.retriable() and not err.fatal()


def test_a_failed_delivery_answers_as_a_message_does() -> None:
    where = native._Undelivered("t", 2, None)
    assert (where.topic(), where.partition(), where.offset()) == ("t", 2, None)
