"""debian/hacontrol.postinst after an upgrade: a running daemon is restarted in place
(`hacontrol restart`: nothing moves), systemd's try-restart only where that is refused.

The script itself runs under /bin/sh with every command it calls replaced by a stub
that records its arguments (systemctl, deb-systemd-invoke, hacontrol, and the user and
file commands of its first part), and its fixed paths pointed into a temporary
directory: nothing on this machine is touched."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

POSTINST = Path(__file__).resolve().parents[2] / "debian" / "hacontrol.postinst"


def run_postinst(tmp: Path, *args: str, active: bool, restart_ok: bool) -> list[str]:
    calls = tmp / "calls"
    calls.write_text("")
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    status = {
        "systemctl": 0 if active else 3,
        "hacontrol": 0 if restart_ok else 1,
        "deb-systemd-invoke": 0,
        "getent": 0,  # the user exists: no adduser
        "dpkg-statoverride": 0,
    }
    for name, code in status.items():
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit {code}\n')
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    systemd = tmp / "run-systemd-system"
    systemd.mkdir(exist_ok=True)
    script = (
        POSTINST.read_text()
        .replace("/usr/bin/hacontrol", str(bin_dir / "hacontrol"))
        .replace("/run/systemd/system", str(systemd))
        .replace("/etc/hacontrol/hacontrol.yaml", str(tmp / "absent.yaml"))
    )
    assert str(bin_dir / "hacontrol") in script and str(systemd) in script
    copy = tmp / "postinst"
    copy.write_text(script)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp)}
    done = subprocess.run(
        ["/bin/sh", str(copy), *args], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return [line for line in calls.read_text().splitlines() if not line.startswith("getent")]


def test_an_upgrade_restarts_a_running_daemon_in_place(tmp_path: Path) -> None:
    calls = run_postinst(tmp_path, "configure", "1.0", active=True, restart_ok=True)
    assert calls == ["systemctl is-active --quiet hacontrol.service", "hacontrol restart"]


def test_a_refused_in_place_restart_falls_back_to_try_restart(tmp_path: Path) -> None:
    calls = run_postinst(tmp_path, "configure", "1.0", active=True, restart_ok=False)
    assert calls == [
        "systemctl is-active --quiet hacontrol.service",
        "hacontrol restart",
        "deb-systemd-invoke try-restart hacontrol.service",
    ]


def test_a_stopped_daemon_is_not_asked_and_stays_stopped(tmp_path: Path) -> None:
    # try-restart leaves a stopped unit stopped; `hacontrol restart` is not tried.
    calls = run_postinst(tmp_path, "configure", "1.0", active=False, restart_ok=True)
    assert calls == [
        "systemctl is-active --quiet hacontrol.service",
        "deb-systemd-invoke try-restart hacontrol.service",
    ]


@pytest.mark.parametrize("args", [("configure",), ("configure", ""), ("abort-upgrade", "1.0")])
def test_a_first_install_restarts_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert run_postinst(tmp_path, *args, active=True, restart_ok=True) == []
