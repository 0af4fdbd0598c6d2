"""Route netlink for the VRRP adapter: VIPs, routes, rules and VMACs; links and addresses
watched.

`Rtnl` holds the adapter's netlink sockets: our own (vrrp/rtnl.py) for link and address
dumps, one link's state and the subscription to the link and address multicast groups (a
socket of its own, so events never interleave with request replies), vrrp/addrbatch.py's
for address changes, and, only when the configuration has them, pyroute2's for routes,
rules and VMAC links: its route socket has NETLINK_GET_STRICT_CHK, so that a dump of our
own routes is filtered by the kernel (a director that also speaks BGP may hold a full
table; the VRRP process must never read it). pyroute2 is imported on first use there, never
at module level: its import costs more than the rest of the VRRP process (vrrp/rtnl.py).
Netlink messages are turned into small frozen values (`Link`, `LinkAddress`, the
`LinkEvent`s, route and rule keys) at this boundary; nothing past it sees a netlink message.

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
from ipaddress import ip_network
from typing import Any

from vrrp.addrbatch import AddressBatcher, AddressChange
from vrrp.rtnl import (
    IFA_F_DADFAILED,
    IFA_F_SECONDARY,
    IFA_F_TENTATIVE,
    IFF_RUNNING,
    IFF_UP,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    AddressAdded,
    AddressRemoved,
    Link,
    LinkAddress,
    LinkChanged,
    LinkEvent,
    LinkRemoved,
    Monitor,
    RouteSocket,
    decode_address,
    decode_link,
)
from vrrp.types import SCOPE_NUMBERS, IPAddress, IPInterface, IPNetwork, VirtualRoute, VirtualRule

__all__ = [
    "IFA_F_DADFAILED",
    "IFA_F_SECONDARY",
    "IFA_F_TENTATIVE",
    "IFF_RUNNING",
    "IFF_UP",
    "AddressAdded",
    "AddressError",
    "AddressRemoved",
    "Link",
    "LinkAddress",
    "LinkChanged",
    "LinkError",
    "LinkEvent",
    "LinkRemoved",
    "RouteError",
    "Rtnl",
    "RtnlError",
    "parse_route_key",
    "parse_rule_key",
    "route_key",
    "rule_key",
]


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


def _pyroute2() -> tuple[Any, Any]:
    """pyroute2's AsyncIPRoute and NetlinkError, imported on first use (routes, rules and
    VMACs only): `import pyroute2` loads all of pyroute2, which doubles the VRRP process's
    import time and adds 6.6 MB to its RSS (vrrp/rtnl.py); a process without them must not
    pay for it."""
    from pyroute2 import AsyncIPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    return AsyncIPRoute, NetlinkError


class Rtnl:
    """Netlink requests and events for the adapter; `open()` inside the running loop."""

    def __init__(self) -> None:
        self._requests = RouteSocket()
        self._monitor: Monitor | None = None
        self._links: Any = None  # pyroute2, for VMAC links
        self._routes: Any = None  # pyroute2, strict-check, for routes and rules
        self._batcher = AddressBatcher()

    async def open(self) -> None:
        await self.open_monitor()

    async def open_monitor(self) -> None:
        """(Re)subscribe to link and address events, e.g. after the monitor overflowed."""
        if self._monitor is not None:
            self._monitor.close()
        self._monitor = Monitor()

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.close()
        for sock in (self._links, self._routes):
            if sock is not None:
                sock.close()
        self._requests.close()
        self._batcher.close()
        self._monitor = self._links = self._routes = None

    def _route_socket(self) -> Any:
        if self._routes is None:
            async_iproute, _error = _pyroute2()
            self._routes = async_iproute(strict_check=True)
        return self._routes

    def _link_socket(self) -> Any:
        if self._links is None:
            async_iproute, _error = _pyroute2()
            self._links = async_iproute()
        return self._links

    async def links(self) -> list[Link]:
        found = [decode_link(p) for p in await self._requests.dump(RTM_GETLINK, RTM_NEWLINK)]
        return [link for link in found if link is not None]

    async def addresses(self) -> list[LinkAddress]:
        found = [decode_address(p) for p in await self._requests.dump(RTM_GETADDR, RTM_NEWADDR)]
        return [address for address in found if address is not None]

    async def events(self) -> AsyncIterator[LinkEvent]:
        """Events until the monitor is closed; OSError (e.g. ENOBUFS) means resync."""
        monitor = self._monitor
        if monitor is None:
            return
        async for event in monitor.events():
            yield event

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
        change = AddressChange(
            True, ifindex, address, label, scope, broadcast, deprecated=deprecated
        )
        (result,) = await self.change_addresses([change])
        if isinstance(result, AddressError):
            raise result
        return result

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
        (result,) = await self.change_addresses([AddressChange(False, ifindex, address)])
        if isinstance(result, AddressError):
            raise result
        return result

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
        sock = self._route_socket()
        _, netlink_error = _pyroute2()
        try:
            await sock.route("add", **request)
        except netlink_error as exc:
            if exc.code == errno.EEXIST:
                return False
            raise RouteError(exc.code, f"{exc.args[-1] if exc.args else exc}") from exc
        return True

    async def remove_route(self, route: VirtualRoute, oif: int | None) -> bool:
        """Delete our route (only one with our protocol); False if it was not there."""
        request = self._route_request(route, oif)
        sock = self._route_socket()
        _, netlink_error = _pyroute2()
        try:
            await sock.route("del", **request)
        except netlink_error as exc:
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
        sock = self._route_socket()
        _, netlink_error = _pyroute2()
        try:
            await sock.rule("add", **self._rule_request(rule))
        except netlink_error as exc:
            if exc.code == errno.EEXIST:
                return False
            raise RouteError(exc.code, f"{exc.args[-1] if exc.args else exc}") from exc
        return True

    async def remove_rule(self, rule: VirtualRule) -> bool:
        """Delete our rule (only one with our protocol); False if it was not there."""
        sock = self._route_socket()
        _, netlink_error = _pyroute2()
        try:
            await sock.rule("del", **self._rule_request(rule))
        except netlink_error as exc:
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
            payload = await self._requests.link(ifindex)
        except OSError as exc:
            raise LinkError(exc.errno or 0, f"get link {ifindex}: {exc.strerror or exc}") from exc
        return decode_link(payload) if payload is not None else None

    async def add_macvlan(self, name: str, lower: int, mac: bytes) -> int:
        """Create a private-mode macvlan on `lower` with `mac`, address generation off (no
        EUI-64 link-local from the virtual MAC); return its ifindex."""
        sock = self._link_socket()
        _, netlink_error = _pyroute2()
        try:
            await sock.link(
                "add",
                ifname=name,
                kind="macvlan",
                link=lower,
                macvlan_mode="private",
                address=mac.hex(":"),
            )
            found = await sock.link_lookup(ifname=name)
            if not found:
                raise LinkError(errno.ENODEV, f"{name} vanished after its creation")
            ifindex = int(found[0])
            await sock.link(
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
        except netlink_error as exc:
            raise LinkError(exc.code, f"create macvlan {name}: {exc}") from exc
        return ifindex

    async def set_up(self, ifindex: int) -> None:
        sock = self._link_socket()
        _, netlink_error = _pyroute2()
        try:
            await sock.link("set", index=ifindex, state="up")
        except netlink_error as exc:
            raise LinkError(exc.code, f"set link {ifindex} up: {exc}") from exc

    async def remove_link(self, ifindex: int) -> bool:
        """Delete a link; False if it was already gone."""
        sock = self._link_socket()
        _, netlink_error = _pyroute2()
        try:
            await sock.link("del", index=ifindex)
        except netlink_error as exc:
            if exc.code == errno.ENODEV:
                return False
            raise LinkError(exc.code, f"delete link {ifindex}: {exc}") from exc
        return True
