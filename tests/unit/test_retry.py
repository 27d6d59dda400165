"""The retry policy: jittered, capped, bounded by a deadline or attempts, cut short by a stop.

Waits are injected (``sleep=``) and recorded, so these tests do not sleep for the delays
they check; the deadline and stop tests sleep for real, for well under a second.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from churnstream.exceptions import AuthenticationError, BrokerUnavailableError
from churnstream.kafka import connect
from churnstream.retry import NotYet, RetryNote, backoff_delay_s, jittered_backoff, retrying
from churnstream.settings import load_settings


class Flaky:
    """Raises ``error`` for the first ``failures`` calls, then returns how many calls it took."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return self.calls


def run_waits(failures: int, first: float, cap: float) -> list[float]:
    """The waits one policy takes before ``failures`` failures are over (none really slept)."""
    waits: list[float] = []
    policy = retrying(
        attempts=failures + 1,
        first_delay_s=first,
        max_delay_s=cap,
        retry_on=ConnectionError,
        sleep=waits.append,
    )
    assert policy.call(Flaky(failures)) == failures + 1
    assert policy.attempts == failures + 1
    return waits


def test_each_wait_lies_between_half_and_all_of_the_capped_exponential_delay() -> None:
    first, cap = 0.5, 8.0
    waits = run_waits(12, first, cap)
    assert len(waits) == 12
    for n, wait in enumerate(waits, start=1):
        nominal = min(cap, first * 2 ** (n - 1))
        assert nominal / 2 <= wait <= nominal, (n, wait)
    assert max(waits) <= cap


def test_two_runs_do_not_wait_in_lockstep() -> None:
    # Two scorers that lost the broker together: their schedules differ from the first retry.
    one, two = run_waits(6, 0.5, 8.0), run_waits(6, 0.5, 8.0)
    assert one != two
    assert all(a != b for a, b in zip(one, two, strict=True))


def test_jitter_stays_once_the_cap_is_reached() -> None:
    waits = run_waits(30, 1.0, 4.0)[5:]  # nominal delay 4.0 from the third wait on
    assert all(2.0 <= w <= 4.0 for w in waits)
    assert len(set(waits)) == len(waits)  # not pinned to the cap


def test_jittered_backoff_alone_is_bounded() -> None:
    wait = jittered_backoff(0.2, 1.0)
    state = type("State", (), {"attempt_number": 1})()
    for attempt in range(1, 40):
        state.attempt_number = attempt
        nominal = min(1.0, 0.2 * 2 ** (attempt - 1))
        assert nominal / 2 <= wait(state) <= nominal  # type: ignore[arg-type]


def test_one_draw_at_a_time_follows_the_same_schedule() -> None:
    # The workers supervisor draws each restart delay on its own, from the same policy.
    for attempt in range(1, 12):
        nominal = min(8.0, 0.5 * 2 ** (attempt - 1))
        draws = [backoff_delay_s(attempt, first_delay_s=0.5, max_delay_s=8.0) for _ in range(20)]
        assert all(nominal / 2 <= d <= nominal for d in draws), (attempt, draws)
        assert len(set(draws)) > 1  # jittered
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay_s(0, first_delay_s=0.5, max_delay_s=8.0)


def test_on_retry_hears_each_failed_attempt_with_the_wait_taken() -> None:
    notes: list[RetryNote] = []
    waits: list[float] = []
    policy = retrying(
        attempts=4,
        first_delay_s=0.1,
        max_delay_s=1.0,
        retry_on=ConnectionError,
        on_retry=notes.append,
        sleep=waits.append,
    )
    assert policy.call(Flaky(3)) == 4
    assert [n.attempt for n in notes] == [1, 2, 3]
    assert [n.delay_s for n in notes] == waits
    assert [str(n.error) for n in notes] == ["failure 1", "failure 2", "failure 3"]


def test_giving_up_on_attempts_raises_the_last_error_itself() -> None:
    flaky = Flaky(10)
    policy = retrying(
        attempts=3, first_delay_s=0.1, max_delay_s=1.0, retry_on=ConnectionError, sleep=[].append
    )
    with pytest.raises(ConnectionError, match="failure 3"):
        policy.call(flaky)
    assert flaky.calls == 3 and policy.attempts == 3


def test_other_errors_are_raised_at_once() -> None:
    flaky = Flaky(1, error=ValueError)
    policy = retrying(
        attempts=5, first_delay_s=0.1, max_delay_s=1.0, retry_on=ConnectionError, sleep=[].append
    )
    with pytest.raises(ValueError, match="failure 1"):
        policy.call(flaky)
    assert flaky.calls == 1


def test_a_predicate_chooses_what_is_retried() -> None:
    flaky = Flaky(2)
    policy = retrying(
        attempts=5,
        first_delay_s=0.1,
        max_delay_s=1.0,
        retry_on=lambda exc: "failure 1" in str(exc),
        sleep=[].append,
    )
    with pytest.raises(ConnectionError, match="failure 2"):
        policy.call(flaky)
    assert flaky.calls == 2


def test_polling_a_condition_with_not_yet() -> None:
    ready_at = 3
    calls = []

    def check() -> str:
        calls.append(1)
        if len(calls) < ready_at:
            raise NotYet("not there yet")
        return "there"

    policy = retrying(
        deadline_s=5, first_delay_s=0.01, max_delay_s=0.1, retry_on=NotYet, sleep=[].append
    )
    assert policy.call(check) == "there" and len(calls) == ready_at


def test_the_last_wait_is_cut_at_the_deadline() -> None:
    # Real sleeping, but short: the final attempt happens at the deadline, not a cap later.
    notes: list[RetryNote] = []
    flaky = Flaky(10**6)
    policy = retrying(
        deadline_s=0.4,
        first_delay_s=0.1,
        max_delay_s=5.0,
        retry_on=ConnectionError,
        on_retry=notes.append,
    )
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        policy.call(flaky)
    took = time.monotonic() - started
    assert 0.4 <= took < 0.7, took
    assert flaky.calls == len(notes) + 1 >= 3
    last = notes[-1]
    assert last.elapsed_s + last.delay_s == pytest.approx(0.4, abs=0.02)


def test_a_stop_ends_the_wait_at_once_without_another_attempt() -> None:
    stop = threading.Event()
    flaky = Flaky(10**6)
    policy = retrying(
        deadline_s=60, first_delay_s=30.0, max_delay_s=30.0, retry_on=ConnectionError, stop=stop
    )
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="failure 1"):
        policy.call(flaky)
    assert time.monotonic() - started < 1.0
    assert flaky.calls == 1


def test_a_policy_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="deadline"):
        retrying(first_delay_s=0.1, max_delay_s=1.0, retry_on=ConnectionError)
    with pytest.raises(ValueError, match="first_delay_s"):
        retrying(attempts=2, first_delay_s=2.0, max_delay_s=1.0, retry_on=ConnectionError)


# --------------------------------------------------------------------------- wait_for_broker


def test_wait_for_broker_logs_each_retry_then_gives_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []

    def unreachable(kafka: object, *, timeout_s: float) -> None:
        calls.append(timeout_s)
        raise BrokerUnavailableError("no broker")

    monkeypatch.setattr(connect, "check_reachable", unreachable)
    monkeypatch.setattr(connect, "FIRST_BACKOFF_S", 0.1)
    kafka = load_settings(**{"kafka.bootstrap_servers": "127.0.0.1:1"}).kafka
    caplog.set_level(logging.INFO, logger="churnstream.kafka.connect")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as raised:
        connect.wait_for_broker(kafka, timeout_s=0.5, what="scorer")
    assert 0.5 <= time.monotonic() - started < 1.0
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"scorer: no Kafka broker answered at 127.0.0.1:1 after {len(calls)} attempt(s) in 0.5s"
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(calls) - 1 >= 2
    first = warnings[0]
    assert first.getMessage().startswith(
        "scorer: broker at 127.0.0.1:1 not reachable (attempt 1); retrying in 0."
    )
    assert first.attempt == 1 and 0.05 <= first.delay_s <= 0.1  # type: ignore[attr-defined]
    assert first.bootstrap_servers == "127.0.0.1:1"  # type: ignore[attr-defined]


def test_wait_for_broker_ends_promptly_on_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def unreachable(kafka: object, *, timeout_s: float) -> None:
        calls.append(timeout_s)
        raise BrokerUnavailableError("no broker")

    monkeypatch.setattr(connect, "check_reachable", unreachable)
    monkeypatch.setattr(connect, "FIRST_BACKOFF_S", 5.0)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="after 1 attempt"):
        connect.wait_for_broker(load_settings().kafka, timeout_s=60, stop=stop)
    assert time.monotonic() - started < 1.0 and len(calls) == 1


def test_wait_for_broker_does_not_retry_a_refused_login(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def refused(kafka: object, *, timeout_s: float) -> None:
        calls.append(timeout_s)
        raise AuthenticationError("login refused")

    monkeypatch.setattr(connect, "check_reachable", refused)
    with pytest.raises(AuthenticationError):
        connect.wait_for_broker(load_settings().kafka, timeout_s=60)
    assert len(calls) == 1
