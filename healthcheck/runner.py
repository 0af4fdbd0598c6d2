"""The asyncio adapter that runs health checks on time and feeds their results to the reducer.

One dispatcher task sleeps until the earliest due check (a `DueHeap`), then starts every due
attempt as its own short task, holding an `asyncio.Semaphore` slot for the attempt's lifetime so
that at most `max_concurrency` probes are in flight. How late each attempt started against its
schedule is recorded (`stats.lateness`): when the box cannot keep up, lateness is what grows.

Why one dispatcher and a task per attempt rather than a task per check: 5,000 real servers at
delay_loop 1 s would mean 5,000 sleeping tasks each with its own timer; one heap and one timer
costs O(log n) per attempt and wakes the loop about once per millisecond at most.

Failures of our own code never take the daemon down: an exception escaping a probe (probes
are written never to raise) or the reducer is logged, counted in `stats.crashes`, and the check
is restarted at its next delay_loop WITHOUT feeding a failure to the reducer (a bug in a probe
must not mark every real server down and empty the pool); a crash of the dispatcher itself is
counted and the dispatcher restarted, rescheduling any check it had taken off the heap. A probe
that overruns its own timeout by `guard_margin` is cancelled and counted as a failed attempt
with reason "guard_timeout"; a sweep every `guard_interval` finds them, rather than a timer per
attempt, which cost about a third of the runner's own time per check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from healthcheck.probes import run_probe
from healthcheck.scheduler import DueHeap, Lateness, first_due
from healthcheck.state import (
    CheckParams,
    CheckState,
    HealthEvent,
    RealServerHealth,
    RealServerId,
    apply_result,
    initial_check_state,
    initial_health,
    reconfigure,
)
from healthcheck.types import ProbeResult

__all__ = ["CheckRunner", "CheckSpec", "ProbeFn", "RunnerStats"]

log = logging.getLogger("hacontrol.healthcheck")

ProbeFn = Callable[[Any, Any], Awaitable[ProbeResult]]
"""`probe(check_config, target) -> ProbeResult`; the default is healthcheck.probes.run_probe."""

_Key = tuple[RealServerId, int]  # (real server, index of the check)


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One check of a real server: its timing (`params`) and the config handed to the probe."""

    params: CheckParams
    config: Any


@dataclass(slots=True)
class RunnerStats:
    attempts: int = 0  # probes started
    results: int = 0  # results fed to the reducer
    crashes: int = 0  # exceptions escaping a probe (a bug: probes never raise)
    guard_timeouts: int = 0  # probes cancelled for overrunning their own timeout
    callback_errors: int = 0  # exceptions raised by the on_event callback
    dispatcher_restarts: int = 0
    in_flight: int = 0
    lateness: Lateness = field(default_factory=Lateness)


@dataclass(slots=True)
class _Entry:
    target: Any
    checks: tuple[CheckSpec, ...]
    health: RealServerHealth


class CheckRunner:
    """Runs the checks of many real servers; `on_event` receives every up/down/weight event."""

    def __init__(
        self,
        on_event: Callable[[HealthEvent], None],
        *,
        probe: ProbeFn | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        max_concurrency: int = 1024,
        guard_margin: float = 1.0,
        guard_interval: float = 0.5,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self._on_event = on_event
        self._probe: ProbeFn = probe if probe is not None else run_probe
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._rng = rng if rng is not None else random.Random()
        self._max_concurrency = max_concurrency
        self._guard_margin = guard_margin
        self._guard_interval = guard_interval
        self._guard_handle: asyncio.TimerHandle | None = None
        self._guard_cancelled: set[asyncio.Task[None]] = set()
        self._servers: dict[RealServerId, _Entry] = {}
        self._heap: DueHeap[_Key] = DueHeap()
        self._sem: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # attempts in flight: key -> (its task, the time after which the guard cancels it)
        self._running: dict[_Key, tuple[asyncio.Task[None], float]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake_fut: asyncio.Future[None] | None = None
        self._sleep_until = math.inf
        self.stats = RunnerStats()

    # --- configuration -----------------------------------------------------------------

    def add_real_server(
        self,
        server: RealServerId,
        target: Any,
        weight: int,
        checks: Sequence[CheckSpec],
        *,
        now: float | None = None,
    ) -> RealServerHealth:
        """Start checking a real server (replacing any earlier definition of it, whose state
        is dropped). Its first attempts are spread over each check's warmup."""
        self.remove_real_server(server)
        start = self._clock() if now is None else now
        dues = [first_due(start, c.params.delay_loop, c.params.warmup, self._rng) for c in checks]
        health = initial_health(server, weight, [c.params for c in checks], dues)
        self._servers[server] = _Entry(target, tuple(checks), health)
        for index, due in enumerate(dues):
            self._schedule((server, index), due)
        return health

    def update_real_server(
        self,
        server: RealServerId,
        target: Any,
        weight: int,
        checks: Sequence[CheckSpec],
        *,
        now: float | None = None,
    ) -> RealServerHealth:
        """Apply a reload to a real server: a check identical to the running one at the same
        position (same spec, same target) keeps its state and schedule; any other starts
        afresh with a warmup spread. A server not yet known is added. The up/down or weight
        change this causes goes to on_event like any other."""
        old = self._servers.get(server)
        if old is None:
            return self.add_real_server(server, target, weight, checks, now=now)
        start = self._clock() if now is None else now
        states: list[CheckState] = []
        for index, spec in enumerate(checks):
            if index < len(old.checks) and old.checks[index] == spec and old.target == target:
                states.append(old.health.checks[index])
            else:
                due = first_due(start, spec.params.delay_loop, spec.params.warmup, self._rng)
                states.append(initial_check_state(spec.params, due))
        self.remove_real_server(server)
        health, events = reconfigure(old.health, weight, states)
        self._servers[server] = _Entry(target, tuple(checks), health)
        for index, state in enumerate(states):
            # A kept check whose attempt was in flight has its result dropped (the entry was
            # replaced): its stale next_due makes it run again at once.
            self._schedule((server, index), state.next_due)
        self._emit(events)
        return health

    def remove_real_server(self, server: RealServerId) -> None:
        """Stop checking a real server; a result still in flight for it is dropped."""
        entry = self._servers.pop(server, None)
        if entry is None:
            return
        for index in range(len(entry.checks)):
            self._heap.remove((server, index))

    def health(self, server: RealServerId) -> RealServerHealth | None:
        entry = self._servers.get(server)
        return None if entry is None else entry.health

    def healths(self) -> Mapping[RealServerId, RealServerHealth]:
        return {server: entry.health for server, entry in self._servers.items()}

    def __len__(self) -> int:
        return len(self._servers)

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._dispatcher is not None:
            return
        loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(self._max_concurrency)
        self._dispatcher = loop.create_task(self._supervise(), name="healthcheck-dispatcher")
        self._guard_handle = loop.call_later(self._guard_interval, self._guard_sweep)

    async def stop(self) -> None:
        """Cancel the dispatcher and every attempt in flight, and wait for them."""
        if self._guard_handle is not None:
            self._guard_handle.cancel()
            self._guard_handle = None
        tasks = list(self._tasks)
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._dispatcher = None
        self._tasks.clear()
        if self._guard_handle is not None:  # re-armed by a sweep that ran while we waited
            self._guard_handle.cancel()
            self._guard_handle = None

    async def __aenter__(self) -> CheckRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- internals ----------------------------------------------------------------------

    def _schedule(self, key: _Key, due: float) -> None:
        self._heap.push(key, due)
        if due < self._sleep_until and self._wake_fut is not None and not self._wake_fut.done():
            self._wake_fut.set_result(None)

    async def _supervise(self) -> None:
        crashed = False
        while True:
            try:
                if crashed:
                    self._recover()
                    crashed = False
                await self._dispatch()
            except asyncio.CancelledError:
                raise
            except Exception:
                crashed = True
                self.stats.dispatcher_restarts += 1
                log.exception(
                    "healthcheck.dispatcher_crash restarts=%d", self.stats.dispatcher_restarts
                )
                await asyncio.sleep(0.1)  # a crash loop must not spin the CPU

    def _recover(self) -> None:
        """Reschedule at once every check that is neither scheduled nor running: a dispatcher
        that crashed may have popped a check from the heap without starting it."""
        now = self._clock()
        for server, entry in self._servers.items():
            for index in range(len(entry.checks)):
                key = (server, index)
                if key not in self._heap and key not in self._running:
                    self._schedule(key, now)

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        sem = self._sem
        assert sem is not None
        while True:
            for key, due in self._heap.pop_due(self._clock()):
                await sem.acquire()
                started = self._clock()
                entry = self._servers.get(key[0])
                if entry is None:  # removed while we waited for a slot
                    sem.release()
                    continue
                self.stats.lateness.record(started - due)
                self.stats.attempts += 1
                self.stats.in_flight += 1
                task = loop.create_task(self._attempt(key, entry, started))
                guard_at = started + entry.checks[key[1]].params.timeout + self._guard_margin
                self._running[key] = (task, guard_at)
                self._tasks.add(task)
                task.add_done_callback(self._attempt_done)
            await self._sleep_until_due(loop)

    def _guard_sweep(self) -> None:
        try:
            now = self._clock()
            for task, guard_at in list(self._running.values()):
                if guard_at <= now and not task.done() and task not in self._guard_cancelled:
                    self._guard_cancelled.add(task)
                    task.cancel()
        except Exception:
            log.exception("healthcheck.guard_sweep_error")
        finally:
            if self._dispatcher is not None:
                loop = asyncio.get_running_loop()
                self._guard_handle = loop.call_later(self._guard_interval, self._guard_sweep)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._guard_cancelled.discard(task)
        self._tasks.discard(task)
        self.stats.in_flight -= 1
        assert self._sem is not None
        self._sem.release()

    async def _sleep_until_due(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = self._heap.next_deadline()
        fut: asyncio.Future[None] = loop.create_future()
        self._wake_fut = fut
        self._sleep_until = math.inf if deadline is None else deadline
        handle = None
        if deadline is not None:
            handle = loop.call_later(max(0.0, deadline - self._clock()), _resolve, fut)
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._wake_fut = None
            self._sleep_until = math.inf

    async def _attempt(self, key: _Key, entry: _Entry, started: float) -> None:
        server, index = key
        spec = entry.checks[index]
        try:
            try:
                result = await self._probe(spec.config, entry.target)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task not in self._guard_cancelled:
                    raise
                assert task is not None
                self._guard_cancelled.discard(task)
                task.uncancel()
                self.stats.guard_timeouts += 1
                result = ProbeResult(False, "guard_timeout", self._clock() - started)
            self._feed(key, entry, spec.params, result)
        except Exception:
            self.stats.crashes += 1
            log.exception(
                "healthcheck.probe_crash server=%s check=%s crashes=%d",
                server,
                spec.params.name,
                self.stats.crashes,
            )
            if self._servers.get(server) is entry:
                try:
                    now = self._clock()
                except Exception:
                    now = started  # the clock itself failed: keep the schedule going anyway
                self._schedule(key, now + spec.params.delay_loop)
        finally:
            running = self._running.get(key)
            if running is not None and running[0] is asyncio.current_task():
                del self._running[key]

    def _feed(self, key: _Key, entry: _Entry, params: CheckParams, result: ProbeResult) -> None:
        server, index = key
        if self._servers.get(server) is not entry:
            return  # removed or redefined while the probe ran
        now = self._clock()
        entry.health, events = apply_result(entry.health, index, params, result, now)
        self.stats.results += 1
        self._schedule(key, entry.health.checks[index].next_due)
        self._emit(events)

    def _emit(self, events: Sequence[HealthEvent]) -> None:
        for event in events:
            try:
                self._on_event(event)
            except Exception:
                self.stats.callback_errors += 1
                log.exception("healthcheck.callback_error event=%r", event)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
