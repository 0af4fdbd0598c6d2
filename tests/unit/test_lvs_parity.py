"""keepalived's LVS keywords in hacontrol's config and desired state (issue 14, part 2).

virtual_server_group (ranges, prefixes, fwmarks), all-ports persistent services, checker
defaults inherited from the virtual server and the real server, alpha at every level,
sorry_server_lvs_method, ha_suspend. What the kernel then holds is read back with
ipvsadm in tests/kernel/test_lvs_parity.py.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from hacontrol.config import ConfigError, parse_config
from hacontrol.config_lvs import group_addresses
from hacontrol.desired import (
    desired_table,
    ha_suspended,
    model_problems,
    service_keys,
)
from hacontrol.ipvs.model import ForwardingMethod, ServiceKey
from hacontrol.lvs import check_specs
from healthcheck.config import HttpCheck, ScriptCheck, TcpCheck
from healthcheck.policy import DesiredRealServer
from vrrp.types import State

GROUP = """
virtual_server_groups:
  - name: web
    members:
      - {address: 192.0.2.1, port: 80}
      - {address: 192.0.2.3-5, port: 8080}
      - {address: 192.0.2.8/30, port: 443}
      - {fwmark: 7}
virtual_servers:
  - group: web
    scheduler: rr
    forwarding: NAT
    real_servers:
      - {address: 198.51.100.1}
      - {address: 198.51.100.2, port: 8000}
"""


def test_group_members_expand_as_keepalived_programs_them() -> None:
    config = parse_config(GROUP)
    (vs,) = config.virtual_servers
    keys = [str(k) for k in service_keys(config, vs)]
    assert keys == [
        "TCP 192.0.2.1:80",
        "TCP 192.0.2.3:8080",
        "TCP 192.0.2.4:8080",
        "TCP 192.0.2.5:8080",
        "TCP 192.0.2.8:443",
        "TCP 192.0.2.9:443",
        "TCP 192.0.2.10:443",
        "TCP 192.0.2.11:443",
        "FWM 7",
    ]
    assert vs.display_name == "TCP group web"


def test_group_services_share_the_real_servers_each_at_its_port() -> None:
    config = parse_config(GROUP)
    (vs,) = config.virtual_servers
    wants = [DesiredRealServer("198.51.100.1", 0, 1), DesiredRealServer("198.51.100.2", 8000, 1)]
    table = desired_table(config, {vs.display_name: wants})
    got = {
        str(s.key): sorted((str(rs.address), rs.port, rs.forwarding) for rs in s.real_servers)
        for s in table
    }
    nat = ForwardingMethod.NAT
    assert got["TCP 192.0.2.1:80"] == [("198.51.100.1", 80, nat), ("198.51.100.2", 8000, nat)]
    assert got["TCP 192.0.2.4:8080"] == [("198.51.100.1", 8080, nat), ("198.51.100.2", 8000, nat)]
    assert got["FWM 7"] == [("198.51.100.1", 0, nat), ("198.51.100.2", 8000, nat)]
    assert all(s.scheduler == "rr" for s in table)
    assert len(got) == 9
    assert model_problems(config) == []


def test_group_family_is_checked_against_real_servers() -> None:
    text = GROUP.replace("      - {fwmark: 7}\n", "      - {fwmark: 7, family: 6}\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "real server 198.51.100.1:0 of service FWM 7 IPv6: IPv4 real server" in str(info.value)


@pytest.mark.parametrize(
    ("text", "first", "last", "count"),
    [
        ("192.0.2.1-10", "192.0.2.1", "192.0.2.10", 10),
        ("192.0.2.250-192.0.3.1", "192.0.2.250", "192.0.3.1", 8),
        ("192.0.2.8/29", "192.0.2.8", "192.0.2.15", 8),
        ("2001:db8::1-a", "2001:db8::1", "2001:db8::a", 10),
        ("2001:db8::7", "2001:db8::7", "2001:db8::7", 1),
    ],
)
def test_group_address_forms(text: str, first: str, last: str, count: int) -> None:
    got = group_addresses(text)
    assert (got[0], got[-1], len(got)) == (ip_address(first), ip_address(last), count)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("{address: 192.0.2.9-3, port: 80}", "ends before it starts"),
        ("{address: 192.0.2.1-x, port: 80}", "is not an address, a range"),
        ("{address: 10.0.0.0/8, port: 80}", "at most 65536"),
        ("{fwmark: 1, port: 80}", "a fwmark member has no port"),
        ("{port: 80}", "has an address (and port) or a fwmark"),
    ],
)
def test_bad_group_members(member: str, message: str) -> None:
    text = f"virtual_server_groups:\n  - name: g\n    members:\n      - {member}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text + "virtual_servers: []\n", "x.yaml")
    assert message in str(info.value)
    assert "x.yaml:4: virtual_server_groups[0].members[0]" in str(info.value)


def test_group_must_exist_and_be_unique() -> None:
    text = (
        "virtual_server_groups:\n  - {name: g, members: [{fwmark: 1}]}\n"
        "  - {name: g, members: [{fwmark: 2}]}\n"
        "virtual_servers:\n  - group: h\n    real_servers: [{address: 198.51.100.1}]\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.yaml")
    message = str(info.value)
    assert "x.yaml:3: virtual_server_groups[1].name: virtual_server_group 'g' is given twice" in (
        message
    )
    assert "x.yaml:5: virtual_servers[0].group: no virtual_server_group 'h' (defined: g)" in (
        message
    )


def test_group_virtual_server_has_no_address() -> None:
    text = (
        "virtual_server_groups: [{name: g, members: [{fwmark: 1}]}]\n"
        "virtual_servers:\n  - {group: g, address: 192.0.2.1, port: 80}\n"
    )
    with pytest.raises(ConfigError, match="a virtual server of a group has no address"):
        parse_config(text)


# ---- all-ports persistent services ------------------------------------------------------


def test_all_ports_persistent_service() -> None:
    config = parse_config(
        "virtual_servers:\n  - address: 192.0.2.1\n    port: 0\n    persistence_timeout: 600\n"
        "    real_servers: [{address: 198.51.100.1}, {address: 198.51.100.2, port: 0}]\n"
    )
    assert model_problems(config) == []
    (vs,) = config.virtual_servers
    table = desired_table(
        config,
        {vs.display_name: [DesiredRealServer("198.51.100.1", 0, 1)]},
    )
    (service,) = table
    assert service.key == ServiceKey.of("TCP", "192.0.2.1", 0)
    assert service.persistent
    assert [rs.port for rs in service.real_servers] == [0]


def test_all_ports_needs_persistence() -> None:
    with pytest.raises(ConfigError, match=r"port 0 \(all ports\) needs persistence_timeout"):
        parse_config("virtual_servers:\n  - {address: 192.0.2.1, port: 0}\n")


# ---- checker defaults from the virtual server and the real server -----------------------


def test_checker_defaults_inherit_virtual_then_real_server() -> None:
    config = parse_config(
        """
virtual_servers:
  - address: 192.0.2.1
    port: 80
    delay_loop: 7
    connect_timeout: 2
    retry: 4
    delay_before_retry: 1.5
    warmup: 0
    virtualhost: www.example.test
    real_servers:
      - address: 198.51.100.1
        delay_loop: 9
        alpha: true
        checks:
          - {type: http}
          - {type: tcp, retry: 1, connect_timeout: 3}
          - {type: script, argv: [/bin/true]}
      - address: 198.51.100.2
        checks:
          - {type: http, virtualhost: own.example.test}
          - {type: dns}
"""
    )
    (vs,) = config.virtual_servers
    rs1, rs2 = vs.real_servers
    http, tcp, script = rs1.checks
    assert isinstance(http, HttpCheck)
    assert isinstance(tcp, TcpCheck)
    assert isinstance(script, ScriptCheck)
    # the real server's delay_loop, the virtual server's others
    assert (http.delay_loop, http.connect_timeout, http.retry, http.delay_before_retry) == (
        9,
        2,
        4,
        1.5,
    )
    assert http.warmup == 0
    assert http.virtualhost == "www.example.test"
    assert http.alpha is True
    # the check's own values win
    assert (tcp.retry, tcp.connect_timeout, tcp.delay_loop) == (1, 3, 9)
    # a script has no connect_timeout nor virtualhost; its timeout follows delay_loop
    assert (script.delay_loop, script.retry, script.timeout) == (9, 4, 9)
    own, dns = rs2.checks
    assert isinstance(own, HttpCheck)
    assert own.virtualhost == "own.example.test"
    assert own.delay_loop == 7
    # DNS's delay_before_retry default (its delay_loop) gives way to the inherited one
    assert (dns.retry, dns.delay_before_retry) == (4, 1.5)


def test_type_defaults_stay_without_inherited_values() -> None:
    config = parse_config(
        "virtual_servers:\n  - address: 192.0.2.1\n    port: 80\n    real_servers:\n"
        "      - address: 198.51.100.1\n        checks: [{type: http}, {type: dns}, "
        "{type: script, argv: [/bin/true]}]\n"
    )
    http, dns, script = config.virtual_servers[0].real_servers[0].checks
    assert (http.retry, http.delay_before_retry) == (1, 3.0)
    assert (dns.retry, dns.delay_before_retry) == (3, 60.0)
    assert script.retry == 0


def test_alpha_at_each_level_reaches_the_check_params() -> None:
    config = parse_config(
        """
virtual_servers:
  - address: 192.0.2.1
    port: 80
    alpha: true
    real_servers:
      - address: 198.51.100.1
        checks: [{type: tcp}, {type: tcp, alpha: false}]
      - address: 198.51.100.2
        alpha: false
        checks: [{type: tcp}]
"""
    )
    (vs,) = config.virtual_servers
    rs1, rs2 = vs.real_servers
    assert [spec.params.alpha for spec in check_specs(vs, rs1)] == [True, False]
    assert [spec.params.alpha for spec in check_specs(vs, rs2)] == [False]


def test_warmup_takes_seconds_as_keepalived() -> None:
    config = parse_config(
        "virtual_servers:\n  - address: 192.0.2.1\n    port: 80\n    real_servers:\n"
        "      - address: 198.51.100.1\n        checks: [{type: tcp, warmup: 4.5}, "
        "{type: tcp, warmup: false}, {type: tcp}]\n"
    )
    vs = config.virtual_servers[0]
    assert [s.params.warmup for s in check_specs(vs, vs.real_servers[0])] == [4.5, 0.0, None]


# ---- sorry server forwarding, ha_suspend ---------------------------------------------------


def test_sorry_server_lvs_method() -> None:
    config = parse_config(
        "virtual_servers:\n  - address: 192.0.2.1\n    port: 80\n    forwarding: DR\n"
        "    sorry_server: {address: 198.51.100.9, port: 8080, forwarding: nat, inhibit: true}\n"
        "    real_servers: [{address: 198.51.100.1}]\n"
    )
    (vs,) = config.virtual_servers
    table = desired_table(
        config,
        {
            vs.display_name: [
                DesiredRealServer("198.51.100.1", 80, 0),
                DesiredRealServer("198.51.100.9", 8080, 1),
            ]
        },
    )
    (service,) = table
    methods = {str(rs.address): rs.forwarding for rs in service.real_servers}
    assert methods == {"198.51.100.1": ForwardingMethod.DR, "198.51.100.9": ForwardingMethod.NAT}
    assert model_problems(config) == []


SUSPEND = """
vrrp_instances:
  - {name: A, interface: eth0, vrid: 1, virtual_ipaddresses: [192.0.2.1/24]}
  - {name: B, interface: eth0, vrid: 2, virtual_ipaddresses: [192.0.2.2/24]}
virtual_servers:
  - {address: 192.0.2.1, port: 80, ha_suspend: true}
  - {address: 192.0.2.2, port: 80}
  - {address: 192.0.2.3, port: 80, ha_suspend: true}
  - {fwmark: 5, ha_suspend: true}
"""


def test_ha_suspend_follows_the_instance_holding_the_address() -> None:
    config = parse_config(SUSPEND)
    assert ha_suspended(config, {}) == {"TCP 192.0.2.1:80"}
    assert ha_suspended(config, {"A": State.BACKUP, "B": State.MASTER}) == {"TCP 192.0.2.1:80"}
    assert ha_suspended(config, {"A": State.MASTER}) == frozenset()
    assert ha_suspended(config, {"A": State.FAULT}) == {"TCP 192.0.2.1:80"}


# ---- checker keywords: validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("{type: http, path: /x, urls: [{path: /a}]}", "path given both on the check and in urls"),
        ("{type: http, urls: [{path: a}]}", "must start with '/'"),
        ("{type: http, http_protocol: '2'}", "http_protocol"),
        ("{type: https, client_key: /k.pem}", "client_key and client_key_password need"),
        ("{type: udp, reply_hex: '4a 1'}", "pairs of hex digits"),
        ("{type: udp, reply_hex: 'zz'}", "pairs of hex digits"),
        ("{type: udp, min_reply_length: 9, max_reply_length: 8}", "below min_reply_length"),
        ("{type: file, path: /t, init_overwrite: true}", "init_overwrite is set without"),
        ("{type: tcp, warmup: -1}", "warmup is seconds >= 0"),
        ("{type: tcp, warmup: 'no'}", "valid boolean"),
    ],
)
def test_checker_keyword_errors(check: str, message: str) -> None:
    text = (
        "virtual_servers:\n  - address: 192.0.2.1\n    port: 80\n    real_servers:\n"
        f"      - address: 198.51.100.1\n        checks:\n          - {check}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    assert message in str(info.value)
    assert "c.yaml:7: virtual_servers[0].real_servers[0].checks[0]" in str(info.value)


def test_url_list_takes_the_checks_virtualhost() -> None:
    check = HttpCheck(urls=[{"path": "/a"}, {"path": "/b", "virtualhost": "b"}], virtualhost="a")
    assert [(u.path, u.virtualhost) for u in check.url_list()] == [("/a", "a"), ("/b", "b")]
    assert HttpCheck(path="/x").url_list()[0].path == "/x"
    # each url has its own connect_timeout: the runner's guard allows for all of them
    assert check_specs_timeout(check) == 10.0


def check_specs_timeout(check: HttpCheck) -> float:
    from healthcheck.state import CheckParams

    return CheckParams.from_check(check).timeout
