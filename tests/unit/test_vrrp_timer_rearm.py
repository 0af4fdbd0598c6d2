"""The engine's per-instance timer: one handle kept while a backup's deadline moves later.

A backup's every advert moves its Master_Down_Timer later (RFC 5798 §6.4.2 (460)). The
engine keeps the handle armed for the earlier deadline and, when it fires early, waits
again for the deadline as it now stands; the state machine must still be called at its
deadline and never before it. A fake event loop (time injected, no sleeps) runs the
handles in time order.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from vrrp.io import _EXACT, VrrpEngine, _Runner
from vrrp.types import State


class _Handle:
    def __init__(self, when: float) -> None:
        self.when = when
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """`time()` and `call_at()`, with handles run in order by `run_until()`."""

    def __init__(self) -> None:
        self.now = 0.0
        self.armed = 0  # call_at calls
        self._heap: list[tuple[float, int, _Handle, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> _Handle:
        self.armed += 1
        handle = _Handle(when)
        heapq.heappush(self._heap, (when, next(self._seq), handle, callback, args))
        return handle

    def pending(self) -> int:
        return sum(1 for entry in self._heap if not entry[2].cancelled)

    def run_until(self, t: float) -> None:
        for _ in range(10_000):
            if not self._heap or self._heap[0][0] > t:
                break
            when, _, handle, callback, args = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            callback(*args)
        self.now = max(self.now, t)


@dataclass
class FakeFsm:
    """A backup's Master_Down_Timer and nothing else: records when it is fired."""

    deadline: float | None = None
    fired: list[float] = field(default_factory=list)
    state: State = State.BACKUP  # a master's timer wakes at its deadline (no early wake)

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> list[Any]:
        if self.deadline is not None and now >= self.deadline:
            self.fired.append(now)
            self.deadline = None
        return []


@dataclass
class FakeRunner:
    fsm: FakeFsm
    name: str = "VI_1"
    timer: Any = None
    deadline: float | None = None
    wake: float = 0.0
    retired: bool = False
    group: str | None = None


def setup() -> tuple[VrrpEngine, FakeLoop, FakeRunner]:
    loop = FakeLoop()
    engine = VrrpEngine(loop=cast(Any, loop))
    return engine, loop, FakeRunner(FakeFsm())


def test_a_deadline_that_moves_later_keeps_the_handle_and_fires_at_the_last_deadline() -> None:
    engine, loop, runner = setup()
    interval, down = 1.0, 3.609375  # advert_int 1 s, Master_Down_Interval at priority 100
    adverts = 30
    for n in range(adverts):
        loop.run_until(n * interval)
        runner.fsm.deadline = loop.now + down  # (460): reset on every advert
        engine._arm(cast(_Runner, runner))
        assert loop.pending() == 1
    last = (adverts - 1) * interval + down
    loop.run_until(last + 1.0)
    # Fired once, at the deadline the last advert set: not before it, not late.
    assert runner.fsm.fired == [last]
    # Re-armed when the old handle came due (about every Master_Down_Interval), plus the
    # short exact wait of each early wake-up: far fewer handles than adverts.
    assert loop.armed < adverts / 2


def test_never_fires_before_the_deadline_it_moved_to() -> None:
    engine, loop, runner = setup()
    runner.fsm.deadline = 3.0
    engine._arm(cast(_Runner, runner))
    loop.run_until(2.9)
    runner.fsm.deadline = 5.0  # an advert at 2.9 moved it
    engine._arm(cast(_Runner, runner))
    loop.run_until(4.99)
    assert runner.fsm.fired == []
    loop.run_until(5.0 + _EXACT)
    assert runner.fsm.fired == [5.0]


def test_a_deadline_that_moves_earlier_replaces_the_handle() -> None:
    engine, loop, runner = setup()
    runner.fsm.deadline = 3.609375
    engine._arm(cast(_Runner, runner))
    runner.fsm.deadline = 0.5  # e.g. a priority-0 advert: Skew_Time only
    engine._arm(cast(_Runner, runner))
    assert loop.pending() == 1
    loop.run_until(10.0)
    assert runner.fsm.fired == [0.5]


def test_no_deadline_cancels_the_handle() -> None:
    engine, loop, runner = setup()
    runner.fsm.deadline = 3.0
    engine._arm(cast(_Runner, runner))
    runner.fsm.deadline = None
    engine._arm(cast(_Runner, runner))
    assert loop.pending() == 0
    loop.run_until(10.0)
    assert runner.fsm.fired == []


def masters(engine: VrrpEngine, count: int, deadline: float) -> list[FakeRunner]:
    runners = [
        FakeRunner(FakeFsm(deadline, state=State.MASTER), name=f"VI_{n}") for n in range(count)
    ]
    for runner in runners:
        engine._arm(cast(_Runner, runner))
    return runners


def test_masters_due_at_the_same_instant_share_one_handle() -> None:
    """A master's adverts of one interval fall due on the same float (advert_due_after):
    one heap entry and one callback for all of them, and each fsm still fires once."""
    engine, loop, _ = setup()
    runners = masters(engine, 1000, 2.0)
    assert loop.armed == 1 and loop.pending() == 1
    loop.run_until(1.999)
    assert all(r.fsm.fired == [] for r in runners)
    loop.run_until(2.0)
    assert [r.fsm.fired for r in runners] == [[2.0]] * 1000
    assert engine._wake_groups == {}


def test_an_instance_that_leaves_its_group_is_not_woken_by_it() -> None:
    engine, loop, _ = setup()
    a, b, c = masters(engine, 3, 2.0)
    b.fsm.deadline = None  # e.g. stopped
    engine._arm(cast(_Runner, b))
    c.fsm.deadline = 1.5  # moved earlier: a group of its own
    engine._arm(cast(_Runner, c))
    loop.run_until(3.0)
    assert (a.fsm.fired, b.fsm.fired, c.fsm.fired) == ([2.0], [], [1.5])
    # Its group's handle was already in the heap: a wake-up is never run twice.
    assert loop.pending() == 0


def test_the_handle_goes_when_its_last_instance_leaves() -> None:
    engine, loop, _ = setup()
    runners = masters(engine, 2, 2.0)
    for runner in runners:
        runner.fsm.deadline = None
        engine._arm(cast(_Runner, runner))
    assert loop.pending() == 0
    assert engine._wake_groups == {}
    # Armed again for the same instant: a new group, a new handle, and it fires.
    for runner in runners:
        runner.fsm.deadline = 2.0
        engine._arm(cast(_Runner, runner))
    assert loop.pending() == 1
    loop.run_until(2.0)
    assert [r.fsm.fired for r in runners] == [[2.0], [2.0]]
