"""The adapter's early wake-up that keeps epoll's timer slack out of failovers."""

from __future__ import annotations

from vrrp.io import _MAX_EARLY_GRID, _SLACK, _wake_time


def test_long_waits_wake_early_by_more_than_the_kernel_slack() -> None:
    # Master_Down_Interval at 1 s, priority 100: 3.609375 s. The kernel may add
    # 0.1% of the timeout; we wake 0.2% early (or a little more: on the grid), then wait
    # the remainder.
    wake = _wake_time(103.609375, 100.0)
    assert 103.609375 - wake >= 3.609375 * _SLACK
    assert 103.609375 - wake <= 3.609375 * _SLACK + _MAX_EARLY_GRID
    assert _wake_time(103.609375, wake) == 103.609375  # no third stage


def test_early_wake_ups_of_deadlines_close_together_coincide() -> None:
    # A master's Adver_Timers at 1 s, at phases 1 ms apart: they wake early together and
    # then each waits its own remainder, timed exactly.
    now = 1000.0
    deadlines = [now + 1.0 + i * 0.001 for i in range(20)]
    wakes = {_wake_time(d, now) for d in deadlines}
    assert len(wakes) <= 2
    for d in deadlines:
        wake = _wake_time(d, now)
        assert now < wake <= d - 1.0 * _SLACK
        assert _wake_time(d, wake) == d


def test_short_waits_are_armed_for_the_deadline_itself() -> None:
    # 50 ms away: 0.1 ms early would be below _EXACT, so no second stage.
    assert _wake_time(10.05, 10.0) == 10.05
    assert _wake_time(10.0, 10.0) == 10.0
    assert _wake_time(9.0, 10.0) == 9.0  # already due


def test_the_remainder_after_an_early_wake_is_short() -> None:
    for deadline, now in ((50.0, 10.0), (11.5, 10.0), (10.15, 10.0), (151.0, 10.0)):
        wake = _wake_time(deadline, now)
        assert now < wake <= deadline - (deadline - now) * _SLACK
        # Armed again from the wake-up, the remainder needs no further stage (a wait of
        # over 50 s excepted: its 0.2% alone is over 100 ms).
        if deadline - now <= 50.0:
            assert _wake_time(deadline, wake) == deadline
