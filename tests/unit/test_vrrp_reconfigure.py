"""VRRP reload diffs (vrrp/reconfigure.py): which instances keep their state, which restart."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from vrrp.reconfigure import plan_reconfigure
from vrrp.types import InstanceParams, InstanceSpec


def spec(
    name: str,
    vrid: int = 51,
    interface: str = "eth0",
    priority: int = 100,
    vips: tuple[str, ...] = ("192.0.2.100/24",),
    **changes: object,
) -> InstanceSpec:
    six = ":" in vips[0]
    primary = IPv6Address(0) if six else IPv4Address(0)
    params = InstanceParams(
        name=name,
        vrid=vrid,
        version=3,
        priority=priority,
        advert_int=100,
        primary_address=primary,
        virtual_addresses=tuple(IPv6Interface(v) if six else IPv4Interface(v) for v in vips),
    )
    return dataclasses.replace(InstanceSpec(params=params, interface=interface), **changes)  # type: ignore[arg-type]


def running(*specs: InstanceSpec) -> dict[str, InstanceSpec]:
    return {s.name: s for s in specs}


def test_settings_change_in_place_identity_change_restarts() -> None:
    web, gw, old = spec("VI_WEB"), spec("VI_GW", vrid=52, interface="eth1"), spec("VI_OLD", 53)
    plan = plan_reconfigure(
        running(web, gw, old),
        [
            spec("VI_WEB", priority=150, vips=("192.0.2.100/24", "192.0.2.101/24")),  # in place
            spec("VI_GW", vrid=62, interface="eth1"),  # new VRID: a new virtual router
            spec("VI_NEW", vrid=54),
        ],
    )
    assert [s.name for s in plan.update] == ["VI_WEB"]
    assert [s.name for s in plan.restart] == ["VI_GW"]
    assert [s.name for s in plan.add] == ["VI_NEW"]
    assert plan.remove == ("VI_OLD",)
    assert plan.unchanged == () and plan.errors == {}


def test_the_same_file_changes_nothing() -> None:
    web, gw = spec("VI_WEB"), spec("VI_GW", vrid=52)
    plan = plan_reconfigure(running(web, gw), [spec("VI_WEB"), spec("VI_GW", vrid=52)])
    assert plan.unchanged == ("VI_WEB", "VI_GW")
    assert (plan.update, plan.restart, plan.add, plan.remove) == ((), (), (), ())


def test_moving_to_another_interface_or_family_restarts() -> None:
    plan = plan_reconfigure(
        running(spec("A"), spec("B", vrid=52)),
        [spec("A", interface="eth1"), spec("B", vrid=52, vips=("2001:db8::100/64",))],
    )
    assert [s.name for s in plan.restart] == ["A", "B"]


def test_peers_and_labels_are_settings() -> None:
    plan = plan_reconfigure(
        running(spec("A")),
        [spec("A", unicast_peers=(IPv4Address("198.51.100.2"),))],
    )
    assert [s.name for s in plan.update] == ["A"]


def test_a_contradictory_set_refuses_those_instances_and_keeps_them_running() -> None:
    a = spec("A")
    plan = plan_reconfigure(
        running(a),
        [
            spec("B", vrid=60),
            spec("A", vrid=60),  # B has that VRID on eth0 already
            spec(
                "C", vrid=61, vips=("2001:db8::1/64",), unicast_peers=(IPv4Address("198.51.100.2"),)
            ),
        ],
    )
    assert set(plan.errors) == {"A", "C"}
    assert "vrid 60 already used on eth0 by 'B'" in plan.errors["A"]
    assert "is not of its family" in plan.errors["C"]
    assert [s.name for s in plan.add] == ["B"]
    assert plan.remove == ()  # A is refused, not removed: it runs on as it was


def test_vmac_settings_restart_and_a_vmac_name_is_one_instance_s() -> None:
    plan = plan_reconfigure(
        running(spec("A"), spec("B", vrid=52, use_vmac="vrrp.52")),
        [
            spec("A", use_vmac="vrrp.51"),  # its sockets and VIPs move to the macvlan
            spec("B", vrid=52, use_vmac="vrrp.52", vmac_xmit_base=True),
        ],
    )
    assert [s.name for s in plan.restart] == ["A", "B"]
    plan = plan_reconfigure(
        {},
        [
            spec("A", use_vmac="vmac1"),
            spec("B", vrid=52, use_vmac="vmac1"),
            spec("C", vrid=53, use_vmac="eth0"),
            spec("D", vrid=54, use_vmac="bad/name"),
        ],
    )
    assert [s.name for s in plan.add] == ["A"]
    assert plan.errors == {
        "B": "instance 'B': VMAC vmac1 already used by 'A'",
        "C": "instance 'C': its VMAC cannot be named like its interface",
        "D": "instance 'D': use_vmac: 'bad/name' is not a valid interface name (no '/', ':' "
        "or spaces)",
    }


def test_routes_and_rules_are_settings() -> None:
    from ipaddress import ip_network

    from vrrp.types import VirtualRoute, VirtualRule

    route = VirtualRoute(dst=ip_network("203.0.113.0/24"), via=IPv4Address("192.0.2.254"))
    rule = VirtualRule(family=4, priority=100, table=100)
    plan = plan_reconfigure(
        running(spec("A")), [spec("A", virtual_routes=(route,), virtual_rules=(rule,))]
    )
    assert [s.name for s in plan.update] == ["A"]
