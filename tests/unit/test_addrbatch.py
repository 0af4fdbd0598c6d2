"""The batched VIP requests (vrrp/addrbatch.py): bytes pyroute2 reads back as iproute2's
requests, acknowledgements matched by sequence, and keepalived's idempotence."""

from __future__ import annotations

import errno
import struct
from ipaddress import ip_interface

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

from vrrp.addrbatch import (
    IFA_F_NODAD,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    RTM_DELADDR,
    RTM_NEWADDR,
    AddressChange,
    encode,
    encode_batch,
    outcome,
    parse_acks,
)


def decoded(data: bytes) -> ifaddrmsg:
    msg = ifaddrmsg()
    msg.data = data
    msg.decode()
    return msg


def test_an_ipv4_add_carries_what_ip_addr_add_sends() -> None:
    change = AddressChange(
        True,
        7,
        ip_interface("192.0.2.10/24"),
        label="eth0:1",
        scope="link",
        broadcast=ip_interface("192.0.2.255/24").ip,
    )
    msg = decoded(encode(change, 41))
    assert msg["header"]["type"] == RTM_NEWADDR
    assert msg["header"]["flags"] == NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    assert msg["header"]["sequence_number"] == 41
    assert msg["header"]["length"] == len(encode(change, 41))
    assert (msg["family"], msg["prefixlen"], msg["index"], msg["scope"]) == (2, 24, 7, 253)
    assert msg["flags"] == 0
    assert msg.get_attr("IFA_LOCAL") == msg.get_attr("IFA_ADDRESS") == "192.0.2.10"
    assert msg.get_attr("IFA_LABEL") == "eth0:1"
    assert msg.get_attr("IFA_BROADCAST") == "192.0.2.255"


def test_an_ipv6_add_skips_dad_and_has_no_label() -> None:
    msg = decoded(encode(AddressChange(True, 3, ip_interface("2001:db8::5/64"), "x"), 1))
    assert (msg["family"], msg["prefixlen"], msg["flags"]) == (10, 64, IFA_F_NODAD)
    assert msg.get_attr("IFA_ADDRESS") == "2001:db8::5"
    assert msg.get_attr("IFA_LABEL") is None


def test_a_removal_names_the_address_only() -> None:
    change = AddressChange(False, 3, ip_interface("192.0.2.10/24"), label="eth0:1")
    msg = decoded(encode(change, 9))
    assert msg["header"]["type"] == RTM_DELADDR
    assert msg["header"]["flags"] == NLM_F_REQUEST | NLM_F_ACK
    assert msg.get_attr("IFA_LOCAL") == "192.0.2.10"
    assert msg.get_attr("IFA_LABEL") is None


def test_a_batch_is_the_requests_back_to_back_numbered_in_order() -> None:
    changes = [AddressChange(True, 3, ip_interface(f"198.51.100.{n}/24")) for n in (1, 2, 3)]
    data = encode_batch(changes, 100)
    offset, seen = 0, []
    while offset < len(data):
        (length,) = struct.unpack_from("=I", data, offset)
        msg = decoded(data[offset : offset + length])
        seen.append((msg["header"]["sequence_number"], msg.get_attr("IFA_LOCAL")))
        offset += length
    assert seen == [(100, "198.51.100.1"), (101, "198.51.100.2"), (102, "198.51.100.3")]


def ack(sequence: int, code: int) -> bytes:
    # NLMSG_ERROR with NETLINK_CAP_ACK: the error and the request's header only.
    return struct.pack("=IHHII", 36, 2, 0x100, sequence, 0) + struct.pack("=i", code) + bytes(16)


def test_acknowledgements_are_read_by_sequence_and_garbage_is_skipped() -> None:
    other = struct.pack("=IHHII", 20, 3, 0, 8, 0) + bytes(4)  # NLMSG_DONE: not an answer
    data = ack(5, 0) + other + ack(6, -errno.EEXIST) + ack(7, -errno.ENODEV)[:20]
    assert list(parse_acks(data)) == [(5, 0), (6, errno.EEXIST)]
    assert list(parse_acks(b"\xff" * 10)) == []
    assert list(parse_acks(struct.pack("=IHHII", 4, 2, 0, 1, 0))) == []  # length too small


def test_outcomes_follow_keepalived_idempotence() -> None:
    add = AddressChange(True, 3, ip_interface("192.0.2.10/24"))
    remove = AddressChange(False, 3, ip_interface("192.0.2.10/24"))
    assert outcome(add, 0) is True
    assert outcome(add, errno.EEXIST) is False
    for code in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
        assert outcome(remove, code) is False
    refused = outcome(add, errno.ENODEV)
    assert isinstance(refused, OSError) and refused.errno == errno.ENODEV
    assert isinstance(outcome(remove, errno.EPERM), OSError)
