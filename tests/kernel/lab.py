"""The director-pair lab: a client, two LVS directors and three real servers on a real kernel.

Built inside the kernel-tier VM (IPVS needs Debian's kernel); used by the CI test
tests/kernel/test_director_pair.py and by benchmarks/director_pair.py. Every node is a
network namespace, wired the way an LVS site is:

                         client 203.0.113.2
                                 │
    ══════════════ LAN 203.0.113.0/24 (bridge "lan" in namespace "sw") ═══════════════
      │ .3                │ .4              │ .11          │ .12          │ .13
   director d1        director d2          rs1            rs2            rs3
   (priority 150)     (priority 100)     VIP_DR on lo, arp_ignore=1 / arp_announce=2
      │ .2                │ .3              │ .11          │ .12          │ .13
    ══════════════ inside 198.51.100.0/24 (bridge "in") ════════════════════════════════
            gateway VIP 198.51.100.1: the real servers' route for NAT replies

- DR: virtual service 203.0.113.100:80 -> the real servers' LAN addresses, port 80. They
  hold the VIP on `lo` and answer the client directly.
- NAT: virtual service 203.0.113.200:80 -> their inside addresses, port 80. Replies from an
  inside address are routed (policy rule `from 198.51.100.0/24`) to the gateway VIP, which
  moves with mastership, so they come back through the director that has the connection.
- VRRP: instance VI_LAN (vrid 51) holds both client-facing VIPs on the LAN, VI_IN (vrid 52)
  the gateway VIP on the inside network; d1 has the higher priority in both (preempt, as
  keepalived defaults). Advert interval 1 s, VRRPv2: keepalived's defaults. Both are in one
  sync group G_LVS (keepalived's vrrp_sync_group, `vrrp_sync_groups:` in hacontrol), as an
  operator of a NAT site configures them: a fault of either link moves both.
- The kernel's connection-sync daemon runs on the LAN (syncid 51) and follows VI_LAN.
- Health checks: HTTP GET / on every real server, every second.
- Sysctls: expire_nodest_conn=1, expire_quiescent_template=1; ip_forward=1 on directors.

Without the sync group (`LabOptions(sync_group=False)`) VI_LAN and VI_IN move together only
when the whole director fails or both its links do: a fault of the LAN link alone moves
VI_LAN and leaves the gateway VIP behind, which breaks NAT. The `link` scenario (the LAN
link alone, DR and NAT) is the one that tells the two configurations apart.

The directors run either hacontrol (`hacontrol run`, each with its own run and state
directory) or Debian's keepalived 2.2.7 configured equivalently (`render_keepalived`).
Real servers and the client are tests/kernel/lab_traffic.py processes. Everything the lab
starts is killed by pid and every namespace it made is deleted by `Lab.close()`, which
runs also after a failure.

`run_scenario(lab, name)` runs one scenario of the fault matrix (SCENARIOS) against the
running pair with live traffic and returns what the client saw and how the directors
converged. Traffic and waits are bounded: a scenario never runs longer than its budget.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hacontrol.ipvs.conns import parse_connections
from hacontrol.ipvs.netlink import IpvsNetlink, in_netns

ROOT = Path(__file__).resolve().parents[2]
TRAFFIC = Path(__file__).resolve().with_name("lab_traffic.py")

CLIENT = "203.0.113.2"
LAN_PREFIX = 24
DIRECTOR_LAN = {"d1": "203.0.113.3", "d2": "203.0.113.4"}
DIRECTOR_IN = {"d1": "198.51.100.2", "d2": "198.51.100.3"}
PRIORITY = {"d1": 150, "d2": 100}
REAL_LAN = {"rs1": "203.0.113.11", "rs2": "203.0.113.12", "rs3": "203.0.113.13"}
REAL_IN = {"rs1": "198.51.100.11", "rs2": "198.51.100.12", "rs3": "198.51.100.13"}
VIP_DR = "203.0.113.100"
VIP_NAT = "203.0.113.200"
GATEWAY = "198.51.100.1"
VIPS = (VIP_DR, VIP_NAT, GATEWAY)
LAN_VIPS = (VIP_DR, VIP_NAT)
PORT = 80
SYNCID = 51
VRID_LAN, VRID_IN = 51, 52
NAT_TABLE = 100  # the real servers' routing table for replies from their inside address

DIRECTORS = ("d1", "d2")
REALS = ("rs1", "rs2", "rs3")
SERVICES = {"dr": (VIP_DR, PORT), "nat": (VIP_NAT, PORT)}

# What an operator would set on both directors whichever daemon runs (hacontrol sets the
# vs ones itself from its config; for keepalived they are set by hand, as one would).
VS_SYSCTLS = {"expire_nodest_conn": "1", "expire_quiescent_template": "1"}


class LabError(RuntimeError):
    """The lab could not be built or driven (not a finding about the directors)."""


# ---- small tools -------------------------------------------------------------------------


def run(argv: Sequence[str], *, timeout: float = 60.0, check: bool = True, stdin: str = "") -> str:
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def log(message: str) -> None:
    print(f"lab: {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def write_sysctls(netns: str, values: dict[str, str]) -> None:
    """Write /proc/sys entries from inside `netns` (net.* entries are per namespace)."""

    def write() -> None:
        for key, value in values.items():
            Path("/proc/sys", key.replace(".", "/")).write_text(value)

    in_netns(netns, write)


def read_conn_table(netns: str) -> str:
    # /proc/net follows the process; /proc/thread-self/net follows the thread, which
    # in_netns moved into the namespace.
    return str(in_netns(netns, lambda: Path("/proc/thread-self/net/ip_vs_conn").read_text()))


# ---- rtnetlink: which addresses a namespace holds ------------------------------------------

RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFA_ADDRESS, IFA_LOCAL = 1, 2


class AddressWatch:
    """IPv4 addresses of one namespace, from an RTM_GETADDR dump on a socket made there."""

    def __init__(self, netns: str) -> None:
        self.sock: socket.socket = in_netns(
            netns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        )
        self.sock.settimeout(5.0)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def addresses(self) -> set[str]:
        self.seq += 1
        msg = struct.pack("=LHHLL", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
        self.sock.send(msg + struct.pack("=BBBBL", socket.AF_INET, 0, 0, 0, 0))
        found: set[str] = set()
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind, _flags, seq, _pid = struct.unpack_from("=LHHLL", data, off)
                if length < 16:
                    raise LabError("bad netlink message length")
                if seq == self.seq:
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, off + 16)[0]
                        raise OSError(code, os.strerror(code))
                    if kind == RTM_NEWADDR:
                        pos, end = off + 16 + 8, off + length
                        local = address = None
                        while pos + 4 <= end:
                            alen, atype = struct.unpack_from("=HH", data, pos)
                            if alen < 4:
                                break
                            if atype in (IFA_LOCAL, IFA_ADDRESS) and alen == 8:
                                text = socket.inet_ntoa(data[pos + 4 : pos + 8])
                                local, address = (
                                    (text, address) if atype == IFA_LOCAL else (local, text)
                                )
                            pos += (alen + 3) & ~3
                        if local or address:
                            found.add(str(local or address))
                off += (length + 3) & ~3


# ---- what the directors hold ---------------------------------------------------------------

# {"TCP 203.0.113.100:80": {"203.0.113.11:80": ("DR", 1), ...}, ...}
TableView = dict[str, dict[str, tuple[str, int]]]


def desired_table(weights: dict[str, int] | None = None) -> TableView:
    """Both services with every real server at its weight (1 unless given: rs -> weight)."""
    w = {rs: 1 for rs in REALS} | (weights or {})
    return {
        f"TCP {VIP_DR}:{PORT}": {f"{REAL_LAN[rs]}:{PORT}": ("DR", w[rs]) for rs in REALS},
        f"TCP {VIP_NAT}:{PORT}": {f"{REAL_IN[rs]}:{PORT}": ("NAT", w[rs]) for rs in REALS},
    }


@dataclass(frozen=True)
class DirectorView:
    vips: frozenset[str]
    table: TableView
    sync: frozenset[str]  # states of the running sync daemons: "master", "backup"
    error: str = ""


@dataclass(frozen=True)
class Sample:
    t: float
    views: dict[str, DirectorView]

    def holders(self, vip: str) -> list[str]:
        return [d for d, v in self.views.items() if vip in v.vips]

    def sole_holder(self, vips: Sequence[str] = VIPS) -> str | None:
        """The one director that holds every VIP in `vips` while the other holds none."""
        owners = {d for d, v in self.views.items() if v.vips & set(vips)}
        if len(owners) != 1:
            return None
        (owner,) = owners
        return owner if set(vips) <= self.views[owner].vips else None

    def converged(self, holder: str | None, table: TableView) -> bool:
        """Exactly one director holds every VIP (the one named, if one is), it runs the
        master sync daemon, and both IPVS tables equal `table`."""
        owner = self.sole_holder()
        if owner is None or (holder is not None and owner != holder):
            return False
        if "master" not in self.views[owner].sync:
            return False
        return all(v.table == table and not v.error for v in self.views.values())


class Observer:
    """Samples both directors (VIPs, IPVS table, sync daemons) a few times a second, from
    sockets opened inside their namespaces; keeps every sample for the scenario's record."""

    def __init__(self, namespaces: dict[str, str], interval: float = 0.2) -> None:
        self.interval = interval
        self.namespaces = namespaces
        self.addr = {d: AddressWatch(ns) for d, ns in namespaces.items()}
        self.ipvs = {d: IpvsNetlink(netns=ns) for d, ns in namespaces.items()}
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.io_lock = threading.Lock()  # the sockets: the sampling thread or a caller
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lab-observer", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        for a in self.addr.values():
            a.close()
        for nl in self.ipvs.values():
            nl.close()

    def view(self, director: str) -> DirectorView:
        try:
            held = frozenset(self.addr[director].addresses() & set(VIPS))
            nl = self.ipvs[director]
            snap = nl.dump(counters=False)
            table: TableView = {
                str(svc.key): {
                    f"{rs.address}:{rs.port}": (rs.forwarding.name, rs.weight)
                    for rs in svc.real_servers
                }
                for svc in snap.table.services
            }
            sync = frozenset(d.state for d in nl.get_daemons())
            return DirectorView(held, table, sync)
        except Exception as exc:  # a sample that failed says why; the loop goes on
            return DirectorView(frozenset(), {}, frozenset(), error=f"{type(exc).__name__}: {exc}")

    def sample(self) -> Sample:
        with self.io_lock:
            s = Sample(time.monotonic(), {d: self.view(d) for d in self.namespaces})
        with self.lock:
            self.samples.append(s)
            if len(self.samples) > 100_000:  # bounded, whatever runs for how long
                del self.samples[:50_000]
        return s

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.sample()

    def latest(self) -> Sample:
        with self.lock:
            if self.samples:
                return self.samples[-1]
        return self.sample()

    def since(self, t: float) -> list[Sample]:
        with self.lock:
            return [s for s in self.samples if s.t >= t]

    def wait(
        self, predicate: Callable[[Sample], bool], timeout: float, stable: float = 0.0
    ) -> float | None:
        """The time of the first sample from which `predicate` held for `stable` seconds
        (checked on every sample), or None after `timeout`."""
        start = time.monotonic()
        deadline = start + timeout
        run_start: float | None = None
        seen = len(self.samples)
        while time.monotonic() < deadline:
            time.sleep(self.interval / 2)
            with self.lock:
                new = self.samples[seen:]
                seen = len(self.samples)
            for s in new:
                if s.t < start:
                    continue
                if predicate(s):
                    run_start = s.t if run_start is None else run_start
                    if s.t - run_start >= stable:
                        return run_start
                else:
                    run_start = None
        return None


# ---- processes -------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(p) for p in text.split())
    return found


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie whose parent is us is reaped by Popen.wait; others by their parent.
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                return True
        time.sleep(0.05)
    return False


class Director:
    """One director's daemon in its namespace: started, stopped, killed, by pid."""

    kind = ""

    def __init__(self, name: str, netns: str, workdir: Path, logdir: Path | None = None) -> None:
        self.name = name
        self.netns = netns
        self.workdir = workdir
        self.log_path = (logdir or workdir) / f"{name}.{self.kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # subclasses
    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def process_tree(self) -> list[int]:
        """Every pid of the daemon, parent first."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *_children(self.proc.pid)]

    def ready(self) -> bool:
        return self.running()

    # common
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running():
            raise LabError(f"{self.name}: {self.kind} already runs (pid {self.proc.pid})")  # type: ignore[union-attr]
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"\n==== lab: start #{self.starts} at {time.monotonic():.3f}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *self.argv()],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )

    def kill9(self) -> float:
        """SIGKILL every process of the daemon at once (a crash, or systemd's
        `kill --signal=KILL`): the parent is stopped first so it cannot react."""
        pids = self.process_tree()
        if not pids:
            raise LabError(f"{self.name}: {self.kind} is not running")
        _kill(pids[0], signal.SIGSTOP)
        pids = [pids[0], *_children(pids[0])]
        at = time.monotonic()
        for pid in reversed(pids):
            _kill(pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(30)
        for pid in pids[1:]:
            _wait_gone(pid, 10)
        return at

    def terminate(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (systemctl stop) and wait for the exit; SIGKILL after `timeout`."""
        if not self.running():
            return None
        assert self.proc is not None
        pids = self.process_tree()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: {self.kind} ignored SIGTERM for {timeout} s: SIGKILL")
            for pid in reversed(self.process_tree()):
                _kill(pid, signal.SIGKILL)
            code = self.proc.wait(10)
        for pid in pids[1:]:
            if not _wait_gone(pid, 10):
                _kill(pid, signal.SIGKILL)
        return code

    def reload(self) -> None:
        if self.proc is not None and self.running():
            self.proc.send_signal(signal.SIGHUP)

    def cleanup(self) -> None:
        for pid in reversed(self.process_tree()):
            _kill(pid, signal.SIGKILL)
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def log_tail(self, lines: int = 60) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def render_hacontrol(director: str, sync_group: bool = True) -> str:
    prio = PRIORITY[director]
    check = (
        "{type: http, path: /, status_codes: [200], delay_loop: 1, connect_timeout: 2, "
        "retry: 1, delay_before_retry: 1}"
    )
    lines = [
        f"global: {{router_id: {director}, metrics_listen: null}}",
        "vrrp_instances:",
        f"  - {{name: VI_LAN, interface: lan0, vrid: {VRID_LAN}, priority: {prio}, "
        f"advert_int: 1, virtual_ipaddresses: [{VIP_DR}/{LAN_PREFIX}, {VIP_NAT}/{LAN_PREFIX}]}}",
        f"  - {{name: VI_IN, interface: in0, vrid: {VRID_IN}, priority: {prio}, "
        f"advert_int: 1, virtual_ipaddresses: [{GATEWAY}/24]}}",
    ]
    if sync_group:
        lines += ["vrrp_sync_groups:", "  - {name: G_LVS, group: [VI_LAN, VI_IN]}"]
    lines += ["virtual_servers:"]
    for vip, fwd, reals in ((VIP_DR, "DR", REAL_LAN), (VIP_NAT, "NAT", REAL_IN)):
        lines += [
            f"  - address: {vip}",
            f"    port: {PORT}",
            "    scheduler: rr",
            f"    forwarding: {fwd}",
            "    inhibit_on_failure: true",
            "    real_servers:",
        ]
        for rs in REALS:
            lines.append(f"      - {{address: {reals[rs]}, port: {PORT}, checks: [{check}]}}")
    lines += [
        "ipvs:",
        "  sysctls: {expire_nodest_conn: 1, expire_quiescent_template: 1}",
        f"  sync_daemon: {{interface: lan0, vrrp_instance: VI_LAN, syncid: {SYNCID}}}",
    ]
    return "\n".join(lines) + "\n"


class HacontrolDirector(Director):
    kind = "hacontrol"

    def __init__(
        self,
        name: str,
        netns: str,
        workdir: Path,
        logdir: Path | None = None,
        python: str = sys.executable,
        vrrp_inline: bool = False,
        sync_group: bool = True,
    ) -> None:
        super().__init__(name, netns, workdir, logdir)
        self.python = python
        self.vrrp_inline = vrrp_inline
        self.config = workdir / f"{name}.hacontrol.yaml"
        self.config.write_text(render_hacontrol(name, sync_group))
        self.run_dir = workdir / f"{name}.run"
        self.state_dir = workdir / f"{name}.state"

    def argv(self) -> list[str]:
        return [
            self.python, "-m", "hacontrol", "run", "-c", str(self.config),
            "--run-dir", str(self.run_dir), "--state-dir", str(self.state_dir),
            *(["--vrrp-inline"] if self.vrrp_inline else []),
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT)}

    def status(self) -> dict[str, Any] | None:
        from hacontrol.runtime.control import ControlError, call

        try:
            doc: dict[str, Any] = call(
                self.run_dir / "control", {"command": "status", "counters": False}
            )
        except (ControlError, OSError):
            return None
        return doc

    def restart_in_place(self, timeout: float) -> None:
        """`hacontrol restart`: the daemon executes itself again, keeping its VIPs, its
        IPVS table, the sync daemon and its VRRP process; returns once it answers again."""
        if not self.running():
            raise LabError(f"{self.name}: hacontrol is not running")
        before = self.log_path.read_text(errors="replace").count("daemon.started")
        out = subprocess.run(
            [self.python, "-m", "hacontrol", "restart", "-s", str(self.run_dir / "control")],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=self.env(),
            check=False,
        )
        if out.returncode != 0:
            raise LabError(f"{self.name}: hacontrol restart failed: {out.stdout}{out.stderr}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.log_path.read_text(errors="replace").count("daemon.started")
            if started > before and self.ready():
                return
            if not self.running():
                raise LabError(f"{self.name}: hacontrol exited on restart:\n{self.log_tail()}")
            time.sleep(0.3)
        raise LabError(f"{self.name}: not ready {timeout} s after hacontrol restart")

    def ready(self) -> bool:
        """The daemon answers on its control socket and its VRRP instances run."""
        if not self.running():
            return False
        doc = self.status()
        instances = (doc or {}).get("vrrp_instances") or []
        return bool(instances) and all(
            i.get("state") in ("BACKUP", "MASTER", "FAULT") for i in instances
        )


def render_keepalived(director: str, sync_group: bool = True) -> str:
    prio = PRIORITY[director]
    out = [
        "global_defs {",
        f"    router_id {director}",
        f"    lvs_sync_daemon lan0 VI_LAN id {SYNCID}",
        "}",
    ]
    if sync_group:
        out += ["vrrp_sync_group G_LVS {", "    group {", "        VI_LAN", "        VI_IN",
                "    }", "}"]  # fmt: skip
    for name, iface, vrid, vips, plen in (
        ("VI_LAN", "lan0", VRID_LAN, LAN_VIPS, LAN_PREFIX),
        ("VI_IN", "in0", VRID_IN, (GATEWAY,), 24),
    ):
        out += [
            f"vrrp_instance {name} {{",
            "    state BACKUP",
            f"    interface {iface}",
            f"    virtual_router_id {vrid}",
            f"    priority {prio}",
            "    advert_int 1",
            "    virtual_ipaddress {",
            *[f"        {v}/{plen} dev {iface}" for v in vips],
            "    }",
            "}",
        ]
    for vip, kind, reals in ((VIP_DR, "DR", REAL_LAN), (VIP_NAT, "NAT", REAL_IN)):
        out += [
            f"virtual_server {vip} {PORT} {{",
            "    delay_loop 1",
            "    lb_algo rr",
            f"    lb_kind {kind}",
            "    protocol TCP",
        ]
        for rs in REALS:
            out += [
                f"    real_server {reals[rs]} {PORT} {{",
                "        weight 1",
                "        inhibit_on_failure",
                "        HTTP_GET {",
                "            url {",
                "                path /",
                "                status_code 200",
                "            }",
                "            connect_timeout 2",
                "            retry 1",
                "            delay_before_retry 1",
                "        }",
                "    }",
            ]
        out.append("}")
    return "\n".join(out) + "\n"


class KeepalivedDirector(Director):
    kind = "keepalived"

    def __init__(
        self,
        name: str,
        netns: str,
        workdir: Path,
        logdir: Path | None = None,
        binary: str = "keepalived",
        sync_group: bool = True,
    ) -> None:
        super().__init__(name, netns, workdir, logdir)
        self.binary = binary
        self.config = workdir / f"{name}.keepalived.conf"
        self.config.write_text(render_keepalived(name, sync_group))
        self.pidfiles = [workdir / f"{name}.ka.{p}.pid" for p in ("main", "vrrp", "check")]

    def argv(self) -> list[str]:
        main, vrrp, check = (str(p) for p in self.pidfiles)
        # Debian's unit runs `keepalived --dont-fork $DAEMON_ARGS` (empty by default): -n
        # here too; -l -D to log details to our file; nothing else changed from defaults.
        return [self.binary, "-n", "-l", "-D", "-f", str(self.config),
                "-p", main, "-r", vrrp, "-c", check]  # fmt: skip

    def start(self) -> None:
        for p in self.pidfiles:
            p.unlink(missing_ok=True)
        super().start()

    def ready(self) -> bool:
        if not self.running():
            return False
        return len(self.process_tree()) >= 3  # parent, VRRP child, checker child


# ---- the client --------------------------------------------------------------------------------


class TrafficClient:
    """lab_traffic.py client in the client namespace, driven over its stdin/stdout."""

    def __init__(self, netns: str, python: str, lifetime: float, new_timeout: float) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, python, str(TRAFFIC), "client",
             "--lifetime", str(int(lifetime)), "--new-timeout", str(new_timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""
        self.next_id = 1
        hello = self._read_line(180.0)
        if not hello.get("ready"):
            raise LabError(f"client did not start: {hello}")

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise LabError(f"client: no answer within {timeout} s")
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise LabError(f"client exited ({self.proc.wait(5)})")
            self.buf += chunk
            if len(self.buf) > 64 << 20:
                raise LabError("client: answer too large")
        line, _, self.buf = self.buf.partition(b"\n")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def call(self, timeout: float = 60.0, **request: Any) -> dict[str, Any]:
        rid = self.next_id
        self.next_id += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": rid, **request}) + "\n").encode())
        self.proc.stdin.flush()
        while True:
            doc = self._read_line(timeout)
            if doc.get("id") == rid:
                if "error" in doc:
                    raise LabError(f"client: {doc['error']}")
                return doc

    def open(
        self, service: str, count: int, tag: str, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        vip, port = SERVICES[service]
        doc = self.call(
            timeout, cmd="open", service=service, vip=vip, port=port, count=count, tag=tag
        )
        conns: list[dict[str, Any]] = doc["long"]
        return conns

    def stream(self, service: str, rate: float) -> None:
        vip, port = SERVICES[service]
        self.call(cmd="stream", service=service, vip=vip, port=port, rate=rate)

    def status(self) -> list[dict[str, Any]]:
        conns: list[dict[str, Any]] = self.call(cmd="status")["long"]
        return conns

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        report: dict[str, Any] = self.call(timeout, cmd="stop")["report"]
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---- the lab -----------------------------------------------------------------------------------


@dataclass
class LabOptions:
    impl: str = "hacontrol"  # or "keepalived"
    python: str = sys.executable
    # VI_LAN and VI_IN in one VRRP sync group (both daemons); False: two lone instances.
    sync_group: bool = True
    long_per_service: int = 6  # long-lived connections per service and scenario
    new_rate: float = 5.0  # new short connections a second, per service
    lifetime: float = 4 * 3600.0  # every process of the lab ends by itself after this
    start_timeout: float = 600.0  # hacontrol imports for minutes under emulation
    new_timeout: float = 10.0  # a short connection not answered by then failed
    logdir: Path | None = None  # daemons' logs (default: the lab's work directory)
    # hacontrol's --vrrp-inline: VRRP in the daemon's own loop instead of its own process.
    # Same VRRP engine and state machine; one interpreter to start instead of two, which
    # under software emulation is most of a start (see tests/kernel/test_director_pair.py).
    vrrp_inline: bool = False
    start_retries: int = 2  # a daemon that exits while starting is started again (systemd)


class Lab:
    """The namespaces, links, servers, client and director pair; `close()` removes all."""

    def __init__(self, workdir: Path, options: LabOptions | None = None) -> None:
        self.workdir = workdir
        self.opt = options or LabOptions()
        self.token = secrets.token_hex(3)
        self.ns: dict[str, str] = {}
        self.servers: dict[str, subprocess.Popen[bytes]] = {}
        self.client: TrafficClient | None = None
        self.directors: dict[str, Director] = {}
        self.observer: Observer | None = None
        self.closed = False
        self.start_retries_seen = 0

    # ---- building ----

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _netns(self, role: str) -> str:
        name = f"lab{role}-{self.token}"
        run(["ip", "netns", "add", name])
        self.ns[role] = name
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def _plug(self, node: str, ifname: str, bridge: str, addresses: Sequence[str]) -> None:
        """A veth from `node` (named `ifname` there) to a port of `bridge` in the switch."""
        port = f"{node}-{ifname[:-1]}"  # e.g. d1-lan, rs2-in
        run(["ip", "link", "add", ifname, "netns", self.ns[node], "type", "veth",
             "peer", "name", port, "netns", self.ns["sw"]])  # fmt: skip
        sw = ["ip", "-n", self.ns["sw"]]
        run([*sw, "link", "set", port, "master", bridge])
        run([*sw, "link", "set", port, "up"])
        for addr in addresses:
            run(["ip", "-n", self.ns[node], "addr", "add", addr, "dev", ifname])
        run(["ip", "-n", self.ns[node], "link", "set", ifname, "up"])

    def _build(self) -> None:
        log(f"building lab {self.token} for {self.opt.impl}")
        run(["modprobe", "ip_vs"])
        self.workdir.mkdir(parents=True, exist_ok=True)
        for role in ("sw", "client", *DIRECTORS, *REALS):
            self._netns(role)
        sw = ["ip", "-n", self.ns["sw"]]
        for bridge in ("lan", "in"):
            run([*sw, "link", "add", bridge, "type", "bridge"])
            # No STP, no forwarding delay: a port forwards as soon as it is up.
            # No STP, no forwarding delay; no multicast snooping (VRRP and the sync daemon
            # multicast to groups nobody joins with IGMP).
            run([*sw, "link", "set", bridge, "type", "bridge", "stp_state", "0",
                 "forward_delay", "0", "mcast_snooping", "0"])  # fmt: skip
            run([*sw, "link", "set", bridge, "up"])
        self._plug("client", "lan0", "lan", [f"{CLIENT}/{LAN_PREFIX}"])
        for d in DIRECTORS:
            self._plug(d, "lan0", "lan", [f"{DIRECTOR_LAN[d]}/{LAN_PREFIX}"])
            self._plug(d, "in0", "in", [f"{DIRECTOR_IN[d]}/24"])
            write_sysctls(self.ns[d], {"net.ipv4.ip_forward": "1"})
            if self.opt.impl == "keepalived":
                write_sysctls(self.ns[d], {f"net.ipv4.vs.{k}": v for k, v in VS_SYSCTLS.items()})
        for rs in REALS:
            ns = self.ns[rs]
            self._plug(rs, "lan0", "lan", [f"{REAL_LAN[rs]}/{LAN_PREFIX}"])
            self._plug(rs, "in0", "in", [f"{REAL_IN[rs]}/24"])
            # DR: the VIP on lo, never answered for in ARP nor used as an ARP source.
            run(["ip", "-n", ns, "addr", "add", f"{VIP_DR}/32", "dev", "lo"])
            write_sysctls(
                ns,
                {
                    "net.ipv4.conf.all.arp_ignore": "1",
                    "net.ipv4.conf.all.arp_announce": "2",
                    "net.ipv4.conf.lan0.arp_ignore": "1",
                    "net.ipv4.conf.lan0.arp_announce": "2",
                },
            )
            # NAT: replies from the inside address go back through the gateway VIP.
            run(["ip", "-n", ns, "route", "add", "198.51.100.0/24", "dev", "in0",
                 "table", str(NAT_TABLE)])  # fmt: skip
            run(["ip", "-n", ns, "route", "add", "default", "via", GATEWAY, "dev", "in0",
                 "table", str(NAT_TABLE)])  # fmt: skip
            run(["ip", "-n", ns, "rule", "add", "from", "198.51.100.0/24", "table", str(NAT_TABLE)])
        # The daemons first: they take longest to start (minutes of imports under
        # emulation); servers and client start meanwhile.
        for d in DIRECTORS:
            self.directors[d] = self._director(d)
            self.directors[d].start()
        for rs in REALS:
            self.start_server(rs, wait=False)
        for rs in REALS:
            self._wait_server(rs)
        self.client = TrafficClient(
            self.ns["client"], self.opt.python, self.opt.lifetime, self.opt.new_timeout
        )
        self.observer = Observer({d: self.ns[d] for d in DIRECTORS})
        self.wait_ready(DIRECTORS)
        if self.observer.wait(self.steady, timeout=self.opt.start_timeout, stable=2.0) is None:
            raise LabError(f"the pair did not converge after start: {self.describe()}")
        log("lab ready")

    def _director(self, d: str) -> Director:
        if self.opt.impl == "hacontrol":
            return HacontrolDirector(
                d,
                self.ns[d],
                self.workdir,
                self.opt.logdir,
                self.opt.python,
                vrrp_inline=self.opt.vrrp_inline,
                sync_group=self.opt.sync_group,
            )
        if self.opt.impl == "keepalived":
            binary = shutil.which("keepalived") or "/usr/sbin/keepalived"
            return KeepalivedDirector(
                d,
                self.ns[d],
                self.workdir,
                self.opt.logdir,
                binary,
                sync_group=self.opt.sync_group,
            )
        raise LabError(f"unknown implementation {self.opt.impl!r}")

    # ---- servers ----

    def start_server(self, rs: str, wait: bool = True) -> None:
        old = self.servers.get(rs)
        if old is not None and old.poll() is None:
            raise LabError(f"{rs}: server already runs")
        self.servers[rs] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[rs], self.opt.python, str(TRAFFIC), "server",
             "--name", rs, "--port", str(PORT), "--lifetime", str(int(self.opt.lifetime))],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if wait:
            self._wait_server(rs)

    def _wait_server(self, rs: str) -> None:
        proc = self.servers[rs]
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(180) or proc.stdout.readline().strip() != b"ready":
            raise LabError(f"{rs}: server did not start")
        sel.close()

    def server_signal(self, rs: str, sig: int) -> None:
        proc = self.servers[rs]
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(30)

    # ---- state ----

    def steady(self, s: Sample) -> bool:
        return s.converged("d1", desired_table())

    def wait_ready(self, names: Sequence[str], timeout: float | None = None) -> int:
        """Until each named daemon runs and answers. One that exits while starting is
        started again, as systemd's Restart= would (at most `start_retries` times);
        returns how many such restarts there were."""
        timeout = timeout or self.opt.start_timeout
        deadline = time.monotonic() + timeout
        pending = list(names)
        retries = 0
        while pending:
            for d in list(pending):
                director = self.directors[d]
                if director.ready():
                    pending.remove(d)
                elif not director.running():
                    if retries >= self.opt.start_retries:
                        raise LabError(f"{d}: {director.kind} exited:\n{director.log_tail()}")
                    retries += 1
                    log(
                        f"{d}: {director.kind} exited while starting; starting it again:\n"
                        f"{director.log_tail(5)}"
                    )
                    self.start_retries_seen += 1
                    director.start()
            if pending and time.monotonic() > deadline:
                raise LabError(f"{pending}: not ready after {timeout} s")
            time.sleep(0.3)
        return retries

    def describe(self, s: Sample | None = None) -> str:
        s = s or (self.observer.latest() if self.observer else None)
        if s is None:
            return "(no sample)"
        parts = []
        for d, v in s.views.items():
            table = {
                k.split()[1]: sorted(f"{a}={w}" for a, (_f, w) in r.items())
                for k, r in v.table.items()
            }
            parts.append(
                f"{d}: vips={sorted(v.vips)} sync={sorted(v.sync)} table={table}"
                + (f" error={v.error}" if v.error else "")
            )
        return "; ".join(parts)

    # ---- faults ----

    def switch_port(self, d: str, link: str, up: bool) -> None:
        """The switch side of a director's link: down is a pulled cable (carrier lost)."""
        run(["ip", "-n", self.ns["sw"], "link", "set", f"{d}-{link}", "up" if up else "down"])

    def isolate(self, on: bool) -> None:
        """Cut every path between the directors (bridge port isolation on both bridges, so
        each still reaches the client and the real servers): the director-to-director
        link of a site whose two directors then stop hearing each other."""
        for d in DIRECTORS:
            for link in ("lan", "in"):
                run(["bridge", "-n", self.ns["sw"], "link", "set", "dev", f"{d}-{link}",
                     "isolated", "on" if on else "off"])  # fmt: skip

    def gateway_macs(self) -> dict[str, str]:
        """Real server -> the director whose MAC its neighbour entry for the gateway VIP
        holds ("?" for another MAC, "" for no entry): where its NAT replies go."""
        owner = {
            json.loads(run(["ip", "-n", self.ns[d], "-j", "link", "show", "in0"]))[0]["address"]: d
            for d in DIRECTORS
        }
        out = {}
        for rs in REALS:
            entries = json.loads(run(["ip", "-n", self.ns[rs], "-j", "neigh", "show", GATEWAY]))
            mac = entries[0].get("lladdr", "") if entries else ""
            out[rs] = owner.get(mac, "?") if mac else ""
        return out

    def flush_neighbours(self) -> None:
        """Forget the real servers' neighbour entries on the inside network."""
        for rs in REALS:
            run(["ip", "-n", self.ns[rs], "neigh", "flush", "dev", "in0"])

    def ipvsadm(self, d: str, *args: str) -> str:
        return run(["ip", "netns", "exec", self.ns[d], "ipvsadm", *args])

    # ---- teardown ----

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.close()
        for director in self.directors.values():
            with contextlib.suppress(Exception):
                director.cleanup()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        for proc in self.servers.values():
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        for name in reversed(list(self.ns.values())):
            # Anything still running there was started by this lab (in that namespace).
            pids = run(["ip", "netns", "pids", name], check=False).split()
            for pid in pids:
                with contextlib.suppress(ValueError):
                    _kill(int(pid), signal.SIGKILL)
            run(["ip", "netns", "del", name], check=False)


# ---- scenarios -----------------------------------------------------------------------------


@dataclass
class ServiceResult:
    established: int = 0  # long-lived connections open when the fault came
    lost: int = 0
    lost_expected: int = 0  # lost where the scenario says they must be (a killed server)
    lost_detail: list[str] = field(default_factory=list)
    outage_ms: float = 0.0  # the longest gap any surviving long connection saw
    outage_median_ms: float = 0.0  # the median of the connections' longest gaps
    new_attempted: int = 0
    new_failed: int = 0
    new_reasons: dict[str, int] = field(default_factory=dict)
    new_max_latency_ms: float = 0.0
    new_slow: int = 0


@dataclass
class StepResult:
    action: str
    at: float
    takeover_s: float | None = None  # when the expected director held what it should
    converged_s: float | None = None  # exactly one holder, tables as desired, stable
    notes: list[str] = field(default_factory=list)


@dataclass
class ScenarioResult:
    scenario: str
    impl: str
    services: dict[str, ServiceResult] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    converged: bool = False
    convergence_s: float | None = None  # from the fault to the final convergence
    max_vip_holders: int = 0  # the most directors holding one VIP at once
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Ctx], None]
    services: tuple[str, ...] = ("dr", "nat")
    # Connections of a real server the scenario kills are expected to go.
    expected_loss_server: str | None = None


class Ctx:
    """What a scenario's steps use: the lab, the record of steps, and waits."""

    def __init__(self, lab: Lab, result: ScenarioResult, budget: float) -> None:
        self.lab = lab
        self.result = result
        self.deadline = time.monotonic() + budget
        assert lab.observer is not None and lab.client is not None
        self.obs = lab.observer
        self.client = lab.client

    def left(self, cap: float) -> float:
        return max(1.0, min(cap, self.deadline - time.monotonic()))

    def step(self, action: str, do: Callable[[], Any]) -> StepResult:
        log(f"{self.result.impl}/{self.result.scenario}: {action}")
        at = time.monotonic()
        ret = do()
        step = StepResult(action, ret if isinstance(ret, float) else at)
        self.result.steps.append(step)
        return step

    def takeover(
        self, step: StepResult, holder: str, vips: Sequence[str] = VIPS, timeout: float = 60.0
    ) -> None:
        """Record when `holder` held `vips` (with the master sync daemon)."""
        t = self.obs.wait(
            lambda s: (
                holder in s.holders(vips[0])
                and all(holder in s.holders(v) for v in vips)
                and "master" in s.views[holder].sync
            ),
            self.left(timeout),
        )
        if t is None:
            step.notes.append(f"{holder} did not take over {list(vips)} within {timeout} s")
        else:
            step.takeover_s = round(t - step.at, 3)

    def converge(
        self,
        step: StepResult,
        holder: str | None = "d1",
        table: TableView | None = None,
        timeout: float = 120.0,
        stable: float = 3.0,
    ) -> bool:
        table = table or desired_table()
        t = self.obs.wait(lambda s: s.converged(holder, table), self.left(timeout), stable)
        if t is None:
            step.notes.append(f"not converged within {timeout} s: {self.lab.describe()}")
            return False
        step.converged_s = round(t - step.at, 3)
        return True

    def hold(self, seconds: float) -> None:
        # `seconds` is what is left of a fault's planned length, negative when the takeover
        # itself took longer than that (a loaded machine): then the fault ends at once.
        time.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))

    def start_daemon(self, d: str) -> None:
        self.lab.directors[d].start()
        retries = self.lab.wait_ready([d])
        if retries:
            self.result.notes.append(f"{d} exited while starting and was started again {retries}x")


def _wait_synced(lab: Lab, backup: str, ports: set[int], timeout: float) -> float | None:
    """Until the backup's connection table holds every client port in `ports`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            conns = parse_connections(read_conn_table(lab.ns[backup]))
        except (OSError, ValueError):
            conns = []
        have = {c.client_port for c in conns if str(c.client) == CLIENT}
        if ports <= have:
            return time.monotonic() - start
        time.sleep(0.5)
    return None


# -- the scenarios' steps --


def _baseline(c: Ctx) -> None:
    step = c.step("no fault, traffic only", lambda: None)
    c.hold(15)
    c.converge(step, stable=1.0)


def _kill9(c: Ctx) -> None:
    step = c.step("kill -9 d1 (every process of its daemon)", c.lab.directors["d1"].kill9)
    c.takeover(step, "d2")
    back = c.step("start d1 again", lambda: c.start_daemon("d1"))
    c.converge(back, timeout=c.lab.opt.start_timeout)


def _kill9_reload(c: Ctx) -> None:
    d1 = c.lab.directors["d1"]

    def hup_then_kill() -> float:
        d1.reload()
        time.sleep(0.5)
        return d1.kill9()

    step = c.step("SIGHUP d1, kill -9 it 0.5 s later (mid-reload)", hup_then_kill)
    c.takeover(step, "d2")
    back = c.step("start d1 again", lambda: c.start_daemon("d1"))
    c.converge(back, timeout=c.lab.opt.start_timeout)


def _link(links: tuple[str, ...], hold: float = 10.0) -> Callable[[Ctx], None]:
    def scenario(c: Ctx) -> None:
        # A sync group moves every VIP on the fault of either link; otherwise only the
        # instances whose link went down move.
        vips = VIPS if c.lab.opt.sync_group or "in" in links else LAN_VIPS

        def down() -> None:
            for link in links:
                c.lab.switch_port("d1", link, False)

        step = c.step(f"d1 {'+'.join(links)} link(s) down (carrier lost)", down)
        c.takeover(step, "d2", vips)
        c.hold(hold - (time.monotonic() - step.at))

        def up() -> None:
            for link in links:
                c.lab.switch_port("d1", link, True)

        back = c.step("links up again", up)
        c.converge(back)

    return scenario


def _sigterm(c: Ctx) -> None:
    d1 = c.lab.directors["d1"]
    step = c.step("SIGTERM d1 (graceful stop)", lambda: d1.terminate())
    c.takeover(step, "d2")
    c.converge(step, holder="d2", timeout=30)
    back = c.step("start d1 again", lambda: c.start_daemon("d1"))
    c.converge(back, timeout=c.lab.opt.start_timeout)


def _restart(d: str, in_place: bool = True) -> Callable[[Ctx], None]:
    """Restart `d`'s daemon as its operator would: `hacontrol restart` (in place: no
    resignation, the VRRP process kept), keepalived's `systemctl restart` (SIGTERM, then
    start). `in_place=False`: SIGTERM and start for both, as a package upgrade's
    maintainer scripts or an operator without `hacontrol restart` would."""

    def scenario(c: Ctx) -> None:
        director = c.lab.directors[d]
        if in_place and isinstance(director, HacontrolDirector):
            timeout = c.lab.opt.start_timeout
            step = c.step(f"hacontrol restart on {d}", lambda: director.restart_in_place(timeout))
        else:

            def restart() -> None:
                director.terminate()
                c.start_daemon(d)

            step = c.step(f"restart {d} (SIGTERM, then start at once)", restart)
        c.converge(step, timeout=c.lab.opt.start_timeout)

    return scenario


def _rolling(c: Ctx) -> None:
    _restart("d2", in_place=False)(c)
    _restart("d1", in_place=False)(c)


def _rs_kill(c: Ctx) -> None:
    step = c.step("kill -9 rs2's server", lambda: c.lab.server_signal("rs2", signal.SIGKILL))
    c.converge(step, table=desired_table({"rs2": 0}), timeout=60)
    back = c.step("start rs2's server again", lambda: c.lab.start_server("rs2"))
    c.converge(back, timeout=60)


def _rs_stall(c: Ctx) -> None:
    step = c.step(
        "SIGSTOP rs2's server (accepts, never answers)",
        lambda: c.lab.server_signal("rs2", signal.SIGSTOP),
    )
    c.converge(step, table=desired_table({"rs2": 0}), timeout=60, stable=1.0)
    c.hold(8 - (time.monotonic() - step.at))
    back = c.step("SIGCONT rs2's server", lambda: c.lab.server_signal("rs2", signal.SIGCONT))
    c.converge(back, timeout=60)


def _split(c: Ctx) -> None:
    step = c.step("cut every path between d1 and d2", lambda: c.lab.isolate(True))
    c.takeover(step, "d2")
    # Connections opened while the pair is split go through whichever director the client
    # reaches: what becomes of them when it heals?
    for service in c.result.services:
        c.client.open(service, 2, "split")
    c.hold(12 - (time.monotonic() - step.at))
    during = c.obs.since(step.at)
    both = sum(1 for s in during if len(s.holders(VIP_DR)) == 2)
    step.notes.append(f"{both}/{len(during)} samples while cut had both directors holding {VIP_DR}")
    back = c.step("restore the paths", lambda: c.lab.isolate(False))
    c.converge(back)
    # d1 stayed MASTER throughout, so it re-announces the gateway VIP only if it hears a
    # lower-priority advert of VI_IN from d2 (keepalived's rule too). keepalived's d2 may
    # step down on d1's advert before sending one; hacontrol's d2 sends a parting advert
    # when it steps down (vrrp/fsm.py). If d1 never re-announces, a real server's
    # neighbour entry for the gateway keeps d2's MAC (every TCP ACK it receives confirms
    # it) and its NAT replies go through the backup, which forwards them un-NATed for
    # connections it has not learnt: new NAT connections fail. Recorded here, then the
    # lab's caches are reset so later scenarios start clean.
    stale = {rs: d for rs, d in c.lab.gateway_macs().items() if d != "d1"}
    back.notes.append(f"real servers whose gateway entry is not d1 after the heal: {stale}")
    c.result.extra["gateway_entries_after_heal"] = stale
    c.lab.flush_neighbours()


def _tamper(c: Ctx) -> None:
    step = c.step("ipvsadm -C on d1 (the master)", lambda: c.lab.ipvsadm("d1", "-C"))
    c.converge(step, timeout=60)


def _syncd_stop(c: Ctx) -> None:
    step = c.step(
        "ipvsadm --stop-daemon master on d1", lambda: c.lab.ipvsadm("d1", "--stop-daemon", "master")
    )
    # New connections after the stop: only a running master sync daemon tells d2 of them.
    for service in c.result.services:
        c.client.open(service, c.lab.opt.long_per_service, "after-stop")
    c.hold(10 - (time.monotonic() - step.at))
    running = "master" in c.obs.latest().views["d1"].sync
    step.notes.append(
        f"master sync daemon on d1 {'running again' if running else 'still stopped'} 10 s later"
    )
    _link(("lan", "in"), hold=8.0)(c)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("baseline", "no fault (traffic only)", _baseline),
        Scenario("kill9", "master kill -9", _kill9),
        Scenario("link", "master LAN link down, up", _link(("lan",))),
        Scenario("links", "master LAN+inside links down, up", _link(("lan", "in"))),
        Scenario("sigterm", "master SIGTERM (graceful)", _sigterm),
        Scenario("restart", "master daemon restart", _restart("d1")),
        Scenario("backup_restart", "backup daemon restart", _restart("d2")),
        Scenario("rolling", "rolling upgrade (backup, then master)", _rolling),
        Scenario("rs_kill", "real server killed, restarted", _rs_kill, expected_loss_server="rs2"),
        Scenario("rs_stall", "real server stalls (SIGSTOP), resumes", _rs_stall),
        Scenario("split", "director-to-director link cut, restored", _split),
        Scenario("tamper", "ipvsadm -C on the master", _tamper),
        Scenario("syncd_stop", "sync daemon stopped on master, then failover", _syncd_stop),
        Scenario("kill9_reload", "master kill -9 during a reload", _kill9_reload),
    )
}


def run_scenario(lab: Lab, name: str, budget: float = 1500.0) -> ScenarioResult:
    """One scenario against the running pair, with live traffic; the lab is back to its
    steady state afterwards (d1 master) or LabError says why not."""
    scenario = SCENARIOS[name]
    assert lab.observer is not None and lab.client is not None
    obs, client, opt = lab.observer, lab.client, lab.opt
    result = ScenarioResult(name, opt.impl, {s: ServiceResult() for s in scenario.services})
    if obs.wait(lab.steady, timeout=opt.start_timeout, stable=1.0) is None:
        raise LabError(f"{name}: the pair is not in its steady state: {lab.describe()}")
    started = time.monotonic()
    opened: list[dict[str, Any]] = []
    try:
        for service in scenario.services:
            opened += client.open(service, opt.long_per_service, "before")
            client.stream(service, opt.new_rate)
        failed_open = [c for c in opened if c["state"] == "lost"]
        if failed_open:
            raise LabError(
                f"{name}: {len(failed_open)} connections failed to open: {failed_open[:3]}"
            )
    except BaseException:
        # Close what did open, so the next scenario's report is its own.
        with contextlib.suppress(LabError):
            client.stop(timeout=opt.new_timeout + 60)
        raise
    # Faults come once the backup knows the connections (what the sync daemon is for).
    synced = _wait_synced(lab, "d2", {c["port"] for c in opened}, 60.0)
    result.extra["sync_wait_s"] = None if synced is None else round(synced, 2)
    if synced is None:
        result.notes.append("the backup had not learnt every connection within 60 s")
    ctx = Ctx(lab, result, budget)
    fault_at = time.monotonic()
    try:
        scenario.run(ctx)
        # Every live connection must show it works again after the final convergence
        # (TCP retransmission backoff can keep one silent for seconds after the path is back).
        last = result.steps[-1] if result.steps else None
        after = time.monotonic()
        if last is not None and last.converged_s is not None:
            after = last.at + last.converged_s
        deadline = time.monotonic() + 45.0
        while time.monotonic() < deadline:
            live = [c for c in client.status() if c["state"] in ("idle", "waiting")]
            if all(c["last_ok"] > after for c in live):
                break
            time.sleep(0.5)
    finally:
        report = client.stop(timeout=opt.new_timeout + 60)
    result.duration_s = round(time.monotonic() - started, 1)
    _account(result, scenario, report, fault_at)
    samples = obs.since(fault_at)
    result.max_vip_holders = max((len(s.holders(v)) for s in samples for v in VIPS), default=0)
    final = result.steps[-1] if result.steps else None
    result.converged = bool(final and final.converged_s is not None)
    if final is not None and final.converged_s is not None:
        result.convergence_s = round(final.at + final.converged_s - fault_at, 3)
    return result


def _account(
    result: ScenarioResult, scenario: Scenario, report: dict[str, Any], fault_at: float
) -> None:
    stall_limit = 30.0  # a connection silent this long at the end never came back
    for service, sr in result.services.items():
        conns = [c for c in report["long"] if c["service"] == service]
        sr.established = sum(1 for c in conns if c["opened"] < fault_at)
        gaps = []
        for c in conns:
            lost = c["state"] == "lost" or c["open_gap"] > stall_limit
            if lost:
                expected = (
                    scenario.expected_loss_server is not None
                    and c["server"] == scenario.expected_loss_server
                )
                sr.lost += 1
                sr.lost_expected += int(expected)
                why = c["reason"] or f"silent {c['open_gap']:.0f} s"
                sr.lost_detail.append(f"#{c['id']} {c['tag']} via {c['server'] or '?'}: {why}")
            else:
                gaps.append(c["max_gap"])
        if gaps:
            sr.outage_ms = round(max(gaps) * 1000, 1)
            sr.outage_median_ms = round(statistics.median(gaps) * 1000, 1)
        new = report["new"].get(service, {})
        sr.new_attempted = int(new.get("attempted", 0))
        sr.new_failed = int(new.get("failed", 0))
        sr.new_reasons = dict(new.get("reasons", {}))
        sr.new_max_latency_ms = round(float(new.get("max_latency", 0.0)) * 1000, 1)
        sr.new_slow = int(new.get("slow", 0))


def restore(lab: Lab) -> None:
    """After a scenario that left the pair off its steady state: restart what is needed."""
    assert lab.observer is not None
    if lab.observer.wait(lab.steady, timeout=5, stable=1.0) is not None:
        return
    log(f"restoring the steady state: {lab.describe()}")
    lab.isolate(False)
    for d in DIRECTORS:
        for link in ("lan", "in"):
            lab.switch_port(d, link, True)
    for rs, proc in lab.servers.items():
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
        else:
            lab.start_server(rs)
    if lab.observer.wait(lab.steady, timeout=30, stable=1.0) is not None:
        return
    for d in DIRECTORS:
        lab.directors[d].terminate()
    for d in DIRECTORS:
        lab.directors[d].start()
    lab.wait_ready(DIRECTORS)
    if lab.observer.wait(lab.steady, timeout=lab.opt.start_timeout, stable=2.0) is None:
        raise LabError(f"could not restore the steady state: {lab.describe()}")


@contextlib.contextmanager
def lab_running(workdir: Path, options: LabOptions) -> Iterator[Lab]:
    lab = Lab(workdir, options)
    try:
        lab.build()
        yield lab
    finally:
        lab.close()


__all__ = [
    "SCENARIOS", "Lab", "LabError", "LabOptions", "ScenarioResult", "desired_table",
    "lab_running", "restore", "run_scenario",
]  # fmt: skip
