"""Route netlink for the VRRP adapter: VIPs in and out, links and addresses watched.

`Rtnl` wraps two pyroute2 `AsyncIPRoute` sockets: one for requests (dumps, address add/del)
and one subscribed to the link and address multicast groups, so events never interleave with
request replies. Netlink messages are turned into small frozen values (`Link`, `LinkAddress`,
the `LinkEvent`s) at this boundary; nothing past it sees a pyroute2 message.

VIP changes are idempotent, as keepalived's are: adding an address that is already there or
removing one that is not is success (`False` = nothing to do). IPv6 VIPs are added with
IFA_F_NODAD, so they are usable at once instead of tentative for a second of DAD (keepalived
does the same); IPv4 VIPs may carry a label ("eth0:1") for ifconfig-era tooling.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface, ip_interface
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

from vrrp.types import IPInterface

IFF_UP = 0x1
IFF_RUNNING = 0x40  # carrier: a veth whose peer is down, or a cable pulled, clears it
IFA_F_NODAD = 0x02


class AddressError(Exception):
    """The kernel refused an address change; `code` is the errno."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Link:
    """What the adapter needs to know about one interface."""

    ifindex: int
    ifname: str
    mac: bytes
    up: bool  # administratively up AND carrier present, as keepalived judges an interface
    mtu: int = 1500  # IFLA_MTU: how many VIP addresses an advert can carry


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
    return Link(
        ifindex=int(msg.get("index")),
        ifname=str(ifname),
        mac=_mac(msg.get("address")),
        up=bool(flags & IFF_UP) and bool(flags & IFF_RUNNING),
        mtu=int(msg.get("mtu") or 1500),
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


class Rtnl:
    """Netlink requests and events for the adapter; `open()` inside the running loop."""

    def __init__(self) -> None:
        self._requests: Any = None
        self._monitor: Any = None

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
        for sock in (self._monitor, self._requests):
            if sock is not None:
                sock.close()
        self._monitor = self._requests = None

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

    async def add_address(self, ifindex: int, address: IPInterface, label: str | None) -> bool:
        """Add a VIP; False if it was already there. Raises AddressError otherwise."""
        request: dict[str, Any] = {
            "index": ifindex,
            "address": str(address.ip),
            "prefixlen": address.network.prefixlen,
        }
        if isinstance(address, IPv6Interface):
            request["flags"] = IFA_F_NODAD
        elif label:
            request["label"] = label
        try:
            await self._requests.addr("add", **request)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise AddressError(exc.code, f"add {address} ifindex {ifindex}: {exc}") from exc
        return True

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
