"""External tools churnstream runs to their end, and the jar caches Maven fills.

Two caches are filled with ``mvn dependency:copy-dependencies``: the dev broker's Apache Kafka
jars (:mod:`churnstream.ops.devbroker.jars`) and Spark's Kafka connector
(:mod:`churnstream.spark.jars`). Each is a directory of jars with a JSON marker file written
last, so an interrupted fetch is never taken for a complete one. Errors are raised as the
caller's own :class:`~churnstream.exceptions.ChurnstreamError` subclass, in one line.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from churnstream.exceptions import ChurnstreamError

logger = logging.getLogger(__name__)

#: The marker file of a complete jar cache (JSON, written after every jar is in place).
JARS_MARKER = ".complete"
MVN_TIMEOUT_S = 900.0
ERROR_LINE_CHARS = 300

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_tool(
    cmd: Sequence[str],
    *,
    doing: str,
    timeout_s: float,
    cwd: Path,
    error: type[ChurnstreamError],
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to its end with its output captured as text; the caller judges the exit.

    ``error``, saying what it was ``doing``, when the tool cannot start or still runs after
    ``timeout_s``. The command line is never shown: it may hold passwords.
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
        raise error(f"{doing} took over {timeout_s:g}s") from None
    except OSError as exc:
        tool = Path(cmd[0]).name
        raise error(f"{doing} failed: cannot run {tool}: {exc.strerror or exc}") from None


#: A Java stack trace's frame lines: a JVM tool's error message is above them, not in them.
_JAVA_FRAME = re.compile(r"^(at \S+\(.*\)|\.\.\. \d+ more)$")


def failure_detail(output: str, returncode: int, count: int) -> str:
    """A failed tool's last ``count`` non-blank lines of ``output`` that are not Java stack
    frames, joined by `` | ``; its exit status when it printed nothing else."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not _JAVA_FRAME.match(line)]
    return " | ".join(lines[-count:]) or f"exit {returncode}"


def read_jars_marker(jars_dir: Path) -> dict[str, Any] | None:
    """The marker of a complete cache in ``jars_dir``, or None when there is no readable one."""
    try:
        marker = json.loads((jars_dir / JARS_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def write_jars_marker(jars_dir: Path, marker: Mapping[str, Any]) -> None:
    """Mark the cache in ``jars_dir`` complete; call it once every jar is in place."""
    (jars_dir / JARS_MARKER).write_text(json.dumps(marker), encoding="utf-8")


def maven_fetch(
    pom_ref: Traversable,
    jars_dir: Path,
    properties: Mapping[str, str],
    *,
    what: str,
    error: type[ChurnstreamError],
    hint: str = "",
    stale: Sequence[str] = ("*.jar",),
) -> None:
    """Empty the cache in ``jars_dir`` (its marker and the ``stale`` globs), then copy the
    runtime dependencies of the pom at ``pom_ref`` into it, with ``-Dname=value`` for each of
    ``properties``. The caller checks the jars and writes the marker.

    ``error``, in one line naming ``what`` is fetched, when Maven is not on PATH (``hint``
    follows the message), cannot run, overruns :data:`MVN_TIMEOUT_S` or fails.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error(
            f"Maven ('mvn') is not on PATH; it is needed once to download {what} "
            f"into {jars_dir}{hint}"
        )
    logger.info("downloading %s into %s", what, jars_dir)
    jars_dir.mkdir(parents=True, exist_ok=True)
    (jars_dir / JARS_MARKER).unlink(missing_ok=True)
    for pattern in stale:  # never mix two versions of a jar on one class path
        for old in jars_dir.glob(pattern):
            old.unlink()
    with resources.as_file(pom_ref) as pom:
        cmd = [
            mvn,
            "-q",
            "-B",
            "-U",  # retry artifacts whose earlier download failed (Maven caches failures)
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={jars_dir}",
            *(f"-D{name}={value}" for name, value in properties.items()),
        ]
        proc = run_tool(
            cmd,
            doing=f"downloading {what} with Maven",
            timeout_s=MVN_TIMEOUT_S,
            cwd=jars_dir,
            error=error,
        )
    if proc.returncode != 0:
        raise error(
            f"Maven could not download {what} (exit {proc.returncode}): "
            f"{maven_error(proc.stdout + proc.stderr)}"
        )


def maven_error(output: str) -> str:
    """The most useful line of Maven's output, for a one-line error."""
    output = _ANSI_ESCAPE.sub("", output)  # mvn -q still emits colour resets
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln.removeprefix("[ERROR]").strip() for ln in lines if ln.startswith("[ERROR]")]
    skip = ("->", "Re-run", "To see", "For more", "[Help")
    errors = [e for e in errors if e and not e.startswith(skip)]
    if errors:
        return errors[0][:ERROR_LINE_CHARS]
    return lines[-1][:ERROR_LINE_CHARS] if lines else "no output"
