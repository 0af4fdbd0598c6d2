"""An in-memory IPVS kernel for unit tests (the kernel tier proves the real one).

It answers ops with the errno conventions of net/netfilter/ipvs/ip_vs_ctl.c: EEXIST for a
duplicate, ESRCH for a missing service, ENOENT for a missing real server or scheduler module.
Its sync daemons and timeouts follow ip_vs_ctl.c / ip_vs_sync.c too: EEXIST for a second daemon
in the same state, ESRCH for stopping one that is not running, ENODEV for an unknown interface,
the kernel's defaults filled in on start, and a 0 timeout left unchanged. It has the methods of
``netlink.AsyncIpvs`` that the reconciler and the sync-daemon controller use, and raises the same
errors (built by the transport's own functions).
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address

from hacontrol.ipvs.model import DestKey, RealServer, ServiceKey, Table, VirtualService
from hacontrol.ipvs.netlink import (
    ApplyResult,
    DestCounters,
    OpFailure,
    Snapshot,
    describe_error,
    start_daemon_error,
    stop_daemon_error,
)
from hacontrol.ipvs.plan import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    Op,
)
from hacontrol.ipvs.syncd import SyncDaemonConfig, SyncRole, Timeouts

KERNEL_SCHEDULERS = frozenset(
    ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf")
)


class FakeKernel:
    def __init__(self, table: Table | None = None) -> None:
        self.services: dict[ServiceKey, VirtualService] = {}
        self.dests: dict[ServiceKey, dict[DestKey, RealServer]] = {}
        self.writes = 0
        self.dumps = 0
        self.spread_asked: list[bool] = []
        self.applied: list[Op] = []
        self.fail_dump: Exception | None = None
        self.counters: dict[tuple[ServiceKey, DestKey], tuple[int, int]] = {}
        # Sync daemons by state, the interfaces of this "namespace", the global timeouts.
        self.daemons: dict[str, SyncDaemonConfig] = {}
        self.interfaces: set[str] = {"lo", "eth0", "eth1"}
        self.timeouts = Timeouts(900, 120, 300)  # the kernel's boot values
        self.daemon_calls: list[str] = []
        # Someone else stops this daemon right before our next stop arrives (a race).
        self.vanish_before_stop: str | None = None
        for svc in table or Table():
            self.services[svc.key] = svc.without_servers()
            self.dests[svc.key] = dict(svc.servers_by_key)

    def table(self) -> Table:
        return Table.of(
            replace(svc, real_servers=tuple(self.dests[k].values()))
            for k, svc in self.services.items()
        )

    async def dump(self, *, spread: bool = False) -> Table:
        """The whole table (``spread``, a transport's economy, is only recorded)."""
        self.dumps += 1
        self.spread_asked.append(spread)
        if self.fail_dump is not None:
            raise self.fail_dump
        return self.table()

    async def snapshot(self, *, spread: bool = False) -> Snapshot:
        """The table with connection counters (`counters[(service, dest)] = (active, inact)`)."""
        table = await self.dump(spread=spread)
        counts = {
            (svc.key, rs.key): self.counters.get((svc.key, rs.key), (0, 0))
            for svc in table
            for rs in svc.real_servers
        }
        return Snapshot(
            table,
            {},
            {key: DestCounters(a, i) for key, (a, i) in counts.items()},
        )

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        failures: list[OpFailure] = []
        for op in ops:
            self.writes += 1
            code = self._one(op)
            if code:
                failures.append(OpFailure(op, describe_error(op, code)))
            else:
                self.applied.append(op)
        return ApplyResult(len(ops) - len(failures), tuple(failures), len(ops))

    def _one(self, op: Op) -> int:
        key = op.service.key
        if isinstance(op, AddService):
            if key in self.services:
                return errno.EEXIST
            if op.service.scheduler not in KERNEL_SCHEDULERS:
                return errno.ENOENT
            self.services[key] = op.service.without_servers()
            self.dests[key] = {}
            return 0
        if isinstance(op, EditService):
            if key not in self.services:
                return errno.ESRCH
            if op.service.scheduler not in KERNEL_SCHEDULERS:
                return errno.ENOENT
            self.services[key] = op.service.without_servers()
            return 0
        if isinstance(op, DeleteService):
            if key not in self.services:
                return errno.ESRCH
            del self.services[key]
            del self.dests[key]
            return 0
        if key not in self.services:
            return errno.ESRCH
        dests = self.dests[key]
        dkey = op.dest.key
        if isinstance(op, AddDest):
            if dkey in dests:
                return errno.EEXIST
            dests[dkey] = op.dest
            return 0
        if dkey not in dests:
            return errno.ENOENT
        if isinstance(op, EditDest):
            dests[dkey] = op.dest
        else:
            assert isinstance(op, DeleteDest)
            del dests[dkey]
        return 0

    # -- sync daemons and timeouts (ip_vs_genl_new_daemon / del_daemon / dump_daemons)

    async def start_daemon(self, cfg: SyncDaemonConfig) -> None:
        self.daemon_calls.append(f"start {cfg.state}")
        if cfg.state in self.daemons:
            raise start_daemon_error(cfg, errno.EEXIST)
        if cfg.interface not in self.interfaces:
            raise start_daemon_error(cfg, errno.ENODEV)
        # start_sync_thread() fills in the defaults, which the dump then reports.
        self.daemons[cfg.state] = replace(
            cfg,
            maxlen=cfg.maxlen or 1472,
            group=cfg.group or IPv4Address("224.0.0.81"),
            port=cfg.port or 8848,
            ttl=cfg.ttl or 1,
        )

    async def stop_daemon(self, state: SyncRole) -> None:
        self.daemon_calls.append(f"stop {state}")
        if self.vanish_before_stop == state:
            self.vanish_before_stop = None
            self.daemons.pop(state, None)
        if state not in self.daemons:
            raise stop_daemon_error(state, errno.ESRCH)
        del self.daemons[state]

    async def get_daemons(self) -> list[SyncDaemonConfig]:
        return [self.daemons[s] for s in ("master", "backup") if s in self.daemons]

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        old = self.timeouts
        self.timeouts = Timeouts(
            timeouts.tcp or old.tcp, timeouts.tcpfin or old.tcpfin, timeouts.udp or old.udp
        )

    async def get_timeouts(self) -> Timeouts:
        return self.timeouts
