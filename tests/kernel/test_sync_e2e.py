"""End to end: connections through the master director appear in the backup's table.

    client (C) ──203.0.113.0/24── master director (M) ──198.51.100.0/24── real server (R)
                                        │ sync link 192.0.2.0/24
                                  backup director (B)

M carries a NAT virtual service 203.0.113.100:80 -> 198.51.100.2:8080 and runs
the master sync daemon (started by hacontrol's IpvsNetlink, opened with netns=M);
B has the same service and the backup daemon. TCP connections from C through M
must show up in B's IPVS connection table: in `ipvsadm -Lnc` there and in
hacontrol's own parsing of /proc/net/ip_vs_conn there.
"""

from __future__ import annotations

import json
import secrets
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address

import pytest

from hacontrol.ipvs.conns import Connection, format_connections, parse_connections
from hacontrol.ipvs.netlink import IpvsNetlink
from hacontrol.ipvs.syncd import SyncDaemonConfig

# The `ipvsadm` fixture (tests/kernel/conftest.py): ipvsadm(*args, netns=None) -> stdout.
Ipvsadm = Callable[..., str]

VIP = "203.0.113.100"
REAL = "198.51.100.2"
SYNCID = 51
CONNECTIONS = 5
SYNC_WAIT = 60.0  # seconds; the master flushes its buffer every ~2 s, the VM is slow

ECHO_SERVER = """
import signal, socketserver
signal.alarm(180)  # bounded lifetime whatever happens to the test
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for _ in range(100):
            line = self.rfile.readline()
            if not line:
                return
            self.wfile.write(line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("0.0.0.0", 8080), Echo) as srv:
    srv.daemon_threads = True
    print("ready", flush=True)
    srv.serve_forever()
"""

CLIENT = """
import json, signal, socket, sys
signal.alarm(180)
socks = []
for i in range(%(n)d):
    s = socket.create_connection(("%(vip)s", 80), timeout=10)
    socks.append(s)
# Several round trips each: the master syncs a connection once it has seen
# sync_threshold (3) packets from the client, and again on state changes.
for round_ in range(4):
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
print(json.dumps([s.getsockname()[1] for s in socks]), flush=True)
sys.stdin.read()  # keep the connections open until the test closes stdin
"""


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output within {timeout}s from {proc.args!r}")
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"{proc.args!r} exited: {proc.wait(5)}")
    return line


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def veth(sh: Callable[..., str], ns_a: str, ns_b: str) -> tuple[str, str]:
    a, b = f"vm{secrets.token_hex(3)}", f"vm{secrets.token_hex(3)}"
    sh(["ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b])
    sh(["ip", "link", "set", a, "up"], netns=ns_a)
    sh(["ip", "link", "set", b, "up"], netns=ns_b)
    return a, b


def by_client_port(conns: list[Connection]) -> dict[int, Connection]:
    return {c.client_port: c for c in conns if c.protocol == "TCP"}


def test_connections_reach_the_backup_director(
    netns: Callable[[str], str],
    sh: Callable[..., str],
    ipvsadm: Ipvsadm,
    processes: list[subprocess.Popen[str]],
) -> None:
    c, m, b, r = netns("c"), netns("m"), netns("b"), netns("r")
    c0, m0 = veth(sh, c, m)
    m1, r0 = veth(sh, m, r)
    m2, b0 = veth(sh, m, b)
    for ns, dev, addr in (
        (c, c0, "203.0.113.2/24"),
        (m, m0, "203.0.113.1/24"),
        (m, m0, f"{VIP}/32"),
        (m, m1, "198.51.100.1/24"),
        (r, r0, f"{REAL}/24"),
        (m, m2, "192.0.2.1/24"),
        (b, b0, "192.0.2.2/24"),
    ):
        sh(["ip", "addr", "add", addr, "dev", dev], netns=ns)
    # NAT: the real server answers through the director, which forwards the replies.
    sh(["ip", "route", "add", "default", "via", "198.51.100.1"], netns=r)
    sh(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=m)

    for director in (m, b):
        ipvsadm("-A", "-t", f"{VIP}:80", "-s", "rr", netns=director)
        ipvsadm("-a", "-t", f"{VIP}:80", "-r", f"{REAL}:8080", "-m", netns=director)

    # The backup listens first, so nothing the master sends is lost.
    backup = SyncDaemonConfig("backup", b0, SYNCID, group=IPv4Address("239.0.0.51"))
    master = SyncDaemonConfig("master", m2, SYNCID, group=IPv4Address("239.0.0.51"))
    with IpvsNetlink(netns=b) as on_b, IpvsNetlink(netns=m) as on_m:
        on_b.start_daemon(backup)
        on_m.start_daemon(master)
        assert [d.state for d in on_b.get_daemons()] == ["backup"]
        assert [d.state for d in on_m.get_daemons()] == ["master"]

    server = subprocess.Popen(
        ["ip", "netns", "exec", r, sys.executable, "-c", ECHO_SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    processes.append(server)
    assert read_line(server, 30).strip() == "ready"

    client = subprocess.Popen(
        ["ip", "netns", "exec", c, sys.executable, "-c", CLIENT % {"n": CONNECTIONS, "vip": VIP}],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    processes.append(client)
    ports = set(json.loads(read_line(client, 60)))
    assert len(ports) == CONNECTIONS

    # The master's own table has them (the traffic went through IPVS).
    on_master = by_client_port(parse_connections(sh(["cat", "/proc/net/ip_vs_conn"], netns=m)))
    assert ports <= set(on_master)

    # The backup learns them from the sync daemon.
    deadline = time.monotonic() + SYNC_WAIT
    synced: dict[int, Connection] = {}
    while time.monotonic() < deadline:
        synced = by_client_port(parse_connections(sh(["cat", "/proc/net/ip_vs_conn"], netns=b)))
        if ports <= set(synced):
            break
        time.sleep(0.5)
    assert ports <= set(synced), f"backup has {sorted(synced)}, want {sorted(ports)}"
    for port in ports:
        conn = synced[port]
        assert conn.client == IPv4Address("203.0.113.2")
        assert (conn.virtual, conn.virtual_port) == (IPv4Address(VIP), 80)
        assert (conn.destination, conn.destination_port) == (IPv4Address(REAL), 8080)
        assert conn.state == "ESTABLISHED"
        assert conn.expires > 0

    # The witness: ipvsadm -Lnc in the backup's namespace lists them too...
    listing = ipvsadm("-Lnc", netns=b)
    for port in ports:
        assert f"203.0.113.2:{port}" in listing
    # ...and hacontrol's reading of the table prints the same (expiry aside:
    # a second may tick between the two reads).
    code = (
        "from hacontrol.ipvs.conns import read_connections, format_connections; "
        "print(format_connections(read_connections()), end='')"
    )
    ours = sh([sys.executable, "-c", code], netns=b)
    theirs = ipvsadm("-Lnc", netns=b)

    def without_expiry(text: str) -> list[str]:
        return sorted(line[:4] + line[10:] for line in text.splitlines()[2:])

    assert ours.splitlines()[:2] == theirs.splitlines()[:2]
    assert without_expiry(ours) == without_expiry(theirs)
    assert format_connections(list(synced.values())).startswith("IPVS connection entries\n")

    assert client.stdin is not None
    client.stdin.close()
    assert client.wait(30) == 0
