"""The runtime reconciler with the real convergers against the in-memory IPVS kernel.

Drift of each kind is repaired and counted as a repair (a change of the desired state is
not); failures are retried with backoff; nothing is ever flushed; an earlier run's
services are seen before the first plan. Time is a float the test moves.
"""

from __future__ import annotations

import errno
import ipaddress

from hacontrol.ipvs.errors import IpvsUnavailable
from hacontrol.ipvs.model import (
    DestKey,
    ForwardingMethod,
    RealServer,
    ServiceKey,
    Table,
    VirtualService,
)
from hacontrol.ipvs.netlink import Snapshot
from hacontrol.ipvs.syncd import SyncDaemonConfig, Timeouts
from hacontrol.runtime.kernel import (
    IpvsBackend,
    IpvsTableConverger,
    SyncDaemonConverger,
    TimeoutsConverger,
)
from hacontrol.runtime.reconciler import Reconciler
from tests.unit.ipvs_fake import FakeKernel

WEB = ServiceKey.of("tcp", "192.0.2.1", 80)
OLD = ServiceKey.of("tcp", "192.0.2.1", 8080)
OTHER = ServiceKey.of("tcp", "192.0.2.99", 22)


def rs(addr: str, weight: int = 1) -> RealServer:
    return RealServer(ipaddress.ip_address(addr), None, ForwardingMethod.DR, weight=weight)


def web(*servers: RealServer) -> VirtualService:
    return VirtualService(WEB, scheduler="wlc", real_servers=servers)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Link:
    """IpvsSource over the fake kernel; `down` makes it behave like a host without ip_vs."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        self.down = False
        self.resets = 0

    async def get(self) -> IpvsBackend:
        if self.down:
            raise IpvsUnavailable(errno.ENOENT)
        return self.kernel

    def reset(self) -> None:
        self.resets += 1


async def test_table_drift_is_repaired_and_counted_apart_from_applies() -> None:
    kernel = FakeKernel(Table.of([VirtualService(OTHER)]))
    clock = Clock()
    table = IpvsTableConverger(Link(kernel), Table.of([web(rs("198.51.100.1"))]))
    rec = Reconciler([table], interval=5.0, clock=clock)
    (first,) = await rec.run_due()
    assert first.ok and first.writes == 2 and first.repairs == 0  # applying, not repairing
    # Someone deletes our real server by hand: the next pass puts it back, as a repair.
    kernel.dests[WEB].clear()
    clock.now += 5.0
    (second,) = await rec.run_due()
    assert second.ok and second.repairs == 1
    assert second.detail == ("add real server 198.51.100.1:80 to service TCP 192.0.2.1:80",)
    # A new desired table is an apply again.
    table.set_desired(Table.of([web(rs("198.51.100.1", weight=3))]))
    rec.trigger("ipvs_table")
    (third,) = await rec.run_due()
    assert third.writes == 1 and third.repairs == 0
    # The stranger's service was never touched, and stopping flushes nothing.
    await rec.stop()
    assert set(kernel.services) == {WEB, OTHER}


async def test_ipvs_unavailable_is_retried_with_backoff_then_converges() -> None:
    kernel = FakeKernel()
    link = Link(kernel)
    link.down = True
    clock = Clock()
    table = IpvsTableConverger(link, Table.of([web(rs("198.51.100.1"))]))
    rec = Reconciler([table], interval=30.0, retry_base=1.0, retry_max=8.0, clock=clock)
    (r,) = await rec.run_due()
    assert not r.ok and "modprobe ip_vs" in (r.error or "")
    assert r.next_attempt_in == 1.0
    clock.now += 1.0
    (r,) = await rec.run_due()
    assert r.next_attempt_in == 2.0
    link.down = False  # the module got loaded
    clock.now += 2.0
    (r,) = await rec.run_due()
    assert r.ok and set(kernel.services) == {WEB}


async def test_an_earlier_runs_services_are_seen_before_the_first_plan() -> None:
    kernel = FakeKernel(Table.of([web(rs("198.51.100.1")), VirtualService(OLD)]))
    seen: list[Snapshot] = []
    kept = Table.of([web(rs("198.51.100.1")), VirtualService(OLD, scheduler="wlc")])

    def seed(snap: Snapshot) -> None:
        seen.append(snap)
        table.set_desired(kept)  # the runtime keeps OLD while it drains

    table = IpvsTableConverger(
        Link(kernel), Table.of([web(rs("198.51.100.1"))]), owned={OLD}, before_first_pass=seed
    )
    rec = Reconciler([table], clock=Clock())
    (r,) = await rec.run_due()
    assert len(seen) == 1 and seen[0].table.get(OLD) is not None
    assert r.ok and OLD in kernel.services  # not deleted by the first plan
    # Once no longer desired, a service an earlier run owned is deleted.
    table.set_desired(Table.of([web(rs("198.51.100.1"))]))
    rec.trigger()
    (r,) = await rec.run_due()
    assert set(kernel.services) == {WEB}
    rec.trigger()
    await rec.run_due()
    assert table.owned_now() == {WEB}  # gone from the kernel: no longer ours


async def test_a_sync_daemon_stopped_by_hand_comes_back_as_a_repair() -> None:
    kernel = FakeKernel()
    clock = Clock()
    master = SyncDaemonConfig(state="master", interface="eth0", syncid=7)
    sync = SyncDaemonConverger(Link(kernel), master)
    rec = Reconciler([sync], interval=5.0, clock=clock)
    (r,) = await rec.run_due()
    assert r.ok and r.writes == 1 and r.repairs == 0 and set(kernel.daemons) == {"master"}
    del kernel.daemons["master"]  # ipvsadm --stop-daemon master
    clock.now += 5.0
    (r,) = await rec.run_due()
    assert r.repairs == 1 and set(kernel.daemons) == {"master"}
    # VRRP went BACKUP: the role changes (an apply, not a repair).
    sync.desired = SyncDaemonConfig(state="backup", interface="eth0", syncid=7)
    rec.trigger("sync_daemon")
    (r,) = await rec.run_due()
    assert r.writes == 2 and r.repairs == 0 and set(kernel.daemons) == {"backup"}


async def test_a_sync_daemon_that_cannot_start_is_retried_with_backoff() -> None:
    kernel = FakeKernel()
    kernel.interfaces.discard("eth1")
    clock = Clock()
    sync = SyncDaemonConverger(
        Link(kernel), SyncDaemonConfig(state="backup", interface="eth1", syncid=1)
    )
    rec = Reconciler([sync], interval=60.0, retry_base=2.0, clock=clock)
    (r,) = await rec.run_due()
    assert not r.ok and "ENODEV" in (r.error or "") and r.next_attempt_in == 2.0
    kernel.interfaces.add("eth1")
    clock.now += 2.0
    (r,) = await rec.run_due()
    assert r.ok and set(kernel.daemons) == {"backup"}


async def test_timeouts_changed_by_hand_are_put_back_and_zero_fields_left_alone() -> None:
    kernel = FakeKernel()
    clock = Clock()
    rec = Reconciler([TimeoutsConverger(Link(kernel), Timeouts(60, 0, 0))], clock=clock)
    (r,) = await rec.run_due()
    assert r.writes == 1 and kernel.timeouts == Timeouts(60, 120, 300)
    kernel.timeouts = Timeouts(900, 30, 300)  # ipvsadm --set 900 30 300
    clock.now += 10.0
    (r,) = await rec.run_due()
    assert r.repairs == 1 and kernel.timeouts == Timeouts(60, 30, 300)
    clock.now += 10.0
    (r,) = await rec.run_due()
    assert r.writes == 0 and r.repairs == 0


async def test_counters_come_from_the_passes_own_dump_not_another() -> None:
    """Metrics take the reconciler's dump (with counters) rather than dumping again: one
    dump per pass, handed over whole, and none with counters when nobody wants them."""
    kernel = FakeKernel(Table.of([web(rs("198.51.100.1"))]))
    dest = DestKey(ipaddress.ip_address("198.51.100.1"), 80)
    kernel.counters[(WEB, dest)] = (4, 9)
    clock = Clock()
    wanted = [True]
    seen: list[Snapshot] = []
    table = IpvsTableConverger(
        Link(kernel),
        Table.of([web(rs("198.51.100.1"))]),
        want_counters=lambda: wanted[0],
        on_snapshot=seen.append,
    )
    rec = Reconciler([table], interval=5.0, clock=clock)
    for _ in range(3):
        (r,) = await rec.run_due()
        assert r.ok
        clock.now += 5.0
    assert kernel.dumps == 3 and len(seen) == 3
    counters = seen[-1].dest_counters[(WEB, dest)]
    assert (counters.active_conns, counters.inact_conns) == (4, 9)
    wanted[0] = False
    await rec.run_due()
    assert kernel.dumps == 4 and len(seen) == 3


async def test_each_pass_asks_for_a_spread_dump_only_while_allowed() -> None:
    """`spread_dumps` is asked at every pass, with counters or without (a drain turns it off
    between two passes: hacontrol/lvs.py)."""
    kernel = FakeKernel(Table.of([web(rs("198.51.100.1"))]))
    clock = Clock()
    allowed = [True]
    counters = [False]
    table = IpvsTableConverger(
        Link(kernel),
        Table.of([web(rs("198.51.100.1"))]),
        want_counters=lambda: counters[0],
        on_snapshot=lambda snap: None,
        spread_dumps=lambda: allowed[0],
    )
    rec = Reconciler([table], interval=5.0, clock=clock)
    for allow, count in ((True, False), (False, False), (True, True), (False, True)):
        allowed[0], counters[0] = allow, count
        (r,) = await rec.run_due()
        assert r.ok
        clock.now += 5.0
    assert kernel.spread_asked == [True, False, True, False]
    # The default (tests, tools): whole dumps.
    other = FakeKernel()
    await Reconciler([IpvsTableConverger(Link(other), Table())], interval=5.0).run_due()
    assert other.spread_asked == [False]
