"""``consume --workers N``: N scorer processes under one supervisor, restarted when they die.

Like any process supervisor: a worker that exits non-zero or is killed by a signal while the
supervisor is not stopping is started again with the same command line (so the same worker
index and, with ``--exactly-once``, the same transactional id, which fences the dead
worker's open transaction), after a jittered exponential backoff from the project's retry
policy (:func:`churnstream.retry.backoff_delay_s`). A worker that exits 0 (batch mode: its
input is done) stays stopped. A worker that crashes more than ``restart_limit`` times within
``restart_window_s``, or exits 2 (its command line or configuration was refused; a restart
cannot help), makes the supervisor stop the others and give up with one line.

On Linux each worker is SIGKILLed by the kernel when the supervisor dies (prctl
``PR_SET_PDEATHSIG``), so a supervisor that is itself SIGKILLed leaves no orphans holding
partitions: the scorer is crash-safe, and the next scorer resumes from the committed
offsets. SIGINT/SIGTERM are forwarded to every worker (each drains, flushes and commits) and
pending restarts are cancelled. Workers still running ``stop_grace_s`` after the first signal (stuck
in a client call) are SIGKILLed, and the exit status says so. Workers run in their own
sessions, so a terminal's Ctrl-C reaches them once, through here; a second signal is
forwarded too (a scorer logs it once and finishes its bounded drain).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from churnstream.exceptions import ChurnstreamError
from churnstream.logging import ATTEMPT, DELAY_S
from churnstream.retry import backoff_delay_s

logger = logging.getLogger(__name__)

#: How often the supervisor looks at its workers (exits, due restarts, signals).
POLL_INTERVAL_S = 0.1
FIRST_RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
#: More crashes of one worker than this within RESTART_WINDOW_S: give up.
RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0
#: After SIGTERM a scorer drains its batch and commits within seconds; one stuck in a client
#: call (a flush or a transaction commit, bounded by 30 s timeouts) is SIGKILLed after this.
STOP_GRACE_S = 20.0
#: How long to wait for a SIGKILLed worker to be reaped.
KILL_WAIT_S = 5.0
#: Exit codes a restart cannot fix: 2 is a refused command line or configuration.
PERMANENT_EXIT_CODES = frozenset({2})
#: <linux/prctl.h>: the signal the kernel sends a process when its parent thread dies.
PR_SET_PDEATHSIG = 1


class WorkersGaveUpError(ChurnstreamError):
    """A worker kept crashing (or cannot run at all): the supervisor stopped every worker."""


@dataclass(frozen=True)
class RestartPolicy:
    """When and how often the supervisor restarts a dead worker, and how long it waits on stop."""

    first_delay_s: float = FIRST_RESTART_DELAY_S
    max_delay_s: float = MAX_RESTART_DELAY_S
    restart_limit: int = RESTART_LIMIT
    restart_window_s: float = RESTART_WINDOW_S
    stop_grace_s: float = STOP_GRACE_S

    def delay_s(self, crashes: int) -> float:
        """The wait before the restart that follows the ``crashes``-th recent crash."""
        return backoff_delay_s(
            crashes, first_delay_s=self.first_delay_s, max_delay_s=self.max_delay_s
        )


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die (SIGKILL) with this process; None off Linux.

    The kernel signals the child when the *thread* that started it ends, so workers are
    started from the thread that supervises them until they have exited. libc is looked up
    here, in the parent: the child runs only the prctl call and a parent check between fork
    and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl: nobody would signal
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def describe_exit(returncode: int) -> str:
    """``exit code 1`` or ``signal SIGKILL`` (Popen's negative return codes)."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
        return f"signal {-returncode}"
    return f"exit code {returncode}"


def exit_status(returncode: int) -> int:
    """A worker's outcome as a shell would report it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class _Worker:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    #: Monotonic times of this worker's recent crashes (within the restart window).
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    #: The last run's Popen return code (negative: killed by that signal).
    returncode: int | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.returncode is None


@dataclass(frozen=True)
class WorkersResult:
    """How a supervised run ended."""

    #: Each worker's last return code (Popen's: -N when killed by signal N).
    returncodes: list[int]
    restarts: int
    #: Indexes of the workers SIGKILLed because they outlived the stop grace period.
    killed: list[int]
    #: The stop signals forwarded to the workers. One that ended a worker outright (a worker
    #: still starting, before it handles them) stopped that worker as asked: not a failure.
    stop_signals: frozenset[int] = frozenset()

    @property
    def exit_code(self) -> int:
        """The worst outcome: the largest exit status, non-zero if any worker was killed."""
        return max(
            (0 if -code in self.stop_signals else exit_status(code) for code in self.returncodes),
            default=0,
        )

    def line(self) -> str:
        text = f"workers: {len(self.returncodes)}, exit codes {self.returncodes}"
        if self.restarts:
            text += f", {self.restarts} restart(s)"
        if self.killed:
            text += f", SIGKILLed after the stop grace period: workers {self.killed}"
        return text


class WorkerSupervisor:
    """Runs one process per command until all exit 0 or a stop signal ends them.

    Signals are handled only when :meth:`run` is called on the main thread; :meth:`stop`
    asks for the same shutdown from anywhere.
    """

    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        policy: RestartPolicy | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self._workers = [_Worker(i, list(argv)) for i, argv in enumerate(commands)]
        #: Stop signals received, in order; the loop forwards the ones it has not yet. Only
        #: appended to from the signal handler: a lock taken there could deadlock the loop.
        self._signals: list[int] = []
        self._forwarded = 0
        self._stop_deadline: float | None = None
        self._restarts = 0

    # -- public -----------------------------------------------------------------------------
    @property
    def pids(self) -> dict[int, int]:
        """Worker index -> pid, for the workers running now."""
        return {w.index: w.proc.pid for w in self._workers if w.running and w.proc is not None}

    @property
    def restarts(self) -> int:
        return self._restarts

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask for shutdown as if ``signum`` had been received (thread-safe)."""
        self._signals.append(signum)

    def run(self) -> WorkersResult:
        """Start every worker and supervise them until they are all done.

        Raises:
            WorkersGaveUpError: a worker crashed too often, or with a permanent exit code;
                the other workers were stopped first.
        """
        killed: list[int] = []
        gave_up: str | None = None
        with self._signal_handlers():
            try:
                for worker in self._workers:
                    self._start(worker)
                logger.info(
                    "supervising %d scorer workers (pids %s)",
                    len(self._workers),
                    ", ".join(str(pid) for pid in self.pids.values()),
                )
                gave_up = self._supervise()
            finally:
                killed = self._shut_down()
        if gave_up is not None:
            raise WorkersGaveUpError(gave_up)
        return WorkersResult(
            returncodes=[w.returncode if w.returncode is not None else 0 for w in self._workers],
            restarts=self._restarts,
            killed=killed,
            stop_signals=frozenset(self._signals),
        )

    # -- the loop ---------------------------------------------------------------------------
    def _supervise(self) -> str | None:
        """Reap, restart and forward signals until done; why it gave up, if it did."""
        while True:
            self._forward_signals()
            now = time.monotonic()
            for worker in self._workers:
                if worker.running and worker.proc is not None:
                    code = worker.proc.poll()
                    if code is not None:
                        worker.returncode = code
                        reason = self._on_exit(worker, code, now)
                        if reason is not None:
                            return reason
            if self._signals:
                return None  # stopping: _shut_down waits for the rest
            for worker in self._workers:
                if worker.restart_at is not None and now >= worker.restart_at:
                    self._start(worker)
                    self._restarts += 1
                    logger.info("worker %d restarted (pid %d)", worker.index, self._pid(worker))
            if not any(w.running or w.restart_at is not None for w in self._workers):
                return None
            time.sleep(POLL_INTERVAL_S)

    def _on_exit(self, worker: _Worker, code: int, now: float) -> str | None:
        """Decide about a worker that just exited: leave it, restart it later, or give up."""
        if code == 0 or self._signals:
            logger.info("worker %d exited (%s)", worker.index, describe_exit(code))
            return None
        if code in PERMANENT_EXIT_CODES:
            return (
                f"worker {worker.index} exited with {describe_exit(code)} (its command line or "
                "configuration was refused); not restarting, stopped the other workers"
            )
        policy = self.policy
        while worker.crashes and now - worker.crashes[0] > policy.restart_window_s:
            worker.crashes.popleft()
        worker.crashes.append(now)
        crashes = len(worker.crashes)
        if crashes > policy.restart_limit:
            return (
                f"worker {worker.index} died {crashes} times within "
                f"{policy.restart_window_s:g} s (last: {describe_exit(code)}); giving up, "
                "stopped the other workers"
            )
        delay = policy.delay_s(crashes)
        worker.restart_at = now + delay
        logger.warning(
            "worker %d (pid %d) died with %s; restarting in %.1f s (crash %d of %d allowed "
            "within %g s)",
            worker.index,
            self._pid(worker),
            describe_exit(code),
            delay,
            crashes,
            policy.restart_limit,
            policy.restart_window_s,
            extra={ATTEMPT: crashes, DELAY_S: round(delay, 3)},
        )
        return None

    def _start(self, worker: _Worker) -> None:
        # Own session: a terminal's Ctrl-C reaches the worker once, through the supervisor.
        worker.proc = subprocess.Popen(  # noqa: S603
            worker.argv, start_new_session=True, preexec_fn=die_with_parent()
        )
        worker.returncode = None
        worker.restart_at = None

    def _forward_signals(self) -> None:
        while self._forwarded < len(self._signals):
            signum = self._signals[self._forwarded]
            self._forwarded += 1
            running = [w for w in self._workers if w.running]
            if self._stop_deadline is None:  # the first signal from outside
                self._stop_deadline = time.monotonic() + self.policy.stop_grace_s
                logger.warning(
                    "%s received: stopping %d worker(s); SIGKILL after %g s",
                    signal.Signals(signum).name,
                    len(running),
                    self.policy.stop_grace_s,
                )
            for worker in self._workers:
                worker.restart_at = None
            for worker in running:
                if worker.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.send_signal(signum)

    def _shut_down(self) -> list[int]:
        """Wait out the grace period for running workers, then SIGKILL the stragglers."""
        if not self._signals and any(w.running for w in self._workers):
            # Giving up, or an error above: stop the others, never orphan a worker.
            self._stop_deadline = time.monotonic() + self.policy.stop_grace_s
            self.stop()
        self._forward_signals()
        while any(w.running for w in self._workers):
            self._forward_signals()
            for worker in self._workers:
                if worker.running and worker.proc is not None:
                    code = worker.proc.poll()
                    if code is not None:
                        worker.returncode = code
                        logger.info("worker %d exited (%s)", worker.index, describe_exit(code))
            if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                break
            time.sleep(POLL_INTERVAL_S)
        killed = []
        for worker in self._workers:
            if worker.running and worker.proc is not None:
                logger.error(
                    "worker %d (pid %d) still running %g s after the stop signal: SIGKILL",
                    worker.index,
                    worker.proc.pid,
                    self.policy.stop_grace_s,
                )
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                try:
                    worker.returncode = worker.proc.wait(KILL_WAIT_S)
                except subprocess.TimeoutExpired:
                    worker.returncode = -signal.SIGKILL
                killed.append(worker.index)
        return killed

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be handled on the main thread
            return

        def handler(signum: int, _frame: object) -> None:
            self.stop(signum)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    @staticmethod
    def _pid(worker: _Worker) -> int:
        return worker.proc.pid if worker.proc is not None else -1
