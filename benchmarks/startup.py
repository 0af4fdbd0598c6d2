"""Start-up and idle size: from `exec` to the first advert on the wire, and the memory of
an idle director, hacontrol against keepalived, in the same namespaces, taking turns.

    sudo .venv/bin/python benchmarks/startup.py [--runs 5] [--idle 3] [--impls ...] [--json]

One VRRPv3 instance, advert_int 1 s, priority 255 (the address owner: both go to MASTER
at once, so no Master_Down_Interval is timed), one VIP, in a namespace made here joined by
a veth pair to a second one where an AF_PACKET socket stamps the adverts (kernel receive
time). Per run:

- first advert: the kernel stamp of the first advert minus the time just before spawn
  (hacontrol: `python -m hacontrol run`; keepalived: `keepalived -n -P`), both through
  `ip netns exec`;
- after --idle seconds more: RSS and PSS (/proc/PID/smaps_rollup) summed over the
  director's processes (hacontrol: the daemon and its VRRP process; keepalived: its
  parent and VRRP child), and each process's RSS.

Runs alternate between the implementations; the median and the range are reported.
Python's bytecode caches are written first (`compileall`) and PYTHONDONTWRITEBYTECODE is
dropped, as an installed package has them: compiling the sources at every start would
add about 0.3 s.

Needs root, iproute2, Debian's keepalived. Traffic stays in the namespaces made here
(192.0.2.0/24); everything is removed at the end, also after an error (tests/netns
`Lab`), processes are stopped by pid, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import statistics
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
sys.path.insert(0, str(REPO / "benchmarks"))

from vrrp_scale import Capture, descendants, log, machine, memory_kib  # noqa: E402

from tests.interop.ka_util import HaDaemon, Instance, Keepalived, Peer  # noqa: E402
from tests.netns.netns_util import Lab  # noqa: E402

IMPLS = ("hacontrol", "keepalived")
VIP = "192.0.2.100/32"


@dataclass
class Run:
    impl: str
    first_advert_s: float | None = None
    rss_kib: int = 0
    pss_kib: int = 0
    processes: dict[str, int] = field(default_factory=dict)  # comm -> RSS KiB
    error: str | None = None


def instance() -> Instance:
    # keepalived takes an owner to MASTER at once only with `state MASTER` (with BACKUP it
    # waits Master_Down_Interval first); hacontrol does at priority 255 alone.
    return Instance(
        vrid=51,
        priority=255,
        vips=(VIP,),
        version=3,
        advert_int=1.0,
        keepalived_extra=("state MASTER",),
    )


def process_rss(pids: Sequence[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            name = "vrrp process" if b"hacontrol.runtime.vrrp_process" in cmdline else ""
            name = name or Path(cmdline[0].decode()).name + f" {pid}"
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    out[name] = int(line.split()[1])
    return out


def run_one(impl: str, idle: float, timeout: float, tmp: Path, index: int) -> Run:
    res = Run(impl)
    with Lab("su") as lab:
        ns, ns_w = lab.netns("d"), lab.netns("w")
        lab.veth(ns, "eth0", ns_w, "eth0")
        for n, host in ((ns, 1), (ns_w, 2)):
            n.ip("addr", "add", f"192.0.2.{host}/24", "dev", "eth0")
            n.ip("link", "set", "eth0", "up")
        work = tmp / f"{impl}-{index}"
        work.mkdir()
        peer: Peer
        if impl == "keepalived":
            peer = Keepalived(lab, ns, work, "d", [instance()])
        else:
            peer = HaDaemon(lab, ns, work, "d", [instance()])
        cap = Capture(ns_w)
        try:
            t_spawn = time.time()
            peer.start()
            deadline = time.monotonic() + timeout
            first = None
            while first is None and time.monotonic() < deadline:
                cap.poll(0.02)
                first = min((s[0] for s in cap.seen if not s[3]), default=None)
            if first is None:
                raise TimeoutError("no advert")
            res.first_advert_s = round(first - t_spawn, 3)
            time.sleep(idle)
            assert peer.proc is not None
            pids = descendants(peer.proc.pid)  # `ip netns exec` executed the director
            res.rss_kib, res.pss_kib = memory_kib(pids)
            res.processes = process_rss(pids)
        except (TimeoutError, AssertionError, OSError) as exc:
            res.error = f"{type(exc).__name__}: {exc}"[:300]
            log(peer.tail(20))
        finally:
            cap.close()
            with contextlib.suppress(Exception):
                peer.stop()
    return res


def summary(runs: Sequence[Run]) -> dict[str, dict[str, float | int | None]]:
    out: dict[str, dict[str, float | int | None]] = {}
    for impl in IMPLS:
        ok = [r for r in runs if r.impl == impl and not r.error]
        if not ok:
            continue
        firsts = [r.first_advert_s for r in ok if r.first_advert_s is not None]
        out[impl] = {
            "runs": len(ok),
            "first_advert_median_s": round(statistics.median(firsts), 3),
            "first_advert_min_s": min(firsts),
            "first_advert_max_s": max(firsts),
            "rss_median_mib": round(statistics.median(r.rss_kib for r in ok) / 1024, 1),
            "pss_median_mib": round(statistics.median(r.pss_kib for r in ok) / 1024, 1),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per implementation")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds after the first advert")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    if not 1 <= args.runs <= 50 or not 0 <= args.idle <= 60:
        ap.error("--runs is 1-50, --idle 0-60")
    impls = args.impls.split(",")
    for impl in impls:
        if impl not in IMPLS:
            ap.error(f"unknown implementation {impl!r}")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for package in ("hacontrol", "vrrp", "healthcheck"):
        compileall.compile_dir(REPO / package, quiet=1)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        for index in range(args.runs):
            for impl in impls:
                try:
                    r = run_one(impl, args.idle, args.timeout, Path(tmp), index)
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    r = Run(impl, error=f"lab: {type(exc).__name__}: {exc}"[:300])
                runs.append(r)
                log(
                    f"{impl} run {index + 1}: "
                    + (
                        r.error
                        or f"first advert {r.first_advert_s} s, RSS {r.rss_kib / 1024:.1f} MiB, "
                        f"PSS {r.pss_kib / 1024:.1f} MiB {r.processes}"
                    )
                )
    doc: dict[str, Any] = {
        "machine": machine(),
        "summary": summary(runs),
        "runs": [asdict(r) for r in runs],
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print("| impl | runs | first advert s, median (min-max) | RSS MiB | PSS MiB |")
        print("|---|---|---|---|---|")
        for impl, s in doc["summary"].items():
            print(
                f"| {impl} | {s['runs']} | {s['first_advert_median_s']} "
                f"({s['first_advert_min_s']}-{s['first_advert_max_s']}) "
                f"| {s['rss_median_mib']} | {s['pss_median_mib']} |"
            )
        m = doc["machine"]
        print(f"\n{m['nproc']} x {m['cpu']}, kernel {m['kernel']}, load {m['loadavg']}")
    return 0 if all(not r.error for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
