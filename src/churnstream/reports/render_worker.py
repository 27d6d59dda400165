"""The report renderer: a child process that draws the Markdown and PNG charts of summaries.

``python -m churnstream.reports.render_worker`` is started by the scorer
(:class:`churnstream.reports.writer.ReportRenderer`) and runs beside it, at a lower CPU
priority. It reads one request per line on stdin, a JSON string: the path of a summary
JSON. For each it writes the Markdown and charts next to the JSON, exactly as
``churnstream report --input PATH`` does, and answers with one JSON object per line on
stdout: ``{"json": PATH, "md": PATH, "charts": N, "coalesced": false, "error": null}``.

One render at a time. If newer requests are already waiting when one is taken, that one
gets its Markdown only (``"coalesced": true``, no charts): after a slow spell the renderer
catches up instead of drawing charts for windows that are already superseded. At the end of
its input (the scorer closed the pipe, or died) it renders what is left and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from churnstream.reports.render import render_summary

logger = logging.getLogger(__name__)

#: Added to the scorer's niceness: the scorer keeps the CPU, reports wait.
RENDER_NICENESS = 10
READ_CHUNK_BYTES = 65_536


class Inbox:
    """Requests read from a pipe: whole lines, in order; ``eof`` once the writer is gone."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buffer = b""
        self._paths: deque[str] = deque()

    def next(self) -> str | None:
        """The oldest waiting request, reading (blocking) for one; None at the end."""
        while not self._paths and not self.eof:
            self._read()
        return self._paths.popleft() if self._paths else None

    def waiting(self) -> int:
        """How many requests are waiting now, after reading whatever the pipe holds."""
        while not self.eof and select.select([self.fd], [], [], 0)[0]:
            self._read()
        return len(self._paths)

    def _read(self) -> None:
        chunk = os.read(self.fd, READ_CHUNK_BYTES)
        if not chunk:
            self.eof = True
            return
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        for line in lines:
            try:
                path = orjson.loads(line)
            except orjson.JSONDecodeError:
                path = None
            if isinstance(path, str):
                self._paths.append(path)
            else:
                logger.warning("report renderer: ignored a request that is not a path: %r", line)


def render_one(path: str, *, charts: bool) -> dict[str, Any]:
    """Render one summary; the reply to send (never raises for a bad or missing summary)."""
    reply: dict[str, Any] = {"json": path, "md": None, "charts": 0, "coalesced": not charts}
    try:
        md_path, written = render_summary(Path(path), charts=charts)
    except Exception as exc:  # noqa: BLE001 - reported to the scorer, then the next one
        reply["error"] = f"{type(exc).__name__}: {exc}"
        return reply
    reply.update(md=str(md_path), charts=len(written), error=None)
    return reply


def serve(requests_fd: int, replies_fd: int) -> int:
    """Render every request from ``requests_fd`` until its end; returns how many."""
    inbox = Inbox(requests_fd)
    replying = True
    done = 0
    while (path := inbox.next()) is not None:
        reply = render_one(path, charts=inbox.waiting() == 0)
        done += 1
        if replying:
            try:
                _write_all(replies_fd, orjson.dumps(reply) + b"\n")
            except BrokenPipeError:
                # The scorer is gone; the files still matter, the replies no longer do.
                replying = False
    return done


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main() -> int:
    with contextlib.suppress(OSError):
        os.nice(RENDER_NICENESS)
    serve(sys.stdin.fileno(), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
