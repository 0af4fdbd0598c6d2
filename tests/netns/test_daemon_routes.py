"""Virtual routes, per-VIP `dev` and VMAC through the whole daemon (YAML, reload, the VRRP
process), on the pair of tests/netns/daemon_pair.py.

Covered: a reload that changes a master's routes and moves a VIP to another interface in
place (no transition); a VRRP process killed and restarted as master keeps its routes and
still removes them when it stops (it knows them for its own); a master killed with -9
leaves its routes, and its next start removes them before it listens (keepalived does the
same); a reload that turns use_vmac on restarts the instance onto its macvlan, and one that
turns it off deletes the macvlan.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests.interop.ka_util import HaDaemon, wait_single_holder
from tests.netns.daemon_pair import HIGH, LOW, Net, instance, start_pair
from tests.netns.netns_util import Netns, wait_until

pytestmark = pytest.mark.netns


def our_routes(ns: Netns) -> list[tuple[str, str]]:
    found = ns.ip_json("route", "show", "table", "all", "proto", "keepalived")
    return sorted((str(r.get("table", "main")), r["dst"]) for r in found)


def transitions(daemon: HaDaemon) -> list[str]:
    return [line for line in daemon.log_text().splitlines() if "vrrp.state " in line]


def routed(priority: int, routes: list[dict[str, Any]], **extra: Any) -> Any:
    return instance(priority, hacontrol_extra={"virtual_routes": routes, **extra})


ROUTE_A = {"to": "203.0.113.0/26", "via": "192.0.2.254", "dev": "eth0"}
ROUTE_B = {"to": "203.0.113.64/26", "type": "blackhole"}


def test_a_reload_changes_a_master_s_routes_and_vip_devs_in_place(net: Net) -> None:
    net.a.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
    for ifname in ("eth1", "eth1p"):
        net.a.ip("link", "set", ifname, "up")
    a = net.daemon(net.a, "a", routed(HIGH, [ROUTE_A]))
    a.start()
    wait_single_holder([a], "192.0.2.100", "a", timeout=15)
    wait_until(lambda: our_routes(net.a) == [("main", "203.0.113.0/26")], message="route")
    before = len(transitions(a))
    vips = ["192.0.2.100/24", {"address": "198.51.100.254/24", "dev": "eth1"}]
    a.instances = (routed(HIGH, [ROUTE_B], virtual_ipaddresses=vips),)
    a.write_config()
    out = a.cli("reload")
    assert out.returncode == 0, out.stderr
    assert "changed in place" in out.stdout, out.stdout
    wait_until(lambda: our_routes(net.a) == [("main", "203.0.113.64/26")], message="new routes")
    wait_until(lambda: net.a.has_address("eth1", "198.51.100.254"), message="VIP on eth1")
    # The VIP moves to another interface: gone from eth0, put on eth1.
    vips = [{"address": "192.0.2.100/24", "dev": "eth1"}, "198.51.100.254/24"]
    a.instances = (routed(HIGH, [ROUTE_B], virtual_ipaddresses=vips),)
    a.write_config()
    assert a.cli("reload").returncode == 0
    wait_until(lambda: net.a.has_address("eth1", "192.0.2.100"), message="VIP moved to eth1")
    wait_until(lambda: net.a.has_address("eth0", "198.51.100.254"), message="the other to eth0")
    assert not net.a.has_address("eth0", "192.0.2.100")
    assert not net.a.has_address("eth1", "198.51.100.254")
    assert len(transitions(a)) == before, a.tail()
    a.stop()
    assert our_routes(net.a) == []
    assert not net.a.has_address("eth1", "192.0.2.100")


def test_a_restarted_vrrp_process_keeps_its_routes_and_removes_them_on_stop(net: Net) -> None:
    routes = [ROUTE_A, {"to": "default", "via": "192.0.2.254", "table": 100}]
    want = [("100", "default"), ("main", "203.0.113.0/26")]
    a, _ = start_pair(net, advert_int=1.0, hacontrol_extra={"virtual_routes": routes})
    wait_until(lambda: our_routes(net.a) == want, message="A's routes")
    assert our_routes(net.b) == []
    pid = a.control({"command": "status"})["vrrp_process"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: a.control({"command": "status"})["vrrp_process"]["restarts"] == 1,
        timeout=5,
        message="a new VRRP process",
    )

    def resumed() -> bool:
        (vi,) = a.control({"command": "status"})["vrrp_instances"]
        return (vi["state"], vi["reason"]) == ("MASTER", "resume")

    wait_until(resumed, timeout=15, message="the new process resumed as master")
    time.sleep(2.0)  # two sweeps: nothing to repair, nothing doubled
    assert our_routes(net.a) == want
    assert "vrrp.route_repair" not in a.log_text()
    # The new process knows the routes for its own: leaving master removes them.
    a.stop()
    assert our_routes(net.a) == []
    wait_until(lambda: our_routes(net.b) == want, message="B's routes")


def test_a_crashed_master_s_routes_go_at_its_next_start(net: Net) -> None:
    a, b = start_pair(net, advert_int=1.0, hacontrol_extra={"virtual_routes": [ROUTE_A]})
    wait_until(lambda: our_routes(net.a) == [("main", "203.0.113.0/26")], message="route")
    a.kill9()
    assert our_routes(net.a) == [("main", "203.0.113.0/26")]  # a crash removes nothing
    wait_single_holder([b], "192.0.2.100", "b", timeout=10)
    # Started again below b's priority: it starts as backup and cleans up first.
    a.instances = (routed(LOW - 50, [ROUTE_A], advert_int=1.0),)
    a.write_config()
    a.start()
    wait_until(lambda: our_routes(net.a) == [], message="the stale route removed")
    assert "vrrp.stale_route" in a.log_text()
    assert our_routes(net.b) == [("main", "203.0.113.0/26")]


def test_use_vmac_turned_on_and_off_by_reload(net: Net) -> None:
    a = net.daemon(net.a, "a", instance(HIGH))
    a.start()
    wait_single_holder([a], "192.0.2.100", "a", timeout=15)
    a.instances = (instance(HIGH, hacontrol_extra={"use_vmac": "vmac42"}),)
    a.write_config()
    out = a.cli("reload")
    assert out.returncode == 0 and "restarted" in out.stdout, (out.stdout, out.stderr)
    wait_until(lambda: net.a.has_address("vmac42", "192.0.2.100"), timeout=15, message="VMAC")
    assert not net.a.has_address("eth0", "192.0.2.100")
    assert net.a.mac("vmac42") == bytes.fromhex("00005e00012a")  # VRID 42
    a.instances = (instance(HIGH),)
    a.write_config()
    assert a.cli("reload").returncode == 0
    wait_until(lambda: net.a.has_address("eth0", "192.0.2.100"), timeout=15, message="on eth0")
    wait_until(lambda: net.a.link("vmac42") is None, message="the macvlan deleted")
