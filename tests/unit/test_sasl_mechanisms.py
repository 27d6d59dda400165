"""Every SASL mechanism: what each needs, how it renders, and one line when something is off.

PLAIN and SCRAM have their tests in test_security_config.py; OAUTHBEARER (unsecured JWT and
OIDC) also runs against a real broker in tests/integration/test_security.py. GSSAPI is only
rendered here: there is no KDC, and the confluent-kafka wheels' librdkafka has no GSSAPI.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.exceptions import AuthenticationError, BrokerError, ConfigError
from churnstream.kafka import errors
from churnstream.kafka.clientcheck import check_client_configs
from churnstream.ops.devbroker import secure as secure_broker
from churnstream.settings import KafkaSettings, Settings, load_settings

CLIENT_SECRET = "oidc-Client-s3cret-not-to-leak"
TOKEN_URL = "https://idp.example.com/oauth2/token"


def oidc(**overrides: Any) -> KafkaSettings:
    values: dict[str, Any] = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "OAUTHBEARER",
        "sasl_oauthbearer_client_id": "churnstream",
        "sasl_oauthbearer_client_secret": CLIENT_SECRET,
        "sasl_oauthbearer_token_endpoint_url": TOKEN_URL,
    }
    values.update(overrides)
    return KafkaSettings.model_validate({k: v for k, v in values.items() if v is not None})


def gssapi(keytab: Path, **overrides: Any) -> KafkaSettings:
    values: dict[str, Any] = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "GSSAPI",
        "sasl_kerberos_principal": "churnstream/host.example.com@EXAMPLE.COM",
        "sasl_kerberos_keytab": keytab,
    }
    values.update(overrides)
    return KafkaSettings.model_validate({k: v for k, v in values.items() if v is not None})


@pytest.fixture
def keytab(tmp_path: Path) -> Path:
    path = tmp_path / "churnstream.keytab"
    path.write_bytes(b"\x05\x02stand-in")
    return path


# --------------------------------------------------------------------------- rendering


def test_oauthbearer_oidc_renders_client_credentials(tmp_path: Path) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
    for kafka in (
        oidc(sasl_oauthbearer_scope="kafka.read kafka.write"),
        oidc(
            sasl_oauthbearer_client_secret=None,
            sasl_oauthbearer_client_secret_file=secret_file,
            sasl_oauthbearer_scope="kafka.read kafka.write",
        ),
    ):
        conf = kafka.client_config()
        assert {k: v for k, v in conf.items() if k.startswith("sasl.")} == {
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": "churnstream",
            "sasl.oauthbearer.client.secret": CLIENT_SECRET,
            "sasl.oauthbearer.token.endpoint.url": TOKEN_URL,
            "sasl.oauthbearer.scope": "kafka.read kafka.write",
        }
        assert kafka.secret_values() == [CLIENT_SECRET]


def test_confluent_cloud_extensions_are_rendered() -> None:
    kafka = oidc(sasl_oauthbearer_extensions="logicalCluster=lkc-1,identityPoolId=pool-2")
    conf = kafka.client_config()
    assert conf["sasl.oauthbearer.extensions"] == "logicalCluster=lkc-1,identityPoolId=pool-2"
    assert "sasl.oauthbearer.scope" not in conf


def test_oauthbearer_unsecured_jwt_renders_the_token_recipe() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauthbearer_method="unsecured-jwt",
        sasl_oauthbearer_config="principal=admin scope=churnstream",
    )
    sasl = {k: v for k, v in kafka.client_config().items() if "sasl" in k}
    assert sasl == {
        "sasl.mechanism": "OAUTHBEARER",
        "enable.sasl.oauthbearer.unsecure.jwt": True,
        "sasl.oauthbearer.config": "principal=admin scope=churnstream",
    }


def test_gssapi_renders_principal_keytab_and_service_name(keytab: Path) -> None:
    conf = gssapi(keytab, sasl_kerberos_service_name="kafka-prod").client_config()
    assert {k: v for k, v in conf.items() if k.startswith("sasl.")} == {
        "sasl.mechanism": "GSSAPI",
        "sasl.kerberos.principal": "churnstream/host.example.com@EXAMPLE.COM",
        "sasl.kerberos.keytab": str(keytab),
        "sasl.kerberos.service.name": "kafka-prod",
    }
    assert "sasl.kerberos.service.name" not in gssapi(keytab).client_config()  # "kafka"


def test_gssapi_keytab_must_be_readable(tmp_path: Path) -> None:
    kafka = gssapi(tmp_path / "absent.keytab")
    with pytest.raises(ConfigError, match=r"^kafka.sasl_kerberos_keytab: .* does not exist"):
        kafka.client_config()


def test_settings_the_mechanism_does_not_use_are_left_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kafka = oidc(sasl_username="alice", sasl_password="pw-not-to-leak")
    with caplog.at_level(logging.WARNING, logger="churnstream.settings"):
        conf = kafka.client_config()
    assert "sasl.username" not in conf and "sasl.password" not in conf
    assert (
        "kafka.sasl_username and kafka.sasl_password set, but kafka.sasl_mechanism is "
        "OAUTHBEARER, which does not use them"
    ) in caplog.text
    assert "pw-not-to-leak" not in caplog.text


def test_oauthbearer_settings_are_unused_without_sasl() -> None:
    kafka = KafkaSettings(sasl_oauthbearer_client_id="x", sasl_kerberos_principal="p")
    assert kafka.unused_settings() == [
        "kafka.sasl_oauthbearer_client_id",
        "kafka.sasl_kerberos_principal",
    ]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
            },
            "kafka.sasl_mechanism OAUTHBEARER with kafka.sasl_oauthbearer_method oidc needs "
            "kafka.sasl_oauthbearer_client_id, kafka.sasl_oauthbearer_client_secret (or "
            "kafka.sasl_oauthbearer_client_secret_file) and "
            "kafka.sasl_oauthbearer_token_endpoint_url",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauthbearer_client_id": "churnstream",
                "sasl_oauthbearer_client_secret": CLIENT_SECRET,
            },
            "needs kafka.sasl_oauthbearer_token_endpoint_url",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauthbearer_client_id": "churnstream",
                "sasl_oauthbearer_client_secret": CLIENT_SECRET,
                "sasl_oauthbearer_token_endpoint_url": f"idp.example.com/{CLIENT_SECRET}",
            },
            "kafka.sasl_oauthbearer_token_endpoint_url must be an https:// (or http://) URL",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauthbearer_client_id": "churnstream",
                "sasl_oauthbearer_client_secret": CLIENT_SECRET,
                "sasl_oauthbearer_client_secret_file": "/run/secrets/oidc",
                "sasl_oauthbearer_token_endpoint_url": TOKEN_URL,
            },
            "set kafka.sasl_oauthbearer_client_secret or "
            "kafka.sasl_oauthbearer_client_secret_file, not both",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauthbearer_method": "unsecured-jwt",
            },
            "kafka.sasl_oauthbearer_method unsecured-jwt needs kafka.sasl_oauthbearer_config "
            "naming the principal (e.g. principal=admin)",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauthbearer_method": "unsecured-jwt",
                "sasl_oauthbearer_config": "scope=a,b",
            },
            "needs kafka.sasl_oauthbearer_config naming the principal",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI"},
            "kafka.sasl_mechanism GSSAPI needs kafka.sasl_kerberos_principal and "
            "kafka.sasl_kerberos_keytab",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "GSSAPI",
                "sasl_kerberos_principal": "churnstream@EXAMPLE.COM",
            },
            "kafka.sasl_mechanism GSSAPI needs kafka.sasl_kerberos_keytab",
        ),
    ],
)
def test_a_mechanism_without_what_it_needs_is_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        KafkaSettings.model_validate(values)
    text = str(info.value)
    assert text.startswith("invalid kafka settings: ") and message in text, text
    assert CLIENT_SECRET not in text
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_an_unsupported_mechanism_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SASL_MECHANISM", "AWS_MSK_IAM")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid setting kafka.sasl_mechanism: Input should be 'PLAIN', 'SCRAM-SHA-256', "
        "'SCRAM-SHA-512', 'OAUTHBEARER' or 'GSSAPI'"
    )
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert result.output.startswith("error: invalid setting kafka.sasl_mechanism: ")
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_oidc_secret_is_hidden_from_validation_errors() -> None:
    with pytest.raises(ValidationError) as info:
        oidc(session_timeout_ms=1)
    assert CLIENT_SECRET not in str(info.value)


def test_oidc_secret_is_masked_in_config_show(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "OAUTHBEARER",
        "SASL_OAUTHBEARER_CLIENT_ID": "churnstream",
        "SASL_OAUTHBEARER_CLIENT_SECRET": CLIENT_SECRET,
        "SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": TOKEN_URL,
    }
    for name, value in env.items():
        monkeypatch.setenv(f"CHURNSTREAM_KAFKA__{name}", value)
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "sasl_oauthbearer_client_secret: '**********'" in result.output
    assert CLIENT_SECRET not in result.output


# --------------------------------------------------------------------------- librdkafka


def librdkafka_has_gssapi() -> bool:
    try:
        Producer({"builtin.features": "sasl_gssapi"})
    except KafkaException:
        return False
    return True


def test_gssapi_without_libsasl2_is_one_clear_line(keytab: Path) -> None:
    settings = Settings(kafka=gssapi(keytab))
    if librdkafka_has_gssapi():
        check_client_configs(settings)  # kinit is off in the throwaway clients: no KDC needed
        return
    with pytest.raises(BrokerError) as info:
        check_client_configs(settings)
    assert str(info.value).startswith("invalid Kafka admin configuration: ")
    assert "No provider for SASL mechanism GSSAPI" in str(info.value)


def test_check_accepts_oauthbearer_configurations() -> None:
    check_client_configs(Settings(kafka=oidc(sasl_oauthbearer_scope="kafka")))
    unsecured = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauthbearer_method="unsecured-jwt",
        sasl_oauthbearer_config="principal=admin",
    )
    check_client_configs(Settings(kafka=unsecured))


@pytest.mark.parametrize(
    ("kafka", "hint"),
    [
        (
            lambda _: oidc(sasl_oauthbearer_scope="kafka"),
            "check kafka.sasl_mechanism (OAUTHBEARER), kafka.sasl_oauthbearer_client_id "
            "(churnstream), kafka.sasl_oauthbearer_scope (kafka), "
            "kafka.sasl_oauthbearer_extensions and the client secret",
        ),
        (
            lambda keytab: gssapi(keytab),
            "check kafka.sasl_kerberos_principal (churnstream/host.example.com@EXAMPLE.COM), "
            "kafka.sasl_kerberos_keytab (",
        ),
        (
            lambda _: KafkaSettings(
                security_protocol="SASL_PLAINTEXT",
                librdkafka={"sasl.mechanism": "PLAIN", "sasl.username": "bob"},
            ),
            "and sasl.mechanism and sasl.username in kafka.librdkafka",
        ),
    ],
)
def test_refused_login_names_the_mechanisms_settings(kafka: Any, hint: str, keytab: Path) -> None:
    watch = errors.ClientErrorWatch(kafka(keytab))
    watch(
        KafkaError(
            KafkaError._AUTHENTICATION,
            "sasl_ssl://broker-1:9093/bootstrap: SASL authentication error: invalid_token "
            "(after 12ms in state AUTH_REQ)",
        )
    )
    with pytest.raises(AuthenticationError) as info:
        watch.raise_if_failed()
    message = str(info.value)
    assert message.startswith("authentication failed at broker-1:9093: SASL authentication")
    assert hint in message, message
    assert CLIENT_SECRET not in message


# --------------------------------------------------------------------------- secured test broker


def test_secure_extras_oauthbearer_listener(tmp_path: Path) -> None:
    pki = secure_broker.ThrowawayPki(
        directory=tmp_path,
        ca_cert=tmp_path / "ca.pem",
        broker_keystore=tmp_path / "broker.p12",
        client_cert=tmp_path / "client.pem",
        client_key=tmp_path / "client.key",
        store_password=SecretStr("store-pw"),
        client_key_password=SecretStr("key-pw"),
    )
    names = (*secure_broker.LISTENER_NAMES, secure_broker.OAUTHBEARER_LISTENER)
    ports = dict(zip(names, range(9100, 9105), strict=True))
    extras = secure_broker.secure_extras(pki, ports, username="alice", password=SecretStr("pw"))
    assert (extras.listeners[-1].name, extras.listeners[-1].protocol) == (
        "OAUTHBEARER",
        "SASL_PLAINTEXT",
    )
    props = extras.properties
    assert props["listener.name.oauthbearer.sasl.enabled.mechanisms"] == "OAUTHBEARER"
    assert props["listener.name.oauthbearer.oauthbearer.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        'unsecuredLoginStringClaim_sub="alice" unsecuredValidatorRequiredScope="churnstream";'
    )
    assert props["listener.name.oauthbearer.oauthbearer.sasl.server.callback.handler.class"] == (
        "org.apache.kafka.common.security.oauthbearer.internals.unsecured."
        "OAuthBearerUnsecuredValidatorCallbackHandler"
    )
    four = {name: ports[name] for name in secure_broker.LISTENER_NAMES}
    without = secure_broker.secure_extras(pki, four, username="a", password=SecretStr("p"))
    assert [x.name for x in without.listeners] == list(secure_broker.LISTENER_NAMES)
    assert not any("oauthbearer" in key for key in without.properties)
