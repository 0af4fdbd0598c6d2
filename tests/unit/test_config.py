"""Config: valid files freeze into values; every error names file, line and key."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path

import pytest

from hacontrol.config import Config, ConfigError, load_config, parse_config
from vrrp.types import AuthType

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 51
    priority: 150
    advert_int: 1
    virtual_ipaddresses:
      - 192.0.2.10/24
      - {address: 192.0.2.11, label: "eth0:1"}
    authentication: {auth_type: PASS, auth_pass: secret1}
  - name: VI_6
    interface: eth0
    virtual_router_id: 52
    advert_int: 0.35
    nopreempt: true
    virtual_ipaddresses: ["2001:db8::10/64"]
"""


def test_valid_file_gives_frozen_values_with_keepalived_defaults() -> None:
    config = parse_config(GOOD, "good.yaml")
    v4, v6 = config.vrrp_instances
    assert v4.effective_version == 2  # keepalived's default for IPv4
    assert v4.advert_int_centis == 100
    assert v4.auth_type is AuthType.SIMPLE and v4.auth_data == b"secret1"
    assert v4.virtual_ipaddresses[1].address == ip_interface("192.0.2.11/32")
    assert v4.virtual_ipaddresses[1].label == "eth0:1"
    assert v4.preempt_mode is True
    assert v4.garp.master_repeat == 5 and v4.garp.master_delay == 5.0
    assert v6.effective_version == 3  # IPv6 needs VRRPv3
    assert v6.vrid == 52 and v6.priority == 100
    assert v6.advert_int_centis == 35
    assert v6.preempt_mode is False
    with pytest.raises(Exception, match="frozen"):
        v4.priority = 1  # type: ignore[misc]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bad.yaml")
    return [str(i) for i in info.value.issues]


def test_every_field_error_reported_at_once_with_line_and_key() -> None:
    text = """\
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 0
    priority: 300
    virtual_ipaddresses: [192.0.2.10/24]
    colour: blue
  - name: VI_2
    interface: eth0
    vrid: 2
    virtual_ipaddresses: [not-an-address]
"""
    errs = errors_of(text)
    assert any(e.startswith("bad.yaml:4: vrrp_instances[0].vrid:") for e in errs), errs
    assert any(e.startswith("bad.yaml:5: vrrp_instances[0].priority:") for e in errs), errs
    assert "bad.yaml:7: vrrp_instances[0].colour: unknown key" in errs
    assert any(e.startswith("bad.yaml:11: vrrp_instances[1].virtual_ipaddresses[0]") for e in errs)
    assert len(errs) == 4


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("version: 2\n    advert_int: 0.5", "whole seconds"),
        ("version: 3\n    advert_int: 0.005", "0.01-40.95"),
        ("version: 3\n    advert_int: 41", "0.01-40.95"),
        ("version: 3\n    authentication: {auth_pass: x}", "only in VRRPv2"),
        ("unicast_peers: ['2001:db8::1']", "is not IPv4"),
        ("unicast_src_ip: 192.0.2.1", "unicast_peers is empty"),
        ("nopreempt: true\n    preempt_delay: 5", "no effect with nopreempt"),
        ("preempt: true\n    nopreempt: true", "contradict"),
    ],
)
def test_semantic_errors_name_the_instance_line(snippet: str, expected: str) -> None:
    text = f"""\
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 1
    virtual_ipaddresses: [192.0.2.10/24]
    {snippet}
"""
    errs = errors_of(text)
    assert len(errs) == 1, errs
    assert errs[0].startswith("bad.yaml:2: vrrp_instances[0]:"), errs
    assert expected in errs[0]


def test_long_password_is_an_error_on_its_key() -> None:
    errs = errors_of(
        "vrrp_instances:\n  - {name: a, interface: eth0, vrid: 1,\n"
        "     authentication: {auth_pass: longer-than-8}, virtual_ipaddresses: [192.0.2.1/24]}\n"
    )
    assert len(errs) == 1
    assert errs[0].startswith("bad.yaml:3: vrrp_instances[0].authentication.auth_pass:")
    assert "at most 8 bytes" in errs[0]


def test_ipv6_on_vrrpv2_and_mixed_families_rejected() -> None:
    base = "vrrp_instances:\n  - {name: a, interface: eth0, vrid: 1, %s}\n"
    errs = errors_of(base % "version: 2, virtual_ipaddresses: ['2001:db8::1/64']")
    assert "IPv4 only" in errs[0]
    errs = errors_of(base % "virtual_ipaddresses: ['2001:db8::1/64', 192.0.2.1/24]")
    assert "mixes IPv4 and IPv6" in errs[0]


def test_duplicate_names_and_vrids_per_interface_and_family() -> None:
    text = """\
vrrp_instances:
  - {name: a, interface: eth0, vrid: 1, virtual_ipaddresses: [192.0.2.1/24]}
  - {name: a, interface: eth0, vrid: 1, virtual_ipaddresses: [192.0.2.2/24]}
  - {name: b, interface: eth1, vrid: 1, virtual_ipaddresses: [192.0.2.3/24]}
  - {name: c, interface: eth0, vrid: 1, virtual_ipaddresses: ['2001:db8::1/64']}
"""
    errs = errors_of(text)
    # One issue each, at the second instance's own keys (was: one joined message at line 1).
    assert errs == [
        "bad.yaml:3: vrrp_instances[1].name: vrrp instance name 'a' is used twice "
        "(also vrrp_instances[0])",
        "bad.yaml:3: vrrp_instances[1].vrid: instances 'a' and 'a' both use vrid 1 "
        "for IPv4 on eth0",
    ]


def test_duplicate_yaml_key_is_an_error_not_a_silent_override() -> None:
    text = """\
vrrp_instances:
  - name: a
    interface: eth0
    vrid: 1
    priority: 50
    priority: 200
    virtual_ipaddresses: [192.0.2.1/24]
"""
    errs = errors_of(text)
    assert errs == ["bad.yaml:6: vrrp_instances[0].priority: duplicate key (first given at line 5)"]


@pytest.mark.parametrize(
    ("text", "line"),
    # The unclosed '[' is on line 2; the parser notices at the end of the file (line 3).
    [("vrrp_instances:\n  - name: [unclosed\n", 2), ("a: b\n\tc: d\n", 2), ("- 1\n- 2\n", 1)],
)
def test_malformed_yaml_is_one_clear_error(text: str, line: int) -> None:
    errs = errors_of(text)
    assert len(errs) == 1
    assert errs[0].startswith(f"bad.yaml:{line}:"), errs


def test_empty_file_is_a_valid_empty_config() -> None:
    assert parse_config("", "empty.yaml") == Config()


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_check_command_exit_codes_and_messages(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text("vrrp_instances:\n  - name: a\n")
    ok = subprocess.run(
        [sys.executable, "-m", "hacontrol", "check", "-c", str(good)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    fail = subprocess.run(
        [sys.executable, "-m", "hacontrol", "check", "-c", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert fail.returncode == 1
    assert f"{bad}:2: vrrp_instances[0].interface: required key is missing" in fail.stderr


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "conf" / "hacontrol.yaml")
    assert config.vrrp_instances


def test_run_with_bad_config_exits_nonzero_before_touching_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("vrrp_instances:\n  - {name: a, interface: eth0, vrid: 999}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hacontrol", "run", "-c", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "vrrp_instances[0].vrid" in proc.stderr
    assert "not starting" in proc.stderr


def test_json_schema_is_published_and_current() -> None:
    schema = Config.model_json_schema(by_alias=True)
    assert "vrrp_instances" in schema["properties"]
    published = json.loads((ROOT / "conf" / "hacontrol.schema.json").read_text())
    assert published == schema, "run: hacontrol schema > conf/hacontrol.schema.json"


def test_ip_values_are_typed() -> None:
    config = parse_config(
        "vrrp_instances:\n  - {name: a, interface: eth0, vrid: 1, unicast_src_ip: 192.0.2.1,"
        " unicast_peers: [192.0.2.2], virtual_ipaddresses: [192.0.2.9/24]}\n"
    )
    assert config.vrrp_instances[0].unicast_peers == (ip_address("192.0.2.2"),)


LVS = """\
vrrp_instances:
  - {name: VI_1, interface: eth0, vrid: 1, virtual_ipaddresses: [192.0.2.10/24]}
virtual_servers:
  - address: 192.0.2.10
    port: 80
    protocol: tcp
    scheduler: mh
    sched_flags: [mh-port]
    forwarding: nat
    persistence_timeout: 60
    quorum: 2
    hysteresis: 1
    sorry_server: {address: 198.51.100.99, port: 8080}
    real_servers:
      - address: 198.51.100.1
        port: 8080
        weight: 3
        checks: [{type: http, path: /h, status_codes: [200, "300-302"]}]
      - {address: 198.51.100.2, port: 8080, checks: [{type: tcp}]}
  - fwmark: 7
    family: 6
    real_servers: [{address: "2001:db8::1"}]
ipvs:
  timeouts: {tcp: 900, tcpfin: 120, udp: 300}
  sync_daemon: {interface: eth1, vrrp_instance: VI_1, syncid: 9}
"""


def test_lvs_sections_parse_with_keepalived_words() -> None:
    config = parse_config(LVS, "lvs.yaml")
    web, mark = config.virtual_servers
    assert web.protocol == "TCP" and web.forwarding == "NAT" and web.scheduler == "mh"
    assert web.display_name == "TCP 192.0.2.10:80"
    assert web.real_servers[0].weight == 3
    assert web.real_servers[0].checks[0].type == "http"
    assert web.real_servers[1].checks[0].type == "tcp"
    assert mark.display_name == "FWM 7 IPv6"
    assert config.ipvs.timeouts.tcpfin == 120
    assert config.ipvs.sysctls.expire_nodest_conn == 1  # set by default: removal expires conns
    assert config.ipvs.sync_daemon is not None and config.ipvs.sync_daemon.syncid == 9


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("scheduler: mh", "scheduler: fastest", "unknown scheduler 'fastest'"),
        ("port: 80", "port: 65536", "less than or equal to 65535"),
        ("weight: 3", "weight: 70000", "less than or equal to 65535"),
        ("address: 198.51.100.1", "address: '2001:db8::5'", "only TUN forwarding can mix"),
        ("vrrp_instance: VI_1", "vrrp_instance: VI_9", "'VI_9' is not a vrrp instance"),
        ("hysteresis: 1", "hysteresis: 2", "hysteresis must be below quorum"),
        ("path: /h", "path: /h, regex: '(unclosed'", "regex"),
    ],
)
def test_lvs_errors_name_the_object(old: str, new: str, expected: str) -> None:
    assert old in LVS
    errs = errors_of(LVS.replace(old, new, 1))
    assert any(expected in e for e in errs), errs


def test_ipvs_model_refusals_are_config_errors_with_lines() -> None:
    # Checked before any kernel call: what the IPVS model refuses is a config error.
    text = """\
virtual_servers:
  - address: 192.0.2.10
    port: 80
    forwarding: DR
    real_servers:
      - {address: 198.51.100.1, port: 8080}
  - address: 192.0.2.10
    port: 81
    scheduler: sh
    sched_flags: [mh-port]
    real_servers: [{address: 198.51.100.1}]
"""
    errs = errors_of(text)
    assert len(errs) == 2, errs
    assert errs[0].startswith("bad.yaml:2: virtual_servers[0]:")
    assert "DR forwards to the virtual port 80" in errs[0]
    assert errs[1].startswith("bad.yaml:7: virtual_servers[1]:")
    assert "'mh-port' does not apply to scheduler 'sh'" in errs[1]


def test_excluded_vips_in_keepalived_s_spelling_too() -> None:
    base = (
        "vrrp_instances:\n  - {name: a, interface: eth0, vrid: 1,\n"
        "     virtual_ipaddresses: [192.0.2.10/24], %s}\n"
    )
    for key in ("virtual_ipaddresses_excluded", "virtual_ipaddress_excluded"):
        # Either family: keepalived takes mixed families only in this list.
        config = parse_config(base % f'{key}: [192.0.2.20/24, {{address: "2001:db8::20/64"}}]')
        (inst,) = config.vrrp_instances
        assert [v.address for v in inst.virtual_ipaddresses_excluded] == [
            ip_interface("192.0.2.20/24"),
            ip_interface("2001:db8::20/64"),
        ]
    assert parse_config(base % "preempt: true").vrrp_instances[0].virtual_ipaddresses_excluded == ()
    errs = errors_of(base % "virtual_ipaddresses_excluded: [192.0.2.10/24]")
    assert any("192.0.2.10/24 in both" in e for e in errs), errs


def test_excluded_vips_reach_the_state_machine() -> None:
    from hacontrol.desired import vrrp_instance

    config = parse_config(
        "vrrp_instances:\n  - {name: a, interface: eth0, vrid: 1,\n"
        "     virtual_ipaddresses: [192.0.2.10/24],\n"
        "     virtual_ipaddress_excluded: [192.0.2.20/24]}\n"
    )
    params = vrrp_instance(config.vrrp_instances[0]).params
    assert params.virtual_addresses == (ip_interface("192.0.2.10/24"),)
    assert params.excluded_addresses == (ip_interface("192.0.2.20/24"),)


def test_unicast_ttl_keys_with_keepalived_s_defaults() -> None:
    base = (
        "vrrp_instances:\n  - {name: a, interface: eth0, vrid: 1, version: 3,\n"
        '     virtual_ipaddresses: ["2001:db8::10/64"], %s}\n'
    )
    peers = 'unicast_peers: ["2001:db8::2"]'
    (inst,) = parse_config(base % peers).vrrp_instances
    # keepalived's defaults: nothing checked on receipt; 255 sent (see the README).
    assert (inst.unicast_ttl, inst.min_ttl, inst.max_ttl, inst.check_unicast_src) == (
        None,
        None,
        None,
        False,
    )
    (inst,) = parse_config(
        base % f"{peers}, unicast_ttl: 64, min_ttl: 60, max_ttl: 64, check_unicast_src: true"
    ).vrrp_instances
    assert (inst.unicast_ttl, inst.min_ttl, inst.max_ttl, inst.check_unicast_src) == (
        64,
        60,
        64,
        True,
    )
    errs = errors_of(base % f"{peers}, min_ttl: 65, max_ttl: 64")
    assert any("min_ttl 65 is above max_ttl 64" in e for e in errs), errs
    errs = errors_of(base % "unicast_ttl: 64, check_unicast_src: true")
    assert any("unicast_ttl, check_unicast_src apply to unicast mode only" in e for e in errs)
    errs = errors_of(base % f"{peers}, unicast_ttl: 0")
    assert any("unicast_ttl" in e and "greater than or equal to 1" in e for e in errs), errs


# ---- routes, rules, per-VIP options, VMAC, state -------------------------------------------

ROUTED = """\
vrrp_instances:
  - name: VI_GW
    interface: eth0
    vrid: 51
    state: BACKUP
    use_vmac: true
    virtual_ipaddresses:
      - 192.0.2.10/24
      - {address: 198.51.100.1/24, dev: eth1, scope: global, brd: 198.51.100.255, no_track: true}
    virtual_ipaddress_excluded: ["2001:db8::10/64"]
    virtual_routes:
      - {to: 203.0.113.0/24, via: 192.0.2.254, dev: eth0, metric: 10, table: 100, src: 192.0.2.10}
      - {to: default, gw: 192.0.2.254, table: 100}
      - {to: default, via: "2001:db8::fe"}
      - {type: blackhole, to: 203.0.113.128/25, no_track: true}
    virtual_rules:
      - {from: 192.0.2.0/24, table: 100, priority: 100}
      - {fwmark: "0x7/0xff", table: 100, preference: 200}
      - {to: "2001:db8:1::/48", table: 100}
      - {fwmark: 9, table: 101}
      - {fwmark: 10, table: 101, inet6: true}
"""


def test_routes_rules_vip_options_vmac_and_state_parse_with_keepalived_words() -> None:
    from hacontrol.desired import vrrp_instances
    from vrrp.types import AddressOptions, State, VirtualRoute, VirtualRule

    config = parse_config(ROUTED)
    (inst,) = config.vrrp_instances
    assert inst.vmac_name == "vrrp.51"  # keepalived's default name
    (spec,) = vrrp_instances(config)
    assert spec.use_vmac == "vrrp.51" and not spec.vmac_xmit_base
    assert spec.params.initial_state is State.BACKUP
    assert dict(spec.vip_options) == {
        ip_address("198.51.100.1"): AddressOptions(
            dev="eth1", scope="global", broadcast=ip_address("198.51.100.255"), no_track=True
        )
    }
    assert spec.virtual_routes == (
        VirtualRoute(
            dst=ip_network("203.0.113.0/24"),
            via=ip_address("192.0.2.254"),
            dev="eth0",
            src=ip_address("192.0.2.10"),
            metric=10,
            table=100,
        ),
        VirtualRoute(dst=ip_network("0.0.0.0/0"), via=ip_address("192.0.2.254"), table=100),
        VirtualRoute(dst=ip_network("::/0"), via=ip_address("2001:db8::fe")),
        VirtualRoute(dst=ip_network("203.0.113.128/25"), type="blackhole", no_track=True),
    )
    # keepalived's priorities for rules given none: 16384, 16383, ... per family.
    assert spec.virtual_rules == (
        VirtualRule(family=4, priority=100, table=100, src=ip_network("192.0.2.0/24")),
        VirtualRule(family=4, priority=200, table=100, fwmark=7, fwmask=0xFF),
        VirtualRule(family=6, priority=16384, table=100, dst=ip_network("2001:db8:1::/48")),
        VirtualRule(family=4, priority=16384, table=101, fwmark=9),
        VirtualRule(family=6, priority=16383, table=101, fwmark=10),
    )
    assert str(spec.virtual_rules[1]) == "200: from all fwmark 0x7/0xff lookup 100"
    assert str(spec.virtual_routes[0]) == (
        "203.0.113.0/24 via 192.0.2.254 dev eth0 src 192.0.2.10 table 100 metric 10"
    )


def test_rules_without_priority_and_nopreempt_with_state_master_are_warned() -> None:
    from hacontrol.config import check_source

    checked = check_source(
        ROUTED.replace("state: BACKUP", "state: MASTER\n    nopreempt: true"), "r.yaml"
    )
    warnings = [str(w) for w in checked.warnings]
    assert any(
        w.startswith("r.yaml:5: vrrp_instances[0].state: warning: nopreempt has no effect")
        for w in warnings
    ), warnings
    no_priority = [w for w in warnings if "a rule without a priority gets" in w]
    assert [w.split(": warning")[0] for w in no_priority] == [
        "r.yaml:20: vrrp_instances[0].virtual_rules[2]",
        "r.yaml:21: vrrp_instances[0].virtual_rules[3]",
        "r.yaml:22: vrrp_instances[0].virtual_rules[4]",
    ]
    # keepalived clears nopreempt with state MASTER; so does hacontrol.
    assert checked.config.vrrp_instances[0].preempt_mode is True


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("virtual_routes: [{to: 203.0.113.1/24}]", "has host bits set"),
        ("virtual_routes: [{to: 203.0.113.0/24, via: '2001:db8::1'}]", "is not IPv4"),
        ("virtual_routes: [{to: 203.0.113.0/24, type: blackhole, via: 192.0.2.1}]", "no gateway"),
        ("virtual_routes: [{to: 203.0.113.0/24, type: anycast}]", "'unicast'"),
        ("virtual_routes: [{to: 203.0.113.0/24, scope: universe}]", "'global'"),
        ("virtual_routes: [{to: 203.0.113.0/24, inet6: true}]", "inet6 is set"),
        ("virtual_rules: [{from: 192.0.2.0/24, to: '2001:db8::/64', table: 1}]", "different"),
        ("virtual_rules: [{fwmark: 0x/1, table: 1}]", "MARK or MARK/MASK"),
        ("virtual_rules: [{from: 192.0.2.0/24}]", "required"),
        ("use_vmac: a/b", "not a valid interface name"),
        ("use_vmac: eth0", "like the instance's own interface"),
        ("vmac_xmit_base: true", "applies to use_vmac only"),
        ("use_vmac: true\n    unicast_peers: [192.0.2.2]", "needs vmac_xmit_base"),
        ("state: FAULT", "'MASTER' or 'BACKUP'"),
        (
            "virtual_ipaddresses: [{address: '2001:db8::1/64', brd: '2001:db8::ff'}]\n"
            "    version: 3",
            "IPv4 addresses only",
        ),
    ],
)
def test_route_rule_vmac_state_errors(snippet: str, expected: str) -> None:
    vips = "" if "virtual_ipaddresses" in snippet else "virtual_ipaddresses: [192.0.2.10/24]"
    text = f"""\
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 1
    {vips}
    {snippet}
"""
    errs = errors_of(text)
    assert len(errs) == 1, errs
    assert expected in errs[0], errs


def test_a_route_rule_or_vmac_in_two_instances_is_an_error_at_the_second() -> None:
    text = """\
vrrp_instances:
  - name: A
    interface: eth0
    vrid: 51
    use_vmac: true
    virtual_ipaddresses: [192.0.2.10/24]
    virtual_routes: [{to: 203.0.113.0/24, via: 192.0.2.254}]
    virtual_rules: [{from: 192.0.2.0/24, table: 100, priority: 100}]
  - name: B
    interface: eth1
    vrid: 51
    use_vmac: true
    virtual_ipaddresses: [198.51.100.10/24]
    virtual_routes: [{to: 203.0.113.0/24, via: 198.51.100.254}]
    virtual_rules: [{from: 192.0.2.0/24, table: 100, priority: 100}]
"""
    errs = errors_of(text)
    assert errs == [
        "bad.yaml:12: vrrp_instances[1].use_vmac: VMAC vrrp.51 is also instance 'A''s; "
        "name one of them (use_vmac: NAME)",
        "bad.yaml:14: vrrp_instances[1].virtual_routes[0]: route to 203.0.113.0/24 (table main) "
        "is also in instance 'A': one instance holds a route",
        "bad.yaml:15: vrrp_instances[1].virtual_rules[0]: this rule (priority 100) is also in "
        "instance 'A'",
    ], errs
    # Told apart (a VMAC name, another prefix, another priority), they are fine.
    fixed = (
        text.replace(
            "use_vmac: true\n    virtual_ipaddresses: [198",
            "use_vmac: vmac51b\n    virtual_ipaddresses: [198",
        )
        .replace("203.0.113.0/24, via: 198", "203.0.113.128/25, via: 198")
        .replace("table: 100, priority: 100}]\n", "table: 100, priority: 101}]\n")
        .replace("table: 100, priority: 101}]\n", "table: 100, priority: 100}]\n", 1)
    )
    assert len(parse_config(fixed).vrrp_instances) == 2
