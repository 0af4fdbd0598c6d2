"""One pass of the IPVS table reconciliation: dump, plan, apply; and which services are ours.

Every pass dumps the kernel, plans (``plan.plan``) and applies the diff. Nothing is remembered
between passes except which services are ours, so a failed op is simply planned again by the next
pass, and a change made behind our back (``ipvsadm -d``) is repaired by the next pass. (What is
kept to make a pass with nothing to do cheap changes none of that: the dump hands back the very
same table object only when the kernel's answers are byte for byte those of the previous dump,
counters aside (netlink.DumpDecoder), and only then does ``plan.PlanMemo`` skip comparing.)
When passes run (interval, on demand, backoff) is the runtime reconciler's business
(hacontrol/runtime/reconciler.py); this module is the table's part of it.

- Start adopts: the first pass dumps what the kernel already has and edits it into shape. It never
  flushes, so a restarted daemon drops no connection (keepalived flushes unless started with -I).
- Ownership: a service is ours when it is desired now, was desired earlier in this run (so a
  service dropped from the config is deleted), was ``adopt()``-ed (an earlier run owned it), or the
  caller's ``owned`` says so; a service that is neither desired nor in the kernel any more stops
  being ours. Services of other tools stay untouched unless ``purge_unowned``.

The kernel sits behind ``Kernel`` (dump + apply), so the logic is tested with an in-memory fake
and proved against the real kernel in tests/kernel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hacontrol.ipvs.model import ServiceKey, Table
from hacontrol.ipvs.netlink import ApplyResult, OpFailure
from hacontrol.ipvs.plan import Op, Owned, PlanMemo, plan

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
        on_pass: Callable[[PassResult], None] | None = None,
    ) -> None:
        self._kernel = kernel
        self._desired = desired
        self._extra_owned: Owned | None = owned
        self._ever_desired: set[ServiceKey] = set(desired.keys())
        self.purge_unowned = purge_unowned
        self._on_pass = on_pass
        self.counters = ReconcilerCounters()
        self._lock = asyncio.Lock()
        self._memo = PlanMemo()  # a no-drift pass re-plans nothing (plan.PlanMemo)

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
        """A new desired table (config reload, health-check verdicts) for the next pass."""
        self._desired = table
        self._ever_desired.update(table.keys())
        if owned is not None:
            self._extra_owned = owned

    def adopt(self, keys: Iterable[ServiceKey]) -> None:
        """Services an earlier run owned: ours until they are gone from the kernel."""
        self._ever_desired.update(keys)

    def owned_keys(self) -> set[ServiceKey]:
        """What this reconciler treats as its own now (desired, or desired earlier and still in
        the kernel as of the last pass)."""
        return set(self._desired.keys()) | self._ever_desired

    async def reconcile_once(self) -> PassResult:
        """Dump, plan, apply: one pass. Never raises for kernel trouble; the result says it."""
        async with self._lock:
            started = time.monotonic()
            number = self.counters.passes + 1
            desired = self._desired
            ops: list[Op] = []
            try:
                actual = await self._kernel.dump()
                ops = plan(
                    desired,
                    actual,
                    owned=self.owns,
                    purge_unowned=self.purge_unowned,
                    memo=self._memo,
                )
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
