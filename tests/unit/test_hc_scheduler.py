"""Check timing: the warm-up spread, the due-time heap and the lateness histogram."""

from __future__ import annotations

import random

import pytest

from healthcheck.scheduler import DueHeap, Lateness, first_due


def test_warmup_spreads_first_attempts_over_the_interval() -> None:
    rng = random.Random(7)
    now, interval = 1000.0, 1.0
    dues = [first_due(now, interval, None, rng) for _ in range(5000)]
    assert all(now <= d < now + interval for d in dues)
    assert len(set(dues)) > 4900
    # Spread, not bunched: every tenth of the interval gets a fair share (expected 500).
    buckets = [0] * 10
    for d in dues:
        buckets[int((d - now) * 10)] += 1
    assert min(buckets) > 400 and max(buckets) < 600


def test_warmup_is_reproducible_with_a_seed() -> None:
    a = [first_due(0.0, 5.0, None, random.Random(42)) for _ in range(3)]
    b = [first_due(0.0, 5.0, None, random.Random(42)) for _ in range(3)]
    assert a == b


def test_explicit_warmup_bounds_the_spread_and_zero_disables_it() -> None:
    rng = random.Random(1)
    dues = [first_due(10.0, 60.0, 2.0, rng) for _ in range(1000)]
    assert all(10.0 <= d < 12.0 for d in dues)
    assert first_due(10.0, 60.0, 0.0, rng) == 10.0


def test_heap_pops_in_due_order_and_only_what_is_due() -> None:
    heap: DueHeap[str] = DueHeap()
    for key, due in [("c", 3.0), ("a", 1.0), ("d", 4.0), ("b", 2.0)]:
        heap.push(key, due)
    assert heap.next_deadline() == 1.0
    assert list(heap.pop_due(2.5)) == [("a", 1.0), ("b", 2.0)]
    assert len(heap) == 2
    assert heap.next_deadline() == 3.0
    assert list(heap.pop_due(2.9)) == []
    assert list(heap.pop_due(10.0)) == [("c", 3.0), ("d", 4.0)]
    assert heap.next_deadline() is None


def test_equal_due_times_keep_insertion_order() -> None:
    heap: DueHeap[int] = DueHeap()
    for key in (5, 3, 9, 1):
        heap.push(key, 1.0)
    assert [k for k, _ in heap.pop_due(1.0)] == [5, 3, 9, 1]


def test_reschedule_replaces_and_remove_unschedules() -> None:
    heap: DueHeap[str] = DueHeap()
    heap.push("a", 1.0)
    heap.push("b", 2.0)
    heap.push("a", 5.0)  # rescheduled later: its old entry must not fire
    heap.remove("b")
    heap.remove("zzz")  # unknown: no error
    assert "a" in heap and "b" not in heap
    assert heap.due_of("a") == 5.0
    assert heap.next_deadline() == 5.0
    assert list(heap.pop_due(4.0)) == []
    assert list(heap.pop_due(5.0)) == [("a", 5.0)]


def test_rescheduled_earlier_fires_once_at_the_new_time() -> None:
    heap: DueHeap[str] = DueHeap()
    heap.push("a", 3.0)
    heap.push("b", 2.0)
    heap.push("a", 1.0)  # earlier now: its stale entry at 3.0 stays in the heap, unseen
    assert heap.next_deadline() == 1.0
    assert list(heap.pop_due(1.5)) == [("a", 1.0)]
    assert "a" not in heap and heap.due_of("a") is None
    assert list(heap.pop_due(10.0)) == [("b", 2.0)]
    assert heap.next_deadline() is None and len(heap) == 0


def test_consumer_may_stop_early_and_the_rest_stays() -> None:
    heap: DueHeap[int] = DueHeap()
    for i in range(5):
        heap.push(i, float(i))
    it = heap.pop_due(10.0)
    assert next(it) == (0, 0.0)
    assert next(it) == (1, 1.0)
    assert len(heap) == 3
    assert heap.next_deadline() == 2.0


def test_heap_stays_bounded_under_constant_rescheduling() -> None:
    heap: DueHeap[int] = DueHeap()
    rng = random.Random(3)
    for _ in range(20_000):
        heap.push(rng.randrange(100), rng.random())
    assert len(heap) == 100
    assert len(heap._heap) <= 2 * 100 + 65
    popped = list(heap.pop_due(2.0))
    assert len(popped) == 100
    assert [d for _, d in popped] == sorted(d for _, d in popped)


def test_heap_against_a_sorted_model() -> None:
    rng = random.Random(11)
    heap: DueHeap[int] = DueHeap()
    model: dict[int, float] = {}
    now = 0.0
    for _ in range(3000):
        op = rng.random()
        if op < 0.6:
            key, due = rng.randrange(200), now + rng.random() * 5
            heap.push(key, due)
            model[key] = due
        elif op < 0.7:
            key = rng.randrange(200)
            heap.remove(key)
            model.pop(key, None)
        else:
            now += rng.random()
            got = list(heap.pop_due(now))
            want = sorted(((k, d) for k, d in model.items() if d <= now), key=lambda kd: kd[1])
            assert [d for _, d in got] == [d for _, d in want]
            assert {k for k, _ in got} == {k for k, _ in want}
            for k, _ in got:
                del model[k]
        assert len(heap) == len(model)


def test_lateness_quantiles() -> None:
    lat = Lateness(max_ms=100)
    assert lat.quantile(0.99) == 0.0
    for ms in range(100):  # 0.0005, 0.0015, ... : one sample per 1 ms bucket
        lat.record(ms / 1000.0 + 0.0005)
    assert lat.total == 100
    assert lat.quantile(0.5) == pytest.approx(0.050)
    assert lat.quantile(0.99) == pytest.approx(0.099)
    lat.record(5.0)  # beyond max_ms: counted in the last bucket, worst kept exactly
    lat.record(-0.2)  # early (clock granularity): counted as 0
    assert lat.worst == 5.0
    assert lat.quantile(1.0) == pytest.approx(0.101)
    lat.reset()
    assert lat.total == 0 and lat.quantile(0.5) == 0.0


def test_lateness_bucket_edges() -> None:
    lat = Lateness(max_ms=10)
    lat.record(0.0)  # on time: the first bucket
    lat.record(0.0099)  # just under the last bucket
    lat.record(0.010)  # exactly max_ms: the last bucket
    assert lat.counts is not None
    assert (lat.counts[0], lat.counts[9], lat.counts[10], lat.total) == (1, 1, 1, 3)
    assert lat.worst == 0.010
