"""The one atomic file write: a reader sees the old content or the new one, never half.

The bytes go to a temporary file in the target's own directory (so that ``os.replace``
never crosses a file system), are flushed and fsynced, and then replace the target in one
step. The directory is fsynced afterwards so that the new name survives a power cut.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

#: Files are read by people, dashboards and other processes, which may run as another user
#: (mkstemp alone would leave 0600).
FILE_MODE = 0o644


def write_temp(directory: Path, data: bytes, *, mode: int = FILE_MODE, name: str = "") -> Path:
    """``data`` in a new, fsynced temporary file in ``directory``; returns its path.

    The first half of an atomic write, for callers that publish the file themselves (with
    ``os.link`` to claim a name that must not exist yet, say).
    """
    with _temp_file(directory, name, mode) as (temp, handle):
        handle.write(data)
    return temp


@contextlib.contextmanager
def _temp_file(directory: Path, name: str, mode: int) -> Iterator[tuple[Path, BinaryIO]]:
    """A new temporary file in ``directory``, fsynced when the block ends; removed if it fails."""
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            yield temp, handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = FILE_MODE) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``.

    The parent directory must exist. On any failure the target is untouched and the
    temporary file is removed.
    """
    with atomic_writer(path, mode=mode) as handle:
        handle.write(data)
    return path


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int = FILE_MODE) -> Iterator[BinaryIO]:
    """The atomic write for a file produced piece by piece (too large to hold in memory).

    Yields a binary handle on a temporary file beside ``path``; when the block ends without
    an exception the file is fsynced and replaces ``path``. On any failure the target is
    untouched and the temporary file is removed.
    """
    with _temp_file(path.parent, path.name, mode) as (temp, handle):
        yield handle
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(
    path: Path, text: str, *, encoding: str = "utf-8", mode: int = FILE_MODE
) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding), mode=mode)


def _fsync_directory(directory: Path) -> None:
    # Best effort: some file systems (and platforms) do not let a directory be opened or
    # synced; the file itself is already complete under its final name.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)
