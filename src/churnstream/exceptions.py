"""One root exception; every error churnstream raises on purpose derives from it."""

from __future__ import annotations

from typing import ClassVar


class ChurnstreamError(Exception):
    """Root of every deliberate churnstream error. The CLI prints it as one line."""

    #: The CLI's exit status when this error ends a command.
    exit_code: ClassVar[int] = 1


class ConfigError(ChurnstreamError):
    """Settings could not be loaded or an override is invalid."""


class ClientConfigError(ConfigError):
    """A librdkafka property given through the kafka.librdkafka* settings cannot be used.

    Refused by churnstream (it controls that property) or by librdkafka (unknown property,
    invalid value). The message names the setting and the property, never a secret value.
    Exits 2, like a usage error: nothing has been sent or read yet.
    """

    exit_code: ClassVar[int] = 2


class DataError(ChurnstreamError):
    """A dataset is missing, unreadable, or does not have the expected schema."""


class DataFetchError(DataError):
    """The dataset could not be downloaded or extracted."""


class IntegrityError(DataError):
    """A file's sha256 does not match the expected one."""


class ModelError(ChurnstreamError):
    """Training or scoring failed."""


class ModelLoadError(ModelError):
    """A model directory is missing, corrupt, untrusted or incompatible."""


class InvalidEventError(ChurnstreamError):
    """A message cannot be scored. Carries everything the dead-letter writer needs."""

    def __init__(
        self,
        reason: str,
        raw: bytes | None = None,
        *,
        error_type: str = "validation_error",
        code: str = "schema",
        details: list[str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.error_type = error_type
        self.code = code
        self.details = details or []


class BrokerError(ChurnstreamError):
    """The embedded broker could not be started, stopped or reached."""


class BrokerUnavailableError(BrokerError):
    """No broker answered at the configured bootstrap servers."""


class DeliveryError(ChurnstreamError):
    """Messages could not be delivered to Kafka."""


class AuthenticationError(BrokerError):
    """The cluster refused our credentials, or TLS could not verify the broker or us.

    The message names the address, the failure and the settings to check; never a secret.
    """


class ProducerFatalError(DeliveryError):
    """The producer hit a fatal error (Kafka's term): that instance can never send again.

    The remedy is a new producer (for a transactional one, with the same transactional id,
    whose ``init_transactions`` fences the old one) and resending from the last commit.
    """


class ClientStuckError(DeliveryError):
    """A Kafka client call did not return within its hard bound, past its own timeout.

    That client is abandoned (never used again): a stuck producer is replaced, while a
    rewind's seek that never returns ends the scorer (its consumer cannot be replaced in place).
    """


class SparkError(ChurnstreamError):
    """Spark cannot run here: no pyspark, no Java, a missing jar, an unreachable master, or
    a job that failed. The message names what is missing and how to provide it."""
