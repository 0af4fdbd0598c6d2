"""Route netlink's read side for the VRRP adapter: links and addresses, dumped and watched.

The adapter learns every link (RTM_GETLINK dump) and address (RTM_GETADDR dump) at start,
then follows them on a socket bound to the link and address multicast groups. This module
turns those messages into the adapter's small frozen values (`Link`, `LinkAddress`, the
`LinkEvent`s): `split_messages()`, `decode_link()`, `decode_address()` and `decode_event()`
are pure, `RouteSocket` is the thin socket part on the asyncio loop, used by `Rtnl`
(vrrp/addresses.py), which also sends its single address changes through
vrrp/addrbatch.py.

Why our own codec rather than pyroute2's: the VRRP process must start small and fast (a
master's first advert goes out a fraction of a second after start), and `import pyroute2`
loads every one of its modules (ndb, ipdb, conntrack, nftables, ...) from its package
`__init__`. Measured on this project's 2-core machines (best of 15 runs): without pyroute2
the VRRP process imports in 138 ms instead of 268 ms, and with one instance running its
RSS is 30.8 MB instead of 37.4 MB. The messages read here are two fixed headers and a
handful of attributes, decoded with `struct` in a few microseconds each. pyroute2 stays,
imported on first use (vrrp/addresses.py), for what only some configurations need:
virtual routes and rules, and the VMACs' macvlan links. tests/netns/test_rtnl.py holds
the decoding to pyroute2's view of the same namespace.

Decoding never raises on what the kernel (or anyone) sends: a truncated message ends the
read of its buffer, an attribute with a bad length ends its message's attributes, a message
without what the value needs is skipped. Dumps follow the multipart protocol (NLM_F_MULTI
parts up to NLMSG_DONE, NLMSG_ERROR ends them), are matched by sequence number, and are
bounded in time and size.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from vrrp.addrbatch import wait_readable
from vrrp.types import IPInterface

# <linux/netlink.h>
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x10
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLA_TYPE_MASK = ~0xC000 & 0xFFFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
# <linux/rtnetlink.h>
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
# <linux/if_link.h>
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_LINKINFO = 1, 3, 4, 5, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_MACVLAN_MODE = 1
MACVLAN_MODES = {0: "none", 1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}
# <linux/if_addr.h>
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
# <linux/if.h>
IFF_UP = 0x1
IFF_RUNNING = 0x40  # carrier: a veth whose peer is down, or a cable pulled, clears it

IFA_F_SECONDARY = 0x01
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40  # IPv6 duplicate address detection still running: not usable yet

RCVBUF = 1 << 20  # the monitor's receive buffer: a burst of events must not overflow it
# One read. A dump's parts are at most 32 KB (the kernel sizes them from the reader's buffer,
# capped there); a single event larger than this (a device with hundreds of VFs) arrives
# truncated, which the monitor reports as lost events, so the adapter re-reads everything.
READ_SIZE = 1 << 16
DUMP_TIMEOUT = 10.0  # seconds for a whole dump: the kernel answers at once; this bounds a stall
DUMP_MAX_MESSAGES = 1 << 20  # a bound on one dump (a million addresses is no director)
DUMP_RETRIES = 3  # a dump the kernel marks inconsistent (NLM_F_DUMP_INTR) is read again

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ERROR = struct.Struct("=i")
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_NLA = struct.Struct("=HH")  # attribute length (header included), type
_U32 = struct.Struct("=I")


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


@dataclass(frozen=True, slots=True)
class Message:
    """One netlink message: its header's fields and its payload (after the header)."""

    kind: int
    flags: int
    sequence: int
    payload: bytes


# ---- pure decoding -----------------------------------------------------------------------


def split_messages(data: bytes) -> Iterator[Message]:
    """The messages of one read, in order. A header whose length is impossible (shorter
    than a header, or past the end of the read) ends the read: nothing after it can be
    found again."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, sequence, _port = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            return
        yield Message(kind, flags, sequence, data[offset + _HEADER.size : offset + length])
        offset += (length + 3) & ~3


def attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes from `offset` on, by type (the first of a repeated type, as pyroute2's
    `get` reads them), each its payload without padding; a bad length ends them."""
    found: dict[int, bytes] = {}
    while offset + _NLA.size <= len(data):
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size or offset + length > len(data):
            break
        found.setdefault(kind & NLA_TYPE_MASK, data[offset + _NLA.size : offset + length])
        offset += (length + 3) & ~3
    return found


def _string(value: bytes | None) -> str:
    if not value:
        return ""
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


def _u32(value: bytes | None) -> int | None:
    if value is None or len(value) < _U32.size:
        return None
    return int(_U32.unpack_from(value)[0])


def _mac(value: bytes | None) -> bytes:
    # Ethernet's six bytes; a device without one (a tunnel) has none for VRRP to use.
    if not value:
        return b"\0" * 6
    return value[:6].ljust(6, b"\0")


def decode_link(payload: bytes) -> Link | None:
    """An RTM_NEWLINK's `Link`, or None if it has no name (or is too short to be one)."""
    if len(payload) < _IFINFOMSG.size:
        return None
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = attributes(payload, _IFINFOMSG.size)
    ifname = _string(attrs.get(IFLA_IFNAME))
    if not ifname:
        return None
    kind = mode = ""
    info = attrs.get(IFLA_LINKINFO)
    if info is not None:
        nested = attributes(info)
        kind = _string(nested.get(IFLA_INFO_KIND))
        data = nested.get(IFLA_INFO_DATA)
        if kind == "macvlan" and data is not None:
            number = _u32(attributes(data).get(IFLA_MACVLAN_MODE))
            if number is not None:
                mode = MACVLAN_MODES.get(number, str(number))
    lower = _u32(attrs.get(IFLA_LINK))
    return Link(
        ifindex=index,
        ifname=ifname,
        mac=_mac(attrs.get(IFLA_ADDRESS)),
        up=bool(flags & IFF_UP) and bool(flags & IFF_RUNNING),
        mtu=_u32(attrs.get(IFLA_MTU)) or 1500,
        kind=kind,
        lower=lower or None,
        macvlan_mode=mode,
    )


def decode_link_removed(payload: bytes) -> LinkRemoved | None:
    if len(payload) < _IFINFOMSG.size:
        return None
    index = _IFINFOMSG.unpack_from(payload)[2]
    ifname = _string(attributes(payload, _IFINFOMSG.size).get(IFLA_IFNAME))
    return LinkRemoved(index, ifname)


def _ip(value: bytes | None) -> IPv4Address | IPv6Address | None:
    if value is not None and len(value) == 4:
        return IPv4Address(value)
    if value is not None and len(value) == 16:
        return IPv6Address(value)
    return None


def decode_address(payload: bytes) -> LinkAddress | None:
    """An RTM_NEWADDR/RTM_DELADDR's `LinkAddress`, or None without a usable address."""
    if len(payload) < _IFADDRMSG.size:
        return None
    _family, prefixlen, ifa_flags, _scope, index = _IFADDRMSG.unpack_from(payload)
    attrs = attributes(payload, _IFADDRMSG.size)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point
    # links and only equals the local address otherwise (IPv6 has no IFA_LOCAL).
    local = attrs.get(IFA_LOCAL)
    ip = _ip(local if local is not None else attrs.get(IFA_ADDRESS))
    if ip is None:
        return None
    address: IPInterface
    try:
        if isinstance(ip, IPv4Address):
            address = IPv4Interface((ip, prefixlen))
        else:
            address = IPv6Interface((ip, prefixlen))
    except ValueError:  # a prefix length past the address's bits
        return None
    flags = _u32(attrs.get(IFA_FLAGS))
    return LinkAddress(index, address, ifa_flags if flags is None else flags)


def decode_event(kind: int, payload: bytes) -> LinkEvent | None:
    """A broadcast as a `LinkEvent`, or None for anything we do not follow."""
    if kind == RTM_NEWLINK:
        link = decode_link(payload)
        return LinkChanged(link) if link is not None else None
    if kind == RTM_DELLINK:
        return decode_link_removed(payload)
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        address = decode_address(payload)
        if address is None:
            return None
        return AddressAdded(address) if kind == RTM_NEWADDR else AddressRemoved(address)
    return None


def dump_request(kind: int, sequence: int) -> bytes:
    """An RTM_GETLINK or RTM_GETADDR dump of every family."""
    body = _IFINFOMSG.pack(0, 0, 0, 0, 0) if kind == RTM_GETLINK else _IFADDRMSG.pack(0, 0, 0, 0, 0)
    length = _HEADER.size + len(body)
    return _HEADER.pack(length, kind, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0) + body


def link_request(ifindex: int, sequence: int) -> bytes:
    """RTM_GETLINK of one interface (answered by RTM_NEWLINK, or NLMSG_ERROR ENODEV)."""
    body = _IFINFOMSG.pack(0, 0, ifindex, 0, 0)
    length = _HEADER.size + len(body)
    return _HEADER.pack(length, RTM_GETLINK, NLM_F_REQUEST, sequence, 0) + body


def error_code(message: Message) -> int | None:
    """An NLMSG_ERROR's errno (0: an acknowledgement), None if it is too short to say."""
    if len(message.payload) < _ERROR.size:
        return None
    return -int(_ERROR.unpack_from(message.payload)[0])


@dataclass(slots=True)
class DumpReader:
    """The replies to one request, fed read by read: pure, so the multipart protocol is
    tested without a socket. `done` once NLMSG_DONE (or, for a plain request, the reply or
    an error) arrived; `error` the kernel's errno if it refused; `interrupted` if the kernel
    marked the dump inconsistent (the links or addresses changed while it ran)."""

    sequence: int
    kind: int  # the reply type collected (RTM_NEWLINK, RTM_NEWADDR)
    multipart: bool = True
    done: bool = False
    error: int = 0
    interrupted: bool = False
    count: int = 0
    payloads: list[bytes] = field(default_factory=list)

    def feed(self, data: bytes) -> None:
        for message in split_messages(data):
            if self.done or message.sequence != self.sequence:
                continue  # a late answer to an abandoned request, or after the end
            if message.flags & NLM_F_DUMP_INTR:
                self.interrupted = True
            if message.kind == NLMSG_DONE:
                self.done = True
            elif message.kind == NLMSG_ERROR:
                code = error_code(message)
                if code is None or code != 0 or not self.multipart:
                    self.error = errno.EPROTO if code is None else code
                    self.done = True
            elif message.kind == self.kind:
                self.count += 1
                self.payloads.append(message.payload)
                if not self.multipart:
                    self.done = True


# ---- the socket part ---------------------------------------------------------------------


def _open(groups: int = 0) -> socket.socket:
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, groups))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class RouteSocket:
    """A NETLINK_ROUTE socket for dumps and gets, one request at a time (the kernel runs
    one dump per socket); opened on first use, and anew after a request it abandoned."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._sequence = 0
        self._lock = asyncio.Lock()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def dump(self, kind: int, reply: int) -> list[bytes]:
        """Every reply payload of a dump; OSError if the kernel refused or it stalled."""
        reader = await self._request(kind, reply, multipart=True)
        for _retry in range(DUMP_RETRIES):
            if not reader.interrupted:
                break
            reader = await self._request(kind, reply, multipart=True)
        # Still inconsistent after retries: what was read is the best there is, and the
        # monitor (open before any dump) brings the changes that spoiled it.
        return reader.payloads

    async def link(self, ifindex: int) -> bytes | None:
        """One RTM_NEWLINK payload, or None if there is no such interface."""
        try:
            reader = await self._request(RTM_GETLINK, RTM_NEWLINK, multipart=False, index=ifindex)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return reader.payloads[0] if reader.payloads else None

    async def _request(
        self, kind: int, reply: int, *, multipart: bool, index: int = 0
    ) -> DumpReader:
        async with self._lock:
            self._sequence = self._sequence % 0x7FFFFFFF + 1
            sequence = self._sequence
            request = dump_request(kind, sequence) if multipart else link_request(index, sequence)
            reader = DumpReader(sequence, reply, multipart=multipart)
            if self._sock is None:
                self._sock = _open()
            sock = self._sock
            try:
                sock.send(request)
                await _read_all(sock, reader)
            except BaseException:
                # Half a dump is still queued in the kernel, and it would refuse the next
                # one (EBUSY) until it is read: start over on a fresh socket instead.
                self.close()
                raise
            if reader.error:
                raise OSError(reader.error, os.strerror(reader.error))
            return reader


async def _read_all(sock: socket.socket, reader: DumpReader) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DUMP_TIMEOUT
    while not reader.done:
        if reader.count > DUMP_MAX_MESSAGES:
            raise OSError(errno.EMSGSIZE, f"dump longer than {DUMP_MAX_MESSAGES} messages")
        try:
            data = sock.recv(READ_SIZE)
        except BlockingIOError:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise OSError(errno.ETIMEDOUT, "no answer from the kernel") from None
            try:
                await asyncio.wait_for(wait_readable(loop, sock), remaining)
            except TimeoutError:
                raise OSError(errno.ETIMEDOUT, "no answer from the kernel") from None
            continue
        reader.feed(data)


class Monitor:
    """A socket bound to the link and address groups; `events()` until `close()`."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = _open(
            RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
        )
        self._waiting: asyncio.Future[None] | None = None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._waiting is not None:
            with_loop = self._waiting.get_loop()
            with_loop.remove_reader(sock.fileno())
            if not self._waiting.done():
                self._waiting.set_result(None)  # events() sees the close and ends
        sock.close()

    async def events(self) -> AsyncIterator[LinkEvent]:
        """Events until `close()`. OSError means events were lost (ENOBUFS: the kernel
        dropped some; EMSGSIZE: one did not fit a read): the caller re-reads everything."""
        loop = asyncio.get_running_loop()
        while (sock := self._sock) is not None:
            try:
                data, _ancillary, flags, _address = sock.recvmsg(READ_SIZE)
            except BlockingIOError:
                await self._wait(loop, sock)
                continue
            if flags & socket.MSG_TRUNC:
                raise OSError(errno.EMSGSIZE, "a link event did not fit one read")
            for message in split_messages(data):
                event = decode_event(message.kind, message.payload)
                if event is not None:
                    yield event

    async def _wait(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._waiting = ready
        loop.add_reader(sock.fileno(), wake)
        try:
            await ready
        finally:
            self._waiting = None
            if self._sock is sock:
                loop.remove_reader(sock.fileno())
