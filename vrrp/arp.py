"""Gratuitous ARP and unsolicited Neighbor Advertisement frames, as bytes (and parsers for them).

A new master announces each VIP so that hosts and switches re-learn which MAC owns it: a
gratuitous ARP for IPv4, an unsolicited Neighbor Advertisement for IPv6. The builders return
complete Ethernet frames for an AF_PACKET socket, byte-for-byte what keepalived 2.2.7 sends
(tests/fixtures/keepalived/garp.json and unsolicited_na.json) except for the padding noted in
`gratuitous_arp`. The parsers let tests check frames captured off a veth.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_HLEN = 14
ETH_ZLEN = 60  # minimum Ethernet frame without the FCS
BROADCAST_MAC = b"\xff" * 6
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
ARP_LEN = 28  # Ethernet/IPv4 ARP packet
IPV6_HLEN = 40
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
ND_OPT_TARGET_LL_ADDR = 2
NA_LEN = 24  # type, code, checksum, flags + reserved, target
ND_HOP_LIMIT = 255  # RFC 4861 §7.1.2: receivers drop an NA whose Hop Limit is not 255
ALL_NODES = IPv6Address("ff02::1")
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"  # RFC 2464 §7: 33:33 + low 32 bits of ff02::1
NA_FLAG_ROUTER = 0x80
NA_FLAG_SOLICITED = 0x40
NA_FLAG_OVERRIDE = 0x20


class FrameError(ValueError):
    """A frame handed to `parse_arp` / `parse_na` is not what that parser reads."""


def _check_mac(mac: bytes) -> bytes:
    if len(mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
    return bytes(mac)


def gratuitous_arp(mac: bytes, ip: IPv4Address, *, reply: bool = False) -> bytes:
    """A gratuitous ARP for `ip` owned by `mac`, as an Ethernet frame to ff:ff:ff:ff:ff:ff.

    The request form is keepalived's: "who-has VIP tell VIP", op 1, sender and target
    protocol address both the VIP (RFC 5227 §3's ARP Announcement), and the target hardware
    address ff:ff:ff:ff:ff:ff as keepalived 2.2.7 sends it (the kernel's own arp_notify uses
    zeros; receivers ignore the field in a request). The reply form (op 2) is what
    `arping -A` sends, for hosts that only update their cache from replies; its target
    hardware address is the sender's MAC, as arping's.
    """
    mac = _check_mac(mac)
    op = ARPOP_REPLY if reply else ARPOP_REQUEST
    target_mac = mac if reply else BROADCAST_MAC
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, op)
    arp += mac + ip.packed + target_mac + ip.packed
    frame = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP) + arp
    # 42 bytes is a runt on the wire. NIC drivers pad short frames to ETH_ZLEN, but an
    # AF_PACKET frame crossing veth, tap or a software bridge is passed on as is, and a
    # switch may drop a runt once it reaches real Ethernet. Zero padding is what a padding
    # driver would add, so doing it here costs nothing and is correct everywhere.
    # (keepalived sends 42 bytes; the first 42 bytes of ours are identical to its frame.)
    return frame.ljust(ETH_ZLEN, b"\x00")


def _icmpv6_checksum(src: IPv6Address, dst: IPv6Address, message: bytes) -> int:
    # RFC 4443 §2.3: one's complement sum over the RFC 8200 §8.1 pseudo-header and message.
    data = src.packed + dst.packed + struct.pack("!I3xB", len(message), IPPROTO_ICMPV6)
    data += message + (b"\x00" if len(message) % 2 else b"")
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unsolicited_na(mac: bytes, ip: IPv6Address, *, router: bool = False) -> bytes:
    """An unsolicited Neighbor Advertisement for `ip` at `mac`, to all-nodes ff02::1.

    As keepalived builds it: source address the VIP itself (RFC 4861 §7.2.6 only asks for an
    address of the interface, and the VIP is one by now), Hop Limit 255, Override set (so
    caches replace the old master's MAC, §7.2.6), Solicited clear (§7.2.6), and a Target
    Link-Layer Address option (§7.2.6: SHOULD be included). `router` sets the R flag:
    keepalived sets it when IPv6 forwarding is on, since a router that advertises R clear
    is removed from hosts' default router lists (RFC 4861 §7.2.5).
    """
    mac = _check_mac(mac)
    flags = NA_FLAG_OVERRIDE | (NA_FLAG_ROUTER if router else 0)
    option = struct.pack("!BB", ND_OPT_TARGET_LL_ADDR, 1) + mac  # length in units of 8 bytes
    unsummed = struct.pack("!BBHB3x", ND_NEIGHBOR_ADVERT, 0, 0, flags) + ip.packed + option
    checksum = _icmpv6_checksum(ip, ALL_NODES, unsummed)
    message = unsummed[:2] + struct.pack("!H", checksum) + unsummed[4:]
    # Version 6, traffic class 0, flow label 0 (keepalived's header, byte for byte).
    ipv6 = struct.pack("!IHBB", 6 << 28, len(message), IPPROTO_ICMPV6, ND_HOP_LIMIT)
    ipv6 += ip.packed + ALL_NODES.packed
    return ALL_NODES_MAC + mac + struct.pack("!H", ETH_P_IPV6) + ipv6 + message


# ---- parsers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArpFrame:
    """An Ethernet/IPv4 ARP frame, field by field."""

    dst_mac: bytes
    src_mac: bytes
    op: int  # 1 request, 2 reply
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address
    padding: bytes  # whatever follows the 28-byte ARP packet

    @property
    def is_gratuitous(self) -> bool:
        """Sender and target protocol addresses equal: an announcement, not a question."""
        return self.sender_ip == self.target_ip


@dataclass(frozen=True, slots=True)
class NeighborAdvertisementFrame:
    """An Ethernet/IPv6/ICMPv6 Neighbor Advertisement frame, field by field."""

    dst_mac: bytes
    src_mac: bytes
    src: IPv6Address
    dst: IPv6Address
    hop_limit: int
    router: bool
    solicited: bool
    override: bool
    target: IPv6Address
    target_mac: bytes | None  # the Target Link-Layer Address option, if present
    checksum: int
    checksum_valid: bool


def parse_arp(frame: bytes) -> ArpFrame:
    """Parse an Ethernet frame carrying an Ethernet/IPv4 ARP packet; raise FrameError if not."""
    if len(frame) < ETH_HLEN + ARP_LEN:
        raise FrameError(f"{len(frame)} bytes, an ARP frame has at least {ETH_HLEN + ARP_LEN}")
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_ARP:
        raise FrameError(f"ethertype {ethertype:#06x}, not ARP")
    hrd, pro, hln, pln, op = struct.unpack_from("!HHBBH", frame, ETH_HLEN)
    if (hrd, pro, hln, pln) != (ARPHRD_ETHER, ETH_P_IP, 6, 4):
        raise FrameError(f"ARP for hrd={hrd} pro={pro:#06x} hln={hln} pln={pln}, not Ethernet/IPv4")
    a = frame[ETH_HLEN + 8 : ETH_HLEN + ARP_LEN]
    return ArpFrame(
        dst_mac=frame[0:6],
        src_mac=frame[6:12],
        op=op,
        sender_mac=a[0:6],
        sender_ip=IPv4Address(a[6:10]),
        target_mac=a[10:16],
        target_ip=IPv4Address(a[16:20]),
        padding=frame[ETH_HLEN + ARP_LEN :],
    )


def parse_na(frame: bytes) -> NeighborAdvertisementFrame:
    """Parse an Ethernet frame carrying an ICMPv6 Neighbor Advertisement; FrameError if not.

    Reads only a plain IPv6 header (no extension headers), as NAs are sent.
    """
    if len(frame) < ETH_HLEN + IPV6_HLEN + NA_LEN:
        raise FrameError(f"{len(frame)} bytes, too short for a Neighbor Advertisement")
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_IPV6:
        raise FrameError(f"ethertype {ethertype:#06x}, not IPv6")
    ip = frame[ETH_HLEN:]
    if ip[0] >> 4 != 6:
        raise FrameError(f"IP version {ip[0] >> 4}, not 6")
    payload_len, next_header, hop_limit = struct.unpack_from("!HBB", ip, 4)
    if next_header != IPPROTO_ICMPV6:
        raise FrameError(f"next header {next_header}, not ICMPv6")
    message = ip[IPV6_HLEN : IPV6_HLEN + payload_len]
    if len(message) != payload_len or payload_len < NA_LEN:
        raise FrameError(f"ICMPv6 payload length {payload_len}, {len(message)} bytes present")
    if message[0] != ND_NEIGHBOR_ADVERT:
        raise FrameError(f"ICMPv6 type {message[0]}, not Neighbor Advertisement")
    src, dst = IPv6Address(ip[8:24]), IPv6Address(ip[24:40])
    (checksum,) = struct.unpack_from("!H", message, 2)
    flags = message[4]
    target_mac: bytes | None = None
    options = message[NA_LEN:]
    while len(options) >= 2:
        opt_type, opt_len = options[0], options[1] * 8
        if opt_len == 0 or opt_len > len(options):
            raise FrameError("malformed ND option")  # RFC 4861 §4.6: length 0 is invalid
        if opt_type == ND_OPT_TARGET_LL_ADDR:
            target_mac = options[2:8]
        options = options[opt_len:]
    recomputed = _icmpv6_checksum(src, dst, message[:2] + b"\x00\x00" + message[4:])
    return NeighborAdvertisementFrame(
        dst_mac=frame[0:6],
        src_mac=frame[6:12],
        src=src,
        dst=dst,
        hop_limit=hop_limit,
        router=bool(flags & NA_FLAG_ROUTER),
        solicited=bool(flags & NA_FLAG_SOLICITED),
        override=bool(flags & NA_FLAG_OVERRIDE),
        target=IPv6Address(message[8:24]),
        target_mac=target_mac,
        checksum=checksum,
        checksum_valid=recomputed == checksum,
    )
