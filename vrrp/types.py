"""Values shared by the VRRP codec, the state machine and the asyncio adapter.

Kept apart from packet.py and fsm.py so each of those can be read (and tested)
without the other: the codec produces `Advertisement`s, the state machine
consumes them and produces `Action`s, the adapter performs the actions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from vrrp.track import TrackedItem

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

VRRP_PROTOCOL = 112
VRRP_MCAST_V4 = IPv4Address("224.0.0.18")
VRRP_MCAST_V6 = IPv6Address("ff02::12")


class AuthType(enum.IntEnum):
    """RFC 3768 §5.3.6 (VRRPv2 only; RFC 5798 dropped authentication)."""

    NONE = 0
    SIMPLE = 1  # "PASS" in keepalived: an 8-byte clear-text password
    AH = 2  # historic; rejected


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One decoded (or to-be-encoded) VRRP advertisement.

    `max_advert_int` is always in centiseconds, whatever the version: VRRPv2
    carries whole seconds on the wire (codec multiplies / divides by 100) and
    VRRPv3 carries centiseconds (RFC 5798 §5.2.7).
    """

    version: int  # 2 or 3
    vrid: int  # 1..255
    priority: int  # 0..255
    max_advert_int: int  # centiseconds
    addresses: tuple[IPAddress, ...]
    auth_type: AuthType = AuthType.NONE  # v2 only
    auth_data: bytes = b""  # v2 only: the 8-byte password field


class State(enum.Enum):
    """RFC 5798 §6.4 states plus FAULT (interface down), as keepalived has it."""

    INITIALIZE = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"


class Reason(enum.Enum):
    """Why a state changed; logged and counted by the adapter."""

    STARTUP = "startup"  # Initialize -> Backup at start
    ADDRESS_OWNER = "address_owner"  # priority 255: straight to Master (§6.4.1)
    MASTER_DOWN = "master_down"  # Master_Down_Timer fired (§6.4.2)
    PRIORITY_ZERO = "priority_zero"  # master resigned, we waited Skew_Time only (§6.4.2)
    PREEMPT = "preempt"  # we are higher priority than the master we hear
    HIGHER_PRIORITY = "higher_priority"  # a master stepping down (§6.4.3)
    SHUTDOWN = "shutdown"  # stop(): priority 0 advert sent, addresses removed
    INTERFACE_DOWN = "interface_down"
    INTERFACE_UP = "interface_up"
    NO_SUCH_INTERFACE = "no_such_interface"  # the configured interface does not exist
    NO_SOURCE_ADDRESS = "no_source_address"  # no address to advertise from (FAULT)
    SOURCE_ADDRESS = "source_address"  # an address appeared: out of FAULT
    STEP_DOWN = "step_down"  # the operator's step-down: priority 0 sent, held in BACKUP
    RELEASED = "released"  # an address owner released from a step-down takes over again
    RESUME = "resume"  # the VRRP process restarted and picks up mastership where it was
    TRACKED_DOWN = "tracked_down"  # a tracked item with weight 0 went down (FAULT)
    TRACKED_UP = "tracked_up"  # the last such item came back: out of FAULT
    SYNC_GROUP = "sync_group"  # the instance's sync group moved it (FAULT, BACKUP, MASTER)


# ---- actions: what the sans-IO core asks the adapter to do -------------------


@dataclass(frozen=True, slots=True)
class SendAdvertisement:
    advertisement: Advertisement


@dataclass(frozen=True, slots=True)
class AddAddresses:
    addresses: tuple[IPInterface, ...]


@dataclass(frozen=True, slots=True)
class RemoveAddresses:
    addresses: tuple[IPInterface, ...]


@dataclass(frozen=True, slots=True)
class SendGratuitousArp:
    """Announce these VIPs: gratuitous ARP for IPv4, unsolicited NA for IPv6.

    `count` frames per address, back to back (keepalived's garp_master_repeat).
    """

    addresses: tuple[IPAddress, ...]
    count: int


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: State
    new: State
    reason: Reason


@dataclass(frozen=True, slots=True)
class ApplyRoutes:
    """Hold the instance's virtual routes and rules (`active`: a master's) or none.

    The adapter knows the routes; the state machine only says when they follow mastership
    (after the VIPs are added, before they are removed: keepalived's order).
    """

    active: bool


Action = (
    SendAdvertisement
    | AddAddresses
    | RemoveAddresses
    | SendGratuitousArp
    | StateChanged
    | ApplyRoutes
)


@dataclass(frozen=True, slots=True)
class GarpSettings:
    """keepalived's gratuitous-ARP knobs, with keepalived's defaults."""

    master_repeat: int = 5  # garp_master_repeat: frames per address at once
    master_delay: float = 5.0  # garp_master_delay: second burst after this (0 = none)
    master_refresh: float = 0.0  # garp_master_refresh: periodic burst while master (0 = off)
    master_refresh_repeat: int = 1  # garp_master_refresh_repeat
    lower_prio_repeat: int = 5  # garp_lower_prio_repeat: burst on hearing a lower priority


@dataclass(frozen=True, slots=True)
class InstanceParams:
    """What the state machine needs to know about one VRRP instance.

    Plain values only: the daemon builds this from the validated config.
    """

    name: str
    vrid: int
    version: int  # 2 or 3
    priority: int  # base priority 1..255 (255 = address owner)
    advert_int: int  # centiseconds (v2: a multiple of 100)
    primary_address: IPAddress  # our own address on the interface, the tie-break key
    virtual_addresses: tuple[IPInterface, ...]
    preempt: bool = True
    preempt_delay: float = 0.0  # seconds
    accept_mode: bool = False
    auth_type: AuthType = AuthType.NONE
    auth_data: bytes = b""  # padded to 8 bytes by the codec
    garp: GarpSettings = GarpSettings()
    # keepalived's virtual_ipaddress_excluded: held with mastership and announced like the
    # VIPs, never carried in adverts (either family).
    excluded_addresses: tuple[IPInterface, ...] = ()
    # How many VIPs of its family an advert carries: at most 255 (the Count field), fewer
    # where the interface MTU allows fewer. The rest are held like excluded addresses.
    max_advert_addresses: int = 255
    # keepalived's `state MASTER|BACKUP`, a start hint: None means MASTER for the address
    # owner and BACKUP for anyone else. Only the owner is affected (it goes MASTER at once
    # unless told BACKUP); keepalived's other effect, clearing nopreempt, is the config's.
    initial_state: State | None = None

    @property
    def advert_addresses(self) -> tuple[IPAddress, ...]:
        """The addresses an advert carries: the first VIPs of the instance's own family
        (RFC 5798 §5.2.9), in configuration order, as keepalived does."""
        family = self.primary_address.version
        own = (vip.ip for vip in self.virtual_addresses if vip.version == family)
        return tuple(own)[: self.max_advert_addresses]

    @property
    def overflow_addresses(self) -> tuple[IPInterface, ...]:
        """The VIPs of its family that do not fit in an advert (keepalived moves them to
        the excluded VIPs, with a warning)."""
        family = self.primary_address.version
        own = tuple(vip for vip in self.virtual_addresses if vip.version == family)
        return own[self.max_advert_addresses :]

    @property
    def held_addresses(self) -> tuple[IPInterface, ...]:
        """Every address the master holds: the VIPs, then the excluded ones."""
        return self.virtual_addresses + tuple(
            a for a in self.excluded_addresses if a not in self.virtual_addresses
        )


ROUTE_TYPES = ("unicast", "blackhole", "unreachable", "prohibit")
SCOPES = ("global", "site", "link", "host", "nowhere")  # ip-address(8)/ip-route(8) names
SCOPE_NUMBERS = dict(zip(SCOPES, (0, 200, 253, 254, 255), strict=True))  # the kernel's rt_scope


@dataclass(frozen=True, slots=True)
class AddressOptions:
    """keepalived's per-VIP options beyond the label.

    `dev`: the VIP lives on another interface than the instance's (the inside gateway
    address of a NAT pair); that interface is tracked (down: the instance is in FAULT)
    unless `no_track`. `no_track`: the VIP is neither repaired when deleted behind our back
    nor its interface tracked (keepalived: not reinstated until the next transition to
    master). `scope`, `broadcast`: as `ip address add ... scope S brd B`.
    """

    dev: str | None = None
    scope: str | None = None
    broadcast: IPv4Address | None = None
    no_track: bool = False


@dataclass(frozen=True, slots=True)
class VirtualRoute:
    """One of keepalived's virtual_routes: held by the master, as `ip route add` has it.

    Unset fields take the kernel's (iproute2's) defaults: table main, metric 0 (IPv4) or
    1024 (IPv6), scope link for a unicast route without a gateway, else global.
    """

    dst: IPNetwork
    via: IPAddress | None = None
    dev: str | None = None
    src: IPAddress | None = None
    metric: int | None = None
    table: int | None = None
    scope: str | None = None
    type: str = "unicast"  # ROUTE_TYPES
    no_track: bool = False

    @property
    def family(self) -> int:
        return self.dst.version

    def __str__(self) -> str:
        words = [] if self.type == "unicast" else [self.type]
        words.append(str(self.dst))
        for key, value in (
            ("via", self.via),
            ("dev", self.dev),
            ("src", self.src),
            ("table", self.table),
            ("metric", self.metric),
            ("scope", self.scope),
        ):
            if value is not None:
                words += [key, str(value)]
        return " ".join(words)


@dataclass(frozen=True, slots=True)
class VirtualRule:
    """One of keepalived's virtual_rules: `ip rule add [from P] [to P] [fwmark M[/MASK]]
    priority N table T`, held by the master."""

    family: int  # 4 or 6
    priority: int
    table: int
    src: IPNetwork | None = None  # from
    dst: IPNetwork | None = None  # to
    fwmark: int | None = None
    fwmask: int | None = None
    no_track: bool = False

    def __str__(self) -> str:
        words = [f"{self.priority}:", "from", str(self.src) if self.src else "all"]
        if self.dst is not None:
            words += ["to", str(self.dst)]
        if self.fwmark is not None:
            mark = f"{self.fwmark:#x}"
            words += ["fwmark", mark if self.fwmask is None else f"{mark}/{self.fwmask:#x}"]
        words += ["lookup", str(self.table)]
        return ("inet6 " if self.family == 6 else "") + " ".join(words)


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """Everything the engine needs to run one instance (a plain value: it crosses the
    boundary between the daemon and the VRRP process).

    `params.primary_address` is only a starting value: the engine follows the interface's
    own address live (the advert source and tie-break key), except with `unicast_src_ip`,
    which is then used as given.
    """

    params: InstanceParams
    interface: str
    unicast_src_ip: IPAddress | None = None
    unicast_peers: tuple[IPAddress, ...] = ()
    vip_labels: tuple[tuple[IPAddress, str], ...] = ()
    # keepalived's unicast_ttl (sent; None: 255), min_ttl / max_ttl and check_unicast_src
    # (checks on what is received, off unless set).
    unicast_ttl: int | None = None
    min_ttl: int | None = None
    max_ttl: int | None = None
    check_unicast_src: bool = False
    # What the instance tracks (its own items and its sync group's, weights as they apply:
    # vrrp/track.py), and keepalived's dont_track_primary (its own link going down is no
    # FAULT).
    track: tuple[TrackedItem, ...] = ()
    dont_track_primary: bool = False
    # Per-VIP options by address (VIPs and excluded VIPs alike).
    vip_options: tuple[tuple[IPAddress, AddressOptions], ...] = ()
    virtual_routes: tuple[VirtualRoute, ...] = ()
    virtual_rules: tuple[VirtualRule, ...] = ()
    # keepalived's use_vmac: the name of the macvlan carrying the RFC 5798 virtual MAC
    # (None: no VMAC); vmac_xmit_base: adverts go on the instance's own interface instead.
    use_vmac: str | None = None
    vmac_xmit_base: bool = False

    @property
    def name(self) -> str:
        return self.params.name

    @property
    def family(self) -> int:
        return self.params.primary_address.version

    @property
    def identity(self) -> tuple[str, int, int]:
        """What a running instance cannot change in place: interface, family, VRID."""
        return (self.interface, self.family, self.params.vrid)


@dataclass(frozen=True, slots=True)
class SyncGroupSpec:
    """keepalived's vrrp_sync_group: instances that are MASTER together or not at all
    (vrrp/syncgroup.py). A plain value: it crosses into the VRRP process."""

    name: str
    members: tuple[str, ...]
