"""The JVM that runs Kafka: finding java, and its class-data-sharing archive.

The first Kafka broker to stop leaves a class-data archive in the jar cache, which makes
later starts about 40% faster (about 1.5 s here).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


def java_executable() -> str | None:
    """``$JAVA_HOME/bin/java`` if it exists (as kafka-run-class.sh does), else java on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


@dataclass(frozen=True)
class ClassArchive:
    """How one JVM uses the class-data archive: ``flag`` for its command line.

    ``pending`` is set when no archive exists yet: this JVM writes one there at exit, and
    :func:`promote_class_archive` moves it to ``archive`` after a graceful stop.
    """

    flag: str
    archive: Path
    pending: Path | None = None


def class_archive(java: str, jars_dir: Path, state_dir: Path) -> ClassArchive:
    """Class-data sharing: the JVM loads Kafka's classes from an archive instead of the jars.

    The first broker dumps the archive when it exits (``ArchiveClassesAtExit``, to a file
    named after its state dir); its stop then renames it into the jar cache, where every
    later start maps it. The archive's name hashes the java binary, so a JDK upgrade makes a
    new one; a stale or foreign archive is ignored by the JVM (``-Xshare:auto``), never fatal.
    """
    real = Path(java).resolve()
    try:
        stamp = f"{real}:{real.stat().st_mtime_ns}"
    except OSError:
        stamp = str(real)
    key = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    archive = jars_dir / f"cds-{key}.jsa"
    if archive.is_file():
        return ClassArchive(f"-XX:SharedArchiveFile={archive}", archive)
    owner = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    pending = jars_dir / f"cds-{key}.{owner}.tmp"
    pending.unlink(missing_ok=True)
    return ClassArchive(f"-XX:ArchiveClassesAtExit={pending}", archive, pending)


def promote_class_archive(pending: Path | None, archive: Path | None, graceful: bool) -> None:
    """After a JVM stopped: keep the archive it dumped if it exited cleanly, else drop it."""
    if pending is None or archive is None:
        return
    try:
        if graceful and pending.is_file() and pending.stat().st_size > 0:
            os.replace(pending, archive)
            logger.info("saved the JVM class archive %s for faster starts", archive)
        else:
            pending.unlink(missing_ok=True)
    except OSError as exc:
        logger.debug("could not keep the class archive %s: %s", pending, exc)
