"""The kafka.librdkafka* pass-through: precedence, validation, librdkafka's verdict, secrecy."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.exceptions import BrokerError, ClientConfigError, ConfigError
from churnstream.kafka import clients, errors
from churnstream.kafka.clientcheck import check_client_configs
from churnstream.settings import KafkaSettings, Settings, load_settings, masked_dump
from churnstream.settings.passthrough import REFUSED, is_secret_property, librdkafka_value

SECRET = "pa55-Word-not-to-leak"


@pytest.fixture(autouse=True)
def _no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults < environment only: no config/churnstream.yaml from the working directory."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}", encoding="utf-8")
    monkeypatch.setenv("CHURNSTREAM_CONFIG", str(empty))


def settings_with(**kafka: Any) -> Settings:
    return Settings(kafka=KafkaSettings.model_validate(kafka))


def tail(conf: dict[str, Any], n: int) -> dict[str, Any]:
    """The last ``n`` entries in insertion order: what librdkafka is given last."""
    return dict(list(conf.items())[-n:])


# --------------------------------------------------------------------------- precedence


def test_passthrough_is_applied_last_to_every_client_config() -> None:
    settings = settings_with(
        librdkafka={
            "client.rack": "use1-az1",
            "linger.ms": 50,
            "socket.keepalive.enable": True,
            "statistics.interval.ms": 60000.0,
            "client.id": "from-passthrough",
        },
        librdkafka_producer={"linger.ms": 7, "compression.type": "zstd"},
        librdkafka_consumer={"isolation.level": "read_uncommitted", "fetch.max.bytes": 1048576},
        librdkafka_admin={"request.timeout.ms": 15000},
    )
    kafka = settings.kafka
    common = {
        "client.rack": "use1-az1",
        "linger.ms": "50",
        "socket.keepalive.enable": "true",
        "statistics.interval.ms": "60000",
        "client.id": "from-passthrough",  # over the typed kafka.client_id
    }

    producer = kafka.producer_config(settings.producer)
    transactional = kafka.transactional_producer_config(settings.producer, "txn-1")
    for conf in (producer, transactional):
        # The per-client properties win over the common ones, which win over typed settings.
        assert conf["linger.ms"] == "7" and conf["compression.type"] == "zstd"
        assert conf["client.rack"] == "use1-az1" and conf["client.id"] == "from-passthrough"
        assert conf["enable.idempotence"] is True and conf["acks"] == "all"
        assert "isolation.level" not in conf and "request.timeout.ms" not in conf
        assert tail(conf, 6) == {**common, "linger.ms": "7", "compression.type": "zstd"}
    assert transactional["transactional.id"] == "txn-1"

    consumer = kafka.consumer_config(settings.consumer, "g")
    assert consumer["isolation.level"] == "read_uncommitted"  # over consumer.isolation_level
    assert consumer["group.id"] == "g" and consumer["enable.auto.commit"] is False
    assert tail(consumer, 7) == {
        **common,
        "isolation.level": "read_uncommitted",
        "fetch.max.bytes": "1048576",
    }
    assert "compression.type" not in consumer

    assert tail(kafka.admin_config(), 6) == {**common, "request.timeout.ms": "15000"}
    assert tail(kafka.client_config(), 5) == common
    reader = kafka.client_config("consumer")  # the dump and status readers' base
    assert reader["fetch.max.bytes"] == "1048576" and "compression.type" not in reader


def test_values_become_librdkafka_strings() -> None:
    assert librdkafka_value(True) == "true" and librdkafka_value(False) == "false"
    assert librdkafka_value(1000) == "1000" and librdkafka_value(1000.0) == "1000"
    assert librdkafka_value(0.5) == "0.5" and librdkafka_value("use1-az1") == "use1-az1"


def test_environment_json_object(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"kafka": {"librdkafka": {"client.rack": "yaml", "debug": "broker"}}}),
        encoding="utf-8",
    )
    monkeypatch.setenv("CHURNSTREAM_CONFIG", str(config))
    monkeypatch.setenv(
        "CHURNSTREAM_KAFKA__LIBRDKAFKA",
        '{"client.rack": "use1-az1", "statistics.interval.ms": 1000, '
        '"socket.keepalive.enable": true, "queue.buffering.max.ms": 0.5}',
    )
    monkeypatch.setenv("CHURNSTREAM_KAFKA__LIBRDKAFKA_CONSUMER", '{"fetch.max.bytes": 1048576}')
    kafka = load_settings().kafka
    # Types survive, and the environment's object is merged into the YAML's key by key.
    assert kafka.librdkafka == {
        "client.rack": "use1-az1",
        "debug": "broker",
        "statistics.interval.ms": 1000,
        "socket.keepalive.enable": True,
        "queue.buffering.max.ms": 0.5,
    }
    assert kafka.librdkafka_consumer == {"fetch.max.bytes": 1048576}


def test_environment_value_that_is_not_json_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNSTREAM_KAFKA__LIBRDKAFKA", f"sasl.password={SECRET}")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "CHURNSTREAM_KAFKA__LIBRDKAFKA" in message and "JSON object" in message
    assert SECRET not in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__context__ is None


# --------------------------------------------------------------------------- refused at load


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_properties_churnstream_controls_are_refused(name: str) -> None:
    with pytest.raises(ClientConfigError) as info:
        KafkaSettings.model_validate({"librdkafka_consumer": {name: "x"}})
    assert str(info.value) == (
        f'invalid kafka settings: kafka.librdkafka_consumer["{name}"] cannot be set: '
        f"{REFUSED[name]}"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1, 2], "must be a string, a number or a boolean, not list"),
        ({"a": 1}, "must be a string, a number or a boolean, not dict"),
        (None, "must be a string, a number or a boolean, not nothing"),
        (float("nan"), "must be a finite number"),
    ],
)
def test_values_of_other_types_are_refused(value: Any, problem: str) -> None:
    with pytest.raises(ClientConfigError) as info:
        KafkaSettings.model_validate({"librdkafka": {"sasl.password": value}})
    assert str(info.value) == f'invalid kafka settings: kafka.librdkafka["sasl.password"] {problem}'


def test_refused_property_through_the_cli_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHURNSTREAM_KAFKA__LIBRDKAFKA", '{"enable.auto.commit": true}')
    result = CliRunner().invoke(app, ["topics", "list", "--broker", "127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith('error: invalid kafka settings: kafka.librdkafka["enable.')
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


# --------------------------------------------------------------------------- librdkafka's verdict


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {"LIBRDKAFKA_PRODUCER": {"linger.ms": "soon"}},
            # librdkafka names linger.ms by its canonical name; the setting is still found.
            'error: kafka.librdkafka_producer["linger.ms"]: librdkafka refused it for the '
            'producer: Invalid value for configuration property "queue.buffering.max.ms"',
        ),
        (
            {"LIBRDKAFKA": {"no.such.property": 1}},
            'error: kafka.librdkafka["no.such.property"]: librdkafka refused it for the admin '
            'client: No such configuration property: "no.such.property"',
        ),
        (
            {"LIBRDKAFKA_CONSUMER": {"socket.keepalive.enable": "maybe"}},
            'error: kafka.librdkafka_consumer["socket.keepalive.enable"]: librdkafka refused it '
            "for the consumer: ",
        ),
        (
            {"LIBRDKAFKA_PRODUCER": {"message.timeout.ms": 60000}},
            'error: kafka.librdkafka_producer["message.timeout.ms"]: librdkafka refused it for '
            "the transactional producer: Failed to create producer: `message.timeout.ms` must "
            "be set <= `transaction.timeout.ms`",
        ),
    ],
)
def test_property_librdkafka_refuses_is_one_line_exit_2_before_connecting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, dict[str, Any]], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"CHURNSTREAM_KAFKA__{name}", json.dumps(value))
    # No broker at that address: the command must stop before it tries to reach one.
    result = CliRunner().invoke(app, ["topics", "list", "--broker", "127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(needle), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "no Kafka broker answered" not in result.output


def test_refusal_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # librdkafka echoes an invalid enumeration value; here it equals a secret given alongside.
    passthrough = {"ssl.keystore.password": SECRET, "compression.type": SECRET}
    monkeypatch.setenv("CHURNSTREAM_KAFKA__LIBRDKAFKA_PRODUCER", json.dumps(passthrough))
    result = CliRunner().invoke(app, ["topics", "list", "--broker", "127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert 'kafka.librdkafka_producer["compression.type"]' in result.output
    assert SECRET not in result.output and "***" in result.output


def test_check_accepts_the_defaults_and_good_properties() -> None:
    check_client_configs(Settings())
    check_client_configs(
        settings_with(
            librdkafka={"client.rack": "use1-az1", "socket.keepalive.enable": True},
            librdkafka_producer={"linger.ms": 0.5, "compression.type": "zstd"},
            librdkafka_consumer={"fetch.max.bytes": 10_485_760},
            librdkafka_admin={"request.timeout.ms": 15000},
        )
    )


def test_check_warns_about_a_property_given_to_the_wrong_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_with(librdkafka={"fetch.max.bytes": 10_485_760})
    with caplog.at_level(logging.WARNING, logger="churnstream.kafka.clientcheck"):
        check_client_configs(settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # said once, though three clients ignore it
    assert warnings[0].startswith('kafka.librdkafka["fetch.max.bytes"]: librdkafka: ')
    assert "consumer property" in warnings[0] and "kafka.librdkafka_consumer" in warnings[0]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket that counts as "contacted" if anything connects to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.5)
    try:
        yield sock
    finally:
        sock.close()


def contacted(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


def test_check_connects_to_no_broker_and_no_token_endpoint(
    listener: socket.socket, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    settings = settings_with(
        bootstrap_servers=address,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauthbearer_client_id="churnstream",
        sasl_oauthbearer_client_secret=SECRET,
        sasl_oauthbearer_token_endpoint_url=f"http://{address}/token",
        librdkafka={"client.rack": "use1-az1"},
    )
    check_client_configs(settings)
    assert not contacted(listener)


def test_typed_configuration_refused_keeps_the_admin_clients_message(tmp_path: Path) -> None:
    """No pass-through at fault: the same line (and exit 1) as creating the admin client."""
    key = tmp_path / "client.pem"
    key.write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    settings = settings_with(
        security_protocol="SSL", ssl_certificate_location=key, ssl_key_location=key
    )
    with pytest.raises(BrokerError) as info:
        check_client_configs(settings)
    assert not isinstance(info.value, ConfigError)
    assert str(info.value).startswith("invalid Kafka admin configuration: ")
    assert str(info.value).endswith("; is kafka.ssl_certificate_location a PEM certificate?")


def test_admin_client_names_a_refused_passthrough_property() -> None:
    kafka = KafkaSettings.model_validate({"librdkafka_admin": {"no.such.property": 1}})
    with pytest.raises(ClientConfigError, match=r'^kafka.librdkafka_admin\["no.such.property"\]'):
        clients.admin_client(kafka)


# --------------------------------------------------------------------------- secrecy


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("sasl.password", True),
        ("sasl.oauthbearer.client.secret", True),
        ("ssl.key.password", True),
        ("ssl.keystore.password", True),
        ("ssl.key.pem", True),
        ("sasl.oauthbearer.assertion.private.key.passphrase", True),
        ("sasl.oauthbearer.assertion.private.key.pem", True),
        ("sasl.jaas.config", True),
        ("sasl.oauthbearer.token.endpoint.url", False),
        ("ssl.key.location", False),
        ("ssl.keystore.location", False),
        ("sasl.oauthbearer.assertion.private.key.file", False),
        ("sasl.username", False),
        ("client.rack", False),
    ],
)
def test_secret_property_names(name: str, secret: bool) -> None:
    assert is_secret_property(name) is secret


def test_passthrough_secrets_are_masked_and_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    passthrough = {
        "sasl.password": SECRET,
        "ssl.keystore.password": "keystore-Pa55",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example.com/token",
        "client.rack": "use1-az1",
    }
    monkeypatch.setenv("CHURNSTREAM_KAFKA__LIBRDKAFKA", json.dumps(passthrough))
    monkeypatch.setenv(
        "CHURNSTREAM_KAFKA__LIBRDKAFKA_CONSUMER", '{"sasl.oauthbearer.client.secret": "oidc-S3c"}'
    )
    settings = load_settings()
    for output in (
        CliRunner().invoke(app, ["config", "show", "--json"]).output,
        CliRunner().invoke(app, ["config", "show"]).output,
        json.dumps(masked_dump(settings)),
    ):
        for secret in (SECRET, "keystore-Pa55", "oidc-S3c"):
            assert secret not in output
    shown = json.loads(CliRunner().invoke(app, ["config", "show", "--json"]).output)["kafka"]
    assert shown["librdkafka"] == {
        "sasl.password": "**********",
        "ssl.keystore.password": "**********",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example.com/token",
        "client.rack": "use1-az1",
    }
    assert shown["librdkafka_consumer"] == {"sasl.oauthbearer.client.secret": "**********"}
    # The clients get the real values, and messages are scrubbed of them.
    assert settings.kafka.client_config()["sasl.password"] == SECRET
    assert set(settings.kafka.secret_values()) == {SECRET, "keystore-Pa55", "oidc-S3c"}
    watch = errors.ClientErrorWatch(settings.kafka)
    assert watch.scrub(f"bad password {SECRET}") == "bad password ***"
