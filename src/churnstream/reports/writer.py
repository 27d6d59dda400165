"""The scorer's window hook: the JSON here, the Markdown and charts in a child process.

Drawing a window's charts with matplotlib took 1.4-2.4 s of the poll loop at every rollover
(a soak run's p99 latency doubled). So a closing window costs the scorer one atomic JSON
write and one line down a pipe: :class:`SummaryWriter` writes ``summary_<end>.json`` and
hands its path to :class:`ReportRenderer`, one long-lived child process
(:mod:`churnstream.reports.render_worker`) that writes ``<stem>.md`` and the PNG charts next
to it, the same bytes ``churnstream report --input`` writes. Nothing here imports
matplotlib, and nothing here waits for the child, except :meth:`SummaryWriter.close` at the
scorer's exit, for at most :data:`RENDER_WAIT_S`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from churnstream.reports.files import write_summary_json

logger = logging.getLogger(__name__)

#: At exit, how long to wait for the renderer to finish the windows it was given. Within
#: the 20 s a supervisor grants a stopping scorer, after its drain and commit.
RENDER_WAIT_S = 10.0
#: A renderer that died is restarted at the next window, at most this many times.
MAX_RENDERER_STARTS = 4
RENDER_WORKER = "churnstream.reports.render_worker"
_RERENDER_HINT = "`churnstream report --input %s` renders it"


class ReportRenderer:
    """The scorer's handle on its report renderer: one child process, fed through a pipe.

    The child is started by :meth:`start` or the first :meth:`submit`, and restarted at the
    next window if it died. Requests go down its stdin, which is
    non-blocking here, so a submit never waits; replies come back on its stdout and are
    logged by a thread of ours. Only one render runs at a time (see the worker for how a
    backlog is coalesced).
    """

    def __init__(self) -> None:
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending: dict[str, None] = {}  # wire path -> None, in submission order
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The running child's pid, if there is one."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pending(self) -> list[Path]:
        """Summaries handed over whose rendering has not been reported yet."""
        with self._lock:
            return [Path(p) for p in self._pending]

    def start(self) -> None:
        """Start the child now rather than at the first window: it imports matplotlib while
        the scorer starts up, not while a window closes or the scorer exits."""
        if self._closed:
            raise ValueError("the report renderer is closed")
        self._running_stdin()

    def submit(self, json_path: Path) -> bool:
        """Hand ``json_path`` to the renderer; False if it could not be (logged)."""
        if self._closed:
            raise ValueError("the report renderer is closed")
        wire = str(json_path.absolute())
        line = orjson.dumps(wire) + b"\n"
        # Pipe writes up to PIPE_BUF bytes are atomic: all of the line or EAGAIN, never half.
        if len(line) > select.PIPE_BUF:
            logger.warning("report path too long for the renderer; " + _RERENDER_HINT, wire)
            return False
        stdin = self._running_stdin()
        if stdin is None:
            return False
        with self._lock:
            self._pending[wire] = None
        try:
            os.write(stdin.fileno(), line)
        except OSError as exc:  # EAGAIN: 64 KiB of requests unread; EPIPE: the child died
            with self._lock:
                self._pending.pop(wire, None)
            logger.warning("report renderer refused %s (%s); " + _RERENDER_HINT, wire, exc, wire)
            return False
        return True

    def close(self, timeout_s: float = RENDER_WAIT_S) -> list[Path]:
        """Let the child finish what it was given, for at most ``timeout_s``, then stop it.

        Returns:
            The summaries left unrendered (each logged with the command that renders it).
        """
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is None:
            return []
        with contextlib.suppress(OSError):
            _stdin(proc).close()  # end of input: the child renders what it has, then exits
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning(
                "report renderer (pid %d) still busy after %g s: stopped", proc.pid, timeout_s
            )
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout_s)
        return self._forget_pending()

    def _running_stdin(self) -> IO[bytes] | None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return _stdin(proc)
        if proc is not None:
            self._proc = None
            logger.warning("report renderer (pid %d) exited with %s", proc.pid, proc.returncode)
            if self._reader is not None:
                self._reader.join(RENDER_WAIT_S)  # its replies end with the child's stdout
            self._forget_pending()
            if self.starts >= MAX_RENDERER_STARTS:
                logger.error(
                    "report renderer started %d times: no more Markdown or charts from this "
                    "scorer (the JSON summaries are still written; `churnstream report "
                    "--input` renders them)",
                    self.starts,
                )
        if self.starts >= MAX_RENDERER_STARTS:
            return None
        return _stdin(self._start())

    def _start(self) -> subprocess.Popen[bytes]:
        # Its own session: a terminal's Ctrl-C or a signal to the scorer's process group
        # does not cut a render short; the child ends when its input does.
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", RENDER_WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        os.set_blocking(_stdin(proc).fileno(), False)
        self.starts += 1
        self._proc = proc
        self._reader = threading.Thread(
            target=self._read_replies, args=(proc,), name="report-renderer", daemon=True
        )
        self._reader.start()
        logger.info("report renderer started (pid %d)", proc.pid)
        return proc

    def _read_replies(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None  # noqa: S101 - Popen(stdout=PIPE)
        with proc.stdout:
            for line in proc.stdout:
                try:
                    reply = orjson.loads(line)
                except orjson.JSONDecodeError:
                    logger.warning("report renderer: unreadable reply %r", line)
                    continue
                with self._lock:
                    self._pending.pop(reply.get("json"), None)
                _log_reply(reply)

    def _forget_pending(self) -> list[Path]:
        with self._lock:
            left, self._pending = [Path(p) for p in self._pending], {}
        for path in left:
            logger.warning("report %s was not rendered; " + _RERENDER_HINT, path, path)
        return left


def _stdin(proc: subprocess.Popen[bytes]) -> IO[bytes]:
    assert proc.stdin is not None  # noqa: S101 - Popen(stdin=PIPE)
    return proc.stdin


def _log_reply(reply: Mapping[str, Any]) -> None:
    path = reply.get("json")
    if reply.get("error"):
        logger.warning("could not render %s: %s; " + _RERENDER_HINT, path, reply["error"], path)
    elif reply.get("coalesced"):
        logger.info("rendered %s without charts: newer windows were waiting", reply.get("md"))
    else:
        logger.info("rendered %s (+ %d charts)", reply.get("md"), reply.get("charts", 0))


class SummaryWriter:
    """Writes each window summary it is called with into ``reports_dir``; see the module.

    The CLI wires one into the scorer's window hook and calls :meth:`close` after the loop.
    ``paths`` lists the JSON and Markdown paths of every window so far, in order; a
    Markdown file exists once the renderer has written it (after :meth:`close`, unless it
    was logged as not rendered).
    """

    def __init__(self, reports_dir: Path, renderer: ReportRenderer | None = None) -> None:
        self.reports_dir = reports_dir
        self.renderer = renderer if renderer is not None else ReportRenderer()
        self.paths: list[Path] = []

    def __call__(self, summary: Mapping[str, Any]) -> None:
        json_path = write_summary_json(summary, self.reports_dir)
        self.paths.extend([json_path, json_path.with_suffix(".md")])
        self.renderer.submit(json_path)

    def start(self) -> None:
        """Start the renderer ahead of the first window (see :meth:`ReportRenderer.start`)."""
        self.renderer.start()

    def close(self, timeout_s: float = RENDER_WAIT_S) -> list[Path]:
        """Wait (at most ``timeout_s``) for the windows' Markdown and charts; returns the
        summaries left unrendered."""
        return self.renderer.close(timeout_s)

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
