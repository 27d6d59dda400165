"""The project's one retry policy: jittered exponential backoff, capped, within a deadline.

Every loop that asks a broker again after a failure goes through :func:`retrying`, built on
tenacity. Each wait is drawn at random between half and all of the nominal delay
``min(max_delay_s, first_delay_s * 2 ** (n - 1))`` ("equal jitter"), so a fleet of scorers
that lost its broker at the same moment does not come back in lockstep: they drift apart from
the first retry on, and stay apart once the delay reaches its cap. The last wait is cut short
at the deadline, so the final attempt happens on time.

A stop event (set by SIGINT/SIGTERM) ends a wait at once; the last error is then raised
without another attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import tenacity
from tenacity import RetryCallState
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

P = ParamSpec("P")
T = TypeVar("T")

#: Which failures are worth another attempt: exception types, or a predicate on the error.
RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


@dataclass(frozen=True)
class RetryNote:
    """What an ``on_retry`` hook is told before each wait."""

    #: The attempt that just failed (1 for the first).
    attempt: int
    #: How long the wait before the next attempt is, in seconds.
    delay_s: float
    #: Seconds since the first attempt started.
    elapsed_s: float
    error: BaseException


class NotYet(Exception):  # noqa: N818 - a state, not a failure
    """Raised by a check whose condition does not hold yet; retry on it to poll.

    Its message says what is still missing, for the error raised on giving up.
    """


class _Stopped(Exception):
    """Raised out of a wait that the stop event cut short."""


class _UntilDeadline(wait_base):
    """Cut ``inner``'s wait so that the next attempt is not later than the deadline."""

    def __init__(self, inner: wait_base, deadline_s: float | None) -> None:
        self.inner = inner
        self.deadline_s = deadline_s

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = float(self.inner(retry_state))
        if self.deadline_s is None:
            return delay
        elapsed = retry_state.seconds_since_start or 0.0
        return max(0.0, min(delay, self.deadline_s - elapsed))


def jittered_backoff(first_delay_s: float, max_delay_s: float) -> wait_base:
    """Equal jitter from tenacity's parts: a fixed half of the nominal delay plus a random half.

    The n-th wait lies in ``[d / 2, d]`` with ``d = min(max_delay_s, first_delay_s * 2**(n-1))``.
    """
    half, half_cap = first_delay_s / 2, max_delay_s / 2
    return wait_exponential(multiplier=half, max=half_cap) + wait_random_exponential(
        multiplier=half, max=half_cap
    )


@dataclass(eq=False, kw_only=True)
class Retrier:
    """One configured retry policy; :meth:`call` runs a function under it.

    Build it with :func:`retrying`, which says what the bounds mean. Not shared between
    threads: :attr:`attempts` describes the latest call.
    """

    first_delay_s: float
    max_delay_s: float
    retry_on: RetryOn
    deadline_s: float | None = None
    max_attempts: int | None = None
    stop_event: threading.Event | None = None
    on_retry: Callable[[RetryNote], None] | None = None
    sleep: Callable[[float], object] | None = None
    #: Attempts made by the latest :meth:`call`.
    attempts: int = field(default=0, init=False)
    _last_error: BaseException | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.deadline_s is None and self.max_attempts is None and self.stop_event is None:
            raise ValueError("a retry policy needs a deadline, an attempt limit or a stop event")
        if self.first_delay_s < 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError("need 0 <= first_delay_s <= max_delay_s")

    def _retry_condition(self) -> tenacity.retry_base:
        if isinstance(self.retry_on, type | tuple):
            return tenacity.retry_if_exception_type(self.retry_on)
        return tenacity.retry_if_exception(self.retry_on)

    def _stop_condition(self) -> tenacity.stop.stop_base:
        conditions: list[tenacity.stop.stop_base] = []
        if self.deadline_s is not None:
            conditions.append(tenacity.stop_after_delay(self.deadline_s))
        if self.max_attempts is not None:
            conditions.append(tenacity.stop_after_attempt(self.max_attempts))
        if self.stop_event is not None:
            conditions.append(tenacity.stop_when_event_set(self.stop_event))
        return tenacity.stop_any(*conditions)

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self._last_error = error
        if self.on_retry is not None and error is not None:
            self.on_retry(
                RetryNote(
                    attempt=state.attempt_number,
                    delay_s=state.upcoming_sleep,
                    elapsed_s=state.seconds_since_start or 0.0,
                    error=error,
                )
            )

    def _wait(self, delay_s: float) -> None:
        sleep = self.sleep or (self.stop_event.wait if self.stop_event else time.sleep)
        sleep(delay_s)
        if self.stop_event is not None and self.stop_event.is_set():
            raise _Stopped

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, asked again on retryable errors until the policy gives up.

        Giving up (deadline, attempt limit, or stop event) raises the last error itself.
        Errors that ``retry_on`` does not match are raised at once.
        """
        self.attempts = 0
        self._last_error = None

        def attempt() -> T:
            self.attempts += 1
            return fn(*args, **kwargs)

        retrying = tenacity.Retrying(
            sleep=self._wait,
            stop=self._stop_condition(),
            wait=_UntilDeadline(
                jittered_backoff(self.first_delay_s, self.max_delay_s), self.deadline_s
            ),
            retry=self._retry_condition(),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Stopped:
            if self._last_error is None:  # a wait always follows a failed attempt
                raise
            raise self._last_error from None


def retrying(
    *,
    first_delay_s: float,
    max_delay_s: float,
    retry_on: RetryOn,
    deadline_s: float | None = None,
    attempts: int | None = None,
    stop: threading.Event | None = None,
    on_retry: Callable[[RetryNote], None] | None = None,
    sleep: Callable[[float], object] | None = None,
) -> Retrier:
    """The project's retry policy with these bounds.

    ``deadline_s`` counts from the first attempt; no attempt starts after it. ``attempts``
    limits the number of calls. ``stop`` ends a wait at once and gives up. ``on_retry`` is
    called once per failed attempt that will be retried, with the next delay: log there.
    ``sleep`` replaces the wait (tests); by default it is ``stop.wait`` or ``time.sleep``.
    """
    return Retrier(
        first_delay_s=first_delay_s,
        max_delay_s=max_delay_s,
        retry_on=retry_on,
        deadline_s=deadline_s,
        max_attempts=attempts,
        stop_event=stop,
        on_retry=on_retry,
        sleep=sleep,
    )


def backoff_delay_s(attempt: int, *, first_delay_s: float, max_delay_s: float) -> float:
    """The wait after the ``attempt``-th failure in a row under this policy (1 for the first).

    For loops that cannot be wrapped in :meth:`Retrier.call`, such as a supervisor that
    restarts several processes independently: the same jittered backoff, one draw at a time.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    state = RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return float(jittered_backoff(first_delay_s, max_delay_s)(state))
