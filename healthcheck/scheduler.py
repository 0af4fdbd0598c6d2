"""When checks run: the warm-up spread of first attempts and a heap of due times.

Pure timing, no clock: every call takes `now`. The random source is injected
(`random.Random(seed)` in tests) so the spread is reproducible.

Why spread: thousands of checks configured with the same delay_loop would otherwise all fire in
the same millisecond after start-up (and again every delay_loop), overloading both the checker
and the real servers. keepalived delays each checker's first run by a random time up to
`warmup`, which defaults to delay_loop; we do the same, and because each check then reschedules
itself relative to its own result, the spread persists.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["DueHeap", "Lateness", "first_due"]

K = TypeVar("K", bound=Hashable)


def first_due(now: float, delay_loop: float, warmup: float | None, rng: random.Random) -> float:
    """The first attempt of a check: `now` plus a uniform random delay in [0, warmup),
    warmup defaulting to delay_loop; warmup=0 starts at once (keepalived: "Specify 0 to
    disable")."""
    spread = delay_loop if warmup is None else warmup
    if spread <= 0:
        return now
    return now + rng.random() * spread  # random() is in [0, 1): never reaches now + spread


class DueHeap(Generic[K]):
    """Keys ordered by due time. Rescheduling a key replaces its earlier entry (lazy deletion:
    the stale heap entry is skipped when it surfaces), so push and pop are O(log n)."""

    __slots__ = ("_due", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        # key -> its live heap entry: an entry popped from the heap is live when it IS the
        # one here (an identity test, and one tuple per push rather than two).
        self._due: dict[K, tuple[float, int, K]] = {}
        self._seq = 0  # ties on due time keep insertion order (FIFO), and keys never compare

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def push(self, key: K, due: float) -> None:
        """Schedule `key` at `due`, replacing any earlier schedule of it."""
        self._seq += 1
        entry = (due, self._seq, key)
        self._due[key] = entry
        heapq.heappush(self._heap, entry)
        # Bound the stale entries: rebuild when they outnumber the live ones.
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = list(self._due.values())
            heapq.heapify(self._heap)

    def remove(self, key: K) -> None:
        """Unschedule `key` (no error if it is not scheduled)."""
        self._due.pop(key, None)

    def due_of(self, key: K) -> float | None:
        entry = self._due.get(key)
        return None if entry is None else entry[0]

    def _drop_stale(self) -> None:
        heap = self._heap
        dues = self._due
        while heap and dues.get(heap[0][2]) is not heap[0]:
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        """The earliest due time, or None when nothing is scheduled."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Iterator[tuple[K, float]]:
        """Yield (key, due) for every key due at or before `now`, earliest first, removing
        each from the heap as it is yielded (a consumer may stop early; the rest stay)."""
        heap = self._heap
        dues = self._due
        while heap:
            entry = heap[0]
            due, _seq, key = entry
            if due > now:
                return  # a stale entry up here is left for next_deadline() to drop
            heapq.heappop(heap)
            if dues.get(key) is not entry:
                continue  # rescheduled or removed since: not this entry's turn
            del dues[key]
            yield key, due


@dataclass(slots=True)
class Lateness:
    """A histogram of how late attempts started against their schedule, in 1 ms buckets up
    to `max_ms` (later ones land in the last bucket). Fixed memory whatever the run length."""

    max_ms: int = 10_000
    counts: list[int] | None = None
    total: int = 0
    worst: float = 0.0
    late_seconds: float = 0.0  # the sum of the positive lateness (a histogram's _sum)

    def __post_init__(self) -> None:
        if self.counts is None:
            self.counts = [0] * (self.max_ms + 1)

    def record(self, seconds: float) -> None:
        # Once per attempt: comparisons rather than min()/max() calls, which cost more.
        counts = self.counts
        assert counts is not None
        if seconds > 0.0:
            ms = int(seconds * 1000.0)
            counts[ms if ms < self.max_ms else self.max_ms] += 1
            self.late_seconds += seconds
            if seconds > self.worst:
                self.worst = seconds
        else:
            counts[0] += 1  # early (clock granularity) counts as on time
        self.total += 1

    def quantile(self, q: float) -> float:
        """The q-quantile in seconds (upper edge of its 1 ms bucket); 0.0 with no samples."""
        assert self.counts is not None
        if not self.total:
            return 0.0
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for ms, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return (ms + 1) / 1000.0
        return (self.max_ms + 1) / 1000.0

    def counts_within(self, edges_ms: Sequence[int]) -> list[int]:
        """For each upper edge (ms, ascending), how many attempts started less than that
        late: cumulative histogram buckets, in one pass over the 1 ms buckets. An edge past
        max_ms counts all but the last bucket, whose lateness is only known to be at least
        max_ms."""
        assert self.counts is not None
        counts = self.counts
        cumulative: list[int] = []
        seen = 0
        start = 0
        for edge in edges_ms:
            stop = max(start, min(edge, self.max_ms))
            seen += sum(counts[start:stop])
            cumulative.append(seen)
            start = stop
        return cumulative

    def reset(self) -> None:
        self.counts = [0] * (self.max_ms + 1)
        self.total = 0
        self.worst = 0.0
        self.late_seconds = 0.0
