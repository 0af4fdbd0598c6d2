"""VRRP timing under load: the master's advert gaps with VRRP inline, in its own process, and
in its own process under SCHED_RR, with keepalived as the reference, in the same run.

    sudo .venv/bin/python benchmarks/vrrp_isolation.py [--duration 30] [--quick] [--repeat N]
         [--scenarios idle-100ms,checks-10msx20,...] [--configs inline,process,...] [--json]
    sudo .venv/bin/python benchmarks/vrrp_isolation.py --vm   # the reconcile scenario, in the VM

Per run, in namespaces of its own: a bridge; the master director "m" (priority 200); a backup
director "b" (keepalived, priority 100, nothing else to do: an unloaded, reliable flap
detector); a witness "w" that reads every frame on the link with kernel receive timestamps
(tests/interop/ka_util.py `Witness`); and, for the flood, a namespace "f" that sends packets.
The master is, by configuration:

  inline      `hacontrol run --vrrp-inline`: VRRP in the daemon's own event loop (before)
  process     `hacontrol run`: VRRP in its own process (after)
  process-rt  the same with `global: {vrrp_rt_priority: 50}` (SCHED_RR, keepalived's option)
  keepalived  Debian's keepalived 2.2.7 (-P, VRRP only); the machine load that the other
              configurations' daemon creates (checks, reconcile passes) comes from a second,
              LVS-only hacontrol daemon in the same namespace, so keepalived runs beside the
              same work

Scenarios: the instance sets are 1 instance at advert_int 0.1 s ("100ms") and 20 instances
at 0.01 s ("10msx20"), VRRPv3, each with:

  idle       nothing else
  checks     the master daemon also runs 5,000 HTTP checks/s: 50 virtual servers x 100 real
             servers, delay_loop 1 s, against benchmarks/checks.py's stand-in server (another
             process in the master's namespace, one listening socket per loopback address
             127.1.x.y, pinned to the last CPU as checks.py pins it: real servers live on
             other machines). The host kernel has no IPVS: the daemon's IPVS convergers fail
             and retry (modprobe every 10 s); the checks run regardless.
  flood      packets at the master's interface from namespace "f", --flood-rate a second
             (default 50,000), addressed to the master's MAC (so the witness and the backup
             do not see them): half are adverts with a bad checksum, half valid adverts for
             the master's first VRID at priority 50 (lower: processed in full and answered at
             most once per interval). The flooder runs SCHED_RR at priority 1 (below the
             VRRP processes' 50): received packets are handled in softirq context ahead of
             every process on a real box, and an ordinary flooder sends only what the rest
             of the load leaves it.
  reconcile  (the VM only: it needs a kernel with IPVS) the master daemon owns 10,000
             virtual services x 5 real servers and runs reconcile passes back to back
             (reconcile_interval 1 s; a pass takes tens of seconds under emulation).

Figures per run: adverts captured from the master, the longest and the p99 gap between two
adverts of one instance (over all instances) as a multiple of advert_int; the backup's flaps
(its transitions to MASTER, from its log) and adverts; the master's CPU (daemon and VRRP
process; keepalived: its processes, and the load daemon's apart); the load average. Target
(reported, not asserted): longest gap <= 1.2 x advert_int.

Needs root, iproute2, Debian's keepalived; --vm also qemu, virtme-ng and linux-image-amd64.
Traffic stays inside namespaces made here (192.0.2.0/24) and loopback inside the master's
namespace; everything is removed at the end, also after an error or Ctrl-C (tests/netns
`Lab`). Every wait and the flood are bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import itertools
import json
import os
import platform
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.interop.ka_util import (  # noqa: E402
    SO_TIMESTAMPNS,
    AdvertSeen,
    HaDaemon,
    Instance,
    Keepalived,
    Peer,
    Witness,
    parse_advert,
)
from tests.netns.netns_util import Frame, Lab, Netns  # noqa: E402

SO_ATTACH_FILTER = 26
HIGH, LOW = 200, 100
FLOOD_PRIORITY = 50
RT_PRIORITY = 50
SERVER_PORT = 18080
METRICS = "127.0.0.1:9650"
CHECKS_VS, CHECKS_RS = 50, 100  # 5,000 real servers
RECONCILE_VS, RECONCILE_RS = 10_000, 5
TARGET = 1.2  # longest gap, in advert_int
PASSES = 'hacontrol_reconcile_passes_total{kind="ipvs_table",result="ok"}'
CHECKS_PY = REPO / "benchmarks" / "checks.py"


# ---- what is run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    load: str  # idle | checks | flood | reconcile
    instances: int
    advert_int: float
    vm: bool = False


def _scenarios() -> dict[str, Scenario]:
    out = {}
    for load in ("idle", "checks", "flood"):
        out[f"{load}-100ms"] = Scenario(f"{load}-100ms", load, 1, 0.1)
        out[f"{load}-10msx20"] = Scenario(f"{load}-10msx20", load, 20, 0.01)
    out["vm-idle-100ms"] = Scenario("vm-idle-100ms", "idle", 1, 0.1, vm=True)
    out["vm-reconcile-100ms"] = Scenario("vm-reconcile-100ms", "reconcile", 1, 0.1, vm=True)
    return out


SCENARIOS = _scenarios()
HOST_SCENARIOS = [s for s, v in SCENARIOS.items() if not v.vm]
VM_SCENARIOS = [s for s, v in SCENARIOS.items() if v.vm]
CONFIGS = ("inline", "process", "process-rt", "keepalived", "keepalived-rt")


def instances(scenario: Scenario, priority: int) -> list[Instance]:
    return [
        Instance(
            vrid=i + 1,
            priority=priority,
            vips=(f"192.0.2.{100 + i}/24",),
            version=3,
            advert_int=scenario.advert_int,
            name=f"VI_{i + 1}",
        )
        for i in range(scenario.instances)
    ]


def checks_config() -> list[dict[str, Any]]:
    """50 x 100 real servers on 127.1.x.y (benchmarks/checks.py's addressing), HTTP GET /."""
    addresses = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(CHECKS_VS * CHECKS_RS)]
    check = {"type": "http", "path": "/", "delay_loop": 1, "connect_timeout": 2, "retry": 0}
    return [
        {
            "address": f"203.0.113.{v + 1}",
            "port": SERVER_PORT,
            "real_servers": [
                {"address": a, "checks": [check]}
                for a in addresses[v * CHECKS_RS : (v + 1) * CHECKS_RS]
            ],
        }
        for v in range(CHECKS_VS)
    ]


def reconcile_config(services: int) -> list[dict[str, Any]]:
    """`services` x 5 real servers, no checks (benchmarks/ipvs_apply.py's table)."""
    return [
        {
            "address": f"203.0.113.{i % 250 + 1}",
            "port": 1000 + i // 250,
            "scheduler": "wrr",
            "real_servers": [{"address": f"198.51.100.{r}"} for r in range(1, RECONCILE_RS + 1)],
        }
        for i in range(services)
    ]


def plan_cost(services: int) -> float:
    """Seconds that planning one reconcile pass over an unchanged `services` x 5 table takes
    (hacontrol.ipvs.plan.plan, best of 3): the part of every pass that runs in the
    daemon's event loop, and so holds VRRP inline. Pure Python: measurable on the host."""
    from benchmarks.ipvs_apply import build_table
    from hacontrol.ipvs.model import Table
    from hacontrol.ipvs.plan import plan

    desired = build_table(services)
    actual = Table.of(list(desired))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        plan(desired, actual, owned=())
        best = min(best, time.perf_counter() - t0)
    return best


class Director(HaDaemon):
    """HaDaemon with `--vrrp-inline` when asked (the benchmark's only addition)."""

    def __init__(self, *args: Any, inline: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inline = inline

    def start(self) -> None:
        argv = ["-m", "hacontrol", "run", "-c", str(self.config_path)]
        argv += ["--run-dir", str(self.run_dir), "--state-dir", str(self.state_dir)]
        if self.inline:
            argv.append("--vrrp-inline")
        self._spawn([*argv, "--log-level", self.log_level], python=True)


class RtKeepalived(Keepalived):
    """keepalived with `vrrp_rt_priority` (SCHED_RR for its VRRP process) when asked."""

    def __init__(self, *args: Any, rt_priority: int | None = None, **kwargs: Any) -> None:
        self.rt_priority = rt_priority  # render() runs inside Keepalived.__init__
        super().__init__(*args, **kwargs)

    def render(self) -> str:
        text = super().render()
        if self.rt_priority:
            # keepalived also caps a realtime VRRP process with RLIMIT_RTTIME, by default
            # 10 ms of CPU without blocking (vrrp_rlimit_rttime); on this machine its VRRP
            # child took longer than that to become master (VIPs, GARPs, -D logging) and
            # the kernel killed it, over and over. One second keeps the safety net.
            text = text.replace(
                "global_defs {\n",
                f"global_defs {{\n    vrrp_rt_priority {self.rt_priority}\n"
                "    vrrp_rlimit_rttime 1000000\n",
                1,
            )
        return text


class Egress(Witness):
    """The master's own transmissions, timestamped where its namespace hands them to eth0
    (the AF_PACKET tap in dev_queue_xmit). The witness's timestamps also hold the trip
    through veth and bridge, which on an overloaded box can wait in ksoftirqd; the gap
    between the two says whether a late advert left late or arrived late."""

    def __init__(self, ns: Netns, ifname: str) -> None:
        super().__init__(ns, ifname)
        # A classic BPF filter keeps only outgoing frames (skb->pkt_type == PACKET_OUTGOING),
        # so a flood at this interface costs the benchmark nothing to skip.
        program = struct.pack(
            "HBBIHBBIHBBIHBBI",
            0x20, 0, 0, 0xFFFFF004,  # ld [SKF_AD_OFF + SKF_AD_PKTTYPE]
            0x15, 0, 1, socket.PACKET_OUTGOING,  # jeq #PACKET_OUTGOING, accept, drop
            0x06, 0, 0, 0xFFFF,  # ret #65535
            0x06, 0, 0, 0,  # ret #0
        )  # fmt: skip
        self._program = ctypes.create_string_buffer(program)
        fprog = struct.pack("HL", 4, ctypes.addressof(self._program))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.poll()
        self.frames.clear()

    def poll(self, wait: float = 0.0) -> list[Frame]:
        if wait > 0:
            select.select([self.sock], [], [], wait)
        space = socket.CMSG_SPACE(16)
        for _ in range(100_000):
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(65535, space)
            except BlockingIOError:
                break
            if addr[2] != socket.PACKET_OUTGOING:
                continue
            at = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    at = sec + nsec / 1e9
            self.frames.append(Frame(data, at))
        return self.frames


# ---- measuring --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError):
            out += [int(p) for p in Path(task).read_text().split()]
    return out


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def gaps(adverts: list[AdvertSeen], t0: float, t1: float) -> tuple[list[float], float]:
    """Gaps between consecutive adverts of each VRID in [t0, t1], and the longest, counting
    the silence from the last advert to t1 (a master that stopped shows as one long gap)."""
    by_vrid: dict[int, list[float]] = {}
    for a in adverts:
        by_vrid.setdefault(a.vrid, []).append(a.at)
    out: list[float] = []
    longest = 0.0
    for times in by_vrid.values():
        times.sort()
        inside = [t for t in times if t0 <= t <= t1]
        before = [t for t in times if t < t0]
        if before:
            inside.insert(0, before[-1])
        out += [b - a for a, b in itertools.pairwise(inside)]
        if inside:
            longest = max(longest, t1 - inside[-1])
    return out, max([longest, *out])


@dataclass
class Result:
    scenario: str
    config: str
    round: int
    advert_int: float
    instances: int
    duration_s: float = 0.0
    loadavg: float = 0.0
    adverts: int = 0
    expected_adverts: int = 0
    max_gap: float = 0.0  # in advert_int
    p99_gap: float = 0.0
    p50_gap: float = 0.0
    over_target: int = 0  # gaps > 1.2 x advert_int
    sent_p99_gap: float | None = None  # the same gaps at the master's eth0 (Egress)
    sent_max_gap: float | None = None
    backup_flaps: int = 0
    backup_adverts: int = 0
    master_cpu: float = 0.0  # cores: the VRRP daemon (hacontrol: all its processes)
    vrrp_cpu: float | None = None  # cores: the VRRP process alone (None: inline)
    load_cpu: float | None = None  # cores: keepalived's companion load daemon
    checks_per_s: float | None = None
    flood_per_s: float | None = None
    reconcile_passes: float | None = None  # ipvs_table passes ended inside the window
    reconcile_pass_s: float | None = None  # the last one's duration
    vrrp_drops: dict[str, float] = field(default_factory=dict)
    converged: bool = False  # the master held every VIP, the backup none, before the window
    error: str | None = None

    @property
    def met(self) -> bool:
        return self.error is None and self.max_gap <= TARGET


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def vrrp_metrics(daemon: HaDaemon) -> dict[str, float]:
    with contextlib.suppress(OSError, ValueError):
        return daemon.metrics()
    return {}


def sum_metric(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


# ---- the flood ---------------------------------------------------------------------------


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def flood_frames(src_mac: bytes, dst_mac: bytes, vrid: int, advert_int: float) -> list[bytes]:
    """A lower-priority advert and the same with a broken checksum, as Ethernet frames to
    the master's MAC (multicast IP destination: the master has joined 224.0.0.18)."""
    from vrrp import packet
    from vrrp.types import VRRP_MCAST_V4, Advertisement

    src = IPv4Address("192.0.2.3")
    adv = Advertisement(
        3, vrid, FLOOD_PRIORITY, round(advert_int * 100), (IPv4Address(f"192.0.2.{99 + vrid}"),)
    )
    good = packet.encode(adv, src, VRRP_MCAST_V4)
    bad = good[:6] + bytes([good[6] ^ 0xFF]) + good[7:]
    frames = []
    for payload in (good, bad):
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), 0, 0, 255, 112, 0,
            src.packed, VRRP_MCAST_V4.packed,
        )  # fmt: skip
        header = header[:10] + struct.pack("!H", _ip_checksum(header)) + header[12:]
        frames.append(dst_mac + src_mac + b"\x08\x00" + header + payload)
    return frames


def flood_main(args: argparse.Namespace) -> int:
    """The flooder (runs inside namespace f): --flood-rate frames/s for --flood-seconds,
    in 2 ms batches against a fixed schedule; prints how many it sent."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind(("eth0", 0))
    frames = flood_frames(
        bytes.fromhex(args.flood_src), bytes.fromhex(args.flood_dst), args.flood_vrid,
        args.flood_advert_int,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # SCHED_RR at priority 1, below the VRRP processes under test (50): on a real director
    # the flood arrives in softirq context, ahead of every process, and an ordinary
    # flooder on this shared 2-CPU box would send at whatever rate the load leaves it.
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    tick = 0.002
    per_tick = max(1, round(args.flood_rate * tick))
    sent = errors = 0
    start = time.monotonic()
    end = start + args.flood_seconds
    next_at = start
    try:
        while (now := time.monotonic()) < end:
            for i in range(per_tick):
                try:
                    sock.send(frames[i & 1])
                    sent += 1
                except OSError:
                    errors += 1
            next_at += tick
            if next_at > now:
                time.sleep(next_at - now)
            elif now - next_at > 0.1:
                next_at = now  # fell behind (no CPU): do not burst to catch up
    finally:
        elapsed = time.monotonic() - start
        print(json.dumps({"sent": sent, "errors": errors, "seconds": elapsed}), flush=True)
    return 0


# ---- one run ---------------------------------------------------------------------------


def start_server(lab: Lab, ns: Netns, count: int) -> subprocess.Popen[bytes]:
    proc = lab.python(
        ns, [str(CHECKS_PY), "--serve", "--count", str(count), "--port", str(SERVER_PORT)]
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"READY":
        raise RuntimeError(f"stand-in HTTP server did not start: {line!r}")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(proc.pid, {cpus[-1]})
    return proc


def run_one(
    scenario: Scenario, config: str, round_no: int, args: argparse.Namespace, tmp: Path
) -> Result:
    result = Result(scenario.name, config, round_no, scenario.advert_int, scenario.instances)
    with Lab("vi") as lab:
        switch = lab.switch()
        ns_m, ns_b, ns_w = lab.netns("m"), lab.netns("b"), lab.netns("w")
        lab.plug(ns_m, switch, "eth0", "192.0.2.1/24")
        lab.plug(ns_b, switch, "eth0", "192.0.2.2/24")
        lab.plug(ns_w, switch, "eth0")
        ns_f = None
        if scenario.load == "flood":
            ns_f = lab.netns("f")
            lab.plug(ns_f, switch, "eth0", "192.0.2.3/24")
        work = tmp / f"{scenario.name}-{config}-{round_no}"
        work.mkdir()
        extra: dict[str, Any] = {}
        if scenario.load == "checks":
            extra["virtual_servers"] = checks_config()
            start_server(lab, ns_m, CHECKS_VS * CHECKS_RS)
        elif scenario.load == "reconcile":
            extra["virtual_servers"] = reconcile_config(args.vm_services)
            extra["ipvs"] = {"reconcile_interval": 1.0}
        # The backup runs SCHED_RR so that its own timers are not what the load delays: a
        # flap then means the master was silent for Master_Down_Interval, not that the
        # backup woke late (on a loaded 2-CPU box an ordinary backup at 10 ms flaps alone).
        backup = RtKeepalived(
            lab, ns_b, work, "b", instances(scenario, LOW), rt_priority=RT_PRIORITY
        )
        master: Peer
        load: HaDaemon | None = None
        if config.startswith("keepalived"):
            master = RtKeepalived(
                lab, ns_m, work, "m", instances(scenario, HIGH),
                rt_priority=RT_PRIORITY if config == "keepalived-rt" else None,
            )  # fmt: skip
            if extra:
                load = HaDaemon(
                    lab, ns_m, work, "load", [], metrics_listen=METRICS,
                    extra={"global": {"router_id": "load", "metrics_listen": METRICS}, **extra},
                )  # fmt: skip
        else:
            glob_cfg: dict[str, Any] = {"router_id": "m", "metrics_listen": METRICS}
            if config == "process-rt":
                glob_cfg["vrrp_rt_priority"] = RT_PRIORITY
            master = Director(
                lab, ns_m, work, "m", instances(scenario, HIGH), metrics_listen=METRICS,
                extra={"global": glob_cfg, **extra}, inline=config == "inline",
            )  # fmt: skip
        vips = [f"192.0.2.{100 + i}" for i in range(scenario.instances)]
        with Witness(ns_w, "eth0") as witness, Egress(ns_m, "eth0") as egress:
            try:
                backup.start()
                backup.wait_ready(60)
                if load is not None:
                    load.start()
                    load.wait_ready(args.start_timeout)
                master.start()
                master.wait_ready(args.start_timeout)
                # Converged: the master holds every VIP and the backup none. A master that
                # cannot hold its instances (a flap storm under load) is measured anyway:
                # its gaps and the backup's flaps say what happened.
                with contextlib.suppress(TimeoutError):
                    wait(
                        lambda: (
                            all(ns_m.has_address("eth0", v) for v in vips)
                            and not any(ns_b.has_address("eth0", v) for v in vips)
                        ),
                        60,
                        "the master to hold every VIP and the backup none",
                    )
                    result.converged = True
                mac_m, mac_b = ns_m.mac("eth0"), ns_b.mac("eth0")
                source = master if isinstance(master, HaDaemon) else load
                if scenario.load == "reconcile":
                    # The window starts once the table is in (the first pass applies
                    # 60,000 rules) and an ordinary pass has followed.
                    assert source is not None
                    wait(
                        lambda: sum_metric(vrrp_metrics(source), PASSES) >= 2,
                        args.start_timeout,
                        "two reconcile passes of the IPVS table",
                    )
                flooder = None
                if ns_f is not None:
                    flooder = lab.python(
                        ns_f,
                        [
                            str(Path(__file__).resolve()), "--flood-worker",
                            "--flood-rate", str(args.flood_rate),
                            "--flood-seconds", str(args.settle + args.duration + 2),
                            "--flood-src", ns_f.mac("eth0").hex(), "--flood-dst", mac_m.hex(),
                            "--flood-vrid", "1", "--flood-advert-int", str(scenario.advert_int),
                        ],
                    )  # fmt: skip
                # Settle: checks spread over their first delay_loop, the GARP bursts, the
                # first reconcile pass (which in the VM is the 60,000-rule apply).
                settle_end = time.monotonic() + args.settle
                while time.monotonic() < settle_end:
                    witness.poll(0.2)
                    witness.frames.clear()
                    egress.poll()
                    egress.frames.clear()
                result.loadavg = os.getloadavg()[0]
                pids = _master_pids(master)
                vrrp_pid = _vrrp_pid(master, config)
                cpu0 = {p: cpu_seconds(p) for p in pids}
                load_cpu0 = cpu_seconds(load.proc.pid) if load and load.proc else 0.0
                flaps0 = backup.current_log().count("Entering MASTER STATE")
                samples0 = vrrp_metrics(source) if source is not None else {}
                t0, m0 = time.time(), time.monotonic()
                adverts: list[AdvertSeen] = []
                sent: list[AdvertSeen] = []
                backup_adverts = 0
                end = m0 + args.duration
                while time.monotonic() < end:
                    witness.poll(min(0.2, max(0.0, end - time.monotonic())))
                    for frame in witness.frames:
                        if (a := parse_advert(frame)) is None:
                            continue
                        if frame.src_mac == mac_m:
                            adverts.append(a)
                        elif frame.src_mac == mac_b and a.at >= t0:
                            backup_adverts += 1
                    witness.frames.clear()
                    sent += [a for f in egress.poll() if (a := parse_advert(f)) is not None]
                    egress.frames.clear()
                t1, m1 = time.time(), time.monotonic()
                wall = m1 - m0
                cpu1 = {p: cpu_seconds(p) for p in pids}
                result.master_cpu = round(sum(cpu1[p] - cpu0[p] for p in pids) / wall, 3)
                if vrrp_pid is not None:
                    result.vrrp_cpu = round((cpu1[vrrp_pid] - cpu0[vrrp_pid]) / wall, 3)
                if load is not None and load.proc is not None:
                    result.load_cpu = round((cpu_seconds(load.proc.pid) - load_cpu0) / wall, 3)
                result.backup_flaps = backup.current_log().count("Entering MASTER STATE") - flaps0
                result.backup_adverts = backup_adverts
                if source is not None:
                    samples1 = vrrp_metrics(source)
                    if scenario.load == "checks":
                        done = sum_metric(samples1, "hacontrol_check_results_total") - sum_metric(
                            samples0, "hacontrol_check_results_total"
                        )
                        result.checks_per_s = round(done / wall, 1)
                    if scenario.load == "reconcile":
                        passes = sum_metric(samples1, PASSES) - sum_metric(samples0, PASSES)
                        result.reconcile_passes = passes
                        result.reconcile_pass_s = round(
                            sum_metric(
                                samples1,
                                'hacontrol_reconcile_last_duration_seconds{kind="ipvs_table"}',
                            ),
                            1,
                        )
                    if isinstance(master, HaDaemon):
                        for key, value in samples1.items():
                            if key.startswith("hacontrol_vrrp_packets_dropped_total"):
                                reason = key.partition('reason="')[2].partition('"')[0]
                                delta = value - samples0.get(key, 0.0)
                                if delta:
                                    result.vrrp_drops[reason] = delta
                if flooder is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(flooder.pid, signal.SIGTERM)
                    out, _ = flooder.communicate(timeout=10)
                    report = json.loads(out.decode().strip().splitlines()[-1])
                    result.flood_per_s = round(report["sent"] / report["seconds"])
                _summarize(result, adverts, t0, t1, wall)
                sent_gaps, sent_longest = gaps(sent, t0, t1)
                if sent_gaps:
                    result.sent_p99_gap = round(percentile(sent_gaps, 99) / scenario.advert_int, 3)
                    result.sent_max_gap = round(sent_longest / scenario.advert_int, 2)
                if args.verbose and (result.max_gap > TARGET or result.backup_flaps):
                    log(f"    master log tail:\n{master.tail(8)}")
            except (TimeoutError, AssertionError, RuntimeError, OSError, ValueError) as exc:
                result.error = f"{type(exc).__name__}: {str(exc)[:300]}"
                log(f"  {scenario.name} {config}: FAILED {result.error}")
                if args.verbose:
                    log(master.tail(20))
            finally:
                with contextlib.suppress(Exception):
                    master.stop()
                if load is not None:
                    with contextlib.suppress(Exception):
                        load.stop()
                with contextlib.suppress(Exception):
                    backup.stop()
    return result


def _master_pids(master: Peer) -> list[int]:
    assert master.proc is not None
    if isinstance(master, Keepalived):
        return [master.proc.pid, master.child_pid()]
    return [master.proc.pid, *children(master.proc.pid)]


def _vrrp_pid(master: Peer, config: str) -> int | None:
    assert master.proc is not None
    if isinstance(master, Keepalived):
        return master.child_pid()
    if config == "inline":
        return None
    for pid in children(master.proc.pid):
        with contextlib.suppress(OSError):
            if b"hacontrol.runtime.vrrp_process" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    return None


def _summarize(
    result: Result, adverts: list[AdvertSeen], t0: float, t1: float, wall: float
) -> None:
    result.duration_s = round(wall, 2)
    in_window = [a for a in adverts if t0 <= a.at <= t1]
    result.adverts = len(in_window)
    result.expected_adverts = round(wall / result.advert_int * result.instances)
    values, longest = gaps(adverts, t0, t1)
    if not values:
        result.max_gap = (t1 - t0) / result.advert_int
        return
    scale = result.advert_int
    result.max_gap = round(longest / scale, 2)
    result.p99_gap = round(percentile(values, 99) / scale, 3)
    result.p50_gap = round(percentile(values, 50) / scale, 3)
    result.over_target = sum(1 for g in values if g > TARGET * scale)


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
        "in_vm": bool(os.environ.get("HACONTROL_IN_VM")),
        "loadavg": os.getloadavg(),
    }


def _cpu(r: Result) -> str:
    text = f"{r.master_cpu:.2f}"
    if r.vrrp_cpu is not None:
        text += f" ({r.vrrp_cpu:.2f})"
    if r.load_cpu is not None:
        text += f" + load {r.load_cpu:.2f}"
    return text


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | master | load avg | adverts (expected) | gap p50 / p99 / longest "
        "| at eth0: p99 / longest | gaps > 1.2 | backup flaps (adverts) "
        "| master CPU (VRRP process) | other |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.error:
            lines.append(
                f"| {r.scenario} | {r.config} | {r.loadavg:.1f} | FAILED: {r.error} |||||||"
            )
            continue
        other = []
        if r.checks_per_s is not None:
            other.append(f"{r.checks_per_s:,.0f} checks/s")
        if r.flood_per_s is not None:
            other.append(f"{r.flood_per_s:,} flood pkts/s")
        if r.reconcile_passes is not None:
            other.append(f"{r.reconcile_passes:.0f} reconcile passes ({r.reconcile_pass_s} s)")
        mark = "" if r.met else " !"
        if not r.converged:
            other.append("never converged before the window")
        lines.append(
            f"| {r.scenario} | {r.config} | {r.loadavg:.1f} | {r.adverts} ({r.expected_adverts}) "
            f"| {r.p50_gap:.2f} / {r.p99_gap:.2f} / {r.max_gap:.2f}{mark} "
            f"| {r.sent_p99_gap or 0:.2f} / {r.sent_max_gap or 0:.2f} | {r.over_target} "
            f"| {r.backup_flaps} ({r.backup_adverts}) | {_cpu(r)} | {', '.join(other)} |"
        )
    return "\n".join(lines)


def document(
    args: argparse.Namespace, results: list[Result], m: dict[str, Any], plan_s: float | None
) -> dict[str, Any]:
    return {
        "machine": m,
        "target": f"longest gap <= {TARGET} x advert_int",
        "duration_s": args.duration,
        "plan_services": args.plan_services,
        "plan_ms": None if plan_s is None else round(plan_s * 1000, 1),
        "results": [asdict(r) | {"met": r.met} for r in results],
    }


def save(args: argparse.Namespace, results: list[Result]) -> None:
    Path(args.save).write_text(json.dumps(document(args, results, machine(), None), indent=2))


def run_in_vm(argv: list[str], save_to: str | None) -> int:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        print("no /boot/vmlinuz-*: apt-get install linux-image-amd64", file=sys.stderr)
        return 2
    rest = [a for a in argv if a != "--vm"]
    if "--scenarios" not in rest:
        rest += ["--scenarios", ",".join(VM_SCENARIOS)]
    inner = [sys.executable, str(Path(__file__).resolve()), *rest]
    vng = str(Path(sys.executable).with_name("vng"))
    if not Path(vng).exists():
        vng = "vng"
    cmd = [
        vng, "--run", kernels[-1], "--user", "root", "--disable-kvm", "--memory", "3G",
        "--cpus", "2", "--cwd", str(REPO),
        # --save's folder is written through, so results survive the VM.
        *(["--rwdir", str(Path(save_to).resolve().parent)] if save_to else []),
        "--",
        # Load the modules first: the first `ip link add ... type bridge` otherwise loads
        # them itself, which under emulation on a busy host outlasts the Lab's 10 s limit.
        "modprobe -a bridge veth ip_vs; env HACONTROL_IN_VM=1 PYTHONDONTWRITEBYTECODE=1 "
        + shlex.join(inner),
    ]  # fmt: skip
    # Output through a pipe: with a terminal on stdout vng printed nothing (TESTING.md).
    # vng runs virtme-run, which sits beside it in a virtualenv's bin.
    path = f"{Path(vng).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PATH": path},
    )
    sys.stdout.write(proc.stdout)
    return proc.returncode


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="measured seconds per run")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds between start and window")
    ap.add_argument("--quick", action="store_true", help="8 s windows, 3 s settle")
    ap.add_argument("--scenarios", default=",".join(HOST_SCENARIOS))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--repeat", type=int, default=1, help="rounds (configs interleaved)")
    ap.add_argument("--flood-rate", type=int, default=50_000, help="flood packets/s")
    ap.add_argument("--start-timeout", type=float, default=120.0)
    ap.add_argument("--vm", action="store_true", help="run in the VM (Debian's kernel, IPVS)")
    ap.add_argument(
        "--vm-services",
        type=int,
        default=2_000,
        help="virtual services (x 5 real servers) in the reconcile scenario (default 2000: "
        "under emulation the daemon needs over 15 minutes just to load a 10,000-service config)",
    )
    ap.add_argument(
        "--plan-services",
        type=int,
        default=RECONCILE_VS,
        help="table size for the host-side in-loop reconcile cost (0: skip)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--save", metavar="FILE", help="also write the JSON document to FILE")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--flood-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--flood-seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    ap.add_argument("--flood-src", default="", help=argparse.SUPPRESS)
    ap.add_argument("--flood-dst", default="", help=argparse.SUPPRESS)
    ap.add_argument("--flood-vrid", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--flood-advert-int", type=float, default=0.1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.flood_worker:
        return flood_main(args)
    if os.geteuid() != 0:
        print("needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    if args.vm:
        return run_in_vm(list(argv if argv is not None else sys.argv[1:]), args.save)
    if args.quick:
        args.duration, args.settle = 8.0, 3.0
    if not 1 <= args.duration <= 600 or not 0 <= args.settle <= 600:
        ap.error("--duration is 1-600 s, --settle 0-600 s")
    if not 1 <= args.repeat <= 20 or not 0 < args.flood_rate <= 200_000:
        ap.error("--repeat is 1-20, --flood-rate 1-200000")
    scenarios = [SCENARIOS[s] for s in args.scenarios.split(",")]
    configs = args.configs.split(",")
    for c in configs:
        if c not in CONFIGS:
            ap.error(f"unknown configuration {c!r} (known: {', '.join(CONFIGS)})")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="vrrp-isolation-") as tmp:
        for scenario in scenarios:
            for round_no in range(args.repeat):
                for config in configs:
                    log(f"{scenario.name} {config} round {round_no} ...")
                    try:
                        r = run_one(scenario, config, round_no, args, Path(tmp))
                    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                        # The lab itself failed (a namespace or link not made in time):
                        # the Lab has cleaned up; record it and go on with the next run.
                        r = Result(
                            scenario.name, config, round_no, scenario.advert_int,
                            scenario.instances, error=f"lab: {type(exc).__name__}: {exc}"[:300],
                        )  # fmt: skip
                        log(f"  FAILED {r.error}")
                    results.append(r)
                    if args.save:  # after every run: a long run cut short keeps what it had
                        save(args, results)
                    if not r.error:
                        log(
                            f"  load {r.loadavg:.1f}: {r.adverts} adverts, longest gap "
                            f"{r.max_gap:.2f}, p99 {r.p99_gap:.2f} x advert_int, "
                            f"flaps {r.backup_flaps}, CPU {_cpu(r)}"
                            + (f", {r.checks_per_s} checks/s" if r.checks_per_s else "")
                            + (f", flood {r.flood_per_s}/s" if r.flood_per_s else "")
                            + (f", drops {r.vrrp_drops}" if r.vrrp_drops else "")
                        )
    m = machine()
    plan_s = plan_cost(args.plan_services) if args.plan_services else None
    doc = document(args, results, m, plan_s)
    if args.save:
        Path(args.save).write_text(json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"machine: {m['nproc']} x {m['cpu']}, Linux {m['kernel']}, Python {m['python']}"
            f"{' (in the VM)' if m['in_vm'] else ''}, load now {m['loadavg'][0]:.1f}; "
            f"{args.duration:g} s per run"
        )
        print(table(results))
        print(f"gaps in advert_int; target: longest <= {TARGET} (! = not met)")
        if plan_s is not None:
            print(
                f"one reconcile pass's plan over an unchanged {args.plan_services:,} x "
                f"{RECONCILE_RS} table holds the daemon's event loop {plan_s * 1000:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
