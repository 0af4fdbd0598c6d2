"""The convergers of kernel state the daemon owns, and the IPVS connection they share.

One `Converger` (see reconciler.py) per kind: `ipvs_table` (services and real servers),
`sync_daemon` (the connection-sync daemon's role), `timeouts` (`ipvsadm --set`),
`sysctls` (net.ipv4.vs.*). Each holds its desired value (set by the runtime whenever it
changes), reads the kernel's actual value on every pass and writes only the difference.
Writes made because the desired value changed are applies; writes made while the desired
value stayed the same are repairs (something changed the kernel behind our back), and
only those are counted as repairs.

`IpvsLink` opens the one IPVS generic-netlink socket on first use. Asking for the "IPVS"
family usually loads ip_vs by itself (the kernel requests the module by its alias); when
that is not possible it runs `modprobe ip_vs` (exec, no shell; at most once per `retry`
seconds), and it publishes whether IPVS is available, so status, metrics and systemd's
STATUS= can say so. Checks keep running meanwhile: the table converges on the first pass
after IPVS appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from hacontrol.ipvs.errors import IpvsError, IpvsUnavailable
from hacontrol.ipvs.model import ServiceKey, Table
from hacontrol.ipvs.netlink import ApplyResult, AsyncIpvs, Snapshot
from hacontrol.ipvs.plan import Op
from hacontrol.ipvs.reconcile import Reconciler as TableReconciler
from hacontrol.ipvs.syncd import (
    StartDaemon,
    SyncDaemonConfig,
    SyncRole,
    Timeouts,
    plan_sync_daemons,
)
from hacontrol.ipvs.sysctl import IpvsSysctlError, IpvsSysctls, apply_sysctls
from hacontrol.runtime.events import IpvsAvailability
from hacontrol.runtime.reconciler import Convergence

log = logging.getLogger("hacontrol.kernel")


class IpvsBackend(Protocol):
    """The IPVS requests the convergers make (netlink.AsyncIpvs; a fake in unit tests)."""

    async def snapshot(self, *, spread: bool = False) -> Snapshot: ...
    async def dump(self, *, spread: bool = False) -> Table: ...
    async def apply(self, ops: Sequence[Op]) -> ApplyResult: ...
    async def get_daemons(self) -> list[SyncDaemonConfig]: ...
    async def start_daemon(self, cfg: SyncDaemonConfig) -> None: ...
    async def stop_daemon(self, state: SyncRole) -> None: ...
    async def get_timeouts(self) -> Timeouts: ...
    async def set_timeouts(self, timeouts: Timeouts) -> None: ...


class IpvsSource(Protocol):
    """Where the convergers get their backend (IpvsLink; a fake in unit tests)."""

    async def get(self) -> IpvsBackend: ...

    def reset(self) -> None: ...


MODPROBE = ("modprobe", "ip_vs")
MODPROBE_TIMEOUT = 15.0


class IpvsLink:
    """The IPVS netlink socket, opened (and the module loaded) on demand."""

    def __init__(
        self,
        publish: Callable[[object], None],
        *,
        modprobe: Sequence[str] | None = MODPROBE,
        retry: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._modprobe = tuple(modprobe) if modprobe else None
        self._retry = retry
        self._clock = clock
        self._ipvs: AsyncIpvs | None = None
        self._last_modprobe: float | None = None
        self._lock = asyncio.Lock()
        self.available: bool | None = None
        self.detail = ""

    async def get(self) -> IpvsBackend:
        """The open socket; IpvsUnavailable (with what was tried) when there is no IPVS."""
        if self._ipvs is not None:
            return self._ipvs
        async with self._lock:
            if self._ipvs is not None:
                return self._ipvs
            try:
                self._ipvs = await AsyncIpvs.open()
            except IpvsUnavailable as first:
                tried = await self._load_module()
                try:
                    self._ipvs = await AsyncIpvs.open()
                except IpvsUnavailable:
                    self._set(False, f"{first.cause}; {tried}" if tried else first.cause)
                    raise
            self._set(True, "")
            return self._ipvs

    async def _load_module(self) -> str:
        if self._modprobe is None:
            return ""
        now = self._clock()
        if self._last_modprobe is not None and now - self._last_modprobe < self._retry:
            return "modprobe tried recently"
        self._last_modprobe = now
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._modprobe,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return f"{' '.join(self._modprobe)} could not run: {exc.strerror or exc}"
        try:
            _, err = await asyncio.wait_for(proc.communicate(), MODPROBE_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return f"{' '.join(self._modprobe)} timed out"
        if proc.returncode == 0:
            log.info("ipvs.module_loaded command=%r", " ".join(self._modprobe))
            return ""
        text = err.decode(errors="replace").strip().splitlines()
        why = text[-1] if text else f"exit status {proc.returncode}"
        return f"{' '.join(self._modprobe)} failed: {why}"

    def _set(self, available: bool, detail: str) -> None:
        if (available, detail) == (self.available, self.detail):
            return
        self.available, self.detail = available, detail
        if available:
            log.info("ipvs.available")
        else:
            log.error("ipvs.unavailable detail=%s", detail)
        self._publish(IpvsAvailability(available, detail))

    def reset(self) -> None:
        """Forget the socket (it failed as a whole); the next get() opens a new one."""
        if self._ipvs is not None:
            self._ipvs.close()
            self._ipvs = None

    def close(self) -> None:
        self.reset()


def _unavailable(exc: IpvsError) -> Convergence:
    return Convergence(error=str(exc))


class _LinkKernel:
    """The table reconciler's Kernel over the shared link; dumps with counters on demand,
    spread over two passes on a large table when allowed (netlink.IpvsNetlink.dump)."""

    def __init__(
        self,
        link: IpvsSource,
        want_counters: Callable[[], bool],
        on_snapshot: Callable[[Snapshot], None] | None,
        spread: Callable[[], bool],
    ) -> None:
        self.link = link
        self.want_counters = want_counters
        self.on_snapshot = on_snapshot
        self.spread = spread

    async def dump(self) -> Table:
        ipvs = await self.link.get()
        spread = self.spread()
        if self.want_counters() and self.on_snapshot is not None:
            snap = await ipvs.snapshot(spread=spread)
            self.on_snapshot(snap)
            return snap.table
        return await ipvs.dump(spread=spread)

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        ipvs = await self.link.get()
        return await ipvs.apply(ops)


class IpvsTableConverger:
    """The IPVS table: services and real servers (hacontrol/ipvs/reconcile.py's plan)."""

    kind = "ipvs_table"

    def __init__(
        self,
        link: IpvsSource,
        desired: Table,
        *,
        owned: Collection[ServiceKey] = (),
        purge_unowned: bool = False,
        want_counters: Callable[[], bool] = lambda: False,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        before_first_pass: Callable[[Snapshot], None] | None = None,
        spread_dumps: Callable[[], bool] = lambda: False,
    ) -> None:
        self._kernel = _LinkKernel(link, want_counters, on_snapshot, spread_dumps)
        self.table = TableReconciler(self._kernel, desired, purge_unowned=purge_unowned)
        # Services an earlier run owned count as desired earlier in this run: deleted when
        # no longer desired, forgotten once gone from the kernel.
        self.table.adopt(owned)
        self._before_first_pass = before_first_pass
        self._converged: Table | None = None  # the desired table last fully applied

    @property
    def desired(self) -> Table:
        return self.table.desired

    def set_desired(self, table: Table) -> None:
        self.table.set_desired(table)

    def set_purge_unowned(self, purge: bool) -> None:
        self.table.purge_unowned = purge

    def owned_now(self) -> set[ServiceKey]:
        """Services we own: desired now, or desired earlier and still in the kernel."""
        return self.table.owned_keys()

    async def converge(self) -> Convergence:
        try:
            ipvs = await self._kernel.link.get()
            if self._before_first_pass is not None:
                # What an earlier run left (services to drain, real servers to drain) must
                # be known before the first plan, or that plan would delete it at once.
                self._before_first_pass(await ipvs.snapshot())
                self._before_first_pass = None
        except IpvsError as exc:
            return _unavailable(exc)
        desired = self.table.desired
        result = await self.table.reconcile_once()
        if result.error is not None:
            self._kernel.link.reset()  # a socket that failed as a whole is not reused
            return Convergence(error=result.error)
        written = len(result.ops)
        drift = written if self._converged is desired else 0
        if result.ok:
            self._converged = desired
        failures = "; ".join(str(f.error) for f in result.failures[:3])
        return Convergence(
            repairs=drift,
            writes=written,
            detail=tuple(str(op) for op in result.ops[:10]),
            error=(f"{len(result.failures)} of {written} writes failed: {failures}")
            if result.failures
            else None,
        )


class SyncDaemonConverger:
    """The kernel's connection-sync daemon in the role VRRP decided (master/backup).

    `desired` None after a sync daemon was configured means "stop it" (the config no
    longer has one); the runtime removes this converger once that is done.
    """

    kind = "sync_daemon"

    def __init__(self, link: IpvsSource, desired: SyncDaemonConfig | None) -> None:
        self._link = link
        self.desired = desired
        self._converged: SyncDaemonConfig | bool | None = False  # False: never converged

    async def converge(self) -> Convergence:
        desired = self.desired
        try:
            ipvs = await self._link.get()
            running = await ipvs.get_daemons()
            steps = plan_sync_daemons(desired, running)
            for step in steps:
                if isinstance(step, StartDaemon):
                    await ipvs.start_daemon(step.config)
                else:
                    try:
                        await ipvs.stop_daemon(step.state)
                    except IpvsError as exc:
                        # ESRCH: stopped meanwhile (by hand or another tool): the goal holds.
                        if exc.errno_name != "ESRCH":
                            raise
        except IpvsError as exc:
            return Convergence(error=str(exc))
        drift = len(steps) if self._converged == desired else 0
        self._converged = desired
        return Convergence(repairs=drift, writes=len(steps), detail=tuple(map(str, steps)))


class TimeoutsConverger:
    """`ipvsadm --set tcp tcpfin udp`; a 0 field is left as the kernel has it."""

    kind = "timeouts"

    def __init__(self, link: IpvsSource, desired: Timeouts) -> None:
        self._link = link
        self.desired = desired
        self._converged: Timeouts | None = None

    async def converge(self) -> Convergence:
        desired = self.desired
        try:
            ipvs = await self._link.get()
            current = await ipvs.get_timeouts()
            differs = [
                f"{name} {getattr(current, name)} -> {getattr(desired, name)}"
                for name in ("tcp", "tcpfin", "udp")
                if getattr(desired, name) and getattr(desired, name) != getattr(current, name)
            ]
            if differs:
                await ipvs.set_timeouts(desired)
        except IpvsError as exc:
            return Convergence(error=str(exc))
        drift = 1 if differs and self._converged == desired else 0
        self._converged = desired
        return Convergence(repairs=drift, writes=1 if differs else 0, detail=tuple(differs))


class SysctlsConverger:
    """net.ipv4.vs.* (expire_nodest_conn, expire_quiescent_template, ...)."""

    kind = "sysctls"

    def __init__(self, desired: IpvsSysctls) -> None:
        self.desired = desired
        self._converged: IpvsSysctls | None = None

    async def converge(self) -> Convergence:
        desired = self.desired
        try:
            changes = apply_sysctls(desired)
        except IpvsSysctlError as exc:
            return Convergence(error=str(exc))
        drift = len(changes) if self._converged == desired else 0
        self._converged = desired
        return Convergence(
            repairs=drift,
            writes=len(changes),
            detail=tuple(f"{c.name} {c.old} -> {c.new}" for c in changes),
        )
