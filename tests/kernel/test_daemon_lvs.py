"""The whole daemon on a real IPVS kernel: config -> checks -> policy -> kernel.

`hacontrol run` is started as a process inside a namespace of the VM with a
config that has virtual servers, real HTTP servers it checks, a VRRP instance
and a sync daemon tied to it. ipvsadm is the witness for each step:

- the table appears with the configured weights once the checks pass;
- a real server that stops answering gets weight 0 (inhibit_on_failure) in
  one service and is removed in the other;
- it comes back when it answers again;
- a real server deleted by hand with `ipvsadm -d` is put back (drift repair);
- timeouts and sysctls are set; the sync daemon is master once VRRP is, and a sync
  daemon stopped by hand with ipvsadm is started again;
- `hacontrol status --json` over the control socket says what runs;
- reload: a weight edited in place, a real server and a whole service that left the
  config drained, then deleted;
- SIGTERM: exit 0 and the table stays (a restart adopts it, no flush); a service removed
  from the config while the daemon was down is drained and deleted at the next start.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.kernel.conftest import Ipvsadm
from tests.kernel.daemon_util import SERVER, Procs, start_daemon, status, wait_for, weights


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
              - address: 192.0.2.10
                port: 9000
                scheduler: rr
                forwarding: NAT
                drain_timeout: 600
                real_servers:
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
    daemon = start_daemon(procs, ns, config, log, tmp_path)

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
            # The VRRP process starts (an interpreter's imports under emulation) first.
            timeout=300,
        )

        # The sync daemon stopped by hand comes back (level-triggered, not on transition).
        ipvsadm("--stop-daemon", "master", netns=ns)
        wait_for(
            lambda: (
                "master sync daemon (mcast=eth0, syncid=42," in ipvsadm("-L", "--daemon", netns=ns)
            ),
            "the sync daemon started again",
            timeout=120,
        )
        # What the daemon says of itself, over the control socket.
        snap = status(tmp_path)
        (vi,) = snap["vrrp_instances"]  # type: ignore[misc]
        assert vi["name"] == "VI_1" and vi["state"] == "MASTER" and vi["master_is_us"], snap
        assert snap["ipvs"] == {"available": True, "detail": ""}, snap
        assert snap["sync_daemon"] == {"vrrp_instance": "VI_1", "role": "master"}, snap
        assert snap["reconcile"]["sync_daemon"]["ok"], snap  # type: ignore[index]
        web = next(v for v in snap["virtual_servers"] if v["key"] == "TCP 192.0.2.10:80")  # type: ignore[attr-defined]
        assert {(r["address"], r["health"], r["weight"]) for r in web["real_servers"]} == {
            ("127.0.0.2", "up", 3),
            ("127.0.0.3", "up", 1),
        }, web
        assert all(isinstance(r["active_conn"], int) for r in web["real_servers"]), web

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
        tail = (
            "      - address: 127.0.0.3\n        port: 8080\n"
            "  - address: 192.0.2.10\n    port: 9000\n"
        )
        assert tail in edited and edited != good
        head, _, _ = edited.partition(tail)
        edited = head + "ipvs:" + edited.partition("ipvs:")[2]  # also drops the 9000 service
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
        # The whole 9000 service left the config: drained (weight 0), then deleted once it
        # has no connections (it has none here).
        wait_for(
            lambda: "192.0.2.10:9000" not in ipvsadm("-Ln", netns=ns),
            "the removed service's deletion after its drain",
        )
        text = log.read_text()
        assert "DrainStarted" in text and "config.reload applied=" in text, text
        assert "lvs.service_drain_started service=TCP 192.0.2.10:9000" in text, text
        assert "service=TCP 192.0.2.10:9000 reason=connections" in text, text
    finally:
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=120)
        print(ipvsadm("-Ln", netns=ns))  # shown by pytest when the test fails
        print(log.read_text())
    assert rc == 0, log.read_text()
    # No flush on exit: connections through the table live on, a restart adopts it.
    assert weights(ipvsadm, ns, "TCP 192.0.2.10:80") == {"127.0.0.2:8080": 3, "127.0.0.3:8080": 2}

    # While the daemon is down the 8000 service leaves the config. At the next start the
    # daemon knows it owned it (state file): drained and deleted, not left forwarding
    # without checks; the other services are adopted untouched.
    text = config.read_text()
    block = text[text.index("  - address: 192.0.2.10\n    port: 8000") : text.index("ipvs:")]
    config.write_text(text.replace(block, ""))
    restarted = start_daemon(procs, ns, config, log, tmp_path)
    try:
        wait_for(lambda: log.read_text().count("daemon.started") == 2, "the restart", 300)
        wait_for(
            lambda: "192.0.2.10:8000" not in ipvsadm("-Ln", netns=ns),
            "the service removed while down: drained and deleted",
            timeout=300,
        )
        assert restarted.poll() is None, log.read_text()
        assert weights(ipvsadm, ns, "TCP 192.0.2.10:80") == {
            "127.0.0.2:8080": 3,
            "127.0.0.3:8080": 2,
        }
        text = log.read_text()
        assert "service=TCP 192.0.2.10:8000 reason=removed_while_down" in text, text
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=120) == 0, log.read_text()
