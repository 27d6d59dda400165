"""Logging set-up. Only the CLI calls :func:`configure_logging`; library modules just log."""

from __future__ import annotations

import json
import logging
import logging.handlers
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.logging import RichHandler

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for machines."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload)


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

    librdkafka logs at syslog levels and reports transient trouble (a coordinator still
    loading, a refused connection while a broker restarts) as warnings, which it retries by
    itself; what really fails reaches us through delivery callbacks and errors. So its
    warnings are demoted to INFO and only its errors stay WARNING.
    """

    _logger = logging.getLogger("churnstream.librdkafka")

    def log(self, level: int, msg: str, *args: object) -> None:
        if level <= 3:  # syslog emerg..err
            self._logger.warning(msg, *args)
        elif level <= 6:  # warning..info
            self._logger.info(msg, *args)
        else:
            self._logger.debug(msg, *args)


LIBRDKAFKA_LOG = LibrdkafkaLog()
