"""VRRP at scale: the CPU a backup spends per advert received and a master per advert sent,
hacontrol against keepalived, in the same namespaces, in the same run, taking turns.

    sudo .venv/bin/python benchmarks/vrrp_scale.py [--seconds 30] [--settle 5]
         [--scenarios 1x1s,200x1s,1000x1s,20x10ms,20x50ms] [--impls hacontrol,keepalived]
         [--loaded] [--json]

Per scenario and implementation, in namespaces made here: a master director "m" (priority
200) and a backup director "b" (priority 100), joined by 1 to 5 veth pairs (eth0..eth4,
one per 200 instances, VRIDs 1..200 on each), each running the same implementation (so the
backup receives real adverts from a real master: no packet generator). VRRPv3 throughout
(10 ms needs v3's centisecond interval). Scenarios:

  1x1s      1 instance, advert_int 1 s (also: idle memory, start-up)
  200x1s    200 instances on one interface
  1000x1s   1,000 instances, 200 on each of 5 interfaces. The documentation prefixes hold
            only 768 IPv4 addresses and a VIP belongs to one instance, so eth0..eth2 carry
            IPv4 instances (VIPs /32 from 198.51.100.0/24, 203.0.113.0/24, 192.0.2.128-215)
            and eth3, eth4 IPv6 instances (VIPs from 2001:db8::/32), the same for both
            implementations
  20x10ms   20 instances, advert_int 0.01 s
  20x50ms   20 instances, advert_int 0.05 s

The master starts first, alone: its first advert on the wire (captured in "b") minus its
spawn time is the start-up time (which includes Master_Down_Interval, 3 x advert_int plus
skew, for both: neither is configured as the address owner). Then the backup starts; once
every instance's adverts arrive and --settle seconds pass, a window of --seconds:

- CPU seconds (utime + stime from /proc/PID/stat) of each director, its daemon and every
  descendant (hacontrol: the daemon and its `hacontrol.runtime.vrrp_process` child;
  keepalived: the parent and its VRRP child)
- adverts the master sent in the window, counted by an AF_PACKET capture in "b" (kernel
  receive timestamps): per instance per minute against 60 / advert_int (from each
  instance's first and last advert in the window), and the gaps between consecutive
  adverts of one instance (p50 / p99 / max, in advert_int); the moments a second adverts
  arrive at (adverts under BURST_GAP apart count once: what the backup wakes for)
- CPU per advert: the backup's CPU / adverts received, the master's CPU / adverts sent (µs)
- whether the backup stayed silent (adverts it sent in the window: should be 0)
- RSS and PSS (/proc/PID/smaps_rollup, summed over the director's processes), at the end
  of the window: "idle" memory is the 1x1s scenario's

`--loaded` adds, for hacontrol, the same scenarios run with both daemons also running
--checks TCP checks (delay_loop 1 s) against a local listener in each namespace and
their reconciler (the host kernel has no IPVS: the IPVS convergers fail and retry, the
checks run regardless); keepalived has no counterpart row (its checker process would need
IPVS too).

Load matters on a shared 2-CPU box: CPU seconds of the daemons are what the load distorts
least (gaps are what it distorts most); the load average is reported with each row.

Needs root, iproute2, Debian's keepalived. Traffic stays in the namespaces made here
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 127.0.0.1 inside them);
everything is removed at the end, also after an error or Ctrl-C (tests/netns `Lab`), and
processes are stopped by pid. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import json
import os
import platform
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.interop.ka_util import (  # noqa: E402
    SO_RCVBUFFORCE,
    SO_TIMESTAMPNS,
    HaDaemon,
    Instance,
    Keepalived,
    Peer,
)
from tests.netns.netns_util import ETH_P_ALL, Lab, Netns, socket_in_netns  # noqa: E402

HIGH, LOW = 200, 100
BURST_GAP = 200e-6  # s: adverts closer than this reach a backup in one wake-up
PER_IFACE = 200
CHECK_PORT = 18081
MIN_CPU = 0.1  # seconds: below, CPU per advert is not reported


@dataclass(frozen=True)
class Scenario:
    name: str
    instances: int
    advert_int: float

    @property
    def interfaces(self) -> int:
        return -(-self.instances // PER_IFACE)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("1x1s", 1, 1.0),
        Scenario("200x1s", 200, 1.0),
        Scenario("1000x1s", 1000, 1.0),
        Scenario("20x10ms", 20, 0.01),
        Scenario("20x50ms", 20, 0.05),
    )
}
IMPLS = ("hacontrol", "keepalived", "hacontrol-loaded")


def _v4_vips() -> list[str]:
    pool = [f"198.51.100.{n}" for n in range(256)] + [f"203.0.113.{n}" for n in range(256)]
    return pool + [f"192.0.2.{n}" for n in range(128, 216)]


V4_VIPS = _v4_vips()  # 600: eth0..eth2


def instances(scenario: Scenario, priority: int) -> list[Instance]:
    out = []
    for i in range(scenario.instances):
        k, vrid = divmod(i, PER_IFACE)
        vip = f"{V4_VIPS[i]}/32" if k < 3 else f"2001:db8:{k}::{vrid + 1:x}/128"
        out.append(
            Instance(
                vrid=vrid + 1,
                priority=priority,
                vips=(vip,),
                version=3,
                advert_int=scenario.advert_int,
                interface=f"eth{k}",
                name=f"VI_{k}_{vrid + 1}",
            )
        )
    return out


# ---- the capture -------------------------------------------------------------------------


class Capture:
    """Every VRRP advert on every interface of a namespace, with the kernel's receive
    timestamp: (time, interface, vrid, outgoing). One AF_PACKET socket bound to no interface
    sees them all; its own VRRP parsing, not hacontrol's codec."""

    def __init__(self, ns: Netns) -> None:
        sock = socket_in_netns(ns.name, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        self.sock = sock
        self.seen: list[tuple[float, str, int, bool]] = []
        self.read_errors = 0

    def close(self) -> None:
        self.sock.close()

    def poll(self, wait: float = 0.0) -> None:
        if wait > 0:
            select.select([self.sock], [], [], wait)
        space = socket.CMSG_SPACE(16)
        for _ in range(200_000):
            try:
                data, anc, _flags, addr = self.sock.recvmsg(2048, space)
            except BlockingIOError:
                return
            except OSError:
                self.read_errors += 1
                return
            ethertype = addr[1]
            # Frames start with the Ethernet header (SOCK_RAW).
            if ethertype == 0x0800 and len(data) >= 36 and data[23] == 112:
                vrrp = data[14 + (data[14] & 0x0F) * 4 :]
            elif ethertype == 0x86DD and len(data) >= 62 and data[20] == 112:
                vrrp = data[54:]
            else:
                continue
            if len(vrrp) < 8 or vrrp[0] >> 4 != 3:
                continue
            at = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    at = sec + nsec / 1e9
            self.seen.append((at, addr[0], vrrp[1], addr[2] == 4))


# ---- measuring ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out, todo = [pid], [pid]
    for _ in range(100):
        if not todo:
            break
        nxt = []
        for p in todo:
            for task in glob.glob(f"/proc/{p}/task/*/children"):
                with contextlib.suppress(OSError):
                    nxt += [int(c) for c in Path(task).read_text().split()]
        out += nxt
        todo = nxt
    return out


def vrrp_pid(pids: Sequence[int]) -> int | None:
    """The process that speaks VRRP: hacontrol's vrrp_process child, keepalived's child."""
    for pid in pids[1:]:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"vrrp_process" in cmdline or b"keepalived" in cmdline:
                return pid
    return None


def memory_kib(pids: Sequence[int]) -> tuple[int, int]:
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss, pss


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


@dataclass
class Result:
    scenario: str
    impl: str
    instances: int
    advert_int: float
    loadavg: float = 0.0
    window_s: float = 0.0
    startup_s: float | None = None  # master's spawn -> its first advert captured
    adverts: int = 0  # master -> backup, in the window
    per_instance_min: float = 0.0
    expected_per_instance_min: float = 0.0
    gap_p50: float = 0.0  # in advert_int
    gap_p99: float = 0.0
    gap_max: float = 0.0
    backup_sent: int = 0
    bursts_per_s: float = 0.0  # moments adverts arrive at (BURST_GAP apart or more)
    backup_cpu_s: float = 0.0
    master_cpu_s: float = 0.0
    backup_vrrp_cpu_s: float = 0.0  # of which the VRRP process (hacontrol's child,
    master_vrrp_cpu_s: float = 0.0  # keepalived's VRRP child)
    rx_us: float | None = None  # backup CPU per advert received
    tx_us: float | None = None  # master CPU per advert sent
    backup_rss_kib: int = 0
    backup_pss_kib: int = 0
    master_rss_kib: int = 0
    master_pss_kib: int = 0
    backup_procs: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Director(HaDaemon):
    ready_marker = "daemon.started"


class QuietKeepalived(Keepalived):
    """keepalived without -D: with it, a master of 1,000 instances logs every one of its
    10,000 gratuitous ARPs at start, which on a loaded 2-CPU box held its VRRP process
    long enough for the backup to time out and a flap storm to follow. State changes are
    logged regardless (the ready marker)."""

    def start(self) -> None:
        for path in (self.pid_main, self.pid_vrrp, self.pid_check):
            path.unlink(missing_ok=True)
        argv = [self.binary, "-n", "-l", "-P", "-f", str(self.conf_path)]
        argv += ["-p", str(self.pid_main), "-r", str(self.pid_vrrp), "-c", str(self.pid_check)]
        self._spawn(argv)


def make_peer(
    impl: str, lab: Lab, ns: Netns, work: Path, name: str, insts: list[Instance], checks: int
) -> Peer:
    if impl == "keepalived":
        return QuietKeepalived(lab, ns, work, name, insts)
    extra: dict[str, Any] = {}
    if impl == "hacontrol-loaded":
        check = {"type": "tcp", "delay_loop": 1, "connect_timeout": 2, "retry": 0}
        extra["virtual_servers"] = [
            {
                "address": f"203.0.113.{250 + v}" if v < 5 else f"192.0.2.{240 + v}",
                "port": 80,
                "forwarding": "NAT",  # real servers on ports of their own
                "real_servers": [
                    {"address": "127.0.0.1", "port": CHECK_PORT + r, "checks": [check]}
                    for r in range(v * 100, min(checks, (v + 1) * 100))
                ],
            }
            for v in range(-(-checks // 100))
        ]
    return Director(lab, ns, work, name, insts, extra=extra)


def start_listener(lab: Lab, ns: Netns, count: int) -> None:
    """`count` listening TCP ports on 127.0.0.1 in `ns` (the checks' real servers)."""
    code = (
        "import socket,sys,time\n"
        f"s=[socket.create_server(('127.0.0.1',{CHECK_PORT}+i),backlog=64)"
        f" for i in range({count})]\n"
        "import selectors\nsel=selectors.DefaultSelector()\n"
        "[sel.register(x,selectors.EVENT_READ) for x in s]\n"
        "print('READY',flush=True)\n"
        "end=time.monotonic()+3600\n"
        "while time.monotonic()<end:\n"
        "  for k,_ in sel.select(1):\n"
        "    try:\n      c,_=k.fileobj.accept();c.close()\n"
        "    except OSError: pass\n"
    )
    proc = lab.python(ns, ["-c", code])
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"READY":
        raise RuntimeError("TCP listener did not start")


def wait(pred: Any, timeout: float, what: str, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        r = pred()
        if r:
            return r
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(step)


def run_one(scenario: Scenario, impl: str, args: argparse.Namespace, tmp: Path) -> Result:
    res = Result(scenario.name, impl, scenario.instances, scenario.advert_int)
    with Lab("vs") as lab:
        ns_m, ns_b = lab.netns("m"), lab.netns("b")
        for k in range(scenario.interfaces):
            ifname = f"eth{k}"
            lab.veth(ns_m, ifname, ns_b, ifname)
            for ns, host in ((ns_m, 1), (ns_b, 2)):
                if k < 3:
                    ns.ip("addr", "add", f"192.0.2.{8 * k + host}/29", "dev", ifname)
                ns.ip("link", "set", ifname, "up")
        work = tmp / f"{scenario.name}-{impl}"
        work.mkdir()
        if impl == "hacontrol-loaded":
            for ns in (ns_m, ns_b):
                start_listener(lab, ns, args.checks)
        master = make_peer(impl, lab, ns_m, work, "m", instances(scenario, HIGH), args.checks)
        backup = make_peer(impl, lab, ns_b, work, "b", instances(scenario, LOW), args.checks)
        cap = Capture(ns_b)
        try:
            timeout = args.start_timeout
            t_spawn = time.time()
            master.start()

            def first_advert() -> float | None:
                cap.poll(0.05)
                incoming = [s[0] for s in cap.seen if not s[3]]
                return min(incoming) if incoming else None

            first = wait(first_advert, timeout, "the master's first advert", step=0.0)
            res.startup_s = round(first - t_spawn, 2)
            log(f"  first advert {res.startup_s} s after spawn")
            master.wait_ready(timeout)
            backup.start()
            backup.wait_ready(timeout)

            # Converged: adverts for every instance arrive, and the backup has gone quiet.
            def converged() -> bool:
                cap.seen.clear()
                cap.poll()
                t_end = time.monotonic() + max(1.5 * scenario.advert_int, 0.3)
                while time.monotonic() < t_end:
                    cap.poll(0.05)
                got = {(s[1], s[2]) for s in cap.seen if not s[3]}
                sent = sum(1 for s in cap.seen if s[3])
                return len(got) >= scenario.instances and sent == 0

            wait(converged, timeout, "every instance's adverts, the backup silent", step=0.0)
            settle_end = time.monotonic() + args.settle
            while time.monotonic() < settle_end:
                cap.poll(0.2)
            cap.seen.clear()
            m_pids = descendants(master.proc.pid)  # type: ignore[union-attr]
            b_pids = descendants(backup.proc.pid)  # type: ignore[union-attr]
            res.backup_procs = len(b_pids)
            res.loadavg = os.getloadavg()[0]
            m_vrrp, b_vrrp = vrrp_pid(m_pids), vrrp_pid(b_pids)
            m0 = sum(cpu_seconds(p) for p in m_pids)
            b0 = sum(cpu_seconds(p) for p in b_pids)
            mv0 = cpu_seconds(m_vrrp) if m_vrrp else 0.0
            bv0 = cpu_seconds(b_vrrp) if b_vrrp else 0.0
            t0, w0 = time.time(), time.monotonic()
            end = w0 + args.seconds
            while (left := end - time.monotonic()) > 0:
                cap.poll(min(0.2, left))
            m1 = sum(cpu_seconds(p) for p in m_pids)
            b1 = sum(cpu_seconds(p) for p in b_pids)
            if m_vrrp:
                res.master_vrrp_cpu_s = round(cpu_seconds(m_vrrp) - mv0, 3)
            if b_vrrp:
                res.backup_vrrp_cpu_s = round(cpu_seconds(b_vrrp) - bv0, 3)
            t1, w1 = time.time(), time.monotonic()
            cap.poll()
            res.loadavg = round((res.loadavg + os.getloadavg()[0]) / 2, 2)
            res.window_s = round(w1 - w0, 2)
            res.master_cpu_s = round(m1 - m0, 3)
            res.backup_cpu_s = round(b1 - b0, 3)
            res.backup_rss_kib, res.backup_pss_kib = memory_kib(b_pids)
            res.master_rss_kib, res.master_pss_kib = memory_kib(m_pids)
            by_inst: dict[tuple[str, int], list[float]] = {}
            for at, ifx, vrid, out in cap.seen:
                if out:
                    if t0 <= at <= t1:
                        res.backup_sent += 1
                    continue
                by_inst.setdefault((ifx, vrid), []).append(at)
            gaps: list[float] = []
            rates: list[float] = []  # adverts a second, per instance
            for times in by_inst.values():
                times.sort()
                inside = [t for t in times if t0 <= t <= t1]
                res.adverts += len(inside)
                gaps += [b - a for a, b in itertools.pairwise(times) if b >= t0]
                if len(inside) >= 2 and inside[-1] > inside[0]:
                    rates.append((len(inside) - 1) / (inside[-1] - inside[0]))
            # Arrival bursts: adverts less than BURST_GAP apart (any instance) arrive
            # together, and a backup wakes once for all of them.
            arrivals = sorted(at for times in by_inst.values() for at in times if t0 <= at <= t1)
            bursts = sum(1 for a, b in itertools.pairwise(arrivals) if b - a > BURST_GAP)
            res.bursts_per_s = round((bursts + bool(arrivals)) / (t1 - t0), 1)
            # The cadence from each instance's first and last advert in the window, not
            # adverts / window: a master's instances share one schedule, so all of them
            # gain or lose the advert at the window's edges together (+-1 in 30 at 1 s).
            if rates:
                res.per_instance_min = round(60 * sum(rates) / len(rates), 1)
            res.expected_per_instance_min = round(60 / scenario.advert_int, 1)
            scale = scenario.advert_int
            res.gap_p50 = round(percentile(gaps, 50) / scale, 3)
            res.gap_p99 = round(percentile(gaps, 99) / scale, 3)
            res.gap_max = round(max(gaps, default=0.0) / scale, 3)
            # Per advert only where the CPU time is many clock ticks (10 ms each): 1
            # instance at 1 s costs a tick or two in a window, which says nothing per advert.
            if res.adverts and res.backup_cpu_s >= MIN_CPU:
                res.rx_us = round(res.backup_cpu_s / res.adverts * 1e6, 1)
            if res.adverts and res.master_cpu_s >= MIN_CPU:
                res.tx_us = round(res.master_cpu_s / res.adverts * 1e6, 1)
            if cap.read_errors:
                res.extra["capture_errors"] = cap.read_errors
        except (TimeoutError, AssertionError, RuntimeError, OSError) as exc:
            res.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            log(f"  FAILED {res.error}")
            if args.verbose:
                log(master.tail(20))
                log(backup.tail(20))
        finally:
            cap.close()
            for peer in (backup, master):
                with contextlib.suppress(Exception):
                    peer.stop()
    return res


# ---- report ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | impl | load | adverts/inst/min (expected) | gap p50 / p99 / max "
        "| backup CPU s (µs/advert rx) | master CPU s (µs/advert tx) | arrival bursts/s "
        "| backup sent | RSS / PSS MiB backup, master | start-up s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.error:
            failed = f"| {r.scenario} | {r.impl} | {r.loadavg:.2f} | FAILED: {r.error} "
            lines.append(failed + "||||||||")
            continue
        mem = (
            f"{r.backup_rss_kib / 1024:.1f} / {r.backup_pss_kib / 1024:.1f}, "
            f"{r.master_rss_kib / 1024:.1f} / {r.master_pss_kib / 1024:.1f}"
        )
        lines.append(
            f"| {r.scenario} | {r.impl} | {r.loadavg:.2f} "
            f"| {r.per_instance_min:g} ({r.expected_per_instance_min:g}) "
            f"| {r.gap_p50:.2f} / {r.gap_p99:.2f} / {r.gap_max:.2f} "
            f"| {r.backup_cpu_s:.2f} ({_us(r.rx_us)}) | {r.master_cpu_s:.2f} ({_us(r.tx_us)}) "
            f"| {r.bursts_per_s:g} | {r.backup_sent} | {mem} | {r.startup_s} |"
        )
    return "\n".join(lines)


def ratios(results: list[Result]) -> list[str]:
    out = []
    by = {(r.scenario, r.impl): r for r in results if not r.error}
    for name in SCENARIOS:
        h, k = by.get((name, "hacontrol")), by.get((name, "keepalived"))
        if h and k and h.rx_us and k.rx_us and h.tx_us and k.tx_us:
            out.append(
                f"{name}: hacontrol/keepalived CPU per advert: receive {h.rx_us / k.rx_us:.1f}x, "
                f"send {h.tx_us / k.tx_us:.1f}x; backup CPU {h.backup_cpu_s:.2f} s vs "
                f"{k.backup_cpu_s:.2f} s"
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    ap.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds between convergence and the window (1,000 instances take a while to "
        "finish starting: the first seconds still cost more)",
    )
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--impls", default="hacontrol,keepalived")
    ap.add_argument("--loaded", action="store_true", help="also hacontrol with checks loaded")
    ap.add_argument("--checks", type=int, default=300, help="TCP checks per daemon (--loaded)")
    ap.add_argument("--start-timeout", type=float, default=180.0)
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    if not 1 <= args.seconds <= 600 or not 0 <= args.settle <= 600:
        ap.error("--seconds is 1-600, --settle 0-600")
    if not 1 <= args.checks <= 1000:
        ap.error("--checks is 1-1000")
    impls = args.impls.split(",") + (["hacontrol-loaded"] if args.loaded else [])
    for i in impls:
        if i not in IMPLS:
            ap.error(f"unknown implementation {i!r}")
    scenarios = []
    for s in args.scenarios.split(","):
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r} (known: {', '.join(SCENARIOS)})")
        scenarios.append(SCENARIOS[s])
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="vrrp-scale-") as tmp:
        for scenario in scenarios:
            for impl in impls:
                log(f"{scenario.name} {impl} ...")
                try:
                    r = run_one(scenario, impl, args, Path(tmp))
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    r = Result(scenario.name, impl, scenario.instances, scenario.advert_int)
                    r.error = f"lab: {type(exc).__name__}: {exc}"[:300]
                    log(f"  FAILED {r.error}")
                results.append(r)
                if not r.error:
                    log(
                        f"  load {r.loadavg}: {r.adverts} adverts, backup {r.backup_cpu_s} s "
                        f"({r.rx_us} µs/advert), master {r.master_cpu_s} s ({r.tx_us} µs/advert), "
                        f"gaps p99 {r.gap_p99} max {r.gap_max}, backup sent {r.backup_sent}; "
                        f"VRRP processes alone: backup {r.backup_vrrp_cpu_s} s, "
                        f"master {r.master_vrrp_cpu_s} s"
                    )
    m = machine()
    if args.json:
        doc = {
            "machine": m,
            "seconds": args.seconds,
            "results": [asdict(r) for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"machine: {m['nproc']} x {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, "
            f"load now {m['loadavg'][0]:.2f}; {args.seconds:g} s windows"
        )
        print(table(results))
        for line in ratios(results):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
