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

from collections.abc import Callable, Collection, Sequence
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


def plan(
    desired: Table,
    actual: Table,
    *,
    owned: Owned,
    purge_unowned: bool = False,
) -> list[Op]:
    """The ordered operations that turn ``actual`` into ``desired`` for the owned services.

    A desired service is always owned. Order: add services, edit services, add real servers,
    edit real servers, delete real servers, delete services; each group sorted by key.
    """
    is_owned = _owner(owned)
    add_svc: list[Op] = []
    edit_svc: list[Op] = []
    add_dest: list[Op] = []
    edit_dest: list[Op] = []
    del_dest: list[Op] = []
    del_svc: list[Op] = []

    for key in sorted(desired.keys()):
        want = desired.get(key)
        assert want is not None
        have = actual.get(key)
        if have is None:
            add_svc.append(AddService(want))
            add_dest.extend(AddDest(want, rs) for rs in _sorted_servers(want.real_servers))
            continue
        if want.settings() != have.settings():
            edit_svc.append(EditService(want, have))
        have_servers = have.servers_by_key
        for rs in _sorted_servers(want.real_servers):
            old = have_servers.get(rs.key)
            if old is None:
                add_dest.append(AddDest(want, rs))
            elif old.settings() != rs.settings():
                edit_dest.append(EditDest(want, rs, old))
        want_servers = want.servers_by_key
        del_dest.extend(
            DeleteDest(want, old)
            for old in _sorted_servers(have.real_servers)
            if old.key not in want_servers
        )

    for key in sorted(actual.keys()):
        if key in desired:
            continue
        if purge_unowned or is_owned(key):
            have = actual.get(key)
            assert have is not None
            del_svc.append(DeleteService(have))

    return add_svc + edit_svc + add_dest + edit_dest + del_dest + del_svc


def _sorted_servers(servers: Sequence[RealServer]) -> list[RealServer]:
    return sorted(servers, key=lambda rs: rs.key.sort_key())


def service_key_of(op: Op) -> ServiceKey:
    return op.service.key


def dest_key_of(op: Op) -> DestKey | None:
    if isinstance(op, AddDest | EditDest | DeleteDest):
        return op.dest.key
    return None
