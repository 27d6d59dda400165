"""The kafka settings as Spark's Kafka source/sink options, one security mode at a time, and
what Spark's Java client cannot be given refused in one line without a secret."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from churnstream.exceptions import ConfigError
from churnstream.settings import KafkaSettings
from churnstream.spark.kafka_security import REDACTION_REGEX, jaas_quote, spark_kafka_options

PASSWORD = "pa55-Word-not-to-leak"
KEY_PASSWORD = "key-pa55-not-to-leak"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIC\n-----END ENCRYPTED PRIVATE KEY-----\n"
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
#: A throwaway EC key as `openssl genpkey -aes-256-cbc` writes it: PBES2.
PBES2_KEY = """-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjM/QKdDddV1gICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEEI+bwIz73RVIPRSE0EbtJoEgZBD
/6J2R58Hox7u/UeAYOgT4ZosDz9CQbIl7ikpSkf3jHo69DPqdgZ45F1N2R2kMIgd
2gp+910IoG2HnGj5AWEGJChelUAN042piFCmVvkPuyd/pXK+zeoIJnQTC9brocMC
F8vCMk1mIpdEUg1Yx/UD/yfCoSsPpe4NPLiscgJs5Myic5eXusRF14+Py+NFKyg=
-----END ENCRYPTED PRIVATE KEY-----
"""


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "client.pem"}
    files["ca"].write_text(CERT, encoding="ascii")
    files["cert"].write_text(CERT, encoding="ascii")
    files["key"] = tmp_path / "client.key"
    files["key"].write_text(KEY, encoding="ascii")
    return files


def kafka(**values: Any) -> KafkaSettings:
    return KafkaSettings.model_validate({"bootstrap_servers": "b1:9093,b2:9093", **values})


def test_plaintext_is_bootstrap_and_protocol_only() -> None:
    assert spark_kafka_options(kafka()) == {
        "kafka.bootstrap.servers": "b1:9093,b2:9093",
        "kafka.security.protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize(
    ("mechanism", "module"),
    [
        ("PLAIN", "org.apache.kafka.common.security.plain.PlainLoginModule"),
        ("SCRAM-SHA-256", SCRAM),
        ("SCRAM-SHA-512", SCRAM),
    ],
)
def test_sasl_plaintext_password_mechanisms(mechanism: str, module: str) -> None:
    settings = kafka(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username="alice",
        sasl_password=PASSWORD,
    )
    options = spark_kafka_options(settings)
    assert options == {
        "kafka.bootstrap.servers": "b1:9093,b2:9093",
        "kafka.security.protocol": "SASL_PLAINTEXT",
        "kafka.sasl.mechanism": mechanism,
        "kafka.sasl.jaas.config": f'{module} required username="alice" password="{PASSWORD}";',
    }
    # The password is in the JAAS line and nowhere else.
    assert [k for k, v in options.items() if PASSWORD in v] == ["kafka.sasl.jaas.config"]


def test_sasl_ssl_scram_with_password_file_and_ca(pki: dict[str, Path], tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    settings = kafka(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password_file=secret,
        ssl_ca_location=pki["ca"],
    )
    options = spark_kafka_options(settings)
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.jaas.config"] == (
        f'{SCRAM} required username="alice" password="{PASSWORD}";'
    )
    assert options["kafka.ssl.truststore.type"] == "PEM"
    assert options["kafka.ssl.truststore.location"] == str(pki["ca"].resolve())
    assert "kafka.ssl.keystore.type" not in options


def test_ssl_without_ca_uses_the_jvm_trust_store() -> None:
    for ca in (None, "probe"):
        options = spark_kafka_options(kafka(security_protocol="SSL", ssl_ca_location=ca))
        assert options == {
            "kafka.bootstrap.servers": "b1:9093,b2:9093",
            "kafka.security.protocol": "SSL",
        }


def test_mutual_tls_is_an_inline_pem_keystore(pki: dict[str, Path]) -> None:
    settings = kafka(
        security_protocol="SSL",
        ssl_ca_location=pki["ca"],
        ssl_certificate_location=pki["cert"],
        ssl_key_location=pki["key"],
        ssl_key_password=KEY_PASSWORD,
    )
    options = spark_kafka_options(settings)
    assert options["kafka.ssl.keystore.type"] == "PEM"
    assert options["kafka.ssl.keystore.certificate.chain"] == CERT
    assert options["kafka.ssl.keystore.key"] == KEY
    assert options["kafka.ssl.key.password"] == KEY_PASSWORD
    assert "kafka.sasl.jaas.config" not in options


def test_endpoint_identification_passes_through_as_the_java_value() -> None:
    off = kafka(
        security_protocol="SSL", librdkafka={"ssl.endpoint.identification.algorithm": "none"}
    )
    on = kafka(
        security_protocol="SSL", librdkafka={"ssl.endpoint.identification.algorithm": "https"}
    )
    assert spark_kafka_options(off)["kafka.ssl.endpoint.identification.algorithm"] == ""
    assert spark_kafka_options(on)["kafka.ssl.endpoint.identification.algorithm"] == "https"
    # Not configured: the Java client's own default (https), like librdkafka's.
    assert "kafka.ssl.endpoint.identification.algorithm" not in spark_kafka_options(kafka())


def test_oauthbearer_unsecured_jwt_recipe_maps_to_the_java_handler() -> None:
    settings = kafka(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauthbearer_method="unsecured-jwt",
        sasl_oauthbearer_config="principal=alice scope=churnstream,read lifeSeconds=600 "
        "extension_traceId=123",
    )
    jaas = spark_kafka_options(settings)["kafka.sasl.jaas.config"]
    assert jaas == (
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        'unsecuredLoginStringClaim_sub="alice" '
        'unsecuredLoginListClaim_scope=",churnstream,read" '
        'unsecuredLoginLifetimeSeconds="600" '
        'unsecuredLoginExtension_traceId="123";'
    )


def test_gssapi_is_a_krb5_login_with_the_keytab(tmp_path: Path) -> None:
    keytab = tmp_path / "svc.keytab"
    keytab.write_bytes(b"\x05\x02")
    settings = kafka(
        security_protocol="SASL_SSL",
        sasl_mechanism="GSSAPI",
        sasl_kerberos_principal="churn@EXAMPLE.COM",
        sasl_kerberos_keytab=keytab,
    )
    options = spark_kafka_options(settings)
    assert options["kafka.sasl.kerberos.service.name"] == "kafka"
    assert options["kafka.sasl.jaas.config"] == (
        "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true storeKey=true "
        f'keyTab="{keytab.resolve()}" principal="churn@EXAMPLE.COM";'
    )


def test_jaas_values_are_quoted_and_escaped() -> None:
    assert jaas_quote('p"a\\ss', "x") == '"p\\"a\\\\ss"'
    with pytest.raises(ConfigError) as info:
        jaas_quote("line\nbreak-" + PASSWORD, "kafka.sasl_password")
    assert str(info.value).startswith("kafka.sasl_password holds a control character")
    assert PASSWORD not in str(info.value)


def refusal(settings: KafkaSettings) -> str:
    with pytest.raises(ConfigError) as info:
        spark_kafka_options(settings)
    message = str(info.value)
    assert "\n" not in message and PASSWORD not in message
    return message


def test_oidc_is_refused_naming_the_setting() -> None:
    settings = kafka(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauthbearer_client_id="churn",
        sasl_oauthbearer_client_secret=PASSWORD,
        sasl_oauthbearer_token_endpoint_url="https://idp.example/token",
    )
    assert "kafka.sasl_oauthbearer_method oidc" in refusal(settings)


def test_security_through_the_librdkafka_passthrough_is_refused_by_name() -> None:
    settings = kafka(
        librdkafka_consumer={"security.protocol": "SASL_SSL", "sasl.password": PASSWORD}
    )
    message = refusal(settings)
    assert message.startswith("consume --engine spark cannot apply kafka.librdkafka_consumer[")
    # Non-security tuning is not Spark's business and is left alone.
    assert spark_kafka_options(kafka(librdkafka={"client.rack": "az1"}))


def test_ca_directory_and_traditional_key_are_refused(tmp_path: Path, pki: dict[str, Path]) -> None:
    message = refusal(kafka(security_protocol="SSL", ssl_ca_location=tmp_path))
    assert message.startswith("kafka.ssl_ca_location: ") and "is a directory" in message
    pki["key"].write_text("-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n")
    settings = kafka(
        security_protocol="SSL",
        ssl_certificate_location=pki["cert"],
        ssl_key_location=pki["key"],
    )
    message = refusal(settings)
    assert message.startswith("kafka.ssl_key_location: ") and "openssl pkcs8 -topk8" in message
    assert "MHc" not in message
    pki["key"].write_text(PBES2_KEY, encoding="ascii")
    message = refusal(settings)
    assert "encrypted with PBES2" in message and "PBE-SHA1-3DES" in message


def test_nothing_is_logged_and_spark_redacts_the_secret_options(
    pki: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    import re

    caplog.set_level(logging.DEBUG)
    settings = kafka(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="alice",
        sasl_password=PASSWORD,
        ssl_certificate_location=pki["cert"],
        ssl_key_location=pki["key"],
        ssl_key_password=KEY_PASSWORD,
    )
    options = spark_kafka_options(settings)
    assert PASSWORD not in caplog.text and KEY_PASSWORD not in caplog.text
    # Spark redacts an option when its key or its value matches the regex.
    secret_bearing = {k for k, v in options.items() if PASSWORD in v or KEY_PASSWORD in v}
    secret_bearing.add("kafka.ssl.keystore.key")
    for key in secret_bearing:
        assert re.search(REDACTION_REGEX, key) or re.search(REDACTION_REGEX, options[key]), key
