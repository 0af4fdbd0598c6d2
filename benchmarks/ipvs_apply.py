"""Benchmark: program N virtual services x 5 real servers with hacontrol vs ``ipvsadm -R``.

Needs a kernel with IPVS (the project's machines have none: use ``--vm``, which boots Debian's
kernel with virtme-ng and re-runs this script inside). Prints, for the same rules:

- hacontrol: plan + pipelined netlink apply from an empty table;
- ``ipvsadm -R`` restoring them after a flush;
- a full dump with counters (what metrics export) and without (what planning needs);
- a reconcile pass with no drift (dump + plan, zero writes), without and with counters
  (the daemon decodes them while its metrics endpoint is configured, hacontrol/metrics.py);
- a reconcile pass after changing one weight (exactly one kernel write).

    python3 benchmarks/ipvs_apply.py --vm                 # 10,000 x 5, in the VM
    python3 benchmarks/ipvs_apply.py --vm --services 1000 --json

It flushes the IPVS table of the namespace it runs in: only run it in the VM or a scratch namespace.
No packet is sent; the addresses are documentation prefixes (192.0.2.0/24, 198.51.100.0/24).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import ipaddress
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hacontrol.ipvs.model import (  # noqa: E402
    ForwardingMethod,
    RealServer,
    ServiceKey,
    Table,
    VirtualService,
)
from hacontrol.ipvs.netlink import ApplyResult, AsyncIpvs, IpvsNetlink  # noqa: E402
from hacontrol.ipvs.plan import Op, plan  # noqa: E402
from hacontrol.ipvs.reconcile import Reconciler  # noqa: E402

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


def measure(n: int, batch_bytes: int) -> dict[str, object]:
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
    out.update(asyncio.run(reconcile_costs(table, batch_bytes)))
    ipvsadm("-C")
    return out


class WithCounters:
    """The table pass while the metrics endpoint is configured: its dump decodes counters."""

    def __init__(self, ipvs: AsyncIpvs) -> None:
        self.ipvs = ipvs

    async def dump(self) -> Table:
        return (await self.ipvs.snapshot()).table

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        return await self.ipvs.apply(ops)


async def reconcile_costs(table: Table, batch_bytes: int) -> dict[str, object]:
    kernel = AsyncIpvs(IpvsNetlink(batch_bytes=batch_bytes))
    try:
        rec = Reconciler(kernel, table)
        t0 = time.perf_counter()
        idle = await rec.reconcile_once()
        idle_s = time.perf_counter() - t0
        assert idle.ok and idle.ops == (), "the table restored by ipvsadm -R should match"
        counting = Reconciler(WithCounters(kernel), table)
        t0 = time.perf_counter()
        idle_counters = await counting.reconcile_once()
        idle_counters_s = time.perf_counter() - t0
        assert idle_counters.ok and idle_counters.ops == ()
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
        return {
            "reconcile_no_drift_s": round(idle_s, 3),
            "reconcile_no_drift_writes": len(idle.ops),
            "reconcile_no_drift_counters_s": round(idle_counters_s, 3),
            "reconcile_one_weight_s": round(one_s, 3),
            "reconcile_one_weight_writes": len(one.ops),
            "reconcile_one_weight_op": str(one.ops[0]),
        }
    finally:
        kernel.close()


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
    args = ap.parse_args()
    if args.vm:
        return run_in_vm(sys.argv[1:])
    if (
        not os.path.exists("/proc/net/ip_vs")
        and subprocess.run(["modprobe", "ip_vs"], capture_output=True).returncode
    ):
        print("this kernel has no IPVS; use --vm", file=sys.stderr)
        return 2
    out = measure(args.services, args.batch_bytes)
    if args.json:
        print(json.dumps(out))
    else:
        n = out["services"]
        print(f"{n} services x {SERVERS_PER_SERVICE} real servers ({out['hacontrol_writes']} rows)")
        print(
            f"  hacontrol apply from empty : {out['hacontrol_total_s']:>8} s "
            f"(plan {out['hacontrol_plan_s']} s, netlink {out['hacontrol_apply_s']} s)"
        )
        print(f"  ipvsadm -R same rules      : {out['ipvsadm_restore_s']:>8} s")
        print(f"  ipvsadm -R / hacontrol     : {out['speedup_vs_ipvsadm']:>8} x")
        print(f"  full dump with counters    : {out['dump_s']:>8} s")
        print(f"  full dump without counters : {out['dump_no_counters_s']:>8} s")
        print(
            f"  reconcile pass, no drift   : {out['reconcile_no_drift_s']:>8} s, "
            f"{out['reconcile_no_drift_writes']} writes"
        )
        print(f"  same, decoding counters    : {out['reconcile_no_drift_counters_s']:>8} s")
        print(
            f"  reconcile pass, one weight : {out['reconcile_one_weight_s']:>8} s, "
            f"{out['reconcile_one_weight_writes']} write ({out['reconcile_one_weight_op']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
