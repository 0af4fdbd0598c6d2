"""VMAC helpers (vrrp/vmac.py) and the route/rule keys of vrrp/addresses.py: pure parts."""

from __future__ import annotations

import socket
from ipaddress import ip_network
from pathlib import Path

import pytest

from vrrp.addresses import parse_route_key, parse_rule_key, route_key, rule_key
from vrrp.types import VirtualRoute, VirtualRule
from vrrp.vmac import (
    Sysctls,
    default_vmac_name,
    raised_rp_filter,
    vmac_address,
    vmac_name_problem,
)


def test_rfc5798_virtual_router_mac_and_keepalived_s_name() -> None:
    # RFC 5798 §7.3: 00-00-5E-00-01-{VRID} (IPv4), 00-00-5E-00-02-{VRID} (IPv6).
    assert vmac_address(51, 4).hex(":") == "00:00:5e:00:01:33"
    assert vmac_address(255, 6).hex(":") == "00:00:5e:00:02:ff"
    with pytest.raises(ValueError):
        vmac_address(0, 4)
    assert default_vmac_name(51) == "vrrp.51"  # keepalived's, for either family


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("vrrp.51", True),
        ("a" * 15, True),
        ("a" * 16, False),
        ("", False),
        ("a/b", False),
        ("a b", False),
        ("eth0:1", False),
        ("..", False),
    ],
)
def test_vmac_names(name: str, ok: bool) -> None:
    assert (vmac_name_problem(name) is None) is ok


def test_rp_filter_is_raised_where_all_would_have_counted() -> None:
    # The kernel applies max(all, interface): to set all to 0 without loosening anything,
    # every interface below all is raised to it first (keepalived's rule).
    assert raised_rp_filter(2, {"eth0": 0, "eth1": 1, "eth2": 2, "default": 0}) == {
        "eth0": 2,
        "eth1": 2,
        "default": 2,
    }
    assert raised_rp_filter(0, {"eth0": 0}) == {}


def test_sysctls_remember_the_first_value_and_put_it_back(tmp_path: Path) -> None:
    conf = tmp_path / "ipv4" / "conf"
    for ifname in ("all", "eth0"):
        (conf / ifname).mkdir(parents=True)
        (conf / ifname / "arp_ignore").write_text("0\n")
    sysctls = Sysctls(str(tmp_path))
    path = sysctls.path(4, "eth0", "arp_ignore")
    assert sysctls.write(path, 1) and sysctls.write(path, 2)
    assert sysctls.read(path) == 2 and sysctls.changed() == (path,)
    assert sysctls.interfaces() == ["all", "eth0"]
    # An interface that is gone cannot be set; nothing is remembered for it.
    assert not sysctls.write(sysctls.path(4, "gone", "arp_ignore"), 1)
    sysctls.restore(sysctls.changed())
    assert sysctls.read(path) == 0 and sysctls.changed() == ()


class Msg(dict[str, object]):
    """The `get` a pyroute2 message offers, for the key parsers."""


def test_route_keys_compare_configured_and_dumped_routes() -> None:
    # The kernel's defaults: table main, metric 0 (IPv4) or 1024 (IPv6).
    v4 = VirtualRoute(dst=ip_network("203.0.113.0/24"))
    v6 = VirtualRoute(dst=ip_network("2001:db8:1::/48"))
    dumped4 = Msg(family=socket.AF_INET, dst="203.0.113.0", dst_len=24, table=254)
    dumped6 = Msg(family=socket.AF_INET6, dst="2001:db8:1::", dst_len=48, table=254, priority=1024)
    assert parse_route_key(dumped4) == route_key(v4)
    assert parse_route_key(dumped6) == route_key(v6)
    default = Msg(family=socket.AF_INET, dst_len=0, table=100)
    assert parse_route_key(default) == route_key(
        VirtualRoute(dst=ip_network("0.0.0.0/0"), table=100)
    )
    assert parse_route_key(Msg(dumped4, priority=5)) != route_key(v4)


def test_rule_keys_compare_configured_and_dumped_rules() -> None:
    rule = VirtualRule(family=4, priority=200, table=100, fwmark=7, fwmask=0xFF)
    dumped = Msg(family=socket.AF_INET, priority=200, table=100, fwmark=7, fwmask=0xFF)
    assert parse_rule_key(dumped) == rule_key(rule)
    # A mark without a mask is dumped with the full mask.
    plain = VirtualRule(family=4, priority=200, table=100, fwmark=7)
    assert parse_rule_key(Msg(dumped, fwmask=0xFFFFFFFF)) == rule_key(plain)
    src = VirtualRule(family=6, priority=100, table=100, src=ip_network("2001:db8::/64"))
    assert parse_rule_key(
        Msg(family=socket.AF_INET6, priority=100, table=100, src="2001:db8::", src_len=64)
    ) == rule_key(src)
