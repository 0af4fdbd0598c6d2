"""hacontrol's IPVS layer against the real kernel, with the real ipvsadm as the witness.

Runs only inside the VM (scripts/vm-pytest; tests/kernel/conftest.py skips it elsewhere and
gives each test a flushed init-namespace table). Traffic goes only to addresses on a dummy link
inside a namespace this test created (192.0.2.0/24, 198.51.100.0/24).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hacontrol.ipvs.listing import Layout, ListOptions, format_table
from hacontrol.ipvs.model import (
    ForwardingMethod,
    Protocol,
    RealServer,
    ServiceKey,
    Table,
    TunnelFlags,
    TunnelType,
    VirtualService,
)
from hacontrol.ipvs.netlink import (
    IPVS_CMD_ATTR_DEST,
    IPVS_CMD_ATTR_SERVICE,
    IPVS_CMD_GET_DEST,
    AsyncIpvs,
    IpvsError,
    IpvsNetlink,
    _decode_dest_fast,
    encode_service_key,
    nla_nested,
    parse_attrs,
)
from hacontrol.ipvs.plan import AddDest, AddService, DeleteDest, EditDest, plan
from hacontrol.ipvs.reconcile import Reconciler
from hacontrol.runtime.events import IpvsAvailability
from hacontrol.runtime.kernel import IpvsLink, IpvsTableConverger
from hacontrol.runtime.reconciler import Reconciler as RuntimeReconciler

if TYPE_CHECKING:
    from tests.kernel.conftest import Ipvsadm

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from ipvs_apply import Spread  # noqa: E402

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block in namespace ``name`` (this thread only); sockets made here stay there.

    For the test's own traffic sockets; hacontrol's IPVS socket takes ``netns=`` instead.
    """
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            yield
        finally:
            if _libc.setns(here, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(here)
        os.close(there)


def open_ipvs(netns: str | None = None) -> IpvsNetlink:
    return IpvsNetlink(netns=netns)


def v4(text: str) -> IPv4Address:
    return IPv4Address(text)


def v6(text: str) -> IPv6Address:
    return IPv6Address(text)


def rs(addr: str, port: int | None = None, **kw: object) -> RealServer:
    return RealServer(ipaddress.ip_address(addr), port, **kw)  # type: ignore[arg-type]


NAT = ForwardingMethod.NAT
DR = ForwardingMethod.DR
TUN = ForwardingMethod.TUN

# Every scheduler the Debian 6.1 kernel ships (twos arrived in 6.7) and every model feature.
FULL_TABLE = Table.of(
    [
        VirtualService(
            ServiceKey.of("tcp", "192.0.2.1", 80),
            scheduler="rr",
            real_servers=(
                rs(
                    "198.51.100.1",
                    8080,
                    forwarding=NAT,
                    weight=3,
                    upper_threshold=100,
                    lower_threshold=10,
                ),
                rs("198.51.100.2", forwarding=DR, weight=0),
                rs("198.51.100.3", forwarding=TUN, weight=65535),
            ),
        ),
        VirtualService(ServiceKey.of("tcp", "192.0.2.1", 81), scheduler="wrr"),
        VirtualService(ServiceKey.of("tcp", "192.0.2.1", 82), scheduler="lc"),
        VirtualService(
            ServiceKey.of("tcp", "192.0.2.1", 83), scheduler="wlc", persistence_timeout=360
        ),
        VirtualService(ServiceKey.of("tcp", "192.0.2.1", 84), scheduler="lblc"),
        VirtualService(ServiceKey.of("tcp", "192.0.2.1", 85), scheduler="lblcr"),
        VirtualService(ServiceKey.of("tcp", "192.0.2.1", 86), scheduler="dh"),
        VirtualService(ServiceKey.of("tcp", "192.0.2.1", 87), scheduler="sed"),
        VirtualService(ServiceKey.of("tcp", "192.0.2.1", 88), scheduler="nq"),
        VirtualService(ServiceKey.of("tcp", "192.0.2.1", 89), scheduler="fo"),
        VirtualService(ServiceKey.of("tcp", "192.0.2.1", 90), scheduler="ovf"),
        VirtualService(
            ServiceKey.of("udp", "192.0.2.1", 53),
            scheduler="sh",
            sched_flags=frozenset({"sh-fallback", "sh-port"}),
            one_packet=True,
            real_servers=(rs("198.51.100.4", 5353, forwarding=NAT, weight=2),),
        ),
        VirtualService(
            ServiceKey.of("udp", "192.0.2.2", 53),
            scheduler="mh",
            sched_flags=frozenset({"mh-port"}),
            persistence_timeout=60,
            persistence_netmask=v4("255.255.255.0"),
        ),
        VirtualService(
            ServiceKey.of("udp", "192.0.2.9", 5060),
            scheduler="rr",
            persistence_timeout=60,
            persistence_engine="sip",
        ),
        VirtualService(ServiceKey.of("sctp", "192.0.2.4", 5000), scheduler="lc"),
        VirtualService(
            ServiceKey.of_fwmark(7),
            scheduler="wrr",
            real_servers=(
                rs("198.51.100.9", forwarding=DR),
                rs("198.51.100.10", 8443, forwarding=NAT),
            ),
        ),
        VirtualService(
            ServiceKey.of_fwmark(8, socket.AF_INET6),
            scheduler="mh",
            sched_flags=frozenset({"mh-fallback"}),
            persistence_timeout=100,
            persistence_netmask=64,
            real_servers=(rs("2001:db8:1::8", forwarding=DR),),
        ),
        VirtualService(
            ServiceKey.of("tcp", "2001:db8::1", 80),
            scheduler="rr",
            persistence_timeout=30,
            persistence_netmask=64,
            real_servers=(
                rs("2001:db8::2", 8080, forwarding=NAT, weight=5),
                rs("2001:db8::3", forwarding=DR),
                rs("198.51.100.5", forwarding=TUN),
                rs("198.51.100.6", forwarding=TUN, tunnel_type=TunnelType.GUE, tunnel_port=6080),
                rs(
                    "198.51.100.7",
                    forwarding=TUN,
                    tunnel_type=TunnelType.GUE,
                    tunnel_port=6081,
                    tunnel_flags=TunnelFlags.CSUM,
                ),
                rs(
                    "198.51.100.8",
                    forwarding=TUN,
                    tunnel_type=TunnelType.GUE,
                    tunnel_port=6082,
                    tunnel_flags=TunnelFlags.REMCSUM,
                ),
                rs(
                    "198.51.100.11",
                    forwarding=TUN,
                    tunnel_type=TunnelType.GRE,
                    tunnel_flags=TunnelFlags.CSUM,
                ),
                rs("198.51.100.12", forwarding=TUN, tunnel_type=TunnelType.GRE),
            ),
        ),
        VirtualService(
            ServiceKey.of("udp", "2001:db8::1", 53),
            scheduler="sh",
            sched_flags=frozenset({"sh-port"}),
        ),
    ]
).check()


def dest_line(endpoint: str, forward: str, weight: int) -> str:
    """The start of an ipvsadm -Ln real-server line ("  -> %-28s %-7s %-6d")."""
    return f"  -> {endpoint:<28} {forward:<7} {weight:<6}"


def wait_conns(nl: IpvsNetlink, key: ServiceKey, count: int, timeout: float = 15.0) -> None:
    """Wait for the service's Conns counter: the kernel folds its per-CPU counters into the
    dumped totals only in the rate estimator, every 2 s (ip_vs_est.c)."""
    deadline = time.monotonic() + timeout
    while True:
        conns = nl.dump().service_stats[key].conns
        if conns >= count or time.monotonic() > deadline:
            assert conns == count, f"{key}: {conns} connections counted, expected {count}"
            return
        time.sleep(0.5)


def parse_ipvsadm_save(text: str) -> Table:
    """An independent reading of ``ipvsadm -Sn`` into the model, to compare field by field."""
    services: dict[ServiceKey, dict[str, object]] = {}
    order: list[ServiceKey] = []

    def key_of(opt: str, value: str, six: bool) -> ServiceKey:
        if opt == "-f":
            return ServiceKey.of_fwmark(int(value), socket.AF_INET6 if six else socket.AF_INET)
        host, _, port = value.rpartition(":")
        proto = {"-t": Protocol.TCP, "-u": Protocol.UDP, "--sctp-service": Protocol.SCTP}[opt]
        return ServiceKey.of(proto, host.strip("[]"), int(port))

    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        cmd, opt, value = words[0], words[1], words[2]
        rest = words[3:]
        six = "-6" in rest
        key = key_of(opt, value, six)
        args: dict[str, str | None] = {}
        i = 0
        while i < len(rest):
            w = rest[i]
            if i + 1 < len(rest) and not rest[i + 1].startswith("-"):
                args[w] = rest[i + 1]
                i += 2
            else:
                args[w] = None
                i += 1
        if cmd == "-A":
            mask = args.get("-M")
            netmask: IPv4Address | int | None = None
            if mask is not None:
                netmask = int(mask) if mask.isdigit() else v4(mask)
            services[key] = {
                "svc": VirtualService(
                    key,
                    scheduler=str(args["-s"]),
                    sched_flags=frozenset((args.get("-b") or "").split(",")) - {""},
                    one_packet="-o" in args,
                    persistence_timeout=int(args["-p"] or 300) if "-p" in args else None,
                    persistence_netmask=netmask,
                    persistence_engine=args.get("--pe"),
                ),
                "servers": [],
            }
            order.append(key)
        else:
            addr = str(args["-r"])
            host, _, port = addr.rpartition(":")
            fwd = NAT if "-m" in args else TUN if "-i" in args else DR
            tun_type = TunnelType[str(args.get("--tun-type") or "ipip").upper()]
            flags = TunnelFlags(0)
            if "--tun-csum" in args:
                flags = TunnelFlags.CSUM
            if "--tun-remcsum" in args:
                flags = TunnelFlags.REMCSUM
            servers = services[key]["servers"]
            assert isinstance(servers, list)
            servers.append(
                RealServer(
                    ipaddress.ip_address(host.strip("[]")),
                    int(port),
                    forwarding=fwd,
                    weight=int(args.get("-w") or 1),
                    upper_threshold=int(args.get("-x") or 0),
                    lower_threshold=int(args.get("-y") or 0),
                    tunnel_type=tun_type if fwd == TUN else TunnelType.IPIP,
                    tunnel_port=int(args.get("--tun-port") or 0),
                    tunnel_flags=flags,
                )
            )
    out = []
    for key in order:
        svc = services[key]["svc"]
        servers = services[key]["servers"]
        assert isinstance(svc, VirtualService) and isinstance(servers, list)
        out.append(replace(svc, real_servers=tuple(servers)))
    return Table.of(out)


def ipvsadm_threshold_fields(text: str) -> dict[str, tuple[int, int]]:
    out = {}
    for line in text.splitlines():
        if line.startswith("  -> ") and "RemoteAddress" not in line:
            w = line.split()
            out[w[1]] = (int(w[2]), int(w[3]))
    return out


def test_every_feature_applied_reads_back_identically(ipvsadm: Ipvsadm) -> None:
    with IpvsNetlink() as nl:
        result = nl.apply(plan(FULL_TABLE, Table(), owned=()))
        assert result.ok, [str(f.error) for f in result.failures]
        assert result.writes == len(FULL_TABLE) + FULL_TABLE.real_server_count
        snap = nl.dump()
        info = nl.info()

    # The witness: ipvsadm's own save format, parsed independently, field by field.
    witnessed = parse_ipvsadm_save(ipvsadm("-Sn"))
    assert set(witnessed.keys()) == set(FULL_TABLE.keys())
    for want in FULL_TABLE:
        got = witnessed.get(want.key)
        assert got is not None
        assert got.scheduler == want.scheduler, want.key
        assert got.sched_flags == want.sched_flags, want.key
        assert got.one_packet == want.one_packet, want.key
        assert got.persistence_timeout == want.persistence_timeout, want.key
        assert got.persistence_netmask == want.persistence_netmask, want.key
        assert got.persistence_engine == want.persistence_engine, want.key
        assert set(got.servers_by_key) == set(want.servers_by_key), want.key
        for dkey, wrs in want.servers_by_key.items():
            grs = got.servers_by_key[dkey]
            assert grs.forwarding == wrs.forwarding, (want.key, dkey)
            assert grs.weight == wrs.weight, (want.key, dkey)
            assert grs.tunnel_type == wrs.tunnel_type, (want.key, dkey)
            assert grs.tunnel_port == wrs.tunnel_port, (want.key, dkey)
            assert grs.tunnel_flags == wrs.tunnel_flags, (want.key, dkey)
    # -S does not carry thresholds; --thresholds does.
    thresholds = ipvsadm_threshold_fields(ipvsadm("-Ln", "--thresholds"))
    assert thresholds["198.51.100.1:8080"] == (100, 10)
    assert thresholds["198.51.100.2:80"] == (0, 0)

    # The kernel writes real servers in the layout the one-unpack decoder expects.
    with IpvsNetlink() as nl:
        key_attr = nla_nested(
            IPVS_CMD_ATTR_SERVICE, encode_service_key(ServiceKey.of("tcp", "2001:db8::1", 80))
        )
        for payload in nl._dump(IPVS_CMD_GET_DEST, key_attr, "test"):
            raw = parse_attrs(payload)[IPVS_CMD_ATTR_DEST]
            assert _decode_dest_fast(raw, socket.AF_INET6, True) is not None

    # Our own dump decodes to exactly the desired table: the next plan is empty.
    assert snap.table == FULL_TABLE
    assert plan(FULL_TABLE, snap.table, owned=FULL_TABLE.keys()) == []

    # Our listing is ipvsadm's listing, byte for byte, in every layout.
    for layout, flags in [
        (Layout.DEFAULT, []),
        (Layout.STATS, ["--stats"]),
        (Layout.RATE, ["--rate"]),
        (Layout.THRESHOLDS, ["--thresholds"]),
        (Layout.PERSISTENT_CONN, ["--persistent-conn"]),
        (Layout.TUN_INFO, ["--tun-info"]),
    ]:
        ours = format_table(snap, info, ListOptions(layout=layout))
        theirs = ipvsadm("-Ln", *flags)
        assert ours == theirs, f"{layout}\n--- ours\n{ours}--- ipvsadm\n{theirs}"
    assert format_table(snap, info, ListOptions(layout=Layout.STATS, exact=True)) == ipvsadm(
        "-Ln", "--stats", "--exact"
    )
    one = ServiceKey.of("tcp", "192.0.2.1", 80)
    assert format_table(snap, info, ListOptions(service=one)) == ipvsadm(
        "-Ln", "-t", "192.0.2.1:80"
    )


def test_cli_list_is_ipvsadm_list(ipvsadm: Ipvsadm) -> None:
    with IpvsNetlink() as nl:
        assert nl.apply(plan(FULL_TABLE, Table(), owned=())).ok

    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "hacontrol.cli", "ipvs", "list", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout

    assert cli() == ipvsadm("-Ln")
    assert cli("--stats") == ipvsadm("-Ln", "--stats")
    assert cli("--persistent-conn") == ipvsadm("-Ln", "--persistent-conn")
    assert cli("-t", "192.0.2.1:80") == ipvsadm("-Ln", "-t", "192.0.2.1:80")
    import json

    data = json.loads(cli("--json"))
    assert len(data["services"]) == len(FULL_TABLE)
    first = next(s for s in data["services"] if s["address"] == "192.0.2.1" and s["port"] == 80)
    assert [r["weight"] for r in first["real_servers"]] == [3, 0, 65535]
    assert "conns" in first["stats"] and "cps" in first["stats"]["rate"]


def test_per_object_errors_are_reported_and_the_rest_applies(ipvsadm: Ipvsadm) -> None:
    good = VirtualService(
        ServiceKey.of("tcp", "192.0.2.20", 80),
        scheduler="rr",
        real_servers=(rs("198.51.100.20", forwarding=DR, weight=4),),
    )
    # No kernel module "ip_vs_nosuch" exists (and twos is newer than this kernel): ENOENT.
    bad_sched = VirtualService(
        ServiceKey.of("tcp", "192.0.2.21", 80),
        scheduler="nosuch",
        real_servers=(rs("198.51.100.21", forwarding=DR),),
    )
    after = VirtualService(ServiceKey.of("udp", "192.0.2.22", 53), scheduler="wlc")
    ops = plan(Table.of([good, bad_sched, after]), Table(), owned=())
    # Also a duplicate add and an edit of a server that does not exist.
    ops.append(AddDest(good, good.real_servers[0]))
    ops.append(EditDest(good, rs("198.51.100.99", 80, forwarding=DR), rs("198.51.100.99", 80)))
    with IpvsNetlink() as nl:
        result = nl.apply(ops)
    assert result.writes == len(ops)
    failed = {str(f.op): f.error for f in result.failures}
    assert set(failed) == {
        "add service TCP 192.0.2.21:80",
        "add real server 198.51.100.21:80 to service TCP 192.0.2.21:80",
        "add real server 198.51.100.20:80 to service TCP 192.0.2.20:80",
        "edit real server 198.51.100.99:80 of service TCP 192.0.2.20:80",
    }
    sched_err = failed["add service TCP 192.0.2.21:80"]
    assert sched_err.errno == errno.ENOENT
    assert "scheduler 'nosuch' not found" in str(sched_err)
    assert "TCP 192.0.2.21:80" in str(sched_err)
    assert failed["add real server 198.51.100.21:80 to service TCP 192.0.2.21:80"].errno == (
        errno.ESRCH
    )
    assert failed["add real server 198.51.100.20:80 to service TCP 192.0.2.20:80"].errno == (
        errno.EEXIST
    )
    assert failed["edit real server 198.51.100.99:80 of service TCP 192.0.2.20:80"].errno == (
        errno.ENOENT
    )
    listing = ipvsadm("-Ln")
    assert "TCP  192.0.2.20:80 rr" in listing
    assert dest_line("198.51.100.20:80", "Route", 4) in listing
    assert "UDP  192.0.2.22:53 wlc" in listing
    assert "192.0.2.21" not in listing

    # The same with one ack per request: the same verdicts.
    ipvsadm("-C")
    with IpvsNetlink(ack_each=True) as nl:
        result2 = nl.apply(ops)
    assert {str(f.op) for f in result2.failures} == set(failed)


def test_pipelined_batches_with_many_ops(ipvsadm: Ipvsadm) -> None:
    # Small batches force many sendmsg/ack rounds; a failure in the middle of a batch.
    services = [
        VirtualService(
            ServiceKey.of("tcp", f"192.0.2.{i // 200 + 1}", 1000 + i % 200),
            scheduler="nosuch" if i == 77 else "rr",
            real_servers=tuple(rs(f"198.51.100.{j}", forwarding=DR) for j in range(1, 4)),
        )
        for i in range(300)
    ]
    table = Table.of(services)
    with IpvsNetlink(batch_bytes=4096) as nl:
        result = nl.apply(plan(table, Table(), owned=()))
        assert result.writes == 1200
        assert len(result.failures) == 4  # the service and its three servers
        snap = nl.dump()
    assert len(snap.table) == 299
    assert snap.table.real_server_count == 897
    assert ipvsadm("-Ln").count("\n  -> 198.51.100.") == 897


# --- network namespaces ------------------------------------------------------------------------


def this_threads_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


async def test_netns_socket_programs_that_namespace_only(
    netns: Callable[[str], str], ipvsadm: Ipvsadm
) -> None:
    ns = netns("nsq")
    home = this_threads_netns()
    key = ServiceKey.of("tcp", "192.0.2.40", 80)
    table = Table.of([VirtualService(key, scheduler="rr", real_servers=(rs("198.51.100.41"),))])
    with IpvsNetlink(netns=ns) as nl:
        # The socket was made in the namespace by another thread; this one never moved.
        assert this_threads_netns() == home
        assert nl.apply(plan(table, Table(), owned=())).ok
        assert nl.dump().table == table
    assert "TCP  192.0.2.40:80 rr" in ipvsadm("-Ln", netns=ns)
    assert "192.0.2.40" not in ipvsadm("-Ln")
    # The asyncio face: opened and used from the pool's threads, still bound to the namespace.
    kernel = await AsyncIpvs.open(netns=ns)
    try:
        assert (await kernel.dump()) == table
        assert this_threads_netns() == home
        assert (await asyncio.to_thread(this_threads_netns)) == home
    finally:
        kernel.close()
    with IpvsNetlink() as here:
        assert key not in here.dump().table


def test_unknown_netns_is_an_error_naming_it() -> None:
    with pytest.raises(IpvsError) as err:
        IpvsNetlink(netns="vm-no-such-netns")
    assert err.value.errno == errno.ENOENT
    assert str(err.value) == "network namespace 'vm-no-such-netns': does not exist (ENOENT)"


# --- traffic: counters and connection entries survive in-place edits ---------------------------


@pytest.fixture
def lab(netns: Callable[[str], str], sh: Callable[..., str]) -> str:
    """A namespace with a dummy link holding 192.0.2.254/24 and 198.51.100.254/24."""
    name = netns("ipv")
    link = "ipvd0"
    sh(["ip", "link", "add", link, "type", "dummy"], netns=name)
    sh(["ip", "addr", "add", "192.0.2.254/24", "dev", link], netns=name)
    sh(["ip", "addr", "add", "198.51.100.254/24", "dev", link], netns=name)
    sh(["ip", "link", "set", link, "up"], netns=name)
    return name


def send_udp(netns: str, dst: str, port: int, count: int) -> None:
    """``count`` datagrams from distinct source ports to dst:port, from inside ``netns``."""
    with in_netns(netns):
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for s in socks:
            s.sendto(b"hacontrol-ipv", (dst, port))
    finally:
        for s in socks:
            s.close()


def conn_entries(netns: str, sh: Callable[..., str]) -> set[tuple[str, ...]]:
    """Connection entries by identity (protocol, client, virtual, destination): the state and
    the expiry countdown change by themselves, the identity only if the entry is re-created."""
    text = sh(["cat", "/proc/net/ip_vs_conn"], netns=netns)
    return {tuple(line.split()[:7]) for line in text.splitlines()[1:] if line.strip()}


def test_edit_keeps_service_counters_and_connections(
    lab: str, sh: Callable[..., str], ipvsadm: Ipvsadm
) -> None:
    key = ServiceKey.of("udp", "192.0.2.10", 5000)
    servers = (rs("198.51.100.1", forwarding=DR), rs("198.51.100.2", forwarding=DR))
    table = Table.of([VirtualService(key, scheduler="rr", real_servers=servers)])
    nl = open_ipvs(lab)
    try:
        assert nl.apply(plan(table, Table(), owned=())).ok
        send_udp(lab, "192.0.2.10", 5000, 10)
        wait_conns(nl, key, 10)
        before = nl.dump()
        assert before.service_stats[key].conns == 10
        entries = conn_entries(lab, sh)
        assert len(entries) == 10

        # One weight change: exactly one kernel write, an edit.
        changed = Table.of(
            [
                VirtualService(
                    key,
                    scheduler="rr",
                    real_servers=(servers[0], rs("198.51.100.2", forwarding=DR, weight=7)),
                )
            ]
        )
        ops = plan(changed, before.table, owned=())
        assert [type(o).__name__ for o in ops] == ["EditDest"]
        assert nl.apply(ops).writes == 1
        # A scheduler + persistence change: one service edit.
        changed2 = Table.of(
            [
                VirtualService(
                    key,
                    scheduler="wlc",
                    persistence_timeout=120,
                    real_servers=changed.services[0].real_servers,
                )
            ]
        )
        ops2 = plan(changed2, nl.dump().table, owned=())
        assert [type(o).__name__ for o in ops2] == ["EditService"]
        assert nl.apply(ops2).ok
        after = nl.dump()
        # Same service object: its counters and every connection entry are still there.
        assert after.service_stats[key].conns == 10
        assert after.service_stats[key].inpkts >= 10
        assert sum(c.stats.conns for k, c in after.dest_counters.items() if k[0] == key) == 10
        assert conn_entries(lab, sh) == entries
        listing = ipvsadm("-Ln", netns=lab)
        assert "UDP  192.0.2.10:5000 wlc persistent 120" in listing
        assert dest_line("198.51.100.2:5000", "Route", 7) in listing
        stats = ipvsadm("-Ln", "--stats", "--exact", netns=lab)
        assert stats.splitlines()[3].split()[2] == "10"  # service Conns column
    finally:
        nl.close()


async def test_reconciler_adopts_existing_table_without_flush(
    lab: str, sh: Callable[..., str], ipvsadm: Ipvsadm
) -> None:
    # A table made by hand before the daemon starts, with live connections.
    ipvsadm("-A", "-u", "192.0.2.10:5000", "-s", "rr", netns=lab)
    ipvsadm("-a", "-u", "192.0.2.10:5000", "-r", "198.51.100.1", "-g", "-w", "1", netns=lab)
    ipvsadm("-a", "-u", "192.0.2.10:5000", "-r", "198.51.100.2", "-g", "-w", "1", netns=lab)
    ipvsadm("-A", "-t", "192.0.2.99:22", "-s", "wlc", netns=lab)  # someone else's
    send_udp(lab, "192.0.2.10", 5000, 6)
    entries = conn_entries(lab, sh)
    assert len(entries) == 6

    key = ServiceKey.of("udp", "192.0.2.10", 5000)
    desired = Table.of(
        [
            VirtualService(
                key,
                scheduler="rr",
                real_servers=(
                    rs("198.51.100.1", forwarding=DR, weight=1),
                    rs("198.51.100.2", forwarding=DR, weight=3),
                ),
            )
        ]
    )
    kernel = await AsyncIpvs.open(netns=lab)
    rec = Reconciler(kernel, desired)
    try:
        first = await rec.reconcile_once()
        assert first.ok
        assert [str(o) for o in first.ops] == [
            "edit real server 198.51.100.2:5000 of service UDP 192.0.2.10:5000"
        ]
        assert conn_entries(lab, sh) == entries  # adopted: nothing dropped
        await asyncio.to_thread(wait_conns, kernel.sync, key, 6)
        listing = ipvsadm("-Ln", netns=lab)
        assert "TCP  192.0.2.99:22 wlc" in listing  # not ours: untouched
        again = await rec.reconcile_once()
        assert again.ops == ()
    finally:
        kernel.close()


async def test_reconciler_repairs_drift(ipvsadm: Ipvsadm) -> None:
    """The daemon's runtime reconciler (hacontrol/runtime) with its IPVS table converger on
    the real kernel: drift made by hand is repaired and counted as repairs."""
    key = ServiceKey.of("tcp", "192.0.2.30", 443)
    desired = Table.of(
        [
            VirtualService(
                key,
                scheduler="wrr",
                persistence_timeout=300,
                real_servers=(
                    rs("198.51.100.31", forwarding=DR, weight=5),
                    rs("198.51.100.32", forwarding=DR, weight=5),
                ),
            ),
            VirtualService(
                ServiceKey.of("udp", "192.0.2.30", 53),
                scheduler="rr",
                real_servers=(rs("198.51.100.33", 53, forwarding=NAT),),
            ),
        ]
    )
    published: list[object] = []
    link = IpvsLink(published.append, modprobe=None)
    table = IpvsTableConverger(link, desired)
    rec = RuntimeReconciler([table], interval=3600)
    try:
        (first,) = await rec.run_due()
        assert first.ok and first.writes == 5 and first.repairs == 0
        assert published[0] == IpvsAvailability(True, "")
        # Drift made by hand: a server deleted, a weight changed, a service deleted, a stranger.
        ipvsadm("-d", "-t", "192.0.2.30:443", "-r", "198.51.100.31")
        ipvsadm("-e", "-t", "192.0.2.30:443", "-r", "198.51.100.32", "-g", "-w", "1")
        ipvsadm("-D", "-u", "192.0.2.30:53")
        ipvsadm("-a", "-t", "192.0.2.30:443", "-r", "198.51.100.39", "-g")
        rec.trigger()
        (repair,) = await rec.run_due()
        assert repair.ok and repair.repairs == 5
        assert sorted(d.split(" ")[0] + " " + d.split(" ")[1] for d in repair.detail) == [
            "add real",
            "add real",
            "add service",
            "delete real",
            "edit real",
        ]
        assert (await (await link.get()).dump()) == desired
        listing = ipvsadm("-Ln")
        assert "198.51.100.39" not in listing
        assert dest_line("198.51.100.31:443", "Route", 5) in listing

        # A new desired table: a removed service is deleted (it was ours), the other edited.
        smaller = Table.of(
            [
                VirtualService(
                    key,
                    scheduler="rr",
                    persistence_timeout=300,
                    real_servers=desired.services[0].real_servers,
                )
            ]
        )
        table.set_desired(smaller)
        rec.trigger()
        (third,) = await rec.run_due()
        assert third.ok and third.writes == 2 and third.repairs == 0
        assert (await (await link.get()).dump()) == smaller
    finally:
        await rec.stop()
        link.close()
    # Stopping the reconciler leaves the table in place (no flush on exit).
    assert "TCP  192.0.2.30:443 rr persistent 300" in ipvsadm("-Ln")


async def test_steady_passes_reuse_the_dump_and_still_repair_every_drift(
    lab: str, ipvsadm: Ipvsadm
) -> None:
    """A pass with nothing to do gets the very table object of the previous dump (no decoding,
    no comparing: DumpDecoder, PlanMemo), even while traffic moves the counters; any change
    made by hand is still repaired by the very next pass."""
    udp = ServiceKey.of("udp", "192.0.2.10", 5000)
    tcp = ServiceKey.of("tcp", "192.0.2.10", 80)
    desired = Table.of(
        [
            VirtualService(
                udp,
                scheduler="rr",
                real_servers=(
                    rs("198.51.100.1", forwarding=DR, weight=2),
                    rs("198.51.100.2", forwarding=DR, weight=2),
                ),
            ),
            VirtualService(
                tcp,
                scheduler="wlc",
                real_servers=(rs("198.51.100.3", forwarding=DR, weight=1, upper_threshold=50),),
            ),
        ]
    )
    kernel = await AsyncIpvs.open(netns=lab)
    rec = Reconciler(kernel, desired)
    try:
        first = await rec.reconcile_once()
        assert first.ok and len(first.ops) == 5
        before = (await kernel.snapshot()).table
        send_udp(lab, "192.0.2.10", 5000, 4)  # counters move: not drift
        await asyncio.to_thread(wait_conns, kernel.sync, udp, 4)
        snap = await kernel.snapshot()
        assert snap.table is before
        assert sum(c.inact_conns + c.active_conns for c in snap.dest_counters.values()) == 4
        assert (await rec.reconcile_once()).ops == ()

        drifts: list[tuple[tuple[str, ...], list[str]]] = [
            (
                ("-e", "-u", "192.0.2.10:5000", "-r", "198.51.100.1", "-g", "-w", "9"),
                ["edit real server 198.51.100.1:5000 of service UDP 192.0.2.10:5000"],
            ),
            (
                ("-e", "-t", "192.0.2.10:80", "-r", "198.51.100.3", "-g", "-x", "7"),
                ["edit real server 198.51.100.3:80 of service TCP 192.0.2.10:80"],
            ),
            (
                ("-d", "-u", "192.0.2.10:5000", "-r", "198.51.100.2"),
                ["add real server 198.51.100.2:5000 to service UDP 192.0.2.10:5000"],
            ),
            (
                ("-E", "-t", "192.0.2.10:80", "-s", "rr"),
                ["edit service TCP 192.0.2.10:80"],
            ),
            (
                ("-D", "-t", "192.0.2.10:80"),
                [
                    "add service TCP 192.0.2.10:80",
                    "add real server 198.51.100.3:80 to service TCP 192.0.2.10:80",
                ],
            ),
            (("-C",), [str(op) for op in first.ops]),
        ]
        for command, repairs in drifts:
            ipvsadm(*command, netns=lab)
            repair = await rec.reconcile_once()
            assert repair.ok, command
            assert [str(op) for op in repair.ops] == repairs, command
            assert (await rec.reconcile_once()).ops == (), command
            assert (await kernel.dump()) == desired
    finally:
        kernel.close()


async def test_a_spread_table_repairs_every_drift_within_two_passes(ipvsadm: Ipvsadm) -> None:
    """Above ``spread_above`` services a pass asks the kernel for the real servers of half of
    them (netlink.DumpDecoder.carry). Drift made by hand in any service is still repaired
    within two passes, by exactly the one write it needs; our own writes are read back by the
    next pass, so nothing is ever written twice; a pass with nothing to do writes nothing."""
    services = [
        VirtualService(
            ServiceKey.of("tcp", "192.0.2.40", 8000 + i),
            scheduler="wrr",
            real_servers=(
                rs("198.51.100.41", forwarding=DR, weight=2),
                rs("198.51.100.42", forwarding=DR, weight=2),
            ),
        )
        for i in range(6)
    ]
    desired = Table.of(services)
    kernel = AsyncIpvs(IpvsNetlink(spread_above=3))
    decoder = kernel.sync._decoder
    # The daemon's dumps while nothing drains (hacontrol/lvs.py), as the benchmark takes them.
    rec = Reconciler(Spread(kernel), desired)
    try:
        first = await rec.reconcile_once()
        assert first.ok and len(first.ops) == 6 + 12
        assert (await rec.reconcile_once()).ops == ()
        assert decoder.servers_read == 6  # all new: nothing read before to carry
        for _ in range(3):
            assert (await rec.reconcile_once()).ops == ()
            assert decoder.servers_read == 3  # half the table asked for
        # Drift by hand, in each service in turn (whichever half it falls in).
        for svc in services:
            port = svc.key.port
            ipvsadm("-e", "-t", f"192.0.2.40:{port}", "-r", "198.51.100.41", "-g", "-w", "9")
            ops = [str(op) for _ in range(2) for op in (await rec.reconcile_once()).ops]
            edit = f"edit real server 198.51.100.41:{port} of service TCP 192.0.2.40:{port}"
            assert ops == [edit]
            assert (await rec.reconcile_once()).ops == ()
        ipvsadm("-d", "-t", "192.0.2.40:8003", "-r", "198.51.100.42")
        ipvsadm("-a", "-t", "192.0.2.40:8004", "-r", "198.51.100.49", "-g")
        ops = [str(op) for _ in range(2) for op in (await rec.reconcile_once()).ops]
        assert sorted(ops) == [
            "add real server 198.51.100.42:8003 to service TCP 192.0.2.40:8003",
            "delete real server 198.51.100.49:8004 of service TCP 192.0.2.40:8004",
        ]
        # A service's own settings are read by every pass: repaired by the next one.
        ipvsadm("-E", "-t", "192.0.2.40:8005", "-s", "rr")
        assert [str(op) for op in (await rec.reconcile_once()).ops] == [
            "edit service TCP 192.0.2.40:8005"
        ]
        # Our own changes, one service at a time: one write each, never repeated by a pass
        # that would otherwise have carried the real servers it read before the write.
        for i, svc in enumerate(services):
            heavier = replace(svc.real_servers[1], weight=5 + i)
            services[i] = replace(svc, real_servers=(svc.real_servers[0], heavier))
            rec.set_desired(Table.of(services))
            (op,) = (await rec.reconcile_once()).ops
            assert isinstance(op, EditDest) and op.service.key == svc.key
            for _ in range(2):
                assert (await rec.reconcile_once()).ops == ()
        assert (await kernel.dump()) == Table.of(services)
    finally:
        kernel.close()


async def test_reconciler_retries_failed_ops(ipvsadm: Ipvsadm) -> None:
    # A server whose service cannot be created keeps failing; the rest is in place; once the
    # desired scheduler is fixed, the next pass creates both.
    bad = VirtualService(
        ServiceKey.of("tcp", "192.0.2.40", 80),
        scheduler="nosuch",
        real_servers=(rs("198.51.100.41", forwarding=DR),),
    )
    good = VirtualService(ServiceKey.of("tcp", "192.0.2.40", 81), scheduler="rr")
    kernel = await AsyncIpvs.open()
    rec = Reconciler(kernel, Table.of([bad, good]))
    try:
        p1 = await rec.reconcile_once()
        assert len(p1.failures) == 2 and not p1.ok
        p2 = await rec.reconcile_once()
        assert len(p2.failures) == 2  # retried, same verdict
        assert rec.counters.failures_by_errno == {"ENOENT": 2, "ESRCH": 2}
        fixed = VirtualService(bad.key, scheduler="sh", real_servers=bad.real_servers)
        rec.set_desired(Table.of([fixed, good]))
        p3 = await rec.reconcile_once()
        assert p3.ok and len(p3.ops) == 2
        assert "TCP  192.0.2.40:80 sh" in ipvsadm("-Ln")
    finally:
        kernel.close()


def test_zero_and_explicit_flush(lab: str, ipvsadm: Ipvsadm) -> None:
    key = ServiceKey.of("udp", "192.0.2.10", 6000)
    other = ServiceKey.of("udp", "192.0.2.10", 6001)
    table = Table.of(
        [
            VirtualService(k, scheduler="rr", real_servers=(rs("198.51.100.1", forwarding=DR),))
            for k in (key, other)
        ]
    )
    nl = open_ipvs(lab)
    try:
        assert nl.apply(plan(table, Table(), owned=())).ok
        send_udp(lab, "192.0.2.10", 6000, 3)
        send_udp(lab, "192.0.2.10", 6001, 2)
        wait_conns(nl, key, 3)
        wait_conns(nl, other, 2)
        nl.zero(key)
        snap = nl.dump()
        assert snap.service_stats[key].conns == 0
        assert snap.service_stats[other].conns == 2
        nl.zero()
        assert nl.dump().service_stats[other].conns == 0
        nl.flush()
        assert len(nl.dump().table) == 0
        assert ipvsadm("-Ln", netns=lab).count("\n") == 3  # headers only
    finally:
        nl.close()


def test_mixed_family_tunnel_refused_while_sync_daemon_runs(ipvsadm: Ipvsadm) -> None:
    # The kernel mixes families only for tunnels and only without a sync daemon (ip_vs_ctl.c):
    # the model documents it; here the kernel says so itself.
    svc = VirtualService(ServiceKey.of("tcp", "2001:db8::50", 80), scheduler="rr")
    dest = rs("198.51.100.50", forwarding=TUN)
    ipvsadm("--start-daemon", "master", "--mcast-interface", "lo", "--syncid", "9")
    try:
        with IpvsNetlink() as nl:
            result = nl.apply([AddService(svc), AddDest(svc, dest)])
        assert [f.error.errno for f in result.failures] == [errno.EINVAL]
    finally:
        ipvsadm("--stop-daemon", "master")
    with IpvsNetlink() as nl:
        assert nl.apply([AddDest(svc, dest)]).ok
        assert nl.apply([DeleteDest(svc, dest)]).ok


def test_info_reports_version_and_table_size() -> None:
    with IpvsNetlink() as nl:
        assert nl.family_id > 0x10  # dynamic genetlink ids start after GENL_ID_CTRL
        info = nl.info()
    assert info.version == "1.2.1"
    assert info.conn_tab_size == 4096  # Debian's CONFIG_IP_VS_TAB_BITS=12
