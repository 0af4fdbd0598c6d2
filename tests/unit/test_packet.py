"""vrrp/packet.py against keepalived 2.2.7's own adverts, per drop reason, and under hypothesis."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vrrp.packet import (
    DropReason,
    PacketError,
    addresses_match,
    check_delivery,
    check_for_instance,
    decode,
    encode,
    max_advert_addresses,
    pad_auth_data,
)
from vrrp.types import Advertisement, AuthType, InstanceParams, IPAddress

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keepalived"

KA_SRC4 = IPv4Address("192.0.2.1")
KA_SRC6 = IPv6Address("fe80::ff:fe00:a001")  # EUI-64 from keepalived's MAC 02:00:00:00:a0:01
GROUP4 = IPv4Address("224.0.0.18")
GROUP6 = IPv6Address("ff02::12")
VIP4_A, VIP4_B = IPv4Address("192.0.2.100"), IPv4Address("192.0.2.101")
VIP6_A, VIP6_B = IPv6Address("2001:db8::100"), IPv6Address("2001:db8::101")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def inet_checksum(data: bytes) -> int:
    """RFC 1071, written independently of the codec: sum mod 0xFFFF is the folded sum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data)) % 0xFFFF
    # A multiple of 0xFFFF folds to 0xFFFF ("negative zero") unless the data is all zeros.
    folded = total or (0xFFFF if any(data) else 0)
    return ~folded & 0xFFFF


def with_checksum(message: bytes, src: IPAddress, dst: IPAddress) -> bytes:
    """Write a correct checksum into a hand-built VRRP message (bytes 6-7)."""
    zeroed = message[:6] + b"\x00\x00" + message[8:]
    if message[0] >> 4 == 2:
        covered = zeroed
    elif isinstance(src, IPv4Address):
        covered = src.packed + dst.packed + struct.pack("!BBH", 0, 112, len(message)) + zeroed
    else:
        covered = src.packed + dst.packed + struct.pack("!I3xB", len(message), 112) + zeroed
    return zeroed[:6] + struct.pack("!H", inet_checksum(covered)) + zeroed[8:]


# ---- golden: keepalived 2.2.7 -------------------------------------------------------------

GOLDEN: dict[str, Advertisement] = {
    "vrrp_v2_noauth": Advertisement(2, 51, 150, 100, (VIP4_A, VIP4_B)),
    "vrrp_v2_noauth_priority0": Advertisement(2, 51, 0, 100, (VIP4_A, VIP4_B)),
    "vrrp_v2_pass": Advertisement(2, 52, 150, 100, (VIP4_A,), AuthType.SIMPLE, b"secret1\x00"),
    "vrrp_v2_pass_priority0": Advertisement(
        2, 52, 0, 100, (VIP4_A,), AuthType.SIMPLE, b"secret1\x00"
    ),
    "vrrp_v3_ipv4": Advertisement(3, 53, 150, 100, (VIP4_A, VIP4_B)),
    "vrrp_v3_ipv4_priority0": Advertisement(3, 53, 0, 100, (VIP4_A, VIP4_B)),
    "vrrp_v3_ipv6": Advertisement(3, 54, 150, 100, (VIP6_A, VIP6_B)),
    "vrrp_v3_ipv6_priority0": Advertisement(3, 54, 0, 100, (VIP6_A, VIP6_B)),
}


def test_every_golden_fixture_is_covered() -> None:
    on_disk = {p.stem for p in FIXTURES.glob("vrrp_*.json")}
    assert on_disk == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_fixture_metadata(name: str) -> None:
    fx = load(name)
    assert fx["producer"].startswith("Keepalived v2.2.7")
    assert fx["kind"] == "vrrp"
    assert fx["ttl"] == 255
    if GOLDEN[name].addresses[0].version == 4:
        assert (ip_address(fx["src"]), ip_address(fx["dst"])) == (KA_SRC4, GROUP4)
    else:
        assert (ip_address(fx["src"]), ip_address(fx["dst"])) == (KA_SRC6, GROUP6)
    # The payload really is the tail of the captured frame.
    assert bytes.fromhex(fx["frame_hex"]).endswith(bytes.fromhex(fx["payload_hex"]))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_decode_keepalived_advert(name: str) -> None:
    fx = load(name)
    adv = decode(bytes.fromhex(fx["payload_hex"]), ip_address(fx["src"]), ip_address(fx["dst"]))
    expected = GOLDEN[name]
    assert adv.version == expected.version
    assert adv.vrid == expected.vrid
    assert adv.priority == expected.priority
    assert adv.max_advert_int == expected.max_advert_int
    assert adv.addresses == expected.addresses
    assert adv.auth_type == expected.auth_type
    assert adv.auth_data == expected.auth_data
    assert adv == expected


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_encode_matches_keepalived_byte_for_byte(name: str) -> None:
    fx = load(name)
    wire = encode(GOLDEN[name], ip_address(fx["src"]), ip_address(fx["dst"]))
    assert wire.hex() == fx["payload_hex"]


def test_v2_password_is_padded_like_keepalived() -> None:
    adv = Advertisement(2, 52, 150, 100, (VIP4_A,), AuthType.SIMPLE, b"secret1")
    assert encode(adv, KA_SRC4, GROUP4).hex() == load("vrrp_v2_pass")["payload_hex"]


def test_v3_ipv4_checksum_uses_the_pseudo_header() -> None:
    # Same message, another destination: only the pseudo-header changed, so the checksum must.
    adv = GOLDEN["vrrp_v3_ipv4"]
    a = encode(adv, KA_SRC4, GROUP4)
    b = encode(adv, KA_SRC4, IPv4Address("192.0.2.2"))
    assert a[:6] == b[:6] and a[8:] == b[8:] and a[6:8] != b[6:8]


def test_v2_checksum_ignores_the_ip_addresses() -> None:
    adv = GOLDEN["vrrp_v2_noauth"]
    assert encode(adv, KA_SRC4, GROUP4) == encode(adv, IPv4Address("192.0.2.9"), VIP4_A)


# ---- round trips and field details ---------------------------------------------------------


@pytest.mark.parametrize(
    ("adv", "src", "dst"),
    [
        (Advertisement(2, 1, 100, 300, (VIP4_A,)), KA_SRC4, GROUP4),
        (Advertisement(2, 255, 254, 25500, (VIP4_A, VIP4_B), AuthType.SIMPLE, b"12345678"),
         KA_SRC4, GROUP4),
        (Advertisement(3, 7, 255, 4095, (VIP4_B,)), KA_SRC4, GROUP4),
        (Advertisement(3, 200, 1, 1, (VIP6_A, VIP6_B)), KA_SRC6, GROUP6),
        (Advertisement(3, 9, 10, 20, (VIP6_A,)), KA_SRC6, IPv6Address("fe80::2")),  # unicast
    ],
)  # fmt: skip
def test_round_trip(adv: Advertisement, src: IPAddress, dst: IPAddress) -> None:
    assert decode(encode(adv, src, dst), src, dst) == adv


def test_v2_interval_is_whole_seconds_on_the_wire() -> None:
    wire = encode(Advertisement(2, 1, 100, 300, (VIP4_A,)), KA_SRC4, GROUP4)
    assert wire[5] == 3


def test_v3_interval_is_centiseconds_on_the_wire() -> None:
    wire = encode(Advertisement(3, 1, 100, 4095, (VIP4_A,)), KA_SRC4, GROUP4)
    assert struct.unpack_from("!H", wire, 4)[0] == 4095


def test_v2_password_longer_than_8_is_cut() -> None:
    adv = Advertisement(2, 1, 100, 100, (VIP4_A,), AuthType.SIMPLE, b"longpassword")
    wire = encode(adv, KA_SRC4, GROUP4)
    assert wire[-8:] == b"longpass"
    assert decode(wire, KA_SRC4, GROUP4).auth_data == b"longpass"
    assert pad_auth_data(b"ab") == b"ab\x00\x00\x00\x00\x00\x00"


def test_v2_no_auth_sends_zeros_and_ignores_the_field_on_receipt() -> None:
    adv = Advertisement(2, 1, 100, 100, (VIP4_A,), AuthType.NONE, b"ignored!")
    wire = encode(adv, KA_SRC4, GROUP4)
    assert wire[-8:] == bytes(8)
    noisy = with_checksum(wire[:-8] + b"garbage!", KA_SRC4, GROUP4)
    assert decode(noisy, KA_SRC4, GROUP4).auth_data == b""


def test_v3_reserved_bits_are_ignored_on_receipt() -> None:
    wire = bytearray(encode(GOLDEN["vrrp_v3_ipv4"], KA_SRC4, GROUP4))
    wire[4] |= 0xF0
    adv = decode(with_checksum(bytes(wire), KA_SRC4, GROUP4), KA_SRC4, GROUP4)
    assert adv == GOLDEN["vrrp_v3_ipv4"]


def test_decode_accepts_a_global_ipv6_source() -> None:
    # RFC 5798 §5.1.2.1 says link-local; nothing in §7.1 asks the receiver to check it.
    src = IPv6Address("2001:db8::1")
    adv = Advertisement(3, 5, 100, 100, (VIP6_A,))
    assert decode(encode(adv, src, GROUP6), src, GROUP6) == adv


@pytest.mark.parametrize(
    ("adv", "src", "dst", "message"),
    [
        (Advertisement(4, 1, 100, 100, (VIP4_A,)), KA_SRC4, GROUP4, "version"),
        (Advertisement(2, 1, 100, 100, (VIP6_A,)), KA_SRC6, GROUP6, "IPv4 only"),
        (Advertisement(3, 0, 100, 100, (VIP4_A,)), KA_SRC4, GROUP4, "vrid"),
        (Advertisement(3, 256, 100, 100, (VIP4_A,)), KA_SRC4, GROUP4, "vrid"),
        (Advertisement(3, 1, 256, 100, (VIP4_A,)), KA_SRC4, GROUP4, "priority"),
        (Advertisement(3, 1, 100, 100, ()), KA_SRC4, GROUP4, "addresses"),
        (Advertisement(3, 1, 100, 100, (VIP4_A,) * 256), KA_SRC4, GROUP4, "addresses"),
        (Advertisement(3, 1, 100, 100, (VIP6_A,)), KA_SRC4, GROUP4, "family"),
        (Advertisement(3, 1, 100, 100, (VIP4_A,)), KA_SRC4, GROUP6, "families"),
        (Advertisement(3, 1, 100, 4096, (VIP4_A,)), KA_SRC4, GROUP4, "4095"),
        (Advertisement(3, 1, 100, 0, (VIP4_A,)), KA_SRC4, GROUP4, "4095"),
        (Advertisement(2, 1, 100, 150, (VIP4_A,)), KA_SRC4, GROUP4, "whole seconds"),
        (Advertisement(2, 1, 100, 25600, (VIP4_A,)), KA_SRC4, GROUP4, "whole seconds"),
        (Advertisement(2, 1, 100, 100, (VIP4_A,), AuthType.AH, b"x"), KA_SRC4, GROUP4, "AH"),
        (Advertisement(3, 1, 100, 100, (VIP4_A,), AuthType.SIMPLE, b"x"), KA_SRC4, GROUP4,
         "authentication"),
    ],
)  # fmt: skip
def test_encode_rejects_our_own_misuse(
    adv: Advertisement, src: IPAddress, dst: IPAddress, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode(adv, src, dst)


# ---- one test per DropReason ---------------------------------------------------------------

V3_OK = encode(Advertisement(3, 51, 100, 100, (VIP4_A, VIP4_B)), KA_SRC4, GROUP4)
V2_OK = encode(Advertisement(2, 51, 100, 100, (VIP4_A,)), KA_SRC4, GROUP4)


def params(**overrides: Any) -> InstanceParams:
    base: dict[str, Any] = {
        "name": "VI_51",
        "vrid": 51,
        "version": 3,
        "priority": 100,
        "advert_int": 100,
        "primary_address": IPv4Address("192.0.2.2"),
        "virtual_addresses": (IPv4Interface("192.0.2.100/24"), IPv4Interface("192.0.2.101/24")),
    }
    base.update(overrides)
    return InstanceParams(**base)


def drop(call: Callable[[], object]) -> PacketError:
    with pytest.raises(PacketError) as info:
        call()
    return info.value


def test_valid_baselines_decode() -> None:
    # The defect tests below each change one thing in these.
    assert decode(V3_OK, KA_SRC4, GROUP4).vrid == 51
    assert decode(V2_OK, KA_SRC4, GROUP4).vrid == 51
    check_for_instance(decode(V3_OK, KA_SRC4, GROUP4), params())
    check_for_instance(decode(V2_OK, KA_SRC4, GROUP4), params(version=2))


def test_drop_too_short() -> None:
    err = drop(lambda: decode(V3_OK[:7], KA_SRC4, GROUP4))
    assert err.reason is DropReason.TOO_SHORT
    assert drop(lambda: decode(b"", KA_SRC4, GROUP4)).reason is DropReason.TOO_SHORT


def test_drop_bad_ttl() -> None:
    # Multicast: 255 only (RFC 5798 §7.1), whatever min/max_ttl say.
    check_delivery(GROUP4, 255, unicast=False)
    check_delivery(GROUP6, 255, unicast=False)
    err = drop(lambda: check_delivery(GROUP4, 254, unicast=False))
    assert err.reason is DropReason.BAD_TTL and "254" in err.detail
    assert drop(lambda: check_delivery(GROUP6, 64, unicast=False)).reason is DropReason.BAD_TTL
    # Unicast: any TTL unless min_ttl / max_ttl are set (keepalived's defaults: keepalived
    # itself sends IPv6 unicast adverts with hop limit 64).
    unicast6 = IPv6Address("2001:db8::1")
    for ttl in (1, 63, 64, 254, 255):
        check_delivery(unicast6, ttl, unicast=True)
        check_delivery(IPv4Address("192.0.2.1"), ttl, unicast=True)
    check_delivery(unicast6, 250, unicast=True, min_ttl=250)
    check_delivery(unicast6, 64, unicast=True, max_ttl=64)
    check_delivery(unicast6, 60, unicast=True, min_ttl=60, max_ttl=64)
    for ttl, low, high in ((249, 250, None), (65, None, 64), (59, 60, 64), (65, 60, 64)):
        with pytest.raises(PacketError) as info:
            check_delivery(unicast6, ttl, unicast=True, min_ttl=low, max_ttl=high)
        assert info.value.reason is DropReason.BAD_TTL and str(ttl) in info.value.detail


def test_drop_bad_destination() -> None:
    # keepalived: "Expected multicast packet but received unicast packet" and the reverse.
    err = drop(lambda: check_delivery(IPv4Address("192.0.2.1"), 255, unicast=False))
    assert err.reason is DropReason.BAD_DESTINATION and "multicast instance" in err.detail
    err = drop(lambda: check_delivery(GROUP6, 255, unicast=True))
    assert err.reason is DropReason.BAD_DESTINATION and "unicast instance" in err.detail


def test_drop_bad_version() -> None:
    bad = with_checksum(bytes([0x41]) + V3_OK[1:], KA_SRC4, GROUP4)
    assert drop(lambda: decode(bad, KA_SRC4, GROUP4)).reason is DropReason.BAD_VERSION
    # A well-formed VRRPv2 message over IPv6 (RFC 3768 is IPv4 only).
    v2_over_v6 = with_checksum(
        bytes([0x21, 51, 100, 1, 0, 1, 0, 0]) + VIP6_A.packed + bytes(8), KA_SRC6, GROUP6
    )
    err = drop(lambda: decode(v2_over_v6, KA_SRC6, GROUP6))
    assert err.reason is DropReason.BAD_VERSION


def test_drop_bad_type() -> None:
    bad = with_checksum(bytes([0x32]) + V3_OK[1:], KA_SRC4, GROUP4)
    assert drop(lambda: decode(bad, KA_SRC4, GROUP4)).reason is DropReason.BAD_TYPE


def test_drop_bad_address_family() -> None:
    err = drop(lambda: decode(V3_OK, KA_SRC4, GROUP6))
    assert err.reason is DropReason.BAD_ADDRESS_FAMILY
    # An IPv6 advert reaching an IPv4 instance with the same VRID.
    v6 = Advertisement(3, 51, 100, 100, (VIP6_A,))
    assert drop(lambda: check_for_instance(v6, params())).reason is DropReason.BAD_ADDRESS_FAMILY


def test_drop_bad_length() -> None:
    # Count says 3 addresses, 2 are present (checksum correct over what is there).
    short = with_checksum(V3_OK[:3] + bytes([3]) + V3_OK[4:], KA_SRC4, GROUP4)
    err = drop(lambda: decode(short, KA_SRC4, GROUP4))
    assert err.reason is DropReason.BAD_LENGTH
    # Trailing bytes after the addresses.
    long = with_checksum(V3_OK + b"\x00\x00\x00\x00", KA_SRC4, GROUP4)
    assert drop(lambda: decode(long, KA_SRC4, GROUP4)).reason is DropReason.BAD_LENGTH
    # v2 without its 8-byte authentication field.
    no_auth = with_checksum(V2_OK[:-8], KA_SRC4, GROUP4)
    assert drop(lambda: decode(no_auth, KA_SRC4, GROUP4)).reason is DropReason.BAD_LENGTH
    # Count 0 (RFC 5798 §5.2.5: the minimum is 1).
    empty = with_checksum(V3_OK[:3] + b"\x00" + V3_OK[4:8], KA_SRC4, GROUP4)
    assert drop(lambda: decode(empty, KA_SRC4, GROUP4)).reason is DropReason.BAD_LENGTH


def test_drop_bad_checksum() -> None:
    bad = V3_OK[:7] + bytes([V3_OK[7] ^ 0x01]) + V3_OK[8:]
    err = drop(lambda: decode(bad, KA_SRC4, GROUP4))
    assert err.reason is DropReason.BAD_CHECKSUM
    # The v3 checksum covers the pseudo-header: the same bytes from another source fail.
    other = IPv4Address("192.0.2.3")
    assert drop(lambda: decode(V3_OK, other, GROUP4)).reason is DropReason.BAD_CHECKSUM


def test_drop_bad_interval() -> None:
    # RFC 3768 §7.1: a v2 advert with another Adver Int is discarded.
    adv = decode(V2_OK, KA_SRC4, GROUP4)
    err = drop(lambda: check_for_instance(adv, params(version=2, advert_int=200)))
    assert err.reason is DropReason.BAD_INTERVAL
    # A zero interval is dropped on decode, whatever the version.
    zero = with_checksum(V3_OK[:4] + b"\x00\x00" + V3_OK[6:], KA_SRC4, GROUP4)
    assert drop(lambda: decode(zero, KA_SRC4, GROUP4)).reason is DropReason.BAD_INTERVAL


def test_v3_interval_mismatch_is_not_a_drop() -> None:
    # RFC 5798 §6.4.2: a v3 backup learns Master_Adver_Interval from the advert.
    check_for_instance(decode(V3_OK, KA_SRC4, GROUP4), params(advert_int=200))


def test_drop_bad_auth_type() -> None:
    # An auth type no RFC defines, on decode.
    bad = with_checksum(V2_OK[:4] + b"\x07" + V2_OK[5:], KA_SRC4, GROUP4)
    assert drop(lambda: decode(bad, KA_SRC4, GROUP4)).reason is DropReason.BAD_AUTH_TYPE
    # AH on protocol 112, on decode (hypothesis found decode letting it through).
    ah_wire = with_checksum(V2_OK[:4] + b"\x02" + V2_OK[5:], KA_SRC4, GROUP4)
    assert drop(lambda: decode(ah_wire, KA_SRC4, GROUP4)).reason is DropReason.BAD_AUTH_TYPE
    # PASS advert, no-auth instance.
    simple = Advertisement(2, 51, 100, 100, (VIP4_A,), AuthType.SIMPLE, b"secret1\x00")
    err = drop(lambda: check_for_instance(simple, params(version=2)))
    assert err.reason is DropReason.BAD_AUTH_TYPE
    # AH is never accepted, even by an instance configured for it.
    ah = Advertisement(2, 51, 100, 100, (VIP4_A,), AuthType.AH, bytes(8))
    err = drop(lambda: check_for_instance(ah, params(version=2, auth_type=AuthType.AH)))
    assert err.reason is DropReason.BAD_AUTH_TYPE


def test_drop_bad_auth() -> None:
    fx = load("vrrp_v2_pass")
    adv = decode(bytes.fromhex(fx["payload_hex"]), KA_SRC4, GROUP4)
    wrong = params(version=2, vrid=52, auth_type=AuthType.SIMPLE, auth_data=b"secret2")
    assert drop(lambda: check_for_instance(adv, wrong)).reason is DropReason.BAD_AUTH
    # The configured password is compared padded, as keepalived puts it on the wire.
    right = params(version=2, vrid=52, auth_type=AuthType.SIMPLE, auth_data=b"secret1")
    check_for_instance(adv, right)


def test_drop_bad_vrid() -> None:
    adv = decode(V3_OK, KA_SRC4, GROUP4)
    assert drop(lambda: check_for_instance(adv, params(vrid=52))).reason is DropReason.BAD_VRID
    # VRID 0 is no virtual router at all: dropped on decode.
    zero = with_checksum(V3_OK[:1] + b"\x00" + V3_OK[2:], KA_SRC4, GROUP4)
    assert drop(lambda: decode(zero, KA_SRC4, GROUP4)).reason is DropReason.BAD_VRID


def test_drop_version_mismatch() -> None:
    v2 = decode(V2_OK, KA_SRC4, GROUP4)
    err = drop(lambda: check_for_instance(v2, params(version=3)))
    assert err.reason is DropReason.VERSION_MISMATCH
    v3 = decode(V3_OK, KA_SRC4, GROUP4)
    err = drop(lambda: check_for_instance(v3, params(version=2)))
    assert err.reason is DropReason.VERSION_MISMATCH


def test_drop_malformed() -> None:
    # Only an input that defeats every specific check reaches the catch-all; a bytes-like
    # object that cannot be read stands in for such a (hypothetical) codec bug.
    class Unreadable:
        def __bytes__(self) -> bytes:
            raise ValueError("cannot read")

    err = drop(lambda: decode(Unreadable(), KA_SRC4, GROUP4))  # type: ignore[arg-type]
    assert err.reason is DropReason.MALFORMED


def test_every_drop_reason_has_its_test() -> None:
    missing = [r for r in DropReason if f"test_drop_{r.name.lower()}" not in globals()]
    assert missing == []


def test_packet_error_carries_reason_and_detail() -> None:
    err = PacketError(DropReason.BAD_TTL, "ttl 1")
    assert (err.reason, err.detail, str(err)) == (DropReason.BAD_TTL, "ttl 1", "bad_ttl: ttl 1")


# ---- address list --------------------------------------------------------------------------


def test_addresses_match_in_any_order() -> None:
    adv = Advertisement(3, 51, 100, 100, (VIP4_B, VIP4_A))
    assert addresses_match(adv, params())


def test_addresses_mismatch_is_reported_not_dropped() -> None:
    adv = Advertisement(3, 51, 100, 100, (VIP4_A,))
    assert not addresses_match(adv, params())
    check_for_instance(adv, params())  # no PacketError: the adapter logs and counts
    extra = Advertisement(3, 51, 100, 100, (VIP4_A, VIP4_B, IPv4Address("192.0.2.102")))
    assert not addresses_match(extra, params())


def test_addresses_match_compares_what_an_advert_carries() -> None:
    # 300 VIPs: an advert carries the first 255 (keepalived moves the rest to its excluded
    # VIPs), so a peer's 255 match; excluded addresses are never expected either.
    vips = tuple(IPv4Interface(f"198.51.{i // 250}.{i % 250 + 1}/16") for i in range(300))
    p = params(virtual_addresses=vips, excluded_addresses=(IPv6Interface("2001:db8::1/64"),))
    carried = tuple(v.ip for v in vips[:255])
    assert p.advert_addresses == carried
    assert addresses_match(Advertisement(3, 51, 100, 100, carried), p)
    assert not addresses_match(Advertisement(3, 51, 100, 100, carried[:254]), p)
    fewer = params(virtual_addresses=vips, max_advert_addresses=89)
    assert addresses_match(Advertisement(3, 51, 100, 100, carried[:89]), fewer)


@pytest.mark.parametrize(
    ("version", "family", "mtu", "expected"),
    [
        # Measured with keepalived 2.2.7 on veths of these MTUs, 300 VIPs each:
        # "Number of VIPs (300) exceeds maximum/space available in packet (max N addresses)".
        (3, 6, 1500, 89),
        (3, 6, 1280, 76),
        (3, 6, 1294, 77),
        (3, 6, 9000, 255),
        (3, 4, 1500, 255),
        (2, 4, 1500, 255),
        (3, 4, 1000, 239),
        (3, 4, 1002, 240),
        (2, 4, 1000, 237),
        (2, 4, 1010, 240),
        (2, 4, 1009, 239),
        (2, 4, 600, 137),
        # And never none: RFC 5798 §5.2.5 wants one address.
        (3, 6, 68, 1),
    ],
)
def test_max_advert_addresses_is_keepalived_s(
    version: int, family: int, mtu: int, expected: int
) -> None:
    assert max_advert_addresses(version, family, mtu) == expected


def test_keepalived_ipv6_advert_passes_a_matching_instance() -> None:
    fx = load("vrrp_v3_ipv6")
    adv = decode(bytes.fromhex(fx["payload_hex"]), KA_SRC6, GROUP6)
    p = params(
        vrid=54,
        primary_address=IPv6Address("fe80::ff:fe00:b001"),
        virtual_addresses=(IPv6Interface("2001:db8::100/64"), IPv6Interface("2001:db8::101/64")),
    )
    check_for_instance(adv, p)
    assert addresses_match(adv, p)


# ---- properties ----------------------------------------------------------------------------

addresses_any = st.ip_addresses()


@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=200),
    src=addresses_any,
    dst=addresses_any,
    ttl=st.integers(min_value=-(2**16), max_value=2**16),
    unicast=st.booleans(),
)
def test_decode_arbitrary_bytes_raises_only_packet_error(
    data: bytes, src: IPAddress, dst: IPAddress, ttl: int, unicast: bool
) -> None:
    try:
        decode(data, src, dst)
    except PacketError as exc:
        assert isinstance(exc.reason, DropReason)
    try:
        check_delivery(dst, ttl, unicast=unicast, min_ttl=64, max_ttl=255)
    except PacketError as exc:
        assert isinstance(exc.reason, DropReason)


@st.composite
def plausible_packets(draw: st.DrawFn) -> tuple[bytes, IPAddress, IPAddress]:
    """Random fields behind a plausible header, mostly of the right length, with a correct
    checksum: these get past the early checks and exercise the deep ones."""
    # Mostly well-formed v2/v3 advertisements; sometimes a wrong version or type.
    first = draw(st.sampled_from([0x21] * 4 + [0x31] * 4 + [0x22, 0x11, 0x30]))
    v6 = draw(st.booleans()) if first != 0x21 else draw(st.sampled_from([False] * 9 + [True]))
    src: IPAddress = draw(st.ip_addresses(v=6 if v6 else 4))
    dst: IPAddress = draw(st.ip_addresses(v=6 if v6 else 4))
    count = draw(st.sampled_from([1, 2, 3, 4] * 3 + [0]))
    header = bytes([first]) + draw(st.binary(min_size=2, max_size=2)) + bytes([count])
    header += draw(st.binary(min_size=2, max_size=2)) + b"\x00\x00"
    right_length = count * (16 if v6 else 4) + (8 if first >> 4 == 2 else 0)
    wrong = draw(st.sampled_from([False] * 4 + [True]))
    length = draw(st.integers(0, 80)) if wrong else right_length
    body = draw(st.binary(min_size=length, max_size=length))
    return with_checksum(header + body, src, dst), src, dst


# Once found by hypothesis: a v2 advert claiming AH decoded instead of being dropped.
AH_PLAUSIBLE = bytes.fromhex("210100010201dcfc") + bytes(12)


@settings(max_examples=400, deadline=None)
@given(plausible_packets())
@example(
    (
        bytes.fromhex("2101000102 01dcfc".replace(" ", "")) + bytes(12),
        IPv4Address(0),
        IPv4Address(0),
    )
)
def test_decode_plausible_packets_raises_only_packet_error(
    case: tuple[bytes, IPAddress, IPAddress],
) -> None:
    data, src, dst = case
    try:
        adv = decode(data, src, dst)
    except PacketError:
        return
    # Whatever decodes encodes back to the same bytes, except what decode ignores: the v3
    # reserved bits and the v2 authentication field when there is no authentication.
    ignored = bytearray(data)
    if adv.version == 3:
        ignored[4] &= 0x0F
    elif adv.auth_type == AuthType.NONE:
        ignored[-8:] = bytes(8)
    wire = encode(adv, src, dst)
    assert wire[:6] + wire[8:] == bytes(ignored[:6] + ignored[8:])
    assert decode(wire, src, dst) == adv


@st.composite
def advertisements(draw: st.DrawFn) -> tuple[Advertisement, IPAddress, IPAddress]:
    version = draw(st.sampled_from([2, 3]))
    family: Literal[4, 6] = 4 if version == 2 else draw(st.sampled_from([4, 6]))
    src: IPAddress = draw(st.ip_addresses(v=family))
    dst: IPAddress = draw(st.ip_addresses(v=family))
    addresses = tuple(draw(st.lists(st.ip_addresses(v=family), min_size=1, max_size=20)))
    if version == 2:
        interval = draw(st.integers(min_value=1, max_value=255)) * 100
        auth_type = draw(st.sampled_from([AuthType.NONE, AuthType.SIMPLE]))
        auth_data = draw(st.binary(min_size=8, max_size=8)) if auth_type else b""
    else:
        interval = draw(st.integers(min_value=1, max_value=4095))
        auth_type, auth_data = AuthType.NONE, b""
    adv = Advertisement(
        version=version,
        vrid=draw(st.integers(min_value=1, max_value=255)),
        priority=draw(st.integers(min_value=0, max_value=255)),
        max_advert_int=interval,
        addresses=addresses,
        auth_type=auth_type,
        auth_data=auth_data,
    )
    return adv, src, dst


@settings(max_examples=400, deadline=None)
@given(advertisements())
def test_encode_then_decode_is_identity(case: tuple[Advertisement, IPAddress, IPAddress]) -> None:
    adv, src, dst = case
    wire = encode(adv, src, dst)
    assert decode(wire, src, dst) == adv
    # And the checksum is right by an independent computation.
    assert with_checksum(wire, src, dst) == wire
