"""The daemon started while the kernel has no IPVS (ip_vs not loaded).

It loads the module itself (exec `modprobe ip_vs`, no shell) and retries; meanwhile the
health checks run, and status says IPVS is unavailable and why. Once the module loads,
the table converges. The module really is unloaded here. Both ways it can come back go
through a gate that refuses until the test lets it through and then runs the real
modprobe: the daemon's own `modprobe` (found on its PATH) and the kernel's automatic
load when a netlink socket asks for the "IPVS" family (kernel.modprobe), so the
"unavailable" stretch lasts as long as the test needs.

This file sorts before every other kernel test on purpose: nothing has used ip_vs yet,
so it can be unloaded.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.kernel.conftest import Ipvsadm
from tests.kernel.daemon_util import SERVER, Procs, start_daemon, status, wait_for, weights


def unload_ip_vs() -> None:
    deadline = time.monotonic() + 60
    while True:
        result = subprocess.run(
            ["modprobe", "-r", "ip_vs"], capture_output=True, text=True, check=False
        )
        if not Path("/proc/net/ip_vs").exists():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"cannot unload ip_vs: {result.stderr.strip()}")
        time.sleep(1)  # a namespace of an earlier test may still be going away


def test_ipvs_absent_at_start_checks_run_and_the_table_converges(
    netns: Callable[[str], str], ipvsadm: Ipvsadm, procs: Procs, tmp_path: Path
) -> None:
    ns = netns("nv")
    procs.start(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, "127.0.0.2"])
    unload_ip_vs()

    real_modprobe = shutil.which("modprobe")
    assert real_modprobe is not None
    gate = tmp_path / "let-modprobe-through"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "modprobe"
    fake.write_text(
        "#!/bin/sh\n"
        f'[ -e "{gate}" ] || {{ echo "modprobe: FATAL: Module $1 not found (test gate)" >&2; '
        "exit 1; }\n"
        f'exec "{real_modprobe}" "$@"\n'
    )
    fake.chmod(0o755)

    config = tmp_path / "hacontrol.yaml"
    config.write_text(
        textwrap.dedent(
            """
            global: {metrics_listen: null}
            virtual_servers:
              - address: 192.0.2.20
                port: 80
                forwarding: NAT
                real_servers:
                  - address: 127.0.0.2
                    port: 8080
                    weight: 4
                    checks: [{type: http, path: /, delay_loop: 0.5, connect_timeout: 1,
                              retry: 0, warmup: false}]
            ipvs: {reconcile_interval: 0.5}
            """
        )
    )
    log = tmp_path / "daemon.log"
    path = f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"
    kernel_modprobe = Path("/proc/sys/kernel/modprobe")
    saved = kernel_modprobe.read_text().strip()
    kernel_modprobe.write_text(str(fake))
    daemon = start_daemon(procs, ns, config, log, tmp_path, env={"PATH": path})
    try:

        def unavailable_and_checked() -> dict[str, Any] | None:
            assert daemon.poll() is None, log.read_text()
            try:
                snap: dict[str, Any] = status(tmp_path)
            except AssertionError:
                return None  # not listening yet
            (vs,) = snap["virtual_servers"]
            (rs,) = vs["real_servers"]
            if snap["ipvs"]["available"] is False and rs["health"] == "up":
                return snap
            return None

        snap = wait_for(unavailable_and_checked, "checks up while IPVS is unavailable", 300)
        assert isinstance(snap, dict)
        assert "modprobe ip_vs" in snap["ipvs"]["detail"], snap
        assert "Module ip_vs not found (test gate)" in snap["ipvs"]["detail"], snap
        assert not snap["reconcile"]["ipvs_table"]["ok"], snap
        assert not Path("/proc/net/ip_vs").exists()

        gate.touch()  # the module may load now
        wait_for(
            lambda: weights(ipvsadm, ns, "TCP 192.0.2.20:80") == {"127.0.0.2:8080": 4},
            "the table once IPVS is there",
            timeout=180,
        )
        after = status(tmp_path)
        assert after["ipvs"] == {"available": True, "detail": ""}, after
        assert Path("/proc/net/ip_vs").exists()
        # Loaded by the daemon's modprobe or by the kernel when the daemon asked for the
        # IPVS family again, whichever came first: both went through the gate.
        assert "ipvs.available" in log.read_text()
    finally:
        kernel_modprobe.write_text(saved)
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=120)
        print(log.read_text())
    assert rc == 0
