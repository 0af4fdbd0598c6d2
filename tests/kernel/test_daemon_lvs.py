"""The whole daemon on a real IPVS kernel: config -> checks -> policy -> kernel.

`hacontrol run` is started as a process inside a namespace of the VM with a
config that has virtual servers, real HTTP servers it checks, a VRRP instance
and a sync daemon tied to it. ipvsadm is the witness for each step:

- the table appears with the configured weights once the checks pass;
- a real server that stops answering gets weight 0 (inhibit_on_failure) in
  one service and is removed in the other;
- it comes back when it answers again;
- a real server deleted by hand with `ipvsadm -d` is put back (drift repair);
- timeouts and sysctls are set; the sync daemon is master once VRRP is;
- SIGTERM: exit 0 and the table stays (a restart adopts it, no flush).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kernel.conftest import Ipvsadm

ROOT = Path(__file__).resolve().parents[2]

SERVER = textwrap.dedent(
    """
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok\\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.HTTPServer((sys.argv[1], 8080), H).serve_forever()
    """
)


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    # Bounded poll: the VM is software-emulated, so allow generous time.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    yield p
    p.stop_all()


def weights(ipvsadm: Ipvsadm, netns: str, service: str) -> dict[str, int]:
    """Real servers and weights of one service, from `ipvsadm -Ln`."""
    out = ipvsadm("-Ln", netns=netns)
    found: dict[str, int] = {}
    current = None
    for line in out.splitlines():
        if not line.startswith("  "):
            parts = line.split()
            current = f"{parts[0]} {parts[1]}" if len(parts) > 1 else None
        elif line.strip().startswith("->") and current == service:
            parts = line.split()
            if parts[1] != "RemoteAddress:Port":
                found[parts[1]] = int(parts[3])
    return found


def test_daemon_drives_ipvs_from_checks_and_vrrp(
    netns: Callable[[str], str], ipvsadm: Ipvsadm, procs: Procs, tmp_path: Path
) -> None:
    ns = netns("d")
    run = lambda *a: subprocess.run(["ip", "-n", ns, *a], check=True)  # noqa: E731
    run("link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    run("addr", "add", "192.0.2.1/24", "dev", "eth0")
    run("link", "set", "eth0", "up")
    run("link", "set", "eth1", "up")
    for addr in ("127.0.0.2", "127.0.0.3"):
        procs.start(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, addr])
    web1 = procs.procs[0]

    config = tmp_path / "hacontrol.yaml"
    config.write_text(
        textwrap.dedent(
            """
            global: {metrics_listen: null}
            vrrp_instances:
              - {name: VI_1, interface: eth0, vrid: 9, version: 3, priority: 100,
                 advert_int: 0.2, virtual_ipaddresses: [192.0.2.10/24]}
            virtual_servers:
              - address: 192.0.2.10
                port: 80
                scheduler: wrr
                forwarding: NAT
                inhibit_on_failure: true
                real_servers:
                  - address: 127.0.0.2
                    port: 8080
                    weight: 3
                    checks: [{type: http, path: /, delay_loop: 0.5, connect_timeout: 1,
                              retry: 0, warmup: false}]
                  - address: 127.0.0.3
                    port: 8080
                    weight: 1
                    checks: [{type: tcp, delay_loop: 0.5, connect_timeout: 1, retry: 0,
                              warmup: false}]
              - address: 192.0.2.10
                port: 8000
                scheduler: rr
                forwarding: NAT
                real_servers:
                  - address: 127.0.0.2
                    port: 8080
                    checks: [{type: tcp, delay_loop: 0.5, connect_timeout: 1, retry: 0,
                              warmup: false}]
                  - address: 127.0.0.3
                    port: 8080
            ipvs:
              timeouts: {tcp: 901, tcpfin: 121, udp: 301}
              sysctls: {expire_nodest_conn: 1, expire_quiescent_template: 1}
              sync_daemon: {interface: eth0, vrrp_instance: VI_1, syncid: 42}
              reconcile_interval: 0.5
            """
        )
    )
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = procs.start(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "hacontrol",
                "run",
                "-c",
                str(config),
                "--log-level",
                "info",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def weights_are(service: str, expected: dict[str, int]) -> bool:
        assert daemon.poll() is None, log.read_text()
        return weights(ipvsadm, ns, service) == expected

    try:
        wait_for(
            lambda: weights_are("TCP 192.0.2.10:80", {"127.0.0.2:8080": 3, "127.0.0.3:8080": 1}),
            "the table with configured weights",
            # Under software emulation the interpreter alone needs ~30 s to import
            # the daemon over the VM's shared filesystem.
            timeout=300,
        )
        assert weights(ipvsadm, ns, "TCP 192.0.2.10:8000") == {
            "127.0.0.2:8080": 1,
            "127.0.0.3:8080": 1,
        }
        listing = ipvsadm("-Ln", netns=ns)
        assert re.search(r"TCP\s+192\.0\.2\.10:80 wrr", listing), listing
        assert "Masq" in listing
        # Timeouts and sysctls, read by the witness and from /proc.
        assert ipvsadm("-L", "--timeout", netns=ns).split(":", 1)[1].split() == [
            "901",
            "121",
            "301",
        ]
        sysctl = subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.vs.expire_nodest_conn"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert sysctl.stdout.strip() == "1"
        # VRRP became master alone on the link: the sync daemon follows it.
        wait_for(
            lambda: (
                "master sync daemon (mcast=eth0, syncid=42," in ipvsadm("-L", "--daemon", netns=ns)
            ),
            "the master sync daemon",
            timeout=180,
        )

        # 127.0.0.2 stops answering: quiescent in the inhibit service, removed in the other.
        web1.kill()
        web1.wait(timeout=10)
        wait_for(
            lambda: weights_are("TCP 192.0.2.10:80", {"127.0.0.2:8080": 0, "127.0.0.3:8080": 1}),
            "weight 0 for the failed server",
        )
        wait_for(
            lambda: weights_are("TCP 192.0.2.10:8000", {"127.0.0.3:8080": 1}),
            "removal of the failed server",
        )

        # It answers again: back with its weight.
        procs.start(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, "127.0.0.2"])
        wait_for(
            lambda: weights_are("TCP 192.0.2.10:80", {"127.0.0.2:8080": 3, "127.0.0.3:8080": 1}),
            "the recovered server's weight",
        )

        # Drift: an operator deletes a real server by hand; the daemon puts it back.
        ipvsadm("-d", "-t", "192.0.2.10:80", "-r", "127.0.0.3:8080", netns=ns)
        wait_for(
            lambda: weights_are("TCP 192.0.2.10:80", {"127.0.0.2:8080": 3, "127.0.0.3:8080": 1}),
            "drift repaired",
        )

        # A bad file on reload changes nothing and the daemon runs on.
        good = config.read_text()
        config.write_text("virtual_servers: [unclosed\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "config.reload_rejected" in log.read_text(), "the rejected reload")
        assert daemon.poll() is None
        assert weights(ipvsadm, ns, "TCP 192.0.2.10:80") == {
            "127.0.0.2:8080": 3,
            "127.0.0.3:8080": 1,
        }

        # Reload: a weight edited in place; a real server that left the config is
        # drained (weight 0, then deleted once it has no connections).
        edited = good.replace(
            "address: 127.0.0.3\n        port: 8080\n        weight: 1",
            "address: 127.0.0.3\n        port: 8080\n        weight: 2",
        )
        tail = "      - address: 127.0.0.3\n        port: 8080\nipvs:"
        assert tail in edited and edited != good
        edited = edited.replace(tail, "ipvs:")
        config.write_text(edited)
        daemon.send_signal(signal.SIGHUP)
        wait_for(
            lambda: weights_are("TCP 192.0.2.10:80", {"127.0.0.2:8080": 3, "127.0.0.3:8080": 2}),
            "the edited weight",
        )
        wait_for(
            lambda: weights_are("TCP 192.0.2.10:8000", {"127.0.0.2:8080": 1}),
            "the drained server's removal",
        )
        text = log.read_text()
        assert "DrainStarted" in text and "config.reload applied=true" in text, text
    finally:
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=30)
        print(ipvsadm("-Ln", netns=ns))  # shown by pytest when the test fails
        print(log.read_text())
    assert rc == 0, log.read_text()
    # No flush on exit: connections through the table live on, a restart adopts it.
    assert weights(ipvsadm, ns, "TCP 192.0.2.10:80") == {"127.0.0.2:8080": 3, "127.0.0.3:8080": 2}
