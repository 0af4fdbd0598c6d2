"""Our route-netlink decoding (vrrp/rtnl.py) on hand-built bytes: links, addresses and
events as the adapter's values, the multipart dump protocol, and bad input skipped, never
raised. tests/netns/test_rtnl.py compares the same decoding with pyroute2's on a kernel."""

from __future__ import annotations

import errno
import random
import struct
import subprocess
import sys
from ipaddress import ip_interface
from pathlib import Path

import pytest

from vrrp.addrbatch import AddressChange, encode
from vrrp.rtnl import (
    IFF_RUNNING,
    IFF_UP,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    AddressAdded,
    AddressRemoved,
    DumpReader,
    Link,
    LinkAddress,
    LinkChanged,
    LinkRemoved,
    attributes,
    decode_address,
    decode_event,
    decode_link,
    dump_request,
    link_request,
    split_messages,
)

ROOT = Path(__file__).resolve().parents[2]
MAC = bytes.fromhex("00005e000142")


def nla(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def ifinfo(index: int, flags: int, *attrs: bytes) -> bytes:
    return struct.pack("=BxHiII", 0, 1, index, flags, 0) + b"".join(attrs)


def ifaddr(family: int, prefixlen: int, flags: int, index: int, *attrs: bytes) -> bytes:
    return struct.pack("=BBBBI", family, prefixlen, flags, 0, index) + b"".join(attrs)


def message(kind: int, payload: bytes, sequence: int = 0, flags: int = 0) -> bytes:
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, kind, flags, sequence, 0) + payload + b"\0" * (-length % 4)


def error(code: int, sequence: int) -> bytes:
    return message(NLMSG_ERROR, struct.pack("=i", -code) + b"\0" * 16, sequence)


def macvlan(index: int = 9, mode: int = 1, lower: int = 2) -> bytes:
    data = nla(1, u32(mode))  # IFLA_MACVLAN_MODE
    info = nla(1, b"macvlan\0") + nla(2 | 0x8000, data)  # KIND, DATA (NLA_F_NESTED)
    return ifinfo(
        index,
        IFF_UP | IFF_RUNNING,
        nla(3, b"vrrp.42\0"),  # IFLA_IFNAME
        nla(1, MAC),  # IFLA_ADDRESS
        nla(4, u32(9000)),  # IFLA_MTU
        nla(5, u32(lower)),  # IFLA_LINK
        nla(18 | 0x8000, info),  # IFLA_LINKINFO
    )


def test_a_private_macvlan_is_read_whole() -> None:
    assert decode_link(macvlan()) == Link(
        ifindex=9,
        ifname="vrrp.42",
        mac=MAC,
        up=True,
        mtu=9000,
        kind="macvlan",
        lower=2,
        macvlan_mode="private",
    )


def test_a_plain_device_takes_the_defaults() -> None:
    # No MTU, no link info, IFLA_LINK 0 (a veth in another namespace reports its peer's
    # index; 0 is "none"), no hardware address (a tunnel or loopback-like device).
    payload = ifinfo(3, IFF_UP, nla(3, b"eth0\0"), nla(5, u32(0)))
    assert decode_link(payload) == Link(3, "eth0", b"\0" * 6, up=False)


@pytest.mark.parametrize(
    ("flags", "up"),
    [(IFF_UP | IFF_RUNNING, True), (IFF_UP, False), (IFF_RUNNING, False), (0, False)],
)
def test_up_means_administratively_up_and_carrier(flags: int, up: bool) -> None:
    link = decode_link(ifinfo(1, flags, nla(3, b"eth0\0")))
    assert link is not None and link.up is up


def test_macvlan_modes_by_name_and_an_unknown_one_by_number() -> None:
    modes = {m: decode_link(macvlan(mode=m)) for m in (2, 4, 8, 16, 32)}
    assert {m: link.macvlan_mode for m, link in modes.items() if link} == {
        2: "vepa",
        4: "bridge",
        8: "passthru",
        16: "source",
        32: "32",
    }


def test_a_mode_is_only_read_for_a_macvlan() -> None:
    info = nla(1, b"veth\0") + nla(2, nla(1, u32(1)))
    link = decode_link(ifinfo(4, 0, nla(3, b"v0\0"), nla(18, info)))
    assert link is not None and (link.kind, link.macvlan_mode) == ("veth", "")


def test_a_link_without_a_name_is_skipped() -> None:
    assert decode_link(ifinfo(5, 0, nla(4, u32(1500)))) is None
    assert decode_link(ifinfo(5, 0, nla(3, b"\0"))) is None


def test_the_first_of_a_repeated_attribute_counts() -> None:
    link = decode_link(ifinfo(6, 0, nla(3, b"first\0"), nla(3, b"second\0")))
    assert link is not None and link.ifname == "first"


def test_ipv4_reads_ifa_local_not_the_peer() -> None:
    payload = ifaddr(
        2,
        32,
        0x80,  # IFA_F_PERMANENT
        7,
        nla(1, bytes([192, 0, 2, 9])),  # IFA_ADDRESS: the peer of a point-to-point link
        nla(2, bytes([192, 0, 2, 1])),  # IFA_LOCAL
        nla(3, b"eth0:1\0"),
    )
    assert decode_address(payload) == LinkAddress(7, ip_interface("192.0.2.1/32"), 0x80)


def test_ipv6_has_only_ifa_address_and_ifa_flags_wins_over_the_header() -> None:
    address = ip_interface("2001:db8::5/64")
    payload = ifaddr(10, 64, 0x40, 3, nla(1, address.ip.packed), nla(8, u32(0x240)))
    found = decode_address(payload)
    assert found == LinkAddress(3, address, 0x240)
    assert found is not None and not found.usable  # tentative
    plain = decode_address(ifaddr(10, 64, 0x01, 3, nla(1, address.ip.packed)))
    assert plain is not None and plain.flags == 0x01 and plain.secondary


@pytest.mark.parametrize(
    "payload",
    [
        ifaddr(2, 33, 0, 1, nla(2, bytes(4))),  # a prefix length past 32 bits
        ifaddr(2, 24, 0, 1, nla(2, bytes(5))),  # an address of no family
        ifaddr(2, 24, 0, 1, nla(3, b"eth0\0")),  # no address at all
        ifaddr(2, 24, 0, 1)[:7],  # shorter than ifaddrmsg
    ],
)
def test_an_address_message_without_a_usable_address_is_skipped(payload: bytes) -> None:
    assert decode_address(payload) is None


def test_events_by_message_type() -> None:
    v4 = ifaddr(2, 24, 0, 2, nla(2, bytes([192, 0, 2, 1])))
    entry = LinkAddress(2, ip_interface("192.0.2.1/24"))
    link = decode_link(macvlan())
    assert link is not None
    assert decode_event(RTM_NEWLINK, macvlan()) == LinkChanged(link)
    assert decode_event(RTM_DELLINK, macvlan()) == LinkRemoved(9, "vrrp.42")
    assert decode_event(RTM_DELLINK, ifinfo(9, 0)) == LinkRemoved(9, "")
    assert decode_event(RTM_NEWADDR, v4) == AddressAdded(entry)
    assert decode_event(RTM_DELADDR, v4) == AddressRemoved(entry)
    assert decode_event(24, v4) is None  # RTM_NEWROUTE: not followed
    assert decode_event(RTM_NEWLINK, ifinfo(9, 0)) is None  # nameless
    assert decode_event(RTM_DELLINK, b"\0" * 4) is None


def test_split_messages_walks_padding_and_stops_at_a_truncated_one() -> None:
    first = message(RTM_NEWLINK, b"\1\2\3", sequence=5)  # 19 bytes, padded to 20
    second = message(RTM_NEWADDR, b"\4" * 8, sequence=6, flags=NLM_F_MULTI)
    data = first + second + message(RTM_NEWLINK, b"\5" * 40)[:30]
    found = list(split_messages(data))
    assert [(m.kind, m.flags, m.sequence, m.payload) for m in found] == [
        (RTM_NEWLINK, 0, 5, b"\1\2\3"),
        (RTM_NEWADDR, NLM_F_MULTI, 6, b"\4" * 8),
    ]


def test_an_impossible_length_ends_the_read() -> None:
    bad = struct.pack("=IHHII", 8, RTM_NEWLINK, 0, 0, 0)  # shorter than its own header
    assert list(split_messages(bad + message(RTM_NEWLINK, b""))) == []
    assert list(split_messages(b"")) == []
    assert list(split_messages(b"\xff" * 15)) == []


def test_an_attribute_with_a_bad_length_ends_the_attributes() -> None:
    good = nla(3, b"eth0\0")
    assert attributes(good + struct.pack("=HH", 2, 4) + nla(4, u32(1))) == {3: b"eth0\0"}
    assert attributes(good + struct.pack("=HH", 200, 4) + b"\0" * 8) == {3: b"eth0\0"}
    assert attributes(nla(18 | 0x8000, b"")) == {18: b""}  # NLA_F_NESTED masked off


def test_every_truncation_and_random_garbage_decode_without_raising() -> None:
    samples = [
        macvlan(),
        ifaddr(10, 64, 0, 3, nla(1, bytes(16)), nla(8, u32(2))),
        ifaddr(2, 24, 0, 3, nla(2, bytes(4)), nla(3, b"x\0")),
    ]
    rng = random.Random(15)
    for payload in samples:
        cases = [payload[:n] for n in range(len(payload))]
        for _ in range(300):
            mutated = bytearray(payload)
            for _flip in range(rng.randint(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cases.append(bytes(mutated))
        cases.extend(rng.randbytes(rng.randint(0, 200)) for _ in range(300))
        for case in cases:
            for kind in (RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR):
                decode_event(kind, case)  # anything but an exception
            for m in split_messages(message(RTM_NEWLINK, case) + case):
                decode_event(m.kind, m.payload)


def test_a_dump_collects_its_parts_until_done() -> None:
    reader = DumpReader(7, RTM_NEWLINK)
    reader.feed(message(RTM_NEWLINK, b"a", 7, NLM_F_MULTI) + message(RTM_NEWLINK, b"b", 6))
    reader.feed(message(RTM_NEWADDR, b"c", 7, NLM_F_MULTI))  # not what was asked: skipped
    assert not reader.done
    reader.feed(message(RTM_NEWLINK, b"d", 7, NLM_F_MULTI) + message(NLMSG_DONE, u32(0), 7))
    reader.feed(message(RTM_NEWLINK, b"late", 7, NLM_F_MULTI))
    assert reader.done and reader.error == 0 and not reader.interrupted
    assert reader.payloads == [b"a", b"d"]


def test_a_dump_the_kernel_refuses_or_marks_inconsistent() -> None:
    refused = DumpReader(3, RTM_NEWADDR)
    refused.feed(error(errno.EBUSY, 3))
    assert refused.done and refused.error == errno.EBUSY
    interrupted = DumpReader(4, RTM_NEWADDR)
    interrupted.feed(message(RTM_NEWADDR, b"x", 4, NLM_F_MULTI | NLM_F_DUMP_INTR))
    interrupted.feed(message(NLMSG_DONE, u32(0), 4, NLM_F_MULTI | NLM_F_DUMP_INTR))
    assert interrupted.done and interrupted.interrupted
    short = DumpReader(5, RTM_NEWADDR)
    short.feed(message(NLMSG_ERROR, b"\0\0", 5))  # too short to carry an errno
    assert short.done and short.error == errno.EPROTO


def test_a_single_get_ends_with_its_reply_or_its_error() -> None:
    found = DumpReader(9, RTM_NEWLINK, multipart=False)
    found.feed(message(RTM_NEWLINK, macvlan(), 9))
    assert found.done and found.payloads == [macvlan()]
    gone = DumpReader(10, RTM_NEWLINK, multipart=False)
    gone.feed(error(errno.ENODEV, 9) + error(errno.ENODEV, 10))
    assert gone.done and gone.error == errno.ENODEV and gone.payloads == []


def test_requests_are_what_ip_link_and_ip_addr_send() -> None:
    (dump,) = split_messages(dump_request(RTM_GETLINK, 11))
    assert (dump.kind, dump.flags, dump.sequence) == (RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 11)
    assert dump.payload == bytes(16)  # ifinfomsg, every family
    (addr,) = split_messages(dump_request(RTM_GETADDR, 12))
    assert (addr.kind, addr.payload) == (RTM_GETADDR, bytes(8))
    (get,) = split_messages(link_request(42, 13))
    assert (get.kind, get.flags, get.sequence) == (RTM_GETLINK, NLM_F_REQUEST, 13)
    assert struct.unpack_from("=i", get.payload, 4) == (42,)


def test_a_deprecated_address_has_preferred_lifetime_zero() -> None:
    change = AddressChange(True, 4, ip_interface("fe80::1/64"), deprecated=True)
    (request,) = split_messages(encode(change, 1))
    cacheinfo = attributes(request.payload, 8)[6]  # IFA_CACHEINFO
    assert struct.unpack("=IIII", cacheinfo) == (0, 0xFFFFFFFF, 0, 0)
    (plain,) = split_messages(encode(AddressChange(True, 4, ip_interface("fe80::1/64")), 1))
    assert 6 not in attributes(plain.payload, 8)


def test_the_vrrp_process_does_not_import_pyroute2() -> None:
    # Its own interpreter: this test process has pyroute2 loaded by other tests. The VRRP
    # process imports its module, sets up logging and builds its engine before any config
    # arrives; none of that may load pyroute2 (its cost: vrrp/rtnl.py).
    code = (
        "import sys\n"
        "from hacontrol.runtime import vrrp_process\n"
        "from hacontrol.logsetup import setup_logging\n"
        "setup_logging('debug')\n"
        "vrrp_process.VrrpEngine(publish=print)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyroute2'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
    # The check can fail: vrrp.addresses loads pyroute2 when routes or VMACs ask for it.
    lazy = code.replace(
        "print(sorted", "import vrrp.addresses\nvrrp.addresses._pyroute2()\nprint(sorted"
    )
    out = subprocess.run(
        [sys.executable, "-c", lazy], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "'pyroute2'" in out.stdout
