"""The ipvsadm -Ln layouts, compared with real ipvsadm 1.31 output captured in the VM.

tests/fixtures/ipvs/ipvsadm_Ln*.txt were printed by ipvsadm itself for a table made with ipvsadm
(see the README there); here the same table, as model values, must print identically.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from socket import AF_INET6

import pytest

from hacontrol.ipvs.listing import Layout, ListOptions, format_table, largenum, to_json, tunnel_info
from hacontrol.ipvs.model import (
    ForwardingMethod,
    RealServer,
    ServiceKey,
    Table,
    TunnelFlags,
    TunnelType,
    VirtualService,
)
from hacontrol.ipvs.netlink import DestCounters, Info, Snapshot, Stats

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ipvs"
INFO = Info(version="1.2.1", conn_tab_size=4096)


def rs(addr: str, port: int | None = None, **kw: object) -> RealServer:
    return RealServer(ipaddress.ip_address(addr), port, **kw)  # type: ignore[arg-type]


# The table the captured outputs show (made with ipvsadm -A/-a in the VM).
CAPTURED = Table.of(
    [
        VirtualService(
            ServiceKey.of("tcp", "192.0.2.1", 80),
            scheduler="rr",
            real_servers=(
                rs(
                    "198.51.100.1",
                    8080,
                    forwarding=ForwardingMethod.NAT,
                    weight=3,
                    upper_threshold=100,
                    lower_threshold=10,
                ),
                rs("198.51.100.2", 80, forwarding=ForwardingMethod.DR, weight=0),
                rs("198.51.100.3", 80, forwarding=ForwardingMethod.TUN, weight=2),
            ),
        ),
        VirtualService(
            ServiceKey.of("udp", "192.0.2.1", 53),
            scheduler="sh",
            sched_flags=frozenset({"sh-port", "sh-fallback"}),
            one_packet=True,
        ),
        VirtualService(
            ServiceKey.of("udp", "192.0.2.2", 53),
            scheduler="mh",
            sched_flags=frozenset({"mh-port"}),
            persistence_timeout=60,
            persistence_netmask=24,
        ),
        VirtualService(
            ServiceKey.of("tcp", "192.0.2.3", 443), scheduler="wlc", persistence_timeout=360
        ),
        VirtualService(ServiceKey.of("sctp", "192.0.2.4", 5000), scheduler="lc"),
        VirtualService(
            ServiceKey.of_fwmark(7),
            scheduler="wrr",
            real_servers=(rs("198.51.100.9", 0, forwarding=ForwardingMethod.DR),),
        ),
        VirtualService(
            ServiceKey.of_fwmark(8, AF_INET6),
            scheduler="rr",
            persistence_timeout=100,
            persistence_netmask=64,
        ),
        VirtualService(
            ServiceKey.of("udp", "192.0.2.9", 5060),
            scheduler="rr",
            persistence_timeout=60,
            persistence_engine="sip",
        ),
        VirtualService(ServiceKey.of("tcp", "192.0.2.10", 80), scheduler="fo"),
        VirtualService(ServiceKey.of("tcp", "192.0.2.10", 81), scheduler="ovf"),
        VirtualService(ServiceKey.of("tcp", "192.0.2.10", 82), scheduler="lblc"),
        VirtualService(
            ServiceKey.of("tcp", "192.0.2.10", 84),
            scheduler="rr",
            sched_flags=frozenset({"flag-3"}),
        ),
    ]
)
SNAPSHOT = Snapshot(CAPTURED, {}, {})


@pytest.mark.parametrize(
    ("layout", "fixture"),
    [
        (Layout.DEFAULT, "ipvsadm_Ln.txt"),
        (Layout.RATE, "ipvsadm_Ln_rate.txt"),
        (Layout.PERSISTENT_CONN, "ipvsadm_Ln_persistent_conn.txt"),
        (Layout.THRESHOLDS, "ipvsadm_Ln_thresholds.txt"),
        (Layout.TUN_INFO, "ipvsadm_Ln_tun_info.txt"),
    ],
)
def test_layouts_match_real_ipvsadm_output(layout: Layout, fixture: str) -> None:
    expected = (FIXTURES / fixture).read_text()
    assert format_table(SNAPSHOT, INFO, ListOptions(layout=layout)) == expected


def test_largenum_like_ipvsadm() -> None:
    assert largenum(0, False) == "        0"
    assert largenum(99_999_999, False) == " 99999999"
    assert largenum(123_456_789, False) == "  123456K"
    assert largenum(12_345_678_901, False) == "   12345M"
    assert largenum(1_234_567_890_123, False) == "    1234G"
    assert largenum(123_456_789_012_345, False) == "     123T"
    assert largenum(123_456_789, True) == " 123456789"


def test_stats_layout_and_counters() -> None:
    key = ServiceKey.of("tcp", "192.0.2.1", 80)
    svc = CAPTURED.get(key)
    assert svc is not None
    dest = svc.real_servers[0]
    snap = Snapshot(
        Table.of([svc]),
        {key: Stats(conns=12, inpkts=345, outpkts=0, inbytes=2_000_000_000, outbytes=7)},
        {
            (key, dest.key): DestCounters(
                active_conns=4, inact_conns=5, persist_conns=6, stats=Stats(conns=12)
            )
        },
    )
    text = format_table(snap, INFO, ListOptions(layout=Layout.STATS))
    lines = text.splitlines()
    assert (
        lines[1] == "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    )
    assert (
        lines[3] == "TCP  192.0.2.1:80                       12      345        0    2000M        7"
    )
    assert lines[4].startswith("  -> 198.51.100.1:8080                  12")
    default = format_table(snap, INFO).splitlines()
    assert default[4] == "  -> 198.51.100.1:8080            Masq    3      4          5         "
    only = format_table(snap, INFO, ListOptions(service=key)).splitlines()
    assert only[0] == "Prot LocalAddress:Port Scheduler Flags"
    data = to_json(snap, INFO)
    entry = data["services"][0]
    assert entry["protocol"] == "TCP" and entry["port"] == 80
    assert entry["stats"]["inbytes"] == 2_000_000_000
    assert entry["real_servers"][0]["active_conns"] == 4
    assert entry["real_servers"][0]["persist_conns"] == 6
    assert entry["real_servers"][0]["forwarding"] == "masq"


def test_tunnel_info_column_like_ipvsadm() -> None:
    # As ipvsadm -Ln --tun-info printed them in the VM.
    tun = ForwardingMethod.TUN
    cases = [
        (rs("198.51.100.5", 80, forwarding=tun), "ipip"),
        (
            rs("198.51.100.6", 80, forwarding=tun, tunnel_type=TunnelType.GUE, tunnel_port=6080),
            "gue:6080:-c",
        ),
        (
            rs(
                "198.51.100.7",
                80,
                forwarding=tun,
                tunnel_type=TunnelType.GUE,
                tunnel_port=6081,
                tunnel_flags=TunnelFlags.CSUM,
            ),
            "gue:6081:+c",
        ),
        (
            rs(
                "198.51.100.8",
                80,
                forwarding=tun,
                tunnel_type=TunnelType.GUE,
                tunnel_port=6082,
                tunnel_flags=TunnelFlags.REMCSUM,
            ),
            "gue:6082:r+c",
        ),
        (
            rs(
                "198.51.100.11",
                80,
                forwarding=tun,
                tunnel_type=TunnelType.GRE,
                tunnel_flags=TunnelFlags.CSUM,
            ),
            "gre:+c",
        ),
        (rs("198.51.100.12", 80, forwarding=tun, tunnel_type=TunnelType.GRE), "gre:-c"),
        (rs("198.51.100.13", 80, forwarding=ForwardingMethod.NAT), "n/a"),
    ]
    for server, text in cases:
        assert tunnel_info(server) == text
