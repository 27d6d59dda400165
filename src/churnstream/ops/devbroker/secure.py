"""A secured embedded Apache Kafka, for tests and local trials of the security settings.

:func:`start_secure` runs the embedded Kafka engine (:func:`churnstream.ops.devbroker.start`)
with four more listeners beside its PLAINTEXT one (which stays the inter-broker listener and
the readiness probe's):

- ``SASL_PLAINTEXT``: SASL with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN;
- ``SSL``: TLS, the broker authenticated by a certificate from a throwaway CA;
- ``MTLS``: TLS that also requires a client certificate from that CA;
- ``SASL_SSL``: the SASL mechanisms above, over TLS;
- ``OAUTHBEARER`` (only with ``oauthbearer=True``): SASL_PLAINTEXT with OAUTHBEARER alone,
  validated by Kafka's unsecured-JWS validator (unsigned tokens, no identity provider), which
  requires the scope :data:`OAUTHBEARER_SCOPE` in every token.

One user is known to every mechanism but OAUTHBEARER (which accepts any principal whose
token carries the scope). The user's SCRAM credentials are written into the metadata log when
the storage is formatted (``StorageTool format --add-scram``), its PLAIN password into the
listener's JAAS configuration. :func:`make_throwaway_pki` makes the CA, the broker's
PKCS12 keystore and a client certificate with an encrypted key, with ``openssl``.

None of this is for production: the CA key sits next to the certificates, and the passwords
are in ``server.properties`` (mode 0600) and on the format command line.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from churnstream.exceptions import BrokerError
from churnstream.ops import devbroker as broker
from churnstream.settings.sections import BrokerSettings
from churnstream.tools import failure_detail, run_tool

logger = logging.getLogger(__name__)

PKI_VALID_DAYS = 2
OPENSSL_TIMEOUT_S = 30.0
#: Lines of openssl's stderr quoted when it fails.
OPENSSL_ERROR_LINES = 3
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_MECHANISMS = (*SCRAM_MECHANISMS, "PLAIN")
LISTENER_NAMES = ("SASL_PLAINTEXT", "SSL", "MTLS", "SASL_SSL")
OAUTHBEARER_LISTENER = "OAUTHBEARER"
#: The scope the OAUTHBEARER listener requires in a token (a token without it is refused).
OAUTHBEARER_SCOPE = "churnstream"
# Names and passwords go into JAAS strings and StorageTool's --add-scram syntax unquoted.
_SAFE_CREDENTIAL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Host and certificate names go into openssl command lines split on spaces.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,253}$")
# openssl reads passwords from this variable, not from its argv.
_PASS_ENV = "CHURNSTREAM_PKI_PASS"  # noqa: S105 - a variable name

_SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
_OAUTHBEARER_JAAS = (
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
    'unsecuredLoginStringClaim_sub="{user}" '
    f'unsecuredValidatorRequiredScope="{OAUTHBEARER_SCOPE}";'
)
# Kafka's default for an OAUTHBEARER listener too, named so that no default can change it.
_UNSECURED_VALIDATOR = (
    "org.apache.kafka.common.security.oauthbearer.internals.unsecured."
    "OAuthBearerUnsecuredValidatorCallbackHandler"
)


@dataclass(frozen=True)
class ThrowawayPki:
    """A CA, a broker keystore and a client certificate made by :func:`make_throwaway_pki`."""

    directory: Path
    ca_cert: Path  # PEM: what clients trust (kafka.ssl_ca_location)
    broker_keystore: Path  # PKCS12: the broker's key and certificate chain
    client_cert: Path  # PEM, signed by the CA, for the MTLS listener
    client_key: Path  # PEM, encrypted with client_key_password
    store_password: SecretStr
    client_key_password: SecretStr


@dataclass(frozen=True)
class SecureBroker:
    """A running secured broker: one bootstrap address per listener."""

    settings: BrokerSettings
    plaintext: str
    sasl_plaintext: str
    ssl: str
    mtls: str
    sasl_ssl: str
    username: str
    password: SecretStr
    pki: ThrowawayPki
    #: The OAUTHBEARER listener's address, when it was asked for.
    oauthbearer: str | None = None


def make_throwaway_pki(
    directory: Path,
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    client_name: str = "churnstream-client",
    days: int = PKI_VALID_DAYS,
) -> ThrowawayPki:
    """Make a throwaway CA and certificates for ``hosts`` in ``directory`` with ``openssl``.

    Keys are EC P-256 (fast to make). The broker certificate names every host as a
    subjectAltName, so librdkafka's default hostname verification passes. Raises BrokerError
    when ``openssl`` is missing or fails.
    """
    for value in (*hosts, client_name):
        if not _SAFE_NAME.match(value):
            raise BrokerError(f"not a plain host or certificate name: {value!r}")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError("openssl is not on PATH; it is needed to make throwaway certificates")
    directory.mkdir(parents=True, exist_ok=True)
    store_password = SecretStr(secrets.token_urlsafe(16))
    key_password = SecretStr(secrets.token_urlsafe(16))
    sans = ",".join(
        f"IP:{h}" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", h) else f"DNS:{h}" for h in hosts
    )
    (directory / "pki.cnf").write_text(
        "\n".join(
            [
                "[req]",
                "distinguished_name = dn",
                "prompt = no",
                "[dn]",
                "CN = churnstream",
                "[ca]",
                "basicConstraints = critical, CA:TRUE",
                "keyUsage = critical, keyCertSign, cRLSign",
                "subjectKeyIdentifier = hash",
                "[server]",
                "basicConstraints = CA:FALSE",
                "keyUsage = critical, digitalSignature, keyEncipherment",
                "extendedKeyUsage = serverAuth",
                f"subjectAltName = {sans}",
                "[client]",
                "basicConstraints = CA:FALSE",
                "keyUsage = critical, digitalSignature, keyEncipherment",
                "extendedKeyUsage = clientAuth",
                "",
            ]
        ),
        encoding="utf-8",
    )
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    days_arg = f"-days {days}"
    pass_env = f"env:{_PASS_ENV}"

    def run(command: str, password: SecretStr | None = None) -> None:
        # File names are fixed and relative to ``directory``: splitting on spaces is safe.
        _openssl(openssl, command.split(), directory, password)

    def sign(csr: str, cert: str, section: str) -> None:
        serial = f"0x{secrets.token_hex(8)}"
        run(
            f"x509 -req -in {csr} -CA ca.pem -CAkey ca.key -set_serial {serial} {days_arg} "
            f"-extfile pki.cnf -extensions {section} -out {cert}"
        )

    run(
        f"req -x509 {ec} -keyout ca.key -out ca.pem {days_arg} -config pki.cnf -extensions ca "
        "-subj /CN=churnstream-throwaway-CA"
    )
    run(f"req -new {ec} -keyout broker.key -out broker.csr -config pki.cnf -subj /CN={hosts[0]}")
    sign("broker.csr", "broker.pem", "server")
    run(
        "pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker "
        f"-out broker.p12 -passout {pass_env}",
        store_password,
    )
    run(
        "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-256-cbc "
        f"-pass {pass_env} -out client.key",
        key_password,
    )
    run(
        f"req -new -key client.key -passin {pass_env} -out client.csr -config pki.cnf "
        f"-subj /CN={client_name}",
        key_password,
    )
    sign("client.csr", "client.pem", "client")
    for name in ("ca.key", "broker.key", "broker.p12", "client.key"):
        (directory / name).chmod(0o600)
    return ThrowawayPki(
        directory=directory,
        ca_cert=directory / "ca.pem",
        broker_keystore=directory / "broker.p12",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        store_password=store_password,
        client_key_password=key_password,
    )


def secure_extras(
    pki: ThrowawayPki,
    ports: dict[str, int],
    *,
    username: str,
    password: SecretStr,
) -> broker.KafkaExtras:
    """The listeners, properties and format flags of :func:`start_secure`.

    ``ports`` maps each listener name (``SASL_PLAINTEXT``, ``SSL``, ``MTLS``, ``SASL_SSL``,
    and ``OAUTHBEARER`` if wanted) to its port.
    """
    for what, value in (("user name", username), ("password", password.get_secret_value())):
        if not _SAFE_CREDENTIAL.match(value):
            raise BrokerError(f"the secured test broker's {what} must match [A-Za-z0-9._-]{{1,64}}")
    secret = password.get_secret_value()
    listeners: tuple[broker.ExtraListener, ...] = (
        broker.ExtraListener("SASL_PLAINTEXT", "SASL_PLAINTEXT", ports["SASL_PLAINTEXT"]),
        broker.ExtraListener("SSL", "SSL", ports["SSL"]),
        broker.ExtraListener("MTLS", "SSL", ports["MTLS"]),
        broker.ExtraListener("SASL_SSL", "SASL_SSL", ports["SASL_SSL"]),
    )
    store = pki.store_password.get_secret_value()
    props = {
        # Every TLS listener uses this keystore unless a listener.name.* one overrides it.
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(pki.broker_keystore),
        "ssl.keystore.password": store,
        "ssl.key.password": store,
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.type": "PEM",
        "listener.name.mtls.ssl.truststore.location": str(pki.ca_cert),
    }
    plain_jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{username}="{secret}";'
    )
    for name in ("sasl_plaintext", "sasl_ssl"):
        prefix = f"listener.name.{name}"
        props[f"{prefix}.sasl.enabled.mechanisms"] = ",".join(SASL_MECHANISMS)
        for mechanism in SCRAM_MECHANISMS:
            props[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = _SCRAM_JAAS
        props[f"{prefix}.plain.sasl.jaas.config"] = plain_jaas
    if OAUTHBEARER_LISTENER in ports:
        port = ports[OAUTHBEARER_LISTENER]
        listeners += (broker.ExtraListener(OAUTHBEARER_LISTENER, "SASL_PLAINTEXT", port),)
        prefix = f"listener.name.{OAUTHBEARER_LISTENER.lower()}"
        props[f"{prefix}.sasl.enabled.mechanisms"] = "OAUTHBEARER"
        props[f"{prefix}.oauthbearer.sasl.jaas.config"] = _OAUTHBEARER_JAAS.format(user=username)
        props[f"{prefix}.oauthbearer.sasl.server.callback.handler.class"] = _UNSECURED_VALIDATOR
    format_args: list[str] = []
    for mechanism in SCRAM_MECHANISMS:
        format_args += ["--add-scram", f"{mechanism}=[name={username},password={secret}]"]
    return broker.KafkaExtras(listeners=listeners, properties=props, format_args=tuple(format_args))


def start_secure(
    settings: BrokerSettings,
    pki: ThrowawayPki,
    *,
    username: str = "alice",
    password: SecretStr,
    oauthbearer: bool = False,
) -> SecureBroker:
    """Start the embedded Kafka (engine kafka) with the secured listeners; see the module doc.

    ``oauthbearer`` adds the OAUTHBEARER listener.

    The SCRAM credentials are written only when ``settings.state_dir`` is formatted, i.e. on
    its first start: use a fresh state dir. Stop it with :func:`churnstream.ops.devbroker.stop`.
    """
    if settings.engine == "tansu":
        raise BrokerError("the secured broker needs engine kafka (tansu has no working SASL/TLS)")
    settings = settings.model_copy(update={"engine": "kafka"})
    ports: dict[str, int] = {}
    taken = {settings.port}
    names = (*LISTENER_NAMES, OAUTHBEARER_LISTENER) if oauthbearer else LISTENER_NAMES
    for name in names:
        port = broker.find_free_port(settings.host)
        while port in taken:
            port = broker.find_free_port(settings.host)
        taken.add(port)
        ports[name] = port
    extras = secure_extras(pki, ports, username=username, password=password)
    broker.start(settings, extras=extras)
    host = settings.host
    logger.info(
        "secured listeners on %s: %s",
        host,
        ", ".join(f"{name} {port}" for name, port in ports.items()),
    )
    return SecureBroker(
        settings=settings,
        plaintext=settings.bootstrap,
        sasl_plaintext=f"{host}:{ports['SASL_PLAINTEXT']}",
        ssl=f"{host}:{ports['SSL']}",
        mtls=f"{host}:{ports['MTLS']}",
        sasl_ssl=f"{host}:{ports['SASL_SSL']}",
        username=username,
        password=password,
        pki=pki,
        oauthbearer=f"{host}:{ports[OAUTHBEARER_LISTENER]}" if oauthbearer else None,
    )


def _openssl(openssl: str, args: list[str], cwd: Path, password: SecretStr | None) -> None:
    env = dict(os.environ)
    if password is not None:
        env[_PASS_ENV] = password.get_secret_value()
    doing = f"openssl {args[0]}"
    proc = run_tool(
        [openssl, *args],
        doing=doing,
        timeout_s=OPENSSL_TIMEOUT_S,
        cwd=cwd,
        env=env,
        error=BrokerError,
    )
    if proc.returncode != 0:
        detail = failure_detail(proc.stderr, proc.returncode, OPENSSL_ERROR_LINES)
        raise BrokerError(f"{doing} failed: {detail}")
