"""A batch window's idle clock starts at the group's first assignment, not at start-up."""

from __future__ import annotations

from types import SimpleNamespace

from churnstream.streaming.loop import ScorerLoop


def _loop(assigned_at: float | None, connect_timeout_s: float = 60.0) -> SimpleNamespace:
    return SimpleNamespace(
        _assigned_at=assigned_at,
        options=SimpleNamespace(connect_timeout_s=connect_timeout_s),
    )


def test_a_slow_group_join_does_not_count_as_idle() -> None:
    # 30 s of start-up without an assignment: not idle yet (the connect timeout is 60 s)
    assert ScorerLoop._idle_for(_loop(None), now=130.0, last_message=100.0) == 0.0  # type: ignore[arg-type]


def test_without_any_assignment_the_connect_timeout_bounds_the_wait() -> None:
    assert ScorerLoop._idle_for(_loop(None), now=161.0, last_message=100.0) == 61.0  # type: ignore[arg-type]


def test_the_clock_starts_at_the_assignment() -> None:
    # started at 100, assigned at 125: at 128 the window has been idle 3 s, not 28 s
    assert ScorerLoop._idle_for(_loop(125.0), now=128.0, last_message=100.0) == 3.0  # type: ignore[arg-type]
    # a message after the assignment restarts the clock
    assert ScorerLoop._idle_for(_loop(125.0), now=131.0, last_message=130.0) == 1.0  # type: ignore[arg-type]
