"""The runtime reconciler: schedule and backoff on a float clock, rounds against fakes.

No sleeps: the clock is a plain float the test moves, and `run_due()` is awaited
directly (the fakes never wait on anything real).
"""

from __future__ import annotations

import pytest

from hacontrol.runtime.events import ReconcileResult
from hacontrol.runtime.reconciler import Convergence, Reconciler, Schedule


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A converger that returns the scripted outcomes in turn (the last one repeats)."""

    def __init__(self, kind: str, *outcomes: Convergence | Exception) -> None:
        self._kind = kind
        self.outcomes = list(outcomes) or [Convergence()]
        self.calls = 0

    @property
    def kind(self) -> str:
        return self._kind

    async def converge(self) -> Convergence:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_schedule_runs_everything_at_start_then_every_interval() -> None:
    s = Schedule(["a", "b"], interval=5.0, now=0.0)
    assert s.due(0.0) == ["a", "b"]
    assert s.record("a", True, 0.5) == 5.0
    assert s.record("b", True, 1.0) == 5.0
    assert s.due(5.4) == []
    assert s.due(5.5) == ["a"]
    assert s.next_deadline() == 5.5


def test_schedule_backoff_doubles_and_is_capped_by_retry_max_and_interval() -> None:
    s = Schedule(["a"], interval=30.0, retry_base=1.0, retry_max=8.0, now=0.0)
    delays = [s.record("a", False, 0.0) for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert s.failures("a") == 6
    assert s.record("a", True, 0.0) == 30.0
    assert s.failures("a") == 0
    assert s.record("a", False, 0.0) == 1.0  # backoff starts over after a success
    short = Schedule(["a"], interval=3.0, retry_base=1.0, retry_max=60.0, now=0.0)
    assert [short.record("a", False, 0.0) for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]


def test_schedule_request_makes_kinds_due_now_even_while_backing_off() -> None:
    s = Schedule(["a", "b"], interval=10.0, retry_base=4.0, retry_max=60.0, now=0.0)
    s.record("a", False, 0.0)  # due at 4
    s.record("b", True, 0.0)  # due at 10
    s.request(1.0, ["a"])
    assert s.due(1.0) == ["a"]
    s.request(2.0)
    assert s.due(2.0) == ["a", "b"]


def test_schedule_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Schedule(["a"], interval=0.0)
    with pytest.raises(ValueError):
        Schedule(["a"], interval=1.0, retry_base=2.0, retry_max=1.0)


async def test_rounds_run_due_kinds_publish_results_and_retry_failures_with_backoff() -> None:
    clock = Clock()
    published: list[object] = []
    good = Scripted("sysctls", Convergence(), Convergence(repairs=1, writes=1, detail=("x=1",)))
    bad = Scripted("sync_daemon", Convergence(error="ENODEV"), Convergence(error="ENODEV"))
    rec = Reconciler(
        [good, bad],
        interval=5.0,
        retry_base=1.0,
        retry_max=60.0,
        publish=published.append,
        clock=clock,
        wall_clock=lambda: 42.0,
    )
    first = await rec.run_due()
    assert [(r.kind, r.ok) for r in first] == [("sysctls", True), ("sync_daemon", False)]
    assert first[1].error == "ENODEV" and first[1].next_attempt_in == 1.0
    assert published == first
    clock.now += 1.0
    assert [r.kind for r in await rec.run_due()] == ["sync_daemon"]  # retried after 1 s
    clock.now += 1.5
    assert await rec.run_due() == []  # second backoff is 2 s
    clock.now += 0.5
    assert [r.kind for r in await rec.run_due()] == ["sync_daemon"]
    clock.now = 1005.0
    results = await rec.run_due()
    assert [r.kind for r in results] == ["sysctls"]
    assert results[0].repairs == 1 and results[0].detail == ("x=1",)
    assert rec.last["sysctls"] is results[0]
    assert all(isinstance(e, ReconcileResult) for e in published)


async def test_a_converger_that_raises_is_a_failure_not_a_crash() -> None:
    clock = Clock()
    boom = Scripted("ipvs_table", RuntimeError("bug"), Convergence())
    rec = Reconciler([boom], interval=5.0, retry_base=2.0, clock=clock)
    (result,) = await rec.run_due()
    assert not result.ok and result.error == "RuntimeError: bug"
    assert result.next_attempt_in == 2.0
    clock.now += 2.0
    (again,) = await rec.run_due()
    assert again.ok


async def test_trigger_runs_named_kinds_at_once() -> None:
    clock = Clock()
    a, b = Scripted("a"), Scripted("b")
    rec = Reconciler([a, b], interval=60.0, clock=clock)
    await rec.run_due()
    assert (a.calls, b.calls) == (1, 1)
    clock.now += 1.0
    assert await rec.run_due() == []
    rec.trigger("b")
    assert [r.kind for r in await rec.run_due()] == ["b"]
    rec.trigger()
    assert [r.kind for r in await rec.run_due()] == ["a", "b"]


async def test_detail_is_truncated_but_the_count_is_exact() -> None:
    many = tuple(f"op {i}" for i in range(100))
    rec = Reconciler([Scripted("t", Convergence(repairs=100, detail=many))], clock=Clock())
    (result,) = await rec.run_due()
    assert result.repairs == 100
    assert len(result.detail) == 10
