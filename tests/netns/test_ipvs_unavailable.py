"""A kernel without IPVS, for real: the host's own (CONFIG_IP_VS is not set, TESTING.md).

The transport resolves the "IPVS" generic-netlink family first; with no ip_vs module the
kernel's genetlink controller answers ENOENT, which must reach callers as ``IpvsUnavailable``
(an ``IpvsError``) with the remedy in its message, and ``hacontrol ipvs list`` must say so
and exit 1 instead of a traceback. The kernel tier (tests/kernel) covers a kernel with IPVS.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacontrol.ipvs.netlink import AsyncIpvs, IpvsError, IpvsNetlink, IpvsUnavailable
from tests.netns.netns_util import Lab, require_root

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.netns


@pytest.fixture(autouse=True)
def kernel_without_ipvs() -> None:
    if Path("/proc/net/ip_vs").exists():
        pytest.skip("this kernel has IPVS loaded; tests/kernel covers it (scripts/vm-pytest)")


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root()
    with Lab("nv") as lab:
        yield lab


def test_open_without_ip_vs_is_ipvs_unavailable() -> None:
    with pytest.raises(IpvsUnavailable) as err:
        IpvsNetlink()
    assert isinstance(err.value, IpvsError)
    assert err.value.errno_name == "ENOENT"
    assert str(err.value).startswith("IPVS: not available:")
    assert "modprobe ip_vs" in str(err.value)


def test_open_in_a_namespace_without_ip_vs(lab: Lab) -> None:
    ns = lab.netns("a")
    home = os.readlink("/proc/thread-self/ns/net")
    with pytest.raises(IpvsUnavailable):
        IpvsNetlink(netns=ns.name)
    with pytest.raises(IpvsUnavailable):
        asyncio.run(AsyncIpvs.open(netns=ns.name))
    assert os.readlink("/proc/thread-self/ns/net") == home


@pytest.mark.parametrize("args", [[], ["--daemon"], ["--timeout"]], ids=["table", "daemon", "to"])
def test_cli_says_ipvs_is_not_available(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hacontrol", "ipvs", "list", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("hacontrol ipvs: IPVS: not available:"), proc.stderr
    assert "modprobe ip_vs" in proc.stderr
    assert "Traceback" not in proc.stderr
