"""Beyond election, between real namespaces: virtual routes and rules, per-VIP options
(`dev`, `scope`, `no_track`), excluded VIPs, VMAC, unicast peers a router apart.

Topology: the `test_vrrp_io` lab (routers A and B and a capturing namespace C on one bridge,
192.0.2.0/24 and 2001:db8::/64), plus a second bridge for an inside network where A and B
have eth1 (198.51.100.1 and .2/24) and C has eth1 too. Each router runs one VrrpEngine in a
subprocess (tests/netns/vrrp_driver.py). What the kernel holds is read back with
`ip -j route` / `ip -j rule`, an independent witness.
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

from tests.interop.ka_util import parse_advert
from tests.netns.netns_util import (
    ETH_P_ALL,
    Capture,
    Frame,
    Lab,
    Netns,
    require_root,
    stop_process,
    wait_until,
)
from tests.netns.test_vrrp_io import MAC_A, MAC_B, MAC_C, VIP4, Net, Router, instance
from vrrp import arp

pytestmark = pytest.mark.netns

INSIDE_VIP = "198.51.100.254"
LINK_VIP = "203.0.113.254"
MAC_A1, MAC_B1 = "02:00:5e:10:01:0a", "02:00:5e:10:01:0b"


@dataclass
class Lab2:
    """The io lab plus an inside network on a second bridge (eth1 everywhere)."""

    net: Net
    switch2: tuple[Netns, str]
    port_a1: str
    port_b1: str

    @property
    def a(self) -> Netns:
        return self.net.a

    @property
    def b(self) -> Netns:
        return self.net.b

    @property
    def c(self) -> Netns:
        return self.net.c


@pytest.fixture
def lab2(tmp_path: Path) -> Iterator[Lab2]:
    require_root()
    with Lab("rt") as lab:
        switch = lab.switch()
        switch2 = lab.switch("s2")
        a, b, c = lab.netns("a"), lab.netns("b"), lab.netns("c")
        port_a = lab.plug(a, switch, "eth0", "192.0.2.1/24", "2001:db8::1/64", mac=MAC_A)
        port_b = lab.plug(b, switch, "eth0", "192.0.2.2/24", "2001:db8::2/64", mac=MAC_B)
        lab.plug(c, switch, "eth0", "192.0.2.3/24", "2001:db8::3/64", mac=MAC_C)
        port_a1 = lab.plug(a, switch2, "eth1", "198.51.100.1/24", mac=MAC_A1)
        port_b1 = lab.plug(b, switch2, "eth1", "198.51.100.2/24", mac=MAC_B1)
        lab.plug(c, switch2, "eth1", "198.51.100.3/24")
        net = Net(lab, tmp_path, switch, a, b, c, port_a, port_b)
        wait_until(lambda: net.link_local(a) and net.link_local(b), message="link-local")
        yield Lab2(net, switch2, port_a1, port_b1)
        for router in net.routers:
            stop_process(router.proc, signal.SIGKILL, timeout=5)


def our_routes(ns: Netns) -> set[tuple[str, str, str]]:
    """(table, destination, type) of every route with protocol keepalived, both families."""
    found: set[tuple[str, str, str]] = set()
    for family in ("-4", "-6"):
        for r in ns.ip_json(family, "route", "show", "table", "all", "proto", "keepalived"):
            found.add((str(r.get("table", "main")), r["dst"], r.get("type", "unicast")))
    return found


def routes_to(ns: Netns, dst: str, family: str = "-4") -> list[dict[str, Any]]:
    return list(ns.ip_json(family, "route", "show", "table", "all", "exact", dst))


def our_rules(ns: Netns) -> set[tuple[int, str]]:
    """(priority, selector text) of every rule with protocol keepalived, both families."""
    found: set[tuple[int, str]] = set()
    for family in ("-4", "-6"):
        for r in ns.ip_json(family, "rule", "show"):
            if r.get("protocol") != "keepalived":
                continue
            src = r.get("src", "all")
            words = [f"from {src}/{r['srclen']}" if "srclen" in r else f"from {src}"]
            if "dst" in r:
                words.append(f"to {r['dst']}/{r['dstlen']}" if "dstlen" in r else f"to {r['dst']}")
            if "fwmark" in r:
                words.append(f"fwmark {r['fwmark']}" + (f"/{r['fwmask']}" if "fwmask" in r else ""))
            words.append(f"lookup {r['table']}")
            found.add((int(r["priority"]), " ".join(words)))
    return found


ROUTES: list[dict[str, Any]] = [
    {"dst": "203.0.113.0/26", "via": "192.0.2.254", "dev": "eth0"},
    {"dst": "203.0.113.64/26", "type": "blackhole"},
    {"dst": "203.0.113.128/26", "type": "unreachable", "no_track": True},
    {"dst": "0.0.0.0/0", "via": "192.0.2.254", "table": 100},
    {"dst": "2001:db8:1::/48", "via": "2001:db8::fe", "dev": "eth0", "metric": 50},
]
RULES: list[dict[str, Any]] = [
    {"family": 4, "priority": 100, "table": 100, "src": "192.0.2.0/24"},
    {"family": 4, "priority": 200, "table": 100, "fwmark": 7, "fwmask": 255},
    {"family": 6, "priority": 100, "table": 100, "dst": "2001:db8:1::/48"},
]
EXPECTED_ROUTES = {
    ("main", "203.0.113.0/26", "unicast"),
    ("main", "203.0.113.64/26", "blackhole"),
    ("main", "203.0.113.128/26", "unreachable"),
    ("100", "default", "unicast"),
    ("main", "2001:db8:1::/48", "unicast"),
}
EXPECTED_RULES = {
    (100, "from 192.0.2.0/24 lookup 100"),
    (200, "from all fwmark 0x7/0xff lookup 100"),
    (100, "from all to 2001:db8:1::/48 lookup 100"),
}


def events(router: Router, kind: str) -> list[dict[str, Any]]:
    return [e for e in router.snapshot() if e.get("event") == kind]


def test_routes_and_rules_follow_mastership_and_are_repaired(lab2: Lab2) -> None:
    net = lab2.net
    # An administrator's own route with the key of one of ours: never ours to take away.
    lab2.a.ip("route", "add", "203.0.113.192/26", "dev", "eth0", "proto", "static")
    routes = [*ROUTES, {"dst": "203.0.113.192/26", "dev": "eth0"}]
    ra = net.start(lab2.a, "A", instance("192.0.2.1", 200, routes=routes, rules=RULES))
    rb = net.start(lab2.b, "B", instance("192.0.2.2", 100, routes=routes, rules=RULES))
    ra.wait_state("MASTER")
    rb.wait_state("BACKUP")
    wait_until(lambda: our_routes(lab2.a) == EXPECTED_ROUTES, message="A's routes")
    wait_until(lambda: our_rules(lab2.a) == EXPECTED_RULES, message="A's rules")
    assert our_routes(lab2.b) == set() and our_rules(lab2.b) == set()
    gateway = routes_to(lab2.a, "203.0.113.0/26")
    assert [(r["gateway"], r["dev"], r["protocol"]) for r in gateway] == [
        ("192.0.2.254", "eth0", "keepalived")
    ]
    six = routes_to(lab2.a, "2001:db8:1::/48", "-6")
    assert [(r["gateway"], r["metric"]) for r in six] == [("2001:db8::fe", 50)]
    # The administrator's route is untouched, and the clash is counted, not hidden.
    theirs = routes_to(lab2.a, "203.0.113.192/26")
    assert [r["protocol"] for r in theirs] == ["static"]
    assert ra.status()["errors"].get("vi:add_route", 0) >= 1

    # Deleted by hand on the master: put back (and said), within the 1 s sweep.
    lab2.a.ip("route", "del", "203.0.113.0/26")
    lab2.a.ip("rule", "del", "priority", "200")
    lab2.a.ip("-6", "route", "del", "2001:db8:1::/48")
    wait_until(lambda: our_routes(lab2.a) == EXPECTED_ROUTES, timeout=5, message="repaired")
    wait_until(lambda: our_rules(lab2.a) == EXPECTED_RULES, timeout=5, message="rule repaired")
    repairs = {(e["kind"], e["item"]) for e in events(ra, "route_repair")}
    assert repairs == {
        ("route", "203.0.113.0/26 via 192.0.2.254 dev eth0"),
        ("route", "2001:db8:1::/48 via 2001:db8::fe dev eth0 metric 50"),
        ("rule", "200: from all fwmark 0x7/0xff lookup 100"),
    }, repairs
    # no_track: keepalived leaves it missing until the next transition to master.
    lab2.a.ip("route", "del", "unreachable", "203.0.113.128/26")
    time.sleep(2.5)
    assert ("main", "203.0.113.128/26", "unreachable") not in our_routes(lab2.a)
    assert ra.state() == "MASTER"

    # Failover: the routes and rules leave A with its VIP and follow B.
    stop_process(ra.proc, signal.SIGTERM, timeout=10)
    rb.wait_state("MASTER")
    # B has no route of its own in 203.0.113.192/26: it holds that one too.
    on_b = EXPECTED_ROUTES | {("main", "203.0.113.192/26", "unicast")}
    wait_until(lambda: our_routes(lab2.b) == on_b, message="B's routes")
    wait_until(lambda: our_rules(lab2.b) == EXPECTED_RULES, message="B's rules")
    assert our_routes(lab2.a) == set() and our_rules(lab2.a) == set()
    assert [r["protocol"] for r in routes_to(lab2.a, "203.0.113.192/26")] == ["static"]


def test_an_unreachable_gateway_is_said_once_counted_and_the_master_stays(lab2: Lab2) -> None:
    net = lab2.net
    routes = [
        {"dst": "203.0.113.0/26", "via": "203.0.113.77"},  # on no connected network
        {"dst": "203.0.113.64/26", "via": "192.0.2.254"},
    ]
    ra = net.start(lab2.a, "A", instance("192.0.2.1", 200, routes=routes))
    ra.wait_state("MASTER")
    wait_until(
        lambda: ("main", "203.0.113.64/26", "unicast") in our_routes(lab2.a), message="good route"
    )
    started = time.monotonic()
    wait_until(lambda: ra.status()["errors"].get("vi:add_route", 0) >= 2, message="a retry")
    time.sleep(max(0.0, 5.0 - (time.monotonic() - started)))
    # Retried with backoff (1 s, 2 s, 4 s ...): a handful of attempts, never a busy loop.
    attempts = ra.status()["errors"]["vi:add_route"]
    assert 2 <= attempts <= 5, attempts
    assert ra.state() == "MASTER"
    assert ra.transitions() == [("INIT", "BACKUP", "startup"), ("BACKUP", "MASTER", "master_down")]
    assert ("main", "203.0.113.0/26", "unicast") not in our_routes(lab2.a)
    lines = [line for line in ra.log.read_text().splitlines() if "vrrp.add_route_error" in line]
    said = [line for line in lines if " WARNING " in line]
    assert len(said) == 1, lines
    assert "203.0.113.0/26 via 203.0.113.77" in said[0]
    assert "Network is unreachable" in said[0] and "not on a connected network" in said[0]
    # The gateway becomes reachable: the next retry adds the route.
    lab2.a.ip("addr", "add", "203.0.113.1/24", "dev", "eth1")
    wait_until(
        lambda: ("main", "203.0.113.0/26", "unicast") in our_routes(lab2.a),
        timeout=20,
        message="the route once its gateway is reachable",
    )


def is_garp_for(frame: Frame, address: str) -> bool:
    try:
        parsed = arp.parse_arp(frame.data)
    except arp.FrameError:
        return False
    return parsed.is_gratuitous and parsed.sender_ip == IPv4Address(address)


def test_a_vip_on_another_interface_is_announced_there_and_tracked(lab2: Lab2) -> None:
    net = lab2.net
    sw2_ns, _ = lab2.switch2
    vips = (f"{VIP4}/24", f"{INSIDE_VIP}/24")
    options = {INSIDE_VIP: {"dev": "eth1"}}
    with Capture(sw2_ns, lab2.port_a1, ETH_P_ALL) as inside:
        ra = net.start(lab2.a, "A", instance("192.0.2.1", 200, vips=vips, vip_options=options))
        rb = net.start(lab2.b, "B", instance("192.0.2.2", 100, vips=vips, vip_options=options))
        ra.wait_state("MASTER")
        rb.wait_state("BACKUP")
        frames = inside.wait_for(
            lambda fs: len([f for f in fs if is_garp_for(f, INSIDE_VIP)]) >= 5,
            message="GARP for the inside VIP on eth1",
        )
    assert lab2.a.has_address("eth1", INSIDE_VIP) and not lab2.a.has_address("eth0", INSIDE_VIP)
    assert lab2.a.has_address("eth0", VIP4) and not lab2.a.has_address("eth1", VIP4)
    assert not lab2.b.has_address("eth1", INSIDE_VIP)
    garps = [arp.parse_arp(f.data) for f in frames if is_garp_for(f, INSIDE_VIP)]
    eth1_mac = lab2.a.mac("eth1")
    assert {(g.src_mac, g.sender_mac) for g in garps} == {(eth1_mac, eth1_mac)}
    # Adverts stay on the instance's own interface.
    assert not [f for f in frames if parse_advert(f) is not None]
    assert not [f for f in frames if is_garp_for(f, VIP4)]

    # The inside interface goes down: FAULT (keepalived tracks a VIP's dev), B takes over.
    lab2.a.ip("link", "set", "eth1", "down")
    ra.wait_state("FAULT")
    assert ["dev_link_down"] in [e["faults"] for e in events(ra, "faults")]
    rb.wait_state("MASTER")
    wait_until(lambda: lab2.b.has_address("eth1", INSIDE_VIP), message="B's inside VIP")
    assert not lab2.a.has_address("eth0", VIP4)
    lab2.a.ip("link", "set", "eth1", "up")
    ra.wait_state("MASTER", timeout=15)  # back from FAULT, then preempts
    wait_until(lambda: lab2.a.has_address("eth1", INSIDE_VIP), message="A's inside VIP again")
    # Deleted by hand on the master: repaired on its own interface.
    lab2.a.ip("addr", "del", f"{INSIDE_VIP}/24", "dev", "eth1")
    wait_until(lambda: lab2.a.has_address("eth1", INSIDE_VIP), timeout=5, message="repaired")
    assert any(e["iface"] == "eth1" for e in events(ra, "vip_repair"))


def test_no_track_vip_neither_tracks_its_interface_nor_is_repaired(lab2: Lab2) -> None:
    net = lab2.net
    # scope link on a subnet of its own (the kernel wants one scope per subnet)
    vips = (f"{VIP4}/24", f"{LINK_VIP}/24")
    options = {LINK_VIP: {"dev": "eth1", "no_track": True, "scope": "link"}}
    ra = net.start(lab2.a, "A", instance("192.0.2.1", 200, vips=vips, vip_options=options))
    ra.wait_state("MASTER")
    wait_until(lambda: lab2.a.has_address("eth1", LINK_VIP), message="inside VIP")
    info = [
        i
        for link in lab2.a.ip_json("addr", "show", "dev", "eth1")
        for i in link["addr_info"]
        if i["local"] == LINK_VIP
    ]
    assert [i["scope"] for i in info] == ["link"]
    lab2.a.ip("link", "set", "eth1", "down")
    lab2.a.ip("addr", "del", f"{LINK_VIP}/24", "dev", "eth1")
    time.sleep(2.5)
    assert ra.state() == "MASTER"
    assert not lab2.a.has_address("eth1", LINK_VIP)
    assert not events(ra, "vip_repair")


def test_excluded_vips_are_held_and_announced_but_not_advertised(lab2: Lab2) -> None:
    net = lab2.net
    sw_ns, _ = net.switch
    excluded = ["192.0.2.200/24", "2001:db8::200/64"]
    with Capture(sw_ns, net.port_a, ETH_P_ALL) as from_a:
        ra = net.start(lab2.a, "A", instance("192.0.2.1", 200, excluded=excluded))
        ra.wait_state("MASTER")
        frames = from_a.wait_for(
            lambda fs: len([f for f in fs if parse_advert(f) is not None]) >= 3,
            message="three adverts",
        )
    for address in (VIP4, "192.0.2.200", "2001:db8::200"):
        assert lab2.a.has_address("eth0", address), address
    adverts = [f for f in frames if parse_advert(f) is not None]
    for frame in adverts:
        advert = parse_advert(frame)
        assert advert is not None and advert.count == 1
        # The one address carried is the VIP, right after the 8-byte VRRPv3 header.
        assert IPv4Address(frame.data[34 + 8 : 34 + 12]) == IPv4Address(VIP4)
    # All three announced: GARP for both IPv4 addresses, an NA for the IPv6 one.
    garped = {arp.parse_arp(f.data).sender_ip for f in frames if f.ethertype == 0x0806}
    assert {IPv4Address(VIP4), IPv4Address("192.0.2.200")} <= garped
    targets = set()
    for f in frames:
        try:
            targets.add(arp.parse_na(f.data).target)
        except arp.FrameError:
            continue
    assert IPv6Address("2001:db8::200") in targets


def test_unicast_peers_a_router_apart(tmp_path: Path) -> None:
    """Unicast adverts through a router arrive with TTL 254: heard by default (keepalived
    checks unicast TTL only when min_ttl / max_ttl say so), dropped with min_ttl 255."""
    require_root()
    with Lab("uc") as lab:
        sw1, sw2 = lab.switch("s1"), lab.switch("s2")
        a, b, r = lab.netns("a"), lab.netns("b"), lab.netns("r")
        lab.plug(a, sw1, "eth0", "192.0.2.1/24")
        port_b = lab.plug(b, sw2, "eth0", "198.51.100.2/24")
        lab.plug(r, sw1, "eth0", "192.0.2.254/24")
        lab.plug(r, sw2, "eth1", "198.51.100.254/24")
        r.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        a.ip("route", "add", "default", "via", "192.0.2.254")
        b.ip("route", "add", "default", "via", "198.51.100.254")
        net = Net(lab, tmp_path, sw1, a, b, r, "", port_b)
        try:
            vips = ("203.0.113.10/32",)

            def unicast(me: str, peer: str, priority: int, **extra: Any) -> dict[str, Any]:
                return instance(me, priority, vips=vips, unicast_src=me, peers=[peer], **extra)

            with Capture(b, "eth0", ETH_P_ALL) as to_b:
                ra = net.start(a, "A", unicast("192.0.2.1", "198.51.100.2", 200))
                rb = net.start(b, "B", unicast("198.51.100.2", "192.0.2.1", 100))
                ra.wait_state("MASTER")
                rb.wait_state("BACKUP")
                heard = rb.status()["received"].get("vi", 0)
                time.sleep(1.0)  # five adverts; Master_Down_Interval is 0.7 s
                assert rb.state() == "BACKUP" and ra.state() == "MASTER"
                assert rb.status()["received"].get("vi", 0) >= heard + 3
                assert "bad_ttl" not in rb.drops()
                seen = [parse_advert(f) for f in to_b.collect(0.1)]
            ttls = {(x.ttl, str(x.src), str(x.dst)) for x in seen if x is not None}
            assert ttls == {(254, "192.0.2.1", "198.51.100.2")}, ttls
            # With min_ttl 255 the hop costs the adverts: dropped, and B takes over.
            stop_process(rb.proc, signal.SIGKILL, timeout=5)
            rb2 = net.start(b, "B2", unicast("198.51.100.2", "192.0.2.1", 100, min_ttl=255))
            rb2.wait_state("MASTER")
            wait_until(lambda: rb2.drops().get("bad_ttl", 0) >= 3, message="bad_ttl drops")
        finally:
            for router in net.routers:
                stop_process(router.proc, signal.SIGKILL, timeout=5)


# ---- VMAC ------------------------------------------------------------------------------

VMAC4, VMAC6 = bytes.fromhex("00005e000133"), bytes.fromhex("00005e000233")  # vrid 51


def sysctl(ns: Netns, family: int, ifname: str, key: str) -> str:
    return ns.run("cat", f"/proc/sys/net/ipv{family}/conf/{ifname}/{key}").strip()


def adverts_and_garps(frames: list[Frame], vip: str) -> tuple[list[Frame], list[Frame]]:
    adverts = [f for f in frames if parse_advert(f) is not None]
    if ":" in vip:
        garps = []
        for f in frames:
            try:
                if arp.parse_na(f.data).target == IPv6Address(vip):
                    garps.append(f)
            except arp.FrameError:
                continue
        return adverts, garps
    return adverts, [f for f in frames if is_garp_for(f, vip)]


def test_vmac_adverts_and_garp_leave_from_the_virtual_mac(lab2: Lab2) -> None:
    net = lab2.net
    sw_ns, _ = net.switch
    a, b, c = lab2.a, lab2.b, lab2.c
    with Capture(sw_ns, net.port_a, ETH_P_ALL) as from_a:
        ra = net.start(a, "A", instance("192.0.2.1", 200, use_vmac="vrrp.51"))
        rb = net.start(b, "B", instance("192.0.2.2", 100, use_vmac="vrrp.51"))
        ra.wait_state("MASTER")
        rb.wait_state("BACKUP")
        frames = from_a.wait_for(
            lambda fs: (
                len(adverts_and_garps(fs, VIP4)[0]) >= 3
                and len(adverts_and_garps(fs, VIP4)[1]) >= 5
            ),
            message="adverts and GARPs from A",
        )
    adverts, garps = adverts_and_garps(frames, VIP4)
    # RFC 5798 §7.3's virtual MAC as the source of both, the parent's address in adverts.
    assert {f.src_mac for f in adverts} == {VMAC4}
    assert {(str(x.src), str(x.dst)) for f in adverts if (x := parse_advert(f))} == {
        ("192.0.2.1", "224.0.0.18")
    }
    assert {(f.src_mac, arp.parse_arp(f.data).sender_mac) for f in garps} == {(VMAC4, VMAC4)}
    # keepalived's macvlan: private mode, the virtual MAC, the VIP on it and not on eth0.
    for ns in (a, b):
        link = ns.ip_json("-d", "link", "show", "dev", "vrrp.51")[0]
        assert link["address"] == VMAC4.hex(":")
        assert link["linkinfo"]["info_kind"] == "macvlan"
        assert link["linkinfo"]["info_data"]["mode"] == "private"
    assert a.has_address("vrrp.51", VIP4) and not a.has_address("eth0", VIP4)
    assert not b.has_address("vrrp.51", VIP4)
    for key, value in (("arp_ignore", "1"), ("accept_local", "1"), ("rp_filter", "0")):
        assert sysctl(a, 4, "vrrp.51", key) == value, key
    assert sysctl(a, 6, "vrrp.51", "disable_ipv6") == "1"
    assert (sysctl(a, 4, "eth0", "arp_ignore"), sysctl(a, 4, "eth0", "arp_filter")) == ("1", "1")
    # A host on the LAN asking for the VIP is answered from the virtual MAC only: eth0
    # (arp_ignore=1, arp_filter=1) no longer answers for it.
    with Capture(sw_ns, net.port_a, ETH_P_ALL) as answers:
        c.run("ping", "-c", "1", "-W", "2", "192.0.2.100")
        replies = [
            r
            for f in answers.collect(0.5)
            if f.ethertype == 0x0806
            and (r := arp.parse_arp(f.data)).op == arp.ARPOP_REPLY
            and r.sender_ip == IPv4Address(VIP4)
        ]
    assert replies and {r.sender_mac for r in replies} == {VMAC4}, replies

    # Deleted by someone else: it is ours, so it comes back.
    b.ip("link", "del", "vrrp.51")
    wait_until(lambda: b.link("vrrp.51") is not None, timeout=5, message="B's VMAC again")
    rb.wait_state("BACKUP")

    # Stopped: the macvlan goes, eth0's ARP settings are put back, B takes over from its
    # own VMAC.
    with Capture(sw_ns, net.port_b, ETH_P_ALL) as from_b:
        stop_process(ra.proc, signal.SIGTERM, timeout=10)
        rb.wait_state("MASTER")
        frames_b = from_b.wait_for(
            lambda fs: len(adverts_and_garps(fs, VIP4)[0]) >= 2, message="B's adverts"
        )
    assert a.link("vrrp.51") is None
    assert (sysctl(a, 4, "eth0", "arp_ignore"), sysctl(a, 4, "eth0", "arp_filter")) == ("0", "0")
    assert {f.src_mac for f in adverts_and_garps(frames_b, VIP4)[0]} == {VMAC4}
    assert b.has_address("vrrp.51", VIP4)


def test_vmac_over_ipv6_advertises_from_the_parent_link_local(lab2: Lab2) -> None:
    net = lab2.net
    sw_ns, _ = net.switch
    a = lab2.a
    ll_a = net.link_local(a)
    vip6 = "2001:db8::100"
    with Capture(sw_ns, net.port_a, ETH_P_ALL) as from_a:
        ra = net.start(a, "A", instance(ll_a, 200, vips=(f"{vip6}/64",), use_vmac="vrrp.51"))
        ll_b = net.link_local(lab2.b)
        rb = net.start(lab2.b, "B", instance(ll_b, 100, vips=(f"{vip6}/64",), use_vmac="vrrp.51"))
        ra.wait_state("MASTER")
        rb.wait_state("BACKUP")  # B hears A's adverts on its own VMAC
        frames = from_a.wait_for(
            lambda fs: (
                len(adverts_and_garps(fs, vip6)[0]) >= 3
                and len(adverts_and_garps(fs, vip6)[1]) >= 5
            ),
            message="adverts and NAs from A",
        )
    adverts, nas = adverts_and_garps(frames, vip6)
    assert {f.src_mac for f in adverts} == {VMAC6}
    assert {str(x.src) for f in adverts if (x := parse_advert(f))} == {ll_a}
    assert {(f.src_mac, arp.parse_na(f.data).target_mac) for f in nas} == {(VMAC6, VMAC6)}
    info = {
        (i["local"], i.get("preferred_life_time"))
        for link in a.ip_json("-6", "addr", "show", "dev", "vrrp.51")
        for i in link["addr_info"]
    }
    # The parent's link-local, deprecated (never a source of its own accord), and the VIP;
    # no EUI-64 address made from the shared virtual MAC.
    assert (ll_a, 0) in info and vip6 in {local for local, _ in info}
    assert len(info) == 2, info
    time.sleep(1.0)
    assert rb.state() == "BACKUP" and not lab2.b.has_address("vrrp.51", vip6)
    stop_process(ra.proc, signal.SIGTERM, timeout=10)
    assert a.link("vrrp.51") is None
    rb.wait_state("MASTER")


def test_vmac_xmit_base_advertises_from_the_interface_itself(lab2: Lab2) -> None:
    net = lab2.net
    sw_ns, _ = net.switch
    with Capture(sw_ns, net.port_a, ETH_P_ALL) as from_a:
        ra = net.start(
            lab2.a, "A", instance("192.0.2.1", 200, use_vmac="vip51", vmac_xmit_base=True)
        )
        ra.wait_state("MASTER")
        frames = from_a.wait_for(
            lambda fs: (
                len(adverts_and_garps(fs, VIP4)[0]) >= 3
                and len(adverts_and_garps(fs, VIP4)[1]) >= 5
            ),
            message="adverts and GARPs from A",
        )
    adverts, garps = adverts_and_garps(frames, VIP4)
    assert {f.src_mac for f in adverts} == {lab2.a.mac("eth0")}
    assert {f.src_mac for f in garps} == {VMAC4}
    assert lab2.a.has_address("vip51", VIP4)
