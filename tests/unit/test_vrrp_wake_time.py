"""The adapter's early wake-up that keeps epoll's timer slack out of failovers."""

from __future__ import annotations

import pytest

from vrrp.io import _SLACK, _wake_time


def test_long_waits_wake_early_by_more_than_the_kernel_slack() -> None:
    # Master_Down_Interval at 1 s, priority 100: 3.609375 s. The kernel may add
    # 0.1% of the timeout; we wake 0.2% early, then wait the remainder.
    wake = _wake_time(103.609375, 100.0)
    assert wake == pytest.approx(103.609375 - 3.609375 * _SLACK)
    assert 103.609375 - wake > 3.609375 * 0.001


def test_short_waits_are_armed_for_the_deadline_itself() -> None:
    # 50 ms away: 0.1 ms early would be below _EXACT, so no second stage.
    assert _wake_time(10.05, 10.0) == 10.05
    assert _wake_time(10.0, 10.0) == 10.0
    assert _wake_time(9.0, 10.0) == 9.0  # already due


def test_the_remainder_after_an_early_wake_is_short() -> None:
    deadline, now = 50.0, 10.0
    wake = _wake_time(deadline, now)
    assert deadline - wake == pytest.approx(40.0 * _SLACK)
    # Armed again from the wake-up, the remainder (80 ms) needs no further stage.
    assert _wake_time(deadline, wake) == deadline
