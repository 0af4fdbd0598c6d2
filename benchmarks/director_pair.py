"""Benchmark: a director pair under faults, with live traffic, hacontrol beside keepalived.

    sudo .venv/bin/python benchmarks/director_pair.py --vm                # the whole matrix
    sudo .venv/bin/python benchmarks/director_pair.py --vm --reps 3 --json
    sudo .venv/bin/python benchmarks/director_pair.py --vm --scenarios kill9,tamper \
        --impls keepalived

The lab (tests/kernel/lab.py) needs a kernel with IPVS: `--vm` boots Debian's kernel with
virtme-ng and runs this script inside, once for everything. In one boot, for each
implementation (hacontrol, then keepalived 2.2.7 configured the same way), it builds the
same lab: a client, two directors (VRRP + IPVS + the kernel's sync daemon + HTTP checks),
three real servers, a DR and a NAT virtual service; then runs every scenario of the fault
matrix `--reps` times against the running pair while the client keeps long-lived
connections (a message every 10 ms) and opens new short ones (5/s per service).

For each scenario, service and implementation it prints:

- lost: established long-lived connections lost / established (summed over the runs);
- outage: the longest time a surviving connection waited for an answer, median and max
  over the runs (what a user of the service sees);
- failed new: new short connections that failed / attempted;
- convergence: the time from the fault until exactly one director holds the VIPs, both
  IPVS tables equal their desired state and the holder runs the master sync daemon
  (median over the runs; includes any daemon start the scenario needs).

Both daemons put VI_LAN and VI_IN in one VRRP sync group (keepalived's vrrp_sync_group,
hacontrol's `vrrp_sync_groups:`), as an operator of a NAT site would; `--no-sync-group`
runs them as two lone instances instead (then the LAN link alone breaks NAT: the gateway
VIP stays behind). Everything runs in namespaces made here, with documentation
prefixes; every process is killed by pid and every namespace deleted at the end, also
after an error.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_SCENARIOS = (
    "baseline,kill9,link,links,sigterm,restart,backup_restart,rolling,"
    "rs_kill,rs_stall,split,tamper,syncd_stop,kill9_reload"
)
IMPLS = ("hacontrol", "keepalived")


def progress(text: str) -> None:
    print(f"director_pair: {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ka = subprocess.run(["keepalived", "-v"], capture_output=True, text=True, check=False)
    ka_version = (ka.stdout + ka.stderr).splitlines()[0] if (ka.stdout + ka.stderr) else "?"
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "keepalived": ka_version,
        "emulated": Path("/sys/devices/system/cpu").exists()
        and "hypervisor" in Path("/proc/cpuinfo").read_text(),
    }


def run_matrix(args: argparse.Namespace) -> dict[str, Any]:
    from tests.kernel.lab import LabError, LabOptions, lab_running, restore, run_scenario

    results: list[dict[str, Any]] = []
    errors: list[str] = []
    scenarios = [s for s in args.scenarios.split(",") if s]
    for impl in args.impls.split(","):
        wanted = scenarios
        options = LabOptions(
            impl=impl,
            sync_group=not args.no_sync_group,
            long_per_service=args.long,
            new_rate=args.rate,
        )
        with tempfile.TemporaryDirectory(prefix=f"lab-{impl}-") as tmp:
            # The daemons' logs: kept in --logs (the VM's shared folder) if given.
            workdir = Path(tmp)
            if args.logs:
                options.logdir = Path(args.logs) / impl
                options.logdir.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            try:
                with lab_running(workdir, options) as lab:
                    progress(f"{impl}: lab up in {time.monotonic() - t0:.0f} s")
                    for rep in range(args.reps):
                        for name in wanted:
                            progress(f"{impl}: {name} (run {rep + 1}/{args.reps})")
                            try:
                                res = run_scenario(lab, name)
                                doc = res.to_json()
                                doc["impl"] = impl
                                doc["rep"] = rep
                                results.append(doc)
                                progress(f"{impl}: {name}: {summary_line(doc)}")
                            except LabError as exc:
                                errors.append(f"{impl} {name} run {rep + 1}: {exc}")
                                progress(f"{impl}: {name}: LAB ERROR {exc}")
                            restore(lab)
                            if args.out:
                                save(args.out, results, errors)
            except Exception as exc:
                errors.append(f"{impl}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                progress(f"{impl}: FAILED {exc}")
    return {"machine": machine(), "results": results, "errors": errors}


def save(path: str, results: list[dict[str, Any]], errors: list[str]) -> None:
    Path(path).write_text(
        json.dumps({"machine": machine(), "results": results, "errors": errors}, indent=1)
    )


def summary_line(doc: dict[str, Any]) -> str:
    parts = []
    for svc, sr in doc["services"].items():
        parts.append(
            f"{svc}: lost {sr['lost']}/{sr['established']} outage {sr['outage_ms']:.0f} ms "
            f"new failed {sr['new_failed']}/{sr['new_attempted']}"
        )
    conv = doc["convergence_s"]
    parts.append(f"converged {f'{conv:.1f} s' if conv is not None else 'NO'}")
    return "; ".join(parts)


def aggregate(results: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(scenario, service, impl) -> figures over the runs."""
    groups: dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for doc in results:
        for svc, sr in doc["services"].items():
            groups.setdefault((doc["scenario"], svc, doc["impl"]), []).append((doc, sr))
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, runs in groups.items():
        outages = [sr["outage_ms"] for _d, sr in runs]
        convs = [d["convergence_s"] for d, _sr in runs if d["convergence_s"] is not None]
        out[key] = {
            "runs": len(runs),
            "lost": sum(sr["lost"] - sr["lost_expected"] for _d, sr in runs),
            "lost_expected": sum(sr["lost_expected"] for _d, sr in runs),
            "established": sum(sr["established"] for _d, sr in runs),
            "outage_median_ms": statistics.median(outages) if outages else None,
            "outage_max_ms": max(outages) if outages else None,
            "new_failed": sum(sr["new_failed"] for _d, sr in runs),
            "new_attempted": sum(sr["new_attempted"] for _d, sr in runs),
            "convergence_median_s": statistics.median(convs) if convs else None,
            "unconverged": sum(1 for d, _sr in runs if d["convergence_s"] is None),
        }
    return out


def cell(a: dict[str, Any] | None) -> list[str]:
    if a is None:
        return ["-", "-", "-", "-"]
    lost = f"{a['lost']}/{a['established']}"
    if a["lost_expected"]:
        lost += f" (+{a['lost_expected']} on the killed server)"
    outage = (
        "-" if a["outage_median_ms"] is None
        else f"{a['outage_median_ms']:.0f} / {a['outage_max_ms']:.0f}"
    )  # fmt: skip
    new = f"{a['new_failed']}/{a['new_attempted']}"
    conv = "-" if a["convergence_median_s"] is None else f"{a['convergence_median_s']:.1f} s"
    if a["unconverged"]:
        conv += f" ({a['unconverged']} of {a['runs']} never)"
    return [lost, outage, new, conv]


def table(doc: dict[str, Any]) -> str:
    from tests.kernel.lab import SCENARIOS

    agg = aggregate(doc["results"])
    impls = [i for i in IMPLS if any(k[2] == i for k in agg)]
    head = ["scenario", "svc"]
    for impl in impls:
        short = {"hacontrol": "hc", "keepalived": "ka"}[impl]
        head += [
            f"{short} lost",
            f"{short} outage ms med/max",
            f"{short} failed new",
            f"{short} converged",
        ]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = list(SCENARIOS)
    keys = sorted(
        {(k[0], k[1]) for k in agg},
        key=lambda k: (order.index(k[0]) if k[0] in order else 99, k[1]),
    )
    for scenario, svc in keys:
        title = SCENARIOS[scenario].title if scenario in SCENARIOS else scenario
        row = [title, svc.upper()]
        for impl in impls:
            row += cell(agg.get((scenario, svc, impl)))
        rows.append("| " + " | ".join(row) + " |")
    # After a split heals: real servers still sending to the backup for the gateway VIP.
    for impl in impls:
        splits = [d for d in doc["results"] if d["scenario"] == "split" and d["impl"] == impl]
        stale = [d for d in splits if d.get("extra", {}).get("gateway_entries_after_heal")]
        if splits:
            rows.append(
                f"\n{impl}: split heals with real servers' gateway entry left on the backup "
                f"in {len(stale)} of {len(splits)} runs"
            )
    return "\n".join(rows)


def run_in_vm(argv: list[str]) -> int:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        print("no /boot/vmlinuz-*: apt-get install linux-image-amd64", file=sys.stderr)
        return 2
    outdir = REPO / ".vm-out" / f"director-pair-{os.getpid()}"
    outdir.mkdir(parents=True, exist_ok=True)
    inner = [sys.executable, str(Path(__file__).resolve()), *[a for a in argv if a != "--vm"]]
    inner += ["--out", str(outdir / "results.json"), "--logs", str(outdir)]
    cmd = [
        "timeout", "--kill-after=30", os.environ.get("HACONTROL_VM_TIMEOUT", "21600"),
        "vng", "--run", kernels[-1], "--user", "root", "--disable-kvm", "--memory", "2G",
        "--cpus", "2", "--cwd", str(REPO), "--rwdir", str(outdir), "--",
        "env HACONTROL_IN_VM=1 PYTHONDONTWRITEBYTECODE=1 " + shlex.join(inner),
    ]  # fmt: skip
    progress(f"booting the VM; raw results and daemon logs go to {outdir}")
    # Output through a pipe: with a terminal on stdout vng printed nothing (TESTING.md).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
    return proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--vm", action="store_true", help="boot the VM and run there")
    ap.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated: {', '.join(IMPLS)}")
    ap.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help="comma-separated scenario names")
    ap.add_argument("--reps", type=int, default=3, help="runs of each scenario (default 3)")
    ap.add_argument("--long", type=int, default=6, help="long-lived connections per service")
    ap.add_argument("--rate", type=float, default=5.0, help="new connections a second per service")
    ap.add_argument(
        "--no-sync-group", action="store_true", help="VI_LAN and VI_IN as two lone instances"
    )
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument("--out", help="also write the raw results (JSON) here as they come")
    ap.add_argument("--logs", help="copy the daemons' logs into this folder")
    ap.add_argument(
        "--table-from",
        help="print the table from saved results files (comma-separated), run nothing",
    )
    args = ap.parse_args()
    if args.table_from:
        # Several files (one per implementation, say) make one table.
        docs = [json.loads(Path(p).read_text()) for p in args.table_from.split(",") if p]
        doc = {
            "machine": docs[0]["machine"],
            "results": [r for d in docs for r in d["results"]],
            "errors": [e for d in docs for e in d["errors"]],
        }
        print(json.dumps(doc) if args.json else table(doc))
        return 0
    if args.vm:
        return run_in_vm(sys.argv[1:])
    if os.environ.get("HACONTROL_IN_VM") != "1" and not Path("/proc/net/ip_vs").exists():
        print("this kernel has no IPVS; use --vm", file=sys.stderr)
        return 2
    from tests.kernel.lab import SCENARIOS

    unknown = [s for s in args.scenarios.split(",") if s and s not in SCENARIOS]
    if unknown:
        print(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    unknown = [i for i in args.impls.split(",") if i and i not in IMPLS]
    if unknown:
        print(f"unknown implementations {unknown}; known: {', '.join(IMPLS)}", file=sys.stderr)
        return 2
    doc = run_matrix(args)
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1))
    if args.json:
        print(json.dumps(doc))
    else:
        m = doc["machine"]
        print(f"\nkernel {m['kernel']}, {m['cpus']} CPUs ({m['cpu']}), Python {m['python']},")
        print(f"{m['keepalived']}")
        print(table(doc))
        for e in doc["errors"]:
            print(f"ERROR: {e}")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
