"""PING_CHECK: one ICMP / ICMPv6 echo request, up when the matching echo reply comes back.

Prefers the unprivileged ICMP datagram socket ("ping socket", allowed when the process's
group is in net.ipv4.ping_group_range; the kernel then owns the identifier and delivers only
our replies) and falls back to a raw socket (CAP_NET_RAW), where every ICMP packet reaching
the host is seen and ours are picked out by type, identifier, sequence and payload.

Echo message (RFC 792; RFC 4443 §4.1 for ICMPv6, whose checksum the kernel computes):

    type(8) code(8) checksum(16) | identifier(16) sequence(16) | data
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
from dataclasses import dataclass
from ipaddress import ip_address

from healthcheck.config import IcmpCheck
from healthcheck.probes.common import (
    Address,
    Clock,
    ProbeFailure,
    ProbeTarget,
    Up,
    deadline_of,
    family_of,
    open_socket,
    timed,
)
from healthcheck.types import ProbeResult

ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
DEST_UNREACHABLE = {4: 3, 6: 1}
_HEADER = struct.Struct("!BBHHH")
# Bounds the packets a raw socket may hand us (other hosts' pings, our own request on lo).
_MAX_PACKETS = 1000


@dataclass(frozen=True, slots=True)
class Echo:
    icmp_type: int
    code: int
    ident: int
    seq: int
    data: bytes


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_echo(version: int, ident: int, seq: int, data: bytes) -> bytes:
    head = _HEADER.pack(ECHO_REQUEST[version], 0, 0, ident, seq)
    csum = checksum(head + data) if version == 4 else 0
    return _HEADER.pack(ECHO_REQUEST[version], 0, csum, ident, seq) + data


def parse_icmp(packet: bytes) -> Echo | None:
    if len(packet) < _HEADER.size:
        return None
    icmp_type, code, _, ident, seq = _HEADER.unpack_from(packet)
    return Echo(icmp_type, code, ident, seq, packet[_HEADER.size :])


def strip_ipv4_header(packet: bytes) -> bytes:
    # A raw IPv4 socket delivers the IP header too (raw(7)); IPv6 raw sockets do not.
    if not packet:
        return packet
    return packet[(packet[0] & 0x0F) * 4 :]


def _open(check: IcmpCheck, address: Address) -> tuple[socket.socket, bool]:
    """(socket, is_raw)."""
    family = family_of(address)
    proto = socket.IPPROTO_ICMP if address.version == 4 else socket.IPPROTO_ICMPV6
    try:
        return open_socket(check, family, socket.SOCK_DGRAM, proto, bind_port=False), False
    except OSError:
        pass
    try:
        return open_socket(check, family, socket.SOCK_RAW, proto, bind_port=False), True
    except PermissionError as exc:
        raise ProbeFailure("icmp_not_permitted") from exc


def quoted_echo(version: int, quoted: bytes) -> Echo | None:
    """The echo request quoted in a destination-unreachable message (RFC 792, RFC 4443).

    `quoted` is what follows the 8-byte header (type, code, checksum, unused): the offending
    packet from its IP header on.
    """
    if version == 4:
        quoted = strip_ipv4_header(quoted)
    elif len(quoted) >= 40:
        quoted = quoted[40:]
    return parse_icmp(quoted)


async def _icmp(check: IcmpCheck, target: ProbeTarget) -> Up:
    address = check.connect_ip if check.connect_ip is not None else target.address
    version = address.version
    deadline = deadline_of(check)
    loop = asyncio.get_running_loop()
    sock, raw = _open(check, address)
    try:
        ident = secrets.randbelow(0x10000)
        seq = secrets.randbelow(0x10000)
        token = secrets.token_bytes(16)
        dest = (str(address), 0)
        await loop.sock_sendto(sock, build_echo(version, ident, seq, token), dest)
        if not raw:
            # The ping socket replaced our identifier with its "port" (net/ipv4/ping.c).
            ident = sock.getsockname()[1]
        async with asyncio.timeout_at(deadline):
            for _ in range(_MAX_PACKETS):
                packet, source = await loop.sock_recvfrom(sock, 65535)
                if raw and version == 4:
                    packet = strip_ipv4_header(packet)
                echo = parse_icmp(packet)
                if echo is None:
                    continue
                if (
                    echo.icmp_type == ECHO_REPLY[version]
                    and (echo.ident, echo.seq, echo.data) == (ident, seq, token)
                    and ip_address(source[0].split("%")[0]) == address
                ):
                    return Up()
                if echo.icmp_type == DEST_UNREACHABLE[version]:
                    quoted = quoted_echo(version, echo.data)
                    if quoted is not None and (quoted.ident, quoted.seq) == (ident, seq):
                        raise ProbeFailure(f"icmp_unreachable_code_{echo.code}")
            raise ProbeFailure("icmp_no_matching_reply")
    except TimeoutError as exc:
        raise ProbeFailure("timeout") from exc
    finally:
        sock.close()


async def probe_icmp(
    check: IcmpCheck, target: ProbeTarget, *, clock: Clock | None = None
) -> ProbeResult:
    """Ping the server once; never raises except asyncio.CancelledError."""
    return await timed(lambda: _icmp(check, target), clock)
