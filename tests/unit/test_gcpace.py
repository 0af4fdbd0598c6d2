"""The collector pacing (hacontrol/gcpace.py), against CPython's real collector.

The claims: with the pacer installed no automatic full collection runs however much the
young generations churn, the young collections still run, a paced collection frees a cycle
that reached the oldest generation, a thawed one frees a cycle that had been frozen, and
uninstall gives the process back exactly as it was. The timer is driven by hand (no sleeps).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hacontrol.gcpace import NO_AUTOMATIC_FULL, GcPacer


class _Node:
    """A GC-tracked object that can sit in a reference cycle and be watched by weakref."""

    def __init__(self) -> None:
        self.other: Any = self


def _cycle_in_oldest_generation() -> weakref.ref[_Node]:
    node = _Node()
    gc.collect(1)  # gens 0 and 1 collected: survivors (node among them) move to the oldest
    assert any(o is node for o in gc.get_objects(generation=2))
    ref = weakref.ref(node)
    del node  # now cyclic garbage that only a full collection can free
    return ref


@pytest.fixture
def collector_state() -> Iterator[None]:
    """Whatever a test does, the next one finds the collector as this one did."""
    threshold = gc.get_threshold()
    frozen = gc.get_freeze_count()
    assert frozen == 0, "some earlier test left objects frozen"
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


class _FullCollections:
    """Counts the full collections CPython runs (gc.callbacks), whoever starts them."""

    def __init__(self) -> None:
        self.full = 0
        self.young = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if info["generation"] == 2:
                self.full += 1
            else:
                self.young += 1

    def __enter__(self) -> _FullCollections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def _churn(until: Callable[[], bool], limit: int) -> int:
    """Allocate container objects that live a while (as in-flight checks do), in rounds of
    10,000, until `until()` or `limit` rounds; returns the rounds run."""
    for rounds in range(1, limit + 1):
        keep = [[i] for i in range(10_000)]
        del keep
        if until():
            return rounds
    return limit


def test_automatic_full_collections_stop_young_ones_go_on(collector_state: None) -> None:
    # Control: the same churn makes CPython run a full collection on its own. If this
    # stops holding, the assertion below would pass for the wrong reason.
    with _FullCollections() as seen:
        needed = _churn(lambda: seen.full > 0, limit=2_000)
    assert seen.full > 0, "the churn never caused an automatic full collection"

    pacer = GcPacer()
    pacer.install(freeze=False)
    assert gc.get_threshold()[2] == NO_AUTOMATIC_FULL
    ref = _cycle_in_oldest_generation()
    with _FullCollections() as seen:
        _churn(lambda: False, limit=3 * needed)
    assert seen.full == 0
    assert seen.young > 0
    assert ref() is not None  # no full collection: the old cycle is still there

    assert pacer.collect() >= 1  # the node (and its __dict__, where not inlined)
    assert ref() is None
    assert pacer.stats.full_collections == 1
    assert pacer.stats.collected >= 1
    pacer.uninstall()


def test_install_freezes_and_uninstall_restores(collector_state: None) -> None:
    before = gc.get_threshold()
    pacer = GcPacer()
    pacer.install()
    assert pacer.installed
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (before[0], before[1], NO_AUTOMATIC_FULL)
    pacer.install()  # twice: still restores the thresholds found the first time
    pacer.uninstall()
    assert not pacer.installed
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_thawed_collection_frees_frozen_garbage_and_refreezes(collector_state: None) -> None:
    node = _Node()
    ref = weakref.ref(node)
    pacer = GcPacer()
    pacer.install()  # freezes node with the rest
    del node
    pacer.collect()
    assert ref() is not None  # frozen objects are not walked by a plain full collection
    frozen = gc.get_freeze_count()
    pacer.collect(thaw=True)
    assert ref() is None
    assert 0 < gc.get_freeze_count() < frozen  # frozen again, less what was freed
    assert pacer.stats.thawed_collections == 1
    pacer.uninstall()


class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Loop:
    """The event loop's timer, run by hand: records call_later, fires on demand."""

    def __init__(self) -> None:
        self.armed: list[tuple[float, Callable[[], None], _Handle]] = []

    def call_later(self, delay: float, callback: Callable[[], None], /) -> _Handle:
        handle = _Handle()
        self.armed.append((delay, callback, handle))
        return handle

    def fire(self) -> None:
        _delay, callback, handle = self.armed[-1]
        assert not handle.cancelled
        callback()


def test_the_timer_collects_every_interval_thawing_every_nth(collector_state: None) -> None:
    seen: list[tuple[float, int, bool]] = []
    ticks = iter(range(1000))
    pacer = GcPacer(
        interval=60.0,
        thaw_every=3,
        on_collect=lambda pause, found, thawed: seen.append((pause, found, thawed)),
        clock=lambda: float(next(ticks)),  # each collection "takes" exactly 1 s
    )
    pacer.install(freeze=False)
    loop = _Loop()
    pacer.start(loop)
    assert [d for d, _c, _h in loop.armed] == [60.0]
    for _ in range(6):
        loop.fire()
    assert [d for d, _c, _h in loop.armed] == [60.0] * 7  # re-armed after every tick
    assert [thawed for _p, _f, thawed in seen] == [False, False, True, False, False, True]
    assert all(pause == 1.0 for pause, _f, _t in seen)
    assert pacer.stats.full_collections == 6
    assert pacer.stats.thawed_collections == 2
    assert pacer.stats.last_pause == pacer.stats.worst_pause == 1.0
    pacer.uninstall()
    assert loop.armed[-1][2].cancelled


def test_a_failing_observer_does_not_end_the_pacing(collector_state: None) -> None:
    def boom(pause: float, found: int, thawed: bool) -> None:
        raise RuntimeError("observer bug")

    pacer = GcPacer(interval=5.0, on_collect=boom)
    loop = _Loop()
    pacer.start(loop)
    loop.fire()
    loop.fire()
    assert len(loop.armed) == 3
    assert pacer.stats.full_collections == 2
    pacer.stop()


@pytest.mark.parametrize(("interval", "thaw_every"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_bad_settings_are_refused(interval: float, thaw_every: int) -> None:
    with pytest.raises(ValueError):
        GcPacer(interval, thaw_every=thaw_every)
