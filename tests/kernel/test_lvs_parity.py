"""keepalived's LVS keywords on a real IPVS kernel, read back with ipvsadm (issue 14).

One `hacontrol run` in a namespace of the VM with:

- a virtual_server_group of an address range, a prefix and a fwmark: one IPVS service per
  member, each with the same real servers (a real server without a port at each member's);
- an all-ports persistent service (`port: 0` with persistence_timeout);
- a sorry server under sorry_server_inhibit with its own lvs method: in at weight 1 while
  the real server fails its check, kept at weight 0 once it answers.

`ipvsadm -S -n` of the namespace is the witness.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.kernel.conftest import Ipvsadm
from tests.kernel.daemon_util import SERVER, Procs, start_daemon, wait_for, weights

CONFIG = """
global: {metrics_listen: null}
virtual_server_groups:
  - name: web
    members:
      - {address: 192.0.2.20-21, port: 80}
      - {address: 192.0.2.32/31, port: 443}
      - {fwmark: 7}
virtual_servers:
  - group: web
    scheduler: rr
    forwarding: NAT
    real_servers:
      - address: 127.0.0.2
        port: 8080
        checks: [{type: tcp, delay_loop: 0.5, connect_timeout: 1, retry: 0, warmup: false}]
      - address: 127.0.0.3
        weight: 2
  - address: 192.0.2.40
    port: 0
    persistence_timeout: 300
    scheduler: wlc
    forwarding: DR
    real_servers:
      - {address: 198.51.100.1}
      - {address: 198.51.100.2}
  - address: 192.0.2.50
    port: 80
    scheduler: rr
    forwarding: NAT
    sorry_server: {address: 198.51.100.9, port: 80, inhibit: true, forwarding: DR}
    real_servers:
      - address: 127.0.0.4
        port: 8080
        checks: [{type: tcp, delay_loop: 0.5, connect_timeout: 1, retry: 0, warmup: false}]
ipvs:
  reconcile_interval: 0.5
"""

GROUP_AND_ALL_PORTS = {
    "-A -t 192.0.2.20:80 -s rr",
    "-a -t 192.0.2.20:80 -r 127.0.0.2:8080 -m -w 1",
    "-a -t 192.0.2.20:80 -r 127.0.0.3:80 -m -w 2",
    "-A -t 192.0.2.21:80 -s rr",
    "-a -t 192.0.2.21:80 -r 127.0.0.2:8080 -m -w 1",
    "-a -t 192.0.2.21:80 -r 127.0.0.3:80 -m -w 2",
    "-A -t 192.0.2.32:443 -s rr",
    "-a -t 192.0.2.32:443 -r 127.0.0.2:8080 -m -w 1",
    "-a -t 192.0.2.32:443 -r 127.0.0.3:443 -m -w 2",
    "-A -t 192.0.2.33:443 -s rr",
    "-a -t 192.0.2.33:443 -r 127.0.0.2:8080 -m -w 1",
    "-a -t 192.0.2.33:443 -r 127.0.0.3:443 -m -w 2",
    "-A -f 7 -s rr",
    "-a -f 7 -r 127.0.0.2:8080 -m -w 1",
    "-a -f 7 -r 127.0.0.3:0 -m -w 2",
    "-A -t 192.0.2.40:0 -s wlc -p 300",
    "-a -t 192.0.2.40:0 -r 198.51.100.1:0 -g -w 1",
    "-a -t 192.0.2.40:0 -r 198.51.100.2:0 -g -w 1",
}


def saved(ipvsadm: Ipvsadm, ns: str) -> set[str]:
    return {line.strip() for line in ipvsadm("-S", "-n", netns=ns).splitlines() if line.strip()}


def test_group_all_ports_and_sorry_server_in_the_kernel(
    netns: Callable[[str], str], ipvsadm: Ipvsadm, procs: Procs, tmp_path: Path
) -> None:
    ns = netns("p")
    procs.start(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, "127.0.0.2"])
    config = tmp_path / "hacontrol.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    log = tmp_path / "daemon.log"
    daemon = start_daemon(procs, ns, config, log, tmp_path)

    def table_has(lines: set[str]) -> bool:
        assert daemon.poll() is None, log.read_text()
        return lines <= saved(ipvsadm, ns)

    sorry_in = {
        "-A -t 192.0.2.50:80 -s rr",
        "-a -t 192.0.2.50:80 -r 198.51.100.9:80 -g -w 1",
    }
    # Under software emulation the interpreter alone needs ~30 s to import the daemon.
    wait_for(lambda: table_has(GROUP_AND_ALL_PORTS | sorry_in), "the table", timeout=300)
    table = saved(ipvsadm, ns)
    # The group is exactly its members' services, no more; the failing real server of the
    # sorry service is out (no inhibit_on_failure), the sorry server in at its weight.
    assert {line for line in table if "192.0.2.50" not in line} == GROUP_AND_ALL_PORTS, table
    assert weights(ipvsadm, ns, "TCP 192.0.2.50:80") == {"198.51.100.9:80": 1}

    # The real server answers: it comes in, the sorry server stays at weight 0 (inhibit).
    procs.start(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, "127.0.0.4"])
    wait_for(
        lambda: table_has(
            {
                "-a -t 192.0.2.50:80 -r 127.0.0.4:8080 -m -w 1",
                "-a -t 192.0.2.50:80 -r 198.51.100.9:80 -g -w 0",
            }
        ),
        "the real server in, the sorry server quiescent",
        timeout=120,
    )

    daemon.send_signal(2)
    assert daemon.wait(timeout=120) == 0, log.read_text()
    subprocess.run(["ip", "netns", "exec", ns, "ipvsadm", "-C"], check=True)
