"""Benchmark: program N virtual services x 5 real servers with hacontrol vs ``ipvsadm -R``.

Needs a kernel with IPVS (the project's machines have none: use ``--vm``, which boots Debian's
kernel with virtme-ng and re-runs this script inside). Prints, for the same rules:

- hacontrol: plan + pipelined netlink apply from an empty table;
- ``ipvsadm -R`` restoring them after a flush;
- a full dump with counters (what metrics export) and without (what planning needs);
- the steady state: a reconcile pass with no drift (dump + plan, zero writes) as CPU seconds
  of this process (user and system, all threads: the median of ``--passes``), its share of
  one core at the default ``ipvs.reconcile_interval``, and wall time; without counters, with
  them kept (metrics endpoint configured: decoded when scraped, hacontrol/metrics.py) and
  with them decoded on every pass (a drain waiting for connections to end); without and with
  counters kept, also as spread dumps (the daemon's passes over more than 1,000 services
  while nothing drains: half the services' real servers asked for per pass);
- a reconcile pass after changing one weight (exactly one kernel write), and one after
  ``ipvsadm -e`` changed a weight behind our back (repaired by exactly one write: by the
  next pass, and with spread dumps by one of the next two).

``--profile`` prints a cProfile of a pass's dump and plan (stderr). ``--host-decode`` needs
no IPVS: it times only the Python side of a pass (decoding kernel answers made here in the
kernel's layout, and planning) at the host's own speed, for comparison with the VM's
software emulation.

    python3 benchmarks/ipvs_apply.py --vm                 # 10,000 x 5, in the VM
    python3 benchmarks/ipvs_apply.py --vm --services 1000 --json
    python3 benchmarks/ipvs_apply.py --host-decode        # no VM, no IPVS needed

It flushes the IPVS table of the namespace it runs in: only run it in the VM or a scratch namespace.
No packet is sent; the addresses are documentation prefixes (192.0.2.0/24, 198.51.100.0/24).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import glob
import io
import ipaddress
import json
import os
import pstats
import shlex
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hacontrol.config_lvs import IpvsSection  # noqa: E402
from hacontrol.ipvs.model import (  # noqa: E402
    ForwardingMethod,
    RealServer,
    ServiceKey,
    Table,
    VirtualService,
)
from hacontrol.ipvs.netlink import (  # noqa: E402
    ApplyResult,
    AsyncIpvs,
    DumpDecoder,
    IpvsNetlink,
    decode_dest_counters,
    decode_service_stats,
)
from hacontrol.ipvs.plan import Op, PlanMemo, plan  # noqa: E402
from hacontrol.ipvs.reconcile import Kernel, Reconciler  # noqa: E402

SERVERS_PER_SERVICE = 5


def build_table(n: int) -> Table:
    """n TCP services on 192.0.2.1-250, ports from 1000 up, each with 5 DR servers."""
    dests = [ipaddress.IPv4Address(f"198.51.100.{i}") for i in range(1, SERVERS_PER_SERVICE + 1)]
    services = []
    for i in range(n):
        key = ServiceKey.of("tcp", ipaddress.IPv4Address(f"192.0.2.{i % 250 + 1}"), 1000 + i // 250)
        services.append(
            VirtualService(
                key,
                scheduler="wrr",
                real_servers=tuple(
                    RealServer(a, key.port, ForwardingMethod.DR, weight=1) for a in dests
                ),
            )
        )
    return Table.of(services)


def ipvsadm(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["ipvsadm", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def progress(text: str) -> None:
    print(f"ipvs_apply: {text}", file=sys.stderr, flush=True)


def measure(
    n: int, batch_bytes: int, passes: int = 3, profile: bool = False, restore: bool = True
) -> dict[str, object]:
    subprocess.run(["modprobe", "ip_vs"], check=True)
    table = build_table(n)
    rows = len(table) + table.real_server_count
    ipvsadm("-C")
    out: dict[str, object] = {"services": n, "real_servers": table.real_server_count}

    with IpvsNetlink(batch_bytes=batch_bytes) as nl:
        t0 = time.perf_counter()
        ops = plan(table, Table(), owned=())
        t1 = time.perf_counter()
        result = nl.apply(ops)
        t2 = time.perf_counter()
        assert result.ok, [str(f.error) for f in result.failures[:5]]
        progress(f"hacontrol applied {result.writes} ops in {t2 - t0:.2f} s")
        assert result.writes == rows
        out["hacontrol_plan_s"] = round(t1 - t0, 3)
        out["hacontrol_apply_s"] = round(t2 - t1, 3)
        out["hacontrol_total_s"] = round(t2 - t0, 3)
        out["hacontrol_writes"] = result.writes
        t3 = time.perf_counter()
        snap = nl.dump()
        out["dump_s"] = round(time.perf_counter() - t3, 3)
        assert snap.table == table
        t3 = time.perf_counter()
        bare = nl.dump(counters=False)
        out["dump_no_counters_s"] = round(time.perf_counter() - t3, 3)
        assert bare.table == table and not bare.dest_counters
        progress(f"dumped in {out['dump_s']} s, {out['dump_no_counters_s']} s without counters")

    if restore:
        rules = ipvsadm("-Sn")
        assert rules.count("\n") == rows
        ipvsadm("-C")
        with tempfile.TemporaryFile("w+") as f:
            f.write(rules)
            f.seek(0)
            t4 = time.perf_counter()
            subprocess.run(["ipvsadm", "-R"], stdin=f, check=True)
            restore_s = time.perf_counter() - t4
        out["ipvsadm_restore_s"] = round(restore_s, 3)
        progress(f"ipvsadm -R restored {rows} rules in {restore_s:.2f} s")
        out["speedup_vs_ipvsadm"] = round(restore_s / (t2 - t0), 2)
    out.update(asyncio.run(reconcile_costs(table, batch_bytes, passes, profile)))
    ipvsadm("-C")
    return out


class WithCounters:
    """The table pass while the metrics endpoint is configured: its dump keeps the counters
    (decoded when Prometheus scrapes); ``decode``: and decodes them, as while a drain waits
    for connections to end (or with a scrape after every pass). ``spread``: the daemon's
    dumps of a large table while nothing drains (half the real servers read per pass)."""

    def __init__(self, ipvs: AsyncIpvs, *, decode: bool = False, spread: bool = False) -> None:
        self.ipvs = ipvs
        self.decode = decode
        self.spread = spread

    async def dump(self) -> Table:
        snap = await self.ipvs.snapshot(spread=self.spread)
        if self.decode:
            assert len(snap.dest_counters) == snap.table.real_server_count
        return snap.table

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        return await self.ipvs.apply(ops)


class Spread:
    """The daemon's table pass without counters (no metrics endpoint), nothing draining."""

    def __init__(self, ipvs: AsyncIpvs) -> None:
        self.ipvs = ipvs

    async def dump(self) -> Table:
        return await self.ipvs.dump(spread=True)

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        return await self.ipvs.apply(ops)


def cpu_times() -> tuple[float, float]:
    """(user, system) CPU seconds of this process, all threads (the dump runs in a worker)."""
    t = os.times()
    return t.user, t.system


def profile_pass(nl: IpvsNetlink, rec: Reconciler, counters: bool) -> str:
    """cProfile of one pass's work run in this thread (the daemon dumps in a worker thread,
    which cProfile does not see): the dump and the plan."""
    prof = cProfile.Profile()
    prof.enable()
    snap = nl.dump(counters=counters)
    if counters:
        assert len(snap.dest_counters) == snap.table.real_server_count  # decodes them
    actual = snap.table
    ops = plan(rec.desired, actual, owned=rec.owns)
    prof.disable()
    assert ops == []
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(30)
    return text.getvalue()


async def steady_passes(
    rec: Reconciler, passes: int, nl: IpvsNetlink | None = None, counters: bool = False
) -> tuple[dict[str, float], str]:
    """``passes`` no-drift passes: the median wall and CPU seconds per pass, and the profile
    of the last pass when asked (it slows that pass, so it is left out of the figures)."""
    walls: list[float] = []
    users: list[float] = []
    systems: list[float] = []
    for _ in range(passes):
        u0, s0 = cpu_times()
        t0 = time.perf_counter()
        res = await rec.reconcile_once()
        wall = time.perf_counter() - t0
        u1, s1 = cpu_times()
        assert res.ok and res.ops == (), [str(o) for o in res.ops[:5]]
        walls.append(wall)
        users.append(u1 - u0)
        systems.append(s1 - s0)
    report = ""
    if nl is not None:
        report = profile_pass(nl, rec, counters)
    cpus = [u + s for u, s in zip(users, systems, strict=True)]
    i = sorted(range(passes), key=lambda k: cpus[k])[passes // 2]  # the median pass
    return {
        "wall_s": walls[i],
        "cpu_s": cpus[i],
        "user_s": users[i],
        "system_s": systems[i],
    }, report


async def reconcile_costs(
    table: Table, batch_bytes: int, passes: int, profile: bool
) -> dict[str, object]:
    kernel = AsyncIpvs(IpvsNetlink(batch_bytes=batch_bytes))
    interval = IpvsSection().reconcile_interval
    out: dict[str, object] = {"reconcile_interval_s": interval, "reconcile_passes": passes}
    try:
        variants: tuple[tuple[str, Kernel], ...] = (
            ("", kernel),
            ("_spread", Spread(kernel)),
            ("_counters", WithCounters(kernel)),
            ("_counters_spread", WithCounters(kernel, spread=True)),
            ("_counters_decoded", WithCounters(kernel, decode=True)),
        )
        for name, k in variants:
            rec = Reconciler(k, table)
            for _ in range(2):  # warms the decode caches of a long-lived daemon (and spreads)
                warm = await rec.reconcile_once()
                assert warm.ok and warm.ops == (), "the table restored by ipvsadm -R should match"
            cost, report = await steady_passes(
                rec,
                passes,
                kernel.sync if profile and name in ("", "_counters_decoded") else None,
                counters=bool(name),
            )
            label = "no-drift pass" + name.replace("_", " with ", 1).replace("_", ", ")
            if "spread" in name:
                read = kernel.sync._decoder.servers_read
                progress(f"{label}: the last pass asked for {read} services' real servers")
                out[f"reconcile_no_drift{name}_services_read"] = read
            progress(
                f"{label}: {cost['cpu_s']:.3f} s CPU "
                f"(user {cost['user_s']:.3f}, system {cost['system_s']:.3f}), "
                f"{cost['wall_s']:.3f} s wall"
            )
            if report:
                print(f"--- profile of a {label}", file=sys.stderr)
                print(report, file=sys.stderr, flush=True)
            out[f"reconcile_no_drift{name}_s"] = round(cost["wall_s"], 3)
            out[f"reconcile_no_drift{name}_cpu_s"] = round(cost["cpu_s"], 3)
            out[f"reconcile_no_drift{name}_user_s"] = round(cost["user_s"], 3)
            out[f"reconcile_no_drift{name}_system_s"] = round(cost["system_s"], 3)
            out[f"reconcile_no_drift{name}_core_share"] = round(cost["cpu_s"] / interval, 4)
        out["reconcile_no_drift_writes"] = 0
        rec = Reconciler(kernel, table)
        await rec.reconcile_once()
        first = table.services[len(table) // 2]
        changed = replace(
            first,
            real_servers=(replace(first.real_servers[0], weight=7), *first.real_servers[1:]),
        )
        rec.set_desired(Table.of(changed if s.key == first.key else s for s in table))
        t1 = time.perf_counter()
        one = await rec.reconcile_once()
        one_s = time.perf_counter() - t1
        assert one.ok and len(one.ops) == 1, [str(o) for o in one.ops]
        # Drift by hand (what ``ipvsadm -e`` does) is repaired by the very next pass.
        ipvsadm("-e", "-t", f"{first.key.address}:{first.key.port}", "-r",
                f"{first.real_servers[1].address}:{first.key.port}", "-g", "-w", "9")  # fmt: skip
        again = await rec.reconcile_once()
        assert again.ok and len(again.ops) == 1, [str(o) for o in again.ops]
        # With spread dumps: within two passes, whichever half the service falls in.
        spread = Reconciler(Spread(kernel), rec.desired)
        for _ in range(2):
            assert (await spread.reconcile_once()).ops == ()
        ipvsadm("-e", "-t", f"{first.key.address}:{first.key.port}", "-r",
                f"{first.real_servers[1].address}:{first.key.port}", "-g", "-w", "8")  # fmt: skip
        passes_ops = [(await spread.reconcile_once()).ops for _ in range(2)]
        assert sum(len(ops) for ops in passes_ops) == 1, passes_ops
        out.update(
            {
                "reconcile_one_weight_s": round(one_s, 3),
                "reconcile_one_weight_writes": len(one.ops),
                "reconcile_one_weight_op": str(one.ops[0]),
                "reconcile_hand_drift_repaired": str(again.ops[0]),
                "reconcile_spread_hand_drift_repaired_by_pass": 1 if passes_ops[0] else 2,
            }
        )
        return out
    finally:
        kernel.close()


def _attr(attr_type: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, attr_type) + payload + b"\0" * (-n & 3)


def _kernel_stats(old: int, wide: int) -> bytes:
    """IPVS_*_ATTR_STATS and STATS64 as ip_vs_genl_fill_stats{,64}() write them (x86-64)."""
    narrow = b"".join(
        _attr(i, struct.pack("=Q" if i in (4, 5) else "=I", 1000 + i)) for i in range(1, 11)
    )
    return _attr(old | 0x8000, narrow) + _attr(
        wide | 0x8000, b"".join(_attr(i, struct.pack("=Q", 1000 + i)) for i in range(1, 11))
    )


def kernel_answers(table: Table) -> list[tuple[bytes, list[bytes]]]:
    """What the kernel answers a dump of ``table`` with, in ip_vs_genl_fill_service() and
    ip_vs_genl_fill_dest() layout (Linux 5.3+): per service its IPVS_CMD_ATTR_SERVICE payload
    and its real servers' IPVS_CMD_ATTR_DEST payloads. For ``--host-decode``."""
    out = []
    for svc in table:
        key = svc.key
        assert key.address is not None
        raw_svc = (
            _attr(1, struct.pack("=H", key.family))
            + _attr(2, struct.pack("=H", key.protocol))
            + _attr(3, key.address.packed.ljust(16, b"\0"))
            + _attr(4, struct.pack("!H", key.port))
            + _attr(6, svc.scheduler.encode() + b"\0")
            + _attr(7, struct.pack("=II", svc.flag_bits | 0x2, 0xFFFFFFFF))  # + HASHED
            + _attr(8, struct.pack("=I", svc.persistence_timeout or 0))
            + _attr(9, struct.pack("!I", svc.netmask_value))
            + _kernel_stats(10, 12)
        )
        dests = []
        for rs in svc.real_servers:
            dests.append(
                _attr(1, rs.address.packed.ljust(16, b"\0"))
                + _attr(2, struct.pack("!H", rs.port or 0))
                + _attr(3, struct.pack("=I", int(rs.forwarding)))
                + _attr(4, struct.pack("=I", rs.weight))
                + _attr(13, bytes((int(rs.tunnel_type),)))
                + _attr(14, struct.pack("!H", rs.tunnel_port))
                + _attr(15, struct.pack("=H", int(rs.tunnel_flags)))
                + _attr(5, struct.pack("=I", rs.upper_threshold))
                + _attr(6, struct.pack("=I", rs.lower_threshold))
                + _attr(7, struct.pack("=I", 3))
                + _attr(8, struct.pack("=I", 4))
                + _attr(9, struct.pack("=I", 5))
                + _attr(11, struct.pack("=H", rs.family))
                + _kernel_stats(10, 12)
            )
        out.append((raw_svc, dests))
    return out


def genl_dump_round_trip(count: int) -> tuple[float, float, int]:
    """(user, system) CPU microseconds of one generic-netlink dump round trip at the host's
    own speed, and its size in bytes: the controller's family list (CTRL_CMD_GETFAMILY,
    NLM_F_DUMP), the nearest thing to a real-server dump a host without IPVS can make. It
    stands in for the kernel's share of a pass, which makes one such dump per service."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
    sock.bind((0, 0))
    buf = bytearray(1 << 20)
    size = 0

    def one(seq: int) -> int:
        sock.send(struct.pack("=IHHIIBBH", 20, 0x10, 0x301, seq, 0, 3, 1, 0))
        got = 0
        while True:
            n = sock.recv_into(buf)
            got += n
            offset = 0
            while offset + 16 <= n:
                length, mtype = struct.unpack_from("=IH", buf, offset)
                if mtype == 3 or length < 16:  # NLMSG_DONE
                    return got
                offset += (length + 3) & ~3

    try:
        size = one(1)
        u0, s0 = cpu_times()
        for seq in range(count):
            one(seq + 2)
        u1, s1 = cpu_times()
    finally:
        sock.close()
    return (u1 - u0) / count * 1e6, (s1 - s0) / count * 1e6, size


def host_decode(n: int, passes: int) -> dict[str, object]:
    """The Python side of a pass at the host's native speed: decoding kernel answers (made
    here in the kernel's layout: this host has no IPVS) and planning, without the syscalls and
    the kernel's own work. Cold: every service decoded (a first pass); steady: nothing changed
    since the previous dump; counters: steady plus decoding every counter. The estimate of a
    whole pass adds, per service, the system time of a generic-netlink dump round trip."""
    table = build_table(n)
    answers = [(memoryview(s), [memoryview(d) for d in ds]) for s, ds in kernel_answers(table)]
    interval = IpvsSection().reconcile_interval

    def one_pass(
        decoder: DumpDecoder, memo: PlanMemo, counters: bool, spread: bool = False
    ) -> float:
        c0 = time.process_time()
        decoder.begin(counters=counters)
        for index, (raw_svc, raws) in enumerate(answers):
            base = decoder.service(raw_svc)
            # IpvsNetlink.dump's choice: a carried service's real servers are not asked for.
            carried = decoder.carry(index, base) if spread else None
            full = decoder.servers(base, raws) if carried is None else carried[0]
            if counters:
                decode_service_stats(raw_svc)
                for _rs, raw in zip(full.real_servers, raws, strict=True):
                    decode_dest_counters(raw)
        actual = decoder.finish()
        ops = plan(table, actual, owned=(), memo=memo)
        cpu = time.process_time() - c0
        assert ops == [], [str(o) for o in ops[:3]]
        return cpu

    cold = sorted(one_pass(DumpDecoder(), PlanMemo(), False) for _ in range(passes))
    decoder, memo = DumpDecoder(), PlanMemo()
    one_pass(decoder, memo, False)
    steady = sorted(one_pass(decoder, memo, False) for _ in range(passes))
    counting = sorted(one_pass(decoder, memo, True) for _ in range(passes))
    spreading = sorted(one_pass(decoder, memo, False, spread=True) for _ in range(passes))
    out: dict[str, object] = {"services": n, "real_servers": table.real_server_count}
    user_us, system_us, size = genl_dump_round_trip(n)
    out["host_genl_dump_bytes"] = size
    out["host_genl_dump_user_us"] = round(user_us, 1)
    out["host_genl_dump_system_us"] = round(system_us, 1)
    # One dest dump per service plus the service dump, at the round trip's kernel cost.
    out["host_estimate_pass_cpu_s"] = round(steady[passes // 2] + n * system_us / 1e6, 3)
    out["host_estimate_core_share"] = round(
        (steady[passes // 2] + n * system_us / 1e6) / interval, 4
    )
    # Spread (the daemon's default above SPREAD_ABOVE services): half the dest dumps.
    spread_pass = spreading[passes // 2] + (n // 2) * system_us / 1e6
    out["host_estimate_spread_pass_cpu_s"] = round(spread_pass, 3)
    out["host_estimate_spread_core_share"] = round(spread_pass / interval, 4)
    for name, runs in (
        ("cold", cold),
        ("steady", steady),
        ("steady_counters", counting),
        ("steady_spread", spreading),
    ):
        out[f"host_decode_{name}_cpu_s"] = round(runs[passes // 2], 4)
        out[f"host_decode_{name}_core_share"] = round(runs[passes // 2] / interval, 5)
    return out


def run_in_vm(argv: list[str]) -> int:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        print("no /boot/vmlinuz-*: apt-get install linux-image-amd64", file=sys.stderr)
        return 2
    inner = [sys.executable, str(Path(__file__).resolve()), *[a for a in argv if a != "--vm"]]
    cmd = [
        "vng", "--run", kernels[-1], "--user", "root", "--disable-kvm", "--memory", "2G",
        "--cwd", str(REPO), "--", shlex.join(inner),
    ]  # fmt: skip
    # Output through a pipe: with a terminal on stdout vng printed nothing (TESTING.md).
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(proc.stdout)
    return proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10_000, help="virtual services (default 10000)")
    ap.add_argument("--batch-bytes", type=int, default=192 * 1024)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--vm", action="store_true", help="boot the VM and run there")
    ap.add_argument("--passes", type=int, default=3, help="no-drift passes timed (median)")
    ap.add_argument("--profile", action="store_true", help="cProfile a no-drift pass (stderr)")
    ap.add_argument(
        "--no-ipvsadm", action="store_true", help="skip the ipvsadm -R comparison (quicker)"
    )
    ap.add_argument(
        "--host-decode",
        action="store_true",
        help="only the Python decode and plan of a pass, over kernel answers made here",
    )
    args = ap.parse_args()
    if args.host_decode:
        print(json.dumps(host_decode(args.services, args.passes)))
        return 0
    if args.vm:
        return run_in_vm(sys.argv[1:])
    if (
        not os.path.exists("/proc/net/ip_vs")
        and subprocess.run(["modprobe", "ip_vs"], capture_output=True).returncode
    ):
        print("this kernel has no IPVS; use --vm", file=sys.stderr)
        return 2
    out = measure(
        args.services, args.batch_bytes, args.passes, args.profile, restore=not args.no_ipvsadm
    )
    if args.json:
        print(json.dumps(out))
    else:
        n = out["services"]
        print(f"{n} services x {SERVERS_PER_SERVICE} real servers ({out['hacontrol_writes']} rows)")
        print(
            f"  hacontrol apply from empty : {out['hacontrol_total_s']:>8} s "
            f"(plan {out['hacontrol_plan_s']} s, netlink {out['hacontrol_apply_s']} s)"
        )
        if "ipvsadm_restore_s" in out:
            print(f"  ipvsadm -R same rules      : {out['ipvsadm_restore_s']:>8} s")
            print(f"  ipvsadm -R / hacontrol     : {out['speedup_vs_ipvsadm']:>8} x")
        print(f"  full dump with counters    : {out['dump_s']:>8} s")
        print(f"  full dump without counters : {out['dump_no_counters_s']:>8} s")
        interval = out["reconcile_interval_s"]
        for name, label in (
            ("", "no drift"),
            ("_spread", "no drift, spread"),
            ("_counters", "no drift, counters kept"),
            ("_counters_spread", "same, spread"),
            ("_counters_decoded", "same, counters decoded"),
        ):
            print(
                f"  reconcile pass, {label:<23}: {out[f'reconcile_no_drift{name}_cpu_s']:>8} s CPU"
                f" (user {out[f'reconcile_no_drift{name}_user_s']}, system"
                f" {out[f'reconcile_no_drift{name}_system_s']}), "
                f"{out[f'reconcile_no_drift{name}_s']} s wall, "
                f"{100 * out[f'reconcile_no_drift{name}_core_share']:.1f}% of a core "  # type: ignore[operator]
                f"every {interval} s"
            )
        print(
            f"  reconcile pass, one weight : {out['reconcile_one_weight_s']:>8} s, "
            f"{out['reconcile_one_weight_writes']} write ({out['reconcile_one_weight_op']})"
        )
        print(f"  hand-made drift repaired   : {out['reconcile_hand_drift_repaired']}")
        print(
            "  same, spread dumps         : repaired by pass "
            f"{out['reconcile_spread_hand_drift_repaired_by_pass']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
