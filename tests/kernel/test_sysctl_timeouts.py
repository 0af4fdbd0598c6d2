"""Global IPVS timeouts (netlink) and the managed net.ipv4.vs sysctls, on the real kernel."""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hacontrol.ipvs.netlink import AsyncIpvs, IpvsNetlink
from hacontrol.ipvs.syncd import Timeouts, format_timeouts
from hacontrol.ipvs.sysctl import (
    IPVS_SYSCTL_DIR,
    IpvsSysctlError,
    IpvsSysctls,
    IpvsSysctlsUnavailable,
    SysctlChange,
    apply_sysctls,
    read_sysctls,
    write_sysctl,
)

# The `ipvsadm` fixture (tests/kernel/conftest.py): ipvsadm(*args, netns=None) -> stdout.
Ipvsadm = Callable[..., str]


def ipvsadm_timeouts(ipvsadm: Ipvsadm, netns: str | None = None) -> tuple[int, int, int]:
    text = ipvsadm("-L", "--timeout", netns=netns)
    assert text.startswith("Timeout (tcp tcpfin udp): ")
    tcp, fin, udp = (int(x) for x in text.split(":", 1)[1].split())
    return tcp, fin, udp


async def test_set_timeouts_ipvsadm_agrees(ipvsadm: Ipvsadm) -> None:
    ipvs = await AsyncIpvs.open()
    try:
        before = await ipvs.get_timeouts()
        assert (before.tcp, before.tcpfin, before.udp) == ipvsadm_timeouts(ipvsadm)
        await ipvs.set_timeouts(Timeouts(tcp=5, tcpfin=10, udp=7))
        assert ipvsadm_timeouts(ipvsadm) == (5, 10, 7)
        after = await ipvs.get_timeouts()
    finally:
        ipvs.close()
    assert after == Timeouts(5, 10, 7)
    assert format_timeouts(after) == ipvsadm("-L", "--timeout")


def test_zero_leaves_a_timeout_unchanged(ipvsadm: Ipvsadm) -> None:
    ipvsadm("--set", "100", "20", "30")
    with IpvsNetlink() as nl:
        nl.set_timeouts(Timeouts(tcp=0, tcpfin=45, udp=0))
        assert nl.get_timeouts() == Timeouts(100, 45, 30)
    assert ipvsadm_timeouts(ipvsadm) == (100, 45, 30)


def test_timeouts_set_by_ipvsadm_are_read_back(ipvsadm: Ipvsadm) -> None:
    ipvsadm("--set", "3600", "60", "120")
    with IpvsNetlink() as nl:
        assert nl.get_timeouts() == Timeouts(3600, 60, 120)


async def test_timeouts_are_per_namespace(netns: Callable[[str], str], ipvsadm: Ipvsadm) -> None:
    ns = netns("to")
    ipvs = await AsyncIpvs.open(netns=ns)
    try:
        await ipvs.set_timeouts(Timeouts(11, 22, 33))
        assert await ipvs.get_timeouts() == Timeouts(11, 22, 33)
    finally:
        ipvs.close()
    assert ipvsadm_timeouts(ipvsadm, netns=ns) == (11, 22, 33)
    assert ipvsadm_timeouts(ipvsadm) == (900, 120, 300)


def sysctl_value(name: str) -> int:
    return int((IPVS_SYSCTL_DIR / name).read_text())


def test_read_matches_proc() -> None:
    values = read_sysctls()
    for name, value in values.items():
        assert value == sysctl_value(name), name


def test_apply_writes_only_what_differs() -> None:
    before = read_sysctls()
    assert before.expire_nodest_conn == 0 and before.sync_version == 1
    desired = IpvsSysctls(
        expire_nodest_conn=1,
        expire_quiescent_template=1,
        conntrack=1,
        conn_reuse_mode=before.conn_reuse_mode,  # already right: no write
        sync_version=0,
    )
    changes = apply_sysctls(desired)
    assert changes == [
        SysctlChange("expire_nodest_conn", 0, 1),
        SysctlChange("expire_quiescent_template", 0, 1),
        SysctlChange("conntrack", 0, 1),
        SysctlChange("sync_version", 1, 0),
    ]
    assert sysctl_value("expire_nodest_conn") == 1
    assert sysctl_value("expire_quiescent_template") == 1
    assert sysctl_value("conntrack") == 1
    assert sysctl_value("sync_version") == 0
    assert read_sysctls() == desired
    # Second time round there is nothing to do.
    assert apply_sysctls(desired) == []


def test_unmanaged_values_are_left_alone() -> None:
    (IPVS_SYSCTL_DIR / "conn_reuse_mode").write_text("2\n")
    changes = apply_sysctls(IpvsSysctls(expire_nodest_conn=1))
    assert changes == [SysctlChange("expire_nodest_conn", 0, 1)]
    assert sysctl_value("conn_reuse_mode") == 2


def test_kernel_rejection_is_a_typed_error() -> None:
    # proc_do_sync_mode accepts only 0 and 1; hacontrol's own validation
    # (IpvsSysctls) would not let 2 through, so write it directly.
    with pytest.raises(IpvsSysctlError) as err:
        write_sysctl("sync_version", 2)
    assert err.value.errno == errno.EINVAL and err.value.name == "sync_version"
    assert sysctl_value("sync_version") == 1


def test_invalid_desired_values_fail_before_any_write() -> None:
    with pytest.raises(ValueError):
        IpvsSysctls(conn_reuse_mode=4)
    with pytest.raises(ValueError):
        IpvsSysctls(expire_nodest_conn=True)
    with pytest.raises(ValueError):
        write_sysctl("amemthresh", 1)


def test_missing_directory_means_not_loaded(tmp_path: Path) -> None:
    with pytest.raises(IpvsSysctlsUnavailable) as err:
        read_sysctls(tmp_path / "vs")
    assert "not loaded" in str(err.value)
    with pytest.raises(IpvsSysctlsUnavailable):
        apply_sysctls(IpvsSysctls(conntrack=1), tmp_path / "vs")


def test_sysctls_are_per_namespace(netns: Callable[[str], str], sh: Callable[..., str]) -> None:
    ns = netns("sc")
    script = (
        "import json; from hacontrol.ipvs.sysctl import IpvsSysctls, apply_sysctls; "
        "print(json.dumps([c.name for c in apply_sysctls(IpvsSysctls(expire_nodest_conn=1,"
        " sync_version=0))]))"
    )
    changed = json.loads(sh([sys.executable, "-c", script], netns=ns))
    assert changed == ["expire_nodest_conn", "sync_version"]
    assert sh(["cat", "/proc/sys/net/ipv4/vs/expire_nodest_conn"], netns=ns) == "1\n"
    assert sh(["sysctl", "-n", "net.ipv4.vs.sync_version"], netns=ns) == "0\n"
    # The init namespace is untouched.
    assert sysctl_value("expire_nodest_conn") == 0
    assert sysctl_value("sync_version") == 1
