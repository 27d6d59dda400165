"""Files named by settings: secrets read from a file, TLS and keytab files that must be readable."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from churnstream.exceptions import ConfigError

logger = logging.getLogger(__name__)

#: The kafka section's secrets; each may be given inline or in the file its ``<name>_file``
#: setting names, never both.
SecretName = Literal["sasl_password", "ssl_key_password", "sasl_oauthbearer_client_secret"]
SECRETS: tuple[SecretName, ...] = (
    "sasl_password",
    "ssl_key_password",
    "sasl_oauthbearer_client_secret",
)


def read_secret_file(path: Path, setting: str) -> str:
    """The secret in ``path``: its only line, without the line break. Never echoed.

    Raises ConfigError naming ``setting`` and the path when the file cannot be read, is
    empty or has more than one line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{setting}: {path} is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or "unreadable"
        raise ConfigError(f"{setting}: cannot read {path} ({reason})") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigError(f"{setting}: {path} is empty")
    if "\n" in secret or "\r" in secret:
        raise ConfigError(f"{setting}: {path} has more than one line, not just the secret")
    return secret


def peek_secret_file(path: Path | None) -> str | None:
    """The secret in ``path`` if it can be read, else None: for scrubbing messages only."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n") or None
    except (OSError, UnicodeDecodeError):
        return None  # unreadable: configuring a client reports it; nothing to scrub


def check_readable(path: Path, setting: str, *, directory_ok: bool = False) -> None:
    """Raise ConfigError naming ``setting`` unless ``path`` is a readable file (or directory)."""
    if directory_ok and path.is_dir():
        return
    if not path.is_file():
        raise ConfigError(f"{setting}: {path} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{setting}: {path} is not readable")


def listing(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
