"""Config loading: wall time and peak memory of `hacontrol check` on large and hostile files.

    python3 benchmarks/config_load.py [--runs 3] [--json] [--keep DIR]

Generates its files in a temporary directory (or --keep DIR) and runs
`python -m hacontrol check -c FILE` as a subprocess for each, --runs times; wall time is
measured around the process; CPU time (user + system) and peak RSS are the child's own
(os.wait4's rusage). CPU time is the figure to compare on a shared machine. Cases:

  services_10k     10,000 virtual services x 5 real servers, each with a TCP check, in the
                   block style of conf/hacontrol.yaml (~4 MB)
  real_250k        250,000 real servers (1,000 NAT services x 250), one flow mapping a line
                   (~10 MB)
  services_10k_py  services_10k with PyYAML's pure-Python parser instead of libyaml
                   (what a PyYAML built without libyaml would give)
  alias_bomb       0.5 KB whose aliases would expand to ~4 billion values
  recursive_alias  `vrrp_instances: &a [*a]`
  deep_nesting     5,000 nested block sequences (~25 MB of indentation)

The valid files must check OK and the hostile ones must fail with one FILE:LINE error;
anything else is reported as a failure. Targets (reported, not asserted): services_10k in
a couple of seconds and well under 200 MB; hostile files under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def services_config(services: int, per_service: int) -> str:
    """VIPs 192.0.2.1-100 x ports, real servers from two documentation /24s, DR."""
    out = [
        "vrrp_instances:",
        "  - name: VI_WEB",
        "    interface: eth0",
        "    vrid: 51",
        "    priority: 150",
        "    virtual_ipaddresses:",
    ]
    vips = min(100, services)
    out += [f"      - 192.0.2.{i + 1}/24" for i in range(vips)]
    out.append("virtual_servers:")
    for s in range(services):
        out += [
            f"  - address: 192.0.2.{s % vips + 1}",
            f"    port: {1000 + s // vips}",
            "    protocol: TCP",
            "    scheduler: wlc",
            "    forwarding: DR",
            "    real_servers:",
        ]
        for r in range(per_service):
            n = (s * per_service + r) % 500
            net = "198.51.100" if n < 250 else "203.0.113"
            out += [
                f"      - address: {net}.{n % 250 + 1}",
                "        weight: 1",
                "        checks:",
                "          - {type: tcp, delay_loop: 6, connect_timeout: 3}",
            ]
    return "\n".join(out) + "\n"


def real_servers_config(services: int, per_service: int) -> str:
    """NAT services with many real servers, one flow mapping a line (distinct address:port)."""
    out = ["virtual_servers:"]
    for s in range(services):
        out += [
            f"  - address: 192.0.2.{s // 250 + 1}",
            f"    port: {s % 250 + 1}",
            "    forwarding: NAT",
            "    real_servers:",
        ]
        for r in range(per_service):
            out.append(f"      - {{address: 198.51.100.{r % 250 + 1}, port: {8000 + r // 250}}}")
    return "\n".join(out) + "\n"


def alias_bomb() -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


CASES: dict[str, Any] = {
    "services_10k": lambda: services_config(10_000, 5),
    "real_250k": lambda: real_servers_config(1_000, 250),
    "services_10k_py": None,  # the services_10k file, pure-Python parser
    "alias_bomb": alias_bomb,
    "recursive_alias": lambda: "vrrp_instances: &a [*a]\n",
    "deep_nesting": lambda: "".join("  " * i + "-\n" for i in range(5000)),
}
VALID = {"services_10k", "real_250k", "services_10k_py"}

# The same `hacontrol check`, with PyYAML's pure-Python parser forced.
PURE = (
    "import sys; from hacontrol import yamlsrc; yamlsrc.libyaml_loader = lambda: False; "
    "from hacontrol.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run_check(path: Path, pure: bool) -> dict[str, Any]:
    argv = [sys.executable, "-c", PURE] if pure else [sys.executable, "-m", "hacontrol"]
    argv += ["check", "-c", str(path)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # wait4, not communicate: the child's own rusage (ru_maxrss in KiB on Linux). The
    # outputs are a few lines, well within the pipe buffers.
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.communicate()
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "exit": proc.returncode,
        "output": (out + err).strip().splitlines()[:2],
    }


def machine() -> dict[str, Any]:
    import yaml

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyyaml": yaml.__version__,
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
        "load_before": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run these cases")
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {}
        for name, make in CASES.items():
            if args.only and name not in args.only:
                continue
            source = "services_10k" if make is None else name
            path = folder / f"{source}.yaml"
            if not path.exists():
                path.write_text((CASES[source])())
            runs = [run_check(path, pure=name.endswith("_py")) for _ in range(max(1, args.runs))]
            want_ok = name in VALID
            ok = all((r["exit"] == 0) == want_ok for r in runs) and (
                want_ok or all(len(r["output"]) == 2 for r in runs)
            )
            results[name] = {
                "bytes": path.stat().st_size,
                "seconds_median": statistics.median(r["seconds"] for r in runs),
                "seconds_min": min(r["seconds"] for r in runs),
                "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in runs),
                "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
                "as_expected": ok,
                "output": runs[0]["output"],
            }
    info["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps({"machine": info, "results": results}, indent=2))
        return 0 if all(r["as_expected"] for r in results.values()) else 1
    print(
        f"{info['cpu']}, {info['cpus']} CPUs, Linux {info['kernel']}, Python {info['python']}, "
        f"PyYAML {info['pyyaml']} (libyaml: {info['libyaml']}); load "
        f"{info['load_before'][0]:.1f} -> {info['load_after'][0]:.1f}; {args.runs} run(s) each"
    )
    print(f"{'case':<17}{'size':>9}{'wall s':>8}{'min':>7}{'CPU s':>7}{'peak RSS':>10}  result")
    for name, r in results.items():
        size = f"{r['bytes'] / 1e6:.1f} MB" if r["bytes"] >= 100_000 else f"{r['bytes']} B"
        verdict = "ok" if r["as_expected"] else "UNEXPECTED"
        print(
            f"{name:<17}{size:>9}{r['seconds_median']:>8.2f}{r['seconds_min']:>7.2f}"
            f"{r['cpu_seconds_median']:>7.2f}{r['peak_rss_mb_max']:>7.0f} MB  {verdict}: "
            f"{r['output'][0][-60:]}"
        )
    return 0 if all(r["as_expected"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
