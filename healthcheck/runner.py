"""The asyncio adapter that runs health checks on time and feeds their results to the reducer.

A dispatcher (a plain timer callback, not a task) fires at the earliest due check of a
`DueHeap` and hands every due attempt to a pool of worker tasks: an idle worker is woken with
the attempt, a new worker is started while there are fewer than `max_concurrency`, and
otherwise the attempt waits in a FIFO that busy workers drain before they go idle. So at most
`max_concurrency` probes are in flight. How late each attempt started against its schedule is
recorded (`stats.lateness`): when the box cannot keep up, lateness is what grows.

Why one dispatcher and a pool of workers rather than a task per check or per attempt: 5,000
real servers at delay_loop 1 s would mean 5,000 sleeping tasks each with its own timer; one
heap and one timer costs O(log n) per attempt, and the timer's delay is rounded up to whole
`dispatch_quantum`s, so the dispatcher runs at most about once per quantum whatever the number
of checks. A task per attempt (create_task, its first step, a done callback, a semaphore) was
about a quarter of the runner's own time per check; a worker that finds more work waiting
simply carries on, and an idle one is woken through one future.

Failures of our own code never take the daemon down: an exception escaping a probe (probes
are written never to raise) or the reducer is logged, counted in `stats.crashes`, and the check
is restarted at its next delay_loop WITHOUT feeding a failure to the reducer (a bug in a probe
must not mark every real server down and empty the pool); a worker killed by anything else is
counted the same way and replaced; a crash of the dispatcher itself is counted and the
dispatcher restarted 0.1 s later, rescheduling any check it had taken off the heap. A probe
that overruns its own timeout by `guard_margin` is cancelled and counted as a failed attempt
with reason "guard_timeout"; a sweep every `guard_interval` finds them, rather than a timer per
attempt.
"""

from __future__ import annotations

import asyncio
import collections
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
    runs: tuple[_Check, ...] = ()
    suspended: bool = False


class _Check:
    """One check of one real server as the runner schedules it: the heap key (hashed by
    identity, which is what makes a heap operation cheap), with what an attempt needs at
    hand. `live` turns False when its real server is removed or redefined, which drops an
    attempt still waiting or in flight."""

    __slots__ = ("config", "entry", "index", "live", "params", "target")

    def __init__(self, entry: _Entry, index: int) -> None:
        spec = entry.checks[index]
        self.entry = entry
        self.index = index
        self.params = spec.params
        self.config = spec.config
        self.target = entry.target
        self.live = True


class _Worker:
    """A worker task and the attempt it is running (`check` is None while it is idle)."""

    __slots__ = ("check", "guard_at", "guard_cancelled", "task")

    def __init__(self) -> None:
        self.check: _Check | None = None
        self.guard_at = math.inf
        self.guard_cancelled = False
        self.task: asyncio.Task[None] | None = None


_Job = tuple[_Check, float]  # a due attempt: the check and the time it was due


class CheckRunner:
    """Runs the checks of many real servers; `on_event` receives every up/down/weight event."""

    # The dispatcher's delay is rounded up to whole quanta (seconds): attempts due within one
    # quantum start together, at most this much late. Small against any delay_loop and the
    # 50 ms lateness target (and the event loop's epoll timeout is in whole ms anyway); large
    # enough that thousands of checks a second cost at most a thousand dispatches, not one
    # each.
    dispatch_quantum = 0.001

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
        self._servers: dict[RealServerId, _Entry] = {}
        self._heap: DueHeap[_Check] = DueHeap()
        self._loop: asyncio.AbstractEventLoop | None = None  # set while started
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf  # what the armed timer is for, in our clock's time
        self._crashed = False  # the dispatcher crashed: recover before dispatching again
        self._stopped = False  # stopped at least once: recover on the next start
        self._workers: dict[asyncio.Task[None], _Worker] = {}
        self._idle: list[asyncio.Future[_Job]] = []  # parked workers, most recent last
        self._waiting: collections.deque[_Job] = collections.deque()  # due, no free worker
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
        entry = self._install(server, target, checks, health)
        for run, due in zip(entry.runs, dues, strict=True):
            self._schedule(run, due)
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
        entry = self._install(server, target, checks, health)
        for run, state in zip(entry.runs, states, strict=True):
            # A kept check whose attempt was in flight has its result dropped (the entry was
            # replaced): its stale next_due makes it run again at once.
            self._schedule(run, state.next_due)
        self._emit(events)
        return health

    def remove_real_server(self, server: RealServerId) -> None:
        """Stop checking a real server; a result still in flight for it is dropped."""
        entry = self._servers.pop(server, None)
        if entry is None:
            return
        for run in entry.runs:
            run.live = False
            self._heap.remove(run)

    def suspend(self, server: RealServerId) -> bool:
        """Stop running a real server's checks, keeping its state (keepalived's ha_suspend
        while the director does not hold the service's address). True if it was running."""
        entry = self._servers.get(server)
        if entry is None or entry.suspended:
            return False
        entry.suspended = True
        for run in entry.runs:
            run.live = False  # an attempt in flight is dropped, as on removal
            self._heap.remove(run)
        return True

    def resume(self, server: RealServerId, *, now: float | None = None) -> bool:
        """Run a suspended server's checks again, the first attempts spread over each
        check's warmup as at start. True if it was suspended."""
        entry = self._servers.get(server)
        if entry is None or not entry.suspended:
            return False
        entry.suspended = False
        entry.runs = tuple(_Check(entry, index) for index in range(len(entry.checks)))
        start = self._clock() if now is None else now
        for run in entry.runs:
            self._schedule(
                run, first_due(start, run.params.delay_loop, run.params.warmup, self._rng)
            )
        return True

    def suspended(self, server: RealServerId) -> bool:
        entry = self._servers.get(server)
        return entry is not None and entry.suspended

    def health(self, server: RealServerId) -> RealServerHealth | None:
        entry = self._servers.get(server)
        return None if entry is None else entry.health

    def healths(self) -> Mapping[RealServerId, RealServerHealth]:
        return {server: entry.health for server, entry in self._servers.items()}

    def __len__(self) -> int:
        return len(self._servers)

    def _install(
        self,
        server: RealServerId,
        target: Any,
        checks: Sequence[CheckSpec],
        health: RealServerHealth,
    ) -> _Entry:
        entry = _Entry(target, tuple(checks), health)
        entry.runs = tuple(_Check(entry, index) for index in range(len(entry.checks)))
        self._servers[server] = entry
        return entry

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._stopped:
            # Attempts that were waiting or in flight when we stopped are on no heap.
            self._crashed = True
        self._arm_at(-math.inf)  # the dispatcher runs at once, then sleeps to the heap
        self._guard_handle = loop.call_later(self._guard_interval, self._guard_sweep)

    async def stop(self) -> None:
        """Stop dispatching, cancel every attempt in flight, and wait for them. A later
        start() picks every check up again."""
        if self._loop is None:
            return
        self._loop = None
        self._stopped = True
        for handle in (self._timer, self._guard_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._guard_handle = None
        self._timer_due = math.inf
        tasks = list(self._workers)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._idle.clear()
        self._waiting.clear()
        self.stats.in_flight = 0

    async def __aenter__(self) -> CheckRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- the dispatcher -----------------------------------------------------------------

    def _schedule(self, run: _Check, due: float) -> None:
        self._heap.push(run, due)
        if due < self._timer_due and self._loop is not None:
            self._arm_at(due)

    def _arm_at(self, due: float, now: float | None = None) -> None:
        """(Re)arm the dispatcher's timer for `due`, its delay from `now` (default: our
        clock) rounded up to whole dispatch quanta."""
        loop = self._loop
        assert loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        try:
            delay = due - (self._clock() if now is None else now)
        except Exception:
            delay = 0.0  # our clock failed: let the dispatcher run and meet it itself
        if delay > 0.0:
            quantum = self.dispatch_quantum
            delay = math.ceil(delay / quantum) * quantum if quantum > 0 else delay
        else:
            delay = 0.0
        self._timer = loop.call_later(delay, self._dispatch)

    def _dispatch(self) -> None:
        self._timer = None
        self._timer_due = math.inf
        if self._loop is None:
            return
        try:
            if self._crashed:
                self._recover()
                self._crashed = False
            now = self._clock()
            for job in self._heap.pop_due(now):
                self._hand_out(job, now)
            deadline = self._heap.next_deadline()
            if deadline is not None and deadline < self._timer_due:
                # From `now`, not the clock: a check that fell due while this batch was
                # handed out waits for the next quantum rather than making a dispatch of
                # its own right away.
                self._arm_at(deadline, now)
        except Exception:
            self._crashed = True
            self.stats.dispatcher_restarts += 1
            restarts = self.stats.dispatcher_restarts
            log.exception("healthcheck.dispatcher_crash restarts=%d", restarts)
            if self._timer is not None:
                self._timer.cancel()
            # A crash loop must not spin the CPU; -inf: no schedule re-arms it earlier.
            self._timer_due = -math.inf
            self._timer = self._loop.call_later(0.1, self._dispatch)

    def _hand_out(self, job: _Job, now: float) -> None:
        # Lateness is taken when an attempt gets its worker, as with the semaphore before:
        # comparable figures, and one clock read per dispatch. (A burst handed out together
        # then starts over the following milliseconds, one probe after the other.)
        if self._idle:
            self.stats.lateness.record(now - job[1])
            self._idle.pop().set_result(job)
        elif len(self._workers) < self._max_concurrency:
            assert self._loop is not None
            self.stats.lateness.record(now - job[1])
            worker = _Worker()
            task = self._loop.create_task(self._work(worker, job), name="healthcheck-worker")
            worker.task = task
            self._workers[task] = worker
            task.add_done_callback(self._worker_done)
        else:
            self._waiting.append(job)

    def _recover(self) -> None:
        """Reschedule at once every check that is neither scheduled, waiting for a worker,
        nor running: a dispatcher that crashed may have popped a check from the heap without
        handing it out, and a stop drops what was waiting or in flight."""
        busy = {run for run, _due in self._waiting}
        busy.update(w.check for w in self._workers.values() if w.check is not None)
        now = self._clock()
        for entry in self._servers.values():
            for run in entry.runs:
                if run not in self._heap and run not in busy:
                    self._schedule(run, now)

    def _guard_sweep(self) -> None:
        try:
            now = self._clock()
            for worker in self._workers.values():
                task = worker.task
                overdue = worker.check is not None and worker.guard_at <= now
                if overdue and task is not None and not worker.guard_cancelled:
                    worker.guard_cancelled = True
                    task.cancel()
        except Exception:
            log.exception("healthcheck.guard_sweep_error")
        finally:
            if self._loop is not None:
                self._guard_handle = self._loop.call_later(self._guard_interval, self._guard_sweep)

    # --- the workers --------------------------------------------------------------------

    async def _work(self, worker: _Worker, job: _Job) -> None:
        """Run attempts until stopped: `job` first, then whatever is waiting, then park."""
        loop = asyncio.get_running_loop()
        task = worker.task
        assert task is not None
        waiting = self._waiting
        idle = self._idle
        stats = self.stats
        queued = False  # `job` came from the waiting FIFO: its lateness is still to record
        while True:
            run, due = job
            if run.live:
                started = due  # should our clock fail, the schedule goes on from here
                try:
                    started = self._clock()
                    if queued:
                        stats.lateness.record(started - due)
                    stats.attempts += 1
                    worker.guard_at = started + run.params.timeout + self._guard_margin
                    worker.check = run
                    stats.in_flight += 1
                    cut = False
                    try:
                        result = await self._probe(run.config, run.target)
                    except asyncio.CancelledError:
                        if not worker.guard_cancelled:
                            raise
                        cut = True
                    finally:
                        worker.check = None
                        stats.in_flight -= 1
                    if worker.guard_cancelled:
                        # The guard cancelled this attempt (a probe that swallowed the
                        # cancellation still ran to its end). The worker goes on, unless it
                        # was cancelled by stop() as well.
                        worker.guard_cancelled = False
                        if task.uncancel():
                            raise asyncio.CancelledError
                    if cut:
                        stats.guard_timeouts += 1
                        result = ProbeResult(False, "guard_timeout", self._clock() - started)
                    if run.live:
                        self._feed(run, result)
                except Exception:
                    self._crashed_attempt(run, started)
            if waiting:
                # Saturated: yield once before the next attempt, so that it starts after the
                # rest of this loop iteration's I/O callbacks rather than in their midst.
                # Measured at 50,000 checks/s demanded: ~10% less CPU per HTTP check (mostly
                # kernel time) than carrying straight on; and a worker whose probes never
                # suspend (a file check) cannot starve the loop.
                await asyncio.sleep(0)
                if waiting:
                    job = waiting.popleft()
                    queued = True
                    continue
            parked: asyncio.Future[_Job] = loop.create_future()
            idle.append(parked)
            job = await parked
            queued = False

    def _crashed_attempt(self, run: _Check, started: float) -> None:
        self.stats.crashes += 1
        log.exception(
            "healthcheck.probe_crash server=%s check=%s crashes=%d",
            run.entry.health.server,
            run.params.name,
            self.stats.crashes,
        )
        if run.live:
            try:
                now = self._clock()
            except Exception:
                now = started  # the clock itself failed: keep the schedule going anyway
            self._schedule(run, now + run.params.delay_loop)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._workers.pop(task, None)
        if task.cancelled() or task.exception() is None:
            return
        # A worker only ends by cancellation; anything else is a bug we survive: the
        # dispatcher recovers the attempt it was running, and a new worker takes its slot.
        self.stats.crashes += 1
        log.error("healthcheck.worker_died error=%r", task.exception())
        self._crashed = True
        if self._loop is not None:
            self._arm_at(-math.inf)

    def _feed(self, run: _Check, result: ProbeResult) -> None:
        entry = run.entry
        index = run.index
        now = self._clock()
        entry.health, events = apply_result(entry.health, index, run.params, result, now)
        self.stats.results += 1
        self._schedule(run, entry.health.checks[index].next_due)
        if events:
            self._emit(events)

    def _emit(self, events: Sequence[HealthEvent]) -> None:
        for event in events:
            try:
                self._on_event(event)
            except Exception:
                self.stats.callback_errors += 1
                log.exception("healthcheck.callback_error event=%r", event)
