"""The asyncio adapter of the VRRP engine: sockets, timers and VIPs around the sans-IO core.

`VrrpEngine` owns, for every interface its instances use, one raw VRRP socket per address
family (instances on the same interface share it and are told apart by VRID), an AF_PACKET
socket for gratuitous ARP / unsolicited NA, the VIPs (through route netlink) and one timer
per instance (instances due at the same instant share a `loop.call_at` handle). It feeds
each `vrrp.fsm.Instance` the loop's monotonic time, performs the actions the instance
returns, in order, and re-arms the timer from `get_timer()` after every input.

What it reports goes to one `publish` callable as the typed values of vrrp/events.py; it
never knows who listens. Per-packet figures are plain counters, read with `counters()`.

Runtime facts are inputs, followed live from route netlink, never read once at start:

- The interface itself: one that does not exist holds its instances in FAULT with the
  reason `no_such_interface` (said once, plainly) until it appears; one that is down (or
  has no carrier) holds them with `link_down`.
- The advert source: the interface's own primary address (IPv4: its first address that
  is not one of our VIPs, a primary before a secondary; IPv6: its usable link-local one,
  RFC 5798 §5.1.2.1). With none, the instance is in FAULT (`no_source_address`), as
  keepalived is: it never advertises from 0.0.0.0 or from a VIP, and never adds a VIP to an
  interface that has no address of its own (the VIP would become the primary address, and
  deleting it later would take the administrator's secondaries with it). The address is
  also the tie-break key (RFC 5798 §6.4.3), so it follows changes.
- The VIPs: a master's VIPs are desired state. One deleted behind our back (by hand, by
  another tool) is added again and announced with GARP/NA at once (the rtnetlink event),
  with a sweep every `VIP_SWEEP_INTERVAL` as a backstop. Only addresses this engine added
  (or found left over by an earlier run of it, at start) are ever removed, and before a
  VIP that is its subnet's primary is removed, `promote_secondaries` is turned on for the
  interface, so the kernel keeps the secondaries instead of deleting them with it. A VIP
  may live on another interface than the instance's (`dev`): it is added, checked,
  announced (with that interface's MAC) and removed there, and that interface is tracked
  like keepalived tracks it (down or absent: FAULT, `dev_link_down`) unless `no_track`,
  which also leaves a VIP deleted by hand missing until the next transition to master.
- Virtual routes and rules (keepalived's virtual_routes / virtual_rules) follow
  mastership like the VIPs: added after them on becoming master, removed before them on
  leaving, with the kernel's RTPROT_KEEPALIVED protocol, so that only ours are ever
  deleted. The sweep compares them with a kernel-filtered dump of that protocol and adds
  back what went missing (`RouteRepaired`); one the kernel refuses (a gateway that is not
  reachable) is logged once, counted, and retried with backoff, and the instance stays
  master, as keepalived's does. A route's `dev` is tracked like a VIP's.
- VMAC (keepalived's use_vmac, vrrp/vmac.py): the instance's macvlan is created before
  it starts, adopted if an earlier run left it, created again if someone deletes it, and
  deleted when the instance stops or leaves; the sysctls keepalived sets are set, and
  those of the parent interface put back when its last VMAC goes.

Instances are added, changed in place and removed at any time with `configure()` (a
reload): an instance whose interface, family and VRID stay the same keeps its state.

Tracking and sync groups (keepalived's track_* and vrrp_sync_group) are decided here, by
the pure rules of vrrp/track.py and vrrp/syncgroup.py:

- Each instance's effective priority and tracking faults are `track.evaluate()` of its
  items and their latest verdicts, recomputed whenever a verdict changes. Interfaces are
  judged here, from the same route-netlink view that follows the instances' own links
  (up: administratively up with carrier; a deleted interface is down). Scripts, files and
  processes are judged by the daemon, which runs scripts and watches files and processes
  anyway, and sends verdicts (`set_tracked()`): this process stays small and keeps time.
  An instance with a weight-0 item that has no verdict yet waits in INIT, not started, as
  keepalived's does for its scripts.
- After every input to a sync-group member, the group's rule is applied to a fixed point
  over the members' joint state, and a changed group state is published.

Everything the network sends is untrusted: a datagram that fails any check is dropped,
logged at debug level and counted by reason; nothing raised while handling it leaves the
reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import socket
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network
from typing import Any, Protocol

from vrrp import arp, packet
from vrrp.addrbatch import IFA_F_NODAD, AddressChange
from vrrp.addresses import (
    AddressAdded,
    AddressError,
    AddressRemoved,
    Link,
    LinkAddress,
    LinkChanged,
    LinkEvent,
    LinkRemoved,
    Rtnl,
    RtnlError,
    route_key,
    rule_key,
)
from vrrp.events import (
    FaultsChanged,
    HoldChanged,
    InstanceCounters,
    InstanceStateChanged,
    MasterChanged,
    PriorityChanged,
    ReconfigureResult,
    RouteRepaired,
    SyncGroupStateChanged,
    TrackedItemStatus,
    TrackingChanged,
    VipRepaired,
    VrrpCounters,
)
from vrrp.fsm import LINK_DOWN, NO_SOURCE_ADDRESS, NO_SUCH_INTERFACE, SYNC_GROUP_FAULT, Instance
from vrrp.reconfigure import plan_reconfigure, spec_problem
from vrrp.sockets import (
    ETH_P_ARP,
    ETH_P_IPV6,
    Datagram,
    DatagramError,
    SendmsgArgs,
    advert_message,
    open_packet_socket,
    open_vrrp_socket,
    parse,
    receive,
    repeat_key,
    send_frame,
)
from vrrp.syncgroup import Input, Member, group_state, next_inputs
from vrrp.track import (
    PENDING,
    Effect,
    ItemState,
    TrackKey,
    TrackKind,
    Verdict,
    evaluate,
    fault_name,
)
from vrrp.types import (
    VRRP_MCAST_V4,
    VRRP_MCAST_V6,
    Action,
    AddAddresses,
    AddressOptions,
    Advertisement,
    ApplyRoutes,
    InstanceParams,
    InstanceSpec,
    IPAddress,
    IPInterface,
    Reason,
    RemoveAddresses,
    SendAdvertisement,
    SendGratuitousArp,
    State,
    StateChanged,
    SyncGroupSpec,
    VirtualRoute,
    VirtualRule,
)
from vrrp.vmac import Sysctls, raised_rp_filter, vmac_address

log = logging.getLogger("vrrp.io")

READ_BURST = 64  # datagrams per readiness callback, so one busy socket cannot starve the loop
STOP_TIMEOUT = 5.0  # seconds stop() waits for the priority-0 adverts and VIP removals
MONITOR_RETRY = 1.0  # seconds between attempts to re-open a failed netlink monitor
VIP_SWEEP_INTERVAL = 1.0  # seconds between checks that every master's VIPs are present
DEFAULT_MTU = 1500  # Ethernet's, for an interface that is absent when an instance starts
SYNC_ROUNDS = 16  # a sync group's rule settles in 2-3 rounds; more is a bug, said loudly
ROUTE_RETRY_MAX = 60.0  # seconds: the longest wait before adding a refused route again
VMAC_RETRY = 1.0  # seconds between attempts to (re)create one VMAC

# Faults of this adapter's own, beside the fsm's (vrrp/events.py FaultsChanged says them).
DEV_LINK_DOWN = "dev_link_down"
VMAC_MISSING = "vmac_missing"

Publish = Callable[[object], None]


class Drop(enum.Enum):
    """Drop reasons decided here rather than by the codec (whose reasons pass through)."""

    NOT_A_PEER = "not_a_peer"  # check_unicast_src: the source is not a configured peer
    UNKNOWN_VRID = "unknown_vrid"  # no instance of ours on this interface has that VRID
    OWN_PACKET = "own_packet"  # the source is one of our own addresses (not a VIP)
    INTERNAL_ERROR = "internal_error"  # a bug of ours while handling it; logged with traceback
    # A valid lower-priority advert a master heard but did not answer: it answered one
    # within the last Advertisement_Interval (vrrp/fsm.py's rate limit on answers).
    ANSWER_SUPPRESSED = "answer_suppressed"
    # Heard on a VMAC whose instance is still being set up (the macvlan was just created).
    STARTING = "starting"


@dataclass(frozen=True, slots=True)
class _Publish:
    """An event to publish in order with an instance's actions (its state changes are
    published when the worker reaches them, after the actions queued before them)."""

    event: object


@dataclass(frozen=True, slots=True)
class _RepairRoutes:
    """Bring the instance's routes and rules in line with its state (queued by the sweep,
    after a reload, and for retries), performed in order with its other actions."""


@dataclass(frozen=True, slots=True)
class _RemoveStaleRoutes:
    """At start, as a backup: remove our routes and rules an earlier run left behind."""


@dataclass(eq=False, slots=True)
class _PublishAfterAll:
    """A sync group's event, queued to every member and published when the last of their
    workers reaches it: after the state changes every member made in the same round, as
    keepalived writes a group's notify line after its members' lines."""

    event: object
    waiting: set[str]


_Queued = Action | _Publish | _RepairRoutes | _RemoveStaleRoutes | _PublishAfterAll


@dataclass(frozen=True, slots=True)
class Unicast:
    """keepalived's unicast_src_ip / unicast_peer: adverts go to each peer, not the group.

    With keepalived's defaults the peers list says where adverts go, not whom to hear:
    `check_src` (check_unicast_src, also implied by min_ttl / max_ttl, as in keepalived)
    drops adverts from anyone else. `ttl` is the TTL / Hop Limit sent to the peers
    (unicast_ttl; None: 255, see the README); `min_ttl` / `max_ttl` bound the received one.
    """

    source: IPAddress | None
    peers: frozenset[IPAddress]
    ttl: int | None = None
    min_ttl: int | None = None
    max_ttl: int | None = None
    check_src: bool = False

    @classmethod
    def of(cls, spec: InstanceSpec) -> Unicast:
        peers = frozenset(spec.unicast_peers)
        bounded = spec.min_ttl is not None or spec.max_ttl is not None
        return cls(
            spec.unicast_src_ip,
            peers,
            ttl=spec.unicast_ttl,
            min_ttl=spec.min_ttl,
            max_ttl=spec.max_ttl,
            check_src=bool(peers) and (spec.check_unicast_src or bounded),
        )


@dataclass
class _Counts:
    adverts_sent: int = 0
    adverts_received: int = 0
    garp_sent: int = 0
    address_mismatch: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # A retired fsm's Instance.intervals_missed; a live one's is added when frozen.
    intervals_missed: int = 0


@dataclass(frozen=True, slots=True)
class _Sending:
    """A master's last advert, encoded with what went into it: sent again as they are
    while the fsm hands over the same advert object (it builds a new one when what it
    says changes), from the same source, with the same unicast set-up object (a reload
    replaces it) on the same interface."""

    advertisement: Advertisement
    source: IPAddress
    unicast: Unicast
    ifindex: int
    messages: tuple[tuple[IPAddress, SendmsgArgs], ...]


@dataclass(eq=False)
class _Runner:
    """One instance and everything the adapter keeps for it."""

    spec: InstanceSpec
    fsm: Instance
    unicast: Unicast
    labels: Mapping[IPAddress, str]
    counts: _Counts
    vip_opts: Mapping[IPAddress, AddressOptions] = field(default_factory=dict)
    vips_by_ip: Mapping[IPAddress, IPInterface] = field(default_factory=dict)
    tracked_devs: frozenset[str] = frozenset()
    depends_on: frozenset[str] = frozenset()
    timer: _WakeGroup | None = None  # the wake-up it is armed in (None: not armed)
    deadline: float | None = None  # what the fsm asked for
    wake: float = 0.0  # when `timer` fires (at or before `deadline`)
    queue: asyncio.Queue[_Queued] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    mismatch_logged: bool = False
    repeat_key: Hashable | None = None  # of its entry in its interface's `repeats`
    # Failures that would repeat every Advertisement_Interval ("send", "encode"): the first
    # of a run is logged at its own level, the rest at debug (failure_level); all counted.
    failing: set[str] = field(default_factory=set)
    sending: _Sending | None = None  # the last advert sent, encoded
    # Added by us, not yet removed, with the interface each one was added to. Changed only
    # through hold() and release(), which keep `vip_watch` in step.
    held_vips: dict[IPInterface, str] = field(default_factory=dict)
    # (address, interface) of each held VIP the instance tracks (not no_track): what the
    # sweep looks up every second for every master, kept so that it hashes plain addresses
    # instead of IPInterface objects (whose .ip is a new object each time). None: rebuild.
    vip_watch: tuple[tuple[IPAddress, str], ...] | None = None
    repairing: set[IPInterface] = field(default_factory=set)  # re-add queued, not yet done
    heard: tuple[IPAddress | None, int | None] = (None, None)  # the master a backup follows
    retired: bool = False
    started: bool = False  # fsm.start() done (a VMAC instance starts once its macvlan is up)
    waiting: bool = False  # start deferred: a weight-0 item has no verdict yet
    resume: bool = False  # start as MASTER when started (VRRP process restart)
    iface_faults: set[str] = field(default_factory=set)
    track_faults: set[str] = field(default_factory=set)
    group: str | None = None  # its sync group
    group_fault: bool = False  # held in FAULT by its sync group
    tracking: tuple[TrackedItemStatus, ...] = ()
    last_reason: Reason | None = None  # of its last state change (a group's reason)
    faults_logged: tuple[str, ...] = ()  # the tracked `dev`s last said to be down
    # Virtual routes and rules: what we added and hold, whether the fsm wants them held,
    # and per item (failures so far, earliest next attempt) after the kernel refused it.
    held_routes: set[VirtualRoute] = field(default_factory=set)
    held_rules: set[VirtualRule] = field(default_factory=set)
    routes_active: bool = False
    route_retry: dict[VirtualRoute | VirtualRule, tuple[int, float]] = field(default_factory=dict)
    route_ops: int = 0  # bumped on every route/rule change, so the sweep can spot a race
    route_sync_queued: bool = False
    vmac_attempt: float = float("-inf")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def interface(self) -> str:
        return self.spec.interface

    @property
    def family(self) -> socket.AddressFamily:
        return _family(self.spec.params.primary_address)

    @property
    def vmac(self) -> str | None:
        return self.spec.use_vmac

    @property
    def sock_ifname(self) -> str:
        """Where adverts are sent and heard: the VMAC, unless vmac_xmit_base."""
        if self.vmac is not None and not self.spec.vmac_xmit_base:
            return self.vmac
        return self.spec.interface

    @property
    def src_ifname(self) -> str:
        """Whose address adverts carry as source: over IPv4 a VMAC has none of its own and
        adverts leave from the parent's (keepalived's); over IPv6 from the link-local
        address copied onto the VMAC."""
        if self.vmac is not None and self.family == socket.AF_INET:
            return self.spec.interface
        return self.sock_ifname

    @property
    def vip_ifname(self) -> str:
        """Where a VIP without a `dev` of its own goes: the VMAC if there is one."""
        return self.vmac if self.vmac is not None else self.spec.interface

    def options(self, address: IPInterface) -> AddressOptions:
        return self.vip_opts.get(address.ip, _NO_OPTIONS)

    def failure_level(self, kind: str, first: int) -> int:
        """The level to log a failure of `kind` at: `first` unless one is already said."""
        if kind in self.failing:
            return logging.DEBUG
        self.failing.add(kind)
        return first

    def hold(self, vip: IPInterface, dev: str) -> None:
        self.held_vips[vip] = dev
        self.vip_watch = None

    def release(self, vip: IPInterface) -> str | None:
        self.vip_watch = None
        return self.held_vips.pop(vip, None)

    def watched_vips(self) -> tuple[tuple[IPAddress, str], ...]:
        if self.vip_watch is None:
            self.vip_watch = tuple(
                (vip.ip, dev)
                for vip, dev in self.held_vips.items()
                if not self.options(vip).no_track
            )
        return self.vip_watch

    def dev_of(self, address: IPInterface) -> str:
        return self.options(address).dev or self.vip_ifname

    def derive(self) -> None:
        """Work out what follows from the spec (once per spec: hundreds of VIPs are
        consulted on every link and address event)."""
        spec = self.spec
        self.vip_opts = dict(spec.vip_options)
        self.vip_watch = None  # no_track may have changed
        self.vips_by_ip = {vip.ip: vip for vip in spec.params.held_addresses}
        own = {spec.interface, self.vip_ifname}
        devs = {
            self.dev_of(vip) for vip in spec.params.held_addresses if not self.options(vip).no_track
        }
        devs.update(r.dev for r in spec.virtual_routes if r.dev is not None and not r.no_track)
        # Interfaces beyond its own whose state the instance follows, as keepalived does:
        # each VIP's and route's `dev`, unless no_track.
        self.tracked_devs = frozenset(devs - own)
        # Every interface whose links or addresses can change this instance's faults.
        mine = {spec.interface, self.sock_ifname, self.src_ifname, self.vip_ifname}
        self.depends_on = frozenset(mine) | self.tracked_devs


@dataclass(eq=False, slots=True)
class _WakeGroup:
    """The instances that wake at one instant, behind one loop timer.

    A master's adverts of one interval fall due on the same float (vrrp.fsm
    advert_due_after), so 1,000 masters at 1 s share one handle: one heap entry and one
    callback a second instead of 1,000 of each. An instance that leaves (cancelled, or
    re-armed elsewhere) stays in `runners` and is skipped: the group is its `timer` no
    longer. The handle is cancelled when the last one leaves.
    """

    when: float
    handle: asyncio.TimerHandle | None = None
    runners: list[_Runner] = field(default_factory=list)
    live: int = 0


_NO_OPTIONS = AddressOptions()
_NO_ADDRESSES: Mapping[IPAddress, LinkAddress] = {}


@dataclass(frozen=True, slots=True)
class _Repeat:
    """An advert an instance accepted, kept to recognise its copies (`_receive_repeat`):
    a master sends the same bytes every Advertisement_Interval.

    `params` and `unicast` are the configuration it was judged against, compared by
    identity: a reload, a new MTU or a new fsm replaces them, and the next copy is then
    judged again in full.
    """

    runner: _Runner
    advertisement: Advertisement
    source: IPAddress
    params: InstanceParams
    unicast: Unicast


@dataclass(eq=False)
class _Interface:
    """One interface: its link, its addresses, its sockets and its instances."""

    name: str
    link: Link | None = None
    operational: bool = False  # link up and sockets open
    # Every address on it, VIPs included, as route netlink reports them (shared with the
    # engine's per-ifindex table, so an event updates it in place).
    addresses: dict[IPAddress, LinkAddress] = field(default_factory=dict)
    vips: set[IPAddress] = field(default_factory=set)  # our instances' VIPs on it
    sockets: dict[socket.AddressFamily, socket.socket] = field(default_factory=dict)
    instances: dict[tuple[socket.AddressFamily, int], _Runner] = field(default_factory=dict)
    missing_logged: bool = False
    # Derived from the instances whenever they change (`_update_vips`), so that handling a
    # packet costs the same whatever the number of instances on the interface:
    unicast_sources: frozenset[IPAddress] = frozenset()  # our instances' unicast_src_ip
    # family -> the peers any instance hears, when every instance of that family checks
    # unicast sources (check_unicast_src); absent when one of them hears anyone.
    peer_filter: dict[socket.AddressFamily, frozenset[IPAddress]] = field(default_factory=dict)
    # The last advert each instance accepted, by `repeat_key` (at most one per instance).
    repeats: dict[Hashable, _Repeat] = field(default_factory=dict)

    def sent_by_us(self, source: IPAddress) -> bool:
        """Whether a packet from `source` is one of this director's own.

        The VIPs we hold do not count: a real address owner (priority 255, RFC 5798
        §5.2.4) advertises from its interface address, which is the VIP, and while we
        hold the VIP we must still hear it, or we never give the VIP back.
        """
        if source in self.vips:
            return False
        return source in self.addresses or source in self.unicast_sources

    def primary(self, family: socket.AddressFamily) -> IPAddress | None:
        """The address adverts leave from (see the module docstring), or None."""
        return _primary(self.addresses, self.vips, family)


def _primary(
    addresses: Mapping[IPAddress, LinkAddress],
    vips: Iterable[IPAddress],
    family: socket.AddressFamily,
) -> IPAddress | None:
    """An interface's own address of `family` (not a VIP): IPv4 its first primary address,
    else a secondary; IPv6 its usable link-local one (RFC 5798 §5.1.2.1)."""
    best: IPAddress | None = None
    for entry in addresses.values():
        ip = entry.address.ip
        if _family(ip) != family or ip in vips or not entry.usable:
            continue
        if family == socket.AF_INET6:
            if ip.is_link_local:
                return ip
            continue
        if not entry.secondary:
            return ip
        if best is None:
            best = ip
    return best


def _could_be_a_left_vip(
    entry: LinkAddress,
    addresses: Mapping[IPAddress, LinkAddress],
    vips: Iterable[IPAddress],
) -> bool:
    """Whether an address found at start that equals a configured VIP can be one an earlier
    run added (and so ours to take back), rather than the interface's own address.

    IPv6 VIPs always go on with IFA_F_NODAD (as keepalived's do), which an administrator's
    or SLAAC's address lacks. An IPv4 VIP could only have been added by a master, and a
    master sends from an address of the interface's own: if no other IPv4 address is left,
    this one is the interface's own, and taking it would cut the director off (keepalived
    2.2.7 does take it).
    """
    ip = entry.address.ip
    if isinstance(ip, IPv6Address):
        return bool(entry.flags & IFA_F_NODAD)
    ours = set(vips)
    return any(
        isinstance(other, IPv4Address) and other != ip and other not in ours for other in addresses
    )


def _family(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if isinstance(address, IPv4Address) else socket.AF_INET6


def _ipv6_forwarding(ifname: str) -> bool:
    """Whether IPv6 forwarding is on for `ifname` (this process's namespace).

    keepalived sets the NA's Router flag then: hosts drop a router from their default router
    list on an NA with R clear (RFC 4861 §7.2.5).
    """
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/forwarding", "rb") as f:
            return f.read().strip() == b"1"
    except OSError:
        return False


def _ensure_promote_secondaries(ifname: str) -> bool:
    """Turn on net.ipv4.conf.IF.promote_secondaries; True if it had to be changed.

    Without it, deleting a subnet's primary address deletes every secondary address of
    that subnet too (keepalived sets it on its interfaces for the same reason).
    """
    path = f"/proc/sys/net/ipv4/conf/{ifname}/promote_secondaries"
    try:
        with open(path, "r+b") as f:
            if f.read().strip() == b"1":
                return False
            f.seek(0)
            f.write(b"1\n")
            return True
    except OSError as exc:
        log.warning("vrrp.promote_secondaries_failed iface=%s error=%s", ifname, exc)
        return False


def _reason_label(reason: object) -> str:
    value = getattr(reason, "value", None)
    if isinstance(value, str):
        return value
    name = getattr(reason, "name", None)
    return name.lower() if isinstance(name, str) else str(reason)


# epoll_wait() lets the kernel fire late by 0.1% of the timeout (fs/select.c,
# select_estimate_accuracy: 3.6 ms on a 3.6 s Master_Down_Interval), which would
# be added to every failover. Long waits therefore wake early by a little more
# than that and then wait the short remainder.
_SLACK = 0.002
_EXACT = 0.0002


def _wake_time(deadline: float, now: float) -> float:
    early = (deadline - now) * _SLACK
    return deadline - early if early > _EXACT else deadline


def spec_of(
    params: InstanceParams,
    interface: str,
    *,
    unicast_src_ip: IPAddress | None = None,
    unicast_peers: Iterable[IPAddress] = (),
    vip_labels: Mapping[IPAddress, str] | None = None,
    unicast_ttl: int | None = None,
    min_ttl: int | None = None,
    max_ttl: int | None = None,
    check_unicast_src: bool = False,
) -> InstanceSpec:
    return InstanceSpec(
        params=params,
        interface=interface,
        unicast_src_ip=unicast_src_ip,
        unicast_peers=tuple(unicast_peers),
        vip_labels=tuple((vip_labels or {}).items()),
        unicast_ttl=unicast_ttl,
        min_ttl=min_ttl,
        max_ttl=max_ttl,
        check_unicast_src=check_unicast_src,
    )


class VrrpEngine:
    """Runs VRRP instances: `await start()`, `configure()` them (at any time), and
    `await stop()` before exiting.

    `stop()` resigns every master (priority-0 advert, RFC 5798 §6.4.3) and removes its VIPs;
    the process must await it before it exits or the backups wait Master_Down_Interval.
    """

    def __init__(
        self,
        publish: Publish | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._publish_to = publish
        self._loop = loop
        self._runners: dict[str, _Runner] = {}
        self._interfaces: dict[str, _Interface] = {}
        # Everything route netlink told us about, for interfaces an instance may name later.
        self._links: dict[str, Link] = {}
        self._addresses: dict[int, dict[IPAddress, LinkAddress]] = {}
        self._drops: dict[tuple[str, str], int] = {}
        self._retired_counts: dict[str, _Counts] = {}
        self._pending: list[InstanceSpec] = []  # add_instance() before start()
        self._vips_by_if: dict[str, set[IPAddress]] = {}  # every runner's VIPs, by interface
        self._sysctls = Sysctls()
        self._vmac_busy: set[str] = set()  # VMACs being created right now
        self._retiring: set[asyncio.Task[None]] = set()
        self._rtnl = Rtnl()
        self._packet_socket: socket.socket | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._wake_groups: dict[float, _WakeGroup] = {}  # by instant (_wake_at)
        # Adverts to send at the end of this pass of the loop (_flush_adverts).
        self._outbox: list[
            tuple[_Runner, socket.socket, IPAddress, tuple[tuple[IPAddress, SendmsgArgs], ...]]
        ] = []
        self._started = False
        self._stopped = False
        # Tracking: verdicts from the daemon (scripts, files, processes) by (kind, name);
        # whether each tracked interface is up, as last judged.
        self._verdicts: dict[TrackKey, Verdict] = {}
        self._iface_up: dict[str, bool] = {}
        self._groups: dict[str, SyncGroupSpec] = {}
        self._group_states: dict[str, State] = {}
        self._syncing = False

    # ---- public API ----------------------------------------------------------

    def add_instance(
        self,
        params: InstanceParams,
        interface: str,
        *,
        unicast_src_ip: IPAddress | None = None,
        unicast_peers: Iterable[IPAddress] = (),
        vip_labels: Mapping[IPAddress, str] | None = None,
        unicast_ttl: int | None = None,
        min_ttl: int | None = None,
        max_ttl: int | None = None,
        check_unicast_src: bool = False,
    ) -> None:
        """Register an instance before `start()` (a shorthand for `configure()`).

        With `unicast_peers` the instance sends to each peer instead of the multicast group
        (with TTL / Hop Limit `unicast_ttl`, default 255) and hears unicast adverts only;
        keepalived's receive checks for unicast: `check_unicast_src` drops adverts from
        anyone but the peers, `min_ttl` / `max_ttl` bound their TTL (and imply
        `check_unicast_src`).

        Raises ValueError for a duplicate name, a VRID already used on that interface and
        family, or an address of the other family.
        """
        if self._started:
            raise RuntimeError("add_instance() after start(): use configure()")
        spec = spec_of(
            params,
            interface,
            unicast_src_ip=unicast_src_ip,
            unicast_peers=unicast_peers,
            vip_labels=vip_labels,
            unicast_ttl=unicast_ttl,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            check_unicast_src=check_unicast_src,
        )
        self.add_spec(spec)

    def add_spec(self, spec: InstanceSpec) -> None:
        """Register an instance given whole (routes, rules, VMAC, VIP options) before start."""
        if self._started:
            raise RuntimeError("add_spec() after start(): use configure()")
        problem = spec_problem(spec, self._pending)
        if problem is not None:
            raise ValueError(problem)
        self._pending.append(spec)

    async def start(self) -> None:
        """Open netlink, learn the links and addresses, start what add_instance() gave."""
        if self._started:
            raise RuntimeError("start() twice")
        self._started = True
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        await self._rtnl.open()
        self._packet_socket = open_packet_socket()
        await self._resync()
        self._monitor_task = asyncio.create_task(self._monitor(), name="vrrp-link-monitor")
        self._sweep_task = asyncio.create_task(self._sweep(), name="vrrp-vip-sweep")
        if self._pending:
            pending, self._pending = self._pending, []
            result = self.configure(pending)
            if result.errors:
                raise ValueError("; ".join(f"{n}: {e}" for n, e in result.errors.items()))
        # The VRRP process starts empty, before the daemon has even read its config (which
        # may be refused): its instances and their log lines come with the daemon's word.
        level = logging.INFO if self._runners else logging.DEBUG
        log.log(level, "vrrp.started instances=%d", len(self._runners))

    def configure(
        self,
        specs: Sequence[InstanceSpec],
        *,
        resume_until: Mapping[str, float] | None = None,
        holds: Iterable[str] = (),
        groups: Sequence[SyncGroupSpec] = (),
        verdicts: Mapping[TrackKey, Verdict] | None = None,
    ) -> ReconfigureResult:
        """Run exactly `specs` (and sync `groups`) from now on.

        Instances that keep their name and identity (interface, family, VRID) are updated
        in place and keep their state; those whose identity changed are stopped (resigning
        as at shutdown) and started anew; the rest are added or removed. `resume_until`
        (name -> monotonic deadline) starts an instance as MASTER if the deadline has not
        passed; `holds` names instances held in BACKUP by an operator's step-down;
        `verdicts`, when given, replaces every tracked verdict (a restarted VRRP process
        gets them all again with its first Configure).
        """
        if not self._started or self._stopped:
            raise RuntimeError("configure() while not running")
        now = self._now()
        resume_until = resume_until or {}
        held = set(holds)
        if verdicts is not None:
            self._verdicts = dict(verdicts)
        old_groups = self._groups
        self._groups = {g.name: g for g in groups}
        group_of = {member: g.name for g in groups for member in g.members}
        plan = plan_reconfigure({n: r.spec for n, r in self._runners.items()}, specs)
        errors = dict(plan.errors)
        for name in plan.remove:
            self._retire(self._runners[name], now)
        for spec in plan.restart:
            self._retire(self._runners[spec.name], now)
        updated: list[str] = []
        for spec in plan.update:
            try:
                self._update(self._runners[spec.name], spec, now)
            except ValueError as exc:
                errors[spec.name] = str(exc)
                continue
            updated.append(spec.name)
        for name in (*plan.unchanged, *updated):
            self._set_hold(self._runners[name], name in held, now)
        started: list[str] = []
        for name in (*plan.unchanged, *updated):
            self._set_group(self._runners[name], group_of.get(name))
        for spec in (*plan.restart, *plan.add):
            resume = resume_until.get(spec.name, float("-inf")) > now
            try:
                self._create(
                    spec, now, resume=resume, held=spec.name in held, group=group_of.get(spec.name)
                )
            except ValueError as exc:
                errors[spec.name] = str(exc)
                continue
            started.append(spec.name)
        for runner in tuple(self._runners.values()):
            self._retrack(runner, now)
        for name in old_groups.keys() - self._groups.keys():
            self._group_states.pop(name, None)
        for group in self._groups.values():
            self._sync_group(group, now, None)
        return ReconfigureResult(
            unchanged=plan.unchanged,
            updated=tuple(updated),
            restarted=tuple(s.name for s in plan.restart if s.name in started),
            added=tuple(s.name for s in plan.add if s.name in started),
            removed=plan.remove,
            errors=errors,
        )

    def set_tracked(self, verdicts: Mapping[TrackKey, Verdict]) -> None:
        """New verdicts for tracked scripts, files or processes (the daemon judges them)."""
        if not self._started or self._stopped:
            return
        changed = {key for key, verdict in verdicts.items() if self._verdicts.get(key) != verdict}
        if not changed:
            return
        self._verdicts.update(verdicts)
        now = self._now()
        for runner in tuple(self._runners.values()):
            if any(item.key in changed for item in runner.spec.track):
                self._retrack(runner, now)

    def set_hold(self, names: Iterable[str], held: bool) -> None:
        """The operator's step-down (held) or its release, for the named instances."""
        now = self._now()
        for name in names:
            runner = self._runners.get(name)
            if runner is not None:
                self._set_hold(runner, held, now)

    async def stop(self) -> None:
        """Resign and remove VIPs everywhere, then close everything. Safe to call twice."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        now = self._now()
        for runner in self._runners.values():
            self._feed(runner, runner.fsm.stop, now)
        self._flush_adverts()  # the priority-0 adverts, before anything else
        waits = [runner.queue.join() for runner in self._runners.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), STOP_TIMEOUT)
        except TimeoutError:
            log.error("vrrp.stop_timeout seconds=%s", STOP_TIMEOUT)
        tasks = [r.worker for r in self._runners.values() if r.worker is not None]
        tasks.extend(self._background)
        for task in (self._monitor_task, self._sweep_task):
            if task is not None:
                tasks.append(task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # keepalived deletes its VMACs on stop (the VIPs on them are gone by now).
        for runner in self._runners.values():
            if runner.vmac is not None:
                with contextlib.suppress(Exception):
                    await self._remove_vmac(runner.vmac)
        self._sysctls.restore(self._sysctls.changed())
        for runner in self._runners.values():
            self._cancel_timer(runner)
        for iface in self._interfaces.values():
            self._close_sockets(iface)
        if self._packet_socket is not None:
            self._packet_socket.close()
        self._rtnl.close()
        log.info("vrrp.stopped instances=%d", len(self._runners))

    def states(self) -> dict[str, State]:
        return {name: runner.fsm.state for name, runner in self._runners.items()}

    def replay(self) -> list[object]:
        """Every instance as it is now, in the events a listener that knows nothing needs:
        a restarted daemon that took this engine over (`hacontrol restart`). The state
        change comes from INIT with reason RESUME, as for a VRRP process that resumed."""
        events: list[object] = []
        for runner in self._runners.values():
            fsm = runner.fsm
            events.append(
                InstanceStateChanged(
                    instance=runner.name,
                    interface=runner.interface,
                    vrid=fsm.params.vrid,
                    old=State.INITIALIZE,
                    new=fsm.state,
                    reason=Reason.RESUME,
                    priority=fsm.params.priority,
                    effective_priority=fsm.effective_priority,
                    family="ipv6" if runner.family == socket.AF_INET6 else "ipv4",
                )
            )
            if fsm.state is State.MASTER:
                events.append(
                    MasterChanged(runner.name, self._source(runner), fsm.effective_priority, True)
                )
            elif runner.heard != (None, None):
                events.append(MasterChanged(runner.name, *runner.heard, ours=False))
            if fsm.faults:
                events.append(FaultsChanged(runner.name, runner.interface, fsm.faults))
        return events

    def set_priority(self, name: str, priority: int) -> None:
        """Set an instance's effective priority (tracking); KeyError for an unknown name."""
        runner = self._runners[name]
        if not self._started or self._stopped:
            raise RuntimeError("set_priority() while not running")
        before = runner.fsm.effective_priority
        self._feed(runner, lambda now: runner.fsm.set_priority(priority, now), self._now())
        if runner.fsm.effective_priority != before:
            self._publish(
                PriorityChanged(name, runner.fsm.params.priority, runner.fsm.effective_priority)
            )

    def counters(self) -> VrrpCounters:
        """Cumulative per-packet figures since start (removed instances included)."""
        instances: dict[str, InstanceCounters] = {}
        for name, counts in self._retired_counts.items():
            instances[name] = _frozen(counts, 0)
        for name, runner in self._runners.items():
            instances[name] = _frozen(runner.counts, runner.fsm.intervals_missed)
        return VrrpCounters(instances, dict(self._drops))

    # ---- instances come and go -------------------------------------------------

    def _create(
        self, spec: InstanceSpec, now: float, *, resume: bool, held: bool, group: str | None = None
    ) -> None:
        sock_ifname = spec.use_vmac if spec.use_vmac and not spec.vmac_xmit_base else None
        iface = self._interface(sock_ifname or spec.interface)
        fsm = Instance(self._fit_advert(spec, iface))  # ValueError for bad parameters
        key = (_family(spec.params.primary_address), spec.params.vrid)
        if key in iface.instances:
            other = iface.instances[key].name
            raise ValueError(
                f"vrid {spec.params.vrid} already used on {spec.interface} by {other!r}"
            )
        counts = self._retired_counts.pop(spec.name, None) or _Counts()
        runner = _Runner(
            spec=spec,
            fsm=fsm,
            unicast=Unicast.of(spec),
            labels=dict(spec.vip_labels),
            counts=counts,
        )
        runner.derive()
        iface.instances[key] = runner
        self._runners[spec.name] = runner
        self._update_vips()
        if iface.link is not None and iface.link.up:
            self._set_operational(iface, self._open_sockets(iface))
        runner.worker = asyncio.get_running_loop().create_task(
            self._work(runner), name=f"vrrp-{spec.name}"
        )
        if held:
            fsm.set_hold(True, now)  # before start(): remembered, no actions
            self._publish(HoldChanged(spec.name, True))
        runner.resume = resume
        runner.group = group
        fsm.set_gated(group is not None)
        if runner.vmac is None:
            self._begin(runner, now)
        else:
            # keepalived creates the macvlan before the instance enters its first state;
            # starting first would put it through FAULT (no interface) for nothing.
            self._spawn(self._begin_with_vmac(runner))

    def _begin(self, runner: _Runner, now: float) -> None:
        if runner.retired or self._stopped:
            return
        iface = self._interfaces[runner.sock_ifname]
        self._refresh_runner(iface, runner, now)  # faults before start: start() honours them
        pending = self._retrack(runner, now)
        if pending:
            runner.waiting = True
            # keepalived keeps an instance in INIT until each of its weight-0 scripts has
            # a result: it must neither take over nor give up what it cannot yet judge.
            log.info(
                "vrrp.instance_waiting instance=%s reason=no_result_yet items=%s",
                runner.name,
                ",".join(pending),
            )
            return
        self._start_runner(runner, now)

    def _start_runner(self, runner: _Runner, now: float) -> None:
        spec, fsm = runner.spec, runner.fsm
        runner.started = True
        runner.waiting = False
        resume = runner.resume
        self._feed(runner, lambda t: fsm.start(t, resume=resume), now)
        self._remove_stale_vips(runner)
        if fsm.state is not State.MASTER and (spec.virtual_routes or spec.virtual_rules):
            runner.queue.put_nowait(_RemoveStaleRoutes())
        log.info(
            "vrrp.instance_started instance=%s iface=%s vrid=%d resume=%s held=%s group=%s vmac=%s",
            spec.name,
            spec.interface,
            spec.params.vrid,
            resume,
            fsm.held,
            runner.group or "-",
            spec.use_vmac,
        )

    async def _begin_with_vmac(self, runner: _Runner) -> None:
        # An instance being replaced may still hold this VMAC (its VIPs are leaving).
        retiring = [t for t in self._retiring if not t.done()]
        if retiring:
            await asyncio.wait(retiring, timeout=STOP_TIMEOUT)
        try:
            # A link event may have set the same VMAC up a moment ago: let it finish.
            for _ in range(int(STOP_TIMEOUT / 0.05)):
                if runner.vmac not in self._vmac_busy:
                    break
                await asyncio.sleep(0.05)
            tried = runner.vmac_attempt != float("-inf")
            if not (tried and self._vmac_usable(runner) and self._source(runner) is not None):
                await self._ensure_vmac(runner)
        finally:
            self._begin(runner, self._now())

    def _interface(self, name: str) -> _Interface:
        iface = self._interfaces.get(name)
        if iface is None:
            iface = self._interfaces[name] = _Interface(name)
            self._attach(iface)
        return iface

    def _update(self, runner: _Runner, spec: InstanceSpec, now: float) -> None:
        before = runner.fsm.effective_priority
        iface = self._interfaces[runner.sock_ifname]
        params = self._fit_advert(spec, iface)
        old = runner.spec
        moved = tuple(
            vip
            for vip in spec.params.held_addresses
            if vip in runner.held_vips
            and (dict(spec.vip_options).get(vip.ip, _NO_OPTIONS).dev or runner.vip_ifname)
            != runner.held_vips[vip]
        )
        self._feed(runner, lambda t: runner.fsm.update(params, t), now)
        runner.spec = spec
        runner.unicast = Unicast.of(spec)
        runner.labels = dict(spec.vip_labels)
        runner.derive()
        if moved and runner.fsm.state is State.MASTER:
            # A VIP whose `dev` changed leaves its old interface (recorded in held_vips)
            # and is added and announced on its new one.
            runner.queue.put_nowait(RemoveAddresses(moved))
            runner.queue.put_nowait(AddAddresses(moved))
            count = spec.params.garp.master_repeat
            if count > 0:
                runner.queue.put_nowait(SendGratuitousArp(tuple(v.ip for v in moved), count))
        if (old.virtual_routes, old.virtual_rules) != (spec.virtual_routes, spec.virtual_rules):
            runner.route_retry.clear()
            self._queue_route_sync(runner)
        self._update_vips()
        self._refresh_runner(iface, runner, now)
        self._retrack(runner, now, publish_priority=False)
        if runner.fsm.effective_priority != before:
            self._publish(
                PriorityChanged(spec.name, spec.params.priority, runner.fsm.effective_priority)
            )
        log.info("vrrp.instance_updated instance=%s state=%s", spec.name, runner.fsm.state.value)

    def _retire(self, runner: _Runner, now: float) -> None:
        """Stop one instance (resigning if master) and forget it once its actions are done."""
        iface = self._interfaces[runner.sock_ifname]
        iface.instances.pop((runner.family, runner.fsm.params.vrid), None)
        self._forget(iface, runner)
        self._runners.pop(runner.name, None)
        runner.retired = True
        runner.group = None
        self._feed(runner, runner.fsm.stop, now)
        runner.counts.intervals_missed += runner.fsm.intervals_missed
        self._retired_counts[runner.name] = runner.counts
        self._cancel_timer(runner)
        self._update_vips()
        task = asyncio.get_running_loop().create_task(self._finish_retire(runner, iface))
        self._retiring.add(task)
        self._background.add(task)
        task.add_done_callback(self._retiring.discard)
        task.add_done_callback(self._background.discard)
        log.info("vrrp.instance_stopped instance=%s", runner.name)

    async def _finish_retire(self, runner: _Runner, iface: _Interface) -> None:
        try:
            await asyncio.wait_for(runner.queue.join(), STOP_TIMEOUT)
        except TimeoutError:
            log.error("vrrp.retire_timeout instance=%s", runner.name)
        if runner.worker is not None:
            runner.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner.worker
        if runner.vmac is not None and not any(
            r.vmac == runner.vmac for r in self._runners.values()
        ):
            try:
                await self._remove_vmac(runner.vmac)
            except Exception as exc:
                log.error("vrrp.vmac_remove_error name=%s error=%s", runner.vmac, exc)
        families = {family for family, _ in iface.instances}
        for family in list(iface.sockets):
            if family not in families:
                sock = iface.sockets.pop(family)
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.remove_reader(sock.fileno())
                sock.close()

    def _set_hold(self, runner: _Runner, held: bool, now: float) -> None:
        if runner.fsm.held == held:
            return
        self._feed(runner, lambda t: runner.fsm.set_hold(held, t), now)
        self._publish(HoldChanged(runner.name, held))
        log.info("vrrp.hold instance=%s held=%s", runner.name, held)

    def _update_vips(self) -> None:
        """Recompute what the receive path looks up per packet, after every change of the
        instances, so that handling a packet costs the same whatever their number: every
        running instance's VIPs by the interface each goes on (an interface's own address,
        the advert source, is never one of them), our unicast sources and the peers to
        filter on."""
        by_if: dict[str, set[IPAddress]] = {}
        for runner in self._runners.values():
            for vip in runner.spec.params.held_addresses:
                by_if.setdefault(runner.dev_of(vip), set()).add(vip.ip)
        self._vips_by_if = by_if
        for name, iface in self._interfaces.items():
            iface.vips = by_if.get(name, set())
            runners = tuple(iface.instances.values())
            iface.unicast_sources = frozenset(
                r.unicast.source for r in runners if r.unicast.source is not None
            )
            iface.peer_filter = {}
            for family in {fam for fam, _ in iface.instances}:
                same = [r for (fam, _), r in iface.instances.items() if fam == family]
                if all(r.unicast.check_src for r in same):
                    iface.peer_filter[family] = frozenset().union(*(r.unicast.peers for r in same))

    def _fit_advert(self, spec: InstanceSpec, iface: _Interface) -> InstanceParams:
        """The instance's parameters with its adverts sized for the interface's MTU, as
        keepalived does; says once which VIPs they leave out (held and announced all the
        same). A peer must carry as many addresses as it expects (keepalived drops an
        advert whose count differs), so the size is decided when the instance starts or
        is reconfigured, from the MTU seen then."""
        params = spec.params
        mtu = iface.link.mtu if iface.link is not None else DEFAULT_MTU
        fits = packet.max_advert_addresses(params.version, params.primary_address.version, mtu)
        if fits < params.max_advert_addresses:
            params = replace(params, max_advert_addresses=fits)
        overflow = params.overflow_addresses
        if overflow:
            log.warning(
                "vrrp.vips_excluded instance=%s iface=%s mtu=%d advertised=%d excluded=%d "
                "first_excluded=%s reason=%s",
                spec.name,
                iface.name,
                mtu,
                len(params.advert_addresses),
                len(overflow),
                overflow[0],
                "count_field" if params.max_advert_addresses == packet.MAX_ADDRESSES else "mtu",
            )
        return params

    def _table(self, ifname: str) -> tuple[Link | None, dict[IPAddress, LinkAddress]]:
        """An interface's link and its address table (empty if it does not exist)."""
        link = self._links.get(ifname)
        if link is None:
            return None, {}
        return link, self._addresses.setdefault(link.ifindex, {})

    def _remove_stale_vips(self, runner: _Runner) -> None:
        """Take back VIPs a previous run left behind (kill -9) unless we start as master.

        keepalived does the same on startup: a backup holding the master's VIPs would answer
        ARP for them and split the traffic.
        """
        if runner.fsm.state is State.MASTER:
            return
        stale = []
        for v in runner.spec.params.held_addresses:
            table = self._table(runner.dev_of(v))[1]
            entry = table.get(v.ip)
            if entry is None:
                continue
            if not _could_be_a_left_vip(entry, table, self._interface(runner.dev_of(v)).vips):
                log.error(
                    "vrrp.vip_is_own_address instance=%s iface=%s address=%s: left in place; "
                    "a VIP must not be the interface's own address",
                    runner.name,
                    runner.dev_of(v),
                    v,
                )
                continue
            stale.append(v)
        if stale:
            log.warning(
                "vrrp.stale_vip instance=%s iface=%s addresses=%s",
                runner.name,
                runner.vip_ifname,
                ",".join(map(str, stale)),
            )
            for vip in stale:  # ours: an earlier run of ours added them
                runner.hold(vip, runner.dev_of(vip))
            runner.queue.put_nowait(RemoveAddresses(tuple(stale)))

    # ---- feeding the state machine -------------------------------------------

    def _feed(self, runner: _Runner, event: _Event, now: float) -> None:
        """Call one fsm input, send its adverts now, queue its other actions in order, and
        re-arm the instance's timer.

        Adverts do not wait in the queue: a master adding hundreds of VIPs spends seconds
        in netlink round trips, and adverts held behind them for longer than the backups'
        Master_Down_Interval make the backups take over. An advert needs nothing the queue
        does (RFC 5798 §6.4.2 sends it before the VIPs are added anyway).
        """
        try:
            actions = event(now)
        except Exception:
            log.exception("vrrp.fsm_error instance=%s", runner.name)
            actions = []
        self._act(runner, actions, now)

    def _act(self, runner: _Runner, actions: list[Action], now: float) -> None:
        """The second half of `_feed`: perform what one fsm input returned."""
        for action in actions:
            if isinstance(action, SendAdvertisement):
                try:
                    self._send_advertisement(runner, action.advertisement)
                except Exception:
                    log.exception("vrrp.action_error instance=%s action=%s", runner.name, action)
            else:
                if isinstance(action, StateChanged):
                    runner.last_reason = action.reason
                runner.queue.put_nowait(action)
        if not runner.retired:
            self._arm(runner)
            group = self._groups.get(runner.group) if runner.group is not None else None
            if group is not None:
                self._sync_group(group, now, runner)

    def _arm(self, runner: _Runner) -> None:
        deadline = runner.fsm.get_timer()
        if runner.timer is not None and deadline == runner.deadline:
            return
        if deadline is None or self._stopped:
            self._cancel_timer(runner)
            return
        assert self._loop is not None
        if runner.timer is not None and runner.wake <= deadline:
            # A backup's every advert moves its Master_Down_Timer later. The handle armed
            # for the earlier deadline fires no later than this one's: keep it, and let
            # _on_timer see the deadline moved and wait again. One handle per instance
            # instead of a cancel and a new handle (and a heap entry left behind) per
            # advert; the fsm is still called at its deadline, never before.
            runner.deadline = deadline
            return
        self._cancel_timer(runner)
        runner.deadline = deadline
        runner.wake = self._wake_for(runner, deadline, self._loop.time())
        self._wake_at(runner, runner.wake)

    def _wake_at(self, runner: _Runner, when: float) -> None:
        """Arm `runner` to wake at `when`, in the group of that instant."""
        assert self._loop is not None
        group = self._wake_groups.get(when)
        if group is None:
            group = self._wake_groups[when] = _WakeGroup(when)
            group.handle = self._loop.call_at(when, self._on_wake, group)
        group.runners.append(runner)
        group.live += 1
        runner.timer = group

    def _on_wake(self, group: _WakeGroup) -> None:
        if self._wake_groups.get(group.when) is group:
            # Gone before anyone runs: an instance re-armed for this same instant while
            # the group runs gets a group (and a handle) of its own.
            del self._wake_groups[group.when]
        for runner in group.runners:
            if runner.timer is group:
                group.live -= 1
                self._on_timer(runner)

    @staticmethod
    def _wake_for(runner: _Runner, deadline: float, now: float) -> float:
        """When to wake for `deadline`. A master's deadlines are its adverts' and GARP
        bursts': a wake-up the kernel makes up to 0.1% late (1 ms at 1 s) delays that one
        advert without moving the next (vrrp.fsm.advert_due_after), so a master waits in
        one go, one timer handle per advert instead of two. A backup's deadlines decide
        when it takes over, and keep the early wake-up of _wake_time."""
        if runner.fsm.state is State.MASTER:
            return deadline
        return _wake_time(deadline, now)

    def _cancel_timer(self, runner: _Runner) -> None:
        group = runner.timer
        if group is not None:
            group.live -= 1
            if group.live == 0 and group.handle is not None:
                group.handle.cancel()
                if self._wake_groups.get(group.when) is group:
                    del self._wake_groups[group.when]
        runner.timer = runner.deadline = None

    def _on_timer(self, runner: _Runner) -> None:
        assert self._loop is not None
        deadline = runner.deadline
        now = self._loop.time()
        if deadline is not None and now < deadline - _EXACT:
            # Early: the early wake-up of _wake_time (the short remainder is then timed
            # by the kernel to within microseconds), or a deadline that moved later
            # since the handle was armed (_arm).
            runner.wake = self._wake_for(runner, deadline, now)
            self._wake_at(runner, runner.wake)
            return
        runner.timer = runner.deadline = None
        # call_at may run a handle up to the clock resolution early; the fsm fires only
        # deadlines that are due, so never hand it a time before the one it asked for.
        now = max(self._loop.time(), deadline or 0.0)
        self._feed(runner, runner.fsm.handle_timer, now)

    # ---- performing actions --------------------------------------------------

    async def _work(self, runner: _Runner) -> None:
        """Perform one instance's actions strictly in order (VIPs before the GARP for them)."""
        while True:
            action = await runner.queue.get()
            try:
                await self._perform(runner, action)
            except Exception:
                log.exception("vrrp.action_error instance=%s action=%s", runner.name, action)
            finally:
                runner.queue.task_done()

    async def _perform(self, runner: _Runner, action: _Queued) -> None:
        # Adverts queued for the end of this pass go before whatever the instance does
        # next: at a takeover the advert leaves before the VIPs' gratuitous ARPs (RFC 5798
        # §6.4.2), at a step-down the priority-0 advert before the VIPs go.
        self._flush_adverts()
        if isinstance(action, _Publish):
            self._publish(action.event)
        elif isinstance(action, _PublishAfterAll):
            action.waiting.discard(runner.name)
            if not action.waiting:
                self._publish(action.event)
        elif isinstance(action, ApplyRoutes):
            runner.routes_active = action.active
            runner.route_retry.clear()
            await self._sync_routes(runner)
        elif isinstance(action, _RepairRoutes):
            runner.route_sync_queued = False
            await self._sync_routes(runner)
        elif isinstance(action, _RemoveStaleRoutes):
            await self._remove_stale_routes(runner)
        elif isinstance(action, SendAdvertisement):  # _feed sends them; a queued one still goes
            self._send_advertisement(runner, action.advertisement)
        elif isinstance(action, AddAddresses):
            await self._add_addresses(runner, action.addresses)
        elif isinstance(action, RemoveAddresses):
            await self._remove_addresses(runner, action.addresses)
        elif isinstance(action, SendGratuitousArp):
            self._send_garp(runner, action.addresses, action.count)
        elif isinstance(action, StateChanged):
            self._state_changed(runner, action)

    def _state_changed(self, runner: _Runner, change: StateChanged) -> None:
        params = runner.fsm.params
        log.info(
            "vrrp.state instance=%s vrid=%d iface=%s from=%s to=%s reason=%s",
            runner.name,
            params.vrid,
            runner.interface,
            change.old.value,
            change.new.value,
            change.reason.value,
        )
        self._publish(
            InstanceStateChanged(
                instance=runner.name,
                interface=runner.interface,
                vrid=params.vrid,
                old=change.old,
                new=change.new,
                reason=change.reason,
                priority=params.priority,
                effective_priority=runner.fsm.effective_priority,
                family="ipv6" if runner.family == socket.AF_INET6 else "ipv4",
            )
        )
        if change.new is State.MASTER:
            runner.heard = (None, None)
            source = self._source(runner)
            self._publish(
                MasterChanged(runner.name, source, runner.fsm.effective_priority, ours=True)
            )
        elif change.old is State.MASTER:
            self._publish(MasterChanged(runner.name, None, None, ours=False))

    def _error(self, runner: _Runner, operation: str) -> None:
        errors = runner.counts.errors
        errors[operation] = errors.get(operation, 0) + 1

    def _source(self, runner: _Runner) -> IPAddress | None:
        if runner.unicast.source is not None:
            return runner.unicast.source
        name = runner.src_ifname
        return _primary(self._table(name)[1], self._vips_by_if.get(name, ()), runner.family)

    def _send_advertisement(self, runner: _Runner, adv: Advertisement) -> None:
        iface = self._interfaces.get(runner.sock_ifname)
        if iface is None:
            return
        sock = iface.sockets.get(runner.family)
        source = self._source(runner)
        if sock is None or iface.link is None or source is None:
            log.debug("vrrp.send_skipped instance=%s iface=%s", runner.name, iface.name)
            self._error(runner, "send_advert")
            return
        ifindex = iface.link.ifindex
        kept = runner.sending
        if (
            kept is not None
            and kept.advertisement is adv
            and kept.source == source  # a new object every time (IPv4Interface.ip)
            and kept.unicast is runner.unicast
            and kept.ifindex == ifindex
        ):
            messages = kept.messages  # a master's every advert: the bytes of the last one
        else:
            built = self._advert_messages(runner, adv, source, ifindex)
            if built is None:
                return
            messages = built
            runner.sending = _Sending(adv, source, runner.unicast, ifindex, messages)
        # Sent at the end of this pass of the loop, with every other advert due now: a
        # master's adverts of one interval leave back to back, a few microseconds apart
        # instead of one state machine's work apart, and a backup reads them in one
        # wake-up (keepalived's instances started together leave the same way).
        if not self._outbox and self._loop is not None:
            self._loop.call_soon(self._flush_adverts)
        self._outbox.append((runner, sock, source, messages))
        if self._loop is None:  # not started: nothing would flush it
            self._flush_adverts()

    def _flush_adverts(self) -> None:
        """Send the adverts queued by _send_advertisement, in the order they were queued."""
        outbox, self._outbox = self._outbox, []
        for runner, sock, source, messages in outbox:
            sent = False
            for destination, message in messages:
                try:
                    # The socket sends 255 (RFC 5798 §5.1.1.3); unicast_ttl overrides it
                    # per packet.
                    sock.sendmsg(*message)
                    sent = True
                except OSError as exc:
                    log.log(
                        runner.failure_level("send", logging.WARNING),
                        "vrrp.send_error instance=%s iface=%s src=%s dst=%s error=%s",
                        runner.name,
                        runner.interface,
                        source,
                        destination,
                        exc,
                    )
                    self._error(runner, "send_advert")
            if sent:
                if runner.failing:
                    runner.failing.discard("send")
                runner.counts.adverts_sent += 1

    def _advert_messages(
        self, runner: _Runner, adv: Advertisement, source: IPAddress, ifindex: int
    ) -> tuple[tuple[IPAddress, SendmsgArgs], ...] | None:
        """An advert encoded for each destination (the group, or every unicast peer)."""
        group: IPAddress = VRRP_MCAST_V4 if runner.family == socket.AF_INET else VRRP_MCAST_V6
        messages = []
        for destination in sorted(runner.unicast.peers) or [group]:
            try:
                payload = packet.encode(adv, source, destination)
            except ValueError as exc:
                # A bug of ours, not the network's: it would fail the same way every
                # Advertisement_Interval, so say it once (not a traceback a second) and
                # count every failure. The other destinations would fail alike.
                log.log(
                    runner.failure_level("encode", logging.ERROR),
                    "vrrp.encode_error instance=%s iface=%s addresses=%d error=%s",
                    runner.name,
                    runner.interface,
                    len(adv.addresses),
                    exc,
                )
                self._error(runner, "send_advert")
                return None
            message = advert_message(payload, source, destination, ifindex, runner.unicast.ttl)
            messages.append((destination, message))
        runner.failing.discard("encode")
        return tuple(messages)

    async def _add_addresses(self, runner: _Runner, addresses: tuple[IPInterface, ...]) -> None:
        for address in addresses:
            runner.repairing.discard(address)
        if runner.fsm.state is not State.MASTER:
            # Queued while master, performed after a step-down or a FAULT: too late.
            return
        # All in pipelined netlink batches (vrrp/addrbatch.py): hundreds of VIPs in a few
        # milliseconds, as keepalived adds them.
        changes: list[AddressChange] = []
        targets: list[tuple[IPInterface, str, Link, dict[IPAddress, LinkAddress]]] = []
        own: set[IPInterface] = set()  # the interface's own addresses, configured as VIPs
        for address in addresses:
            dev = runner.dev_of(address)
            link, table = self._table(dev)
            if link is None:
                log.warning(
                    "vrrp.vip_add_skipped instance=%s iface=%s address=%s reason=no_such_interface",
                    runner.name,
                    dev,
                    address,
                )
                self._error(runner, "add_address")
                continue
            options = runner.options(address)
            changes.append(
                AddressChange(
                    True,
                    link.ifindex,
                    address,
                    label=runner.labels.get(address.ip),
                    scope=options.scope,
                    broadcast=options.broadcast,
                )
            )
            targets.append((address, dev, link, table))
            before = table.get(address.ip)
            if (
                address not in runner.held_vips
                and before is not None
                and not _could_be_a_left_vip(before, table, self._interface(dev).vips)
            ):
                own.add(address)
        if not changes:
            return
        results = await self._rtnl.change_addresses(changes)
        for (address, dev, link, table), result in zip(targets, results, strict=True):
            if isinstance(result, AddressError):
                log.error(
                    "vrrp.vip_add_error instance=%s iface=%s address=%s error=%s",
                    runner.name,
                    dev,
                    address,
                    result,
                )
                self._error(runner, "add_address")
                continue
            if not result and address in own:
                # Held, but never ours to remove: a step-down or a stop leaves it in place.
                log.error(
                    "vrrp.vip_is_own_address instance=%s iface=%s address=%s: left in place; "
                    "a VIP must not be the interface's own address",
                    runner.name,
                    dev,
                    address,
                )
                continue
            runner.hold(address, dev)
            if address.ip not in table:
                # Known before the kernel's event arrives: the sweep must not see it missing.
                table[address.ip] = LinkAddress(link.ifindex, address)
            log.log(
                _vip_log_level(len(changes)),
                "vrrp.vip_add instance=%s iface=%s address=%s present=%s",
                runner.name,
                dev,
                address,
                not result,
            )
        _log_vip_summary("vrrp.vip_add", runner.name, targets, results)

    async def _remove_addresses(self, runner: _Runner, addresses: tuple[IPInterface, ...]) -> None:
        changes: list[AddressChange] = []
        targets: list[tuple[IPInterface, str, dict[IPAddress, LinkAddress]]] = []
        for address in addresses:
            dev = runner.release(address)
            if dev is None:
                continue  # never added by us: not ours to remove
            link, table = self._table(dev)
            if link is None:
                continue  # the interface is gone, and its addresses with it
            entry = table.get(address.ip)
            if (
                entry is not None
                and _has_secondaries(table, entry)
                and _ensure_promote_secondaries(dev)
            ):
                log.warning(
                    "vrrp.promote_secondaries iface=%s reason=vip %s is the primary address "
                    "of its subnet; its secondaries are kept",
                    dev,
                    address,
                )
            changes.append(AddressChange(False, link.ifindex, address))
            targets.append((address, dev, table))
        if not changes:
            return
        results = await self._rtnl.change_addresses(changes)
        for (address, dev, table), result in zip(targets, results, strict=True):
            if isinstance(result, AddressError):
                log.error(
                    "vrrp.vip_del_error instance=%s iface=%s address=%s error=%s",
                    runner.name,
                    dev,
                    address,
                    result,
                )
                self._error(runner, "remove_address")
                continue
            table.pop(address.ip, None)
            log.log(
                _vip_log_level(len(changes)),
                "vrrp.vip_del instance=%s iface=%s address=%s absent=%s",
                runner.name,
                dev,
                address,
                not result,
            )
        _log_vip_summary("vrrp.vip_del", runner.name, targets, results)

    def _send_garp(self, runner: _Runner, addresses: tuple[IPAddress, ...], count: int) -> None:
        """Announce each VIP on its own interface, with that interface's MAC (a VMAC's is
        the virtual router MAC)."""
        if self._packet_socket is None:
            self._error(runner, "send_garp")
            return
        by_dev: dict[str, list[IPAddress]] = {}
        for address in addresses:
            vip = runner.vips_by_ip.get(address)
            dev = runner.dev_of(vip) if vip is not None else runner.vip_ifname
            by_dev.setdefault(dev, []).append(address)
        for dev, group in by_dev.items():
            self._send_garp_on(runner, dev, group, count)

    def _send_garp_on(
        self, runner: _Runner, dev: str, addresses: list[IPAddress], count: int
    ) -> None:
        assert self._packet_socket is not None
        link = self._links.get(dev)
        if link is None:
            self._error(runner, "send_garp")
            return
        mac = link.mac
        frames: list[tuple[int, bytes]] = []
        router: bool | None = None
        for address in addresses:
            if isinstance(address, IPv4Address):
                frames.append((ETH_P_ARP, arp.gratuitous_arp(mac, address)))
            else:
                if router is None:
                    router = _ipv6_forwarding(dev)
                frames.append((ETH_P_IPV6, arp.unsolicited_na(mac, address, router=router)))
        sent = 0
        try:
            for _ in range(count):
                for ethertype, frame in frames:
                    send_frame(self._packet_socket, dev, ethertype, frame)
                    sent += 1
        except OSError as exc:
            log.warning("vrrp.garp_error instance=%s iface=%s error=%s", runner.name, dev, exc)
            self._error(runner, "send_garp")
        if sent:
            log.debug("vrrp.garp instance=%s iface=%s frames=%d", runner.name, dev, sent)
            runner.counts.garp_sent += sent

    # ---- VIP repair ------------------------------------------------------------

    def _check_vips(self, runner: _Runner) -> None:
        """A master whose VIP is gone (deleted behind our back) adds it again and
        announces it, in order with its other actions; not a `no_track` one (keepalived
        leaves those alone until the next transition to master)."""
        if runner.fsm.state is not State.MASTER:
            return
        # Every second for every master, so first the common case, cheaply: each VIP it
        # holds is on its interface. Only if one is not, the exact look below (which also
        # leaves out a re-add already queued, and VIPs no longer configured).
        links, tables = self._links, self._addresses
        for ip, watched_dev in runner.watched_vips():
            link = links.get(watched_dev)
            if link is not None and ip not in tables.get(link.ifindex, _NO_ADDRESSES):
                break
        else:
            return
        missing: list[IPInterface] = []
        for vip in runner.spec.params.held_addresses:
            dev = runner.held_vips.get(vip)
            if dev is None or vip in runner.repairing or runner.options(vip).no_track:
                continue
            link, table = self._table(dev)
            if link is not None and vip.ip not in table:
                missing.append(vip)
        if not missing:
            return
        runner.repairing.update(missing)
        for vip in missing:
            dev = runner.held_vips[vip]
            log.warning(
                "vrrp.vip_repair instance=%s iface=%s address=%s reason=missing_on_master",
                runner.name,
                dev,
                vip,
            )
            self._publish(VipRepaired(runner.name, dev, str(vip)))
        runner.queue.put_nowait(AddAddresses(tuple(missing)))
        count = runner.spec.params.garp.master_repeat
        if count > 0:
            runner.queue.put_nowait(SendGratuitousArp(tuple(v.ip for v in missing), count))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(VIP_SWEEP_INTERVAL)
            for runner in tuple(self._runners.values()):
                self._check_vips(runner)
            try:
                await self._check_routes()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("vrrp.route_check_error")

    # ---- virtual routes and rules ------------------------------------------------

    def _queue_route_sync(self, runner: _Runner) -> None:
        if not runner.route_sync_queued and not runner.retired:
            runner.route_sync_queued = True
            runner.queue.put_nowait(_RepairRoutes())

    def _routes_wanted(self, runner: _Runner) -> bool:
        return runner.routes_active and runner.fsm.state is State.MASTER and not runner.retired

    def _due(self, runner: _Runner, item: VirtualRoute | VirtualRule, now: float) -> bool:
        retry = runner.route_retry.get(item)
        return retry is None or now >= retry[1]

    async def _sync_routes(self, runner: _Runner) -> None:
        """Make the kernel hold exactly the instance's routes and rules while it is a
        master that applied them, and none of ours otherwise. Rules go before routes on
        the way out and after them on the way in (keepalived's order)."""
        now = self._now()
        wanted = self._routes_wanted(runner)
        routes = runner.spec.virtual_routes if wanted else ()
        rules = runner.spec.virtual_rules if wanted else ()
        for rule in [r for r in runner.held_rules if r not in rules]:
            if self._due(runner, rule, now):
                await self._remove_rule(runner, rule, now)
        for route in [r for r in runner.held_routes if r not in routes]:
            if self._due(runner, route, now):
                await self._remove_route(runner, route, now)
        if not wanted:
            for item in list(runner.route_retry):
                if item not in runner.held_routes and item not in runner.held_rules:
                    del runner.route_retry[item]
            return
        for route in routes:
            if route not in runner.held_routes and self._due(runner, route, now):
                await self._add_route(runner, route, now)
        for rule in rules:
            if rule not in runner.held_rules and self._due(runner, rule, now):
                await self._add_rule(runner, rule, now)

    def _oif(self, route: VirtualRoute) -> tuple[bool, int | None]:
        if route.dev is None:
            return True, None
        link = self._links.get(route.dev)
        return (link is not None), (link.ifindex if link is not None else None)

    async def _add_route(self, runner: _Runner, route: VirtualRoute, now: float) -> None:
        known, oif = self._oif(route)
        try:
            if not known:
                raise RtnlError(errno.ENODEV, "no such interface")
            added = await self._rtnl.add_route(route, oif)
            ours = added or route_key(route) in await self._rtnl.our_routes()
        except RtnlError as exc:
            self._route_failed(runner, route, "add_route", exc.code, str(exc), now)
            return
        runner.route_ops += 1
        if not ours:
            # Someone else's route (another protocol) has its destination, table and
            # metric: leave it, and say so (plainly, once, then at debug level).
            self._route_failed(
                runner, route, "add_route", errno.EEXIST, "a route not ours holds its key", now
            )
            return
        self._route_done(runner, route, "route_add", present=not added)
        runner.held_routes.add(route)

    async def _remove_route(self, runner: _Runner, route: VirtualRoute, now: float) -> None:
        _, oif = self._oif(route)
        try:
            removed = await self._rtnl.remove_route(route, oif)
        except RtnlError as exc:
            self._route_failed(runner, route, "remove_route", exc.code, str(exc), now)
            return
        runner.route_ops += 1
        runner.held_routes.discard(route)
        self._route_done(runner, route, "route_del", absent=not removed)

    async def _add_rule(self, runner: _Runner, rule: VirtualRule, now: float) -> None:
        try:
            added = await self._rtnl.add_rule(rule)
            ours = added or rule_key(rule) in await self._rtnl.our_rules()
        except RtnlError as exc:
            self._route_failed(runner, rule, "add_rule", exc.code, str(exc), now)
            return
        runner.route_ops += 1
        if not ours:
            self._route_failed(
                runner, rule, "add_rule", errno.EEXIST, "an identical rule not ours exists", now
            )
            return
        self._route_done(runner, rule, "rule_add", present=not added)
        runner.held_rules.add(rule)

    async def _remove_rule(self, runner: _Runner, rule: VirtualRule, now: float) -> None:
        try:
            removed = await self._rtnl.remove_rule(rule)
        except RtnlError as exc:
            self._route_failed(runner, rule, "remove_rule", exc.code, str(exc), now)
            return
        runner.route_ops += 1
        runner.held_rules.discard(rule)
        self._route_done(runner, rule, "rule_del", absent=not removed)

    def _route_done(
        self, runner: _Runner, item: VirtualRoute | VirtualRule, event: str, **flags: bool
    ) -> None:
        failures = runner.route_retry.pop(item, (0, 0.0))[0]
        detail = " ".join(f"{k}={v}" for k, v in flags.items())
        log.info(
            "vrrp.%s instance=%s %s=%r %s%s",
            event,
            runner.name,
            "rule" if isinstance(item, VirtualRule) else "route",
            str(item),
            detail,
            f" after_failures={failures}" if failures else "",
        )

    def _route_failed(
        self,
        runner: _Runner,
        item: VirtualRoute | VirtualRule,
        operation: str,
        code: int,
        message: str,
        now: float,
    ) -> None:
        """Count it, say it once (then at debug level) and retry with backoff: the kernel
        says the same thing every time until something changes, and the instance keeps its
        state (keepalived logs the netlink error and stays master)."""
        failures = runner.route_retry.get(item, (0, 0.0))[0] + 1
        delay = min(ROUTE_RETRY_MAX, 2.0 ** (failures - 1))
        runner.route_retry[item] = (failures, now + delay)
        self._error(runner, operation)
        kind = "rule" if isinstance(item, VirtualRule) else "route"
        log.log(
            logging.WARNING if failures == 1 else logging.DEBUG,
            "vrrp.%s_error instance=%s %s=%r error=%r%s retry_in=%gs failures=%d",
            operation,
            runner.name,
            kind,
            str(item),
            message,
            _HINTS.get(code, ""),
            delay,
            failures,
        )

    async def _remove_stale_routes(self, runner: _Runner) -> None:
        """Routes and rules of ours an earlier run left (kill -9) go, unless we are master
        by now: keepalived removes its virtual routes and rules at start as well."""
        if runner.fsm.state is State.MASTER:
            return
        try:
            routes = await self._rtnl.our_routes()
            rules = await self._rtnl.our_rules()
        except RtnlError as exc:
            log.warning("vrrp.route_dump_error instance=%s error=%s", runner.name, exc)
            return
        now = self._now()
        for rule in runner.spec.virtual_rules:
            if rule_key(rule) in rules:
                log.warning("vrrp.stale_rule instance=%s rule=%r", runner.name, str(rule))
                await self._remove_rule(runner, rule, now)
        for route in runner.spec.virtual_routes:
            if route_key(route) in routes:
                log.warning("vrrp.stale_route instance=%s route=%r", runner.name, str(route))
                await self._remove_route(runner, route, now)

    async def _check_routes(self) -> None:
        """The sweep's part for routes and rules: repair what a master lost, retry what the
        kernel refused once its backoff is over, and go on removing what a former master
        could not remove."""
        runners = [
            r
            for r in self._runners.values()
            if r.started and (r.held_routes or r.held_rules or r.route_retry)
        ]
        watched = [
            r
            for r in runners
            if self._routes_wanted(r)
            and (
                any(not x.no_track for x in r.held_routes)
                or any(not x.no_track for x in r.held_rules)
            )
        ]
        routes: set[object] = set()
        rules: set[object] = set()
        ops = {r.name: r.route_ops for r in watched}
        if watched:
            try:
                routes = set(await self._rtnl.our_routes())
                rules = set(await self._rtnl.our_rules())
            except RtnlError as exc:
                log.debug("vrrp.route_dump_error error=%s", exc)
                watched = []
        now = self._now()
        for runner in runners:
            if runner.route_sync_queued or runner.retired:
                continue
            repair = False
            # A change of ours since the dump began would look like a loss: skip a round.
            if runner in watched and runner.route_ops == ops.get(runner.name):
                for route in [r for r in runner.held_routes if not r.no_track]:
                    if route_key(route) not in routes:
                        self._lost(runner, route)
                        runner.held_routes.discard(route)
                        repair = True
                for rule in [r for r in runner.held_rules if not r.no_track]:
                    if rule_key(rule) not in rules:
                        self._lost(runner, rule)
                        runner.held_rules.discard(rule)
                        repair = True
            if repair or any(self._due(runner, item, now) for item in runner.route_retry):
                self._queue_route_sync(runner)

    def _lost(self, runner: _Runner, item: VirtualRoute | VirtualRule) -> None:
        kind = "rule" if isinstance(item, VirtualRule) else "route"
        log.warning(
            "vrrp.%s_repair instance=%s %s=%r reason=missing_on_master",
            kind,
            runner.name,
            kind,
            str(item),
        )
        self._publish(RouteRepaired(runner.name, kind, str(item)))

    # ---- VMAC ------------------------------------------------------------------------

    def _vmac_link_changed(self, ifname: str) -> None:
        """A link came, went or changed: (re)create the VMACs that need it (ours, deleted
        by someone; or waiting for their parent to appear)."""
        if self._stopped:
            return
        for runner in tuple(self._runners.values()):
            if runner.vmac is None or runner.retired or runner.vmac in self._vmac_busy:
                continue
            if ifname not in (runner.vmac, runner.spec.interface):
                continue
            if not self._vmac_usable(runner) or (
                runner.family == socket.AF_INET6 and self._source(runner) is None
            ):
                self._spawn(self._ensure_vmac(runner))

    async def _ensure_vmac(self, runner: _Runner) -> None:
        """Create the instance's VMAC (or adopt one an earlier run left), set it up as
        keepalived does, and learn it before returning. Failures are logged and counted;
        the instance then waits in FAULT (vmac_missing) for the next chance."""
        name = runner.vmac
        assert name is not None
        if name in self._vmac_busy:
            return
        self._vmac_busy.add(name)
        try:
            wait = runner.vmac_attempt + VMAC_RETRY - self._now()
            if wait > 0:
                await asyncio.sleep(wait)  # someone deleting it over and over: not a loop
            runner.vmac_attempt = self._now()
            if runner.retired or self._stopped:
                return
            await self._setup_vmac(runner, name)
        except RtnlError as exc:
            log.error("vrrp.vmac_error instance=%s vmac=%s error=%s", runner.name, name, exc)
            self._error(runner, "vmac")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("vrrp.vmac_error instance=%s vmac=%s", runner.name, name)
            self._error(runner, "vmac")
        finally:
            self._vmac_busy.discard(name)

    async def _setup_vmac(self, runner: _Runner, name: str) -> None:
        base = self._links.get(runner.spec.interface)
        if base is None:
            return  # its appearance calls us again
        mac = _vmac_of(runner)
        link = self._links.get(name)
        if link is not None and link.kind != "macvlan":
            log.error(
                "vrrp.vmac_name_taken instance=%s vmac=%s kind=%s: not a macvlan, left alone",
                runner.name,
                name,
                link.kind or "device",
            )
            self._error(runner, "vmac")
            return
        if link is not None and (link.mac != mac or link.lower != base.ifindex):
            # keepalived removes a VMAC with the wrong MAC or parent and creates it anew.
            log.warning("vrrp.vmac_replaced instance=%s vmac=%s", runner.name, name)
            await self._rtnl.remove_link(link.ifindex)
            self._apply(LinkRemoved(link.ifindex, name))
            link = None
        created = link is None
        ifindex = link.ifindex if link is not None else None
        if ifindex is None:
            ifindex = await self._rtnl.add_macvlan(name, base.ifindex, mac)
        if runner.family == socket.AF_INET:
            self._vmac_sysctls(runner, name)
        await self._rtnl.set_up(ifindex)
        fresh = await self._rtnl.link(ifindex)
        if fresh is None:
            return
        self._apply(LinkChanged(fresh))
        await self._copy_link_local(runner, fresh)
        log.info(
            "vrrp.vmac instance=%s vmac=%s mac=%s parent=%s created=%s",
            runner.name,
            name,
            mac.hex(":"),
            base.ifname,
            created,
        )
        self._refresh_name(name)

    def _vmac_sysctls(self, runner: _Runner, name: str) -> None:
        """keepalived's settings for an IPv4 VMAC (see vrrp/vmac.py for why)."""
        sysctls, base = self._sysctls, runner.spec.interface
        all_path = sysctls.path(4, "all", "rp_filter")
        all_value = sysctls.read(all_path)
        if all_value:
            values = {
                ifname: value
                for ifname in sysctls.interfaces()
                if ifname != "all"
                and (value := sysctls.read(sysctls.path(4, ifname, "rp_filter"))) is not None
            }
            for ifname, value in raised_rp_filter(all_value, values).items():
                sysctls.write(sysctls.path(4, ifname, "rp_filter"), value)
            sysctls.write(all_path, 0)
        for key, value in (
            ("arp_ignore", 1),
            ("accept_local", 1),
            ("rp_filter", 0),
            ("promote_secondaries", 1),
        ):
            sysctls.write(sysctls.path(4, name, key), value, remember=False)
        if not any(
            vip.version == 6 and runner.dev_of(vip) == name
            for vip in runner.spec.params.held_addresses
        ):
            sysctls.write(sysctls.path(6, name, "disable_ipv6"), 1, remember=False)
        for key in ("arp_ignore", "arp_filter"):
            sysctls.write(sysctls.path(4, base, key), 1)

    async def _copy_link_local(self, runner: _Runner, vmac: Link) -> None:
        """IPv6 adverts leave the VMAC from the parent's link-local address, which
        keepalived copies onto it (no DAD, preferred lifetime 0: never a source otherwise)."""
        if runner.family != socket.AF_INET6 or runner.spec.vmac_xmit_base:
            return
        table = self._addresses.setdefault(vmac.ifindex, {})
        if any(ip.version == 6 and ip.is_link_local for ip in table):
            return
        parent = _primary(self._table(runner.spec.interface)[1], (), socket.AF_INET6)
        if parent is None:
            log.warning(
                "vrrp.vmac_no_link_local instance=%s iface=%s: waiting for its link-local address",
                runner.name,
                runner.spec.interface,
            )
            return
        address = ip_interface(f"{parent}/64")
        try:
            await self._rtnl.add_address(vmac.ifindex, address, None, deprecated=True)
        except AddressError as exc:
            log.error("vrrp.vmac_link_local_error vmac=%s error=%s", vmac.ifname, exc)
            self._error(runner, "vmac")
            return
        self._apply(AddressAdded(LinkAddress(vmac.ifindex, address)))

    async def _remove_vmac(self, name: str) -> None:
        """Delete a VMAC of ours (only ever a macvlan), then put back the parent's sysctls
        if no VMAC remains on it, and rp_filter if no IPv4 VMAC remains at all."""
        link = self._links.get(name)
        if link is not None and link.kind == "macvlan":
            removed = await self._rtnl.remove_link(link.ifindex)
            log.info("vrrp.vmac_removed vmac=%s present=%s", name, removed)
        live = [r for r in self._runners.values() if r.vmac and r.family == socket.AF_INET]
        bases = {r.spec.interface for r in live}
        changed = self._sysctls.changed()
        stale = [
            path
            for path in changed
            if (path.endswith("/arp_ignore") or path.endswith("/arp_filter"))
            and path.split("/")[-2] not in bases
        ]
        if not live:
            stale += [path for path in changed if path.endswith("/rp_filter")]
        self._sysctls.restore(stale)

    # ---- receiving -----------------------------------------------------------

    def _on_readable(self, iface: _Interface, family: socket.AddressFamily) -> None:
        sock = iface.sockets.get(family)
        for _ in range(READ_BURST):
            if sock is None or iface.sockets.get(family) is not sock:
                return  # closed by a link event handled in between
            try:
                received = receive(sock)
            except DatagramError as exc:
                self._drop(iface, exc.reason, exc.detail, None)
                continue
            except OSError as exc:
                # e.g. ENETDOWN queued on the socket while the link flapped.
                log.debug("vrrp.recv_error iface=%s error=%s", iface.name, exc)
                return
            if received is None:
                return
            source: IPAddress | None = None
            try:
                key = repeat_key(family, received)
                repeat = iface.repeats.get(key) if key is not None else None
                if repeat is not None and self._receive_repeat(iface, family, repeat):
                    continue
                try:
                    datagram = parse(family, received)
                except DatagramError as exc:
                    self._drop(iface, exc.reason, exc.detail, None)
                    continue
                source = datagram.source
                self._receive(iface, family, datagram, key)
            except Exception:
                log.exception("vrrp.receive_error iface=%s src=%s", iface.name, source)
                self._drop(iface, Drop.INTERNAL_ERROR.value, "see traceback", source)

    def _receive_repeat(
        self, iface: _Interface, family: socket.AddressFamily, repeat: _Repeat
    ) -> bool:
        """A copy of an advert this instance accepted: delivered to the fsm without being
        decoded and judged again, if nothing those checks depend on has changed since.

        They depend on the bytes (the key found `repeat`), on the instance's configuration
        (`params`, `unicast`: compared by identity) and on the interface's addresses and
        peer filter, which change in place and so are checked again here, as
        `_receive` does. False: let `_receive` judge it in full. (Only a started instance
        gets an entry, and it stays started; a retired one has left `instances`.)
        """
        runner, source = repeat.runner, repeat.source
        if (
            runner.fsm.params is not repeat.params
            or runner.unicast is not repeat.unicast
            or iface.instances.get((family, repeat.advertisement.vrid)) is not runner
            or iface.sent_by_us(source)
        ):
            return False
        peers = iface.peer_filter.get(family)
        if peers is not None and source not in peers:
            return False
        runner.counts.adverts_received += 1
        runner.mismatch_logged = False
        self._deliver(iface, runner, repeat.advertisement, source)
        return True

    def _remember(
        self,
        iface: _Interface,
        runner: _Runner,
        key: Hashable,
        adv: Advertisement,
        source: IPAddress,
    ) -> None:
        """Keep the advert `runner` just accepted, for `_receive_repeat`: one per instance,
        so the table is as large as the number of instances, whatever arrives."""
        if runner.repeat_key != key:
            self._forget(iface, runner)
        runner.repeat_key = key
        iface.repeats[key] = _Repeat(runner, adv, source, runner.fsm.params, runner.unicast)

    def _forget(self, iface: _Interface, runner: _Runner) -> None:
        key = runner.repeat_key
        if key is not None:
            runner.repeat_key = None
            entry = iface.repeats.get(key)
            if entry is not None and entry.runner is runner:
                del iface.repeats[key]

    def _receive(
        self,
        iface: _Interface,
        family: socket.AddressFamily,
        dgram: Datagram,
        key: Hashable | None = None,
    ) -> None:
        """decode -> instance -> delivery -> peers -> check_for_instance -> addresses_match
        -> fsm. An advert accepted with matching addresses is remembered by `key`."""
        if iface.sent_by_us(dgram.source):
            self._drop(iface, Drop.OWN_PACKET.value, "", dgram.source)
            return
        peers = iface.peer_filter.get(family)
        if peers is not None and dgram.source not in peers:
            # Checked before decoding too: a stranger's bytes need not reach the codec.
            self._drop(iface, Drop.NOT_A_PEER.value, "", dgram.source)
            return
        try:
            adv = packet.decode(dgram.payload, dgram.source, dgram.destination)
        except packet.PacketError as exc:
            self._drop(iface, _reason_label(exc.reason), str(exc), dgram.source)
            return
        runner = iface.instances.get((family, adv.vrid))
        if runner is None:
            self._drop(iface, Drop.UNKNOWN_VRID.value, f"vrid {adv.vrid}", dgram.source)
            return
        if not runner.started:
            self._drop(iface, Drop.STARTING.value, f"vrid {adv.vrid}", dgram.source)
            return
        unicast = runner.unicast
        try:
            # Decided here, not in the codec: only the instance knows whether it expects
            # multicast (TTL 255, RFC 5798 §7.1) or unicast (TTL checked if configured).
            packet.check_delivery(
                dgram.destination,
                dgram.ttl,
                unicast=bool(unicast.peers),
                min_ttl=unicast.min_ttl,
                max_ttl=unicast.max_ttl,
            )
        except packet.PacketError as exc:
            self._drop(iface, _reason_label(exc.reason), f"vrid {adv.vrid}: {exc}", dgram.source)
            return
        if unicast.check_src and dgram.source not in unicast.peers:
            self._drop(iface, Drop.NOT_A_PEER.value, f"vrid {adv.vrid}", dgram.source)
            return
        try:
            packet.check_for_instance(adv, runner.fsm.params)
        except packet.PacketError as exc:
            self._drop(iface, _reason_label(exc.reason), str(exc), dgram.source)
            return
        runner.counts.adverts_received += 1
        if not packet.same_addresses(adv.addresses, runner.fsm.advert_addresses):
            # RFC 5798 §6.4.2 (420) lets an implementation log this and still accept the
            # advert; a misconfigured peer must not start a fight over the VIPs.
            runner.counts.address_mismatch += 1
            level = logging.DEBUG if runner.mismatch_logged else logging.WARNING
            runner.mismatch_logged = True
            log.log(
                level,
                "vrrp.address_mismatch instance=%s vrid=%d iface=%s src=%s",
                runner.name,
                adv.vrid,
                iface.name,
                dgram.source,
            )
        else:
            runner.mismatch_logged = False
            if key is not None:
                self._remember(iface, runner, key, adv, dgram.source)
        self._deliver(iface, runner, adv, dgram.source)

    def _deliver(
        self, iface: _Interface, runner: _Runner, adv: Advertisement, source: IPAddress
    ) -> None:
        """Hand an accepted advert to the instance's fsm and perform what it returns."""
        fsm = runner.fsm
        suppressed = fsm.suppressed_answers
        # `_feed` without its closure: this runs for every advert of every instance.
        now = self._now()
        try:
            actions = fsm.receive(adv, source, now)
        except Exception:
            log.exception("vrrp.fsm_error instance=%s", runner.name)
            actions = []
        self._act(runner, actions, now)
        if fsm.suppressed_answers != suppressed:
            self._drop(iface, Drop.ANSWER_SUPPRESSED.value, f"instance {runner.name}", source)
        if fsm.state is State.BACKUP:
            heard = (None, None) if adv.priority == 0 else (source, adv.priority)
            if heard != runner.heard:
                runner.heard = heard
                # Queued: after a state change that is still waiting to be published.
                runner.queue.put_nowait(
                    _Publish(MasterChanged(runner.name, heard[0], heard[1], ours=False))
                )

    def _drop(self, iface: _Interface, reason: str, detail: str, source: IPAddress | None) -> None:
        log.debug(
            "vrrp.drop iface=%s reason=%s src=%s detail=%s", iface.name, reason, source, detail
        )
        key = (iface.name, reason)
        self._drops[key] = self._drops.get(key, 0) + 1

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _publish(self, event: object) -> None:
        if self._publish_to is None:
            return
        try:
            self._publish_to(event)
        except Exception:
            # What listens is not the engine's business; its bugs must not stop VRRP.
            log.exception("vrrp.publish_error event=%s", type(event).__name__)

    # ---- links and addresses -------------------------------------------------

    def _attach(self, iface: _Interface) -> None:
        """A new interface of ours: take what we know of it from netlink."""
        link = self._links.get(iface.name)
        iface.link = link
        if link is not None:
            iface.addresses = self._addresses.setdefault(link.ifindex, {})

    def _refresh(self, iface: _Interface) -> None:
        self._refresh_name(iface.name)

    def _refresh_name(self, ifname: str) -> None:
        """Re-judge every instance that depends on `ifname` (its own interface, its VMAC's
        parent, a tracked `dev`)."""
        now = self._now()
        for runner in tuple(self._runners.values()):
            if runner.worker is not None and ifname in runner.depends_on:
                iface = self._interfaces.get(runner.sock_ifname)
                if iface is not None:
                    self._refresh_runner(iface, runner, now)

    def _vmac_usable(self, runner: _Runner) -> bool:
        """Whether the instance's VMAC exists and is what we would have created."""
        assert runner.vmac is not None
        link, base = self._links.get(runner.vmac), self._links.get(runner.spec.interface)
        return (
            link is not None
            and base is not None
            and link.kind == "macvlan"
            and link.lower == base.ifindex
            and link.mac == _vmac_of(runner)
        )

    def _refresh_runner(self, iface: _Interface, runner: _Runner, now: float) -> None:
        """Bring an instance's faults and source address in line with its interfaces."""
        faults: set[str] = set()
        primary: IPAddress | None = None
        base = runner.spec.interface
        if self._links.get(base) is None:
            faults.add(NO_SUCH_INTERFACE)
            if not iface.missing_logged:
                iface.missing_logged = True
                log.warning(
                    "vrrp.no_such_interface iface=%s instances=%s: waiting for it to appear",
                    base,
                    ",".join(r.name for r in iface.instances.values()),
                )
        else:
            iface.missing_logged = False
            if runner.vmac is not None and not self._vmac_usable(runner):
                faults.add(VMAC_MISSING)
            elif not iface.operational and not runner.spec.dont_track_primary:
                # keepalived's dont_track_primary: its own link going down is no FAULT.
                faults.add(LINK_DOWN)
            primary = self._source(runner)
            if primary is None:
                faults.add(NO_SOURCE_ADDRESS)
        down = tuple(
            sorted(
                dev
                for dev in runner.tracked_devs
                if (link := self._links.get(dev)) is None or not link.up
            )
        )
        if down:
            faults.add(DEV_LINK_DOWN)
        if down != runner.faults_logged:
            runner.faults_logged = down
            if down:
                log.warning(
                    "vrrp.dev_link_down instance=%s devs=%s: a VIP's or route's interface "
                    "is down or absent (no_track on it would ignore it, as in keepalived)",
                    runner.name,
                    ",".join(down),
                )
        if primary is not None and primary != runner.fsm.primary_address:
            runner.fsm.set_primary_address(primary)
        old = runner.iface_faults
        if faults == old:
            return
        runner.iface_faults = faults
        if NO_SOURCE_ADDRESS in faults - old:
            log.warning(
                "vrrp.no_source_address instance=%s iface=%s: FAULT until the interface has "
                "an address of its own",
                runner.name,
                iface.name,
            )
        self._apply_faults(runner, now)

    def _apply_faults(self, runner: _Runner, now: float) -> None:
        """Bring the fsm's faults in line with the interface's, tracking's and the group's."""
        faults = runner.iface_faults | runner.track_faults
        if runner.group_fault:
            faults = faults | {SYNC_GROUP_FAULT}
        old = set(runner.fsm.faults)
        if faults == old:
            return
        # New faults first: the instance must never pass through "no fault" on the way.
        for fault in sorted(faults - old):
            self._feed(runner, lambda t, f=fault: runner.fsm.set_fault(f, True, t), now)
        for fault in sorted(old - faults):
            self._feed(runner, lambda t, f=fault: runner.fsm.set_fault(f, False, t), now)
        self._publish(FaultsChanged(runner.name, runner.interface, tuple(sorted(faults))))

    # ---- tracking ------------------------------------------------------------------

    def _verdict(self, key: TrackKey) -> Verdict:
        kind, name = key
        if kind is TrackKind.INTERFACE:
            return Verdict(self._interface_up(name))
        return self._verdicts.get(key, PENDING)

    def _interface_up(self, name: str) -> bool:
        link = self._links.get(name)
        return link is not None and link.up

    def _retrack(
        self, runner: _Runner, now: float, *, publish_priority: bool = True
    ) -> tuple[str, ...]:
        """Apply the instance's tracked items; returns those still pending."""
        spec = runner.spec
        if not spec.track and not runner.tracking and not runner.track_faults:
            return ()
        verdicts = {item.key: self._verdict(item.key) for item in spec.track}
        result = evaluate(spec.params.priority, spec.track, verdicts)
        faults = {fault_name(label) for label in result.faults}
        if faults != runner.track_faults:
            for label in sorted(faults - runner.track_faults):
                log.warning("vrrp.tracked_down instance=%s item=%s: FAULT", runner.name, label)
            for label in sorted(runner.track_faults - faults):
                log.info("vrrp.tracked_up instance=%s item=%s", runner.name, label)
            runner.track_faults = faults
            self._apply_faults(runner, now)
        fsm = runner.fsm
        if result.priority != fsm.effective_priority:
            before = fsm.effective_priority
            self._feed(runner, lambda t: fsm.set_priority(result.priority, t), now)
            log.info(
                "vrrp.priority instance=%s from=%d to=%d base=%d",
                runner.name,
                before,
                fsm.effective_priority,
                spec.params.priority,
            )
            if publish_priority:
                self._publish(
                    PriorityChanged(runner.name, spec.params.priority, fsm.effective_priority)
                )
        tracking = tuple(_item_status(s) for s in result.items)
        if tracking != runner.tracking:
            runner.tracking = tracking
            self._publish(TrackingChanged(runner.name, tracking, fsm.effective_priority))
        if (
            runner.waiting
            and not result.pending
            and self._runners.get(runner.name) is runner
            and not self._stopped
        ):
            self._start_runner(runner, now)
        return result.pending

    def _retrack_interfaces(self) -> None:
        tracked = {
            item.name
            for runner in self._runners.values()
            for item in runner.spec.track
            if item.kind is TrackKind.INTERFACE
        }
        changed = set()
        for name in tracked:
            up = self._interface_up(name)
            if self._iface_up.get(name) != up:
                self._iface_up[name] = up
                changed.add(name)
                log.info("vrrp.tracked_interface iface=%s up=%s", name, up)
        if not changed:
            return
        now = self._now()
        for runner in tuple(self._runners.values()):
            if any(
                item.kind is TrackKind.INTERFACE and item.name in changed
                for item in runner.spec.track
            ):
                self._retrack(runner, now)

    # ---- sync groups ---------------------------------------------------------------

    def _set_group(self, runner: _Runner, group: str | None) -> None:
        if runner.group == group:
            return
        runner.group = group
        runner.fsm.set_gated(group is not None)
        if group is None and runner.group_fault:
            runner.group_fault = False
            self._apply_faults(runner, self._now())

    def _member(self, runner: _Runner) -> Member:
        fsm = runner.fsm
        own = bool(runner.iface_faults or runner.track_faults)
        return Member(
            fsm.state, own_fault=own, group_fault=runner.group_fault, wants_master=fsm.wants_master
        )

    def _sync_group(self, group: SyncGroupSpec, now: float, cause: _Runner | None) -> None:
        """Apply the group's rule (vrrp/syncgroup.py) until nothing is left to do."""
        if self._syncing or self._stopped:
            return
        runners = {
            name: runner
            for name in group.members
            if (runner := self._runners.get(name)) is not None and runner.group == group.name
        }
        if not runners:
            return
        self._syncing = True
        try:
            for _ in range(SYNC_ROUNDS):
                inputs = next_inputs({name: self._member(r) for name, r in runners.items()})
                if not inputs:
                    break
                for name, what in inputs.items():
                    self._sync_input(runners[name], what, now)
            else:
                log.error("vrrp.sync_group_unsettled group=%s rounds=%d", group.name, SYNC_ROUNDS)
        finally:
            self._syncing = False
        new = group_state({name: self._member(r) for name, r in runners.items()})
        old = self._group_states.get(group.name, State.INITIALIZE)
        if new is old:
            return
        self._group_states[group.name] = new
        if cause is not None and cause.last_reason is not None:
            reason = f"{cause.name}:{cause.last_reason.value}"
        else:
            reason = "configured"
        log.info(
            "vrrp.sync_group group=%s from=%s to=%s reason=%s",
            group.name,
            old.value,
            new.value,
            reason,
        )
        event = SyncGroupStateChanged(group.name, old, new, reason, group.members)
        if old is State.INITIALIZE:
            # The group's first state is said before its members say theirs, as keepalived
            # does at start-up (it sets the group's state before its instances start).
            self._publish(event)
            return
        barrier = _PublishAfterAll(event, set(runners))
        for runner in runners.values():
            runner.queue.put_nowait(barrier)

    def _sync_input(self, runner: _Runner, what: Input, now: float) -> None:
        fsm = runner.fsm
        if what is Input.SET_FAULT or what is Input.CLEAR_FAULT:
            runner.group_fault = what is Input.SET_FAULT
            self._apply_faults(runner, now)
        elif what is Input.PROMOTE:
            self._feed(runner, fsm.promote, now)
        else:
            self._feed(runner, fsm.sync_to_backup, now)

    def _open_sockets(self, iface: _Interface) -> bool:
        assert self._loop is not None and iface.link is not None
        families = {family for family, _ in iface.instances}
        try:
            for family in families:
                if family not in iface.sockets:
                    sock = open_vrrp_socket(family, iface.name, iface.link.ifindex)
                    iface.sockets[family] = sock
                    self._loop.add_reader(sock.fileno(), self._on_readable, iface, family)
        except OSError as exc:
            log.warning("vrrp.socket_error iface=%s error=%s", iface.name, exc)
            self._close_sockets(iface)
            return False
        return True

    def _close_sockets(self, iface: _Interface) -> None:
        self._flush_adverts()  # what was queued for these sockets goes first
        for sock in iface.sockets.values():
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
        iface.sockets.clear()

    def _set_operational(self, iface: _Interface, operational: bool) -> None:
        if operational != iface.operational:
            iface.operational = operational
            link = iface.link
            log.info(
                "vrrp.link iface=%s ifindex=%s up=%s",
                iface.name,
                link.ifindex if link else None,
                operational,
            )
        if not self._stopped:
            self._refresh(iface)

    def _apply(self, event: LinkEvent) -> None:
        self._apply_link_event(event)
        if isinstance(event, LinkChanged | LinkRemoved) and not self._stopped:
            self._retrack_interfaces()

    def _apply_link_event(self, event: LinkEvent) -> None:
        if isinstance(event, LinkChanged):
            link = event.link
            for name, known in list(self._links.items()):
                if known.ifindex == link.ifindex and name != link.ifname:
                    del self._links[name]  # renamed
            self._links[link.ifname] = link
            for iface in self._interfaces.values():
                renamed = iface.link is not None and iface.link.ifindex == link.ifindex
                if renamed and iface.name != link.ifname:  # renamed away: gone for us
                    self._link_gone(iface)
            self._vmac_link_changed(link.ifname)
            iface_or_none = self._interfaces.get(link.ifname)
            if iface_or_none is None:
                self._addresses.setdefault(link.ifindex, {})
                if not self._stopped:
                    self._refresh_name(link.ifname)
                return
            iface = iface_or_none
            if iface.link is not None and iface.link.ifindex != link.ifindex:
                self._link_gone(iface)  # replaced: the old sockets are bound to a dead index
            if iface.link is None and self._monitor_task is not None:
                # A link that appears (or is renamed to our name) may already carry
                # addresses no event will announce; read them, e.g. its IPv6 link-local.
                self._spawn(self._load_addresses(iface, link.ifindex))
            iface.link = link
            iface.addresses = self._addresses.setdefault(link.ifindex, {})
            if link.up:
                self._set_operational(iface, self._open_sockets(iface))
            else:
                self._close_sockets(iface)
                self._set_operational(iface, False)
        elif isinstance(event, LinkRemoved):
            self._addresses.pop(event.ifindex, None)
            gone = [name for name, known in self._links.items() if known.ifindex == event.ifindex]
            for name in gone:
                del self._links[name]
            for iface in self._interfaces.values():
                if iface.link is not None and iface.link.ifindex == event.ifindex:
                    self._link_gone(iface)
            for name in gone:
                if not self._stopped:
                    self._refresh_name(name)
                self._vmac_link_changed(name)
        elif isinstance(event, AddressAdded | AddressRemoved):
            entry = event.address
            table = self._addresses.setdefault(entry.ifindex, {})
            if isinstance(event, AddressAdded):
                table[entry.address.ip] = entry
            else:
                table.pop(entry.address.ip, None)
            for iface in self._interfaces.values():
                if iface.link is not None and iface.link.ifindex == entry.ifindex:
                    iface.addresses = table
            ifname = next(
                (n for n, link in self._links.items() if link.ifindex == entry.ifindex), None
            )
            if ifname is not None and not self._stopped:
                self._refresh_name(ifname)
                if entry.address.ip.version == 6 and entry.address.ip.is_link_local:
                    self._vmac_link_changed(ifname)  # a VMAC's copied link-local follows it
            if isinstance(event, AddressRemoved):
                for runner in tuple(self._runners.values()):
                    if entry.address.ip in runner.vips_by_ip:
                        self._check_vips(runner)

    def _link_gone(self, iface: _Interface) -> None:
        iface.link = None
        iface.addresses = {}
        self._close_sockets(iface)
        iface.operational = False
        if not self._stopped:
            self._refresh(iface)

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)  # asyncio keeps only weak references to tasks
        task.add_done_callback(self._background.discard)

    async def _load_addresses(self, iface: _Interface, ifindex: int) -> None:
        try:
            addresses = await self._rtnl.addresses()
        except Exception as exc:
            log.warning("vrrp.address_dump_error iface=%s error=%s", iface.name, exc)
            return
        table = self._addresses.setdefault(ifindex, {})
        for a in addresses:
            if a.ifindex == ifindex:
                table.setdefault(a.address.ip, a)
        if iface.link is not None and iface.link.ifindex == ifindex:
            iface.addresses = table
            self._refresh(iface)

    async def _resync(self) -> None:
        """Learn every link and address from a dump, as if each were a fresh event."""
        links = await self._rtnl.links()
        addresses = await self._rtnl.addresses()
        tables: dict[int, dict[IPAddress, LinkAddress]] = {}
        for a in addresses:
            tables.setdefault(a.ifindex, {})[a.address.ip] = a
        self._links = {link.ifname: link for link in links}
        self._addresses = {link.ifindex: tables.get(link.ifindex, {}) for link in links}
        present = {link.ifname for link in links}
        for iface in self._interfaces.values():
            if iface.name not in present and iface.link is not None:
                self._link_gone(iface)
        for link in links:
            self._apply(LinkChanged(link))
        for iface in self._interfaces.values():
            if iface.link is not None:
                iface.addresses = self._addresses[iface.link.ifindex]
                self._refresh(iface)
        for runner in tuple(self._runners.values()):
            self._check_vips(runner)

    async def _monitor(self) -> None:
        while True:
            try:
                async for event in self._rtnl.events():
                    self._apply(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # ENOBUFS: the kernel dropped events. Re-subscribe, then re-read everything.
                log.warning("vrrp.monitor_error error=%s", exc)
                await asyncio.sleep(MONITOR_RETRY)
                with contextlib.suppress(Exception):
                    await self._rtnl.open_monitor()
                    await self._resync()


def _has_secondaries(table: Mapping[IPAddress, LinkAddress], entry: LinkAddress) -> bool:
    """Whether `entry` is a primary IPv4 address with secondaries in its subnet."""
    if entry.secondary or not isinstance(entry.address.ip, IPv4Address):
        return False
    network = ip_network(entry.address.network)
    return any(
        other.secondary and other.address.ip in network
        for other in table.values()
        if other is not entry and isinstance(other.address.ip, IPv4Address)
    )


# What the kernel's refusal of a route usually means, for the log line.
_HINTS = {
    errno.ENETUNREACH: " (the gateway is not on a connected network)",
    errno.EHOSTUNREACH: " (the gateway is not reachable)",
    errno.ENODEV: " (its dev does not exist)",
    errno.EADDRNOTAVAIL: " (its src is not an address of this host)",
    errno.ESRCH: " (its table or route is gone)",
}


def _vmac_of(runner: _Runner) -> bytes:
    return vmac_address(runner.spec.params.vrid, 6 if runner.family == socket.AF_INET6 else 4)


def _frozen(counts: _Counts, live_missed: int) -> InstanceCounters:
    return InstanceCounters(
        adverts_sent=counts.adverts_sent,
        adverts_received=counts.adverts_received,
        garp_sent=counts.garp_sent,
        address_mismatch=counts.address_mismatch,
        errors=dict(counts.errors),
        intervals_missed=counts.intervals_missed + live_missed,
    )


class _Event(Protocol):
    def __call__(self, now: float, /) -> list[Action]: ...


def _item_status(state: ItemState) -> TrackedItemStatus:
    item, verdict = state.item, state.verdict
    if verdict.up is None:
        word = "pending"
    elif item.kind is TrackKind.FILE:
        word = "down" if state.effect is Effect.FAULT else "up"
    else:
        word = "up" if verdict.up else "down"
    return TrackedItemStatus(
        kind=item.kind.value,
        name=item.name,
        weight=item.weight,
        reverse=item.reverse,
        state=word,
        value=verdict.value if item.kind is TrackKind.FILE else None,
        effect=state.effect.value,
        delta=state.delta,
    )


__all__ = ["Drop", "Unicast", "VrrpEngine", "spec_of"]


# More VIPs than this in one change are logged as one line (each at debug level): a line
# per VIP costs about 0.1 ms, and a takeover of hundreds would spend longer logging than
# adding them.
VIP_LINES = 8


def _vip_log_level(count: int) -> int:
    return logging.INFO if count <= VIP_LINES else logging.DEBUG


def _log_vip_summary(
    event: str,
    instance: str,
    targets: Sequence[tuple[Any, ...]],
    results: Sequence[bool | AddressError],
) -> None:
    if len(targets) <= VIP_LINES:
        return
    done = sum(r is True for r in results)
    failed = sum(isinstance(r, AddressError) for r in results)
    log.info(
        "%s instance=%s count=%d changed=%d unchanged=%d failed=%d first=%s last=%s",
        event,
        instance,
        len(targets),
        done,
        len(targets) - done - failed,
        failed,
        targets[0][0],
        targets[-1][0],
    )
