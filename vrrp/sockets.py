"""Raw VRRP sockets and AF_PACKET frames: opening, reading one datagram, sending.

One raw IP protocol-112 socket serves one (interface, address family). It is bound to the
device, joined to the VRRP group on that interface only, and sends with TTL / hop limit 255
(RFC 5798 §5.1.1.3 / §5.1.2.3: receivers drop multicast adverts with anything else, so a
packet cannot have crossed a router), unless a unicast send asks for another. The receive
side hands back the VRRP payload plus what the checks need from the IP layer: source,
destination and the received TTL / hop limit.

Reading (`receive`) is apart from parsing, which is pure (`parse`: `parse_ipv4`,
`parse_ipv6`) and raises `DatagramError` with a reason; the adapter counts it like any other
drop. `repeat_key` tells a copy of a datagram already parsed without parsing it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from vrrp.types import VRRP_MCAST_V4, VRRP_MCAST_V6, VRRP_PROTOCOL, IPAddress

# Linux values the socket module does not export.
IP_PKTINFO = 8
IP_MULTICAST_ALL = 49
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD

# keepalived marks adverts IPTOS_PREC_INTERNETCONTROL (and the same class for IPv6), so
# switches that honour DSCP keep them ahead of data traffic.
TOS_INTERNETCONTROL = 0xC0
VRRP_TTL = 255
RECV_BUFFER = 4096  # an advert is at most 8 + 255*16 bytes plus an IPv4 header
ANCILLARY_BUFFER = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4)
# A plain int: `flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)` builds enum members in
# Python on every datagram, a tenth of a backup's CPU at 20 instances x 10 ms.
_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)

# A master sends the adverts of all its instances of one interval at the same moment
# (vrrp.fsm.advert_due_after), so one socket may be handed up to 255 VRIDs at once, more
# with unicast peers or another router's adverts on the segment, while the loop is busy.
# The kernel's default (net.core.rmem_default, 208 KiB) holds 256 small frames on veth and
# about 50 where a driver gives each frame a page. SO_RCVBUFFORCE (CAP_NET_ADMIN, which
# the daemon has) goes past net.core.rmem_max, which caps SO_RCVBUF (208 KiB on Debian).
RCVBUF = 4 << 20
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class DatagramError(Exception):
    """What arrived is not a usable IP datagram; `reason` is the counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Datagram:
    """A received VRRP payload with what the codec checks from the IP layer."""

    payload: bytes
    source: IPAddress
    destination: IPAddress
    ttl: int  # IPv4 TTL or IPv6 hop limit


def open_vrrp_socket(family: socket.AddressFamily, ifname: str, ifindex: int) -> socket.socket:
    """A non-blocking raw VRRP socket on `ifname`, joined to the VRRP group there.

    Raises OSError (e.g. the interface vanished in between); the caller treats that as the
    interface being down.
    """
    sock = socket.socket(family, socket.SOCK_RAW, VRRP_PROTOCOL)
    try:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RCVBUF)
        except PermissionError:  # no CAP_NET_ADMIN: as much as rmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        # Only this interface's packets: the same VRID may mean another group elsewhere.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        if family == socket.AF_INET:
            mreqn = struct.pack("4s4si", VRRP_MCAST_V4.packed, b"\0" * 4, ifindex)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            # Linux's default (1) would deliver groups joined by *any* socket to this one.
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, VRRP_TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, TOS_INTERNETCONTROL)
        else:
            mreq = struct.pack("16sI", VRRP_MCAST_V6.packed, ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, VRRP_TTL)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, TOS_INTERNETCONTROL)
            # IPv6 raw sockets deliver no header: hop limit and destination come as cmsgs.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def parse_ipv4(data: bytes) -> Datagram:
    """Split what an IPv4 raw socket delivers (header + payload) into a `Datagram`."""
    if len(data) < 20:
        raise DatagramError("ip_header", f"{len(data)} bytes, shorter than an IPv4 header")
    version, ihl = data[0] >> 4, (data[0] & 0x0F) * 4
    if version != 4 or ihl < 20 or ihl > len(data):
        raise DatagramError("ip_header", f"version {version}, header length {ihl}")
    total_length = int.from_bytes(data[2:4], "big")
    if total_length < ihl or total_length > len(data):
        raise DatagramError("ip_header", f"total length {total_length} of {len(data)} bytes")
    return Datagram(
        payload=bytes(data[ihl:total_length]),
        source=_ipv4(data[12:16]),
        destination=_ipv4(data[16:20]),
        ttl=data[8],
    )


# Adverts come from a handful of peers to one group: the same few addresses, over and over.
# Addresses are immutable, so one object per address serves every packet; the cache is
# emptied when full, so a flood of forged sources costs at most a rebuild, not memory.
_IPV4_CACHE: dict[bytes, IPv4Address] = {}
_ADDRESS_CACHE_SIZE = 1024


_IPV6_CACHE: dict[bytes, IPv6Address] = {}
_IPV6_SOURCES: dict[str, IPv6Address] = {}  # as recvmsg gives them: "fe80::1%eth0"


def _remember(cache: dict[Any, Any], key: object, value: object) -> None:
    if len(cache) >= _ADDRESS_CACHE_SIZE:
        cache.clear()
    cache[key] = value


def _ipv4(packed: bytes) -> IPv4Address:
    address = _IPV4_CACHE.get(packed)
    if address is None:
        address = IPv4Address(packed)
        _remember(_IPV4_CACHE, packed, address)
    return address


def _ipv6(packed: bytes) -> IPv6Address:
    address = _IPV6_CACHE.get(packed)
    if address is None:
        address = IPv6Address(packed)
        _remember(_IPV6_CACHE, packed, address)
    return address


def parse_ipv6(data: bytes, source: str, ancdata: Iterable[tuple[int, int, bytes]]) -> Datagram:
    """Build a `Datagram` from an IPv6 raw socket's payload, peer address and cmsgs."""
    hop_limit: int | None = None
    destination: IPv6Address | None = None
    for level, kind, value in ancdata:
        if level != socket.IPPROTO_IPV6:
            continue
        if kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
            hop_limit = struct.unpack("=i", value[:4])[0]
        elif kind == socket.IPV6_PKTINFO and len(value) >= 20:
            destination = _ipv6(value[:16])
    if hop_limit is None or destination is None:
        raise DatagramError("no_ancillary", "hop limit or packet info missing")
    src = _IPV6_SOURCES.get(source)
    if src is None:
        try:
            # Python renders link-local peers as "fe80::1%eth0".
            src = IPv6Address(source.split("%", 1)[0])
        except ValueError as exc:
            raise DatagramError("ip_header", f"source {source!r}") from exc
        _remember(_IPV6_SOURCES, source, src)
    return Datagram(payload=bytes(data), source=src, destination=destination, ttl=hop_limit)


Received = tuple[bytes, list[tuple[int, int, bytes]], Any]  # data, ancillary data, peer


def receive(sock: socket.socket) -> Received | None:
    """One datagram as the socket gives it, or None when none is queued.

    Raises DatagramError for a truncated one and OSError for socket trouble.
    """
    try:
        data, ancdata, flags, peer = sock.recvmsg(RECV_BUFFER, ANCILLARY_BUFFER)
    except (BlockingIOError, InterruptedError):
        return None
    if flags & _TRUNCATED:
        raise DatagramError("truncated", f"recvmsg flags {flags:#x}")
    return data, ancdata, peer


def parse(family: int, received: Received) -> Datagram:
    """A `Datagram` from what `receive` gave on a socket of this family."""
    data, ancdata, peer = received
    if family == socket.AF_INET:
        return parse_ipv4(data)
    return parse_ipv6(data, peer[0], ancdata)


def repeat_key(family: int, received: Received) -> Hashable | None:
    """What `parse` depends on, as one hashable value: two datagrams with equal keys parse
    to equal `Datagram`s. None for one too short to be an IPv4 packet.

    A master repeats the same advert every Advertisement_Interval, so the receiver can
    recognise a copy of an advert it has already judged by this key alone. For IPv4 it is
    the whole packet except the Identification and header checksum (the sender may number
    its packets; the kernel has checked the checksum): version and header length, TOS,
    total length, flags and fragment offset, TTL, protocol, addresses, options, payload.
    For IPv6 the payload, the source as recvmsg gives it and the ancillary data (hop
    limit, destination).
    """
    data, ancdata, peer = received
    if family == socket.AF_INET:
        if len(data) < 20:
            return None
        return data[:4] + data[6:10] + data[12:]
    return data, peer[0], tuple(ancdata)


def send_vrrp(
    sock: socket.socket,
    payload: bytes,
    source: IPAddress,
    destination: IPAddress,
    ifindex: int,
    hop_limit: int | None = None,
) -> None:
    """Send one VRRP payload from `source` (which must be ours) on interface `ifindex`.

    `hop_limit` overrides the socket's TTL / Hop Limit (255) for this packet only
    (keepalived's unicast_ttl), as IP_TTL / IPV6_HOPLIMIT ancillary data.

    The source goes in IP_PKTINFO / IPV6_PKTINFO rather than bind(): binding a raw socket to
    an address would also filter what it receives by destination, and one socket serves every
    instance on the interface, each with its own source. The codec's checksum covers this
    source (the RFC 5798 §5.2.8 pseudo-header), so the kernel must not pick another.
    """
    sock.sendmsg(*advert_message(payload, source, destination, ifindex, hop_limit))


SendmsgArgs = tuple[
    list[bytes], list[tuple[int, int, bytes]], int, tuple[str, int] | tuple[str, int, int, int]
]


def advert_message(
    payload: bytes,
    source: IPAddress,
    destination: IPAddress,
    ifindex: int,
    hop_limit: int | None = None,
) -> SendmsgArgs:
    """`sock.sendmsg`'s arguments for `send_vrrp`: built once, they can be sent again as
    long as nothing in them changed (a master's every advert)."""
    if isinstance(source, IPv4Address):
        pktinfo = struct.pack("I4s4s", ifindex, source.packed, b"\0" * 4)
        cmsgs = [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)]
        if hop_limit is not None:
            cmsgs.append((socket.IPPROTO_IP, socket.IP_TTL, struct.pack("i", hop_limit)))
        return [payload], cmsgs, 0, (str(destination), 0)
    pktinfo = struct.pack("16sI", source.packed, ifindex)
    cmsgs = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)]
    if hop_limit is not None:
        cmsgs.append((socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("i", hop_limit)))
    return [payload], cmsgs, 0, (str(destination), 0, 0, ifindex)


def open_packet_socket() -> socket.socket:
    """An AF_PACKET socket for sending whole Ethernet frames (protocol 0: it receives none)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setblocking(False)
    return sock


def send_frame(sock: socket.socket, ifname: str, ethertype: int, frame: bytes) -> None:
    """Send one complete Ethernet frame out of `ifname`."""
    sock.sendto(frame, (ifname, ethertype))
