"""The codec's caches of decoded and encoded messages: the same answers as without, bounded."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from vrrp import packet
from vrrp.types import VRRP_MCAST_V4, Advertisement

SRC = IPv4Address("192.0.2.1")


def message(vrid: int, priority: int = 200) -> bytes:
    adv = Advertisement(3, vrid, priority, 100, (IPv4Address(f"198.51.100.{vrid}"),))
    return packet.encode(adv, SRC, VRRP_MCAST_V4)


def test_a_repeated_message_decodes_to_the_same_advertisement() -> None:
    data = message(7)
    first = packet.decode(data, SRC, VRRP_MCAST_V4)
    again = packet.decode(bytearray(data), SRC, VRRP_MCAST_V4)
    assert again == first
    assert (again.vrid, again.priority, again.addresses) == (7, 200, (IPv4Address("198.51.100.7"),))


def test_the_same_bytes_from_another_source_are_checked_again() -> None:
    # The v3 checksum covers the source (pseudo-header): a cached answer for one source
    # must not vouch for the same bytes from another.
    data = message(8)
    packet.decode(data, SRC, VRRP_MCAST_V4)
    with pytest.raises(packet.PacketError) as err:
        packet.decode(data, IPv4Address("192.0.2.2"), VRRP_MCAST_V4)
    assert err.value.reason is packet.DropReason.BAD_CHECKSUM


def test_a_corrupted_copy_of_a_cached_message_is_still_dropped() -> None:
    data = message(9)
    packet.decode(data, SRC, VRRP_MCAST_V4)
    bad = data[:6] + bytes([data[6] ^ 0xFF]) + data[7:]
    for _ in range(2):
        with pytest.raises(packet.PacketError) as err:
            packet.decode(bad, SRC, VRRP_MCAST_V4)
        assert err.value.reason is packet.DropReason.BAD_CHECKSUM


def test_the_cache_stays_bounded() -> None:
    for priority in range(1, 255):
        for vrid in range(1, 30):
            packet.decode(message(vrid, priority), SRC, VRRP_MCAST_V4)
    assert 0 < len(packet._DECODED) <= packet.DECODE_CACHE_SIZE


def test_an_unhashable_source_is_a_packet_error_not_a_crash() -> None:
    with pytest.raises(packet.PacketError) as err:
        packet.decode(message(10), [1, 2], VRRP_MCAST_V4)  # type: ignore[arg-type]
    assert err.value.reason is packet.DropReason.BAD_ADDRESS_FAMILY


def test_a_repeated_advertisement_encodes_to_the_same_bytes() -> None:
    adv = Advertisement(3, 11, 200, 100, (IPv4Address("198.51.100.11"),))
    first = packet.encode(adv, SRC, VRRP_MCAST_V4)
    assert packet.encode(adv, SRC, VRRP_MCAST_V4) == first
    # Another source is another pseudo-header, so another checksum.
    other = packet.encode(adv, IPv4Address("192.0.2.2"), VRRP_MCAST_V4)
    assert other != first
    assert packet.decode(other, IPv4Address("192.0.2.2"), VRRP_MCAST_V4) == adv


def test_an_advertisement_that_cannot_be_encoded_fails_every_time() -> None:
    bad = Advertisement(3, 0, 200, 100, (IPv4Address("198.51.100.12"),))
    for _ in range(2):
        with pytest.raises(ValueError, match="vrid 0"):
            packet.encode(bad, SRC, VRRP_MCAST_V4)
    unhashable = Advertisement(3, 12, 200, 100, [IPv4Address("198.51.100.12")])  # type: ignore[arg-type]
    assert packet.encode(unhashable, SRC, VRRP_MCAST_V4) == packet.encode(
        Advertisement(3, 12, 200, 100, (IPv4Address("198.51.100.12"),)), SRC, VRRP_MCAST_V4
    )
