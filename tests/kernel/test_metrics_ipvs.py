"""The kernel's IPVS figures on /metrics, against the kernel itself, and Debian's Prometheus
evaluating the dashboard's IPVS queries.

    client (c) ──203.0.113.0/24── director (m: hacontrol run) ──198.51.100.0/24── real servers (r)

The daemon in m has three virtual services on the VIP its VRRP instance holds: TCP :80 (two
NAT real servers, weights 3 and 1), TCP :81 (one) and a fwmark service (no traffic). The
client opens connections through :80 and :81, exchanges a few lines on each and keeps them
open, so the figures stay still. Once the reconciler has dumped the table after that
traffic (hacontrol_ipvs_snapshot_age_seconds says when), /metrics, read inside m with a
plain HTTP GET, must hold:

- node_ipvs_backend_connections_active / _inactive / node_ipvs_backend_weight exactly as
  node_exporter makes them from /proc/net/ip_vs in m (tests/ipvs_procfs.py follows its
  source), and node_ipvs_*_total as it makes them from /proc/net/ip_vs_stats;
- hacontrol_ipvs_service_* and hacontrol_ipvs_backend_* equal to `ipvsadm -Ln --stats
  --exact` in m, conns, packets and bytes, service by service and real server by real server.

Then a Prometheus in m scrapes the daemon and every dashboard query over the IPVS table
(those the host tier cannot evaluate, tests/netns/test_prometheus_monitoring.py) returns
data.
"""

from __future__ import annotations

import http.client
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.ipvs_procfs import Sample, backend_samples, total_samples
from tests.kernel.conftest import Ipvsadm, require_tool
from tests.kernel.daemon_util import Procs, start_daemon, wait_for
from tests.netns.netns_util import socket_in_netns
from tests.prometheus_util import (
    PORT,
    Prometheus,
    dashboard_exprs,
    grafana_to_promql,
    needs_ipvs_table,
)

VIP = "203.0.113.100"
METRICS = ("127.0.0.1", 9101)
CONNECTIONS = {80: 3, 81: 2}
ESTIMATOR_SETTLE = 6.0  # seconds: three runs of the kernel's 2 s estimator

ECHO_SERVER = """
import signal, socketserver
signal.alarm(600)  # bounded lifetime whatever happens to the test
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            for _ in range(100):
                line = self.rfile.readline()
                if not line:
                    return
                self.wfile.write(line)
        except OSError:
            pass  # a health check's connect and close
socketserver.ThreadingTCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("0.0.0.0", 8080), Echo) as srv:
    srv.daemon_threads = True
    srv.serve_forever()
"""

CLIENT = """
import signal, socket, sys
signal.alarm(600)
socks = []
for port, n in %(connections)r.items():
    for _ in range(n):
        socks.append(socket.create_connection(("%(vip)s", port), timeout=30))
for round_ in range(3):
    for i, s in enumerate(socks):
        msg = f"ping {i} {round_}\\n".encode()
        s.sendall(msg)
        got = b""
        while not got.endswith(b"\\n"):
            chunk = s.recv(100)
            if not chunk:
                raise SystemExit("server closed")
            got += chunk
        assert got == msg, got
print("done", flush=True)
sys.stdin.read()  # the connections stay open (ActiveConn) until the test closes stdin
"""

CONFIG = f"""
global: {{metrics_listen: "{METRICS[0]}:{METRICS[1]}"}}
vrrp_instances:
  - {{name: VI_1, interface: eth0, vrid: 9, version: 3, priority: 100, advert_int: 1,
     virtual_ipaddresses: [{VIP}/24]}}
virtual_servers:
  - name: web
    address: {VIP}
    port: 80
    scheduler: wrr
    forwarding: NAT
    real_servers:
      - {{address: 198.51.100.2, port: 8080, weight: 3,
         checks: [{{type: tcp, delay_loop: 2, connect_timeout: 5, retry: 1}}]}}
      - {{address: 198.51.100.3, port: 8080, weight: 1,
         checks: [{{type: tcp, delay_loop: 2, connect_timeout: 5, retry: 1}}]}}
  - name: alt
    address: {VIP}
    port: 81
    scheduler: rr
    forwarding: NAT
    real_servers:
      - {{address: 198.51.100.3, port: 8080}}
  - name: marked
    fwmark: 7
    scheduler: rr
    forwarding: DR
    real_servers:
      - {{address: 198.51.100.2, weight: 2}}
ipvs:
  reconcile_interval: 1
"""


def link(sh: Callable[..., str], a: str, a_name: str, b: str, b_name: str) -> None:
    ta, tb = f"vm{secrets.token_hex(3)}", f"vm{secrets.token_hex(3)}"
    sh(["ip", "link", "add", ta, "netns", a, "type", "veth", "peer", "name", tb, "netns", b])
    sh(["ip", "link", "set", ta, "name", a_name], netns=a)
    sh(["ip", "link", "set", tb, "name", b_name], netns=b)
    sh(["ip", "link", "set", a_name, "up"], netns=a)
    sh(["ip", "link", "set", b_name, "up"], netns=b)


def connect_in(ns: str, address: tuple[str, int]) -> socket.socket:
    sock = socket_in_netns(ns, socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(60.0)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


def scrape(ns: str) -> dict[Sample, float]:
    """GET /metrics inside `ns`, as Prometheus would: (name, labels) -> value."""
    conn = http.client.HTTPConnection(*METRICS, timeout=60)
    conn.sock = connect_in(ns, METRICS)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        text = response.read().decode()
    finally:
        conn.close()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def only(samples: dict[Sample, float], prefix: str) -> dict[Sample, float]:
    return {k: v for k, v in samples.items() if k[0].startswith(prefix)}


def ipvsadm_stats(ipvsadm: Ipvsadm, ns: str) -> dict[tuple[str, str | None], list[int]]:
    """`ipvsadm -Ln --stats --exact`: (service, real server or None) -> [conns, inpkts,
    outpkts, inbytes, outbytes]."""
    out: dict[tuple[str, str | None], list[int]] = {}
    service = ""
    for line in ipvsadm("-Ln", "--stats", "--exact", netns=ns).splitlines()[3:]:
        fields = line.split()
        if fields[0] == "->":
            out[(service, fields[1])] = [int(f) for f in fields[2:7]]
        else:
            service = f"{fields[0]} {fields[1]}"
            out[(service, None)] = [int(f) for f in fields[2:7]]
    return out


def ipvsadm_service(labels: dict[str, str]) -> str:
    if labels["proto"] == "FWM":
        return f"FWM {int(labels['local_mark'], 16)}"
    return f"{labels['proto']} {labels['local_address']}:{labels['local_port']}"


TRAFFIC = ("connections", "incoming_packets", "outgoing_packets", "incoming_bytes")
TRAFFIC += ("outgoing_bytes",)


def test_ipvs_figures_match_the_kernel_and_prometheus_reads_them(
    netns: Callable[[str], str],
    sh: Callable[..., str],
    ipvsadm: Ipvsadm,
    procs: Procs,
    tmp_path: Path,
) -> None:
    prometheus = require_tool("prometheus")
    c, m, r = netns("c"), netns("m"), netns("r")
    link(sh, c, "eth0", m, "eth0")
    link(sh, m, "eth1", r, "eth0")
    sh(["ip", "addr", "add", "203.0.113.2/24", "dev", "eth0"], netns=c)
    sh(["ip", "addr", "add", "203.0.113.1/24", "dev", "eth0"], netns=m)
    sh(["ip", "addr", "add", "198.51.100.1/24", "dev", "eth1"], netns=m)
    for address in ("198.51.100.2/24", "198.51.100.3/24"):
        sh(["ip", "addr", "add", address, "dev", "eth0"], netns=r)
    # NAT: the real servers answer through the director, which forwards the replies.
    sh(["ip", "route", "add", "default", "via", "198.51.100.1"], netns=r)
    sh(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=m)
    procs.start(["ip", "netns", "exec", r, sys.executable, "-c", ECHO_SERVER])

    config = tmp_path / "hacontrol.yaml"
    config.write_text(CONFIG)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(procs, m, config, log, tmp_path)

    def alive() -> None:
        assert daemon.poll() is None, log.read_text()

    def vip_and_table() -> bool:
        alive()
        listing = ipvsadm("-Ln", netns=m)
        held = VIP in sh(["ip", "-4", "addr", "show", "dev", "eth0"], netns=m)
        return held and f"{VIP}:81" in listing and "FWM  7" in listing

    # Under emulation the interpreter needs ~30 s to import the daemon.
    wait_for(vip_and_table, "the VIP and the table", timeout=300)

    client = procs.start(
        [
            "ip", "netns", "exec", c, sys.executable, "-c",
            CLIENT % {"connections": CONNECTIONS, "vip": VIP},
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert client.stdout is not None
    assert client.stdout.readline() == b"done\n", "the client's connections went through"
    traffic_done = time.monotonic()

    # A dump taken well after the traffic: the figures are as of the reconciler's last
    # dump, and the kernel adds its per-CPU traffic counters into the totals it reports
    # only when its rate estimator runs, every 2 s (ip_vs_est.c).
    def fresh() -> dict[Sample, float] | None:
        alive()
        samples = scrape(m)
        age = samples.get(("hacontrol_ipvs_snapshot_age_seconds", ()))
        settled = time.monotonic() - traffic_done - ESTIMATOR_SETTLE
        return samples if age is not None and age < settled else None

    wait_for(fresh, "a table dump after the traffic", timeout=120)
    samples = scrape(m)
    proc_ip_vs = sh(["cat", "/proc/net/ip_vs"], netns=m)
    proc_stats = sh(["cat", "/proc/net/ip_vs_stats"], netns=m)
    stats = ipvsadm_stats(ipvsadm, m)

    # node_exporter's figures, as node_exporter derives them from the kernel's files.
    backends = only(samples, "node_ipvs_backend_")
    assert backends == backend_samples(proc_ip_vs), proc_ip_vs
    totals = only(samples, "node_ipvs_").items() - backends.items()
    assert dict(totals) == total_samples(proc_stats), proc_stats
    # The connections are where the client made them.
    active: dict[str, float] = {}
    for (name, labels), value in backends.items():
        if name == "node_ipvs_backend_connections_active":
            port = dict(labels)["local_port"]
            active[port] = active.get(port, 0) + value
    assert active == {"80": 3, "81": 2, "0": 0}

    # Ours, as ipvsadm -Ln --stats --exact reads the same kernel.
    checked = 0
    for (name, labels), value in samples.items():
        for kind in ("service", "backend"):
            prefix = f"hacontrol_ipvs_{kind}_"
            if not name.startswith(prefix) or not name.endswith("_total"):
                continue
            what = TRAFFIC.index(name[len(prefix) : -len("_total")])
            lab = dict(labels)
            dest = f"{lab['remote_address']}:{lab['remote_port']}" if kind == "backend" else None
            assert stats[(ipvsadm_service(lab), dest)][what] == value, (name, lab, stats)
            checked += 1
    assert checked == 5 * (3 + 4), "5 counters of 3 services and 4 real servers"
    assert stats[(f"TCP {VIP}:80", None)][0] == 3 and stats[(f"TCP {VIP}:81", None)][0] == 2

    # ---- Prometheus evaluates the dashboard's queries over the IPVS table --------------
    (tmp_path / "prometheus").mkdir()
    prom = Prometheus(
        tmp_path / "prometheus",
        targets=[f"{METRICS[0]}:{METRICS[1]}"],
        netns_argv=["ip", "netns", "exec", m],
        connect=lambda: connect_in(m, ("127.0.0.1", PORT)),
        binary=prometheus,
    )
    with prom:
        prom.wait_ready(timeout=180)
        prom.wait_data('count_over_time(up{job="hacontrol"}[15s]) >= 5', timeout=120)
        exprs = [(t, e) for t, e in dashboard_exprs() if needs_ipvs_table(e)]
        assert len(exprs) >= 10
        for title, expr in exprs:
            assert prom.wait_data(grafana_to_promql(expr), timeout=60), title
        weights = {
            (s["metric"]["local_port"], s["metric"]["remote_address"]): s["value"][1]
            for s in prom.query("node_ipvs_backend_weight")
        }
        assert weights == {
            ("80", "198.51.100.2"): "3",
            ("80", "198.51.100.3"): "1",
            ("81", "198.51.100.3"): "1",
            ("0", "198.51.100.2"): "2",
        }
    assert client.stdin is not None
    client.stdin.close()
    alive()
