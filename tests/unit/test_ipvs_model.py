"""The IPVS model: construction, normalisation, and validation messages that name the object."""

from __future__ import annotations

import ipaddress
from socket import AF_INET, AF_INET6

import pytest

from hacontrol.ipvs.model import (
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    SVC_F_SCHED1,
    SVC_F_SCHED2,
    SVC_F_SCHED3,
    ForwardingMethod,
    InvalidTable,
    RealServer,
    ServiceKey,
    Table,
    TunnelFlags,
    TunnelType,
    VirtualService,
    sched_flag_bits,
    sched_flag_names,
)

TCP80 = ServiceKey.of("tcp", "192.0.2.1", 80)
DR = ForwardingMethod.DR
NAT = ForwardingMethod.NAT
TUN = ForwardingMethod.TUN


def rs(addr: str, port: int | None = None, **kw: object) -> RealServer:
    return RealServer(ipaddress.ip_address(addr), port, **kw)  # type: ignore[arg-type]


def errors_of(svc: VirtualService) -> list[str]:
    return Table.of([svc]).validate()


def test_service_keys_and_names() -> None:
    assert str(TCP80) == "TCP 192.0.2.1:80"
    assert str(ServiceKey.of("udp", "2001:db8::1", 53)) == "UDP [2001:db8::1]:53"
    assert str(ServiceKey.of_fwmark(7)) == "FWM 7"
    assert str(ServiceKey.of_fwmark(8, AF_INET6)) == "FWM 8 IPv6"
    assert ServiceKey.of("TCP", "192.0.2.1", 80) == TCP80
    assert ServiceKey.of(6, "192.0.2.1", 80) == TCP80
    assert TCP80.family == AF_INET and not TCP80.is_fwmark
    assert ServiceKey.of_fwmark(8, AF_INET6) != ServiceKey.of_fwmark(8, AF_INET)
    assert sorted([ServiceKey.of_fwmark(1), TCP80]) == [TCP80, ServiceKey.of_fwmark(1)]


def test_real_server_port_defaults_to_the_virtual_port() -> None:
    svc = VirtualService(TCP80, real_servers=(rs("198.51.100.1"),))
    assert svc.real_servers[0].port == 80
    fwm = VirtualService(ServiceKey.of_fwmark(3), real_servers=(rs("198.51.100.1"),))
    assert fwm.real_servers[0].port == 0
    assert RealServer(ipaddress.ip_address("198.51.100.1")).forwarding == DR  # ipvsadm's default


def test_a_valid_table_has_no_errors() -> None:
    table = Table.of(
        [
            VirtualService(
                TCP80,
                scheduler="sh",
                sched_flags=frozenset({"sh-port"}),
                persistence_timeout=300,
                persistence_netmask=24,
                real_servers=(rs("198.51.100.1", 8080, forwarding=NAT, weight=65535),),
            ),
            VirtualService(
                ServiceKey.of("tcp", "2001:db8::1", 80),
                persistence_timeout=60,
                persistence_netmask=64,
                persistence_engine="sip",
                real_servers=(
                    rs(
                        "198.51.100.2",
                        forwarding=TUN,
                        tunnel_type=TunnelType.GUE,
                        tunnel_port=6080,
                        tunnel_flags=TunnelFlags.REMCSUM,
                    ),
                ),
            ),
            VirtualService(ServiceKey.of("udp", "192.0.2.1", 53), one_packet=True),
            VirtualService(ServiceKey.of_fwmark(9), real_servers=(rs("198.51.100.3", 443),)),
        ]
    )
    assert table.validate() == []
    assert table.check() is table


@pytest.mark.parametrize(
    ("svc", "expected"),
    [
        (
            VirtualService(TCP80, scheduler="roundrobin"),
            "service TCP 192.0.2.1:80: unknown scheduler 'roundrobin'",
        ),
        (
            VirtualService(ServiceKey.of("tcp", "192.0.2.1", 0)),
            "service TCP 192.0.2.1:0: port 0 (all ports) on a service that is not persistent",
        ),
        (
            VirtualService(TCP80, real_servers=(rs("198.51.100.1", weight=70000),)),
            "real server 198.51.100.1:80 of service TCP 192.0.2.1:80: weight 70000 out of range "
            "0..65535",
        ),
        (
            VirtualService(TCP80, real_servers=(rs("198.51.100.1", weight=-1),)),
            "real server 198.51.100.1:80 of service TCP 192.0.2.1:80: weight -1 out of range",
        ),
        (
            VirtualService(TCP80, real_servers=(rs("2001:db8::5", forwarding=DR),)),
            "real server [2001:db8::5]:80 of service TCP 192.0.2.1:80: IPv6 real server in an "
            "IPv4 service needs TUN",
        ),
        (
            VirtualService(TCP80, real_servers=(rs("198.51.100.1", 8080, forwarding=DR),)),
            "real server 198.51.100.1:8080 of service TCP 192.0.2.1:80: DR forwards to the "
            "virtual port 80",
        ),
        (
            VirtualService(TCP80, real_servers=(rs("198.51.100.1", 0, forwarding=NAT),)),
            "real server 198.51.100.1:0 of service TCP 192.0.2.1:80: port 0 on a non-fwmark",
        ),
        (
            VirtualService(
                TCP80, real_servers=(rs("198.51.100.1", upper_threshold=0, lower_threshold=5),)
            ),
            "real server 198.51.100.1:80 of service TCP 192.0.2.1:80: lower threshold 5 above "
            "upper threshold 0",
        ),
        (
            VirtualService(TCP80, scheduler="rr", sched_flags=frozenset({"sh-port"})),
            "service TCP 192.0.2.1:80: scheduler flag 'sh-port' does not apply to scheduler 'rr'",
        ),
        (
            VirtualService(TCP80, scheduler="mh", sched_flags=frozenset({"sh-port"})),
            "service TCP 192.0.2.1:80: scheduler flag 'sh-port' does not apply to scheduler 'mh' "
            "(it has mh-fallback, mh-port)",
        ),
        (
            VirtualService(TCP80, one_packet=True),
            "service TCP 192.0.2.1:80: one-packet scheduling (ops) is only for UDP",
        ),
        (
            VirtualService(TCP80, persistence_netmask=24),
            "service TCP 192.0.2.1:80: persistence netmask needs a persistence timeout",
        ),
        (
            VirtualService(
                ServiceKey.of("tcp", "2001:db8::1", 80),
                persistence_timeout=5,
                persistence_netmask=129,
            ),
            "service TCP [2001:db8::1]:80: IPv6 persistence netmask must be a prefix 1..128",
        ),
        (
            VirtualService(TCP80, persistence_timeout=5, persistence_engine="http"),
            "service TCP 192.0.2.1:80: unknown persistence engine 'http'",
        ),
        (
            VirtualService(TCP80, persistence_engine="sip"),
            "service TCP 192.0.2.1:80: persistence engine needs a persistence timeout",
        ),
        (
            VirtualService(TCP80, persistence_timeout=0),
            "service TCP 192.0.2.1:80: persistence timeout 0 out of range",
        ),
        (
            VirtualService(
                TCP80,
                real_servers=(rs("198.51.100.1", forwarding=TUN, tunnel_type=TunnelType.GUE),),
            ),
            "real server 198.51.100.1:80 of service TCP 192.0.2.1:80: GUE needs a tunnel port",
        ),
        (
            VirtualService(
                TCP80,
                real_servers=(rs("198.51.100.1", forwarding=TUN, tunnel_flags=TunnelFlags.CSUM),),
            ),
            "real server 198.51.100.1:80 of service TCP 192.0.2.1:80: ipip tunnels have no "
            "checksum option",
        ),
        (
            VirtualService(
                TCP80,
                real_servers=(
                    rs(
                        "198.51.100.1",
                        forwarding=TUN,
                        tunnel_type=TunnelType.GRE,
                        tunnel_flags=TunnelFlags.REMCSUM,
                    ),
                ),
            ),
            "real server 198.51.100.1:80 of service TCP 192.0.2.1:80: remcsum is a GUE option",
        ),
        (
            VirtualService(
                TCP80, real_servers=(rs("198.51.100.1", forwarding=NAT, tunnel_port=6080),)
            ),
            "real server 198.51.100.1:80 of service TCP 192.0.2.1:80: tunnel settings need TUN",
        ),
        (
            VirtualService(
                TCP80, real_servers=(rs("198.51.100.1", forwarding=ForwardingMethod.LOCAL),)
            ),
            "real server 198.51.100.1:80 of service TCP 192.0.2.1:80: forwarding method LOCAL",
        ),
        (
            VirtualService(TCP80, real_servers=(rs("198.51.100.1"), rs("198.51.100.1", 80))),
            "service TCP 192.0.2.1:80: real server 198.51.100.1:80 listed twice",
        ),
    ],
)
def test_each_error_names_the_object(svc: VirtualService, expected: str) -> None:
    errors = errors_of(svc)
    assert any(e.startswith(expected) for e in errors), errors


def test_mixed_families_are_fine_for_tunnels_and_nat_ports_may_differ() -> None:
    svc = VirtualService(
        ServiceKey.of("tcp", "2001:db8::1", 443),
        real_servers=(rs("198.51.100.1", forwarding=TUN), rs("2001:db8::2", 8443, forwarding=NAT)),
    )
    assert errors_of(svc) == []
    # A fwmark service has no port of its own: any real-server port is accepted.
    fwm = VirtualService(ServiceKey.of_fwmark(5), real_servers=(rs("198.51.100.1", 8080),))
    assert errors_of(fwm) == []


def test_every_error_at_once() -> None:
    table = Table.of(
        [
            VirtualService(TCP80, scheduler="nope", real_servers=(rs("198.51.100.1", weight=-5),)),
            VirtualService(TCP80),
        ]
    )
    with pytest.raises(InvalidTable) as info:
        table.check()
    errors = info.value.errors
    assert len(errors) == 3
    assert "service TCP 192.0.2.1:80: listed twice" in errors
    assert "nope" in str(info.value)


def test_scheduler_flags_follow_the_scheduler() -> None:
    # ip_vs_sh.c: SCHED1 = fallback, SCHED2 = port; ip_vs_mh.c the same bits.
    assert sched_flag_bits("sh", ["sh-fallback", "sh-port"]) == SVC_F_SCHED1 | SVC_F_SCHED2
    assert sched_flag_bits("mh", ["mh-port"]) == SVC_F_SCHED2
    assert sched_flag_names("sh", SVC_F_SCHED1) == {"sh-fallback"}
    assert sched_flag_names("mh", SVC_F_SCHED2) == {"mh-port"}
    assert sched_flag_names("rr", SVC_F_SCHED3) == {"flag-3"}
    # ipvsadm's generic names become the scheduler's own on construction.
    svc = VirtualService(TCP80, scheduler="sh", sched_flags=frozenset({"flag-1"}))
    assert svc.sched_flags == {"sh-fallback"}
    assert svc.flag_bits == SVC_F_SCHED1
    both = VirtualService(
        ServiceKey.of("udp", "192.0.2.1", 53),
        scheduler="mh",
        sched_flags=frozenset({"mh-fallback"}),
        one_packet=True,
        persistence_timeout=10,
    )
    assert both.flag_bits == SVC_F_SCHED1 | SVC_F_ONEPACKET | SVC_F_PERSISTENT


def test_persistence_netmask_normalisation() -> None:
    p24 = VirtualService(TCP80, persistence_timeout=5, persistence_netmask=24)
    dotted = VirtualService(
        TCP80, persistence_timeout=5, persistence_netmask=ipaddress.IPv4Address("255.255.255.0")
    )
    assert p24.persistence_netmask == ipaddress.IPv4Address("255.255.255.0")
    assert p24.settings() == dotted.settings()
    host = VirtualService(TCP80, persistence_timeout=5, persistence_netmask=32)
    assert host.persistence_netmask is None
    assert host.netmask_value == 0xFFFFFFFF
    v6 = ServiceKey.of("tcp", "2001:db8::1", 80)
    assert VirtualService(v6, persistence_timeout=5, persistence_netmask=128).netmask_value == 128
    assert VirtualService(v6).netmask_value == 128  # the kernel refuses 0 for IPv6
    assert VirtualService(v6, persistence_timeout=5, persistence_netmask=48).netmask_value == 48


def test_table_equality_is_about_settings_not_order() -> None:
    a = VirtualService(TCP80, real_servers=(rs("198.51.100.1"), rs("198.51.100.2")))
    b = VirtualService(TCP80, real_servers=(rs("198.51.100.2"), rs("198.51.100.1")))
    other = ServiceKey.of("udp", "192.0.2.1", 53)
    assert Table.of([a, VirtualService(other)]) == Table.of([VirtualService(other), b])
    c = VirtualService(TCP80, real_servers=(rs("198.51.100.2", weight=2), rs("198.51.100.1")))
    assert Table.of([a]) != Table.of([c])
    assert Table.of([a]) != Table.of([VirtualService(TCP80, scheduler="rr")])
    assert len(Table.of([a, VirtualService(other)])) == 2
    assert Table.of([a]).real_server_count == 2
