"""What librdkafka's errors mean for the user: one readable line, never a secret.

A refused login or a failed TLS handshake is not a timeout: librdkafka retries it for ever
and reports it only to the client's ``error_cb``. Clients built by
:mod:`churnstream.kafka.clients` for short jobs carry a :class:`ClientErrorWatch` there, and
every call that waits for the cluster checks it, so such a failure raises
AuthenticationError within about a second, with no secret in its message.
"""

from __future__ import annotations

import logging
import re
import threading

from confluent_kafka import KafkaError, KafkaException

from churnstream.exceptions import AuthenticationError
from churnstream.settings import KafkaSettings

logger = logging.getLogger(__name__)

# librdkafka's error strings: "[<proto>://]<host:port>/<broker>: <what> (after Nms in state S)".
_RDKAFKA_ORIGIN = re.compile(r"^(?:[a-z_]+://)?(?P<addr>[^/\s]+:\d+)/\S*: ")
_RDKAFKA_AFTER = re.compile(r"\s*\(after \d+ms in state \w+\)\s*$")
_OPENSSL_CODE = re.compile(r"error:[0-9A-Fa-f]+:[^:]*::")
# TLS alerts a broker sends when it does not accept our client certificate.
_TLS_CLIENT_REJECTED = re.compile(
    r"alert (bad certificate|certificate required|unknown ca|certificate unknown|"
    r"certificate expired|certificate revoked|access denied)",
    re.IGNORECASE,
)


class ClientErrorWatch:
    """A client's ``error_cb`` that remembers the first authentication or TLS failure.

    librdkafka retries a refused login or a failed TLS handshake for ever, so a blocking call
    only times out; the reason arrives through the error callback, which ``poll`` (or
    ``consume``, ``flush``) serves. Use it as ``conf["error_cb"] = ClientErrorWatch(kafka)``
    and call :meth:`raise_if_failed` after polling. Messages are scrubbed of the secrets in
    ``kafka``.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._secrets = kafka.secret_values()
        self._lock = threading.Lock()
        self._failure: str | None = None
        self._last_error: str | None = None

    def __call__(self, err: KafkaError) -> None:
        failure = _auth_failure(err, self._kafka)
        text = self.scrub(_strip_origin(str(err.str()))[1])
        with self._lock:
            if failure is not None and self._failure is None:
                self._failure = self.scrub(failure)
            if err.code() != KafkaError._ALL_BROKERS_DOWN:  # "1/1 brokers are down": no news
                self._last_error = text
        logger.debug("librdkafka error %s: %s", err.name(), text)

    @property
    def failure(self) -> str | None:
        """The first authentication or TLS failure's one-line message, if any."""
        with self._lock:
            return self._failure

    @property
    def last_error(self) -> str | None:
        """The last error librdkafka reported (scrubbed), for a timeout's message."""
        with self._lock:
            return self._last_error

    def raise_if_failed(self) -> None:
        """Raise AuthenticationError if an authentication or TLS failure was reported."""
        failure = self.failure
        if failure is not None:
            raise AuthenticationError(failure)

    def scrub(self, text: str) -> str:
        """``text`` with every configured secret replaced by ``***``."""
        return scrub(text, self._secrets)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def error_code(exc: KafkaException) -> int | None:
    """The KafkaError code a KafkaException carries, if any."""
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def error_reason(exc: BaseException) -> str:
    """librdkafka's own words for a KafkaException, else the exception's text."""
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return str(err.str())
    return str(exc)


def _strip_origin(text: str) -> tuple[str | None, str]:
    """Split librdkafka's "<proto>://<addr>/<broker>: " prefix and "(after ...)" suffix off."""
    text = _RDKAFKA_AFTER.sub("", text.strip())
    match = _RDKAFKA_ORIGIN.match(text)
    if match is None:
        return None, text
    return match.group("addr"), text[match.end() :]


def _auth_failure(err: KafkaError, kafka: KafkaSettings) -> str | None:
    """A one-line message when ``err`` is an authentication or TLS failure, else None."""
    code = err.code()
    addr, detail = _strip_origin(str(err.str()))
    where = addr or kafka.bootstrap_servers
    detail = " ".join(_OPENSSL_CODE.sub("", detail).split())
    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return f"authentication failed at {where}: {detail}; {kafka.credentials_hint()}"
    if code == KafkaError._SSL:
        if "verify failed" in detail:
            reason = detail.removeprefix("SSL handshake failed: ").split(", verify that")[0]
            ca = kafka.ssl_ca_location or "unset, so the system's CAs"
            return (
                f"TLS handshake with {where} failed: the broker's certificate is not trusted "
                f"({reason}); kafka.ssl_ca_location ({ca}) must hold the CA that signed it"
            )
        return f"TLS handshake with {where} failed: {detail}; check the kafka.ssl_* settings"
    if code == KafkaError._TRANSPORT and _TLS_CLIENT_REJECTED.search(detail):
        return (
            f"the broker at {where} rejected our TLS client certificate ({detail}); check "
            "kafka.ssl_certificate_location and kafka.ssl_key_location"
        )
    return None
