"""An in-memory IPVS kernel for reconciler unit tests (the kernel tier proves the real one).

It answers ops with the errno conventions of net/netfilter/ipvs/ip_vs_ctl.c: EEXIST for a
duplicate, ESRCH for a missing service, ENOENT for a missing real server or scheduler module.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import replace

from hacontrol.ipvs.model import DestKey, RealServer, ServiceKey, Table, VirtualService
from hacontrol.ipvs.netlink import ApplyResult, OpFailure, describe_error
from hacontrol.ipvs.plan import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    Op,
)

KERNEL_SCHEDULERS = frozenset(
    ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf")
)


class FakeKernel:
    def __init__(self, table: Table | None = None) -> None:
        self.services: dict[ServiceKey, VirtualService] = {}
        self.dests: dict[ServiceKey, dict[DestKey, RealServer]] = {}
        self.writes = 0
        self.dumps = 0
        self.applied: list[Op] = []
        self.fail_dump: Exception | None = None
        for svc in table or Table():
            self.services[svc.key] = svc.without_servers()
            self.dests[svc.key] = dict(svc.servers_by_key)

    def table(self) -> Table:
        return Table.of(
            replace(svc, real_servers=tuple(self.dests[k].values()))
            for k, svc in self.services.items()
        )

    async def dump(self) -> Table:
        self.dumps += 1
        if self.fail_dump is not None:
            raise self.fail_dump
        return self.table()

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
