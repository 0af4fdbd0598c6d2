"""vrrp/arp.py against keepalived 2.2.7's captured frames and hand-assembled bytes."""

from __future__ import annotations

import contextlib
import json
import struct
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vrrp.arp import (
    FrameError,
    gratuitous_arp,
    parse_arp,
    parse_na,
    unsolicited_na,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keepalived"

KA_MAC = bytes.fromhex("02000000a001")  # keepalived's interface in the capture
KA_VIP4 = IPv4Address("192.0.2.100")
KA_VIP6 = IPv6Address("2001:db8::100")
OTHER_MAC = bytes.fromhex("0200005e1234")
OTHER_VIP4 = IPv4Address("198.51.100.7")
OTHER_VIP6 = IPv6Address("2001:db8:aa::77")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def keepalived_frame(name: str) -> bytes:
    fx = load(name)
    assert fx["producer"].startswith("Keepalived v2.2.7")
    assert fx["interface_mac"] == "02:00:00:00:a0:01"
    return bytes.fromhex(fx["frame_hex"])


def icmpv6_checksum(src: IPv6Address, dst: IPv6Address, message: bytes) -> int:
    """RFC 4443 §2.3, independently of vrrp/arp.py: one big integer sum, mod 0xFFFF."""
    pseudo = src.packed + dst.packed + len(message).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    data = pseudo + message[:2] + b"\x00\x00" + message[4:]
    data += b"\x00" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data)) % 0xFFFF
    return ~(total or 0xFFFF) & 0xFFFF


# ---- gratuitous ARP ------------------------------------------------------------------------


def test_garp_request_matches_keepalived() -> None:
    theirs = keepalived_frame("garp")
    ours = gratuitous_arp(KA_MAC, KA_VIP4)
    assert len(theirs) == 42  # keepalived does not pad; veth passes it on as is
    assert ours[:42] == theirs
    assert len(ours) == 60 and ours[42:] == bytes(18)


def test_garp_request_matches_keepalived_with_other_mac_and_ip() -> None:
    theirs = keepalived_frame("garp")
    substituted = theirs.replace(KA_MAC, OTHER_MAC).replace(KA_VIP4.packed, OTHER_VIP4.packed)
    assert substituted != theirs
    assert gratuitous_arp(OTHER_MAC, OTHER_VIP4)[:42] == substituted


def test_garp_request_hand_assembled() -> None:
    expected = bytes.fromhex(
        "ffffffffffff"  # Ethernet destination: broadcast
        "0200005e1234"  # Ethernet source: our MAC
        "0806"  # ARP
        "0001" "0800" "06" "04"  # Ethernet / IPv4, address lengths 6 / 4
        "0001"  # request
        "0200005e1234" "c6336407"  # sender: our MAC, the VIP 198.51.100.7
        "ffffffffffff" "c6336407"  # target: broadcast MAC (keepalived's choice), the VIP
    ) + bytes(18)  # fmt: skip
    assert gratuitous_arp(OTHER_MAC, OTHER_VIP4) == expected


def test_garp_reply_hand_assembled() -> None:
    expected = bytes.fromhex(
        "ffffffffffff" "0200005e1234" "0806"
        "0001" "0800" "06" "04"
        "0002"  # reply
        "0200005e1234" "c6336407"
        "0200005e1234" "c6336407"  # target: our own MAC and the VIP, as arping -A
    ) + bytes(18)  # fmt: skip
    assert gratuitous_arp(OTHER_MAC, OTHER_VIP4, reply=True) == expected


def test_parse_arp_reads_keepalived_frame() -> None:
    arp = parse_arp(keepalived_frame("garp"))
    assert arp.dst_mac == b"\xff" * 6
    assert arp.src_mac == KA_MAC
    assert arp.op == 1
    assert arp.sender_mac == KA_MAC
    assert arp.sender_ip == KA_VIP4
    assert arp.target_mac == b"\xff" * 6
    assert arp.target_ip == KA_VIP4
    assert arp.padding == b""
    assert arp.is_gratuitous


def test_parse_arp_round_trips_ours() -> None:
    arp = parse_arp(gratuitous_arp(OTHER_MAC, OTHER_VIP4, reply=True))
    assert (arp.op, arp.sender_mac, arp.sender_ip, arp.target_mac, arp.target_ip) == (
        2,
        OTHER_MAC,
        OTHER_VIP4,
        OTHER_MAC,
        OTHER_VIP4,
    )
    assert arp.padding == bytes(18)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        gratuitous_arp(KA_MAC, KA_VIP4)[:41],
        gratuitous_arp(KA_MAC, KA_VIP4)[:12] + b"\x08\x00" + bytes(46),  # IPv4, not ARP
        gratuitous_arp(KA_MAC, KA_VIP4)[:14] + b"\x00\x06" + bytes(44),  # IEEE 802 hrd
    ],
)
def test_parse_arp_rejects_other_frames(frame: bytes) -> None:
    with pytest.raises(FrameError):
        parse_arp(frame)


@pytest.mark.parametrize("bad_mac", [b"", b"\x02" * 5, b"\x02" * 7])
def test_builders_reject_a_bad_mac(bad_mac: bytes) -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        gratuitous_arp(bad_mac, KA_VIP4)
    with pytest.raises(ValueError, match="6 bytes"):
        unsolicited_na(bad_mac, KA_VIP6)


# ---- unsolicited NA ------------------------------------------------------------------------


def test_na_matches_keepalived_byte_for_byte() -> None:
    theirs = keepalived_frame("unsolicited_na")
    assert unsolicited_na(KA_MAC, KA_VIP6) == theirs


def test_keepalived_na_checksum_verified_independently() -> None:
    theirs = keepalived_frame("unsolicited_na")
    message = theirs[54:]
    (checksum,) = struct.unpack_from("!H", message, 2)
    assert checksum == icmpv6_checksum(KA_VIP6, IPv6Address("ff02::1"), message)


def test_na_matches_keepalived_with_other_mac_and_ip() -> None:
    theirs = keepalived_frame("unsolicited_na")
    substituted = theirs.replace(KA_MAC, OTHER_MAC).replace(KA_VIP6.packed, OTHER_VIP6.packed)
    ours = unsolicited_na(OTHER_MAC, OTHER_VIP6)
    # Everything but the ICMPv6 checksum carries over; the checksum must be recomputed.
    assert ours[:56] == substituted[:56] and ours[58:] == substituted[58:]
    (checksum,) = struct.unpack_from("!H", ours, 56)
    assert checksum == icmpv6_checksum(OTHER_VIP6, IPv6Address("ff02::1"), ours[54:])


def test_na_hand_assembled() -> None:
    message = bytes.fromhex(
        "88" "00" "0000"  # Neighbor Advertisement, code 0, checksum (filled below)
        "20000000"  # R=0 S=0 O=1, reserved
        "20010db800aa00000000000000000077"  # target: the VIP
        "02" "01" "0200005e1234"  # Target Link-Layer Address option, 1 x 8 bytes
    )  # fmt: skip
    checksum = icmpv6_checksum(OTHER_VIP6, IPv6Address("ff02::1"), message)
    message = message[:2] + checksum.to_bytes(2, "big") + message[4:]
    headers = bytes.fromhex(
        "333300000001"  # all-nodes multicast MAC (RFC 2464 §7)
        "0200005e1234"
        "86dd"
        "60000000"  # version 6, traffic class 0, flow label 0
        "0020" "3a" "ff"  # payload 32 bytes, ICMPv6, hop limit 255
        "20010db800aa00000000000000000077"  # source: the VIP
        "ff020000000000000000000000000001"  # destination: ff02::1
    )  # fmt: skip
    expected = headers + message
    assert unsolicited_na(OTHER_MAC, OTHER_VIP6) == expected


def test_na_router_flag() -> None:
    frame = unsolicited_na(OTHER_MAC, OTHER_VIP6, router=True)
    assert frame[58] == 0xA0  # R and O
    na = parse_na(frame)
    assert na.router and na.override and not na.solicited
    assert na.checksum_valid
    assert na.checksum == icmpv6_checksum(OTHER_VIP6, IPv6Address("ff02::1"), frame[54:])


def test_parse_na_reads_keepalived_frame() -> None:
    na = parse_na(keepalived_frame("unsolicited_na"))
    assert na.dst_mac == bytes.fromhex("333300000001")
    assert na.src_mac == KA_MAC
    assert na.src == KA_VIP6  # keepalived sends from the VIP itself
    assert na.dst == IPv6Address("ff02::1")
    assert na.hop_limit == 255
    assert (na.router, na.solicited, na.override) == (False, False, True)
    assert na.target == KA_VIP6
    assert na.target_mac == KA_MAC
    assert na.checksum_valid


def test_parse_na_flags_a_bad_checksum() -> None:
    frame = bytearray(unsolicited_na(KA_MAC, KA_VIP6))
    frame[-1] ^= 0x01  # the last byte of the option's MAC
    assert not parse_na(bytes(frame)).checksum_valid


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        unsolicited_na(KA_MAC, KA_VIP6)[:77],
        unsolicited_na(KA_MAC, KA_VIP6)[:12] + b"\x08\x00" + unsolicited_na(KA_MAC, KA_VIP6)[14:],
        unsolicited_na(KA_MAC, KA_VIP6)[:54] + b"\x87" + unsolicited_na(KA_MAC, KA_VIP6)[55:],
        unsolicited_na(KA_MAC, KA_VIP6)[:-1],  # payload length says one byte more
    ],
)
def test_parse_na_rejects_other_frames(frame: bytes) -> None:
    with pytest.raises(FrameError):
        parse_na(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_parsers_raise_only_frame_error(frame: bytes) -> None:
    for parse in (parse_arp, parse_na):
        with contextlib.suppress(FrameError):
            parse(frame)


@settings(max_examples=200, deadline=None)
@given(
    mac=st.binary(min_size=6, max_size=6),
    v4=st.ip_addresses(v=4),
    v6=st.ip_addresses(v=6),
    router=st.booleans(),
)
def test_builders_and_parsers_agree(
    mac: bytes, v4: IPv4Address, v6: IPv6Address, router: bool
) -> None:
    arp = parse_arp(gratuitous_arp(mac, v4))
    assert (arp.sender_mac, arp.sender_ip, arp.target_ip, arp.op) == (mac, v4, v4, 1)
    na = parse_na(unsolicited_na(mac, v6, router=router))
    assert (na.src, na.target, na.target_mac, na.router) == (v6, v6, mac, router)
    assert na.checksum_valid
