"""hacontrol beside the real keepalived (Debian 2.2.7): VMAC, virtual routes and rules, and
keepalived's `state` start hint, each side configured in its own words.

Topology per test: a bridge; namespace "ha" runs hacontrol (192.0.2.1, 2001:db8::1), "kd"
runs keepalived (192.0.2.2, 2001:db8::2), and "w" only watches (an AF_PACKET witness with
kernel timestamps).

- VMAC, IPv4 and IPv6: both sides on a macvlan with the RFC 5798 virtual MAC; the master
  advertises from 00:00:5e:00:0{1,2}:VRID with its own address as source (over IPv6 its
  link-local), and the other hears it (stays backup, holds no VIP) in both roles, across a
  graceful handover and a preemption.
- Virtual routes and rules: the master holds them, the backup none, and they move with
  mastership in both directions, marked `proto keepalived` on both sides.
- `state MASTER` with `nopreempt`: keepalived clears nopreempt ("nopreempt will not work
  with initial state MASTER"); hacontrol likewise takes over from a lower-priority
  keepalived master, while `state BACKUP` with nopreempt leaves it be.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from tests.interop.ka_util import (
    HaDaemon,
    Instance,
    Keepalived,
    Peer,
    Witness,
    sample_single_holder,
    wait_single_holder,
)
from tests.netns.netns_util import Lab, Netns, require_root, wait_until
from tests.support import require_tool

pytestmark = pytest.mark.interop

VIP = "192.0.2.100/24"
PROTO: dict[str, Any] = {"version": 3, "advert_int": 0.1}


@dataclass
class Side:
    lab: Lab
    tmp: Path
    ha_ns: Netns
    ka_ns: Netns
    witness: Witness
    binary: str

    def hacontrol(self, instance: Instance, name: str = "ha") -> HaDaemon:
        return HaDaemon(self.lab, self.ha_ns, self.tmp, name, [instance])

    def keepalived(self, instance: Instance) -> Keepalived:
        return Keepalived(self.lab, self.ka_ns, self.tmp, "kd", [instance], binary=self.binary)


@pytest.fixture
def side(tmp_path: Path) -> Iterator[Side]:
    require_root()
    binary = require_tool("keepalived")
    with Lab("kx") as lab:
        switch = lab.switch()
        ha_ns, ka_ns, w_ns = lab.netns("ha"), lab.netns("kd"), lab.netns("w")
        lab.plug(ha_ns, switch, "eth0", "192.0.2.1/24", "2001:db8::1/64")
        lab.plug(ka_ns, switch, "eth0", "192.0.2.2/24", "2001:db8::2/64")
        lab.plug(w_ns, switch, "eth0")
        with Witness(w_ns, "eth0") as witness:
            yield Side(lab, tmp_path, ha_ns, ka_ns, witness, binary)


def holder(peers: list[Peer], vip: str, ifname: str) -> list[str]:
    address = vip.split("/")[0]
    return [p.name for p in peers if p.running and p.holds(address, ifname)]


def link_local(ns: Netns) -> IPv6Address | None:
    found = [a.split("/")[0] for a in ns.addresses("eth0") if a.startswith("fe80:")]
    return IPv6Address(found[0]) if found else None


@pytest.mark.parametrize("family", [4, 6])
def test_vmac_with_keepalived_each_master_advertises_from_the_virtual_mac(
    side: Side, family: int
) -> None:
    vrid = 81 if family == 4 else 84
    vip = VIP if family == 4 else "2001:db8::100/64"
    name = f"vrrp.{vrid}"
    # RFC 5798 §7.3: 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID} for IPv6.
    vmac = bytes((0, 0, 0x5E, 0, 1 if family == 4 else 2, vrid))
    src_ha: IPv4Address | IPv6Address | None = IPv4Address("192.0.2.1")
    src_ka: IPv4Address | IPv6Address | None = IPv4Address("192.0.2.2")
    if family == 6:
        # Adverts over IPv6 leave from the parent's link-local (copied onto the VMAC).
        wait_until(lambda: link_local(side.ha_ns) and link_local(side.ka_ns), message="LL")
        src_ha, src_ka = link_local(side.ha_ns), link_local(side.ka_ns)
    ha = side.hacontrol(Instance(vrid, 200, (vip,), **PROTO, hacontrol_extra={"use_vmac": True}))
    ka = side.keepalived(Instance(vrid, 100, (vip,), **PROTO, keepalived_extra=("use_vmac",)))
    ka.start()
    ha.start()
    for peer in (ha, ka):
        peer.wait_ready()
    wait_until(lambda: holder([ha, ka], vip, name) == ["ha"], timeout=15, message="ha master")
    # Both made keepalived's macvlan; the VIP lives on it, not on eth0.
    for ns in (side.ha_ns, side.ka_ns):
        assert ns.link(name) is not None and ns.mac(name) == vmac
    assert not side.ha_ns.has_address("eth0", vip.split("/")[0])
    start = time.time()
    time.sleep(1.0)
    adverts = side.witness.adverts(vrid, start)
    assert adverts and {(a.src_mac, a.src, a.priority) for a in adverts} == {(vmac, src_ha, 200)}, (
        adverts
    )
    assert holder([ha, ka], vip, name) == ["ha"]  # keepalived heard us: it stayed backup

    # A graceful handover: keepalived advertises from the same virtual MAC.
    ha.stop(signal.SIGTERM)
    wait_until(lambda: holder([ha, ka], vip, name) == ["kd"], timeout=10, message="kd master")
    assert side.ha_ns.link(name) is None  # hacontrol removed its macvlan on stop
    handed = time.time()
    time.sleep(1.0)
    theirs = side.witness.adverts(vrid, handed)
    assert theirs and {(a.src_mac, a.src) for a in theirs} == {(vmac, src_ka)}

    # hacontrol comes back and preempts: keepalived hears it on its VMAC and lets go.
    ha.start()
    ha.wait_ready()
    wait_until(lambda: holder([ha, ka], vip, name) == ["ha"], timeout=15, message="preempted")
    back = time.time()
    time.sleep(1.0)
    ours = side.witness.adverts(vrid, back)
    assert ours and {(a.src_mac, a.src) for a in ours} == {(vmac, src_ha)}


def routes(ns: Netns) -> list[tuple[str, str, str]]:
    found = ns.ip_json("route", "show", "table", "all", "proto", "keepalived")
    return sorted((str(r.get("table", "main")), r["dst"], r.get("gateway", "")) for r in found)


def rules(ns: Netns) -> list[tuple[int, str, str]]:
    return sorted(
        (int(r["priority"]), f"{r.get('src')}/{r.get('srclen')}", str(r["table"]))
        for r in ns.ip_json("rule", "show")
        if r.get("protocol") == "keepalived"
    )


def test_virtual_routes_and_rules_move_between_hacontrol_and_keepalived(side: Side) -> None:
    vrid = 82
    ha_extra = {
        "virtual_routes": [
            {"to": "203.0.113.0/24", "via": "192.0.2.254", "dev": "eth0"},
            {"to": "default", "via": "192.0.2.254", "table": 100},
        ],
        "virtual_rules": [{"from": "198.51.100.0/24", "table": 100, "priority": 100}],
    }
    ka_extra = (
        "virtual_routes {",
        "    203.0.113.0/24 via 192.0.2.254 dev eth0",
        "    0.0.0.0/0 via 192.0.2.254 table 100",
        "}",
        "virtual_rules {",
        "    from 198.51.100.0/24 table 100 priority 100",
        "}",
    )
    want_routes = [("100", "default", "192.0.2.254"), ("main", "203.0.113.0/24", "192.0.2.254")]
    want_rules = [(100, "198.51.100.0/24", "100")]
    ha = side.hacontrol(Instance(vrid, 200, (VIP,), **PROTO, hacontrol_extra=ha_extra))
    ka = side.keepalived(Instance(vrid, 100, (VIP,), **PROTO, keepalived_extra=ka_extra))
    ka.start()
    ha.start()
    wait_single_holder([ha, ka], "192.0.2.100", "ha", timeout=15)
    wait_until(lambda: routes(side.ha_ns) == want_routes, message="hacontrol's routes")
    wait_until(lambda: rules(side.ha_ns) == want_rules, message="hacontrol's rules")
    assert routes(side.ka_ns) == [] and rules(side.ka_ns) == []

    ha.stop(signal.SIGTERM)
    wait_single_holder([ha, ka], "192.0.2.100", "kd", timeout=10)
    wait_until(lambda: routes(side.ka_ns) == want_routes, message="keepalived's routes")
    wait_until(lambda: rules(side.ka_ns) == want_rules, message="keepalived's rules")
    assert routes(side.ha_ns) == [] and rules(side.ha_ns) == []

    ha.start()
    wait_single_holder([ha, ka], "192.0.2.100", "ha", timeout=15)
    wait_until(lambda: routes(side.ha_ns) == want_routes, message="routes back on hacontrol")
    wait_until(lambda: routes(side.ka_ns) == [], message="keepalived let go of them")
    assert rules(side.ka_ns) == [] and rules(side.ha_ns) == want_rules


def test_state_master_preempts_despite_nopreempt_as_keepalived_does(side: Side) -> None:
    vrid = 83
    ka = side.keepalived(Instance(vrid, 100, (VIP,), **PROTO))
    ka.start()
    wait_single_holder([ka], "192.0.2.100", "kd", timeout=15)
    # nopreempt with state BACKUP: hacontrol, of higher priority, leaves keepalived master.
    calm = side.hacontrol(
        Instance(
            vrid,
            200,
            (VIP,),
            **PROTO,
            preempt=False,
            hacontrol_extra={"state": "BACKUP"},
        ),
        name="calm",
    )
    calm.start()
    calm.wait_ready()
    assert sample_single_holder([calm, ka], "192.0.2.100", duration=1.5) >= 3
    assert ka.holds("192.0.2.100")
    calm.stop(signal.SIGTERM)
    # The same with state MASTER: nopreempt is cleared, as keepalived clears it.
    eager = side.hacontrol(
        Instance(
            vrid,
            200,
            (VIP,),
            **PROTO,
            preempt=False,
            hacontrol_extra={"state": "MASTER"},
        ),
        name="eager",
    )
    eager.start()
    wait_single_holder([eager, ka], "192.0.2.100", "eager", timeout=15)
    assert "nopreempt has no effect with state MASTER" in eager.log_text()
