"""VRRP wire codec: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798) over IPv4 and IPv6, as pure functions.

`encode` builds the VRRP message (the IP payload; the kernel or the adapter writes the IP
header), `decode` validates everything RFC 5798 §7.1 / RFC 3768 §7.1 ask of the message itself,
`check_delivery` judges how it arrived (multicast or unicast, TTL / Hop Limit) against the
instance's mode, `check_for_instance` does the other per-instance checks. Every rejection is a
`PacketError` carrying a `DropReason`, so the adapter can count drops by reason; no other
exception escapes `decode`, whatever bytes the network sends.

RFC 5798 §5.1 (VRRPv3; the IPvX addresses are 4 bytes each over IPv4, 16 over IPv6):

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    IPv4 Fields or IPv6 Fields                 |
   ...                                                             ...
    |                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |(rsvd) |     Max Adver Int     |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                                                               |
    +                                                               +
    |                       IPvX Address(es)                        |
    +                                                               +
    +                                                               +
    +                                                               +
    +                                                               +
    |                                                               |
    +                                                               +
    |                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

RFC 3768 §5.1 (VRRPv2, IPv4 only):

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   Auth Type   |   Adver Int   |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         IP Address (1)                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                            .                                  |
    |                            .                                  |
    |                            .                                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         IP Address (n)                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     Authentication Data (1)                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     Authentication Data (2)                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections import Counter
from ipaddress import IPv4Address, IPv6Address

from vrrp.types import VRRP_PROTOCOL, Advertisement, AuthType, InstanceParams, IPAddress

VRRP_TYPE_ADVERTISEMENT = 1  # RFC 5798 §5.2.2: the only type defined
VRRP_TTL = 255  # RFC 5798 §5.1.1.3 / §5.1.2.3: TTL / Hop Limit MUST be 255
HEADER_LEN = 8  # version/type .. checksum, both versions
AUTH_DATA_LEN = 8  # RFC 3768 §5.3.10: two 32-bit words
V3_MAX_ADVERT_INT = 0x0FFF  # 12-bit field, centiseconds (RFC 5798 §5.2.7)
V2_MAX_ADVERT_INT = 0xFF  # 8-bit field, seconds (RFC 3768 §5.3.7)
MAX_ADDRESSES = 0xFF  # 8-bit count


class DropReason(enum.Enum):
    """Why a received packet was dropped; the value is the metric / log label."""

    TOO_SHORT = "too_short"  # fewer bytes than the fixed 8-byte header
    BAD_TTL = "bad_ttl"  # multicast: TTL / Hop Limit not 255 (§7.1); unicast: outside min/max_ttl
    BAD_DESTINATION = "bad_destination"  # unicast to a multicast instance, or the reverse
    BAD_VERSION = "bad_version"  # not 2 or 3, or version 2 over IPv6
    BAD_TYPE = "bad_type"  # not 1 (ADVERTISEMENT)
    BAD_ADDRESS_FAMILY = "bad_address_family"  # src/dst of different families; wrong family
    BAD_LENGTH = "bad_length"  # length does not match the address count (or count is 0)
    BAD_CHECKSUM = "bad_checksum"
    BAD_INTERVAL = "bad_interval"  # zero interval; v2: differs from ours (RFC 3768 §7.1)
    BAD_AUTH_TYPE = "bad_auth_type"  # unknown v2 auth type, AH, or not the one configured
    BAD_AUTH = "bad_auth"  # v2 simple password differs
    BAD_VRID = "bad_vrid"  # VRID 0, or not the VRID of this instance
    VERSION_MISMATCH = "version_mismatch"  # a v2 packet for a v3 instance, or vice versa
    MALFORMED = "malformed"  # a defect no specific check caught (a codec bug if ever counted)


class PacketError(Exception):
    """A received packet failed validation; `reason` is for counters, `detail` for logs."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


# ---- checksum -------------------------------------------------------------------------------


def _ones_complement_sum(data: bytes) -> int:
    """RFC 1071 16-bit one's complement sum (not yet complemented).

    Computed as one big integer modulo 0xFFFF rather than word by word: 2**16 is 1 modulo
    0xFFFF, so the integer the bytes spell is congruent to the sum of their 16-bit words,
    and folding the carries (RFC 1071 §2) keeps that congruence. The folded sum is 0 only
    for all-zero data and otherwise lies in 1..0xFFFF, where 0xFFFF stands for 0 mod 0xFFFF.
    """
    total = int.from_bytes(data, "big")
    if len(data) % 2:
        total <<= 8  # RFC 1071: an odd byte is padded with a zero byte on the right
    if total == 0:
        return 0
    return total % 0xFFFF or 0xFFFF


def _pseudo_header(src: IPAddress, dst: IPAddress, length: int) -> bytes:
    # RFC 5798 §5.2.8: VRRPv3 checksums include the IPv4 pseudo-header of RFC 768 or the IPv6
    # pseudo-header of RFC 8200 §8.1, with protocol / next header 112.
    if isinstance(src, IPv4Address):
        return src.packed + dst.packed + struct.pack("!BBH", 0, VRRP_PROTOCOL, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, VRRP_PROTOCOL)


def _checksum_input(version: int, message: bytes, src: IPAddress, dst: IPAddress) -> bytes:
    # RFC 3768 §5.3.8: the VRRPv2 checksum covers the VRRP message only.
    if version == 2:
        return message
    return _pseudo_header(src, dst, len(message)) + message


def _checksum(version: int, message: bytes, src: IPAddress, dst: IPAddress) -> int:
    return ~_ones_complement_sum(_checksum_input(version, message, src, dst)) & 0xFFFF


# ---- encode ---------------------------------------------------------------------------------


def pad_auth_data(password: bytes) -> bytes:
    """The 8-byte v2 Authentication Data field: NUL-padded, cut at 8 bytes (as keepalived)."""
    return password[:AUTH_DATA_LEN].ljust(AUTH_DATA_LEN, b"\x00")


def encode(adv: Advertisement, src: IPAddress, dst: IPAddress) -> bytes:
    """The VRRP message (IP payload, no IP header) for `adv` sent from `src` to `dst`.

    `src`/`dst` only feed the VRRPv3 pseudo-header checksum and fix the address family.
    Raises ValueError for an advertisement that cannot go on the wire (our own misuse).
    """
    # A master sends the same advertisement every interval: encode it once (the same
    # reasoning and bounds as decode's cache, below).
    key = (adv, src, dst)
    try:
        message = _ENCODED.get(key)
    except TypeError:  # an unhashable field (our misuse): _encode says which
        return _encode(adv, src, dst)
    if message is None:
        message = _encode(adv, src, dst)
        if len(_ENCODED) >= ENCODE_CACHE_SIZE:
            _ENCODED.clear()
        _ENCODED[key] = message
    return message


ENCODE_CACHE_SIZE = 4096
_ENCODED: dict[tuple[Advertisement, IPAddress, IPAddress], bytes] = {}


def _encode(adv: Advertisement, src: IPAddress, dst: IPAddress) -> bytes:
    family = _family(src)
    if _family(dst) != family:
        raise ValueError(f"src {src} and dst {dst} are of different address families")
    if adv.version not in (2, 3):
        raise ValueError(f"version {adv.version}: only 2 and 3 exist")
    if adv.version == 2 and family != 4:
        raise ValueError("VRRPv2 is IPv4 only (RFC 3768)")
    if not 1 <= adv.vrid <= 255:
        raise ValueError(f"vrid {adv.vrid} outside 1..255")
    if not 0 <= adv.priority <= 255:
        raise ValueError(f"priority {adv.priority} outside 0..255")
    if not 1 <= len(adv.addresses) <= MAX_ADDRESSES:
        raise ValueError(f"{len(adv.addresses)} addresses: 1..255 fit the Count field")
    for address in adv.addresses:
        if _family(address) != family:
            raise ValueError(f"address {address} is not of the packet's family (IPv{family})")
    addresses = b"".join(a.packed for a in adv.addresses)

    if adv.version == 2:
        seconds, rest = divmod(adv.max_advert_int, 100)
        if rest or not 1 <= seconds <= V2_MAX_ADVERT_INT:
            raise ValueError(
                f"max_advert_int {adv.max_advert_int} cs: VRRPv2 carries whole seconds 1..255"
            )
        if adv.auth_type == AuthType.AH:
            # With AH the VRRP message rides behind an IPsec AH header (RFC 2402), which this
            # codec does not build; RFC 5798 §9 dropped it and keepalived discourages it.
            raise ValueError("auth_type AH is not supported")
        # RFC 3768 §5.3.10: with no authentication the field is zero on transmit.
        auth = pad_auth_data(adv.auth_data) if adv.auth_type == AuthType.SIMPLE else bytes(8)
        header = struct.pack(
            "!BBBBBB",
            0x20 | VRRP_TYPE_ADVERTISEMENT,
            adv.vrid,
            adv.priority,
            len(adv.addresses),
            int(adv.auth_type),
            seconds,
        )
        body = addresses + auth
    else:
        if not 1 <= adv.max_advert_int <= V3_MAX_ADVERT_INT:
            raise ValueError(f"max_advert_int {adv.max_advert_int} cs outside 1..4095")
        if adv.auth_type != AuthType.NONE or adv.auth_data:
            raise ValueError("VRRPv3 has no authentication (RFC 5798 §9)")
        # The 4 reserved bits above Max Adver Int are zero on transmit (RFC 5798 §5.2.6).
        header = struct.pack(
            "!BBBBH",
            0x30 | VRRP_TYPE_ADVERTISEMENT,
            adv.vrid,
            adv.priority,
            len(adv.addresses),
            adv.max_advert_int,
        )
        body = addresses
    unsummed = header + b"\x00\x00" + body
    checksum = _checksum(adv.version, unsummed, src, dst)
    return header + struct.pack("!H", checksum) + body


def _family(address: object) -> int:
    if isinstance(address, IPv4Address):
        return 4
    if isinstance(address, IPv6Address):
        return 6
    raise ValueError(f"{address!r} is not an IPv4Address or IPv6Address")


# ---- decode ---------------------------------------------------------------------------------


def decode(data: bytes, src: IPAddress, dst: IPAddress) -> Advertisement:
    """Validate and parse one received VRRP message (the IP payload).

    `src` and `dst` come from the IP header (the raw header, or IPV6_PKTINFO for IPv6); the
    TTL / Hop Limit is `check_delivery`'s, which knows the instance. Raises PacketError, and
    nothing else, for any input.
    """
    key: tuple[bytes, IPAddress, IPAddress] | None = None
    try:
        data = bytes(data)
        try:
            key = (data, src, dst)
            cached = _DECODED.get(key)
        except TypeError:  # an unhashable src / dst: _decode says what is wrong with it
            cached, key = None, None
        if cached is not None:
            return cached
        adv = _decode(data, src, dst)
    except PacketError:
        raise
    except (struct.error, ValueError, TypeError, IndexError, OverflowError) as exc:
        # Each check below should have caught the defect first; this keeps the promise that
        # network input never raises anything but PacketError, even if one is missed.
        raise PacketError(DropReason.MALFORMED, f"{type(exc).__name__}: {exc}") from exc
    if key is not None:
        if len(_DECODED) >= DECODE_CACHE_SIZE:
            _DECODED.clear()
        _DECODED[key] = adv
    return adv


# A master sends the same bytes every Advertisement_Interval (nothing in an advert changes
# while its priority and VIPs do not), so a backup decodes the same few hundred messages
# over and over. decode() is a pure function of (message, src, dst) and an Advertisement
# is immutable: a message decoded once is looked up afterwards, skipping the checksum and
# the parse. Only valid messages are kept, and the cache is emptied when full, so a flood
# of distinct packets costs at most its refills, never memory.
DECODE_CACHE_SIZE = 4096
_DECODED: dict[tuple[bytes, IPAddress, IPAddress], Advertisement] = {}


def _decode(data: bytes, src: IPAddress, dst: IPAddress) -> Advertisement:
    try:
        family = _family(src)
        dst_family = _family(dst)
    except ValueError as exc:
        raise PacketError(DropReason.BAD_ADDRESS_FAMILY, str(exc)) from exc
    if dst_family != family:
        raise PacketError(
            DropReason.BAD_ADDRESS_FAMILY, f"src {src} and dst {dst} are of different families"
        )
    if len(data) < HEADER_LEN:
        raise PacketError(DropReason.TOO_SHORT, f"{len(data)} bytes, header is {HEADER_LEN}")

    version, vtype = data[0] >> 4, data[0] & 0x0F
    vrid, priority, count = data[1], data[2], data[3]
    if version not in (2, 3):
        raise PacketError(DropReason.BAD_VERSION, f"version {version}")
    if version == 2 and family != 4:
        raise PacketError(DropReason.BAD_VERSION, "VRRPv2 over IPv6 (RFC 3768 is IPv4 only)")
    if vtype != VRRP_TYPE_ADVERTISEMENT:
        raise PacketError(DropReason.BAD_TYPE, f"type {vtype}")

    address_len = 4 if family == 4 else 16
    # RFC 5798 §5.2.5: at least one address. Exact length, not "at least": the IP layer hands
    # us exactly the IP payload, and trailing bytes would leave the checksum's extent ambiguous.
    expected = HEADER_LEN + count * address_len + (AUTH_DATA_LEN if version == 2 else 0)
    if count == 0:
        raise PacketError(DropReason.BAD_LENGTH, "address count 0 (minimum is 1)")
    if len(data) != expected:
        raise PacketError(
            DropReason.BAD_LENGTH,
            f"{len(data)} bytes, {count} IPv{family} addresses make {expected}",
        )

    if _ones_complement_sum(_checksum_input(version, data, src, dst)) != 0xFFFF:
        (received,) = struct.unpack_from("!H", data, 6)
        recomputed = _checksum(version, data[:6] + b"\x00\x00" + data[8:], src, dst)
        raise PacketError(
            DropReason.BAD_CHECKSUM, f"checksum {received:#06x}, expected {recomputed:#06x}"
        )

    if vrid == 0:
        raise PacketError(DropReason.BAD_VRID, "VRID 0 is not a valid virtual router (1..255)")

    raw = data[HEADER_LEN : HEADER_LEN + count * address_len]
    addresses: tuple[IPAddress, ...]
    if family == 4:
        addresses = tuple(IPv4Address(raw[i : i + 4]) for i in range(0, len(raw), 4))
    else:
        # RFC 5798 §5.2.9 wants an IPv6 link-local VIP first; keepalived does not send one
        # (see tests/fixtures/keepalived/vrrp_v3_ipv6.json), so it is not required here.
        addresses = tuple(IPv6Address(raw[i : i + 16]) for i in range(0, len(raw), 16))

    if version == 2:
        auth_byte, seconds = data[4], data[5]
        try:
            auth_type = AuthType(auth_byte)
        except ValueError:
            raise PacketError(DropReason.BAD_AUTH_TYPE, f"auth type {auth_byte}") from None
        if auth_type == AuthType.AH:
            # Real AH (RFC 2402) wraps the message in IP protocol 51; a protocol-112 packet
            # claiming it carries nothing we could verify, and we never send one.
            raise PacketError(DropReason.BAD_AUTH_TYPE, "auth type 2 (IP Authentication Header)")
        max_advert_int = seconds * 100
        # RFC 3768 §5.3.10: with no authentication the field is ignored on receipt.
        auth_data = data[-AUTH_DATA_LEN:] if auth_type != AuthType.NONE else b""
    else:
        # The top 4 bits are reserved: RFC 5798 §5.2.6 says ignore them on receipt, and
        # keepalived masks them off too, so a future use of them does not break us.
        (word,) = struct.unpack_from("!H", data, 4)
        max_advert_int = word & V3_MAX_ADVERT_INT
        auth_type, auth_data = AuthType.NONE, b""
    if max_advert_int == 0:
        # A master that advertises every 0 s would make our Master_Down_Interval Skew_Time
        # alone (RFC 5798 §6.1): we would preempt it within a second of each advert.
        raise PacketError(DropReason.BAD_INTERVAL, "advertisement interval 0")

    return Advertisement(
        version=version,
        vrid=vrid,
        priority=priority,
        max_advert_int=max_advert_int,
        addresses=addresses,
        auth_type=auth_type,
        auth_data=auth_data,
    )


# ---- per-instance checks --------------------------------------------------------------------


def check_delivery(
    dst: IPAddress,
    ttl: int,
    *,
    unicast: bool,
    min_ttl: int | None = None,
    max_ttl: int | None = None,
) -> None:
    """Judge how an advert arrived: to the group or to us, and with which TTL / Hop Limit.

    keepalived's rules, which are RFC 5798's for multicast: an instance in multicast mode
    takes only adverts sent to the group, and those with TTL / Hop Limit 255 only (§5.1.1.3,
    §5.1.2.3, §7.1: anything less may have crossed a router). An instance with unicast peers
    takes only adverts sent to it, and checks their TTL only against the `min_ttl` /
    `max_ttl` it configures: a unicast peer may be routed, and keepalived sends IPv6 unicast
    adverts with the kernel's default hop limit (64) unless `unicast_ttl` is set. Raises
    PacketError.
    """
    if dst.is_multicast == unicast:
        expected, got = ("unicast", "multicast") if unicast else ("multicast", "unicast")
        raise PacketError(
            DropReason.BAD_DESTINATION, f"{got} advert to {dst} for a {expected} instance"
        )
    if not unicast:
        if ttl != VRRP_TTL:
            raise PacketError(DropReason.BAD_TTL, f"ttl {ttl}, must be {VRRP_TTL}")
        return
    low = 0 if min_ttl is None else min_ttl
    high = VRRP_TTL if max_ttl is None else max_ttl
    if not low <= ttl <= high:
        raise PacketError(DropReason.BAD_TTL, f"ttl {ttl}, must be {low}..{high}")


def check_for_instance(adv: Advertisement, params: InstanceParams) -> None:
    """The RFC 5798 §7.1 / RFC 3768 §7.1 checks that need the instance's configuration.

    Raises PacketError; an address-list mismatch is not a drop (see `addresses_match`).
    """
    # Not checked: "the local router is not the address owner" (RFC 5798 §7.1). RFC 9568
    # errata 8298 (verified) withdrew that drop: two owners that ignore each other both stay
    # Master forever; processing the advert lets §6.4.3's tie-break settle it.
    if adv.vrid != params.vrid:
        # Normal on a shared segment: another virtual router's adverts reach our socket.
        raise PacketError(DropReason.BAD_VRID, f"vrid {adv.vrid}, ours is {params.vrid}")
    if adv.version != params.version:
        raise PacketError(
            DropReason.VERSION_MISMATCH,
            f"VRRPv{adv.version} advert for a VRRPv{params.version} instance",
        )
    if adv.addresses and adv.addresses[0].version != params.primary_address.version:
        raise PacketError(
            DropReason.BAD_ADDRESS_FAMILY,
            f"IPv{adv.addresses[0].version} advert for an "
            f"IPv{params.primary_address.version} instance",
        )
    if adv.version != 2:
        # RFC 5798 §6.4.2: a v3 backup learns the master's interval instead of checking it.
        return
    if adv.auth_type != params.auth_type or adv.auth_type == AuthType.AH:
        raise PacketError(
            DropReason.BAD_AUTH_TYPE,
            f"auth type {adv.auth_type.name}, ours is {params.auth_type.name}",
        )
    # Constant-time comparison: the password is a (weak) secret; do not leak its prefix.
    if adv.auth_type == AuthType.SIMPLE and not hmac.compare_digest(
        pad_auth_data(adv.auth_data), pad_auth_data(params.auth_data)
    ):
        raise PacketError(DropReason.BAD_AUTH, "authentication data differs")
    # RFC 3768 §7.1: a v2 advert with another Adver Int MUST be discarded (keepalived too).
    if adv.max_advert_int != params.advert_int:
        raise PacketError(
            DropReason.BAD_INTERVAL,
            f"advert interval {adv.max_advert_int} cs, ours is {params.advert_int} cs",
        )


def addresses_match(adv: Advertisement, params: InstanceParams) -> bool:
    """Whether the advert lists exactly the addresses ours carry (any order, as keepalived).

    RFC 5798 §7.1 makes this check a MAY whose failure is logged, not a drop (RFC 3768 §7.1
    also dropped non-owner v2 adverts on a mismatch; keepalived logs and counts, and so does
    hacontrol), so it is a separate question for the adapter to log and count.
    """
    return same_addresses(adv.addresses, params.advert_addresses)


def same_addresses(received: tuple[IPAddress, ...], ours: tuple[IPAddress, ...]) -> bool:
    """`addresses_match` on the two address lists: equal as multisets (any order)."""
    # The same order is the usual case (both sides list the VIPs as configured): one tuple
    # comparison, and the two counters only when it fails.
    return received == ours or Counter(received) == Counter(ours)


# keepalived counts an Ethernet header against the interface's (IP) MTU when it sizes an
# advert; we count it too, so that both sides carry, and expect, the same addresses.
_LINK_HEADER_LEN = 14


def max_advert_addresses(version: int, family: int, mtu: int) -> int:
    """How many addresses an advert carries on an interface with this MTU, as keepalived.

    keepalived 2.2.7 sizes adverts as (MTU - 14 - IP header - 8 [- 8 v2 authentication]) //
    address size, at most 255, and moves the VIPs beyond that to its excluded VIPs with a
    warning (measured: 89 IPv6 addresses at MTU 1500, 76 at 1280; 239 IPv4 at 1000 for v3,
    237 for v2). It also drops a received advert whose address count differs from its own,
    so a peer must advertise exactly the same number. At least 1: RFC 5798 §5.2.5.
    """
    ip_header, address_len = (20, 4) if family == 4 else (40, 16)
    room = mtu - _LINK_HEADER_LEN - ip_header - HEADER_LEN - (AUTH_DATA_LEN if version == 2 else 0)
    return max(1, min(MAX_ADDRESSES, room // address_len))
