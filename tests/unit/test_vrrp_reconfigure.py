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
