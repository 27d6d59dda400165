"""Logging set-up. Only the CLI calls :func:`configure_logging`; library modules just log."""

from __future__ import annotations

import logging
import logging.handlers
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import structlog
from rich.console import Console
from rich.logging import RichHandler
from structlog.typing import EventDict, WrappedLogger

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Structured fields. Modules pass them as ``logger.info(..., extra={TOPIC: t, ...})``; the
# JSON format renders each as a key of its own (the text format shows only the message), so
# every module must use these names and no others.
TOPIC = "topic"
PARTITION = "partition"
OFFSET = "offset"
#: partition -> offset
OFFSETS = "offsets"
BATCH_SIZE = "batch_size"
MODEL_VERSION = "model_version"
#: The dead-letter reason code (``churnstream.error_code``) or a Kafka error's name.
ERROR_CODE = "error_code"
CONSUMER_GROUP = "consumer_group"
BOOTSTRAP_SERVERS = "bootstrap_servers"
#: Retries: the attempt that failed and the wait before the next one.
ATTEMPT = "attempt"
DELAY_S = "delay_s"
LOG_FIELDS = (
    TOPIC,
    PARTITION,
    OFFSET,
    OFFSETS,
    BATCH_SIZE,
    MODEL_VERSION,
    ERROR_CODE,
    CONSUMER_GROUP,
    BOOTSTRAP_SERVERS,
    ATTEMPT,
    DELAY_S,
)


def _timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # From the record, not the clock: the console and the file render one record at two
    # moments and must agree. structlog's TimeStamper reads the clock, and its "iso" gives
    # microseconds (none at all when they are 0), so it cannot give exactly milliseconds.
    created = datetime.fromtimestamp(event_dict["_record"].created, tz=UTC)
    event_dict["ts"] = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event_dict


def _level(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict["level"] = event_dict["_record"].levelname
    return event_dict


def _exc_key(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    if "exception" in event_dict:  # this format called it "exc" before structlog rendered it
        event_dict["exc"] = event_dict.pop("exception")
    return event_dict


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """One JSON object per line, for machines: ``ts`` (UTC, milliseconds), ``level``,
    ``logger``, ``message``, then the record's :data:`LOG_FIELDS` and ``exc`` if any."""

    def __init__(self) -> None:
        super().__init__(
            foreign_pre_chain=[
                _timestamp,
                _level,
                structlog.stdlib.add_logger_name,
                structlog.processors.EventRenamer("message"),
                structlog.stdlib.ExtraAdder(allow=LOG_FIELDS),
                structlog.processors.format_exc_info,
                _exc_key,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )


def configure_logging(
    level: str = "INFO",
    *,
    log_file: Path | None = None,
    fmt: Literal["text", "json"] = "text",
    quiet: bool = False,
    console_level: str | None = None,
) -> None:
    """Send logs to stderr (rich or JSON) and, optionally, to a rotating file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level.upper())

    console: logging.Handler
    if fmt == "json":
        console = logging.StreamHandler()
        console.setFormatter(JsonFormatter())
    else:
        # stderr, so that logs never mix into what a command prints on stdout (JSON, dumps).
        console = RichHandler(
            console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False
        )
        console.setFormatter(logging.Formatter("%(message)s"))
    console.setLevel("WARNING" if quiet else (console_level or level).upper())
    root.addHandler(console)

    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
        rotating.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
        root.addHandler(rotating)

    # librdkafka and matplotlib are chatty at INFO/DEBUG.
    for noisy in ("matplotlib", "PIL", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class LibrdkafkaLog:
    """Pass as a client's ``logger``: librdkafka's lines join our logs instead of raw stderr.

    confluent-kafka hands over librdkafka's syslog levels already mapped to Python's
    (err -> ERROR, warning -> WARNING, notice/info -> INFO, debug -> DEBUG). librdkafka
    reports transient trouble (a coordinator still loading, a refused connection while a
    broker restarts) as warnings, which it retries by itself; what really fails reaches us
    through delivery callbacks and errors. So its warnings are demoted to INFO and only its
    errors (and worse) stay WARNING.
    """

    _logger = logging.getLogger("churnstream.librdkafka")

    def log(self, level: int, msg: str, *args: object) -> None:
        if level >= logging.ERROR:
            self._logger.warning(msg, *args)
        elif level >= logging.INFO:
            self._logger.info(msg, *args)
        else:
            self._logger.debug(msg, *args)


LIBRDKAFKA_LOG = LibrdkafkaLog()
