"""The IPVS table as plain frozen values: virtual services, real servers, and the whole table.

Only what an operator configures lives here; counters and rates are kept apart (see
``netlink.Snapshot``) so they can never make two tables differ.

Kernel facts the model follows (include/uapi/linux/ip_vs.h, net/netfilter/ipvs/ip_vs_ctl.c):

- A service is keyed by (family, protocol, address, port), or by (family, fwmark). For a fwmark
  service the kernel stores protocol TCP and a zero address; neither is part of our key.
- ``SCHEDULERS`` lists every scheduler of current kernels; ``twos`` only exists since 6.7, so
  older kernels (Debian 12's 6.1) refuse it with ENOENT like any missing module. The kernel
  loads ip_vs_<name> on demand, so the model cannot know what a given kernel has.
- The scheduler flag bits IP_VS_SVC_F_SCHED1/2/3 mean nothing by themselves: ``sh`` reads SCHED1 as
  "sh-fallback" and SCHED2 as "sh-port" (ip_vs_sh.c), ``mh`` reads them as "mh-fallback" and
  "mh-port" (ip_vs_mh.c); every other scheduler ignores them. ipvsadm prints them as "flag-N" then.
- Persistence is the IP_VS_SVC_F_PERSISTENT flag plus a timeout in seconds; the netmask is an IPv4
  mask for IPv4 services and a prefix length 1..128 for IPv6 ones (the kernel refuses an IPv6
  service whose netmask is outside 1..128, so it always gets 128 when not set).
- The kernel keeps the weight in an ``int`` and refuses a negative one (-ERANGE); we allow
  0..65535, the range ipvsadm and keepalived accept, so ``ipvsadm -S`` output round-trips.
  The kernel also refuses a lower threshold above the upper one (-ERANGE), even when the upper
  threshold is 0 ("no limit").
- A real server of another address family than its service is accepted by the kernel only for
  tunnelling (IPv4-in-IPv6 / IPv6-in-IPv4) and only while no sync daemon runs, because the sync
  protocol cannot carry mixed families. The model allows it for TUN and refuses it otherwise.
- For DR and TUN the packet leaves with its destination port untouched, so a real-server port
  different from the virtual port would be stored by the kernel but have no effect; ipvsadm
  silently rewrites it to the virtual port. The model instead refuses a different port for a
  non-fwmark service (a silent rewrite would make the desired and the actual tables differ
  forever). Leaving ``port`` as ``None`` means "the virtual service's port".
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable, Iterator, KeysView, Mapping
from dataclasses import dataclass, field, replace
from socket import AF_INET, AF_INET6
from typing import Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # noqa: UP007 - runtime alias

WEIGHT_MAX = 65535
THRESHOLD_MAX = 2**31 - 1
FWMARK_MAX = 2**32 - 1
PERSISTENCE_TIMEOUT_MAX = 2**31 - 1
# IP_VS_SCHEDNAME_MAXLEN / IP_VS_PENAME_MAXLEN are 16 including the NUL.
NAME_MAXLEN = 15

SCHEDULERS: frozenset[str] = frozenset(
    ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos")
)
PERSISTENCE_ENGINES: frozenset[str] = frozenset(("sip",))

# Service flag bits (include/uapi/linux/ip_vs.h).
SVC_F_PERSISTENT = 0x0001
SVC_F_HASHED = 0x0002  # kernel-internal: set on every hashed service, never configured
SVC_F_ONEPACKET = 0x0004
SVC_F_SCHED1 = 0x0008
SVC_F_SCHED2 = 0x0010
SVC_F_SCHED3 = 0x0020
_SCHED_BITS = ((SVC_F_SCHED1, 1), (SVC_F_SCHED2, 2), (SVC_F_SCHED3, 3))
# Names of SCHED1..3 per scheduler, as ipvsadm prints and parses them.
_SCHED_FLAG_NAMES: dict[str, tuple[str | None, str | None, str | None]] = {
    "sh": ("sh-fallback", "sh-port", None),
    "mh": ("mh-fallback", "mh-port", None),
}


class Protocol(enum.IntEnum):
    """The IP protocol of an address-keyed virtual service (IPPROTO_*)."""

    TCP = 6
    UDP = 17
    SCTP = 132


class ForwardingMethod(enum.IntEnum):
    """IP_VS_CONN_F_* forwarding method; the names ipvsadm prints are in ``ipvsadm_name``."""

    NAT = 0  # "masquerading", -m
    LOCAL = 1  # kernel-internal local node; never configured
    TUN = 2  # "ipip", -i
    DR = 3  # "gatewaying", -g (ipvsadm's default)
    BYPASS = 4  # kernel-internal; never configured

    @property
    def ipvsadm_name(self) -> str:
        return {0: "Masq", 1: "Local", 2: "Tunnel", 3: "Route", 4: "Bypass"}[int(self)]


CONFIGURABLE_FORWARDING = frozenset(
    (ForwardingMethod.NAT, ForwardingMethod.TUN, ForwardingMethod.DR)
)


class TunnelType(enum.IntEnum):
    """IP_VS_CONN_F_TUNNEL_TYPE_*: the encapsulation of a TUN real server."""

    IPIP = 0
    GUE = 1
    GRE = 2


class TunnelFlags(enum.IntFlag):
    """IP_VS_TUNNEL_ENCAP_FLAG_*; no bit set is ipvsadm's ``--tun-nocsum``."""

    CSUM = 1
    REMCSUM = 2


NOCSUM = TunnelFlags(0)


def sched_flag_names(scheduler: str, bits: int) -> frozenset[str]:
    """The names of the SCHED1..3 bits in ``bits`` as ``scheduler`` understands them."""
    names = _SCHED_FLAG_NAMES.get(scheduler, (None, None, None))
    out: set[str] = set()
    for (bit, n), name in zip(_SCHED_BITS, names, strict=True):
        if bits & bit:
            out.add(name or f"flag-{n}")
    return frozenset(out)


def sched_flag_bits(scheduler: str, names: Iterable[str]) -> int:
    """The SCHED1..3 bits for flag names; unknown names are ignored (``validate`` reports them)."""
    per_sched = _SCHED_FLAG_NAMES.get(scheduler, (None, None, None))
    bits = 0
    for name in names:
        for (bit, n), sname in zip(_SCHED_BITS, per_sched, strict=True):
            if name in (sname, f"flag-{n}"):
                bits |= bit
    return bits


def _canonical_sched_flags(scheduler: str, names: Iterable[str]) -> frozenset[str]:
    # Names that mean a bit for this scheduler take the scheduler's own spelling ("flag-1" on
    # sh is "sh-fallback", as ipvsadm prints it); the others are kept so validate() names them.
    names = frozenset(names)
    unknown = {n for n in names if not sched_flag_bits(scheduler, (n,))}
    return sched_flag_names(scheduler, sched_flag_bits(scheduler, names)) | unknown


class _Lazy:
    """Text made only when formatted: `validate` names the object in every message, and
    formatting addresses for each of 50,000 valid real servers was most of a config check."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make

    def __str__(self) -> str:
        return self._make()

    def __format__(self, spec: str) -> str:
        return format(self._make(), spec)


def parse_address(value: str | IPAddress) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    return ipaddress.ip_address(value)


def family_of(address: IPAddress) -> int:
    return AF_INET if address.version == 4 else AF_INET6


def format_endpoint(address: IPAddress, port: int) -> str:
    """``192.0.2.1:80`` / ``[2001:db8::1]:80``, the way ipvsadm writes endpoints."""
    if address.version == 6:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """What identifies a virtual service in the kernel.

    Build it with ``ServiceKey.of(protocol, address, port)`` or ``ServiceKey.of_fwmark(mark)``.
    ``fwmark != 0`` means a fwmark service; then ``protocol``, ``address`` and ``port`` are unused.
    """

    family: int
    fwmark: int
    protocol: int
    address: IPAddress | None
    port: int
    # Hashed once: a pass looks keys up tens of thousands of times, and an address hashes in
    # Python (ipaddress: hash(hex(int(ip)))).
    _hash: int = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        fields = (self.family, self.fwmark, self.protocol, self.address, self.port)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[ServiceKey], tuple[int, int, int, IPAddress | None, int]]:
        # Rebuilt, not restored: a str hash (hence the cached one) differs between processes.
        return ServiceKey, (self.family, self.fwmark, self.protocol, self.address, self.port)

    @classmethod
    def of(cls, protocol: Protocol | int | str, address: str | IPAddress, port: int) -> ServiceKey:
        addr = parse_address(address)
        proto = Protocol[protocol.upper()] if isinstance(protocol, str) else Protocol(protocol)
        return cls(family=family_of(addr), fwmark=0, protocol=int(proto), address=addr, port=port)

    @classmethod
    def of_fwmark(cls, fwmark: int, family: int = AF_INET) -> ServiceKey:
        return cls(family=family, fwmark=fwmark, protocol=int(Protocol.TCP), address=None, port=0)

    @property
    def is_fwmark(self) -> bool:
        return self.fwmark != 0

    def sort_key(self) -> tuple[int, int, int, int, int]:
        addr = int(self.address) if self.address is not None else 0
        return (self.fwmark != 0, self.family, self.fwmark, self.protocol, addr * 65536 + self.port)

    def __str__(self) -> str:
        if self.is_fwmark:
            return f"FWM {self.fwmark}" + (" IPv6" if self.family == AF_INET6 else "")
        assert self.address is not None
        try:
            proto = Protocol(self.protocol).name
        except ValueError:
            proto = f"proto-{self.protocol}"
        return f"{proto} {format_endpoint(self.address, self.port)}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ServiceKey):
            return NotImplemented
        return self.sort_key() < other.sort_key()


@dataclass(frozen=True, slots=True)
class DestKey:
    """What identifies a real server inside its virtual service."""

    address: IPAddress
    port: int
    _hash: int = field(init=False, repr=False, compare=False, hash=False)  # as ServiceKey's

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.address, self.port)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[DestKey], tuple[IPAddress, int]]:
        return DestKey, (self.address, self.port)  # as ServiceKey's

    def sort_key(self) -> tuple[int, int, int]:
        return (self.address.version, int(self.address), self.port)

    def __str__(self) -> str:
        return format_endpoint(self.address, self.port)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, DestKey):
            return NotImplemented
        return self.sort_key() < other.sort_key()


@dataclass(frozen=True, slots=True)
class RealServer:
    """A real server (kernel "destination") of a virtual service.

    ``port=None`` takes the virtual service's port when the server is placed in a
    ``VirtualService`` (fwmark services: 0).
    """

    address: IPAddress
    port: int | None = None
    forwarding: ForwardingMethod = ForwardingMethod.DR
    weight: int = 1
    upper_threshold: int = 0
    lower_threshold: int = 0
    tunnel_type: TunnelType = TunnelType.IPIP
    tunnel_port: int = 0
    tunnel_flags: TunnelFlags = NOCSUM
    # Derived once: the planner compares tens of thousands of these per pass.
    _key: DestKey = field(init=False, repr=False, compare=False, hash=False)
    _settings: tuple[int, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            object.__setattr__(self, "address", parse_address(self.address))
        object.__setattr__(self, "_key", DestKey(self.address, self.port or 0))
        settings = (
            int(self.forwarding),
            self.weight,
            self.upper_threshold,
            self.lower_threshold,
            int(self.tunnel_type),
            self.tunnel_port,
            int(self.tunnel_flags),
        )
        object.__setattr__(self, "_settings", settings)

    @property
    def family(self) -> int:
        return family_of(self.address)

    @property
    def key(self) -> DestKey:
        return self._key

    def settings(self) -> tuple[int, ...]:
        """Everything the kernel stores for this server, without its key (for diffs)."""
        return self._settings

    def validate(self, service: VirtualService) -> list[str]:
        where = _Lazy(lambda: f"real server {self.key} of service {service.key}")
        errors: list[str] = []
        if self.forwarding not in CONFIGURABLE_FORWARDING:
            errors.append(f"{where}: forwarding method {self.forwarding.name} cannot be configured")
        if not 0 <= self.weight <= WEIGHT_MAX:
            errors.append(f"{where}: weight {self.weight} out of range 0..{WEIGHT_MAX}")
        for name, value in (("upper", self.upper_threshold), ("lower", self.lower_threshold)):
            if not 0 <= value <= THRESHOLD_MAX:
                errors.append(f"{where}: {name} threshold {value} out of range 0..{THRESHOLD_MAX}")
        if self.lower_threshold > self.upper_threshold:
            errors.append(
                f"{where}: lower threshold {self.lower_threshold} above upper threshold "
                f"{self.upper_threshold} (the kernel refuses it, even with upper 0)"
            )
        port = self.port or 0
        if not 0 <= port <= 65535:
            errors.append(f"{where}: port {port} out of range 0..65535")
        elif not service.key.is_fwmark and port == 0 and service.key.port != 0:
            errors.append(f"{where}: port 0 on a non-fwmark service")
        if self.family != service.key.family and self.forwarding != ForwardingMethod.TUN:
            errors.append(
                f"{where}: IPv{self.address.version} real server in an "
                f"{'IPv6' if service.key.family == AF_INET6 else 'IPv4'} service needs TUN "
                "forwarding (the kernel mixes families only for tunnels)"
            )
        if (
            self.forwarding in (ForwardingMethod.DR, ForwardingMethod.TUN)
            and not service.key.is_fwmark
            and port != service.key.port
        ):
            errors.append(
                f"{where}: {self.forwarding.name} forwards to the virtual port "
                f"{service.key.port}; port {port} would have no effect"
            )
        errors.extend(self._validate_tunnel(where))
        return errors

    def _validate_tunnel(self, where: _Lazy) -> list[str]:
        errors: list[str] = []
        tunnel_set = (
            self.tunnel_type != TunnelType.IPIP or self.tunnel_port or int(self.tunnel_flags)
        )
        if self.forwarding != ForwardingMethod.TUN:
            if tunnel_set:
                errors.append(f"{where}: tunnel settings need TUN forwarding")
            return errors
        if self.tunnel_type == TunnelType.GUE:
            if not 1 <= self.tunnel_port <= 65535:
                errors.append(f"{where}: GUE needs a tunnel port in 1..65535")
        elif self.tunnel_port:
            errors.append(f"{where}: tunnel port is only used by GUE")
        if int(self.tunnel_flags) & ~int(TunnelFlags.CSUM | TunnelFlags.REMCSUM):
            errors.append(f"{where}: unknown tunnel flags {int(self.tunnel_flags):#x}")
        if self.tunnel_flags == TunnelFlags.CSUM | TunnelFlags.REMCSUM:
            errors.append(f"{where}: choose one of csum, remcsum")
        if self.tunnel_type == TunnelType.IPIP and self.tunnel_flags:
            errors.append(f"{where}: ipip tunnels have no checksum option")
        if self.tunnel_type == TunnelType.GRE and self.tunnel_flags & TunnelFlags.REMCSUM:
            errors.append(f"{where}: remcsum is a GUE option")
        return errors


@dataclass(frozen=True, slots=True)
class VirtualService:
    """A virtual service with its settings and its real servers.

    ``persistence_timeout=None`` means not persistent. ``persistence_netmask`` is an IPv4 mask
    (IPv4 services) or a prefix length (IPv6); ``None`` is the host mask (/32, /128).
    """

    key: ServiceKey
    scheduler: str = "wlc"
    sched_flags: frozenset[str] = frozenset()
    one_packet: bool = False
    persistence_timeout: int | None = None
    persistence_netmask: ipaddress.IPv4Address | int | None = None
    persistence_engine: str | None = None
    real_servers: tuple[RealServer, ...] = ()
    _index: Mapping[DestKey, RealServer] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _settings: tuple[object, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        flags = _canonical_sched_flags(self.scheduler, self.sched_flags)
        object.__setattr__(self, "sched_flags", flags)
        mask = self.persistence_netmask
        if isinstance(mask, str):
            mask = ipaddress.IPv4Address(mask)
        if self.key.family == AF_INET and isinstance(mask, int) and 0 <= mask <= 32:
            mask = ipaddress.IPv4Address((0xFFFFFFFF << (32 - mask)) & 0xFFFFFFFF)
        if mask == ipaddress.IPv4Address("255.255.255.255") or (
            self.key.family == AF_INET6 and mask == 128
        ):
            mask = None
        object.__setattr__(self, "persistence_netmask", mask)
        default_port = 0 if self.key.is_fwmark else self.key.port
        servers = tuple(
            rs if rs.port is not None else replace(rs, port=default_port)
            for rs in self.real_servers
        )
        object.__setattr__(self, "real_servers", servers)
        object.__setattr__(self, "_index", {rs.key: rs for rs in servers})
        settings = (
            self.scheduler,
            self.flag_bits,
            self.persistence_timeout or 0,
            self.netmask_value,
            self.persistence_engine or "",
        )
        object.__setattr__(self, "_settings", settings)

    @property
    def persistent(self) -> bool:
        return self.persistence_timeout is not None

    @property
    def flag_bits(self) -> int:
        """IP_VS_SVC_F_* bits the kernel should hold (without the internal HASHED bit)."""
        bits = sched_flag_bits(self.scheduler, self.sched_flags)
        if self.persistent:
            bits |= SVC_F_PERSISTENT
        if self.one_packet:
            bits |= SVC_F_ONEPACKET
        return bits

    @property
    def netmask_value(self) -> int:
        """IPVS_SVC_ATTR_NETMASK as a host integer: an IPv4 mask, or an IPv6 prefix length."""
        mask = self.persistence_netmask
        if self.key.family == AF_INET6:
            return mask if isinstance(mask, int) else 128
        if isinstance(mask, ipaddress.IPv4Address):
            return int(mask)
        return 0xFFFFFFFF

    def settings(self) -> tuple[object, ...]:
        """Everything the kernel stores for this service, without key and real servers."""
        return self._settings

    def real_server(self, key: DestKey) -> RealServer | None:
        return self._index.get(key)

    @property
    def servers_by_key(self) -> Mapping[DestKey, RealServer]:
        return self._index

    def without_servers(self) -> VirtualService:
        return replace(self, real_servers=())

    def validate(self) -> list[str]:
        where = _Lazy(lambda: f"service {self.key}")
        errors: list[str] = []
        key = self.key
        if key.family not in (AF_INET, AF_INET6):
            errors.append(f"{where}: unknown address family {key.family}")
        if key.is_fwmark:
            if not 1 <= key.fwmark <= FWMARK_MAX:
                errors.append(f"{where}: fwmark {key.fwmark} out of range 1..{FWMARK_MAX}")
        else:
            if key.protocol not in tuple(int(p) for p in Protocol):
                errors.append(f"{where}: unknown protocol {key.protocol}")
            if key.port == 0 and not self.persistent:
                # ipvsadm: "Zero port specified for non-persistent service"
                errors.append(f"{where}: port 0 (all ports) on a service that is not persistent")
            elif not 0 <= key.port <= 65535:
                errors.append(f"{where}: port {key.port} out of range 1..65535")
            if key.address is None or family_of(key.address) != key.family:
                errors.append(f"{where}: address does not match the address family")
        if self.scheduler not in SCHEDULERS:
            errors.append(
                f"{where}: unknown scheduler {self.scheduler!r} "
                f"(known: {', '.join(sorted(SCHEDULERS))})"
            )
        allowed = {x for x in _SCHED_FLAG_NAMES.get(self.scheduler, ()) if x is not None}
        for name in sorted(self.sched_flags - allowed):
            errors.append(
                f"{where}: scheduler flag {name!r} does not apply to scheduler {self.scheduler!r}"
                + (f" (it has {', '.join(sorted(allowed))})" if allowed else "")
            )
        if self.one_packet and not key.is_fwmark and key.protocol != Protocol.UDP:
            errors.append(f"{where}: one-packet scheduling (ops) is only for UDP")
        errors.extend(self._validate_persistence(where))
        seen: set[DestKey] = set()
        for rs in self.real_servers:
            if rs.key in seen:
                errors.append(f"{where}: real server {rs.key} listed twice")
            seen.add(rs.key)
            errors.extend(rs.validate(self))
        return errors

    def _validate_persistence(self, where: _Lazy) -> list[str]:
        errors: list[str] = []
        timeout = self.persistence_timeout
        if timeout is not None and not 1 <= timeout <= PERSISTENCE_TIMEOUT_MAX:
            errors.append(
                f"{where}: persistence timeout {timeout} out of range 1..{PERSISTENCE_TIMEOUT_MAX}"
            )
        mask = self.persistence_netmask
        if mask is not None:
            if not self.persistent:
                errors.append(f"{where}: persistence netmask needs a persistence timeout")
            if self.key.family == AF_INET6:
                if not isinstance(mask, int) or not 1 <= mask <= 128:
                    errors.append(f"{where}: IPv6 persistence netmask must be a prefix 1..128")
            elif not isinstance(mask, ipaddress.IPv4Address):
                errors.append(f"{where}: IPv4 persistence netmask must be a mask or prefix 0..32")
        if self.persistence_engine is not None:
            if not self.persistent:
                errors.append(f"{where}: persistence engine needs a persistence timeout")
            if self.persistence_engine not in PERSISTENCE_ENGINES:
                errors.append(
                    f"{where}: unknown persistence engine {self.persistence_engine!r} "
                    f"(known: {', '.join(sorted(PERSISTENCE_ENGINES))})"
                )
        return errors


class InvalidTable(ValueError):
    """A desired table that the kernel must not be asked to hold; ``errors`` names each object."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Table:
    """A set of virtual services with their real servers (desired, or dumped from the kernel)."""

    services: tuple[VirtualService, ...] = ()
    _index: Mapping[ServiceKey, VirtualService] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", tuple(self.services))
        object.__setattr__(self, "_index", {s.key: s for s in self.services})

    @classmethod
    def of(cls, services: Iterable[VirtualService]) -> Table:
        return cls(tuple(services))

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[VirtualService]:
        return iter(self._index.values())

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Table):
            return NotImplemented
        if self._index.keys() != other._index.keys():
            return False
        for key, svc in self._index.items():
            o = other._index[key]
            if svc.settings() != o.settings():
                return False
            a = {k: v.settings() for k, v in svc.servers_by_key.items()}
            b = {k: v.settings() for k, v in o.servers_by_key.items()}
            if a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def get(self, key: ServiceKey) -> VirtualService | None:
        return self._index.get(key)

    def keys(self) -> KeysView[ServiceKey]:
        return self._index.keys()

    def validate(self) -> list[str]:
        """Every reason the kernel would refuse (or silently alter) this table, naming objects."""
        errors: list[str] = []
        seen: set[ServiceKey] = set()
        for svc in self.services:
            if svc.key in seen:
                errors.append(f"service {svc.key}: listed twice")
            seen.add(svc.key)
            errors.extend(svc.validate())
        return errors

    def check(self) -> Table:
        """Return self, or raise InvalidTable with every error."""
        errors = self.validate()
        if errors:
            raise InvalidTable(errors)
        return self

    @property
    def real_server_count(self) -> int:
        return sum(len(s.real_servers) for s in self.services)
