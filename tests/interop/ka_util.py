"""Peers and a witness for VRRP tests: hacontrol and keepalived daemons, a timestamped capture.

Shared by the interop tests (hacontrol against Debian's keepalived), the daemon-level netns
tests and benchmarks/failover.py. Everything runs inside namespaces made by a
`tests.netns.netns_util.Lab`, which kills what it started (by pid) and deletes its namespaces.

- `HaDaemon` runs `python3 -m hacontrol run -c FILE` in a namespace from a config it writes.
- `Keepalived` runs `keepalived -n -l -D -P` in a namespace with its own three pid files.
  keepalived forks a VRRP child even with -n (its pid is in the -r file): a crash
  (`kill9`) stops the parent first so it cannot respawn the child, then kills the child,
  which is the process that sends adverts, then the parent.
- `Witness` reads every frame on a link with an AF_PACKET socket and the kernel's receive
  timestamp (SO_TIMESTAMPNS), so timings do not depend on when the test got round to reading.
  It parses VRRP headers itself rather than with hacontrol's codec: a witness that shared
  the code under test would share its bugs.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import yaml

from tests.netns.netns_util import ETH_P_ALL, Frame, Lab, Netns, socket_in_netns, stop_process

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
IPPROTO_VRRP = 112
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
STOP_TIMEOUT = 10.0

# ---- the witness -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdvertSeen:
    """The fields of a VRRP advertisement a test reasons about."""

    at: float
    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    ttl: int
    version: int
    vrid: int
    priority: int
    interval_centis: int  # v2's whole seconds converted, v3's 12-bit field as is
    auth_type: int  # v2 only; 0 for v3
    src_mac: bytes
    count: int = 0  # how many addresses it carries


def parse_advert(frame: Frame) -> AdvertSeen | None:
    """The VRRP advertisement in `frame`, or None if the frame carries none."""
    data = frame.data
    if frame.ethertype == ETH_P_IP and len(data) >= 34:
        ihl = (data[14] & 0x0F) * 4
        if data[23] != IPPROTO_VRRP or len(data) < 14 + ihl + 8:
            return None
        src: IPv4Address | IPv6Address = IPv4Address(data[26:30])
        dst: IPv4Address | IPv6Address = IPv4Address(data[30:34])
        ttl, vrrp = data[22], data[14 + ihl :]
    elif frame.ethertype == ETH_P_IPV6 and len(data) >= 62:
        # VRRP goes straight after the fixed header (RFC 5798 §5.1.2 has no extension headers).
        if data[20] != IPPROTO_VRRP:
            return None
        src, dst = IPv6Address(data[22:38]), IPv6Address(data[38:54])
        ttl, vrrp = data[21], data[54:]
    else:
        return None
    version = vrrp[0] >> 4
    if version == 2:
        interval, auth = vrrp[5] * 100, vrrp[4]
    elif version == 3:
        interval, auth = int.from_bytes(vrrp[4:6], "big") & 0x0FFF, 0
    else:
        return None
    return AdvertSeen(
        frame.at, src, dst, ttl, version, vrrp[1], vrrp[2], interval, auth, frame.src_mac, vrrp[3]
    )


def is_garp(frame: Frame, vip: IPv4Address | IPv6Address) -> bool:
    """A gratuitous ARP (sender IP = target IP = vip) or an unsolicited NA for `vip`."""
    data = frame.data
    if isinstance(vip, IPv4Address):
        return (
            frame.ethertype == ETH_P_ARP
            and len(data) >= 42
            and data[28:32] == vip.packed
            and data[38:42] == vip.packed
        )
    return (
        frame.ethertype == ETH_P_IPV6
        and len(data) >= 78
        and data[20] == IPPROTO_ICMPV6
        and data[54] == ND_NEIGHBOR_ADVERT
        and data[62:78] == vip.packed
    )


class Witness:
    """Every frame arriving on `ifname` in `ns`, with kernel receive timestamps.

    The socket is open from construction on; frames wait in a 16 MiB receive buffer until
    `poll()` reads them, so a test may look seconds later without losing timing accuracy.
    Frames the namespace itself sends (PACKET_OUTGOING) are skipped: put the witness in a
    namespace of its own, or on the switch-side port of a veth to see what a peer sends.
    """

    def __init__(self, ns: Netns, ifname: str) -> None:
        sock = socket_in_netns(ns.name, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((ifname, ETH_P_ALL))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        self.frames: list[Frame] = []

    def __enter__(self) -> Witness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def poll(self, wait: float = 0.0) -> list[Frame]:
        """Read what has arrived (waiting up to `wait` s for the first frame); return all."""
        if wait > 0:
            select.select([self.sock], [], [], wait)
        space = socket.CMSG_SPACE(16)
        for _ in range(100_000):
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(65535, space)
            except BlockingIOError:
                break
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            at = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    at = sec + nsec / 1e9
            self.frames.append(Frame(data, at))
        return self.frames

    def collect(self, duration: float) -> list[Frame]:
        """Read for `duration` seconds; return every frame so far."""
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            self.poll(min(left, 0.1))
        return self.poll()

    def adverts(self, vrid: int | None = None, since: float = 0.0) -> list[AdvertSeen]:
        found = [a for f in self.poll() if f.at >= since and (a := parse_advert(f)) is not None]
        return [a for a in found if vrid is None or a.vrid == vrid]

    def garps(self, vip: IPv4Address | IPv6Address, since: float = 0.0) -> list[Frame]:
        return [f for f in self.poll() if f.at >= since and is_garp(f, vip)]

    def wait_for(
        self,
        predicate: Callable[[], Any],
        *,
        timeout: float,
        message: str,
    ) -> Any:
        """Poll frames until `predicate()` is truthy; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            result = predicate()
            if result:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out after {timeout:.1f}s waiting for {message}; "
                    f"{len(self.frames)} frames captured"
                )
            self.poll(min(left, 0.05))


# ---- peers -------------------------------------------------------------------------------


class Peer:
    """A VRRP daemon in a namespace: the tests treat hacontrol and keepalived alike."""

    kind = "peer"
    ready_marker = ""  # a log line that says the daemon runs its VRRP instances

    def __init__(self, lab: Lab, ns: Netns, workdir: Path, name: str) -> None:
        self.lab, self.ns, self.name = lab, ns, name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def holds(self, vip: str, ifname: str = "eth0") -> bool:
        return self.ns.has_address(ifname, vip)

    def _spawn(self, argv: Sequence[str], *, python: bool = False) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:
            log.write(f"---- start {time.time():.6f}\n".encode())
            log.flush()
            out, err = log.fileno(), subprocess.STDOUT
            if python:
                self.proc = self.lab.python(
                    self.ns, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err
                )
            else:
                self.proc = self.lab.spawn(
                    self.ns, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err
                )

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop gracefully (priority-0 advert); return the exit code."""
        if self.proc is None:
            return None
        return stop_process(self.proc, sig, timeout=timeout)

    def kill9(self) -> float:
        """Crash it with SIGKILL: no priority-0 advert, VIPs left behind. Returns the kill time."""
        raise NotImplementedError

    def current_log(self) -> str:
        """The log since the latest start."""
        return self.log_text().rpartition("---- start ")[2]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the daemon logs that its instances run (Python start-up takes seconds
        on a loaded machine; a test that starts the clock before then measures start-up)."""
        deadline = time.monotonic() + timeout
        while self.ready_marker not in self.current_log():
            if not self.running:
                raise AssertionError(f"{self.name} exited before it was ready:\n{self.tail()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@dataclass(frozen=True, slots=True)
class Instance:
    """One VRRP instance, rendered as hacontrol YAML or keepalived.conf."""

    vrid: int
    priority: int
    vips: tuple[str, ...]  # "192.0.2.100/24"
    version: int = 2
    advert_int: float = 1.0
    interface: str = "eth0"
    name: str = "VI_1"
    auth_pass: str | None = None
    preempt: bool = True
    preempt_delay: float = 0.0
    garp_master_delay: float = 5.0
    garp_master_repeat: int = 5
    unicast_src_ip: str | None = None
    unicast_peers: tuple[str, ...] = ()
    mcast_src_ip: str | None = None  # keepalived only: hacontrol sends from its primary address
    unicast_ttl: int | None = None
    min_ttl: int | None = None  # keepalived: per unicast_peer; rendered on every peer
    max_ttl: int | None = None
    check_unicast_src: bool = False
    # Tracking, rendered both ways: (name, weight or None) per kind.
    track_interface: tuple[tuple[str, int | None], ...] = ()
    track_script: tuple[tuple[str, int | None], ...] = ()
    track_file: tuple[tuple[str, int | None], ...] = ()
    dont_track_primary: bool = False
    # Anything else, as each side spells it: keys of hacontrol's instance (a mapping or
    # (key, value) pairs), lines inside keepalived's vrrp_instance block (virtual_routes,
    # use_vmac, state, notify_master, ...).
    hacontrol_extra: Mapping[str, Any] | tuple[tuple[str, Any], ...] = ()
    keepalived_extra: tuple[str, ...] = ()

    def hacontrol(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "interface": self.interface,
            "vrid": self.vrid,
            "version": self.version,
            "priority": self.priority,
            "advert_int": self.advert_int,
            "virtual_ipaddresses": list(self.vips),
            "garp_master_delay": self.garp_master_delay,
            "garp_master_repeat": self.garp_master_repeat,
        }
        if not self.preempt:
            out["nopreempt"] = True
        if self.preempt_delay:
            out["preempt_delay"] = self.preempt_delay
        if self.auth_pass is not None:
            out["authentication"] = {"auth_type": "PASS", "auth_pass": self.auth_pass}
        if self.unicast_peers:
            out["unicast_peers"] = list(self.unicast_peers)
            if self.unicast_src_ip:
                out["unicast_src_ip"] = self.unicast_src_ip
            for key in ("unicast_ttl", "min_ttl", "max_ttl"):
                if getattr(self, key) is not None:
                    out[key] = getattr(self, key)
            if self.check_unicast_src:
                out["check_unicast_src"] = True
        for key in ("track_interface", "track_script", "track_file"):
            refs = getattr(self, key)
            if refs:
                out[key] = [
                    name if weight is None else {"name": name, "weight": weight}
                    for name, weight in refs
                ]
        if self.dont_track_primary:
            out["dont_track_primary"] = True
        out.update(self.hacontrol_extra)
        return out

    def keepalived(self) -> str:
        lines = [
            f"vrrp_instance {self.name} {{",
            *(
                []
                if any(x.split()[:1] == ["state"] for x in self.keepalived_extra)
                else ["    state BACKUP"]
            ),
            *(f"    {line}" for line in self.keepalived_extra),
            f"    interface {self.interface}",
            f"    virtual_router_id {self.vrid}",
            f"    version {self.version}",
            f"    priority {self.priority}",
            f"    advert_int {self.advert_int:g}",
            f"    garp_master_delay {self.garp_master_delay:g}",
            f"    garp_master_repeat {self.garp_master_repeat}",
        ]
        if not self.preempt:
            lines.append("    nopreempt")
        if self.preempt_delay:
            lines.append(f"    preempt_delay {self.preempt_delay:g}")
        if self.auth_pass is not None:
            lines += [
                "    authentication {",
                "        auth_type PASS",
                f"        auth_pass {self.auth_pass}",
                "    }",
            ]
        if self.mcast_src_ip:
            lines.append(f"    mcast_src_ip {self.mcast_src_ip}")
        if self.unicast_peers:
            if self.unicast_src_ip:
                lines.append(f"    unicast_src_ip {self.unicast_src_ip}")
            if self.unicast_ttl is not None:
                lines.append(f"    unicast_ttl {self.unicast_ttl}")
            if self.check_unicast_src:
                lines.append("    check_unicast_src")
            bounds = "".join(
                f" {key} {getattr(self, key)}"
                for key in ("min_ttl", "max_ttl")
                if getattr(self, key) is not None
            )
            peers = [f"        {p}{bounds}" for p in self.unicast_peers]
            lines += ["    unicast_peer {", *peers, "    }"]
        for key in ("track_interface", "track_script", "track_file"):
            refs = getattr(self, key)
            if refs:
                lines.append(f"    {key} {{")
                lines += [
                    f"        {name}" + ("" if weight is None else f" weight {weight}")
                    for name, weight in refs
                ]
                lines.append("    }")
        if self.dont_track_primary:
            lines.append("    dont_track_primary")
        lines += ["    virtual_ipaddress {", *(f"        {v}" for v in self.vips), "    }", "}"]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Script:
    """A vrrp_script, rendered as hacontrol YAML or keepalived.conf (argv, no shell)."""

    name: str
    argv: tuple[str, ...]
    interval: float = 1.0
    timeout: float | None = None
    weight: int = 0
    rise: int = 1
    fall: int = 1

    def hacontrol(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "script": list(self.argv),
            "interval": self.interval,
            "weight": self.weight,
            "rise": self.rise,
            "fall": self.fall,
        }
        if self.timeout is not None:
            out["timeout"] = self.timeout
        return out

    def keepalived(self) -> str:
        words = " ".join(self.argv)
        lines = [
            f"vrrp_script {self.name} {{",
            f'    script "{words}"',
            f"    interval {max(1, round(self.interval))}",
            f"    weight {self.weight}",
            f"    rise {self.rise}",
            f"    fall {self.fall}",
        ]
        if self.timeout is not None:
            lines.append(f"    timeout {max(1, round(self.timeout))}")
        return "\n".join([*lines, "}"]) + "\n"


@dataclass(frozen=True, slots=True)
class SyncGroup:
    name: str
    members: tuple[str, ...]
    # Anything else, as each side spells it (notify_master, ...): keys of hacontrol's
    # group, lines inside keepalived's vrrp_sync_group block.
    hacontrol_extra: tuple[tuple[str, Any], ...] = ()
    keepalived_extra: tuple[str, ...] = ()

    def hacontrol(self) -> dict[str, Any]:
        return {"name": self.name, "group": list(self.members), **dict(self.hacontrol_extra)}

    def keepalived(self) -> str:
        body = "".join(f"        {m}\n" for m in self.members)
        more = "".join(f"    {line}\n" for line in self.keepalived_extra)
        return f"vrrp_sync_group {self.name} {{\n    group {{\n{body}    }}\n{more}}}\n"


class HaDaemon(Peer):
    """`python3 -m hacontrol run -c FILE` inside a namespace."""

    kind = "hacontrol"
    ready_marker = "daemon.started"

    def __init__(
        self,
        lab: Lab,
        ns: Netns,
        workdir: Path,
        name: str,
        instances: Sequence[Instance],
        *,
        metrics_listen: str | None = None,
        log_level: str = "info",
        extra: dict[str, Any] | None = None,
        global_extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(lab, ns, workdir, name)
        self.instances = tuple(instances)
        self.extra = dict(extra or {})  # more config sections (virtual_servers, ipvs, ...)
        self.global_extra = dict(global_extra or {})  # more `global` keys
        self.metrics_listen = metrics_listen
        self.log_level = log_level
        self.config_path = workdir / f"{name}.yaml"
        self.run_dir = workdir / f"{name}.run"
        self.state_dir = workdir / f"{name}.state"
        self.write_config()

    def write_config(self) -> None:
        config = {
            "global": {
                "router_id": self.name,
                "metrics_listen": self.metrics_listen,
                **self.global_extra,
            },
            "vrrp_instances": [i.hacontrol() for i in self.instances],
            **self.extra,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self) -> None:
        argv = ["-m", "hacontrol", "run", "-c", str(self.config_path)]
        # Each daemon of a test is a director of its own: its own lock, control socket
        # and state file (the defaults under /run and /var/lib are one per host).
        argv += ["--run-dir", str(self.run_dir), "--state-dir", str(self.state_dir)]
        self._spawn([*argv, "--log-level", self.log_level], python=True)

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "control"

    def control(self, request: dict[str, Any], *, timeout: float = 30.0) -> Any:
        """One request over the daemon's control socket; its result (ControlError if refused)."""
        from hacontrol.runtime.control import call

        return call(self.control_socket, request, timeout=timeout)

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`hacontrol ARGS -s SOCKET` as an operator runs it (from outside the namespace:
        the control socket is a path)."""
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(
            [sys.executable, "-m", "hacontrol", *args, "-s", str(self.control_socket)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            check=False,
        )

    def kill9(self) -> float:
        assert self.proc is not None
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)
        return at

    def metrics(self) -> dict[str, float]:
        """The Prometheus endpoint's samples, `name{labels}` -> value, read inside the netns."""
        assert self.metrics_listen is not None, "started without metrics_listen"
        host, _, port = self.metrics_listen.rpartition(":")
        sock = socket_in_netns(self.ns.name, socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(5.0)
            sock.connect((host, int(port)))
            sock.sendall(f"GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            chunks = []
            for _ in range(10_000):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        body = b"".join(chunks).partition(b"\r\n\r\n")[2].decode()
        samples: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    samples[key] = float(value)
        return samples


class Keepalived(Peer):
    """Debian's keepalived (VRRP only, -P) inside a namespace, with its own pid files."""

    kind = "keepalived"
    # The VRRP child logs its first state once it has sockets and addresses.
    ready_marker = "Entering BACKUP STATE"

    def __init__(
        self,
        lab: Lab,
        ns: Netns,
        workdir: Path,
        name: str,
        instances: Sequence[Instance],
        *,
        binary: str = "keepalived",
        scripts: Sequence[Script] = (),
        groups: Sequence[SyncGroup] = (),
        global_defs: Sequence[str] = (),
    ) -> None:
        super().__init__(lab, ns, workdir, name)
        self.instances = tuple(instances)
        self.global_defs = tuple(global_defs)  # more global_defs lines
        self.scripts = tuple(scripts)
        self.groups = tuple(groups)
        self.binary = binary
        self.conf_path = workdir / f"{name}.conf"
        self.pid_main = workdir / f"{name}.pid"
        self.pid_vrrp = workdir / f"{name}.vrrp.pid"
        self.pid_check = workdir / f"{name}.check.pid"
        self.conf_path.write_text(self.render())
        # Whatever happens to the test, the VRRP child (not a child of ours) dies by pid too.
        lab.on_cleanup(self._kill_child)

    def render(self) -> str:
        # garp_master_delay / repeat are per instance; the global defaults only matter for
        # instances that do not set them. No vrrp_strict: it forbids authentication.
        # enable_script_security off, script_user root: the test's scripts are ours.
        more = "".join(f"    {line}\n" for line in self.global_defs)
        head = f"global_defs {{\n    router_id {self.name}\n    script_user root\n{more}}}\n"
        blocks = [s.keepalived() for s in self.scripts] + [g.keepalived() for g in self.groups]
        return head + "".join(blocks) + "".join(i.keepalived() for i in self.instances)

    def start(self) -> None:
        for path in (self.pid_main, self.pid_vrrp, self.pid_check):
            path.unlink(missing_ok=True)
        argv = [self.binary, "-n", "-l", "-D", "-P", "-f", str(self.conf_path)]
        argv += ["-p", str(self.pid_main), "-r", str(self.pid_vrrp), "-c", str(self.pid_check)]
        self._spawn(argv)

    def child_pid(self, timeout: float = 5.0) -> int:
        """The VRRP child's pid (the process that sends adverts), from the -r pid file."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int(self.pid_vrrp.read_text().split()[0])
                if pid != (self.proc.pid if self.proc else None):
                    return pid
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name}: no VRRP child pid in {self.pid_vrrp}")
            time.sleep(0.05)

    def _kill_child(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(self.pid_vrrp.read_text().split()[0])
            if _is_our_keepalived(pid, self.conf_path):
                os.kill(pid, signal.SIGKILL)

    def kill9(self) -> float:
        assert self.proc is not None
        child = self.child_pid()
        # Stop the parent first: it would respawn a child that dies. Then the child, which
        # sends the adverts, then the parent (SIGKILL works on a stopped process).
        os.kill(self.proc.pid, signal.SIGSTOP)
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)
        _wait_gone(child)
        return at

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        code = super().stop(sig, timeout)
        self._kill_child()  # normally gone already: the parent waits for its children
        return code


def _is_our_keepalived(pid: int, conf: Path) -> bool:
    """Whether `pid` is still the keepalived we started (pids are recycled)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(conf).encode() in cmdline


def _wait_gone(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            if "\nState:\tZ" in status:
                return  # a zombie sends nothing; its parent (keepalived) reaps it or dies
        if time.monotonic() >= deadline:
            raise AssertionError(f"pid {pid} still alive after SIGKILL")
        time.sleep(0.01)


# ---- checks ------------------------------------------------------------------------------


def holders(peers: Iterable[Peer], vip: str) -> list[str]:
    return [p.name for p in peers if p.holds(vip)]


def sample_single_holder(
    peers: Sequence[Peer], vip: str, *, duration: float, interval: float = 0.1
) -> int:
    """Check every `interval` s for `duration` s that exactly one peer holds `vip`.

    Returns the number of samples taken; fails at the first sample with 0 or 2+ holders.
    """
    deadline = time.monotonic() + duration
    samples = 0
    while time.monotonic() < deadline:
        found = holders(peers, vip)
        samples += 1
        assert len(found) == 1, f"sample {samples}: {vip} held by {found or 'nobody'}"
        time.sleep(interval)
    return samples


def wait_single_holder(peers: Sequence[Peer], vip: str, expected: str, *, timeout: float) -> float:
    """Wait until every running peer is ready and `expected` alone holds `vip`.

    Returns the time.time() it was seen. `timeout` counts from the moment all are ready.
    """
    for peer in peers:
        if peer.running:
            peer.wait_ready()
    deadline = time.monotonic() + timeout
    found: list[str] = []
    while time.monotonic() < deadline:
        found = holders(peers, vip)
        if found == [expected]:
            return time.time()
        by_name = {p.name: p for p in peers}
        if expected in by_name and not by_name[expected].running:
            raise AssertionError(f"{expected} is not running:\n{by_name[expected].tail()}")
        time.sleep(0.05)
    logs = "\n".join(f"== {p.name} ({p.kind})\n{p.tail()}" for p in peers)
    raise AssertionError(f"{vip}: wanted only {expected}, held by {found}\n{logs}")


def vip_address(vip: str) -> IPv4Address | IPv6Address:
    return ip_address(vip.split("/")[0])
