"""/proc/net/ip_vs_conn parsing and `ipvsadm -Lnc` formatting, from fixed sample text.

The samples were captured in the kernel-tier VM (Debian 6.1 kernel, ipvsadm 1.31):
the proc text and what `ipvsadm -Lnc` printed for the same entries.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from hacontrol.ipvs.conns import (
    Connection,
    ConnTableError,
    format_connections,
    parse_connections,
    read_connections,
)

PROC = (
    "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
    "TCP 2001:0db8:0000:0000:0000:0000:0000:0001 DC30 2001:0db8:0000:0000:0000:0000:0000:0001"
    " 0050 2001:0db8:0001:0000:0000:0000:0000:0002 1F90 SYN_RECV         59\n"
    "UDP C0000201 8390 C0000201 0035 C6336402 0035 UDP             299\n"
    "TCP C0000201 DDAE C0000201 0050 C6336402 1F90 SYN_RECV         59\n"
)

IPVSADM_LNC = (
    "IPVS connection entries\n"
    "pro expire state       source             virtual            destination\n"
    "TCP 00:59  SYN_RECV    [2001:db8::1]:56368 [2001:db8::1]:80   [2001:db8:1::2]:8080\n"
    "UDP 04:59  UDP         192.0.2.1:33680    192.0.2.1:53       198.51.100.2:53\n"
    "TCP 00:59  SYN_RECV    192.0.2.1:56750    192.0.2.1:80       198.51.100.2:8080\n"
)


def test_parse_sample() -> None:
    conns = parse_connections(PROC)
    assert conns == [
        Connection(
            "TCP",
            IPv6Address("2001:db8::1"),
            0xDC30,
            IPv6Address("2001:db8::1"),
            80,
            IPv6Address("2001:db8:1::2"),
            8080,
            "SYN_RECV",
            59,
        ),
        Connection(
            "UDP",
            IPv4Address("192.0.2.1"),
            33680,
            IPv4Address("192.0.2.1"),
            53,
            IPv4Address("198.51.100.2"),
            53,
            "UDP",
            299,
        ),
        Connection(
            "TCP",
            IPv4Address("192.0.2.1"),
            56750,
            IPv4Address("192.0.2.1"),
            80,
            IPv4Address("198.51.100.2"),
            8080,
            "SYN_RECV",
            59,
        ),
    ]


def test_format_like_ipvsadm_lnc() -> None:
    assert format_connections(parse_connections(PROC)) == IPVSADM_LNC


def test_empty_table() -> None:
    header_only = PROC.splitlines(keepends=True)[0]
    assert parse_connections(header_only) == []
    assert parse_connections("") == []
    assert format_connections([]) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination\n"
    )


def test_template_and_pe_data_and_mixed_family() -> None:
    text = (
        # An fwmark persistence template (protocol IP, state NONE, 15:48 left).
        "IP  C0A80006 0000 0000000A 0000 0A000011 0000 NONE            948\n"
        # A SIP persistence-engine entry carries " <pe name> <pe data>".
        "UDP CB007102 13C4 CB007164 13C4 C6336402 13C4 UDP             120 sip abc@192.0.2.9\n"
        # IPv4 service, IPv6 tunnel destination (the destination is printed as %pI6).
        "TCP CB007102 A000 CB007164 0050 2001:0db8:0000:0000:0000:0000:0000:00aa 0050"
        " ESTABLISHED    899\n"
    )
    template, sip, tunnel = parse_connections(text)
    assert template.protocol == "IP" and template.state == "NONE"
    assert template.virtual == IPv4Address("0.0.0.10") and template.expires == 948
    assert (sip.pe_name, sip.pe_data) == ("sip", "abc@192.0.2.9")
    assert tunnel.client == IPv4Address("203.0.113.2")
    assert tunnel.destination == IPv6Address("2001:db8::aa")
    assert format_connections([template, tunnel]).splitlines()[2:] == [
        "IP  15:48  NONE        192.168.0.6:0      0.0.0.10:0         10.0.0.17:0",
        "TCP 14:59  ESTABLISHED 203.0.113.2:40960  203.0.113.100:80   [2001:db8::aa]:80",
    ]


def test_persistent_format_shows_pe_columns() -> None:
    (sip,) = parse_connections(
        "UDP CB007102 13C4 CB007164 13C4 C6336402 13C4 UDP             120 sip abc@192.0.2.9\n"
    )
    assert format_connections([sip], persistent=True) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination       "
        " pe name          pe_data\n"
        # printf's "%-16s" does not cut the 17-character destination.
        "UDP 02:00  UDP         203.0.113.2:5060   203.0.113.100:5060 198.51.100.2:5060"
        " sip                abc@192.0.2.9\n"
    )


def test_long_expiry_widens_like_printf() -> None:
    conn = Connection(
        "TCP",
        IPv4Address("192.0.2.1"),
        1,
        IPv4Address("192.0.2.2"),
        2,
        IPv4Address("192.0.2.3"),
        3,
        "ESTABLISHED",
        7265,
    )
    assert format_connections([conn]).splitlines()[2] == (
        "TCP 121:05 ESTABLISHED 192.0.2.1:1        192.0.2.2:2        192.0.2.3:3"
    )


@pytest.mark.parametrize(
    "line",
    [
        "TCP C0000201 DDAE C0000201 0050 C6336402 1F90 SYN_RECV",  # too few fields
        "TCP C00002 DDAE C0000201 0050 C6336402 1F90 SYN_RECV 59",  # short address
        "TCP C0000201 DDAEE C0000201 0050 C6336402 1F90 SYN_RECV 59",  # 5-digit port
        "TCP C0000201 DDAE C0000201 0050 C6336402 1F90 SYN_RECV soon",  # bad expiry
        "TCP 2001:db8:::1 DDAE C0000201 0050 C6336402 1F90 SYN_RECV 59",  # bad IPv6
        "TCP C0000201 DDAE C0000201 0050 C6336402 1F90 SYN_RECV 59 sip",  # pe name, no data
    ],
)
def test_malformed_lines_are_typed_errors(line: str) -> None:
    with pytest.raises(ConnTableError) as err:
        parse_connections(PROC + line + "\n")
    assert err.value.line_no == 5


def test_read_connections_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ip_vs_conn"
    path.write_text(PROC)
    assert read_connections(path) == parse_connections(PROC)
    with pytest.raises(FileNotFoundError):
        read_connections(tmp_path / "missing")
