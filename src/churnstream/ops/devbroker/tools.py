"""The set-up tools the dev broker runs to their end: Maven, Kafka's StorageTool, openssl."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from churnstream.exceptions import BrokerError

logger = logging.getLogger(__name__)


def run_tool(
    cmd: Sequence[str],
    *,
    doing: str,
    timeout_s: float,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to its end with its output captured as text; the caller judges the exit.

    BrokerError, saying what it was ``doing``, when the tool cannot start or still runs
    after ``timeout_s``. The command line is never shown: it may hold passwords.
    """
    try:
        return subprocess.run(  # noqa: S603 - fixed argv, no shell
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise BrokerError(f"{doing} took over {timeout_s:g}s") from None
    except OSError as exc:
        tool = Path(cmd[0]).name
        raise BrokerError(f"{doing} failed: cannot run {tool}: {exc.strerror or exc}") from None


def failure_detail(output: str, returncode: int, count: int) -> str:
    """A failed tool's last ``count`` non-blank lines of ``output``, joined by `` | ``; its
    exit status when it printed nothing."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or f"exit {returncode}"
