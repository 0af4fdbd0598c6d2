"""Debian's real Prometheus scrapes a running director pair and evaluates everything shipped
in monitoring/: every dashboard query, every alert's expression, and every alert firing
once its condition is made true.

    LAN 192.0.2.0/24:          a (eth0 .1)   b (eth0 .2)   x (.9: a real server, a prankster)
    management 198.51.100.0/24: a (mgmt .1)   b (mgmt .2)   p (.9: Prometheus)

Each director runs the whole daemon with one VRRP instance and one virtual server whose real
server (TCP 192.0.2.9:8080, in x) it checks; its metrics endpoint listens on its management
address, so a director whose LAN interface is down (FAULT) is still scraped. Prometheus
runs in p, on p's loopback, with a copy of the shipped rules whose `for:` and rate windows
are seconds instead of minutes (tests/prometheus_util.py `fast_rules`); the test talks to
its HTTP API through a socket opened inside p. All traffic stays in these namespaces.

What "returns data" needs, and how the test gets it:
- the dashboard's queries: all but those over the IPVS table return series here; the
  host kernel has no IPVS, so node_ipvs_* / hacontrol_ipvs_{service,backend,snapshot}_*
  are evaluated by tests/kernel/test_metrics_ipvs.py in the VM (together: every query);
  the drops panel needs a dropped packet: x sends a few malformed VRRP packets;
- every alert's healthy form (its expression without the final comparison) returns series;
- every alert fires once its condition is true. On this host IPVS is unavailable (no
  module), so HacontrolIpvsUnavailable and HacontrolReconcileFailing fire by themselves;
  the test then makes the others true one after another: a's and b's switch ports
  isolated from each other (two masters), a broken config reloaded on b, the real server
  stopped (real server down, quorum lost), b's daemon stopped for 3 s (checks behind
  schedule), a's eth0 down (FAULT), and b's too (no master).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.ka_util import HaDaemon, Instance, wait_single_holder
from tests.netns.netns_util import Lab, Netns, require_root, socket_in_netns
from tests.prometheus_util import (
    PORT,
    RULES,
    Prometheus,
    alert_rules,
    dashboard_exprs,
    dashboard_variable_queries,
    fast_rules,
    grafana_to_promql,
    healthy_form,
    needs_ipvs_table,
)

pytestmark = pytest.mark.netns

VIP = "192.0.2.100/24"
VRID = 42
ADVERT_INT = 0.5  # master down after ~1.7 s; slow enough for a loaded 2-core machine
REAL_SERVER = ("192.0.2.9", 8080)
METRICS_PORT = 9101

SERVER = """
import signal, socket
signal.alarm(600)  # bounded lifetime whatever happens to the test
srv = socket.create_server(("192.0.2.9", 8080))
while True:
    conn, _ = srv.accept()
    conn.close()
"""


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root("prometheus", "bridge")
    with Lab("pm") as lab:
        yield lab


def director(lab: Lab, ns: Netns, tmp: Path, name: str, priority: int, mgmt: str) -> HaDaemon:
    instance = Instance(VRID, priority, (VIP,), version=3, advert_int=ADVERT_INT)
    check = {"type": "tcp", "delay_loop": 0.5, "connect_timeout": 1, "retry": 0}
    extra = {
        "virtual_servers": [
            {
                "name": "web",
                "address": "192.0.2.100",
                "port": 80,
                "forwarding": "NAT",
                "quorum": 1,
                "real_servers": [
                    {"address": REAL_SERVER[0], "port": REAL_SERVER[1], "checks": [check]}
                ],
            }
        ],
        "ipvs": {"reconcile_interval": 1},
    }
    return HaDaemon(
        lab, ns, tmp, name, [instance], metrics_listen=f"{mgmt}:{METRICS_PORT}", extra=extra
    )


def send_malformed_vrrp(x: Netns, count: int = 3) -> None:
    """A few bytes that are no VRRP packet, to 224.0.0.18 on the LAN: each director drops
    and counts them (hacontrol_vrrp_packets_dropped_total)."""
    sock = socket_in_netns(x.name, socket.AF_INET, socket.SOCK_RAW, 112)
    with sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.0.2.9"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        for _ in range(count):
            sock.sendto(b"\x99\x00", ("224.0.0.18", 0))


def test_prometheus_evaluates_every_rule_and_panel_and_alerts_fire(
    lab: Lab, tmp_path: Path
) -> None:
    lan, mgmt = lab.switch("lan"), lab.switch("mg")
    a, b, x, p = lab.netns("a"), lab.netns("b"), lab.netns("x"), lab.netns("p")
    port_a = lab.plug(a, lan, "eth0", "192.0.2.1/24")
    port_b = lab.plug(b, lan, "eth0", "192.0.2.2/24")
    lab.plug(x, lan, "eth0", "192.0.2.9/24")
    lab.plug(a, mgmt, "mgmt", "198.51.100.1/24")
    lab.plug(b, mgmt, "mgmt", "198.51.100.2/24")
    lab.plug(p, mgmt, "eth0", "198.51.100.9/24")
    server = lab.python(x, ["-c", SERVER], stdin=None, stdout=None)

    da = director(lab, a, tmp_path, "a", 200, "198.51.100.1")
    db = director(lab, b, tmp_path, "b", 100, "198.51.100.2")
    da.start()
    db.start()
    wait_single_holder([da, db], "192.0.2.100", "a", timeout=30.0)
    target_a, target_b = f"198.51.100.1:{METRICS_PORT}", f"198.51.100.2:{METRICS_PORT}"

    rules = tmp_path / "rules.yml"
    fast_rules(RULES, rules)
    (tmp_path / "prometheus").mkdir()
    prom = Prometheus(
        tmp_path / "prometheus",
        targets=[target_a, target_b],
        rule_files=[rules],
        labels={"cluster": "lab"},
        netns_argv=p.argv(),
        connect=lambda: connected(p),
    )
    with prom:
        prom.wait_ready()
        prom.wait_for(
            "both directors scraped",
            lambda: len([s for s in prom.query('up{job="hacontrol"} == 1')]) == 2,
        )
        send_malformed_vrrp(x)
        # A rate needs two samples within its window: wait for a few scrapes.
        prom.wait_data('count_over_time(up{job="hacontrol"}[15s]) >= 5')

        # ---- every dashboard query and every alert's healthy form returns data ----------
        host_exprs = [(t, e) for t, e in dashboard_exprs() if not needs_ipvs_table(e)]
        assert len(host_exprs) >= 20
        for title, expr in host_exprs:
            result = prom.wait_data(grafana_to_promql(expr), timeout=20.0)
            assert result, title
        for name, selector, label in dashboard_variable_queries():
            values = {s["metric"][label] for s in prom.wait_data(selector)}
            assert values == {target_a, target_b}, name
        states = {
            (s["metric"]["instance"], s["metric"]["vrrp_instance"]): s["value"][1]
            for s in prom.query("hacontrol_vrrp_state")
        }
        assert states == {(target_a, "VI_1"): "2", (target_b, "VI_1"): "1"}
        for rule in alert_rules():
            assert prom.wait_data(healthy_form(rule["expr"]), timeout=20.0), rule["alert"]
        masters = prom.query(
            healthy_form(next(r["expr"] for r in alert_rules() if r["alert"].endswith("Masters")))
        )
        assert [(m["metric"]["vrid"], m["value"][1]) for m in masters] == [(str(VRID), "1")]

        # ---- alerts: true here by themselves (no IPVS in this kernel) ----------------------
        for target in (target_a, target_b):
            prom.wait_firing("HacontrolIpvsUnavailable", instance=target)
            prom.wait_firing("HacontrolReconcileFailing", instance=target, kind="ipvs_table")
        assert not prom.firing("HacontrolVrrpMultipleMasters")
        assert not prom.firing("HacontrolVrrpNoMaster")

        # ---- two masters: the switch stops forwarding between a's and b's ports ---------
        # (bridge port isolation: both still reach x and the real server, not each other)
        for port in (port_a, port_b):
            lan[0].run("bridge", "link", "set", "dev", port, "isolated", "on")
        alert = prom.wait_firing("HacontrolVrrpMultipleMasters", vrid=str(VRID))
        assert alert["labels"]["cluster"] == "lab" and alert["labels"]["interface"] == "eth0"
        # While nobody hears a: its VRRP process stopped for 1.2 s, past two of its
        # 0.5 s advert deadlines, so at least one interval goes by without an advert.
        vrrp_a = da.control({"command": "status"})["vrrp_process"]["pid"]
        os.kill(vrrp_a, signal.SIGSTOP)
        try:
            time.sleep(1.2)
        finally:
            os.kill(vrrp_a, signal.SIGCONT)
        alert = prom.wait_firing("HacontrolVrrpAdvertsMissed", instance=target_a)
        assert alert["labels"]["vrrp_instance"] == "VI_1"
        assert not prom.firing("HacontrolVrrpAdvertsMissed", instance=target_b)
        for port in (port_a, port_b):
            lan[0].run("bridge", "link", "set", "dev", port, "isolated", "off")
        wait_single_holder([da, db], "192.0.2.100", "a", timeout=30.0)

        # ---- a reload of a broken file on b ------------------------------------------------
        good = db.config_path.read_text()
        db.config_path.write_text(good + "vrrp_instances: [oops\n")
        assert db.proc is not None
        os.kill(db.proc.pid, signal.SIGHUP)
        prom.wait_firing("HacontrolConfigReloadRejected", instance=target_b)
        db.config_path.write_text(good)

        # ---- the real server stops: down on both directors, quorum lost -------------------
        server.kill()
        server.wait(10)
        for target in (target_a, target_b):
            alert = prom.wait_firing("HacontrolRealServerDown", instance=target)
            assert alert["labels"]["real_server"] == "192.0.2.9:8080"
            prom.wait_firing("HacontrolQuorumLost", instance=target, virtual_server="web")

        # ---- b's daemon frozen for 3 s: its checks start late ------------------------------
        os.kill(db.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(3.0)
        finally:
            os.kill(db.proc.pid, signal.SIGCONT)
        behind = next(r for r in alert_rules() if r["alert"] == "HacontrolChecksBehindSchedule")
        prom.wait_firing(
            "HacontrolChecksBehindSchedule",
            instance=target_b,
            explain=healthy_form(behind["expr"]).replace("[5m]", "[20s]"),
        )

        # ---- a's LAN interface down: FAULT on a, b takes over ------------------------------
        a.ip("link", "set", "eth0", "down")
        alert = prom.wait_firing("HacontrolVrrpInstanceFault", instance=target_a)
        assert alert["labels"]["vrrp_instance"] == "VI_1"
        assert not prom.firing("HacontrolVrrpNoMaster")

        # ---- and b's: nobody is master ---------------------------------------------------
        b.ip("link", "set", "eth0", "down")
        prom.wait_firing("HacontrolVrrpInstanceFault", instance=target_b)
        prom.wait_firing("HacontrolVrrpNoMaster", vrid=str(VRID), family="ipv4")

        fired = {a["labels"]["alertname"] for a in prom.alerts() if a["state"] == "firing"}
        assert fired >= {"HacontrolVrrpInstanceFault", "HacontrolVrrpNoMaster"}
    assert prom.proc is not None and prom.proc.returncode is not None
    for d in (da, db):
        assert d.running, d.tail()


def connected(ns: Netns) -> socket.socket:
    sock = socket_in_netns(ns.name, socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10.0)
    try:
        sock.connect(("127.0.0.1", PORT))
    except OSError:
        sock.close()
        raise
    return sock
