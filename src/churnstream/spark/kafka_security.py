"""churnstream's kafka settings as the options of Spark's Kafka source and sink.

The only place that knows both vocabularies: the librdkafka-flavoured settings of
:class:`~churnstream.settings.kafka.KafkaSettings` on one side, the Java client's properties
(``kafka.``-prefixed, as Spark's connector takes them) on the other.

- SASL PLAIN and SCRAM-SHA-256/512: ``sasl.jaas.config`` with the login module and the
  credentials. The password appears there and nowhere else: the Java client hides that
  property in its logs, and :data:`REDACTION_REGEX` makes Spark hide it in plans too.
- OAUTHBEARER with unsecured-jwt: librdkafka's token recipe (``sasl_oauthbearer_config``)
  as the options of the Java client's unsecured login handler.
- GSSAPI: ``Krb5LoginModule`` with the keytab and principal (the JVMs need a krb5.conf).
- TLS: the CA file as a PEM truststore (by path: it must exist on every executor); a client
  certificate and its PKCS#8 key as an inline PEM keystore, because the Java client wants
  both in one store and churnstream keeps them in two files. An encrypted key must use a
  PBES1 scheme (e.g. PBE-SHA1-3DES): the Java client cannot decrypt PBES2 on Java 17.

What the Java client cannot be given this way is refused with one :class:`ConfigError` line
naming the setting: OAUTHBEARER with oidc, a CA directory, a key in a pre-PKCS#8 format or
encrypted with PBES2,
and security properties given only through the ``kafka.librdkafka*`` pass-through.
"""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

from churnstream.exceptions import ConfigError
from churnstream.settings.files import check_readable
from churnstream.settings.kafka import SASL_PROTOCOLS, TLS_PROTOCOLS, KafkaSettings

logger = logging.getLogger(__name__)

#: Spark redacts data source options whose key or value matches this (``spark.sql.
#: redaction.options.regex``): its default ``(?i)url`` plus the options that carry a secret
#: without "password" or "secret" in their name (an inline key, a JAAS line).
REDACTION_REGEX = r"(?i)url|jaas|keystore[.]key|password|secret"

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
_OAUTHBEARER_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
_KERBEROS_MODULE = "com.sun.security.auth.module.Krb5LoginModule"
#: librdkafka pass-through properties that change how the client authenticates or encrypts.
_SECURITY_PREFIXES = ("security.", "sasl.", "ssl.", "enable.sasl.", "enable.ssl.")
_ENDPOINT_IDENTIFICATION = "ssl.endpoint.identification.algorithm"
# JAAS values are double-quoted; anything Kafka's JAAS parser would end a string on is refused.
_JAAS_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_PKCS8 = ("-----BEGIN PRIVATE KEY-----", "-----BEGIN ENCRYPTED PRIVATE KEY-----")
_ENCRYPTED_KEY = re.compile(
    r"-----BEGIN ENCRYPTED PRIVATE KEY-----(?P<body>[A-Za-z0-9+/=\s]+)-----END", re.ASCII
)
#: DER of the PBES2 object identifier (1.2.840.113549.1.5.13), OpenSSL's default key encryption.
_PBES2_OID = bytes.fromhex("06092a864886f70d01050d")


def spark_kafka_options(kafka: KafkaSettings) -> dict[str, str]:
    """Spark's ``kafka.*`` source/sink options for these settings; ConfigError if impossible.

    Reads the ``*_file`` secrets and the client certificate and key now (on the driver), so
    executors need only the CA file. Never logs, and never puts a secret in an error.
    """
    options = {
        "kafka.bootstrap.servers": kafka.bootstrap_servers,
        "kafka.security.protocol": kafka.security_protocol,
    }
    options.update(_endpoint_identification(kafka))
    if kafka.security_protocol in SASL_PROTOCOLS:
        options.update(_sasl_options(kafka))
    if kafka.security_protocol in TLS_PROTOCOLS:
        options.update(_tls_options(kafka))
    return options


def jaas_quote(value: str, setting: str) -> str:
    """``value`` as a double-quoted JAAS option value; ConfigError naming ``setting`` (never
    the value) when it holds a control character, which JAAS strings cannot carry."""
    if _JAAS_UNSAFE.search(value):
        raise ConfigError(
            f"{setting} holds a control character, which the Spark engine's Java client "
            "cannot be given (JAAS strings)"
        )
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _endpoint_identification(kafka: KafkaSettings) -> dict[str, str]:
    """The pass-through properties the Java client gets too; the other security ones refused.

    Only hostname verification maps one to one ("none" is the Java client's empty string);
    any other security property given through ``kafka.librdkafka*`` would silently not reach
    Spark, so it is refused by name.
    """
    options: dict[str, str] = {}
    for kind in (None, "consumer", "producer"):
        for name, value in kafka.passthrough(kind).items():
            if name == _ENDPOINT_IDENTIFICATION and value in ("none", "https"):
                options[f"kafka.{name}"] = "" if value == "none" else value
            elif name.startswith(_SECURITY_PREFIXES):
                where = kafka.passthrough_source(name, kind) or f"kafka.librdkafka[{name!r}]"
                raise ConfigError(
                    f"consume --engine spark cannot apply {where}: librdkafka security "
                    "properties do not reach Spark's Java client; use the kafka.security_*, "
                    "kafka.sasl_* and kafka.ssl_* settings instead"
                )
    return options


def _sasl_options(kafka: KafkaSettings) -> dict[str, str]:
    mechanism = kafka.sasl_mechanism
    if mechanism is None:
        raise ConfigError(
            f"consume --engine spark needs kafka.sasl_mechanism with kafka.security_protocol "
            f"{kafka.security_protocol}"
        )
    options: dict[str, str] = {"kafka.sasl.mechanism": mechanism}
    if mechanism in _LOGIN_MODULES:
        password = kafka.secret("sasl_password")
        options["kafka.sasl.jaas.config"] = (
            f"{_LOGIN_MODULES[mechanism]} required "
            f"username={jaas_quote(kafka.sasl_username or '', 'kafka.sasl_username')} "
            f"password={jaas_quote(password or '', 'kafka.sasl_password')};"
        )
    elif mechanism == "OAUTHBEARER":
        if kafka.sasl_oauthbearer_method != "unsecured-jwt":
            raise ConfigError(
                "consume --engine spark does not support kafka.sasl_oauthbearer_method oidc "
                "(Spark's Java client fetches tokens differently); use the default engine "
                "for this cluster"
            )
        options["kafka.sasl.jaas.config"] = _unsecured_jwt_jaas(kafka.sasl_oauthbearer_config)
    else:  # GSSAPI
        keytab = kafka.sasl_kerberos_keytab
        if keytab is not None:
            check_readable(keytab, "kafka.sasl_kerberos_keytab")
        tab = jaas_quote(str(keytab.resolve()) if keytab else "", "kafka.sasl_kerberos_keytab")
        principal = jaas_quote(kafka.sasl_kerberos_principal or "", "kafka.sasl_kerberos_principal")
        options["kafka.sasl.jaas.config"] = (
            f"{_KERBEROS_MODULE} required useKeyTab=true storeKey=true "
            f"keyTab={tab} principal={principal};"
        )
        options["kafka.sasl.kerberos.service.name"] = kafka.sasl_kerberos_service_name or "kafka"
    return options


def _unsecured_jwt_jaas(recipe: str | None) -> str:
    """librdkafka's ``principal=NAME [scope=a,b] [lifeSeconds=N] [extension_K=V]`` recipe as
    the JAAS line of the Java client's unsecured login handler."""
    setting = "kafka.sasl_oauthbearer_config"
    parts: dict[str, str] = {}
    for token in (recipe or "").split():
        key, sep, value = token.partition("=")
        if not sep:
            raise ConfigError(f"{setting}: {token!r} is not key=value")
        parts[key] = value
    principal_claim = parts.pop("principalClaimName", "sub")
    scope_claim = parts.pop("scopeClaimName", "scope")
    principal = jaas_quote(parts.pop("principal", ""), setting)
    options = [f"unsecuredLoginStringClaim_{principal_claim}={principal}"]
    if principal_claim != "sub":
        options.append(f"unsecuredLoginPrincipalClaimName={jaas_quote(principal_claim, setting)}")
    if scope_claim != "scope":
        options.append(f"unsecuredLoginScopeClaimName={jaas_quote(scope_claim, setting)}")
    if "scope" in parts:
        # A list claim's first character is its separator in the Java handler's syntax.
        options.append(
            f"unsecuredLoginListClaim_{scope_claim}={jaas_quote(',' + parts.pop('scope'), setting)}"
        )
    if "lifeSeconds" in parts:
        options.append(
            f"unsecuredLoginLifetimeSeconds={jaas_quote(parts.pop('lifeSeconds'), setting)}"
        )
    for key in [k for k in parts if k.startswith("extension_")]:
        name = key.removeprefix("extension_")
        options.append(f"unsecuredLoginExtension_{name}={jaas_quote(parts.pop(key), setting)}")
    if parts:
        raise ConfigError(
            f"{setting}: consume --engine spark does not know {', '.join(sorted(parts))}"
        )
    return f"{_OAUTHBEARER_MODULE} required {' '.join(options)};"


def _tls_options(kafka: KafkaSettings) -> dict[str, str]:
    options: dict[str, str] = {}
    ca = kafka.ssl_ca_location
    if ca is not None and str(ca) != "probe":  # probe: the JVM's own CAs, its default
        if ca.is_dir():
            raise ConfigError(
                f"kafka.ssl_ca_location: {ca} is a directory; consume --engine spark needs "
                "one PEM file of CA certificates (Java PEM truststore)"
            )
        check_readable(ca, "kafka.ssl_ca_location")
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = str(ca.resolve())
    cert, key = kafka.ssl_certificate_location, kafka.ssl_key_location
    if cert is not None and key is not None:
        options["kafka.ssl.keystore.type"] = "PEM"
        options["kafka.ssl.keystore.certificate.chain"] = _pem(
            cert, "kafka.ssl_certificate_location", ("-----BEGIN CERTIFICATE-----",)
        )
        key_pem = _pem(key, "kafka.ssl_key_location", _PKCS8)
        if _pbes2(key_pem):
            # kafka-clients 3.9 asks the JVM for a "PBES2" SecretKeyFactory, which Java 17
            # does not have: the keystore fails on every executor, long after start-up.
            raise ConfigError(
                f"kafka.ssl_key_location: {key} is encrypted with PBES2 (OpenSSL's default), "
                "which Spark's Java Kafka client cannot decrypt; re-encrypt it with "
                "openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES (or use an unencrypted key)"
            )
        options["kafka.ssl.keystore.key"] = key_pem
        password = kafka.secret("ssl_key_password")
        if password is not None:
            options["kafka.ssl.key.password"] = password
    return options


def _pbes2(pem: str) -> bool:
    """Whether ``pem`` is an encrypted PKCS#8 key whose algorithm is PBES2."""
    match = _ENCRYPTED_KEY.search(pem)
    if match is None:
        return False
    try:
        der = base64.b64decode("".join(match.group("body").split()))
    except ValueError:
        return False
    # EncryptedPrivateKeyInfo: SEQUENCE { SEQUENCE { OID, params }, ... }: the OID is early.
    return _PBES2_OID in der[:24]


def _pem(path: Path, setting: str, markers: tuple[str, ...]) -> str:
    """The PEM text of ``path``; ConfigError naming ``setting`` (never the content)."""
    check_readable(path, setting)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"{setting}: {path} is not a PEM file") from None
    if not any(marker in text for marker in markers):
        hint = (
            " (the Java client reads PKCS#8 keys only: convert it with openssl pkcs8 -topk8)"
            if setting == "kafka.ssl_key_location"
            else ""
        )
        raise ConfigError(f"{setting}: {path} has no {markers[0].strip('-').lower()} block{hint}")
    return text
