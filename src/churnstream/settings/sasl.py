"""The SASL mechanisms: what each needs from the kafka settings, and its librdkafka properties.

- PLAIN, SCRAM-SHA-256, SCRAM-SHA-512: ``sasl_username`` and a password (``sasl_password``
  or ``sasl_password_file``).
- OAUTHBEARER with ``sasl_oauthbearer_method`` oidc (the default): librdkafka fetches tokens
  from the identity provider's ``sasl_oauthbearer_token_endpoint_url`` with the client
  credentials grant, as ``sasl_oauthbearer_client_id`` and its secret
  (``sasl_oauthbearer_client_secret`` or ``..._file``); ``sasl_oauthbearer_scope`` and
  ``sasl_oauthbearer_extensions`` are optional.
- OAUTHBEARER with ``sasl_oauthbearer_method`` unsecured-jwt: librdkafka makes unsigned
  tokens from ``sasl_oauthbearer_config`` (``principal=NAME ...``); for test clusters only.
- GSSAPI (Kerberos): ``sasl_kerberos_principal`` and ``sasl_kerberos_keytab``, from which
  librdkafka renews tickets with kinit; ``sasl_kerberos_service_name`` defaults to "kafka".
  librdkafka must be built with libsasl2 for it (the confluent-kafka wheels are not).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import SecretStr

from churnstream.settings.files import SecretName, check_readable, listing
from churnstream.settings.passthrough import PASSTHROUGH_SETTINGS

logger = logging.getLogger(__name__)

Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]


class KafkaSettings(Protocol):
    """What these checks read of :class:`churnstream.settings.kafka.KafkaSettings`.

    A protocol rather than an import, because that class calls this module: the settings
    package keeps its imports pointing one way.
    """

    @property
    def security_protocol(self) -> str: ...
    @property
    def sasl_mechanism(self) -> Mechanism | None: ...
    @property
    def sasl_username(self) -> str | None: ...
    @property
    def sasl_password(self) -> SecretStr | None: ...
    @property
    def sasl_password_file(self) -> Path | None: ...
    @property
    def sasl_oauthbearer_method(self) -> Literal["oidc", "unsecured-jwt"]: ...
    @property
    def sasl_oauthbearer_client_id(self) -> str | None: ...
    @property
    def sasl_oauthbearer_client_secret(self) -> SecretStr | None: ...
    @property
    def sasl_oauthbearer_client_secret_file(self) -> Path | None: ...
    @property
    def sasl_oauthbearer_token_endpoint_url(self) -> str | None: ...
    @property
    def sasl_oauthbearer_scope(self) -> str | None: ...
    @property
    def sasl_oauthbearer_extensions(self) -> str | None: ...
    @property
    def sasl_oauthbearer_config(self) -> str | None: ...
    @property
    def sasl_kerberos_service_name(self) -> str | None: ...
    @property
    def sasl_kerberos_principal(self) -> str | None: ...
    @property
    def sasl_kerberos_keytab(self) -> Path | None: ...
    def passthrough(self, kind: Any = None) -> dict[str, str]: ...
    def secret(self, name: SecretName) -> str | None: ...


_PASSWORD = ("sasl_username", "sasl_password", "sasl_password_file")
_OIDC = (
    "sasl_oauthbearer_client_id",
    "sasl_oauthbearer_client_secret",
    "sasl_oauthbearer_client_secret_file",
    "sasl_oauthbearer_token_endpoint_url",
    "sasl_oauthbearer_scope",
    "sasl_oauthbearer_extensions",
)
_UNSECURED_JWT = ("sasl_oauthbearer_config",)
_KERBEROS = ("sasl_kerberos_service_name", "sasl_kerberos_principal", "sasl_kerberos_keytab")
#: Every SASL setting that is None unless set (the mechanism and what the mechanisms use).
SETTINGS = ("sasl_mechanism", *_PASSWORD, *_OIDC, *_UNSECURED_JWT, *_KERBEROS)


def problem(kafka: KafkaSettings) -> str | None:
    """Why a SASL protocol cannot work with these settings, or None.

    Names the mechanism's missing settings, all at once. When a ``kafka.librdkafka*`` setting
    gives the mechanism, SASL is configured there, and it is librdkafka's to judge.
    """
    given = {name for setting in PASSTHROUGH_SETTINGS for name in getattr(kafka, setting)}
    if given & {"sasl.mechanism", "sasl.mechanisms"}:
        return None
    mechanism = kafka.sasl_mechanism
    if mechanism == "OAUTHBEARER":
        return _oauthbearer_problem(kafka)
    if mechanism == "GSSAPI":
        missing = [
            f"kafka.{name}"
            for name in ("sasl_kerberos_principal", "sasl_kerberos_keytab")
            if not getattr(kafka, name)
        ]
        return f"kafka.sasl_mechanism GSSAPI needs {listing(missing)}" if missing else None
    missing = []
    if mechanism is None:
        missing.append("kafka.sasl_mechanism")
    if not kafka.sasl_username:
        missing.append("kafka.sasl_username")
    if kafka.sasl_password_file is None and (
        kafka.sasl_password is None or not kafka.sasl_password.get_secret_value()
    ):
        missing.append("kafka.sasl_password (or kafka.sasl_password_file)")
    if missing:
        return (
            f"kafka.security_protocol is {kafka.security_protocol}, which needs {listing(missing)}"
        )
    return None


def _oauthbearer_problem(kafka: KafkaSettings) -> str | None:
    if kafka.sasl_oauthbearer_method == "unsecured-jwt":
        recipe = kafka.sasl_oauthbearer_config or ""
        if not any(part.startswith("principal=") for part in recipe.split()):
            return (
                "kafka.sasl_oauthbearer_method unsecured-jwt needs kafka.sasl_oauthbearer_config "
                "naming the principal (e.g. principal=admin)"
            )
        return None
    missing = []
    if not kafka.sasl_oauthbearer_client_id:
        missing.append("kafka.sasl_oauthbearer_client_id")
    secret = kafka.sasl_oauthbearer_client_secret
    if kafka.sasl_oauthbearer_client_secret_file is None and (
        secret is None or not secret.get_secret_value()
    ):
        missing.append(
            "kafka.sasl_oauthbearer_client_secret (or kafka.sasl_oauthbearer_client_secret_file)"
        )
    url = kafka.sasl_oauthbearer_token_endpoint_url
    if not url:
        missing.append("kafka.sasl_oauthbearer_token_endpoint_url")
    if missing:
        return (
            "kafka.sasl_mechanism OAUTHBEARER with kafka.sasl_oauthbearer_method oidc needs "
            f"{listing(missing)}"
        )
    if url is not None and not url.lower().startswith(("https://", "http://")):
        # Not echoed: a URL can carry credentials.
        return "kafka.sasl_oauthbearer_token_endpoint_url must be an https:// (or http://) URL"
    return None


def unused(kafka: KafkaSettings) -> list[str]:
    """SASL settings that are set but that ``sasl_mechanism`` does not use."""
    mechanism = kafka.sasl_mechanism
    used: tuple[str, ...]
    if mechanism == "OAUTHBEARER":
        used = _UNSECURED_JWT if kafka.sasl_oauthbearer_method == "unsecured-jwt" else _OIDC
    elif mechanism == "GSSAPI":
        used = _KERBEROS
    else:
        used = _PASSWORD
    names = [n for n in (*_PASSWORD, *_OIDC, *_UNSECURED_JWT, *_KERBEROS) if n not in used]
    return [f"kafka.{name}" for name in names if getattr(kafka, name) is not None]


def client_properties(kafka: KafkaSettings) -> dict[str, Any]:
    """The librdkafka properties of the configured mechanism (secrets from files read now).

    Logs a warning naming the settings that are set but that the mechanism does not use.
    """
    mechanism = kafka.sasl_mechanism
    ignored = unused(kafka)
    if ignored:
        logger.warning(
            "%s set, but kafka.sasl_mechanism is %s, which does not use %s",
            listing(ignored),
            mechanism,
            "it" if len(ignored) == 1 else "them",
        )
    conf: dict[str, Any] = {"sasl.mechanism": mechanism}
    if mechanism == "OAUTHBEARER" and kafka.sasl_oauthbearer_method == "unsecured-jwt":
        conf["enable.sasl.oauthbearer.unsecure.jwt"] = True
        conf["sasl.oauthbearer.config"] = kafka.sasl_oauthbearer_config
    elif mechanism == "OAUTHBEARER":
        conf["sasl.oauthbearer.method"] = "oidc"
        conf["sasl.oauthbearer.client.id"] = kafka.sasl_oauthbearer_client_id
        conf["sasl.oauthbearer.client.secret"] = kafka.secret("sasl_oauthbearer_client_secret")
        conf["sasl.oauthbearer.token.endpoint.url"] = kafka.sasl_oauthbearer_token_endpoint_url
        if kafka.sasl_oauthbearer_scope:
            conf["sasl.oauthbearer.scope"] = kafka.sasl_oauthbearer_scope
        if kafka.sasl_oauthbearer_extensions:
            conf["sasl.oauthbearer.extensions"] = kafka.sasl_oauthbearer_extensions
    elif mechanism == "GSSAPI":
        keytab = kafka.sasl_kerberos_keytab
        if keytab is not None:
            check_readable(keytab, "kafka.sasl_kerberos_keytab")
            conf["sasl.kerberos.keytab"] = str(keytab)
        conf["sasl.kerberos.principal"] = kafka.sasl_kerberos_principal
        if kafka.sasl_kerberos_service_name:
            conf["sasl.kerberos.service.name"] = kafka.sasl_kerberos_service_name
    else:
        conf["sasl.username"] = kafka.sasl_username
        password = kafka.secret("sasl_password")
        if password is not None:
            conf["sasl.password"] = password
    return conf


def credentials_hint(kafka: KafkaSettings) -> str:
    """Which settings to check when the cluster refuses our SASL credentials."""
    mechanism = kafka.sasl_mechanism
    if mechanism == "OAUTHBEARER" and kafka.sasl_oauthbearer_method == "unsecured-jwt":
        hint = (
            "check kafka.sasl_mechanism (OAUTHBEARER) and kafka.sasl_oauthbearer_config "
            f"({kafka.sasl_oauthbearer_config}): does the broker accept unsecured tokens "
            "for that principal and scope?"
        )
    elif mechanism == "OAUTHBEARER":
        hint = (
            "check kafka.sasl_mechanism (OAUTHBEARER), kafka.sasl_oauthbearer_client_id "
            f"({kafka.sasl_oauthbearer_client_id}), kafka.sasl_oauthbearer_scope "
            f"({kafka.sasl_oauthbearer_scope or 'none'}), kafka.sasl_oauthbearer_extensions "
            "and the client secret (kafka.sasl_oauthbearer_client_secret or _file)"
        )
    elif mechanism == "GSSAPI":
        hint = (
            f"check kafka.sasl_kerberos_principal ({kafka.sasl_kerberos_principal}), "
            f"kafka.sasl_kerberos_keytab ({kafka.sasl_kerberos_keytab}) and "
            f"kafka.sasl_kerberos_service_name ({kafka.sasl_kerberos_service_name or 'kafka'})"
        )
    else:
        hint = (
            f"check kafka.sasl_mechanism ({mechanism or 'none'}), kafka.sasl_username "
            f"({kafka.sasl_username or '(none)'}) and the password (kafka.sasl_password or "
            "kafka.sasl_password_file)"
        )
    given = sorted(k for k in kafka.passthrough() if k.startswith(("sasl.", "security.")))
    if given:
        hint += f", and {listing(given)} in kafka.librdkafka"
    return hint
