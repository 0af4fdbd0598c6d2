"""The socket adapter's address caches: the same addresses as a fresh parse, bounded."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from vrrp import sockets
from vrrp.sockets import DatagramError, parse_ipv4, parse_ipv6


def ipv4_packet(src: str, dst: str = "224.0.0.18") -> bytes:
    payload = b"\x31\x01\xc8\x01\x00\x64\x00\x00" + IPv4Address("198.51.100.1").packed
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 255, 112, 0,
        IPv4Address(src).packed, IPv4Address(dst).packed,
    )  # fmt: skip
    return header + payload


def ipv6_cmsgs(dst: str, hops: int = 255) -> list[tuple[int, int, bytes]]:
    return [
        (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("=i", hops)),
        (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, IPv6Address(dst).packed + b"\0" * 4),
    ]


def test_repeated_ipv4_sources_parse_to_the_same_addresses() -> None:
    for _ in range(3):
        d = parse_ipv4(ipv4_packet("192.0.2.1"))
        assert (d.source, d.destination, d.ttl) == (
            IPv4Address("192.0.2.1"),
            IPv4Address("224.0.0.18"),
            255,
        )


def test_repeated_ipv6_sources_parse_to_the_same_addresses() -> None:
    for _ in range(3):
        d = parse_ipv6(b"x" * 24, "fe80::1%eth0", ipv6_cmsgs("ff02::12"))
        assert (d.source, d.destination) == (IPv6Address("fe80::1"), IPv6Address("ff02::12"))


def test_a_bad_ipv6_source_is_still_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(DatagramError):
            parse_ipv6(b"x" * 24, "not-an-address%eth0", ipv6_cmsgs("ff02::12"))


def test_the_caches_stay_bounded() -> None:
    for n in range(3 * sockets._ADDRESS_CACHE_SIZE):
        # Parsed bytes only, never sent: any address will do.
        parse_ipv4(ipv4_packet(str(IPv4Address(0x0A000000 + n))))
        parse_ipv6(b"x" * 24, f"fe80::{n:x}%eth0", ipv6_cmsgs(f"2001:db8::{n:x}"))
    for cache in (sockets._IPV4_CACHE, sockets._IPV6_CACHE, sockets._IPV6_SOURCES):
        assert 0 < len(cache) <= sockets._ADDRESS_CACHE_SIZE
