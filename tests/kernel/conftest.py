"""Kernel tier: tests that need a real kernel with IPVS, run inside the VM.

`scripts/vm-pytest` boots Debian's kernel in qemu once and runs pytest in it
with HACONTROL_IN_VM=1. Anywhere else every test here is skipped.

Inside the VM: `modprobe ip_vs` once (the run stops if it fails), then per test
a clean init-namespace IPVS table (services flushed, sync daemons stopped,
timeouts and every net.ipv4.vs sysctl back to their boot values), plus:

- `ipvsadm(*args, netns=None) -> str`: the real ipvsadm, our independent witness;
- `netns(label="") -> str`: a fresh network namespace (its own IPVS table, lo up),
  deleted at teardown with anything still running in it;
- `sh(argv, netns=None) -> str`: run a command (in a namespace), output or failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.kernel.daemon_util import Procs

IN_VM = os.environ.get("HACONTROL_IN_VM") == "1"
IN_CI = os.environ.get("CI", "").lower() == "true"
SKIP_REASON = "kernel tier: run it with scripts/vm-pytest"
KERNEL_DIR = Path(__file__).resolve().parent
VS_SYSCTL_DIR = Path("/proc/sys/net/ipv4/vs")
# The helper tag every namespace / link name created here starts with.
NAME_TAG = "vm"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if KERNEL_DIR not in Path(item.path).resolve().parents:
            continue
        item.add_marker(pytest.mark.kernel)
        if not IN_VM:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def require_tool(name: str) -> str:
    """The tool's path; skip when missing, fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found on PATH (Debian package providing it must be installed)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(
    argv: Sequence[str], netns: str | None = None, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"command failed ({result.returncode}): {' '.join(full)}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


class Ipvsadm:
    """The real ipvsadm, in the init namespace or in a named one."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, *args: str, netns: str | None = None, check: bool = True) -> str:
        return run([self.path, *args], netns=netns, check=check).stdout


def _read_sysctls() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(VS_SYSCTL_DIR.iterdir()) if p.is_file()}


def _timeouts(ipvsadm: Ipvsadm) -> list[str]:
    # "Timeout (tcp tcpfin udp): 900 120 300"
    return ipvsadm("-L", "--timeout").split(":", 1)[1].split()


class Baseline:
    """The init namespace's IPVS settings right after modprobe, to restore after each test."""

    def __init__(self, ipvsadm: Ipvsadm) -> None:
        self.ipvsadm = ipvsadm
        self.sysctls = _read_sysctls()
        self.timeouts = _timeouts(ipvsadm)

    def restore(self) -> None:
        # Each ipvsadm run costs a process start in an emulated CPU: only flush
        # when /proc/net/ip_vs lists a service (its first 3 lines are headers).
        if len(Path("/proc/net/ip_vs").read_text().splitlines()) > 3:
            self.ipvsadm("-C")
        daemons = self.ipvsadm("-L", "--daemon")
        for state in ("master", "backup"):
            if daemons.startswith(state) or f"\n{state} " in daemons:
                self.ipvsadm("--stop-daemon", state)
        if _timeouts(self.ipvsadm) != self.timeouts:
            self.ipvsadm("--set", *self.timeouts)
        for name, value in _read_sysctls().items():
            if self.sysctls.get(name) != value and name in self.sysctls:
                (VS_SYSCTL_DIR / name).write_text(self.sysctls[name])


@pytest.fixture(scope="session")
def ipvsadm_path() -> str:
    return require_tool("ipvsadm")


@pytest.fixture(scope="session")
def ipvs_baseline(ipvsadm_path: str) -> Baseline:
    result = subprocess.run(
        ["modprobe", "ip_vs"], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.exit(
            f"modprobe ip_vs failed ({result.returncode}): {result.stderr.strip()}", returncode=3
        )
    if not VS_SYSCTL_DIR.is_dir():
        pytest.exit(f"{VS_SYSCTL_DIR} missing after modprobe ip_vs", returncode=3)
    return Baseline(Ipvsadm(ipvsadm_path))


@pytest.fixture(autouse=True)
def clean_ipvs(ipvs_baseline: Baseline) -> Iterator[None]:
    """Each test ends with the init namespace's IPVS as it was at boot.

    The baseline is taken right after modprobe, so the first test starts clean,
    and every teardown (which runs even when the test fails) restores it.
    """
    yield
    ipvs_baseline.restore()


@pytest.fixture
def ipvsadm(ipvsadm_path: str) -> Ipvsadm:
    return Ipvsadm(ipvsadm_path)


@pytest.fixture
def sh() -> Callable[..., str]:
    def call(argv: Sequence[str], netns: str | None = None, check: bool = True) -> str:
        return run(argv, netns=netns, check=check).stdout

    return call


def _kill_all_in(name: str) -> None:
    # Whatever a test started in the namespace and did not stop (it failed
    # half-way): those pids were started by the test, in this namespace only.
    result = run(["ip", "netns", "pids", name], check=False)
    for pid in result.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@pytest.fixture
def netns() -> Iterator[Callable[[str], str]]:
    """Factory: `netns("m")` -> name of a fresh namespace "vmm-1a2b3c" with lo up."""
    require_tool("ip")
    created: list[str] = []

    def make(label: str = "") -> str:
        name = f"{NAME_TAG}{label}-{secrets.token_hex(3)}"
        run(["ip", "netns", "add", name])
        created.append(name)
        # A new namespace's loopback is down; IPVS services on local
        # addresses and anything on 127.0.0.1 need it up.
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    yield make
    for name in reversed(created):
        _kill_all_in(name)
        run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Processes a test starts (daemons, servers), killed by pid at teardown."""
    from tests.kernel.daemon_util import Procs

    started = Procs()
    yield started
    started.stop_all()
