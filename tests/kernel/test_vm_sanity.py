"""The VM itself: a kernel with IPVS, per-namespace tables, the harness's promises."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

# The `ipvsadm` fixture (tests/kernel/conftest.py): ipvsadm(*args, netns=None) -> stdout.
Ipvsadm = Callable[..., str]


def test_kernel_has_ipvs_loaded() -> None:
    # The host kernel has no IPVS at all; here /proc/net/ip_vs exists after modprobe.
    assert Path("/proc/net/ip_vs").exists()
    assert Path("/proc/sys/net/ipv4/vs/sync_version").exists()
    assert "ip_vs " in Path("/proc/modules").read_text()
    # Debian's stock kernel, booted by virtme-ng.
    assert platform.release().endswith("-amd64"), platform.release()


def test_same_interpreter_as_the_caller() -> None:
    # vm-pytest runs the caller's interpreter by absolute path (a venv keeps working).
    assert os.environ.get("HACONTROL_IN_VM") == "1"
    assert os.path.isabs(sys.executable)
    import pyroute2

    assert pyroute2.__file__ is not None


def test_out_folder_is_writable() -> None:
    out = Path(os.environ["HACONTROL_VM_OUT"])
    probe = out / "probe.txt"
    probe.write_text("written in the guest\n")
    assert probe.read_text() == "written in the guest\n"
    probe.unlink()


def test_each_namespace_has_its_own_ipvs_table(
    netns: Callable[[str], str], ipvsadm: Ipvsadm
) -> None:
    a, b = netns("a"), netns("b")
    ipvsadm("-A", "-t", "192.0.2.10:80", "-s", "rr", netns=a)
    ipvsadm("-A", "-u", "198.51.100.10:53", "-s", "mh", netns=b)
    in_a = ipvsadm("-Ln", netns=a)
    in_b = ipvsadm("-Ln", netns=b)
    in_init = ipvsadm("-Ln")
    assert "TCP  192.0.2.10:80 rr" in in_a and "198.51.100.10" not in in_a
    assert "UDP  198.51.100.10:53 mh" in in_b and "192.0.2.10" not in in_b
    assert "192.0.2.10" not in in_init and "198.51.100.10" not in in_init


def test_new_namespace_has_loopback_up(netns: Callable[[str], str], sh: Callable[..., str]) -> None:
    ns = netns("lo")
    assert "UP" in sh(["ip", "-o", "link", "show", "lo"], netns=ns).split("<", 1)[1].split(">")[0]
    assert Path("/proc/sys/net/ipv4/vs").is_dir()


def test_clean_state_between_tests_first(ipvsadm: Ipvsadm) -> None:
    # Paired with the next test: the autouse fixture must undo all of this.
    ipvsadm("-A", "-t", "192.0.2.20:80")
    ipvsadm("--set", "11", "12", "13")
    ipvsadm("--start-daemon", "master", "--mcast-interface", "lo", "--syncid", "3")
    Path("/proc/sys/net/ipv4/vs/expire_nodest_conn").write_text("1\n")


def test_clean_state_between_tests_second(ipvsadm: Ipvsadm) -> None:
    assert "192.0.2.20" not in ipvsadm("-Ln")
    assert ipvsadm("-L", "--timeout") == "Timeout (tcp tcpfin udp): 900 120 300\n"
    assert ipvsadm("-L", "--daemon") == ""
    assert Path("/proc/sys/net/ipv4/vs/expire_nodest_conn").read_text() == "0\n"
