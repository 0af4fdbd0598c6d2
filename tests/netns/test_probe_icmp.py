"""PING_CHECK probe: echo to loopback over a raw socket (root) or a ping socket, and failures."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from healthcheck.config import IcmpCheck
from healthcheck.probes import ProbeTarget, run_probe
from healthcheck.probes.icmp import build_echo, checksum, parse_icmp, quoted_echo
from tests.netns.netns_util import Lab, Netns
from tests.netns.netns_util import require_root as require_root_and_tools
from tests.netns.probe_servers import probe_in_netns
from tests.support import require_root


async def test_echo_to_127_0_0_1() -> None:
    require_root()
    result = await run_probe(IcmpCheck(), ProbeTarget(IPv4Address("127.0.0.1"), 0))
    assert (result.ok, result.reason) == (True, "ok")


async def test_echo_to_ipv6_loopback() -> None:
    require_root()
    result = await run_probe(IcmpCheck(), ProbeTarget(IPv6Address("::1"), 0))
    assert (result.ok, result.reason) == (True, "ok")


async def test_connect_ip_overrides_target() -> None:
    require_root()
    check = IcmpCheck(connect_ip=IPv4Address("127.0.0.1"), bind_ip=IPv4Address("127.0.0.1"))
    result = await run_probe(check, ProbeTarget(IPv4Address("192.0.2.1"), 0))
    assert result.ok


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root_and_tools("setpriv")
    with Lab("hc") as lab:
        yield lab


def test_ping_socket_without_cap_net_raw(lab: Lab) -> None:
    ns = lab.netns("ping")
    check: dict[str, object] = {"type": "icmp"}
    # No CAP_NET_RAW and the default ping_group_range "1 0": no way to send an echo.
    denied = probe_in(lab, ns, check)
    assert denied == {"ok": False, "reason": "icmp_not_permitted", "weight": None}
    # Group 0 allowed to use ping sockets (a per-namespace sysctl): the datagram path works.
    ns.run("sysctl", "-qw", "net.ipv4.ping_group_range=0 0")
    assert probe_in(lab, ns, check) == {"ok": True, "reason": "ok", "weight": None}


def test_unroutable_destination(lab: Lab) -> None:
    ns = lab.netns("unr")
    ns.ip("route", "add", "unreachable", "192.0.2.0/24")
    result = probe_in(lab, ns, {"type": "icmp", "connect_timeout": 1}, "192.0.2.1", caps=True)
    assert result == {"ok": False, "reason": "host_unreachable", "weight": None}


def test_no_reply_times_out(lab: Lab) -> None:
    ns = lab.netns("quiet")
    # The namespace's kernel stops answering echo requests (a per-namespace sysctl).
    ns.run("sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
    check: dict[str, object] = {"type": "icmp", "connect_timeout": 0.3}
    result = probe_in(lab, ns, check, caps=True)
    assert result == {"ok": False, "reason": "timeout", "weight": None}


def probe_in(
    lab: Lab, ns: Netns, check: dict[str, object], address: str = "127.0.0.1", caps: bool = False
) -> dict[str, object]:
    drop = () if caps else ("net_raw", "net_admin")
    return probe_in_netns(lab, ns, check, address, drop_caps=drop)


def test_checksum_of_an_echo_is_valid() -> None:
    packet = build_echo(4, 0x1234, 7, b"hello")
    assert checksum(packet) == 0
    echo = parse_icmp(packet)
    assert echo is not None
    assert (echo.icmp_type, echo.ident, echo.seq, echo.data) == (8, 0x1234, 7, b"hello")


def test_quoted_echo_in_a_destination_unreachable() -> None:
    request = build_echo(4, 0xBEEF, 9, b"x" * 8)
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 1, 0, bytes(4), bytes(4))
    quoted = quoted_echo(4, ip_header + request[:8])
    assert quoted is not None and (quoted.ident, quoted.seq) == (0xBEEF, 9)
    assert quoted_echo(6, bytes(40) + request[:8]) is not None
    assert parse_icmp(b"\x00") is None
