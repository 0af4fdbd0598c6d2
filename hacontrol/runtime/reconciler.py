"""One level-triggered reconciler for everything kernel-facing the daemon owns.

Each kind of kernel state (the IPVS table, the sync daemon role, the global timeouts, the
IPVS sysctls) has a `Converger`: it knows the desired value, reads the kernel's actual
one and applies the minimal difference. The reconciler runs every converger on an
interval and on demand (`trigger()`: the desired state changed), so nothing is applied
"on transition only" and forgotten: a sync daemon stopped by hand, a timeout changed
with `ipvsadm --set`, a sysctl written by another tool, a real server deleted with
`ipvsadm -d` are all put back by the next pass, and counted as repairs of their kind.

A converger that fails is retried with exponential backoff (from `retry_base` up to
`retry_max`, never later than its regular interval), independently of the other kinds:
a broken sync-daemon interface does not delay the IPVS table. A trigger runs the kinds
it names at once, backoff or not, because the desired state has just changed.

The VIPs of master instances are reconciled by the VRRP engine itself (vrrp/io.py), in
the VRRP process: re-adding a VIP must not wait behind this loop, and only the process
that decides mastership may add or remove them (two writers would race on a
transition). It reports its repairs on the bus (`vrrp.events.VipRepaired`).

`Schedule` is the pure part (who is due when, backoff arithmetic) and is tested with a
float clock; `Reconciler` is the thin asyncio loop around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from hacontrol.runtime.events import ReconcileResult

log = logging.getLogger("hacontrol.reconcile")

DETAIL_LINES = 10  # repairs described per result; the count is always exact


@dataclass(frozen=True, slots=True)
class Convergence:
    """What one converge() did: `repairs` changes applied (with a description of the
    first few), `writes` kernel requests made, or `error` when the pass failed."""

    repairs: int = 0
    writes: int = 0
    detail: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Converger(Protocol):
    """Brings one kind of kernel state to its desired value. Must not raise for kernel
    trouble (return an error instead); a raise is treated as an error all the same."""

    @property
    def kind(self) -> str: ...

    async def converge(self) -> Convergence: ...


class Schedule:
    """When each kind is next due: its interval after a success, backoff after failures."""

    def __init__(
        self,
        kinds: Iterable[str],
        *,
        interval: float,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        now: float = 0.0,
    ) -> None:
        if interval <= 0 or retry_base <= 0 or retry_max < retry_base:
            raise ValueError("interval and retry_base must be > 0, retry_max >= retry_base")
        self.interval = interval
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._due: dict[str, float] = dict.fromkeys(kinds, now)  # everything runs at start
        self._failures: dict[str, int] = dict.fromkeys(self._due, 0)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._due)

    def add(self, kind: str, now: float) -> None:
        self._due.setdefault(kind, now)
        self._failures.setdefault(kind, 0)

    def remove(self, kind: str) -> None:
        self._due.pop(kind, None)
        self._failures.pop(kind, None)

    def failures(self, kind: str) -> int:
        return self._failures[kind]

    def due(self, now: float) -> list[str]:
        return [kind for kind, at in self._due.items() if at <= now]

    def next_deadline(self) -> float | None:
        return min(self._due.values(), default=None)

    def request(self, now: float, kinds: Iterable[str] | None = None) -> None:
        """Make `kinds` (default: all) due now."""
        for kind in self._due if kinds is None else kinds:
            if kind in self._due:
                self._due[kind] = min(self._due[kind], now)

    def record(self, kind: str, ok: bool, now: float) -> float:
        """Note the outcome of a pass of `kind` that ended at `now`; returns the delay to
        its next pass."""
        if ok:
            self._failures[kind] = 0
            delay = self.interval
        else:
            self._failures[kind] += 1
            backoff = self.retry_base * 2 ** min(self._failures[kind] - 1, 30)
            delay = min(backoff, self.retry_max, self.interval)
        self._due[kind] = now + delay
        return delay


class Reconciler:
    """Runs the convergers: at start, every `interval`, on `trigger()`, retrying failures."""

    def __init__(
        self,
        convergers: Sequence[Converger],
        *,
        interval: float = 5.0,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        publish: Callable[[object], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall_clock
        self._convergers = {c.kind: c for c in convergers}
        self.schedule = Schedule(
            self._convergers,
            interval=interval,
            retry_base=retry_base,
            retry_max=retry_max,
            now=clock(),
        )
        self._publish = publish or (lambda event: None)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.last: dict[str, ReconcileResult] = {}

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._convergers)

    def set_interval(self, interval: float) -> None:
        self.schedule.interval = interval
        self._wake.set()

    def add(self, converger: Converger) -> None:
        self._convergers[converger.kind] = converger
        self.schedule.add(converger.kind, self._clock())
        self._wake.set()

    def remove(self, kind: str) -> None:
        self._convergers.pop(kind, None)
        self.schedule.remove(kind)

    def trigger(self, *kinds: str) -> None:
        """The desired state of `kinds` (default: all) changed: converge them now."""
        self.schedule.request(self._clock(), kinds or None)
        self._wake.set()

    async def run_due(self) -> list[ReconcileResult]:
        """One round: every converger that is due now, in registration order."""
        async with self._lock:
            results = []
            for kind in self.schedule.due(self._clock()):
                converger = self._convergers.get(kind)
                if converger is not None:
                    results.append(await self._run_one(converger))
            return results

    async def _run_one(self, converger: Converger) -> ReconcileResult:
        started = self._clock()
        try:
            outcome = await converger.converge()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or unexpected trouble: retried like any failure
            log.exception("reconcile.converger_error kind=%s", converger.kind)
            outcome = Convergence(error=f"{type(exc).__name__}: {exc}")
        finished = self._clock()
        delay = self.schedule.record(converger.kind, outcome.ok, finished)
        result = ReconcileResult(
            kind=converger.kind,
            ok=outcome.ok,
            repairs=outcome.repairs,
            writes=outcome.writes,
            duration=finished - started,
            at=self._wall(),
            detail=outcome.detail[:DETAIL_LINES],
            error=outcome.error,
            next_attempt_in=None if outcome.ok else delay,
        )
        previous = self.last.get(converger.kind)
        self.last[converger.kind] = result
        if outcome.error is not None:
            # Said loudly once; the same failure again (IPVS still missing) at debug level,
            # so a long outage does not bury the log. Status and metrics keep it visible.
            repeat = previous is not None and previous.error == outcome.error
            log.log(
                logging.DEBUG if repeat else logging.WARNING,
                "reconcile.failed kind=%s error=%s retry_in=%.1f",
                converger.kind,
                outcome.error,
                delay,
            )
        elif previous is not None and previous.error is not None:
            log.info("reconcile.recovered kind=%s", converger.kind)
        elif outcome.repairs:
            log.info(
                "reconcile.repaired kind=%s repairs=%d writes=%d detail=%s",
                converger.kind,
                outcome.repairs,
                outcome.writes,
                "; ".join(result.detail),
            )
        self._publish(result)
        return result

    async def run(self) -> None:
        """Round after round until cancelled."""
        while True:
            self._wake.clear()
            await self.run_due()
            deadline = self.schedule.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="reconciler")

    async def stop(self) -> None:
        """Stop reconciling. Kernel state stays as it is: nothing is flushed."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
