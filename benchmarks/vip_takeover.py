"""Taking over many VIPs: from a new master's first advert to its last VIP on the interface.

    sudo python3 benchmarks/vip_takeover.py [--vips 255,750] [--runs 3]
                                            [--impls hacontrol,keepalived] [--json]

For each implementation and VIP count, in network namespaces: director "d" (one VRRP
instance, no peer, so it becomes master after Master_Down_Interval) and a witness "w" on
the other end of its veth, reading frames with kernel receive timestamps. A thread in
"d" reads the kernel's address events (RTM_NEWADDR) from a netlink socket of its own as
they arrive. Per run:

  first_vip = the first VIP's address event - the first advert the witness saw
  all_vips  = the last VIP's address event  - the first advert the witness saw

Both daemons send their first advert as master before adding the VIPs (RFC 5798 §6.4.2's
order), so `all_vips` is how long after the state change the director answers on every
VIP. The VIPs are /32s from the documentation prefixes (192.0.2.2-, 198.51.100.1-,
203.0.113.1-), as keepalived adds a VIP given without a prefix; the instance advertises
the first 255 and holds the rest, as keepalived does with more.

Target (issue 15, reported, not asserted): 750 VIPs within 2x keepalived's time.

Needs root, iproute2 and Debian's keepalived. Everything stays in namespaces made here and
is removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.interop.ka_util import HaDaemon, Instance, Keepalived, Peer, Witness
from tests.netns.netns_util import Lab, Netns, in_netns

VRID = 61
RTMGRP_IPV4_IFADDR = 0x10
RTM_NEWADDR = 20
_HEADER = struct.Struct("=IHHII")


def vips(count: int) -> list[str]:
    pool = [f"192.0.2.{n}" for n in range(2, 255)]
    pool += [f"198.51.100.{n}" for n in range(1, 255)]
    pool += [f"203.0.113.{n}" for n in range(1, 255)]
    if count > len(pool):
        raise ValueError(f"at most {len(pool)} VIPs")
    return [f"{a}/32" for a in pool[:count]]


class AddressWatch:
    """RTM_NEWADDR events in a namespace, stamped (CLOCK_REALTIME, as the witness's kernel
    stamps) by a thread that does nothing but read them."""

    def __init__(self, ns: Netns) -> None:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            sock.bind((0, RTMGRP_IPV4_IFADDR))
            sock.settimeout(0.2)
            return sock

        self.sock: socket.socket = in_netns(ns.name, make)
        self.added: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="address-watch", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.time()
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _f, _s, _p = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    break
                if kind == RTM_NEWADDR:
                    self.added.append(at)
                offset += (length + 3) & ~3

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()


@dataclass
class Series:
    impl: str
    vips: int
    first_vip_ms: list[float] = field(default_factory=list)
    all_vips_ms: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def one_run(impl: str, count: int, workdir: Path) -> tuple[float, float]:
    with Lab("vt") as lab:
        d, w = lab.netns("d"), lab.netns("w")
        lab.veth(d, "eth0", w, "eth0")
        for ns in (d, w):
            ns.ip("link", "set", "lo", "up")
            ns.ip("link", "set", "eth0", "up")
        d.ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
        inst = Instance(VRID, 100, tuple(vips(count)), version=2, advert_int=1.0)
        peer: Peer
        if impl == "hacontrol":
            peer = HaDaemon(lab, d, workdir, "d", [inst])
        else:
            peer = Keepalived(lab, d, workdir, "d", [inst])
        witness = Witness(w, "eth0")
        watch = AddressWatch(d)
        try:
            peer.start()
            deadline = time.monotonic() + 60
            while len(watch.added) < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(watch.added)} of {count} VIPs after 60 s")
                if not peer.running:
                    raise RuntimeError(f"{impl} exited:\n{peer.tail()}")
                time.sleep(0.05)
            adverts = witness.adverts(VRID)
            if not adverts:
                raise RuntimeError("no advert seen")
            first = adverts[0].at
            added = sorted(watch.added)
            return (added[0] - first) * 1000, (added[count - 1] - first) * 1000
        finally:
            watch.close()
            witness.close()
            peer.stop()


def machine() -> dict[str, Any]:
    model = "unknown"
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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--vips", default="255,750", help="comma-separated VIP counts")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--impls", default="hacontrol,keepalived")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    if not 1 <= args.runs <= 100:
        ap.error("--runs is 1-100")
    counts = [int(c) for c in args.vips.split(",")]
    impls = args.impls.split(",")
    for impl in impls:
        if impl not in ("hacontrol", "keepalived"):
            ap.error(f"unknown implementation {impl!r}")
    all_series: list[Series] = []
    with tempfile.TemporaryDirectory(prefix="vip-takeover-") as tmp:
        for count in counts:
            for impl in impls:
                series = Series(impl, count)
                for run in range(args.runs):
                    workdir = Path(tmp) / f"{impl}-{count}-{run}"
                    workdir.mkdir()
                    try:
                        first, last = one_run(impl, count, workdir)
                    except (RuntimeError, TimeoutError, AssertionError) as exc:
                        series.failed.append(str(exc)[:500])
                        continue
                    series.first_vip_ms.append(first)
                    series.all_vips_ms.append(last)
                all_series.append(series)
    rows = []
    for s in all_series:
        row: dict[str, Any] = {"impl": s.impl, "vips": s.vips, "runs": len(s.all_vips_ms)}
        if s.all_vips_ms:
            row["first_vip_ms_median"] = statistics.median(s.first_vip_ms)
            row["all_vips_ms_median"] = statistics.median(s.all_vips_ms)
            row["all_vips_ms_max"] = max(s.all_vips_ms)
        row["failed"] = len(s.failed)
        rows.append(row)
    if args.json:
        report = {"machine": machine(), "summary": rows, "series": [asdict(s) for s in all_series]}
        print(json.dumps(report, indent=2))
        return 0
    m = machine()
    print(
        f"machine: {m['nproc']} x {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, "
        f"load {m['loadavg'][0]:.1f}"
    )
    print("| VIPs | daemon | first VIP (median) | all VIPs (median / max) | runs |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "all_vips_ms_median" in r:
            print(
                f"| {r['vips']} | {r['impl']} | {r['first_vip_ms_median']:.1f} ms | "
                f"{r['all_vips_ms_median']:.1f} / {r['all_vips_ms_max']:.1f} ms | "
                f"{r['runs']} ({r['failed']} failed) |"
            )
        else:
            print(f"| {r['vips']} | {r['impl']} | - | - | 0 ({r['failed']} failed) |")
    for s in all_series:
        for why in s.failed:
            print(f"{s.impl} {s.vips}: failed: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
