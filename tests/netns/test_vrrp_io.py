"""VrrpEngine between real namespaces: election, failover, GARP, unicast, FAULT, bad input, IPv6.

Topology per test: a bridge in its own namespace, two routers A and B each running one
VrrpEngine in a subprocess (tests/netns/vrrp_driver.py, inside its namespace), and a third
namespace C that only captures frames (AF_PACKET) and injects packets. Everything lives in
192.0.2.0/24 and 2001:db8::/64 inside namespaces the test created.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest

from tests.netns.netns_util import (
    ETH_P_ALL,
    Capture,
    Frame,
    Lab,
    Netns,
    in_netns,
    require_root,
    stop_process,
    wait_until,
)
from vrrp import arp, packet
from vrrp.sockets import open_vrrp_socket, send_vrrp
from vrrp.types import VRRP_MCAST_V4, VRRP_MCAST_V6, Advertisement, IPAddress

pytestmark = pytest.mark.netns

DRIVER = Path(__file__).with_name("vrrp_driver.py")
VIP4 = "192.0.2.100"
VIP6 = "2001:db8::100"
MAC_A, MAC_B, MAC_C = "02:00:5e:10:00:0a", "02:00:5e:10:00:0b", "02:00:5e:10:00:0c"


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


@dataclass
class Router:
    """One VrrpEngine subprocess and what it has said so far."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    commands: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True, name=f"read-{self.name}").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(event)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def wait_event(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 10.0, what: str
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None and not any(map(predicate, self.snapshot())):
                raise AssertionError(f"{self.name} exited {self.proc.returncode}; log {self.log}")
            return next((e for e in self.snapshot() if predicate(e)), None)

        result: dict[str, Any] = wait_until(found, timeout=timeout, message=f"{self.name}: {what}")
        return result

    def command(self, line: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        self.commands += 1
        return self.commands

    def status(self) -> dict[str, Any]:
        serial = self.command("status")
        return self.wait_event(
            lambda e: e.get("event") == "status" and e.get("id") == serial, what="status"
        )

    def state(self, instance: str = "vi") -> str:
        return str(self.status()["states"][instance])

    def wait_state(self, state: str, *, instance: str = "vi", timeout: float = 10.0) -> None:
        wait_until(
            lambda: self.state(instance) == state,
            timeout=timeout,
            message=f"{self.name} {instance} to be {state} (log {self.log})",
        )

    def drops(self) -> dict[str, int]:
        return dict(self.status()["drops"])

    def transitions(self, instance: str = "vi") -> list[tuple[str, str, str]]:
        return [
            (e["old"], e["new"], e["reason"])
            for e in self.snapshot()
            if e.get("event") == "state" and e.get("instance") == instance
        ]


@dataclass
class Net:
    lab: Lab
    tmp: Path
    switch: tuple[Netns, str]
    a: Netns
    b: Netns
    c: Netns
    port_a: str
    port_b: str
    routers: list[Router] = field(default_factory=list)

    def start(self, ns: Netns, name: str, *instances: dict[str, Any]) -> Router:
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as stderr:
            proc = self.lab.python(
                ns,
                [str(DRIVER), json.dumps({"instances": list(instances)})],
                stderr=stderr.fileno(),
            )
        router = Router(name, proc, log)
        self.routers.append(router)
        router.wait_event(lambda e: e.get("event") == "ready", what="ready")
        return router

    def link_local(self, ns: Netns) -> str:
        found = [a.split("/")[0] for a in ns.addresses("eth0") if a.startswith("fe80:")]
        assert found, f"no link-local address in {ns.name}"
        return found[0]


def instance(
    primary: str,
    priority: int,
    *,
    version: int = 3,
    advert_int: int = 20,
    vips: tuple[str, ...] = (f"{VIP4}/24",),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": "vi",
        "interface": "eth0",
        "vrid": 51,
        "version": version,
        "priority": priority,
        "advert_int": advert_int,
        "primary": primary,
        "vips": list(vips),
        # A short delayed burst keeps the GARP checks quick; keepalived's default is 5 s.
        "garp": {"master_repeat": 5, "master_delay": 1.0},
        **extra,
    }


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    require_root()
    with Lab("io") as lab:
        switch = lab.switch()
        a, b, c = lab.netns("a"), lab.netns("b"), lab.netns("c")
        port_a = lab.plug(a, switch, "eth0", "192.0.2.1/24", "2001:db8::1/64", mac=MAC_A)
        port_b = lab.plug(b, switch, "eth0", "192.0.2.2/24", "2001:db8::2/64", mac=MAC_B)
        lab.plug(c, switch, "eth0", "192.0.2.3/24", "2001:db8::3/64", mac=MAC_C)
        network = Net(lab, tmp_path, switch, a, b, c, port_a, port_b)
        wait_until(lambda: network.link_local(a) and network.link_local(b), message="LL")
        yield network
        for router in network.routers:
            stop_process(router.proc, signal.SIGKILL, timeout=5)


def vip_holders(net: Net, vip: str = VIP4) -> list[str]:
    return [ns.name for ns in (net.a, net.b) if ns.has_address("eth0", vip)]


def injector(net: Net, family: socket.AddressFamily = socket.AF_INET) -> tuple[socket.socket, int]:
    """A raw VRRP socket in C (the same setup as the engine's), and eth0's ifindex there."""
    ifindex: int = in_netns(net.c.name, lambda: socket.if_nametoindex("eth0"))
    sock: socket.socket = in_netns(net.c.name, lambda: open_vrrp_socket(family, "eth0", ifindex))
    return sock, ifindex


def is_vrrp_v4(frame: Frame) -> bool:
    return frame.ethertype == 0x0800 and frame.data[14 + 9] == 112


# ---- tests -------------------------------------------------------------------


def test_election_one_master_and_vip_on_exactly_one(net: Net) -> None:
    with Capture(net.c, "eth0", ETH_P_ALL) as cap:
        ra = net.start(net.a, "A", instance("192.0.2.1", 200, version=2, advert_int=100))
        rb = net.start(net.b, "B", instance("192.0.2.2", 100, version=2, advert_int=100))
        ra.wait_state("MASTER", timeout=15)
        rb.wait_state("BACKUP")
        wait_until(lambda: vip_holders(net) == [net.a.name], message="VIP on A only")
        # Stable for a few advert intervals: B keeps hearing A and never takes over.
        time.sleep(2.5)
        assert rb.state() == "BACKUP" and ra.state() == "MASTER"
        assert vip_holders(net) == [net.a.name]
        assert ("INIT", "BACKUP", "startup") in rb.transitions()
        assert rb.status()["received"].get("vi", 0) >= 2
        # The adverts on the wire are A's, VRRPv2 to 224.0.0.18 with TTL 255, and decode.
        adverts = [f for f in cap.collect(0.2) if is_vrrp_v4(f)]
        assert adverts, "no VRRP frames seen in C"
        for frame in adverts:
            ip_header = frame.data[14:34]
            assert frame.src_mac == _mac_bytes(MAC_A)
            assert ip_header[8] == 255
            assert IPv4Address(ip_header[16:20]) == VRRP_MCAST_V4
            ihl = (ip_header[0] & 0x0F) * 4
            adv = packet.decode(
                frame.data[14 + ihl :],
                IPv4Address(ip_header[12:16]),
                VRRP_MCAST_V4,
            )
            assert (adv.version, adv.vrid, adv.priority) == (2, 51, 200)
            assert adv.addresses == (IPv4Address(VIP4),)


def test_kill_master_backup_takes_over_and_sends_garp(net: Net) -> None:
    ra = net.start(net.a, "A", instance("192.0.2.1", 200))
    rb = net.start(net.b, "B", instance("192.0.2.2", 100))
    ra.wait_state("MASTER")
    rb.wait_state("BACKUP")
    with Capture(net.c, "eth0", ETH_P_ALL) as cap:
        killed_at = time.monotonic()
        stop_process(ra.proc, signal.SIGKILL, timeout=5)
        rb.wait_state("MASTER", timeout=10)
        took = time.monotonic() - killed_at
        assert net.b.has_address("eth0", VIP4)
        assert ("BACKUP", "MASTER", "master_down") in rb.transitions()
        # Master_Down_Interval at 0.2 s adverts and priority 100: 0.6 + 0.12 s.
        assert took < 3.0, f"takeover took {took:.2f}s"
        expected = arp.gratuitous_arp(_mac_bytes(MAC_B), IPv4Address(VIP4))
        # 5 frames at once, 5 more master_delay (1 s) later: keepalived's pattern.
        cap.wait_for(
            lambda fs: len(cap.matching(expected)) >= 10,
            timeout=5,
            message="two bursts of 5 gratuitous ARPs",
        )
        garps = cap.matching(expected)
        first, second = garps[:5], garps[5:10]
        assert first[-1].at - first[0].at < 0.5
        assert 0.7 < second[0].at - first[0].at < 2.0
    # A comes back (lower priority now) with the VIP the killed process left on eth0: it
    # starts as backup and takes the stale VIP back, so only the master answers for it.
    assert net.a.has_address("eth0", VIP4)
    ra2 = net.start(net.a, "A2", instance("192.0.2.1", 50))
    ra2.wait_state("BACKUP")
    wait_until(lambda: vip_holders(net) == [net.b.name], message="stale VIP removed from A")
    assert rb.state() == "MASTER"


def test_sigterm_master_resigns_with_priority_zero(net: Net) -> None:
    # 1 s adverts: Master_Down_Interval is 3.6 s for B, Skew_Time only 0.61 s.
    ra = net.start(net.a, "A", instance("192.0.2.1", 200, advert_int=100))
    rb = net.start(net.b, "B", instance("192.0.2.2", 100, advert_int=100))
    ra.wait_state("MASTER", timeout=15)
    rb.wait_state("BACKUP")
    wait_until(lambda: vip_holders(net) == [net.a.name], message="VIP on A")
    with Capture(net.c, "eth0", ETH_P_ALL) as cap:
        stopped_at = time.monotonic()
        assert stop_process(ra.proc, signal.SIGTERM, timeout=10) == 0
        assert any(e.get("event") == "stopped" for e in ra.snapshot())
        rb.wait_state("MASTER", timeout=5)
        took = time.monotonic() - stopped_at
        assert took < 2.5, f"takeover after priority 0 took {took:.2f}s (not Skew_Time)"
        assert ("BACKUP", "MASTER", "priority_zero") in rb.transitions()
        assert vip_holders(net) == [net.b.name]  # A removed its VIP before exiting
        resign = [f for f in cap.collect(0.1) if is_vrrp_v4(f) and f.src_mac == _mac_bytes(MAC_A)]
        priorities = [f.data[14 + 20 + 2] for f in resign]
        assert 0 in priorities


def test_garbage_and_hostile_packets_are_dropped_and_counted(net: Net) -> None:
    ra = net.start(net.a, "A", instance("192.0.2.1", 200))
    rb = net.start(net.b, "B", instance("192.0.2.2", 100))
    ra.wait_state("MASTER")
    rb.wait_state("BACKUP")
    sock, ifindex = injector(net)
    src, group = IPv4Address("192.0.2.3"), VRRP_MCAST_V4
    takeover = Advertisement(3, 51, 254, 20, (IPv4Address(VIP4),))
    valid = packet.encode(takeover, src, group)
    corrupt_checksum = valid[:6] + bytes([valid[6] ^ 0xFF]) + valid[7:]
    bad: list[bytes] = [
        b"",
        b"\x31",
        os.urandom(3),
        b"\xff" * 40,
        corrupt_checksum,
        valid[:7],  # truncated header
        packet.encode(Advertisement(3, 51, 254, 20, (IPv4Address(VIP4),)), src, group)[:-2],
    ]
    before_a, before_b = sum(ra.drops().values()), sum(rb.drops().values())
    try:
        for payload in bad:
            send_vrrp(sock, payload, src, group, ifindex)
        # The right bytes with a TTL that says they crossed a router (RFC 5798 §7.1).
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 64)
        send_vrrp(sock, valid, src, group, ifindex)
    finally:
        sock.close()
    expected = len(bad) + 1
    # A packet claiming to come from A's own address (C holds it as a secondary here): A
    # ignores it as its own, B hears "A" at 254 and simply keeps following. The kernel drops
    # a local source as martian unless accept_local is set, as it is in setups where our own
    # packets can come back to us; set it so the engine's own check is what is tested.
    net.a.run("sysctl", "-qw", "net.ipv4.conf.eth0.accept_local=1")
    net.c.ip("addr", "add", "192.0.2.1/32", "dev", "eth0")
    spoof, ifindex = injector(net)
    try:
        own = IPv4Address("192.0.2.1")
        send_vrrp(spoof, packet.encode(takeover, own, group), own, group, ifindex)
    finally:
        spoof.close()
    wait_until(lambda: ra.drops().get("own_packet", 0) >= 1, message="A: own_packet drop")
    wait_until(
        lambda: (
            sum(rb.drops().values()) - before_b >= expected
            and sum(ra.drops().values()) - before_a >= expected
        ),
        message=f"{expected} drops counted on A and B",
    )
    drops_b = rb.drops()
    assert any("ttl" in reason or "hop" in reason for reason in drops_b), drops_b
    # Nothing changed: A is still master, B backup, and nobody went anywhere.
    time.sleep(0.5)
    assert ra.state() == "MASTER" and rb.state() == "BACKUP"
    assert len(ra.transitions()) == 2 and len(rb.transitions()) == 1
    assert ra.proc.poll() is None and rb.proc.poll() is None


def test_unicast_peers_and_non_peer_dropped_with_check_unicast_src(net: Net) -> None:
    with Capture(net.c, "eth0", ETH_P_ALL) as cap:
        ra = net.start(
            net.a, "A", instance("192.0.2.1", 200, unicast_src="192.0.2.1", peers=["192.0.2.2"])
        )
        # keepalived's check_unicast_src: adverts from anyone but the peers are dropped
        # (without it, keepalived and hacontrol hear any source).
        rb = net.start(
            net.b,
            "B",
            instance(
                "192.0.2.2",
                100,
                unicast_src="192.0.2.2",
                peers=["192.0.2.1"],
                check_unicast_src=True,
            ),
        )
        ra.wait_state("MASTER")
        rb.wait_state("BACKUP")
        time.sleep(0.5)
        assert rb.state() == "BACKUP"  # it hears A's unicast adverts
        multicast = [
            f
            for f in cap.collect(0.1)
            if is_vrrp_v4(f) and IPv4Address(f.data[30:34]) == VRRP_MCAST_V4
        ]
        assert multicast == [], "unicast instances sent to the multicast group"
    # C, not a peer, claims the VRID with a higher priority, unicast to B and to the group.
    sock, ifindex = injector(net)
    src = IPv4Address("192.0.2.3")
    adv = Advertisement(3, 51, 254, 20, (IPv4Address(VIP4),))
    try:
        for _ in range(10):
            for dst in (IPv4Address("192.0.2.2"), VRRP_MCAST_V4):
                send_vrrp(sock, packet.encode(adv, src, dst), src, dst, ifindex)
    finally:
        sock.close()
    wait_until(lambda: rb.drops().get("not_a_peer", 0) >= 20, message="20 not_a_peer drops on B")
    assert rb.state() == "BACKUP" and ra.state() == "MASTER"
    assert vip_holders(net) == [net.a.name]
    # And B still takes over from A through unicast when A dies.
    stop_process(ra.proc, signal.SIGKILL, timeout=5)
    rb.wait_state("MASTER")


def test_interface_down_faults_and_recovers(net: Net) -> None:
    ra = net.start(net.a, "A", instance("192.0.2.1", 200))
    rb = net.start(net.b, "B", instance("192.0.2.2", 100))
    ra.wait_state("MASTER")
    rb.wait_state("BACKUP")
    wait_until(lambda: vip_holders(net) == [net.a.name], message="VIP on A")

    net.a.ip("link", "set", "eth0", "down")
    ra.wait_state("FAULT")
    rb.wait_state("MASTER")
    assert ("MASTER", "FAULT", "interface_down") in ra.transitions()
    wait_until(lambda: vip_holders(net) == [net.b.name], message="VIP moved to B")

    net.a.ip("link", "set", "eth0", "up")
    ra.wait_state("MASTER")  # back, and preempts B with the higher priority
    rb.wait_state("BACKUP")
    assert ("FAULT", "BACKUP", "interface_up") in ra.transitions()
    wait_until(lambda: vip_holders(net) == [net.a.name], message="VIP back on A")

    # Carrier loss (the switch port goes down) is a fault too.
    sw_ns, _ = net.switch
    sw_ns.ip("link", "set", net.port_a, "down")
    ra.wait_state("FAULT")
    sw_ns.ip("link", "set", net.port_a, "up")
    ra.wait_state("MASTER")


def test_interface_removed_and_recreated_with_new_ifindex(net: Net) -> None:
    ra = net.start(net.a, "A", instance("192.0.2.1", 200))
    rb = net.start(net.b, "B", instance("192.0.2.2", 100))
    ra.wait_state("MASTER")
    rb.wait_state("BACKUP")
    old_index = net.a.link("eth0")
    assert old_index is not None
    net.a.ip("link", "del", "eth0")
    ra.wait_state("FAULT")
    rb.wait_state("MASTER")
    net.lab.plug(net.a, net.switch, "eth0", "192.0.2.1/24", "2001:db8::1/64", mac=MAC_A)
    new_index = net.a.link("eth0")
    assert new_index is not None and new_index["ifindex"] != old_index["ifindex"]
    # New sockets on the new ifindex: A hears B, preempts, and B hears A again.
    ra.wait_state("MASTER")
    rb.wait_state("BACKUP")
    wait_until(lambda: vip_holders(net) == [net.a.name], message="VIP back on A")


def test_interface_absent_at_start_is_fault_until_it_appears(net: Net) -> None:
    ra = net.start(net.a, "A", {**instance("192.0.2.11", 200), "interface": "eth1"})
    ra.wait_state("FAULT")
    # Said as it is: the interface does not exist (not "down", which sends an operator to
    # the cabling when the config has a typo).
    assert ra.transitions() == [("INIT", "FAULT", "no_such_interface")]
    net.lab.plug(net.a, net.switch, "eth1", "192.0.2.11/24")
    ra.wait_state("MASTER")
    assert ("FAULT", "BACKUP", "interface_up") in ra.transitions()
    wait_until(lambda: net.a.has_address("eth1", VIP4), message="VIP on the new eth1")


def test_ipv6_v3_election_and_unsolicited_na(net: Net) -> None:
    ll_a, ll_b = net.link_local(net.a), net.link_local(net.b)
    vips = (f"{VIP6}/64",)
    with Capture(net.c, "eth0", ETH_P_ALL) as cap:
        ra = net.start(net.a, "A", instance(ll_a, 200, vips=vips))
        rb = net.start(net.b, "B", instance(ll_b, 100, vips=vips))
        ra.wait_state("MASTER")
        rb.wait_state("BACKUP")
        wait_until(lambda: vip_holders(net, VIP6) == [net.a.name], message="IPv6 VIP on A")
        # nodad: the VIP is usable at once, not tentative.
        info = net.a.ip_json("-6", "addr", "show", "dev", "eth0")
        vip_info = [i for i in info[0]["addr_info"] if i["local"] == VIP6]
        assert vip_info and not vip_info[0].get("tentative")
        expected = arp.unsolicited_na(_mac_bytes(MAC_A), IPv6Address(VIP6))
        cap.wait_for(
            lambda fs: len([f for f in fs if f.data[: len(expected)] == expected]) >= 5,
            message="5 unsolicited NAs for the VIP",
        )
        # Adverts come from A's link-local address, to ff02::12 with hop limit 255.
        adverts = [f for f in cap.collect(0.3) if f.ethertype == 0x86DD and f.data[14 + 6] == 112]
        assert adverts
        for frame in adverts:
            header = frame.data[14:54]
            assert header[7] == 255
            assert ip_address(header[8:24]) == IPv6Address(ll_a)
            assert ip_address(header[24:40]) == VRRP_MCAST_V6
            adv = packet.decode(frame.data[54:], IPv6Address(ll_a), VRRP_MCAST_V6)
            assert (adv.version, adv.priority, adv.addresses) == (3, 200, (IPv6Address(VIP6),))
    # A higher priority that crossed a router (hop limit 64) must not win (RFC 5798 §7.1).
    sock, ifindex = injector(net, socket.AF_INET6)
    ll_c = IPv6Address(net.link_local(net.c))
    adv = Advertisement(3, 51, 254, 20, (IPv6Address(VIP6),))
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 64)
        for _ in range(5):
            send_vrrp(sock, packet.encode(adv, ll_c, VRRP_MCAST_V6), ll_c, VRRP_MCAST_V6, ifindex)
    finally:
        sock.close()
    wait_until(lambda: ra.drops().get("bad_ttl", 0) >= 5, message="5 bad_ttl drops on A")
    assert ra.state() == "MASTER"
    # v6 failover too.
    stop_process(ra.proc, signal.SIGKILL, timeout=5)
    rb.wait_state("MASTER")
    wait_until(lambda: net.b.has_address("eth0", VIP6), message="IPv6 VIP on B")


def test_two_instances_share_a_socket_and_priority_change(net: Net) -> None:
    def pair(name: str, vrid: int, primary: str, priority: int, vip: str) -> dict[str, Any]:
        return {**instance(primary, priority, vips=(vip,)), "name": name, "vrid": vrid}

    ra = net.start(
        net.a,
        "A",
        pair("v1", 1, "192.0.2.1", 200, "192.0.2.101/24"),
        pair("v2", 2, "192.0.2.1", 100, "192.0.2.102/24"),
    )
    rb = net.start(
        net.b,
        "B",
        pair("v1", 1, "192.0.2.2", 100, "192.0.2.101/24"),
        pair("v2", 2, "192.0.2.2", 200, "192.0.2.102/24"),
    )
    ra.wait_state("MASTER", instance="v1")
    rb.wait_state("MASTER", instance="v2")
    ra.wait_state("BACKUP", instance="v2")
    rb.wait_state("BACKUP", instance="v1")
    assert net.a.has_address("eth0", "192.0.2.101") and not net.a.has_address("eth0", "192.0.2.102")
    assert net.b.has_address("eth0", "192.0.2.102") and not net.b.has_address("eth0", "192.0.2.101")
    # Tracking lowers A's v1 priority below B's: B preempts.
    ra.command("priority v1 50")
    rb.wait_state("MASTER", instance="v1")
    ra.wait_state("BACKUP", instance="v1")
    wait_until(lambda: net.b.has_address("eth0", "192.0.2.101"), message="v1 VIP on B")


def test_flood_of_lower_priority_adverts_draws_bounded_answers(net: Net) -> None:
    """A master answers a lower-priority master once per Advertisement_Interval, not per advert.

    Unlimited, each spoofed lower-priority advert drew one advert and a burst of 5 GARPs
    (101,900 packets/s made a master send 528,079 frames in 20 s).
    """
    ra = net.start(net.a, "A", instance("192.0.2.1", 200, advert_int=100))
    ra.wait_state("MASTER", timeout=15)
    time.sleep(1.5)  # past the delayed GARP burst (master_delay 1 s)
    sock, ifindex = injector(net)
    src = IPv4Address("192.0.2.3")
    lower = packet.encode(Advertisement(3, 51, 100, 100, (IPv4Address(VIP4),)), src, VRRP_MCAST_V4)
    received_before = ra.status()["received"].get("vi", 0)
    sent = 0
    with Capture(net.c, "eth0", ETH_P_ALL) as cap:
        started = time.monotonic()
        try:
            # 2,000 adverts in 20 bursts of 100, 50 ms apart: about 2 s at ~1,000/s.
            for _ in range(20):
                for _ in range(100):
                    send_vrrp(sock, lower, src, VRRP_MCAST_V4, ifindex)
                    sent += 1
                time.sleep(0.05)
        finally:
            sock.close()
        frames = cap.collect(0.3)
        window = time.monotonic() - started
    from_a = [f for f in frames if f.src_mac == _mac_bytes(MAC_A)]
    adverts = [f for f in from_a if is_vrrp_v4(f)]
    garps = [f for f in from_a if f.ethertype == 0x0806]
    intervals = window / 1.0 + 1
    status = ra.status()
    received = status["received"].get("vi", 0) - received_before
    suppressed = status["drops"].get("answer_suppressed", 0)
    assert received >= sent // 2, f"only {received} of {sent} adverts reached A"
    # At most one answer and one 5-frame burst per interval, plus the periodic adverts.
    assert len(adverts) <= 2 * intervals + 1, (len(adverts), window)
    assert len(garps) <= 5 * intervals, (len(garps), window)
    assert suppressed >= received - intervals, (suppressed, received, window)
    assert ra.state() == "MASTER"


def test_an_advert_that_cannot_be_encoded_is_logged_once_and_counted(net: Net) -> None:
    # An IPv4 instance whose only VIP is IPv6 has nothing to put in an IPv4 advert
    # (RFC 5798 §5.2.9), so the codec refuses every advert it would send.
    ra = net.start(net.a, "A", instance("192.0.2.1", 200, vips=(f"{VIP6}/64",)))
    ra.wait_state("MASTER", timeout=15)
    wait_until(
        lambda: ra.status()["errors"].get("vi:send_advert", 0) >= 5,
        message="5 failed adverts counted",
    )
    lines = ra.log.read_text().splitlines()
    refused = [line for line in lines if "vrrp.encode_error" in line]
    assert len([line for line in refused if " ERROR " in line]) == 1, refused[:3]
    assert "addresses=0" in refused[0] and "1..255 fit the Count field" in refused[0]
    assert not any("Traceback" in line or "action_error" in line for line in lines)
    assert ra.state() == "MASTER"


def test_unicast_ttl_is_sent_and_checked_only_when_configured(net: Net) -> None:
    """keepalived's unicast defaults: any TTL / Hop Limit and any source is heard; unicast_ttl
    sets what is sent, min_ttl / max_ttl bound what is heard (and imply check_unicast_src).

    keepalived sends IPv6 unicast adverts with hop limit 64 unless unicast_ttl is set; hacontrol
    used to drop them as bad_ttl, so both directors stayed master for good.
    """
    a6, b6, c6 = (IPv6Address(f"2001:db8::{n}") for n in (1, 2, 3))
    vips = (f"{VIP6}/64",)

    def unicast(me: IPv6Address, peer: IPv6Address, priority: int, **extra: Any) -> dict[str, Any]:
        return instance(
            str(me), priority, vips=vips, unicast_src=str(me), peers=[str(peer)], **extra
        )

    sw_ns, _ = net.switch
    with Capture(sw_ns, net.port_b, ETH_P_ALL) as from_b:
        rb = net.start(net.b, "B", unicast(b6, a6, 200, unicast_ttl=64))
        ra = net.start(net.a, "A", unicast(a6, b6, 100))
        rb.wait_state("MASTER")
        ra.wait_state("BACKUP")
        received = ra.status()["received"].get("vi", 0)
        time.sleep(1.0)  # five adverts; Master_Down_Interval is 0.7 s
        assert ra.state() == "BACKUP" and rb.state() == "MASTER"
        assert ra.status()["received"].get("vi", 0) >= received + 3
        assert "bad_ttl" not in ra.drops(), ra.drops()
        adverts = [
            f for f in from_b.collect(0.1) if f.ethertype == 0x86DD and f.data[14 + 6] == 112
        ]
        assert adverts, "B's unicast adverts on its switch port"
        assert {(f.data[14 + 7], ip_address(f.data[38:54])) for f in adverts} == {(64, a6)}
    # No check_unicast_src: a unicast advert from a stranger is heard, as by keepalived.
    sock, ifindex = injector(net, socket.AF_INET6)
    stranger = Advertisement(3, 51, 150, 20, (IPv6Address(VIP6),))
    before = ra.status()["received"].get("vi", 0)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 64)
        for _ in range(3):
            send_vrrp(sock, packet.encode(stranger, c6, a6), c6, a6, ifindex)
    finally:
        sock.close()
    wait_until(lambda: ra.status()["received"].get("vi", 0) >= before + 3, message="A hears C")
    # With min_ttl, B's hop limit 64 is out of range: dropped, and A takes over.
    stop_process(ra.proc, signal.SIGKILL, timeout=5)
    ra2 = net.start(net.a, "A2", unicast(a6, b6, 100, min_ttl=128))
    ra2.wait_state("MASTER")
    wait_until(lambda: ra2.drops().get("bad_ttl", 0) >= 3, message="3 bad_ttl drops on A2")


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_a_burst_of_every_vrid_waits_whole_in_the_receive_buffer(
    net: Net, family: socket.AddressFamily
) -> None:
    """A master sends the adverts of all its instances of one interval at the same moment
    (vrrp.fsm.advert_due_after), so one socket may be handed 255 VRIDs at once; behind a
    busy loop none of them may be dropped for want of buffer (the kernel's default holds
    fewer on drivers that give a small frame a page)."""
    ifindex_b: int = in_netns(net.b.name, lambda: socket.if_nametoindex("eth0"))
    rx: socket.socket = in_netns(net.b.name, lambda: open_vrrp_socket(family, "eth0", ifindex_b))
    tx, ifindex = injector(net, family)
    try:
        if family == socket.AF_INET:
            src: IPAddress = IPv4Address("192.0.2.3")
            group: IPAddress = VRRP_MCAST_V4
            vip: IPAddress = IPv4Address(VIP4)
        else:
            wait_until(lambda: any(a.startswith("fe80:") for a in net.c.addresses("eth0")))
            src = IPv6Address(net.link_local(net.c))
            group, vip = VRRP_MCAST_V6, IPv6Address(VIP6)
        # Nothing reads rx meanwhile: everything must still be queued at the end.
        for _round in range(2):  # as a master sends 255 VRIDs twice before the reader runs
            for vrid in range(1, 256):
                payload = packet.encode(Advertisement(3, vrid, 100, 100, (vip,)), src, group)
                send_vrrp(tx, payload, src, group, ifindex)
        got = 0
        for _ in range(1000):
            try:
                rx.recvmsg(4096, 256)
            except BlockingIOError:
                break
            got += 1
        assert got == 2 * 255
    finally:
        rx.close()
        tx.close()
