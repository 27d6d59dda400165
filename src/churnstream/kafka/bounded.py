"""Blocking client calls with a hard bound, for the ones that do not keep their own timeout.

librdkafka's transactional calls take a timeout, but after a broker crash
``send_offsets_to_transaction`` was seen blocked for minutes past it (its wait is infinite;
the timeout is left to request handlers that do not always answer). A scorer blocked there
holds its partitions without scoring, polling or logging. :class:`BoundedCalls` runs such a
call on a worker thread and stops waiting after a bound: the caller gets
:class:`~churnstream.exceptions.ClientStuckError`, abandons that client (the worker keeps
its reference, so it is not destroyed under the stuck call) and makes a new one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from churnstream.exceptions import ClientStuckError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a wait given a stop event looks at it.
STOP_CHECK_S = 0.2


@dataclass
class _Job(Generic[T]):
    fn: Callable[[], T]
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: BaseException | None = None


class _Worker(threading.Thread):
    """Runs jobs one at a time. A daemon: a job stuck forever never holds the process up."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                job.result = job.fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                job.error = exc
            job.done.set()


class BoundedCalls:
    """Runs calls on one worker thread; the caller waits at most a bound for each."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._worker: _Worker | None = None
        #: Workers left behind in a call that never returned (each holds its client).
        self.abandoned = 0

    def call(
        self,
        fn: Callable[[], T],
        *,
        bound_s: float,
        what: str,
        stop: threading.Event | None = None,
        slow: tuple[float, Callable[[], None]] | None = None,
    ) -> T:
        """``fn()``'s result or exception, or ClientStuckError once ``bound_s`` has passed
        (or ``stop`` is set, if given). ``slow`` is ``(seconds, notice)``: ``notice()`` is
        called once if ``fn`` is still running after that long.

        After a ClientStuckError the stuck worker is left behind and the next call gets a new
        one; whatever ``fn`` was using must not be used again.
        """
        worker = self._worker
        if worker is None or not worker.is_alive():
            worker = self._worker = _Worker(f"{self.name}-calls")
            worker.start()
        job: _Job[T] = _Job(fn)
        worker.jobs.put(job)
        if not _wait(job.done, bound_s, stop, slow):
            worker.jobs.put(None)  # ends that worker if its call ever returns
            self._worker = None
            self.abandoned += 1
            raise ClientStuckError(
                f"{what} did not return within {bound_s:g}s (past its own timeout); "
                "the client is abandoned"
            )
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def close(self) -> None:
        """End the worker (after its current call, if any)."""
        if self._worker is not None:
            self._worker.jobs.put(None)
            self._worker = None


def _wait(
    done: threading.Event,
    bound_s: float,
    stop: threading.Event | None,
    slow: tuple[float, Callable[[], None]] | None,
) -> bool:
    """Whether ``done`` was set within ``bound_s``; False early once ``stop`` is set."""
    if stop is None and slow is None:
        return done.wait(bound_s)
    now = time.monotonic()
    deadline = now + bound_s
    notice_at = now + slow[0] if slow is not None else None
    while True:
        step = deadline - now
        if stop is not None:
            step = min(step, STOP_CHECK_S)
        if notice_at is not None:
            step = min(step, notice_at - now)
        if done.wait(max(0.0, step)):
            return True
        now = time.monotonic()
        if slow is not None and notice_at is not None and now >= notice_at:
            notice_at = None
            slow[1]()
        if now >= deadline or (stop is not None and stop.is_set()):
            return done.is_set()
