"""The reconciler's logic against the in-memory fake kernel (tests/kernel proves the real one)."""

from __future__ import annotations

import errno
import ipaddress

from hacontrol.ipvs.model import (
    DestKey,
    ForwardingMethod,
    RealServer,
    ServiceKey,
    Table,
    VirtualService,
)
from hacontrol.ipvs.plan import AddService, DeleteService, EditDest
from hacontrol.ipvs.reconcile import PassResult, Reconciler
from tests.unit.ipvs_fake import FakeKernel

WEB = ServiceKey.of("tcp", "192.0.2.1", 80)
DNS = ServiceKey.of("udp", "192.0.2.1", 53)
OTHER = ServiceKey.of("tcp", "192.0.2.99", 22)


def rs(addr: str, **kw: object) -> RealServer:
    return RealServer(ipaddress.ip_address(addr), None, ForwardingMethod.DR, **kw)  # type: ignore[arg-type]


def web(*servers: RealServer, scheduler: str = "wlc") -> VirtualService:
    return VirtualService(WEB, scheduler=scheduler, real_servers=servers)


async def test_first_pass_adopts_without_recreating() -> None:
    kernel = FakeKernel(
        Table.of([web(rs("198.51.100.1"), rs("198.51.100.2")), VirtualService(OTHER)])
    )
    desired = Table.of([web(rs("198.51.100.1"), rs("198.51.100.2", weight=5))])
    rec = Reconciler(kernel, desired)
    res = await rec.reconcile_once()
    assert res.ok
    assert [type(o) for o in res.ops] == [EditDest]  # no flush, no delete + add
    assert kernel.writes == 1
    assert OTHER in kernel.services  # not ours
    again = await rec.reconcile_once()
    assert again.ops == () and kernel.writes == 1
    assert rec.counters.passes == 2 and rec.counters.ops == 1


async def test_failed_ops_are_counted_and_retried_next_pass() -> None:
    kernel = FakeKernel()
    broken = VirtualService(DNS, scheduler="nosuch", real_servers=(rs("198.51.100.3"),))
    rec = Reconciler(kernel, Table.of([web(rs("198.51.100.1")), broken]))
    p1 = await rec.reconcile_once()
    assert not p1.ok
    assert {f.error.errno for f in p1.failures} == {errno.ENOENT, errno.ESRCH}
    assert "scheduler 'nosuch' not found" in str(p1.failures[0].error)
    assert WEB in kernel.services  # the rest applied
    p2 = await rec.reconcile_once()
    assert [str(o) for o in p2.ops] == [
        "add service UDP 192.0.2.1:53",
        "add real server 198.51.100.3:53 to service UDP 192.0.2.1:53",
    ]
    assert rec.counters.failures == 4
    assert rec.counters.failures_by_errno == {"ENOENT": 2, "ESRCH": 2}
    rec.set_desired(
        Table.of(
            [
                web(rs("198.51.100.1")),
                VirtualService(DNS, scheduler="rr", real_servers=(rs("198.51.100.3"),)),
            ]
        )
    )
    p3 = await rec.reconcile_once()
    assert p3.ok and len(p3.ops) == 2


async def test_drift_is_repaired() -> None:
    desired = Table.of([web(rs("198.51.100.1"), rs("198.51.100.2"))])
    kernel = FakeKernel()
    rec = Reconciler(kernel, desired)
    await rec.reconcile_once()
    del kernel.dests[WEB][DestKey(ipaddress.ip_address("198.51.100.1"), 80)]
    kernel.services[WEB] = VirtualService(WEB, scheduler="rr")
    res = await rec.reconcile_once()
    assert sorted(type(o).__name__ for o in res.ops) == ["AddDest", "EditService"]
    assert kernel.table() == desired


async def test_service_dropped_from_desired_is_deleted_but_strangers_stay() -> None:
    kernel = FakeKernel(Table.of([VirtualService(OTHER)]))
    rec = Reconciler(kernel, Table.of([web(), VirtualService(DNS)]))
    await rec.reconcile_once()
    rec.set_desired(Table.of([web()]))
    res = await rec.reconcile_once()
    assert [type(o) for o in res.ops] == [DeleteService]
    assert set(kernel.services) == {WEB, OTHER}
    # Once gone, it is no longer ours: re-made by hand, it stays.
    await rec.reconcile_once()
    kernel.services[DNS] = VirtualService(DNS)
    kernel.dests[DNS] = {}
    assert (await rec.reconcile_once()).ops == ()
    # Unless the caller says it owns it.
    rec.set_desired(Table.of([web()]), owned={DNS})
    assert [type(o) for o in (await rec.reconcile_once()).ops] == [DeleteService]


async def test_purge_unowned() -> None:
    kernel = FakeKernel(Table.of([VirtualService(OTHER)]))
    rec = Reconciler(kernel, Table.of([web()]), purge_unowned=True)
    res = await rec.reconcile_once()
    assert sorted(type(o).__name__ for o in res.ops) == ["AddService", "DeleteService"]
    assert set(kernel.services) == {WEB}


async def test_a_dump_failure_is_a_counted_pass_error_not_a_crash() -> None:
    kernel = FakeKernel()
    kernel.fail_dump = OSError(errno.EPERM, "Operation not permitted")
    seen: list[PassResult] = []
    rec = Reconciler(kernel, Table.of([web()]), on_pass=seen.append)
    res = await rec.reconcile_once()
    assert res.error is not None and "Operation not permitted" in res.error
    assert rec.counters.pass_errors == 1 and seen == [res]
    kernel.fail_dump = None
    assert (await rec.reconcile_once()).ok
    assert [type(o) for o in seen[1].ops] == [AddService]
