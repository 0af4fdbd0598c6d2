"""Route netlink for the VRRP adapter: VIPs, routes, rules and VMACs; links and addresses
watched.

`Rtnl` wraps pyroute2 `AsyncIPRoute` sockets: one for requests (dumps, address add/del,
links), one subscribed to the link and address multicast groups, so events never interleave
with request replies, and one with NETLINK_GET_STRICT_CHK for routes and rules, so that a
dump of our own routes is filtered by the kernel (a director that also speaks BGP may hold
a full table; the VRRP process must never read it). Netlink messages are turned into small
frozen values (`Link`, `LinkAddress`, the `LinkEvent`s, route and rule keys) at this
boundary; nothing past it sees a pyroute2 message.

Changes are idempotent, as keepalived's are: adding what is already there or removing what
is not is success (`False` = nothing to do). IPv6 VIPs are added with IFA_F_NODAD, so they
are usable at once instead of tentative for a second of DAD (keepalived does the same); IPv4
VIPs may carry a label ("eth0:1") for ifconfig-era tooling.

Routes and rules are added with protocol 18, the kernel's RTPROT_KEEPALIVED (`ip route show
proto keepalived` lists them, as it lists keepalived's), and always deleted with it: the
kernel then matches only a route or rule of that protocol, so one an administrator (or a
routing daemon) added with the same destination is never taken away.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface, ip_interface, ip_network
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
)

from vrrp.addrbatch import IFA_F_NODAD, AddressBatcher, AddressChange
from vrrp.types import SCOPE_NUMBERS, IPAddress, IPInterface, IPNetwork, VirtualRoute, VirtualRule

IFF_UP = 0x1
IFF_RUNNING = 0x40  # carrier: a veth whose peer is down, or a cable pulled, clears it


class RtnlError(Exception):
    """The kernel refused a change; `code` is the errno."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class AddressError(RtnlError):
    """The kernel refused an address change."""


class RouteError(RtnlError):
    """The kernel refused a route or rule change."""


class LinkError(RtnlError):
    """The kernel refused a link change (a VMAC's creation or removal)."""


RTPROT_KEEPALIVED = 18  # the routes and rules that follow mastership, as keepalived marks them
MAIN_TABLE = 254
IP6_RT_PRIO_USER = 1024  # the kernel's metric for an IPv6 route added without one
IN6_ADDR_GEN_MODE_NONE = 1


@dataclass(frozen=True, slots=True)
class Link:
    """What the adapter needs to know about one interface."""

    ifindex: int
    ifname: str
    mac: bytes
    up: bool  # administratively up AND carrier present, as keepalived judges an interface
    mtu: int = 1500  # IFLA_MTU: how many VIP addresses an advert can carry
    kind: str = ""  # IFLA_INFO_KIND: "macvlan" for a VMAC, "" for a plain device
    lower: int | None = None  # IFLA_LINK: the device a macvlan sits on
    macvlan_mode: str = ""  # "private" for keepalived's (and our) VMACs


IFA_F_SECONDARY = 0x01
IFA_F_TENTATIVE = 0x40  # IPv6 duplicate address detection still running: not usable yet
IFA_F_DADFAILED = 0x08


@dataclass(frozen=True, slots=True)
class LinkAddress:
    ifindex: int
    address: IPInterface
    flags: int = 0  # IFA_F_* (IFA_FLAGS when the kernel sends it, else ifa_flags)

    @property
    def secondary(self) -> bool:
        return bool(self.flags & IFA_F_SECONDARY)

    @property
    def usable(self) -> bool:
        """Whether packets may be sent from it (not tentative, DAD not failed)."""
        return not self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)


@dataclass(frozen=True, slots=True)
class LinkChanged:
    link: Link


@dataclass(frozen=True, slots=True)
class LinkRemoved:
    ifindex: int
    ifname: str


@dataclass(frozen=True, slots=True)
class AddressAdded:
    address: LinkAddress


@dataclass(frozen=True, slots=True)
class AddressRemoved:
    address: LinkAddress


LinkEvent = LinkChanged | LinkRemoved | AddressAdded | AddressRemoved


def _mac(text: str | None) -> bytes:
    if not text:
        return b"\0" * 6
    return bytes.fromhex(text.replace(":", ""))


def parse_link(msg: Any) -> Link | None:
    ifname = msg.get("ifname")
    if not ifname:
        return None
    flags = int(msg.get("flags") or 0)
    kind = mode = None
    if hasattr(msg, "get_nested"):
        kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        if kind == "macvlan":
            mode = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_MACVLAN_MODE")
    lower = msg.get("link")
    return Link(
        ifindex=int(msg.get("index")),
        ifname=str(ifname),
        mac=_mac(msg.get("address")),
        up=bool(flags & IFF_UP) and bool(flags & IFF_RUNNING),
        mtu=int(msg.get("mtu") or 1500),
        kind=str(kind or ""),
        lower=int(lower) if lower else None,
        macvlan_mode=str(mode or ""),
    )


def parse_address(msg: Any) -> LinkAddress | None:
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point
    # links and only equals the local address otherwise (IPv6 has no IFA_LOCAL).
    text = msg.get("local") or msg.get("address")
    if not text:
        return None
    try:
        address = ip_interface(f"{text}/{int(msg.get('prefixlen'))}")
    except ValueError:
        return None
    flags = msg.get_attr("IFA_FLAGS") if hasattr(msg, "get_attr") else None
    if flags is None:
        flags = msg.get("flags") or 0
    return LinkAddress(ifindex=int(msg.get("index")), address=address, flags=int(flags))


def parse_event(msg: Any) -> LinkEvent | None:
    """A netlink broadcast as a `LinkEvent`, or None for anything we do not follow."""
    kind = msg.get(("header", "type"))
    if kind == RTM_NEWLINK:
        link = parse_link(msg)
        return LinkChanged(link) if link is not None else None
    if kind == RTM_DELLINK:
        return LinkRemoved(int(msg.get("index")), str(msg.get("ifname") or ""))
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        address = parse_address(msg)
        if address is None:
            return None
        return AddressAdded(address) if kind == RTM_NEWADDR else AddressRemoved(address)
    return None


def route_key(route: VirtualRoute) -> tuple[int, int, IPNetwork, int]:
    """What the kernel tells routes apart by (family, table, destination, metric), with its
    defaults filled in, so a configured route and a dumped one compare."""
    default_metric = IP6_RT_PRIO_USER if route.family == 6 else 0
    metric = route.metric if route.metric is not None else default_metric
    return (route.family, route.table or MAIN_TABLE, route.dst, metric)


def rule_key(rule: VirtualRule) -> tuple[object, ...]:
    """A rule's selectors, priority and table: what `ip rule del` matches on."""
    return (rule.family, rule.priority, rule.table, rule.src, rule.dst, rule.fwmark, rule.fwmask)


def _network(address: str | None, length: int | None, family: int) -> IPNetwork | None:
    if not address:
        return None
    return ip_network(f"{address}/{int(length or 0)}", strict=False)


def parse_route_key(msg: Any) -> tuple[int, int, IPNetwork, int] | None:
    family = 6 if msg.get("family") == socket.AF_INET6 else 4
    dst = msg.get("dst") or ("::" if family == 6 else "0.0.0.0")
    try:
        network = ip_network(f"{dst}/{int(msg.get('dst_len') or 0)}", strict=False)
    except ValueError:
        return None
    table = msg.get("table") or MAIN_TABLE
    metric = msg.get("priority")
    if metric is None:
        metric = IP6_RT_PRIO_USER if family == 6 else 0
    return (family, int(table), network, int(metric))


def parse_rule_key(msg: Any) -> tuple[object, ...] | None:
    family = 6 if msg.get("family") == socket.AF_INET6 else 4
    try:
        src = _network(msg.get("src"), msg.get("src_len"), family)
        dst = _network(msg.get("dst"), msg.get("dst_len"), family)
    except ValueError:
        return None
    fwmark = msg.get("fwmark")
    fwmask = msg.get("fwmask") if fwmark is not None else None
    return (
        family,
        int(msg.get("priority") or 0),
        int(msg.get("table") or 0),
        src,
        dst,
        fwmark,
        None if fwmask in (None, 0xFFFFFFFF) else fwmask,
    )


def _family_of(version: int) -> socket.AddressFamily:
    return socket.AF_INET6 if version == 6 else socket.AF_INET


class Rtnl:
    """Netlink requests and events for the adapter; `open()` inside the running loop."""

    def __init__(self) -> None:
        self._requests: Any = None
        self._monitor: Any = None
        self._routes: Any = None
        self._batcher = AddressBatcher()

    async def open(self) -> None:
        self._requests = AsyncIPRoute()
        await self.open_monitor()

    async def open_monitor(self) -> None:
        """(Re)subscribe to link and address events, e.g. after the monitor overflowed."""
        if self._monitor is not None:
            self._monitor.close()
        self._monitor = AsyncIPRoute(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        await self._monitor.bind()

    def close(self) -> None:
        for sock in (self._monitor, self._requests, self._routes):
            if sock is not None:
                sock.close()
        self._batcher.close()
        self._monitor = self._requests = self._routes = None

    def _route_socket(self) -> Any:
        if self._routes is None:
            self._routes = AsyncIPRoute(strict_check=True)
        return self._routes

    async def links(self) -> list[Link]:
        found = [parse_link(msg) async for msg in await self._requests.link("dump")]
        return [link for link in found if link is not None]

    async def addresses(self) -> list[LinkAddress]:
        found = [parse_address(msg) async for msg in await self._requests.addr("dump")]
        return [address for address in found if address is not None]

    async def events(self) -> AsyncIterator[LinkEvent]:
        """Events until the monitor is closed; OSError (e.g. ENOBUFS) means resync."""
        monitor = self._monitor
        while monitor is not None and monitor is self._monitor:
            received = False
            async for msg in monitor.get():
                received = True
                event = parse_event(msg)
                if event is not None:
                    yield event
            if not received:  # pyroute2's terminator after close()
                return

    async def add_address(
        self,
        ifindex: int,
        address: IPInterface,
        label: str | None,
        *,
        scope: str | None = None,
        broadcast: IPAddress | None = None,
        deprecated: bool = False,
    ) -> bool:
        """Add a VIP; False if it was already there. Raises AddressError otherwise.

        `deprecated`: preferred lifetime 0, so the kernel never picks it as a source on its
        own (the link-local address a VMAC advertises from, as keepalived adds it).
        """
        request: dict[str, Any] = {
            "index": ifindex,
            "address": str(address.ip),
            "prefixlen": address.network.prefixlen,
        }
        if isinstance(address, IPv6Interface):
            request["flags"] = IFA_F_NODAD
        elif label:
            request["label"] = label
        if scope is not None:
            request["scope"] = SCOPE_NUMBERS[scope]
        if broadcast is not None:
            request["broadcast"] = str(broadcast)
        if deprecated:
            request["preferred"] = 0
            request["valid"] = 0xFFFFFFFF
        try:
            await self._requests.addr("add", **request)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise AddressError(exc.code, f"add {address} ifindex {ifindex}: {exc}") from exc
        return True

    async def change_addresses(self, changes: list[AddressChange]) -> list[bool | AddressError]:
        """VIPs added or removed in pipelined batches (vrrp/addrbatch.py): per change,
        True (done), False (nothing to do: already there, or not there) or the kernel's
        refusal. A failure of the socket itself is the refusal of every change."""
        try:
            results = await self._batcher.apply(changes)
        except OSError as exc:
            self._batcher.close()  # a fresh socket next time
            results = [exc] * len(changes)
        out: list[bool | AddressError] = []
        for change, result in zip(changes, results, strict=True):
            if isinstance(result, OSError):
                verb = "add" if change.add else "del"
                code = result.errno or 0
                why = result.strerror or str(result)
                message = f"{verb} {change.address} ifindex {change.ifindex}: {why}"
                out.append(AddressError(code, message))
            else:
                out.append(result)
        return out

    async def remove_address(self, ifindex: int, address: IPInterface) -> bool:
        """Remove a VIP; False if it was not there. Raises AddressError otherwise."""
        try:
            await self._requests.addr(
                "del",
                index=ifindex,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                family=socket.AF_INET if isinstance(address, IPv4Interface) else socket.AF_INET6,
            )
        except NetlinkError as exc:
            # EADDRNOTAVAIL: not there; ENODEV: the interface (and so the address) is gone.
            if exc.code in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
                return False
            raise AddressError(exc.code, f"del {address} ifindex {ifindex}: {exc}") from exc
        return True

    # ---- routes and rules (strict-check socket) ------------------------------------------

    async def add_route(self, route: VirtualRoute, oif: int | None) -> bool:
        """Add a route with our protocol; False if one with its key exists (anyone's)."""
        request = self._route_request(route, oif)
        if route.scope is not None:
            request["scope"] = SCOPE_NUMBERS[route.scope]
        elif route.type == "unicast" and route.via is None:
            request["scope"] = SCOPE_NUMBERS["link"]  # iproute2's default for a dev route
        if route.src is not None:
            request["prefsrc"] = str(route.src)
        try:
            await self._route_socket().route("add", **request)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise RouteError(exc.code, f"{exc.args[-1] if exc.args else exc}") from exc
        return True

    async def remove_route(self, route: VirtualRoute, oif: int | None) -> bool:
        """Delete our route (only one with our protocol); False if it was not there."""
        request = self._route_request(route, oif)
        try:
            await self._route_socket().route("del", **request)
        except NetlinkError as exc:
            if exc.code in (errno.ESRCH, errno.ENODEV, errno.ENOENT):
                return False
            raise RouteError(exc.code, f"{exc.args[-1] if exc.args else exc}") from exc
        return True

    @staticmethod
    def _route_request(route: VirtualRoute, oif: int | None) -> dict[str, Any]:
        request: dict[str, Any] = {
            "family": _family_of(route.family),
            "dst": str(route.dst.network_address),
            "dst_len": route.dst.prefixlen,
            "table": route.table or MAIN_TABLE,
            "proto": RTPROT_KEEPALIVED,
            "type": route.type,
        }
        if route.metric is not None:
            request["priority"] = route.metric
        if route.via is not None:
            request["gateway"] = str(route.via)
        if oif is not None:
            request["oif"] = oif
        return request

    async def our_routes(self) -> set[tuple[int, int, IPNetwork, int]]:
        """The keys of every route with our protocol, in every table (kernel-filtered)."""
        found: set[tuple[int, int, IPNetwork, int]] = set()
        sock = self._route_socket()
        for family in (socket.AF_INET, socket.AF_INET6):
            async for msg in await sock.route("dump", family=family, proto=RTPROT_KEEPALIVED):
                if msg.get("proto") != RTPROT_KEEPALIVED:
                    continue
                key = parse_route_key(msg)
                if key is not None:
                    found.add(key)
        return found

    async def add_rule(self, rule: VirtualRule) -> bool:
        """Add a rule with our protocol; False if an identical one exists (anyone's)."""
        try:
            await self._route_socket().rule("add", **self._rule_request(rule))
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise RouteError(exc.code, f"{exc.args[-1] if exc.args else exc}") from exc
        return True

    async def remove_rule(self, rule: VirtualRule) -> bool:
        """Delete our rule (only one with our protocol); False if it was not there."""
        try:
            await self._route_socket().rule("del", **self._rule_request(rule))
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.ESRCH):
                return False
            raise RouteError(exc.code, f"{exc.args[-1] if exc.args else exc}") from exc
        return True

    @staticmethod
    def _rule_request(rule: VirtualRule) -> dict[str, Any]:
        request: dict[str, Any] = {
            "family": _family_of(rule.family),
            "priority": rule.priority,
            "table": rule.table,
            "protocol": RTPROT_KEEPALIVED,
        }
        for key, network in (("src", rule.src), ("dst", rule.dst)):
            if network is not None:
                request[key] = str(network.network_address)
                request[f"{key}_len"] = network.prefixlen
        if rule.fwmark is not None:
            request["fwmark"] = rule.fwmark
            if rule.fwmask is not None:
                request["fwmask"] = rule.fwmask
        return request

    async def our_rules(self) -> set[tuple[object, ...]]:
        """The keys of every rule with our protocol (rule dumps cannot be filtered in the
        kernel, but rules are few)."""
        found: set[tuple[object, ...]] = set()
        sock = self._route_socket()
        for family in (socket.AF_INET, socket.AF_INET6):
            async for msg in await sock.rule("dump", family=family):
                if msg.get("protocol") != RTPROT_KEEPALIVED:
                    continue
                key = parse_rule_key(msg)
                if key is not None:
                    found.add(key)
        return found

    # ---- links (VMACs) --------------------------------------------------------------------

    async def link(self, ifindex: int) -> Link | None:
        """One link as the kernel has it now, or None if it is gone."""
        try:
            msgs = await self._requests.link("get", index=ifindex)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise LinkError(exc.code, f"get link {ifindex}: {exc}") from exc
        return parse_link(msgs[0]) if msgs else None

    async def add_macvlan(self, name: str, lower: int, mac: bytes) -> int:
        """Create a private-mode macvlan on `lower` with `mac`, address generation off (no
        EUI-64 link-local from the virtual MAC); return its ifindex."""
        try:
            await self._requests.link(
                "add",
                ifname=name,
                kind="macvlan",
                link=lower,
                macvlan_mode="private",
                address=mac.hex(":"),
            )
            found = await self._requests.link_lookup(ifname=name)
            if not found:
                raise LinkError(errno.ENODEV, f"{name} vanished after its creation")
            ifindex = int(found[0])
            await self._requests.link(
                "set",
                index=ifindex,
                IFLA_AF_SPEC={
                    "attrs": [
                        [
                            "AF_INET6",
                            {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE]]},
                        ]
                    ]
                },
            )
        except NetlinkError as exc:
            raise LinkError(exc.code, f"create macvlan {name}: {exc}") from exc
        return ifindex

    async def set_up(self, ifindex: int) -> None:
        try:
            await self._requests.link("set", index=ifindex, state="up")
        except NetlinkError as exc:
            raise LinkError(exc.code, f"set link {ifindex} up: {exc}") from exc

    async def remove_link(self, ifindex: int) -> bool:
        """Delete a link; False if it was already gone."""
        try:
            await self._requests.link("del", index=ifindex)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise LinkError(exc.code, f"delete link {ifindex}: {exc}") from exc
        return True
