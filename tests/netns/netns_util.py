"""Network-namespace labs for tests: namespaces, veths, bridges, processes, frame capture.

A `Lab` creates everything under unique names (helper tag + random suffix, so concurrent test
runs never collide) and remembers it; `Lab.cleanup()` kills the processes it started (by pid)
and deletes the namespaces it made, which takes every link inside them along. Use it through
a fixture with a finalizer:

    @pytest.fixture
    def lab() -> Iterator[Lab]:
        require_root()
        with Lab("io") as lab:
            yield lab

    def test_x(lab: Lab) -> None:
        a, b = lab.netns("a"), lab.netns("b")
        br = lab.switch()                      # a bridge in its own namespace
        lab.plug(a, br, "eth0", "192.0.2.1/24")
        lab.plug(b, br, "eth0", "192.0.2.2/24")
        a.run("ping", "-c1", "-W1", "192.0.2.2")

`Capture` opens an AF_PACKET socket inside a namespace (via setns(2) in a short-lived thread,
so the test process itself never leaves its namespace) and collects frames with a deadline.
`socket_in_netns` does the same for any socket type (e.g. a raw socket to inject packets).

Network safety: the lab only ever addresses interfaces inside namespaces it created; use the
documentation prefixes (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tests.support import missing

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
IFNAMSIZ = 15  # usable characters of an interface name (IFNAMSIZ 16 minus the NUL)
DEFAULT_TIMEOUT = 10.0


def require_root(*tools: str) -> None:
    """Skip (or fail when CI=true) unless we are root and every named tool is on PATH."""
    absent: list[str] = []
    if os.geteuid() != 0:
        absent.append("root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    absent.extend(f"the {tool!r} tool on PATH" for tool in ("ip", *tools) if not shutil.which(tool))
    if absent:
        missing("needs " + ", ".join(absent))


def unique_name(tag: str, label: str = "", *, limit: int = IFNAMSIZ) -> str:
    """`tag` + `label` + a random suffix, cut to fit an interface name (15 characters)."""
    suffix = secrets.token_hex(3)
    stem = f"{tag}{label}"[: limit - len(suffix) - 1]
    return f"{stem}-{suffix}"


def run(argv: Sequence[str], *, check: bool = True, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run a command with a bounded time; return its stdout; raise with stderr on failure."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}"
        )
    return proc.stdout


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}")
        time.sleep(interval)


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def in_netns(netns: str, func: Callable[[], Any]) -> Any:
    """Call `func` with the calling thread inside namespace `netns`; return its result.

    setns(2) changes only the calling thread, so this runs `func` in a new thread and the rest
    of the process stays where it is. Sockets keep the namespace they were created in.
    """
    result: list[Any] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            with open(f"/run/netns/{netns}", "rb") as f:
                _setns(f.fileno())
            result.append(func())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{netns}")
    thread.start()
    thread.join(DEFAULT_TIMEOUT)
    if thread.is_alive():
        raise TimeoutError(f"in_netns({netns!r}) did not finish")
    if error:
        raise error[0]
    return result[0]


def socket_in_netns(netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside namespace `netns` (it stays there whatever thread uses it)."""
    sock: socket.socket = in_netns(netns, lambda: socket.socket(family, kind, proto))
    return sock


@dataclass(frozen=True)
class Netns:
    """One network namespace; `run`/`popen` execute commands inside it."""

    name: str

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = DEFAULT_TIMEOUT) -> str:
        return run(self.argv(*argv), check=check, timeout=timeout)

    def ip(self, *args: str, check: bool = True) -> str:
        return run(["ip", "-n", self.name, *args], check=check)

    def ip_json(self, *args: str) -> Any:
        return json.loads(self.ip("-j", *args) or "[]")

    def link(self, ifname: str) -> dict[str, Any] | None:
        """`ip -j link show dev IF` as a dict, or None if the link does not exist."""
        out = run(["ip", "-n", self.name, "-j", "link", "show", "dev", ifname], check=False)
        links = json.loads(out) if out.strip() else []
        return links[0] if links else None

    def mac(self, ifname: str) -> bytes:
        link = self.link(ifname)
        assert link is not None, f"{ifname} missing in {self.name}"
        return bytes.fromhex(link["address"].replace(":", ""))

    def addresses(self, ifname: str) -> set[str]:
        """The addresses on `ifname`, as 'addr/prefixlen' strings (empty if the link is gone)."""
        out = run(["ip", "-n", self.name, "-j", "addr", "show", "dev", ifname], check=False)
        found: set[str] = set()
        for link in json.loads(out) if out.strip() else []:
            for info in link.get("addr_info", []):
                found.add(f"{info['local']}/{info['prefixlen']}")
        return found

    def has_address(self, ifname: str, address: str) -> bool:
        return any(a.split("/")[0] == address for a in self.addresses(ifname))


@dataclass
class Lab:
    """Owns namespaces and processes; `cleanup()` removes them all, even after failures."""

    tag: str
    namespaces: list[Netns] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def netns(self, label: str = "") -> Netns:
        """A new namespace with loopback up."""
        ns = Netns(unique_name(self.tag, label, limit=40))
        run(["ip", "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        # Tentative (DAD) addresses cannot be used as a source; tests want them at once.
        ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
        ns.run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        return ns

    def switch(self, label: str = "sw") -> tuple[Netns, str]:
        """A bridge in a namespace of its own: (namespace, bridge name)."""
        ns = self.netns(label)
        name = "br0"
        ns.ip("link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        # Multicast snooping would withhold 224.0.0.18 / ff02::12 from ports that never
        # sent a report; VRRP peers must hear each other regardless.
        ns.ip("link", "set", name, "type", "bridge", "mcast_snooping", "0")
        ns.ip("link", "set", name, "up")
        return ns, name

    def plug(
        self,
        ns: Netns,
        switch: tuple[Netns, str],
        ifname: str = "eth0",
        *addresses: str,
        mac: str | None = None,
    ) -> str:
        """A veth from `ns` (named `ifname`, up, with `addresses`) to a port of `switch`.

        Returns the name of the switch-side port (to cut the cable: set it down).
        """
        sw_ns, bridge = switch
        port = unique_name(self.tag, "p")
        tmp = unique_name(self.tag, "t")
        run(
            [
                "ip",
                "link",
                "add",
                port,
                "netns",
                sw_ns.name,
                "type",
                "veth",
                "peer",
                "name",
                tmp,
                "netns",
                ns.name,
            ]
        )
        ns.ip("link", "set", tmp, "name", ifname)
        if mac is not None:
            ns.ip("link", "set", ifname, "address", mac)
        for address in addresses:
            ns.ip("addr", "add", address, "dev", ifname, *(["nodad"] if ":" in address else []))
        ns.ip("link", "set", ifname, "up")
        sw_ns.ip("link", "set", port, "master", bridge)
        sw_ns.ip("link", "set", port, "up")
        return port

    def veth(self, a: Netns, a_name: str, b: Netns, b_name: str) -> None:
        """A veth pair straight from `a` to `b` (both ends down; no addresses)."""
        tmp_a, tmp_b = unique_name(self.tag, "a"), unique_name(self.tag, "b")
        run(
            [
                "ip",
                "link",
                "add",
                tmp_a,
                "netns",
                a.name,
                "type",
                "veth",
                "peer",
                "name",
                tmp_b,
                "netns",
                b.name,
            ]
        )
        a.ip("link", "set", tmp_a, "name", a_name)
        b.ip("link", "set", tmp_b, "name", b_name)

    def spawn(
        self,
        ns: Netns,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.PIPE,
        stdout: int | None = subprocess.PIPE,
        stderr: int | None = None,
        cwd: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside `ns`; the lab kills it (by pid) at cleanup if still running."""
        proc = subprocess.Popen(
            ns.argv(*argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.processes.append(proc)
        return proc

    def python(self, ns: Netns, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start this interpreter inside `ns` with the repository on PYTHONPATH, and in it:
        `python -m` puts the working directory first on sys.path, so a benchmark of another
        checkout (an A/B) started from this one would otherwise run this one's code."""
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**kwargs.pop("env", {}), "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
        return self.spawn(ns, [sys.executable, *args], env=env, cwd=root, **kwargs)

    def on_cleanup(self, func: Callable[[], None]) -> None:
        self._cleanups.append(func)

    def cleanup(self) -> None:
        for func in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                func()
        self._cleanups.clear()
        for proc in self.processes:
            stop_process(proc, signal.SIGKILL, timeout=5.0)
        self.processes.clear()
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns.name], check=False)
        self.namespaces.clear()


def stop_process(proc: subprocess.Popen[bytes], sig: int, *, timeout: float) -> int | None:
    """Send `sig` to `proc` (by pid) unless it has exited; wait up to `timeout`; SIGKILL after."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    return proc.returncode


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured Ethernet frame and when it arrived, in its capturer's clock (Capture:
    monotonic time of the read; the interop Witness: the kernel's CLOCK_REALTIME receive
    stamp)."""

    data: bytes
    at: float

    @property
    def ethertype(self) -> int:
        return int.from_bytes(self.data[12:14], "big")

    @property
    def src_mac(self) -> bytes:
        return self.data[6:12]

    @property
    def dst_mac(self) -> bytes:
        return self.data[0:6]


class Capture:
    """Frames arriving on `ifname` in namespace `ns`, read with an AF_PACKET socket.

    The socket is opened at construction, so everything that arrives afterwards is kept in the
    kernel's receive buffer until read (raised to 4 MiB: a test may read seconds later).
    Close it with `close()` or use it as a context manager.
    """

    def __init__(self, ns: Netns, ifname: str, ethertype: int = ETH_P_ALL) -> None:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((ifname, ethertype))
            return sock

        self.sock: socket.socket = in_netns(ns.name, make)
        self.sock.setblocking(False)
        self.frames: list[Frame] = []

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _drain(self, wait: float) -> None:
        readable, _, _ = select.select([self.sock], [], [], max(0.0, wait))
        if not readable:
            return
        for _ in range(10_000):
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            # addr[2] is the packet type; PACKET_OUTGOING (4) frames are our own sends.
            if addr[2] != socket.PACKET_OUTGOING:
                self.frames.append(Frame(data, time.monotonic()))

    def collect(self, duration: float) -> list[Frame]:
        """Read everything that arrives within `duration` seconds; return all frames so far."""
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            self._drain(min(left, 0.1))
        self._drain(0)
        return list(self.frames)

    def wait_for(
        self,
        predicate: Callable[[list[Frame]], bool],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        message: str = "frames",
    ) -> list[Frame]:
        """Read until `predicate(all frames so far)` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain(0)
            if predicate(self.frames):
                return list(self.frames)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out after {timeout:.1f}s waiting for {message}; "
                    f"captured {len(self.frames)} frames"
                )
            self._drain(min(left, 0.1))

    def matching(self, pattern: bytes) -> list[Frame]:
        """The frames captured so far whose bytes equal `pattern` exactly."""
        return [f for f in self.frames if f.data == pattern]
