#!/usr/bin/env python3
"""Capture golden VRRP adverts, gratuitous ARP and unsolicited NA frames from the real keepalived.

Run as root on a machine with Debian's keepalived (2.2.7 when the fixtures were made):

    python3 scripts/capture_keepalived_golden.py [--out tests/fixtures/keepalived]

For each scenario it makes two network namespaces joined by a veth pair (192.0.2.0/24 and
2001:db8::/64 inside, fixed locally administered MACs so the bytes are reproducible), runs
keepalived in one (`ip netns exec NS keepalived -n -l -D -f CONF -p .. -r .. -c ..`) and sniffs
the veth in the other with an AF_PACKET socket (this same script, re-run with `--sniff` inside
the peer namespace). It writes one JSON file per fixture with the whole Ethernet frame, the
VRRP payload, src/dst/ttl and the keepalived configuration that produced it.

Nothing leaves the namespaces this script creates; keepalived is stopped by its pid and the
namespaces are deleted even when a step fails.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
VRRP_PROTO = 112
ICMPV6_PROTO = 58
ND_NEIGHBOR_ADVERT = 136

# Fixed addresses: the fixtures (and the tests that compare against them) depend on them.
KA_MAC = "02:00:00:00:a0:01"  # keepalived's side of the veth
PEER_MAC = "02:00:00:00:b0:01"  # the sniffer's side
KA_V4 = "192.0.2.1"
PEER_V4 = "192.0.2.2"
KA_V6 = "2001:db8::1"
PEER_V6 = "2001:db8::2"
VIPS_V4 = ("192.0.2.100", "192.0.2.101")
VIPS_V6 = ("2001:db8::100", "2001:db8::101")

SCENARIO_TIMEOUT = 25.0  # seconds to wait for keepalived to become master and advertise
ADVERTS_WANTED = 3
ANNOUNCEMENTS_WANTED = 2


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    instance: str  # the vrrp_instance body, {iface} substituted
    family: int  # 4 or 6
    vrid: int
    announcement: str | None  # "arp", "na" or None: also keep keepalived's ARP/NA frames


SCENARIOS = (
    Scenario(
        name="vrrp_v2_noauth",
        description="VRRPv2, no authentication, two IPv4 VIPs",
        instance="""\
            state MASTER
            interface {iface}
            virtual_router_id 51
            priority 150
            advert_int 1
            version 2
            virtual_ipaddress {{
                192.0.2.100/24
                192.0.2.101/24
            }}""",
        family=4,
        vrid=51,
        announcement="arp",
    ),
    Scenario(
        name="vrrp_v2_pass",
        description='VRRPv2, auth_type PASS, auth_pass "secret1", one IPv4 VIP',
        instance="""\
            state MASTER
            interface {iface}
            virtual_router_id 52
            priority 150
            advert_int 1
            version 2
            authentication {{
                auth_type PASS
                auth_pass secret1
            }}
            virtual_ipaddress {{
                192.0.2.100/24
            }}""",
        family=4,
        vrid=52,
        announcement=None,
    ),
    Scenario(
        name="vrrp_v3_ipv4",
        description="VRRPv3 over IPv4, two IPv4 VIPs",
        instance="""\
            state MASTER
            interface {iface}
            virtual_router_id 53
            priority 150
            advert_int 1
            version 3
            virtual_ipaddress {{
                192.0.2.100/24
                192.0.2.101/24
            }}""",
        family=4,
        vrid=53,
        announcement=None,
    ),
    Scenario(
        name="vrrp_v3_ipv6",
        description="VRRPv3 over IPv6 (an IPv6 VIP makes the instance IPv6), two IPv6 VIPs",
        instance="""\
            state MASTER
            interface {iface}
            virtual_router_id 54
            priority 150
            advert_int 1
            version 3
            virtual_ipaddress {{
                2001:db8::100/64
                2001:db8::101/64
            }}""",
        family=6,
        vrid=54,
        announcement="na",
    ),
)


# ---------------------------------------------------------------------------------------------
# the sniffer (runs inside the peer namespace)


def sniff(iface: str, seconds: float, out: Path) -> int:
    """Append every frame received on iface to out (one JSON line each) for at most seconds."""
    deadline = time.monotonic() + seconds
    stop = False

    def on_term(_sig: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    sock.settimeout(0.2)
    with out.open("w") as f:
        f.write(json.dumps({"ready": True}) + "\n")
        f.flush()
        while not stop and time.monotonic() < deadline:
            try:
                frame, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except InterruptedError:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            f.write(json.dumps({"t": time.monotonic(), "frame": frame.hex()}) + "\n")
            f.flush()
    sock.close()
    return 0


# ---------------------------------------------------------------------------------------------
# frame classification (deliberately independent of vrrp/packet.py and vrrp/arp.py: this script
# produces the fixtures those modules are tested against)


@dataclass(frozen=True)
class Captured:
    kind: str  # "vrrp", "arp", "na"
    frame: bytes
    src: str
    dst: str
    ttl: int | None  # None for ARP, which has no IP header
    payload: bytes  # the VRRP message or the ICMPv6 message; for ARP the ARP packet


def classify(frame: bytes) -> Captured | None:
    if len(frame) < 14:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype == ETH_P_ARP:
        arp = frame[14:42]
        sip = str(ipaddress.IPv4Address(arp[14:18]))
        tip = str(ipaddress.IPv4Address(arp[24:28]))
        return Captured("arp", frame, sip, tip, None, arp)
    if ethertype == ETH_P_IP and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        (total,) = struct.unpack_from("!H", frame, 16)
        if frame[23] != VRRP_PROTO:
            return None
        src = str(ipaddress.IPv4Address(frame[26:30]))
        dst = str(ipaddress.IPv4Address(frame[30:34]))
        payload = frame[14 + ihl : 14 + total]
        return Captured("vrrp", frame, src, dst, frame[22], payload)
    if ethertype == ETH_P_IPV6 and len(frame) >= 54:
        (plen,) = struct.unpack_from("!H", frame, 18)
        nxt, hlim = frame[20], frame[21]
        src = str(ipaddress.IPv6Address(frame[22:38]))
        dst = str(ipaddress.IPv6Address(frame[38:54]))
        payload = frame[54 : 54 + plen]
        if nxt == VRRP_PROTO:
            return Captured("vrrp", frame, src, dst, hlim, payload)
        if nxt == ICMPV6_PROTO and payload[:1] == bytes([ND_NEIGHBOR_ADVERT]):
            return Captured("na", frame, src, dst, hlim, payload)
    return None


# ---------------------------------------------------------------------------------------------
# the namespaces and keepalived


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


class Lab:
    """Two namespaces and a veth pair; `close()` deletes them (idempotent)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.ns_ka = f"pk-ka-{tag}"
        self.ns_peer = f"pk-cap-{tag}"
        self.if_ka = f"pkka{tag}"  # <= 15 characters (IFNAMSIZ)
        self.if_peer = f"pkcp{tag}"
        self.created: list[str] = []

    def setup(self) -> None:
        for ns in (self.ns_ka, self.ns_peer):
            run("ip", "netns", "add", ns)
            self.created.append(ns)
        run("ip", "link", "add", self.if_ka, "type", "veth", "peer", "name", self.if_peer)
        run("ip", "link", "set", self.if_ka, "netns", self.ns_ka)
        run("ip", "link", "set", self.if_peer, "netns", self.ns_peer)
        for ns, iface, mac, v4, v6 in (
            (self.ns_ka, self.if_ka, KA_MAC, KA_V4, KA_V6),
            (self.ns_peer, self.if_peer, PEER_MAC, PEER_V4, PEER_V6),
        ):
            nx = ("ip", "netns", "exec", ns)
            # No DAD: the link-local address (keepalived's IPv6 advert source) must be usable at
            # once, and DAD probes would only add noise to the capture.
            run(*nx, "sysctl", "-qw", f"net.ipv6.conf.{iface}.accept_dad=0")
            run(*nx, "ip", "link", "set", "lo", "up")
            run(*nx, "ip", "link", "set", iface, "address", mac)
            run(*nx, "ip", "addr", "add", f"{v4}/24", "dev", iface)
            run(*nx, "ip", "-6", "addr", "add", f"{v6}/64", "dev", iface, "nodad")
            run(*nx, "ip", "link", "set", iface, "up")

    def close(self) -> None:
        for ns in reversed(self.created):
            run("ip", "netns", "del", ns, check=False)
        self.created.clear()


def keepalived_config(scenario: Scenario, iface: str) -> str:
    body = textwrap.indent(textwrap.dedent(scenario.instance).format(iface=iface), "    ")
    return (
        "global_defs {\n"
        "    router_id pk_golden\n"
        "}\n"
        f"vrrp_instance VI_{scenario.vrid} {{\n{body}\n}}\n"
    )


def stop_child(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop a process this script started (by its pid), reaping it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def stop_pid(pid: int, timeout: float) -> None:
    """Stop a process that is not our child (a keepalived child named in its pid file)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def read_frames(path: Path) -> list[Captured]:
    out: list[Captured] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if "frame" in rec:
            c = classify(bytes.fromhex(rec["frame"]))
            if c is not None:
                out.append(c)
    return out


def wanted(scenario: Scenario, frames: list[Captured]) -> tuple[list[Captured], list[Captured]]:
    vips = VIPS_V4 if scenario.family == 4 else VIPS_V6
    adverts = [c for c in frames if c.kind == "vrrp" and c.payload[1:2] == bytes([scenario.vrid])]
    announcements = [c for c in frames if c.kind == scenario.announcement and c.src in vips]
    return adverts, announcements


def capture(scenario: Scenario, workdir: Path) -> dict[str, Any]:
    lab = Lab()
    procs: list[subprocess.Popen[bytes]] = []
    ka_pids: list[Path] = []
    sniff_out = workdir / f"{scenario.name}.frames"
    ka_log = workdir / f"{scenario.name}.keepalived.log"
    try:
        lab.setup()
        sniffer = subprocess.Popen(
            [
                "ip", "netns", "exec", lab.ns_peer, sys.executable, os.path.abspath(__file__),
                "--sniff", lab.if_peer, "--seconds", str(SCENARIO_TIMEOUT + 15),
                "--frames", str(sniff_out),
            ]
        )  # fmt: skip
        procs.append(sniffer)
        end = time.monotonic() + 10
        while time.monotonic() < end and not (
            sniff_out.exists() and sniff_out.read_text().startswith('{"ready"')
        ):
            time.sleep(0.05)
        if not sniff_out.exists():
            raise RuntimeError(f"{scenario.name}: the sniffer did not start")
        conf = workdir / f"{scenario.name}.conf"
        conf_text = keepalived_config(scenario, lab.if_ka)
        conf.write_text(conf_text)
        ka_pids = [workdir / f"{scenario.name}.{n}.pid" for n in ("main", "vrrp", "check")]
        with ka_log.open("wb") as log:
            ka = subprocess.Popen(
                [
                    "ip", "netns", "exec", lab.ns_ka, "keepalived", "-n", "-l", "-D",
                    "-f", str(conf), "-p", str(ka_pids[0]), "-r", str(ka_pids[1]),
                    "-c", str(ka_pids[2]),
                ],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(ka)
        end = time.monotonic() + SCENARIO_TIMEOUT
        while time.monotonic() < end:
            adverts, announcements = wanted(scenario, read_frames(sniff_out))
            enough_ann = scenario.announcement is None or len(announcements) >= ANNOUNCEMENTS_WANTED
            if len(adverts) >= ADVERTS_WANTED and enough_ann:
                break
            if ka.poll() is not None:
                break
            time.sleep(0.2)
        # keepalived sends a priority-0 advert when it stops as master (RFC 5798 §6.4.3):
        # keep sniffing until it has exited.
        stop_child(ka, 10.0)
        time.sleep(0.5)
        stop_child(sniffer, 5.0)
        adverts, announcements = wanted(scenario, read_frames(sniff_out))
        if len(adverts) < 1:
            raise RuntimeError(
                f"{scenario.name}: keepalived sent no advert; its log:\n{ka_log.read_text()}"
            )
        return {
            "scenario": scenario,
            "config": conf_text,
            "interface": lab.if_ka,
            "adverts": adverts,
            "announcements": announcements,
            "log": ka_log.read_text(errors="replace"),
        }
    finally:
        try:
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    stop_child(p, 5.0)
            # keepalived removes its pid files on a clean exit; a file left behind names a
            # child that may still run. Check /proc so a stale pid reused by another program
            # is spared.
            for pidfile in ka_pids:
                try:
                    pid = int(pidfile.read_text().strip())
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "keepalived":
                        stop_pid(pid, 5.0)
                except (OSError, ValueError):
                    pass
        finally:
            lab.close()


def fixture_record(
    name: str, description: str, c: Captured, result: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "producer": keepalived_version(),
        "kind": c.kind,
        "interface_mac": KA_MAC,
        "interface_ipv4": KA_V4,
        "interface_ipv6": KA_V6,
        "src": c.src,
        "dst": c.dst,
        "ttl": c.ttl,
        "frame_hex": c.frame.hex(),
        "payload_hex": c.payload.hex(),
        "keepalived_conf": result["config"].replace(result["interface"], "IFACE"),
    }


def keepalived_version() -> str:
    p = run("keepalived", "--version", check=False)
    text = (p.stdout + p.stderr).strip().splitlines()
    return text[0] if text else "keepalived (unknown version)"


def main_capture(out_dir: Path) -> int:
    if os.geteuid() != 0:
        print("needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    if shutil.which("keepalived") is None:
        print("keepalived is not installed (apt-get install keepalived)", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pk-golden-") as tmp:
        for scenario in SCENARIOS:
            print(f"capturing {scenario.name} ...", flush=True)
            result = capture(scenario, Path(tmp))
            adverts: list[Captured] = result["adverts"]
            live = [a for a in adverts if a.payload[2] != 0]
            resign = [a for a in adverts if a.payload[2] == 0]
            if not live:
                raise RuntimeError(f"{scenario.name}: no advert with a non-zero priority")
            # Adverts carry no sequence number, so every advert of one master is identical.
            distinct = {a.payload for a in live}
            if len(distinct) != 1:
                raise RuntimeError(f"{scenario.name}: adverts differ: {distinct}")
            records = [
                (scenario.name, scenario.description, live[0]),
            ]
            if resign:
                records.append(
                    (
                        f"{scenario.name}_priority0",
                        scenario.description + "; the priority-0 advert sent on shutdown",
                        resign[0],
                    )
                )
            if scenario.announcement is not None:
                anns: list[Captured] = result["announcements"]
                if not anns:
                    raise RuntimeError(f"{scenario.name}: no {scenario.announcement} captured")
                what = "gratuitous ARP" if scenario.announcement == "arp" else "unsolicited NA"
                first_vip = anns[0].src
                records.append(
                    (
                        "garp" if scenario.announcement == "arp" else "unsolicited_na",
                        f"keepalived's {what} for {first_vip} on becoming master "
                        f"({len(anns)} seen for the VIPs during the capture)",
                        anns[0],
                    )
                )
            for name, description, c in records:
                rec = fixture_record(name, description, c, result)
                rec["identical_frames_seen"] = sum(
                    1
                    for a in adverts + result["announcements"]
                    if a.kind == c.kind and a.payload == c.payload
                )
                path = out_dir / f"{name}.json"
                path.write_text(json.dumps(rec, indent=2) + "\n")
                written.append(str(path))
    for w in written:
        print("wrote", w)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parent.parent / "tests/fixtures/keepalived")
    )
    ap.add_argument("--sniff", metavar="IFACE", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    ap.add_argument("--frames", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sniff:
        return sniff(args.sniff, args.seconds, Path(args.frames))
    return main_capture(Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
