"""What the VRRP engine publishes: typed, frozen events for whoever listens.

The engine (vrrp/io.py) takes one `publish` callable and hands it these values; it never
knows who listens (metrics, logs, notify hooks, the daemon's read model, a parent process
on the other end of a socket). Everything here is a plain value that pickles, so the same
events cross the boundary between the VRRP process and the daemon unchanged.

Per-packet figures are not events (thousands a second): the engine counts them in plain
integers and publishes a cumulative `VrrpCounters` snapshot now and then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vrrp.types import IPAddress, Reason, State


@dataclass(frozen=True, slots=True)
class InstanceStateChanged:
    """The one event of a state change (the fsm's `StateChanged` with its context)."""

    instance: str
    interface: str
    vrid: int
    old: State
    new: State
    reason: Reason
    priority: int  # configured (base) priority
    effective_priority: int  # base + tracking, what adverts carry
    # "ipv4" or "ipv6": with the VRID and the LAN it names the virtual router (RFC 5798 §5.2.3:
    # an IPv4 and an IPv6 virtual router may share a VRID on one interface).
    family: str = "ipv4"


@dataclass(frozen=True, slots=True)
class PriorityChanged:
    instance: str
    priority: int
    effective_priority: int


@dataclass(frozen=True, slots=True)
class MasterChanged:
    """Who this instance believes is master: `address` None while nobody is heard.

    A master reports its own advert source; a backup the source of the adverts it follows.
    """

    instance: str
    address: IPAddress | None
    priority: int | None
    ours: bool


@dataclass(frozen=True, slots=True)
class FaultsChanged:
    """Why an instance is held in FAULT (empty: nothing holds it there any more).

    Reasons are stable words: `no_such_interface`, `link_down`, `no_source_address`,
    `track_KIND:NAME` (a tracked item with weight 0 is down: `track_script:chk_web`) and
    `sync_group` (held in FAULT by its sync group).
    `dev_link_down` (the interface of a VIP's or route's `dev` is down or absent),
    `vmac_missing` (the instance's VMAC macvlan is not there, or not usable as one).
    """

    instance: str
    interface: str
    faults: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrackedItemStatus:
    """One tracked item of an instance as it stands (vrrp/track.py's ItemState, flattened).

    `state`: `up`, `down` or `pending` (no verdict yet); `value`: a track file's number.
    `effect`: `none`, `priority` (adds `delta`), `fault` (holds FAULT) or `pending`.
    """

    kind: str  # interface, script, file, process
    name: str
    weight: int
    reverse: bool
    state: str
    value: int | None
    effect: str
    delta: int


@dataclass(frozen=True, slots=True)
class TrackingChanged:
    """What an instance's tracked items do to it now (published when any of it changes)."""

    instance: str
    items: tuple[TrackedItemStatus, ...]
    effective_priority: int


@dataclass(frozen=True, slots=True)
class SyncGroupStateChanged:
    """A sync group's state changed (keepalived's `VRRP_Group(NAME)` transitions).

    `new` is FAULT while any member is in FAULT, MASTER when every member is MASTER, INIT
    before any has started, BACKUP otherwise. `reason` names the member transition that
    moved the group, `MEMBER:REASON` (`VI_2:interface_down`), or `configured` when a reload
    changed the group itself. Published after the state changes every member made in the
    same round (keepalived's order: a group's notify line follows its members' lines).
    """

    group: str
    old: State
    new: State
    reason: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HoldChanged:
    """An operator's step-down hold was set or released (`hacontrol step-down/release`)."""

    instance: str
    held: bool


@dataclass(frozen=True, slots=True)
class VipRepaired:
    """A VIP of a master instance was found missing (deleted by hand) and added again."""

    instance: str
    interface: str
    address: str


@dataclass(frozen=True, slots=True)
class RouteRepaired:
    """A virtual route or rule of a master instance was found missing (deleted by hand, or
    flushed by the kernel with an address it used) and added again. `kind`: route, rule."""

    instance: str
    kind: str
    item: str


@dataclass(frozen=True, slots=True)
class InstanceCounters:
    adverts_sent: int = 0
    adverts_received: int = 0
    garp_sent: int = 0
    address_mismatch: int = 0
    # action -> failures: send_advert, add_address, remove_address, send_garp, add_route,
    # remove_route, add_rule, remove_rule, vmac
    errors: Mapping[str, int] = field(default_factory=dict)
    # Advertisement_Intervals a master let pass without an advert (a stall): last, so
    # the positional arguments an older VRRP process pickled still fit (`restart`).
    intervals_missed: int = 0

    def __reduce__(self) -> tuple[type[InstanceCounters], tuple[Any, ...]]:
        # The VRRP process pickles one of these per instance every second; the default
        # for a slotted dataclass (a state dict, set back field by field) costs three
        # times as much both ways as the constructor's arguments.
        return (
            InstanceCounters,
            (
                self.adverts_sent,
                self.adverts_received,
                self.garp_sent,
                self.address_mismatch,
                self.errors,
                self.intervals_missed,
            ),
        )


@dataclass(frozen=True, slots=True)
class VrrpCounters:
    """Cumulative figures since the engine started."""

    instances: Mapping[str, InstanceCounters]
    # (interface, reason) -> packets dropped
    drops: Mapping[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class ReconfigureResult:
    """What `VrrpEngine.configure()` did with a new set of instances.

    `updated`: kept their state and took the new settings in place; `restarted`: their
    identity (interface, family, VRID) changed, so they were stopped and started anew;
    `unchanged`, `added`, `removed` as they say; `errors`: instance -> why it was refused.
    """

    unchanged: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)


VrrpEvent = (
    InstanceStateChanged
    | PriorityChanged
    | MasterChanged
    | FaultsChanged
    | HoldChanged
    | TrackingChanged
    | SyncGroupStateChanged
    | VipRepaired
    | RouteRepaired
    | VrrpCounters
    | ReconfigureResult
)
