"""The level-triggered IPVS reconciler: keep the kernel's table equal to the desired one.

Every pass dumps the kernel, plans (``plan.plan``) and applies the diff. Nothing is remembered
between passes except which services are ours, so a failed op is simply planned again by the next
pass, and a change made behind our back (``ipvsadm -d``) is repaired by the next pass.

- Start adopts: the first pass dumps what the kernel already has and edits it into shape. It never
  flushes, so a restarted daemon drops no connection (keepalived flushes unless started with -I).
- Passes run on an interval, on ``trigger()`` and on ``set_desired()``; a pass with failures is
  followed by another after ``retry_interval`` (usually shorter than the interval).
- Ownership: a service is ours when it is desired now, was desired earlier in this run (so a
  service dropped from the config is deleted), or the caller's ``owned`` says so. Services of
  other tools stay untouched unless ``purge_unowned``.

The kernel sits behind ``Kernel`` (dump + apply), so the logic is tested with an in-memory fake
and proved against the real kernel in tests/kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hacontrol.ipvs.model import ServiceKey, Table
from hacontrol.ipvs.netlink import ApplyResult, OpFailure
from hacontrol.ipvs.plan import Op, Owned, plan

log = logging.getLogger("hacontrol.ipvs")


class Kernel(Protocol):
    """What the reconciler needs from the kernel (``netlink.AsyncIpvs`` is the real one)."""

    async def dump(self) -> Table: ...

    async def apply(self, ops: Sequence[Op]) -> ApplyResult: ...


@dataclass(frozen=True, slots=True)
class PassResult:
    """One reconcile pass: what was planned, what failed, or why the pass could not run."""

    number: int
    ops: tuple[Op, ...]
    failures: tuple[OpFailure, ...]
    duration: float
    error: str | None = None  # the dump or the apply as a whole failed

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures


@dataclass
class ReconcilerCounters:
    passes: int = 0
    ops: int = 0
    failures: int = 0
    pass_errors: int = 0
    last: PassResult | None = None
    failures_by_errno: dict[str, int] = field(default_factory=dict)


class Reconciler:
    """Drive ``kernel`` towards ``desired``; see the module docstring for the rules."""

    def __init__(
        self,
        kernel: Kernel,
        desired: Table,
        *,
        owned: Owned | None = None,
        purge_unowned: bool = False,
        interval: float = 10.0,
        retry_interval: float = 2.0,
        on_pass: Callable[[PassResult], None] | None = None,
    ) -> None:
        self._kernel = kernel
        self._desired = desired
        self._extra_owned: Owned | None = owned
        self._ever_desired: set[ServiceKey] = set(desired.keys())
        self.purge_unowned = purge_unowned
        self.interval = interval
        self.retry_interval = retry_interval
        self._on_pass = on_pass
        self.counters = ReconcilerCounters()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._pass_done = asyncio.Condition()

    @property
    def desired(self) -> Table:
        return self._desired

    def owns(self, key: ServiceKey) -> bool:
        if key in self._desired or key in self._ever_desired:
            return True
        extra = self._extra_owned
        if extra is None:
            return False
        return extra(key) if callable(extra) else key in extra

    def set_desired(self, table: Table, *, owned: Owned | None = None) -> None:
        """A new desired table (config reload, health-check verdicts); a pass follows at once."""
        self._desired = table
        self._ever_desired.update(table.keys())
        if owned is not None:
            self._extra_owned = owned
        self.trigger()

    def trigger(self) -> None:
        """Ask for a pass now (coalesced with one already asked for)."""
        self._wake.set()

    async def reconcile_once(self) -> PassResult:
        """Dump, plan, apply: one pass. Never raises for kernel trouble; the result says it."""
        async with self._lock:
            started = time.monotonic()
            number = self.counters.passes + 1
            desired = self._desired
            ops: list[Op] = []
            try:
                actual = await self._kernel.dump()
                ops = plan(desired, actual, owned=self.owns, purge_unowned=self.purge_unowned)
                result = await self._kernel.apply(ops) if ops else ApplyResult(0, (), 0)
                error = None
                # Services that are gone and no longer desired stop being ours, so one re-made
                # by hand later is left alone.
                self._ever_desired = {k for k in self._ever_desired if k in desired or k in actual}
            except Exception as exc:  # kernel/OS trouble: count it, retry next pass
                result = ApplyResult(0, (), 0)
                error = f"{type(exc).__name__}: {exc}"
            res = PassResult(
                number=number,
                ops=tuple(ops),
                failures=result.failures,
                duration=time.monotonic() - started,
                error=error,
            )
            self._count(res)
        async with self._pass_done:
            self._pass_done.notify_all()
        return res

    def _count(self, res: PassResult) -> None:
        c = self.counters
        c.passes += 1
        c.ops += len(res.ops)
        c.failures += len(res.failures)
        c.last = res
        if res.error is not None:
            c.pass_errors += 1
            log.warning("ipvs.pass_error pass=%d error=%s", res.number, res.error)
        for f in res.failures:
            name = f.error.errno_name
            c.failures_by_errno[name] = c.failures_by_errno.get(name, 0) + 1
            log.warning(
                "ipvs.op_failed pass=%d op=%r errno=%s cause=%r",
                res.number,
                str(f.op),
                name,
                f.error.cause,
            )
        if res.ops or res.error:
            log.info(
                "ipvs.pass pass=%d ops=%d failed=%d duration=%.3f",
                res.number,
                len(res.ops),
                len(res.failures),
                res.duration,
            )
        if self._on_pass is not None:
            self._on_pass(res)

    async def wait_for_pass(self, after: int) -> PassResult:
        """Wait until pass number ``after + 1`` or later has finished; for tests and the CLI."""
        async with self._pass_done:
            await self._pass_done.wait_for(lambda: self.counters.passes > after)
        assert self.counters.last is not None
        return self.counters.last

    async def run(self) -> None:
        """Pass after pass until cancelled."""
        while True:
            self._wake.clear()
            res = await self.reconcile_once()
            delay = self.interval if res.ok else min(self.retry_interval, self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="ipvs-reconciler")
        return self._task

    async def stop(self) -> None:
        """Stop passing. The kernel table stays as it is (no flush: connections live on)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
