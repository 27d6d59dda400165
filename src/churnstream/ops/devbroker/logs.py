"""What the broker's logs say went wrong, as one line for an error message."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from churnstream.ops import processes

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 5
#: Begins the line written to the broker's output at every start.
START_MARKER = "---- churnstream broker start"

_LOG4J_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d ")
_LOG4J_ERROR = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]*\] (ERROR|FATAL) ")


def log_tail(
    paths: Sequence[Path],
    lines: int = LOG_TAIL_LINES,
    *,
    offsets: Mapping[Path, int] | None = None,
) -> str:
    """What the broker's logs say went wrong, as one line.

    :func:`churnstream.ops.processes.log_tail` without stack frames and the JVM's noise;
    log4j ERROR/FATAL lines (each with the exception message after it) are preferred.
    """
    return processes.log_tail(
        paths,
        lines,
        offsets=offsets,
        marker=START_MARKER,
        skip=_log_noise,
        prefer=_log4j_errors,
    )


def _log_noise(line: str) -> bool:
    return line.startswith(("at ", "... ")) or "Unable to register Log4j shutdown hook" in line


def _log4j_errors(lines: list[str]) -> list[str]:
    """log4j's ERROR and FATAL lines, each with the exception line that follows it."""
    errors: list[str] = []
    for idx, line in enumerate(lines):
        if _LOG4J_ERROR.match(line):
            errors.append(line)
            follower = lines[idx + 1] if idx + 1 < len(lines) else ""
            if follower and not _LOG4J_LINE.match(follower):
                errors.append(follower)  # the exception and its message
    return errors
