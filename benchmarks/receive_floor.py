"""The floor under a Python VRRP backup's receive cost: what a receiver that does nothing
with its datagrams spends per datagram, in an asyncio reader callback and in a blocking
loop, as the datagrams arrive one per wake-up or in bursts.

    sudo .venv/bin/python benchmarks/receive_floor.py [--seconds 15] [--rate 2000] [--json]

`benchmarks/vrrp_scale.py` compares the CPU per advert of hacontrol's backup with
keepalived's. This says how much of hacontrol's is the price of receiving in Python on an
asyncio loop at all, before any VRRP work: a backup at 20 instances x 10 ms hears 2,000
adverts a second, in bursts when the master sends them together and one at a time when
the instances' phases are spread.

Receivers (each in a process of its own, CPU time from getrusage over the window):
- `blocking`: recvmsg in a loop on a blocking socket;
- `asyncio`: `loop.add_reader`, the callback reads until EAGAIN (as vrrp/io.py does, at
  most 64 a callback), so every wake-up ends with one failed recvmsg;
- `asyncio-one`: the callback reads one datagram a wake-up.
- `uvloop`: as `asyncio`, on uvloop's loop (only where uvloop is installed).

Senders: `spread` (--rate datagrams a second, evenly spaced) and `burst` (--burst of them
back to back, --rate / --burst times a second). UDP on loopback inside a namespace made
here; the sender is another process. Needs root and iproute2; the namespace and the
processes (by pid) are removed at the end, also after an error; every loop is bounded by
--seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.netns.netns_util import Lab, stop_process  # noqa: E402

# uvloop is no dependency of ours (its timers have millisecond resolution): measured
# only where it happens to be installed.
RECEIVERS = ("blocking", "asyncio", "asyncio-one") + (
    ("uvloop",) if importlib.util.find_spec("uvloop") else ()
)
PATTERNS = ("spread", "burst")
PORT = 5555

# Run as `python -c` inside the namespace: argv = mode, seconds. Prints one JSON line.
RECEIVER = r"""
import asyncio, json, resource, socket, sys, time
mode, seconds = sys.argv[1], float(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", PORT))
print("ready", flush=True)
count = 0
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
def on_readable():
    global count
    for _ in range(1 if mode == "asyncio-one" else 64):
        try:
            sock.recvmsg(4096, 64)
        except BlockingIOError:
            return
        count += 1
start = cpu()
if mode == "blocking":
    sock.settimeout(0.5)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sock.recvmsg(4096, 64)
            count += 1
        except socket.timeout:
            pass
else:
    sock.setblocking(False)
    async def main():
        asyncio.get_running_loop().add_reader(sock.fileno(), on_readable)
        await asyncio.sleep(seconds)
    if mode == "uvloop":
        import uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())
print(json.dumps({"datagrams": count, "cpu_s": cpu() - start}), flush=True)
""".replace("PORT", str(PORT))

# argv = pattern, rate, burst, seconds.
SENDER = r"""
import socket, sys, time
pattern, rate, burst = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
seconds = float(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(40)
group = burst if pattern == "burst" else 1
period = group / rate
start = time.monotonic()
k = 0
while time.monotonic() - start < seconds:
    k += 1
    delay = start + k * period - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    for _ in range(group):
        sock.sendto(payload, ("127.0.0.1", PORT))
""".replace("PORT", str(PORT))


def measure(lab: Lab, receiver: str, pattern: str, args: argparse.Namespace) -> dict[str, Any]:
    ns = lab.netns("f")
    rx = lab.spawn(ns, [sys.executable, "-c", RECEIVER, receiver, str(args.seconds)])
    assert rx.stdout is not None
    if rx.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"{receiver}: the receiver did not start")
    tx = lab.spawn(
        ns,
        [sys.executable, "-c", SENDER, pattern, str(args.rate), str(args.burst), str(args.seconds)],
    )
    try:
        out, _ = rx.communicate(timeout=args.seconds + 30)
    finally:
        stop_process(tx, 9, timeout=5)
    result = json.loads(out.decode().strip().splitlines()[-1])
    n = result["datagrams"]
    return {
        "receiver": receiver,
        "pattern": pattern,
        "datagrams": n,
        "cpu_s": round(result["cpu_s"], 3),
        "us_per_datagram": round(result["cpu_s"] / n * 1e6, 1) if n else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="window per measurement")
    ap.add_argument("--rate", type=float, default=2000.0, help="datagrams a second")
    ap.add_argument("--burst", type=int, default=20, help="datagrams per burst")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    results = []
    with Lab("rfl") as lab:
        for pattern in PATTERNS:
            for receiver in RECEIVERS:
                results.append(measure(lab, receiver, pattern, args))
                print(f"  {results[-1]}", file=sys.stderr)
    doc = {
        "machine": {
            "nproc": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg": os.getloadavg(),
        },
        "seconds": args.seconds,
        "rate": args.rate,
        "burst": args.burst,
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "results": results,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    m = doc["machine"]
    print(
        f"{m['nproc']} CPUs, Linux {m['kernel']}, Python {m['python']}, load {m['loadavg'][0]:.2f}"
    )
    print(f"{args.rate:g} datagrams/s; burst = {args.burst} back to back")
    print("| pattern | receiver | datagrams | CPU s | µs/datagram |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['pattern']} | {r['receiver']} | {r['datagrams']} | {r['cpu_s']} | "
            f"{r['us_per_datagram']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
