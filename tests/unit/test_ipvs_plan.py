"""The pure planner: fewest writes, in-place edits, ownership, make-before-break order."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from hacontrol.ipvs.model import ForwardingMethod, RealServer, ServiceKey, Table, VirtualService
from hacontrol.ipvs.plan import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    Op,
    PlanMemo,
    plan,
)
from tests.unit.ipvs_fake import FakeKernel

DR = ForwardingMethod.DR
NAT = ForwardingMethod.NAT
WEB = ServiceKey.of("tcp", "192.0.2.1", 80)
DNS = ServiceKey.of("udp", "192.0.2.1", 53)
MARK = ServiceKey.of_fwmark(7)


def rs(addr: str, port: int | None = None, **kw: object) -> RealServer:
    return RealServer(ipaddress.ip_address(addr), port, **kw)  # type: ignore[arg-type]


def web(*servers: RealServer, **kw: object) -> VirtualService:
    return VirtualService(WEB, real_servers=servers, **kw)  # type: ignore[arg-type]


def names(ops: Sequence[object]) -> list[str]:
    return [str(o) for o in ops]


def test_equal_tables_need_nothing() -> None:
    t = Table.of([web(rs("198.51.100.1"), rs("198.51.100.2")), VirtualService(DNS)])
    same = Table.of([VirtualService(DNS), web(rs("198.51.100.2"), rs("198.51.100.1"))])
    assert plan(t, same, owned=t.keys()) == []
    assert plan(Table(), Table(), owned=()) == []


def test_from_empty_adds_services_then_servers() -> None:
    t = Table.of([web(rs("198.51.100.2"), rs("198.51.100.1")), VirtualService(DNS)])
    ops = plan(t, Table(), owned=())
    assert names(ops) == [
        "add service TCP 192.0.2.1:80",
        "add service UDP 192.0.2.1:53",
        "add real server 198.51.100.1:80 to service TCP 192.0.2.1:80",
        "add real server 198.51.100.2:80 to service TCP 192.0.2.1:80",
    ]
    add = ops[0]
    assert isinstance(add, AddService)


def test_one_weight_change_is_exactly_one_edit() -> None:
    actual = Table.of([web(rs("198.51.100.1"), rs("198.51.100.2"))])
    desired = Table.of([web(rs("198.51.100.1"), rs("198.51.100.2", weight=0))])
    ops = plan(desired, actual, owned=())
    assert len(ops) == 1
    op = ops[0]
    assert isinstance(op, EditDest)
    assert op.dest.weight == 0 and op.before.weight == 1


def test_changed_settings_are_edits_never_delete_and_add() -> None:
    actual = Table.of([web(rs("198.51.100.1", forwarding=DR), scheduler="wlc")])
    desired = Table.of(
        [
            web(
                rs("198.51.100.1", forwarding=DR, upper_threshold=10),
                scheduler="rr",
                persistence_timeout=300,
            )
        ]
    )
    ops = plan(desired, actual, owned=())
    assert [type(o) for o in ops] == [EditService, EditDest]
    # Forwarding method too is edited in place (IPVS_CMD_SET_DEST updates conn_flags).
    nat = Table.of([web(rs("198.51.100.1", 80, forwarding=NAT), scheduler="wlc")])
    assert [type(o) for o in plan(nat, actual, owned=())] == [EditDest]


def test_removed_server_is_deleted_and_removed_owned_service_is_one_delete() -> None:
    actual = Table.of(
        [
            web(rs("198.51.100.1"), rs("198.51.100.2")),
            VirtualService(DNS, real_servers=(rs("198.51.100.3"), rs("198.51.100.4"))),
        ]
    )
    desired = Table.of([web(rs("198.51.100.1"))])
    ops = plan(desired, actual, owned={WEB, DNS})
    # The kernel unlinks a deleted service's servers itself: no DeleteDest for DNS's.
    assert names(ops) == [
        "delete real server 198.51.100.2:80 of service TCP 192.0.2.1:80",
        "delete service UDP 192.0.2.1:53",
    ]


def test_unowned_services_are_left_alone_unless_purged() -> None:
    stranger = VirtualService(DNS, real_servers=(rs("198.51.100.9"),))
    actual = Table.of([web(rs("198.51.100.1")), stranger])
    desired = Table.of([web(rs("198.51.100.1"))])
    assert plan(desired, actual, owned={WEB}) == []
    assert plan(desired, actual, owned=lambda key: key == WEB) == []
    assert plan(desired, actual, owned=[WEB]) == []
    purge = plan(desired, actual, owned={WEB}, purge_unowned=True)
    assert [type(o) for o in purge] == [DeleteService]
    assert plan(desired, actual, owned=lambda key: True) == purge


def test_servers_inside_a_desired_service_are_ours() -> None:
    # Even a service we were not told we own: once desired, every server in it is managed.
    actual = Table.of([web(rs("198.51.100.1"), rs("198.51.100.8"))])
    desired = Table.of([web(rs("198.51.100.1"))])
    ops = plan(desired, actual, owned=())
    assert [type(o) for o in ops] == [DeleteDest]


def test_make_before_break_order() -> None:
    actual = Table.of(
        [
            web(rs("198.51.100.1"), rs("198.51.100.2")),
            VirtualService(MARK, real_servers=(rs("198.51.100.5"),)),
        ]
    )
    desired = Table.of(
        [
            web(rs("198.51.100.3"), rs("198.51.100.2", weight=4), scheduler="rr"),
            VirtualService(DNS, real_servers=(rs("198.51.100.4"),)),
        ]
    )
    ops = plan(desired, actual, owned={MARK})
    assert [type(o) for o in ops] == [
        AddService,  # DNS
        EditService,  # WEB scheduler
        AddDest,  # WEB .3 and DNS .4
        AddDest,
        EditDest,  # WEB .2 weight
        DeleteDest,  # WEB .1, only after .3 is in
        DeleteService,  # MARK
    ]


def test_key_change_is_add_then_delete() -> None:
    actual = Table.of([web(rs("198.51.100.1"))])
    moved = ServiceKey.of("tcp", "192.0.2.1", 8080)
    desired = Table.of([VirtualService(moved, real_servers=(rs("198.51.100.1", 80),))])
    ops = plan(desired, actual, owned={WEB})
    assert names(ops) == [
        "add service TCP 192.0.2.1:8080",
        "add real server 198.51.100.1:80 to service TCP 192.0.2.1:8080",
        "delete service TCP 192.0.2.1:80",
    ]


# --- property: applying the plan reaches the desired table, and only what differs is written --

addresses = st.sampled_from([f"198.51.100.{i}" for i in range(1, 6)])
servers = st.builds(
    lambda a, w, fwd: rs(a, forwarding=fwd, weight=w),
    addresses,
    st.integers(0, 3),
    st.sampled_from([DR, NAT]),
)
keys = st.sampled_from([WEB, DNS, MARK, ServiceKey.of("tcp", "192.0.2.2", 443)])
services = st.builds(
    lambda k, sched, srv: VirtualService(
        k, scheduler=sched, real_servers=tuple({s.key: s for s in srv}.values())
    ),
    keys,
    st.sampled_from(["rr", "wlc"]),
    st.lists(servers, max_size=4),
)
tables = st.lists(services, max_size=4).map(
    lambda svcs: Table.of({s.key: s for s in svcs}.values())
)


def _differences(desired: Table, actual: Table) -> int:
    n = 0
    for svc in desired:
        have = actual.get(svc.key)
        if have is None:
            n += 1 + len(svc.real_servers)
            continue
        n += svc.settings() != have.settings()
        for k, r in svc.servers_by_key.items():
            old = have.servers_by_key.get(k)
            n += old is None or old.settings() != r.settings()
        n += sum(1 for k in have.servers_by_key if k not in svc.servers_by_key)
    n += sum(1 for svc in actual if svc.key not in desired)
    return n


@settings(max_examples=200, deadline=None)
@given(desired=tables, actual=tables)
def test_plan_reaches_desired_with_one_write_per_difference(desired: Table, actual: Table) -> None:
    kernel = FakeKernel(actual)
    ops = plan(desired, actual, owned=lambda key: True)
    result = asyncio.run(kernel.apply(ops))
    assert result.ok, [str(f.error) for f in result.failures]
    assert kernel.table() == desired
    assert len(ops) == _differences(desired, actual)
    assert plan(desired, kernel.table(), owned=lambda key: True) == []


def _reference_plan(
    desired: Table, actual: Table, is_owned: Callable[[ServiceKey], bool]
) -> list[Op]:
    """The planner as first written: every key sorted, then compared (the order to keep)."""
    groups: list[list[Op]] = [[], [], [], [], [], []]
    order = lambda rs: rs.key.sort_key()  # noqa: E731
    for key in sorted(desired.keys()):
        want = desired.get(key)
        assert want is not None
        have = actual.get(key)
        if have is None:
            groups[0].append(AddService(want))
            groups[2].extend(AddDest(want, r) for r in sorted(want.real_servers, key=order))
            continue
        if want.settings() != have.settings():
            groups[1].append(EditService(want, have))
        for r in sorted(want.real_servers, key=order):
            old = have.servers_by_key.get(r.key)
            if old is None:
                groups[2].append(AddDest(want, r))
            elif old.settings() != r.settings():
                groups[3].append(EditDest(want, r, old))
        groups[4].extend(
            DeleteDest(want, old)
            for old in sorted(have.real_servers, key=order)
            if old.key not in want.servers_by_key
        )
    for key in sorted(actual.keys()):
        if key not in desired and is_owned(key):
            have = actual.get(key)
            assert have is not None
            groups[5].append(DeleteService(have))
    return [op for g in groups for op in g]


@settings(max_examples=200, deadline=None)
@given(desired=tables, actual=tables, owned=st.sets(keys))
def test_plan_keeps_the_order_of_sorting_every_key(
    desired: Table, actual: Table, owned: set[ServiceKey]
) -> None:
    # The planner sorts only the ops it finds; the order must be the same as sorting all keys.
    assert plan(desired, actual, owned=owned) == _reference_plan(
        desired, actual, owned.__contains__
    )


def test_memo_replans_nothing_for_the_same_tables_but_ownership_still_counts() -> None:
    desired = Table.of([web(rs("198.51.100.1", weight=2))])
    actual = Table.of([web(rs("198.51.100.1", weight=1)), VirtualService(DNS, scheduler="rr")])
    memo = PlanMemo()
    first = plan(desired, actual, owned=(), memo=memo)
    assert names(first) == ["edit real server 198.51.100.1:80 of service TCP 192.0.2.1:80"]
    assert memo.desired is desired and memo.actual is actual
    # Same objects: the memo's ops, not a new comparison (a table that lies proves it).
    memo.kept = ([], [], [], [], [])
    assert plan(desired, actual, owned=(), memo=memo) == []
    # Ownership is asked again every time: DNS adopted meanwhile is deleted.
    assert names(plan(desired, actual, owned={DNS}, memo=memo)) == [
        "delete service UDP 192.0.2.1:53"
    ]
    # Another actual table (drift) is compared afresh.
    drifted = Table.of([web(rs("198.51.100.1", weight=3))])
    assert names(plan(desired, drifted, owned=(), memo=memo)) == names(first)
    assert memo.actual is drifted
