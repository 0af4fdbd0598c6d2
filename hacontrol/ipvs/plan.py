"""The pure IPVS planner: desired table + actual table -> the fewest kernel writes, in order.

Rules (kube-proxy's IPVS proxier and keepalived's reload both follow the first two):

- A changed setting is an in-place edit (IPVS_CMD_SET_SERVICE / SET_DEST): the kernel keeps the
  service, its counters and its connection entries. Delete + add would drop them.
- Only services the caller owns are touched; a service someone else made (``ipvsadm``, another
  daemon) stays unless ``purge_unowned``. Inside an owned service every real server is ours:
  an undesired one is deleted.
- Make before break: adds and edits come before deletes, so a service whose real servers are
  being replaced never passes through an empty state.
- A removed service is one IPVS_CMD_DEL_SERVICE: the kernel unlinks its real servers with it
  (ip_vs_ctl.c ``__ip_vs_del_service``), so deleting them first would only add writes.
- Counters never take part: the tables compared hold settings only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from hacontrol.ipvs.model import DestKey, RealServer, ServiceKey, Table, VirtualService


@dataclass(frozen=True, slots=True)
class AddService:
    service: VirtualService

    def __str__(self) -> str:
        return f"add service {self.service.key}"


@dataclass(frozen=True, slots=True)
class EditService:
    service: VirtualService
    before: VirtualService

    def __str__(self) -> str:
        return f"edit service {self.service.key}"


@dataclass(frozen=True, slots=True)
class DeleteService:
    service: VirtualService

    def __str__(self) -> str:
        return f"delete service {self.service.key}"


@dataclass(frozen=True, slots=True)
class AddDest:
    service: VirtualService
    dest: RealServer

    def __str__(self) -> str:
        return f"add real server {self.dest.key} to service {self.service.key}"


@dataclass(frozen=True, slots=True)
class EditDest:
    service: VirtualService
    dest: RealServer
    before: RealServer

    def __str__(self) -> str:
        return f"edit real server {self.dest.key} of service {self.service.key}"


@dataclass(frozen=True, slots=True)
class DeleteDest:
    service: VirtualService
    dest: RealServer

    def __str__(self) -> str:
        return f"delete real server {self.dest.key} of service {self.service.key}"


Op = AddService | EditService | DeleteService | AddDest | EditDest | DeleteDest
Owned = Callable[[ServiceKey], bool] | Collection[ServiceKey]


def _owner(owned: Owned) -> Callable[[ServiceKey], bool]:
    if callable(owned):
        return owned
    keys = owned if isinstance(owned, set | frozenset | dict) else frozenset(owned)
    return keys.__contains__


@dataclass
class PlanMemo:
    """The previous plan's tables and what it found, so a pass whose tables are the very same
    objects is not compared again (a no-drift pass: the dump hands back the table it made
    last time when the kernel's bytes did not change, hacontrol/ipvs/netlink.py).

    Tables are frozen, so the same two objects always give the same ops for the desired
    services. Deleting the services that are only in the kernel depends on ownership, which
    can change between passes (``adopt``), so that part is re-planned every time.
    """

    desired: Table | None = None
    actual: Table | None = None
    kept: tuple[list[Op], ...] = ()  # the desired services' op groups
    extra: tuple[ServiceKey, ...] = ()  # services only in the kernel, sorted


def plan(
    desired: Table,
    actual: Table,
    *,
    owned: Owned,
    purge_unowned: bool = False,
    memo: PlanMemo | None = None,
) -> list[Op]:
    """The ordered operations that turn ``actual`` into ``desired`` for the owned services.

    A desired service is always owned. Order: add services, edit services, add real servers,
    edit real servers, delete real servers, delete services; each group sorted by key.
    ``memo`` (kept by the caller between passes) skips comparing tables compared last time.
    """
    is_owned = _owner(owned)
    if memo is not None and memo.desired is desired and memo.actual is actual:
        groups, extra = memo.kept, memo.extra
    else:
        groups = _desired_ops(desired, actual)
        extra = tuple(sorted(actual.keys() - desired.keys(), key=_service_order))
        if memo is not None:
            memo.desired, memo.actual, memo.kept, memo.extra = desired, actual, groups, extra
    del_svc: list[Op] = []
    for key in extra:
        if purge_unowned or is_owned(key):
            have = actual.get(key)
            assert have is not None
            del_svc.append(DeleteService(have))
    out: list[Op] = []
    for group in groups:
        out.extend(group)
    out.extend(del_svc)
    return out


def _service_order(key: ServiceKey) -> tuple[int, int, int, int, int]:
    return key.sort_key()


_Order = tuple[tuple[int, ...], tuple[int, ...]]  # (service key order, server key order)


def _desired_ops(desired: Table, actual: Table) -> tuple[list[Op], ...]:
    """The op groups of the desired services, each sorted (service key, then server key).

    The loop runs in table order and only the ops found are sorted: in a pass with little to
    do, sorting every key would cost more than comparing.
    """
    add_svc: list[tuple[_Order, Op]] = []
    edit_svc: list[tuple[_Order, Op]] = []
    add_dest: list[tuple[_Order, Op]] = []
    edit_dest: list[tuple[_Order, Op]] = []
    del_dest: list[tuple[_Order, Op]] = []

    for want in desired:
        key = want.key
        have = actual.get(key)
        if have is None:
            order = key.sort_key()
            add_svc.append(((order, ()), AddService(want)))
            add_dest.extend(
                ((order, rs.key.sort_key()), AddDest(want, rs)) for rs in want.real_servers
            )
            continue
        if want.settings() != have.settings():
            edit_svc.append(((key.sort_key(), ()), EditService(want, have)))
        have_servers = have.servers_by_key
        found = 0
        for rs in want.real_servers:
            old = have_servers.get(rs.key)
            if old is None:
                add_dest.append(((key.sort_key(), rs.key.sort_key()), AddDest(want, rs)))
                continue
            found += 1
            if old.settings() != rs.settings():
                edit_dest.append(((key.sort_key(), rs.key.sort_key()), EditDest(want, rs, old)))
        if found != len(have_servers):  # the kernel has servers the config does not name
            want_servers = want.servers_by_key
            del_dest.extend(
                ((key.sort_key(), old.key.sort_key()), DeleteDest(want, old))
                for old in have.real_servers
                if old.key not in want_servers
            )
    return tuple(
        [op for _, op in sorted(group, key=_order_of)]
        for group in (add_svc, edit_svc, add_dest, edit_dest, del_dest)
    )


def _order_of(item: tuple[_Order, Op]) -> _Order:
    return item[0]


def service_key_of(op: Op) -> ServiceKey:
    return op.service.key


def dest_key_of(op: Op) -> DestKey | None:
    if isinstance(op, AddDest | EditDest | DeleteDest):
        return op.dest.key
    return None
