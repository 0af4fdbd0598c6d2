"""Full garbage collections on the daemon's schedule instead of the allocator's.

Why: CPython starts a full collection whenever a quarter more objects have reached its
oldest generation since the last one. Under health-check load that is often: at 5,000 checks
a second every health state, worker task and in-flight future lives about a second, long
enough to be promoted, so a full collection ran every ~2 s and stopped the event loop for
10-20 ms each time, delaying every check due meanwhile (the p99 lateness figure) and every
VRRP timer. Measured on that load, those full collections freed nothing: the cycles the
daemon makes die young and the young collections free them.

So the daemon (1) freezes what exists once it has started (config, check specs, tables:
they live as long as the process and need never be walked), (2) turns the automatic full
collection off, leaving the young generations exactly as CPython runs them, and (3) runs a
full collection itself every `interval` seconds from a loop timer. Cyclic garbage that does
reach the oldest generation waits at most `interval`: memory stays bounded, the pause comes
once a minute rather than every two seconds. Every `thaw_every`-th paced collection, and
after a reload, also takes in what was frozen (gc.unfreeze, collect, freeze again), so
objects frozen at start-up that later become garbage (an old config's, a removed real
server's) are freed too rather than kept for the life of the process.

Written against CPython 3.11 (Debian 12), whose collector is generational with three
generations. Should a later CPython collect its old objects another way and ignore the
threshold, the paced collections only add a full collection a minute.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["NO_AUTOMATIC_FULL", "GcPacer", "GcStats"]

log = logging.getLogger("hacontrol.gc")

NO_AUTOMATIC_FULL = 1 << 30
"""threshold2 for gc.set_threshold: a full collection would need this many young-generation
collections in a row first, i.e. never within the life of a daemon."""


class _Handle(Protocol):
    def cancel(self) -> None: ...


class _Timers(Protocol):
    """What the pacer needs of an event loop."""

    def call_later(self, delay: float, callback: Callable[[], None], /) -> _Handle: ...


@dataclass(slots=True)
class GcStats:
    full_collections: int = 0  # paced full collections (including thawed ones)
    thawed_collections: int = 0  # of which also walked the frozen objects
    collected: int = 0  # unreachable objects they found
    last_pause: float = 0.0  # seconds the last one held the loop
    worst_pause: float = 0.0


class GcPacer:
    """Owns the collector's settings while installed; `start()` runs the paced collections."""

    def __init__(
        self,
        interval: float = 60.0,
        *,
        thaw_every: int = 60,
        on_collect: Callable[[float, int, bool], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        if thaw_every < 1:
            raise ValueError("thaw_every must be >= 1")
        self.interval = interval
        self.thaw_every = thaw_every
        self._on_collect = on_collect
        self._clock = clock
        self._saved_threshold: tuple[int, int, int] | None = None
        self._timer: _Handle | None = None
        self._loop: _Timers | None = None
        self.stats = GcStats()

    @property
    def installed(self) -> bool:
        return self._saved_threshold is not None

    def install(self, *, freeze: bool = True) -> None:
        """Freeze what exists now (unless `freeze` is False) and turn automatic full
        collections off. The young generations keep their thresholds."""
        if self._saved_threshold is None:
            self._saved_threshold = gc.get_threshold()
        young0, young1, _full = self._saved_threshold
        gc.set_threshold(young0, young1, NO_AUTOMATIC_FULL)
        if freeze:
            gc.freeze()

    def uninstall(self) -> None:
        """Stop the timer, give back the thresholds found at install(), unfreeze."""
        self.stop()
        if self._saved_threshold is not None:
            gc.set_threshold(*self._saved_threshold)
            self._saved_threshold = None
            gc.unfreeze()

    def start(self, loop: _Timers) -> None:
        """Run a full collection every `interval` seconds on `loop`."""
        self._loop = loop
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._loop = None

    def collect(self, *, thaw: bool = False) -> int:
        """One full collection now; with `thaw`, of the frozen objects too (then frozen
        again, without what it freed). Returns the number of unreachable objects found."""
        started = self._clock()
        if thaw:
            gc.unfreeze()
        found = gc.collect()
        if thaw and self.installed:
            gc.freeze()
        pause = self._clock() - started
        stats = self.stats
        stats.full_collections += 1
        stats.thawed_collections += 1 if thaw else 0
        stats.collected += found
        stats.last_pause = pause
        if pause > stats.worst_pause:
            stats.worst_pause = pause
        if self._on_collect is not None:
            self._on_collect(pause, found, thaw)
        return found

    def _arm(self) -> None:
        if self._loop is not None:
            self._timer = self._loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            # Counted from the first paced collection: the thawed one comes last in each run
            # of thaw_every, an hour apart at the defaults.
            self.collect(thaw=(self.stats.full_collections + 1) % self.thaw_every == 0)
        except Exception:
            # A failing observer must not end the pacing (and with it, all full collections).
            log.exception("gc.collect_error")
        finally:
            self._arm()
