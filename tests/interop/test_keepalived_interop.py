"""hacontrol against the real keepalived (Debian 2.2.7) on one link, in network namespaces.

Topology, shared by the whole module: a bridge in its own namespace; namespace "ha" runs
hacontrol (192.0.2.1, 2001:db8::1), namespace "ka" runs keepalived (192.0.2.2, 2001:db8::2),
and namespace "w" only watches (an AF_PACKET witness with kernel timestamps). Each test
uses its own VRID and stops its daemons and removes the VIP in its finalizer, so sharing the
namespaces is safe.

What is checked, for VRRPv2 without and with PASS authentication, VRRPv3 over IPv4 and over
IPv6, each with either implementation as the first master:
- election: the higher priority owns the VIP, and "never two masters once converged": the
  VIP is sampled on both sides over a window and exactly one holds it every time, while the
  witness sees adverts from one source only;
- kill -9 of the master: the other takes over one Master_Down_Interval (RFC 5798 §6.1)
  after the last advert it heard, sends its first advert, then its GARP / NA burst;
- restart of the killed one: it preempts back, and the other lets go;
- SIGTERM of the master: priority-0 advert, the other takes over after Skew_Time only;
- a wrong password: the two cannot hear each other and both become master (the documented
  outcome of that misconfiguration); hacontrol counts the drops as bad_auth;
- equal priorities: hacontrol, started second with the higher address, stays backup behind
  keepalived (RFC 5798 §6.4.2) until keepalived dies;
- a real address owner: keepalived at priority 255 advertising from the VIP takes it back
  from hacontrol, which hears those adverts although it holds the VIP at that moment;
- more VIPs than an advert carries (300 IPv4, 100 IPv6 at MTU 1500): both carry the same
  first 255 / 89 and hold the rest, in both roles and across a failover;
- IPv6 unicast with keepalived's defaults (hop limit 64, nothing checked on receipt): one
  master in both roles, a failover and the master's return.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from itertools import count
from pathlib import Path

import pytest

from tests.interop.ka_util import (
    AdvertSeen,
    HaDaemon,
    Instance,
    Keepalived,
    Peer,
    Witness,
    holders,
    sample_single_holder,
    vip_address,
    wait_single_holder,
)
from tests.netns.netns_util import Lab, Netns, require_root, wait_until
from tests.support import require_tool
from vrrp import arp

pytestmark = pytest.mark.interop

HA_PRIORITY_HIGH, HA_PRIORITY_LOW = 200, 100
_vrids = count(60)


@dataclass(frozen=True)
class Protocol:
    version: int
    advert_int: float
    vip: str
    auth_pass: str | None = None

    @property
    def address(self) -> IPv4Address | IPv6Address:
        return vip_address(self.vip)

    def skew_time(self, priority: int) -> float:
        # RFC 3768 §6.1: (256 - Priority) / 256 seconds; RFC 5798 §6.1 scales it by the
        # (master's) advertisement interval. Equal for advert_int 1.
        scale = self.advert_int if self.version == 3 else 1.0
        return (256 - priority) / 256 * scale

    def master_down(self, priority: int) -> float:
        return 3 * self.advert_int + self.skew_time(priority)

    @property
    def slack(self) -> float:
        """Scheduling allowance on a loaded 2-core machine."""
        return 0.3 if self.version == 3 else 0.5

    @property
    def window(self) -> float:
        """How long "converged" must hold: at least three advert intervals."""
        return max(1.0, 3 * self.advert_int)

    @property
    def converge_timeout(self) -> float:
        # Python start-up (~1.5 s under load) + Master_Down_Interval + preemption margin.
        return 6.0 + 2 * self.master_down(1)


PROTOCOLS = {
    "v2": Protocol(2, 1.0, "192.0.2.100/24"),
    "v2-pass": Protocol(2, 1.0, "192.0.2.100/24", auth_pass="s3cret"),
    "v3-ipv4": Protocol(3, 0.1, "192.0.2.100/24"),
    "v3-ipv6": Protocol(3, 0.1, "2001:db8::100/64"),
}


@dataclass
class Link:
    lab: Lab
    ha_ns: Netns
    ka_ns: Netns
    watch_ns: Netns
    keepalived: str
    switch: tuple[Netns, str]
    ports: dict[str, str]  # namespace name -> its switch-side port


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    require_root()
    binary = require_tool("keepalived")
    with Lab("ka") as lab:
        switch = lab.switch()
        ha_ns, ka_ns, watch_ns = lab.netns("ha"), lab.netns("kd"), lab.netns("w")
        ports = {
            ha_ns.name: lab.plug(ha_ns, switch, "eth0", "192.0.2.1/24", "2001:db8::1/64"),
            ka_ns.name: lab.plug(ka_ns, switch, "eth0", "192.0.2.2/24", "2001:db8::2/64"),
        }
        lab.plug(watch_ns, switch, "eth0")
        yield Link(lab, ha_ns, ka_ns, watch_ns, binary, switch, ports)


@dataclass
class Pair:
    link: Link
    proto: Protocol
    vrid: int
    tmp: Path
    witness: Witness
    ha: HaDaemon | None = None
    ka: Keepalived | None = None

    def hacontrol(
        self, priority: int, *, auth_pass: str | None = None, metrics_listen: str | None = None
    ) -> HaDaemon:
        inst = self._instance(priority, auth_pass)
        self.ha = HaDaemon(
            self.link.lab, self.link.ha_ns, self.tmp, "ha", [inst], metrics_listen=metrics_listen
        )
        return self.ha

    def keepalived(self, priority: int, *, auth_pass: str | None = None) -> Keepalived:
        inst = self._instance(priority, auth_pass)
        self.ka = Keepalived(
            self.link.lab, self.link.ka_ns, self.tmp, "ka", [inst], binary=self.link.keepalived
        )
        return self.ka

    def _instance(self, priority: int, auth_pass: str | None) -> Instance:
        return Instance(
            vrid=self.vrid,
            priority=priority,
            vips=(self.proto.vip,),
            version=self.proto.version,
            advert_int=self.proto.advert_int,
            auth_pass=auth_pass if auth_pass is not None else self.proto.auth_pass,
        )

    @property
    def peers(self) -> list[Peer]:
        return [p for p in (self.ha, self.ka) if p is not None]

    def adverts(self, since: float = 0.0, until: float = float("inf")) -> list[AdvertSeen]:
        return [a for a in self.witness.adverts(self.vrid, since) if a.at <= until]

    def cleanup(self) -> None:
        for peer in self.peers:
            peer.stop(signal.SIGTERM)
        for ns in (self.link.ha_ns, self.link.ka_ns):
            if ns.has_address("eth0", str(self.proto.address)):
                ns.ip("addr", "del", self.proto.vip, "dev", "eth0", check=False)
        self.witness.close()


@pytest.fixture
def pair(link: Link, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pair]:
    param = getattr(request, "param", "v2")
    proto = param if isinstance(param, Protocol) else PROTOCOLS[param]
    pair = Pair(link, proto, next(_vrids), tmp_path, Witness(link.watch_ns, "eth0"))
    try:
        yield pair
    finally:
        pair.cleanup()


def _logs(pair: Pair) -> str:
    return "\n".join(f"== {p.name} ({p.kind})\n{p.tail(30)}" for p in pair.peers)


def assert_converged(pair: Pair, master: Peer, *, priority: int) -> None:
    """Exactly one VIP holder at every sample, and adverts from the master alone."""
    start = time.time()
    samples = sample_single_holder(pair.peers, str(pair.proto.address), duration=pair.proto.window)
    assert holders(pair.peers, str(pair.proto.address)) == [master.name]
    adverts = pair.witness.wait_for(
        lambda: pair.adverts(start) or None, timeout=2.0, message="adverts in the window"
    )
    mac = master.ns.mac("eth0")
    strangers = {(a.src, a.src_mac.hex()) for a in adverts if a.src_mac != mac}
    assert not strangers, f"adverts from non-masters after convergence: {strangers}\n{_logs(pair)}"
    # At one per interval; fewer means the master stalled (or a backup answered instead).
    assert len(adverts) >= int(pair.proto.window / pair.proto.advert_int) - 1, adverts
    for adv in adverts:
        assert (adv.version, adv.priority, adv.ttl) == (pair.proto.version, priority, 255)
        assert adv.interval_centis == round(pair.proto.advert_int * 100)
        assert adv.auth_type == (1 if pair.proto.auth_pass and adv.version == 2 else 0)
    assert samples >= 3


def expected_announcement(mac: bytes, vip: IPv4Address | IPv6Address) -> bytes:
    if isinstance(vip, IPv4Address):
        return arp.gratuitous_arp(mac, vip)
    return arp.unsolicited_na(mac, vip)


def assert_takeover(
    pair: Pair, old: Peer, new: Peer, *, killed_at: float, new_priority: int, old_priority: int
) -> None:
    """Timing and frames of a takeover after `old` died without a word."""
    proto = pair.proto
    mac_old, mac_new = old.ns.mac("eth0"), new.ns.mac("eth0")

    def first_new() -> AdvertSeen | None:
        return next((a for a in pair.adverts(killed_at - 1) if a.src_mac == mac_new), None)

    takeover: AdvertSeen = pair.witness.wait_for(
        first_new, timeout=proto.master_down(new_priority) + 5, message=f"{new.name}'s advert"
    )
    last_old = [a for a in pair.adverts(killed_at - 60) if a.src_mac == mac_old][-1]
    assert last_old.at < takeover.at and last_old.priority == old_priority
    # Nobody else spoke between the old master's last advert and the takeover.
    between = [a for a in pair.adverts(last_old.at) if last_old.at < a.at < takeover.at]
    assert not between, f"{between}\n{_logs(pair)}"
    # No advert from the dead master after the kill: the right process was killed.
    assert not [a for a in pair.adverts(killed_at + 0.01) if a.src_mac == mac_old]
    detection = takeover.at - last_old.at
    expected = proto.master_down(new_priority)
    assert expected - 0.05 <= detection <= expected + proto.slack, (
        f"{new.name} took over {detection:.3f}s after the last advert; "
        f"Master_Down_Interval is {expected:.3f}s\n{_logs(pair)}"
    )
    # RFC 5798 §6.4.2 (395)-(405): advert first, then the announcements (keepalived's
    # garp_master_repeat 5 frames at once).
    frames = pair.witness.wait_for(
        lambda: (
            g
            if len(
                g := [
                    f
                    for f in pair.witness.garps(proto.address, takeover.at - 0.05)
                    if f.src_mac == mac_new and f.at <= takeover.at + 1.0
                ]
            )
            >= 5
            else None
        ),
        timeout=3.0,
        message=f"{new.name}'s 5 announcements",
    )
    assert len(frames) == 5, f"{len(frames)} announcements within 1 s of the takeover"
    wanted = expected_announcement(mac_new, proto.address)
    for frame in frames:
        # keepalived sends a 42-byte ARP, hacontrol pads to 60 with zeros (vrrp/arp.py).
        assert frame.data[: len(wanted)].ljust(len(wanted), b"\0") == wanted, frame.data.hex()
    assert frames[0].at - takeover.at < 0.5


@pytest.mark.parametrize("first_master", ["keepalived", "hacontrol"])
@pytest.mark.parametrize("pair", list(PROTOCOLS), indirect=True)
def test_failover_both_ways(pair: Pair, first_master: str) -> None:
    """Election, kill -9 failover, restart and preemption back; one master at every step."""
    ka_first = first_master == "keepalived"
    ka_prio = HA_PRIORITY_HIGH if ka_first else HA_PRIORITY_LOW
    ha_prio = HA_PRIORITY_LOW if ka_first else HA_PRIORITY_HIGH
    ka, ha = pair.keepalived(ka_prio), pair.hacontrol(ha_prio)
    master, backup = (ka, ha) if ka_first else (ha, ka)
    m_prio, b_prio = (ka_prio, ha_prio) if ka_first else (ha_prio, ka_prio)
    vip = str(pair.proto.address)

    ha.start()
    ka.start()
    wait_single_holder(pair.peers, vip, master.name, timeout=pair.proto.converge_timeout)
    assert_converged(pair, master, priority=m_prio)

    killed_at = master.kill9()
    wait_single_holder([backup], vip, backup.name, timeout=pair.proto.master_down(b_prio) + 5)
    assert_takeover(
        pair, master, backup, killed_at=killed_at, new_priority=b_prio, old_priority=m_prio
    )
    assert backup.running, backup.tail()

    # The crashed master comes back, removes the VIP it left behind, and preempts.
    master.start()
    wait_single_holder(pair.peers, vip, master.name, timeout=pair.proto.converge_timeout)
    assert_converged(pair, master, priority=m_prio)
    assert ha.stop() == 0, ha.tail()
    assert ka.stop() == 0, ka.tail()


@pytest.mark.parametrize("first_master", ["keepalived", "hacontrol"])
@pytest.mark.parametrize("pair", ["v2"], indirect=True)
def test_sigterm_hands_over_after_skew_time(pair: Pair, first_master: str) -> None:
    """A master stopped with SIGTERM sends priority 0; the other waits Skew_Time, not 3 s."""
    ka_first = first_master == "keepalived"
    ka = pair.keepalived(HA_PRIORITY_HIGH if ka_first else HA_PRIORITY_LOW)
    ha = pair.hacontrol(HA_PRIORITY_LOW if ka_first else HA_PRIORITY_HIGH)
    master, backup = (ka, ha) if ka_first else (ha, ka)
    vip = str(pair.proto.address)
    ha.start()
    ka.start()
    wait_single_holder(pair.peers, vip, master.name, timeout=pair.proto.converge_timeout)

    stopped_at = time.time()
    assert master.stop(signal.SIGTERM) == 0, master.tail()
    assert not master.holds(vip), "the VIP must go with the process"
    wait_single_holder(pair.peers, vip, backup.name, timeout=5.0)
    mac_m, mac_b = master.ns.mac("eth0"), backup.ns.mac("eth0")
    resign = pair.witness.wait_for(
        lambda: next(
            (a for a in pair.adverts(stopped_at) if a.src_mac == mac_m and a.priority == 0), None
        ),
        timeout=2.0,
        message="the priority-0 advert",
    )
    first = pair.witness.wait_for(
        lambda: next((a for a in pair.adverts(resign.at) if a.src_mac == mac_b), None),
        timeout=3.0,
        message="the backup's first advert",
    )
    delay = first.at - resign.at
    skew = pair.proto.skew_time(HA_PRIORITY_LOW)
    # keepalived and hacontrol both take over Skew_Time after a priority-0 advert
    # (RFC 5798 §6.4.2 (425)-(430)); far below Master_Down_Interval.
    assert skew - 0.05 <= delay <= skew + pair.proto.slack, (delay, skew)
    assert delay < pair.proto.master_down(HA_PRIORITY_LOW) / 2


@pytest.mark.parametrize("pair", ["v2-pass"], indirect=True)
def test_wrong_password_both_become_master(pair: Pair) -> None:
    """Mismatched PASS passwords: neither accepts the other's adverts, so both are master.

    That is what VRRPv2 authentication does by design (RFC 3768 §10: it only keeps out
    misconfigured routers); the operator sees it in hacontrol's bad_auth drop counter and
    in keepalived's "received an invalid passwd!" log line.

    keepalived quirk (2.2.7, seen here): as master it re-arms its advert timer on every
    packet it receives, invalid ones included, so with hacontrol's adverts arriving every
    second it stays silent most of the time. hacontrol therefore starts first and listens,
    and keepalived's first advert as master is the one it must count.
    """
    ka = pair.keepalived(HA_PRIORITY_HIGH, auth_pass="right")
    ha = pair.hacontrol(HA_PRIORITY_LOW, auth_pass="wrong", metrics_listen="127.0.0.1:9650")
    vip = str(pair.proto.address)
    ha.start()
    wait_single_holder([ha], vip, "ha", timeout=pair.proto.converge_timeout)
    ka_start = time.time()
    ka.start()
    ka.wait_ready()
    deadline = time.monotonic() + pair.proto.converge_timeout
    while time.monotonic() < deadline and len(holders(pair.peers, vip)) < 2:
        time.sleep(0.1)
    assert sorted(holders(pair.peers, vip)) == ["ha", "ka"], _logs(pair)
    window = time.monotonic() + 2.5
    while time.monotonic() < window:
        assert sorted(holders(pair.peers, vip)) == ["ha", "ka"], "both stay master"
        time.sleep(0.1)
    adverts = pair.adverts(ka_start)
    by_ka = [a for a in adverts if a.src_mac == ka.ns.mac("eth0")]
    by_ha = [a for a in adverts if a.src_mac == ha.ns.mac("eth0")]
    assert by_ka and by_ha, "each master advertised"
    assert {(a.auth_type, a.priority) for a in by_ka} == {(1, HA_PRIORITY_HIGH)}
    assert {(a.auth_type, a.priority) for a in by_ha} == {(1, HA_PRIORITY_LOW)}
    samples = ha.metrics()
    bad_auth = samples.get(
        'hacontrol_vrrp_packets_dropped_total{interface="eth0",reason="bad_auth"}'
    )
    dropped = {k: v for k, v in samples.items() if "dropped" in k}
    assert bad_auth is not None and bad_auth >= 1, dropped
    assert "received an invalid passwd" in ka.current_log(), ka.tail()
    assert ha.stop() == 0 and ka.stop() == 0


def test_keepalived_is_the_debian_build(link: Link) -> None:
    """The interop claims are about keepalived 2.2.x; record which one ran."""
    out = subprocess.run(
        [link.keepalived, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    assert "Keepalived v2." in out.stdout + out.stderr


@pytest.mark.parametrize("pair", ["v3-ipv4"], indirect=True)
def test_equal_priority_backup_with_the_higher_address_does_not_preempt(pair: Pair) -> None:
    """keepalived master at 100; hacontrol at 100 with the higher address starts later.

    RFC 5798 §6.4.2 (440): a backup follows a master of greater or equal priority
    (keepalived: `hd->priority >= effective_priority`). So hacontrol stays BACKUP for as
    long as keepalived advertises, and takes over only when keepalived dies. The roles'
    namespaces are swapped here so that hacontrol has the higher address (192.0.2.2).
    """
    link = pair.link
    inst = pair._instance(100, None)
    pair.ka = Keepalived(link.lab, link.ha_ns, pair.tmp, "ka", [inst], binary=link.keepalived)
    pair.ha = HaDaemon(link.lab, link.ka_ns, pair.tmp, "ha", [inst])
    ka, ha = pair.ka, pair.ha
    vip = str(pair.proto.address)
    ka.start()
    wait_single_holder([ka], vip, "ka", timeout=pair.proto.converge_timeout)
    ha.start()
    ha.wait_ready()
    since = time.time()
    # Many Master_Down_Intervals (0.36 s here): a preempting backup would have taken over.
    samples = sample_single_holder(pair.peers, vip, duration=10 * pair.proto.master_down(100))
    assert samples >= 3 and holders(pair.peers, vip) == ["ka"], _logs(pair)
    log = ha.current_log()
    assert "to=BACKUP reason=startup" in log, ha.tail()
    assert "to=MASTER" not in log and "reason=preempt" not in log, ha.tail()
    adverts = pair.adverts(since)
    assert len(adverts) >= 30, adverts
    assert {(a.src_mac, a.priority) for a in adverts} == {(ka.ns.mac("eth0"), 100)}, _logs(pair)
    # hacontrol is a live backup all the same: it takes over when keepalived dies.
    killed_at = ka.kill9()
    wait_single_holder([ha], vip, "ha", timeout=pair.proto.master_down(100) + 5)
    assert_takeover(pair, ka, ha, killed_at=killed_at, new_priority=100, old_priority=100)
    assert ha.stop() == 0, ha.tail()


@contextlib.contextmanager
def extra_router(link: Link, label: str, *addresses: str) -> Iterator[Netns]:
    """A namespace plugged into the shared switch for one test, deleted afterwards."""
    ns = link.lab.netns(label)
    try:
        link.lab.plug(ns, link.switch, "eth0", *addresses)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False, timeout=10)
        link.lab.namespaces.remove(ns)


@contextlib.contextmanager
def sysctl(ns: Netns, **values: str) -> Iterator[None]:
    """Set net.* sysctls in `ns` (names with dots given as __) and restore them."""
    names = {key.replace("__", "."): value for key, value in values.items()}
    old = {name: ns.run("sysctl", "-n", name).strip() for name in names}
    try:
        for name, value in names.items():
            ns.run("sysctl", "-qw", f"{name}={value}")
        yield
    finally:
        for name, value in old.items():
            ns.run("sysctl", "-qw", f"{name}={value}", check=False)


@pytest.mark.parametrize("pair", ["v3-ipv4"], indirect=True)
def test_address_owner_takes_its_address_back(pair: Pair) -> None:
    """keepalived as the real address owner (priority 255) advertising from the VIP.

    hacontrol held the VIP while the owner was away; the owner comes back and advertises
    from the VIP, an address hacontrol holds at that moment. Those adverts are not
    hacontrol's own (RFC 5798 §5.2.4): it must step down and remove the VIP. As for
    keepalived in the same place, the kernel delivers a packet from a local address only
    with accept_local=1 (otherwise it is dropped as martian before any daemon sees it).

    keepalived does not take a VIP as the interface address it sends from (with the VIP
    alone on the interface it stays in FAULT, "no IPv4 address for interface"), so the
    owner has an address of its own and sends from the VIP with `mcast_src_ip`.
    """
    link = pair.link
    vip = "192.0.2.50"
    inst = replace(pair._instance(100, None), vips=(f"{vip}/24",))
    ha = pair.ha = HaDaemon(
        link.lab, link.ha_ns, pair.tmp, "ha", [inst], metrics_listen="127.0.0.1:9650"
    )
    with sysctl(link.ha_ns, net__ipv4__conf__all__accept_local="1"):
        ha.start()
        wait_single_holder([ha], vip, "ha", timeout=pair.proto.converge_timeout)
        with extra_router(link, "own", "192.0.2.51/24") as owner_ns:
            owner = replace(inst, priority=255, mcast_src_ip=vip)
            ka = pair.ka = Keepalived(
                link.lab, owner_ns, pair.tmp, "ka", [owner], binary=link.keepalived
            )
            since = time.time()
            ka.start()
            owner_adverts = pair.witness.wait_for(
                lambda: [a for a in pair.adverts(since) if a.priority == 255],
                timeout=10.0,
                message="the owner's adverts",
            )
            assert {a.src for a in owner_adverts} == {IPv4Address(vip)}
            wait_until(
                lambda: not ha.holds(vip), timeout=5.0, message=f"hacontrol to let go of {vip}"
            )
            # And it stays that way: hacontrol follows the owner.
            time.sleep(10 * pair.proto.advert_int)
            assert not ha.holds(vip) and ka.holds(vip), _logs(pair)
            assert "from=MASTER to=BACKUP reason=higher_priority" in ha.current_log(), ha.tail()
            samples = ha.metrics()
            own = samples.get(
                'hacontrol_vrrp_packets_dropped_total{interface="eth0",reason="own_packet"}', 0.0
            )
            assert own == 0.0, {k: v for k, v in samples.items() if "dropped" in k}
            assert ha.stop() == 0, ha.tail()
            ka.stop()


# One-second adverts: keepalived stalls for a fraction of a second after a takeover with
# hundreds of VIPs (one log line per GARP / NA), longer than a 0.1 s interval allows.
MANY_VIPS = [
    # 300 IPv4 VIPs: both advertise the first 255 (the Count field).
    pytest.param(
        PROTOCOLS["v2"],
        (tuple(f"198.51.{i // 250}.{i % 250 + 1}/16" for i in range(300)), 255),
        id="ipv4-300",
    ),
    # 100 IPv6 VIPs at MTU 1500: both advertise the first 89 (keepalived's MTU rule).
    pytest.param(
        Protocol(3, 1.0, "2001:db8::100/64"),
        (tuple(f"2001:db8::1:{i:x}/64" for i in range(1, 101)), 89),
        id="ipv6-100",
    ),
]


def remove_addresses(ns: Netns, addresses: tuple[str, ...], tmp: Path) -> None:
    """Delete `addresses` from eth0 in `ns` if they are there (one `ip -batch`)."""
    batch = tmp / f"del-{ns.name}.batch"
    batch.write_text("".join(f"addr del {a} dev eth0\n" for a in addresses))
    ns.run("ip", "-force", "-batch", str(batch), check=False)


@pytest.mark.parametrize("first_master", ["keepalived", "hacontrol"])
@pytest.mark.parametrize(("pair", "many"), MANY_VIPS, indirect=["pair"])
def test_more_vips_than_an_advert_carries(
    pair: Pair, many: tuple[tuple[str, ...], int], first_master: str
) -> None:
    """Both advertise the same first VIPs and hold the rest as excluded VIPs.

    keepalived drops an advert whose address count differs from its own ("received an
    unexpected ip number count 89, expected 50!"), so carrying the same number as keepalived
    is what keeps the pair from both becoming master.
    """
    vips, carried = many
    first, last = (str(vip_address(v)) for v in (vips[0], vips[-1]))
    ka_first = first_master == "keepalived"
    lk = pair.link
    # One GARP burst of one frame per VIP (not 5, and not again 5 s later): keepalived,
    # logging each frame, otherwise stalls for seconds after a takeover with hundreds of
    # VIPs and misses its own adverts ("A thread timer expired 6.25 seconds ago").
    base = replace(pair._instance(100, None), vips=vips, garp_master_repeat=1, garp_master_delay=0)
    ka_prio, ha_prio = (HA_PRIORITY_HIGH, HA_PRIORITY_LOW) if ka_first else (100, 200)
    pair.ka = Keepalived(
        lk.lab, lk.ka_ns, pair.tmp, "ka", [replace(base, priority=ka_prio)], binary=lk.keepalived
    )
    pair.ha = HaDaemon(lk.lab, lk.ha_ns, pair.tmp, "ha", [replace(base, priority=ha_prio)])
    ka, ha = pair.ka, pair.ha
    master, backup = (ka, ha) if ka_first else (ha, ka)
    try:
        ha.start()
        ka.start()
        wait_single_holder(pair.peers, last, master.name, timeout=pair.proto.converge_timeout)
        start = time.time()
        samples = sample_single_holder(pair.peers, first, duration=pair.proto.window)
        assert samples >= 3 and holders(pair.peers, last) == [master.name], _logs(pair)
        # keepalived may still be busy with its takeover (hundreds of address adds, one
        # log line per GARP) and advertise late, though within Master_Down_Interval.
        adverts = pair.witness.wait_for(
            lambda: found if len(found := pair.adverts(start)) >= 2 else None,
            timeout=pair.proto.master_down(100) * 3,
            message="two adverts from the master",
        )
        assert {(a.src_mac, a.count) for a in adverts} == {(master.ns.mac("eth0"), carried)}
        assert holders(pair.peers, first) == [master.name], _logs(pair)
        assert "unexpected ip number count" not in ka.current_log(), ka.tail()
        assert f"max {carried} addresses" in ka.current_log(), ka.tail()
        excluded = f"advertised={carried} excluded={len(vips) - carried}"
        assert excluded in ha.current_log(), ha.tail()
        # The backup takes every VIP over, and the first master takes them back.
        master.kill9()
        wait_single_holder([backup], last, backup.name, timeout=pair.proto.master_down(100) + 5)
        assert backup.holds(first)
        master.start()
        wait_single_holder(pair.peers, last, master.name, timeout=pair.proto.converge_timeout)
        assert holders(pair.peers, first) == [master.name]
        assert ha.stop() == 0, ha.tail()
    finally:
        for peer in pair.peers:
            peer.stop()
        for ns in (lk.ha_ns, lk.ka_ns):
            remove_addresses(ns, vips, pair.tmp)


@pytest.mark.parametrize("first_master", ["keepalived", "hacontrol"])
@pytest.mark.parametrize("pair", ["v3-ipv6"], indirect=True)
def test_ipv6_unicast_with_keepalived_s_defaults(pair: Pair, first_master: str) -> None:
    """keepalived's default IPv6 unicast config: no unicast_ttl, no min_ttl / max_ttl.

    keepalived then sends with the kernel's hop limit (64) and checks neither the hop limit
    nor the source on receipt. hacontrol used to drop those adverts as bad_ttl, so both stayed
    master for good. Now: one master either way, a failover, and the master's return.

    Both name their global source: keepalived binds its unicast socket to its source address
    (by default the link-local one), so a peer must send to that address.
    """
    lk = pair.link
    ka_first = first_master == "keepalived"
    ka_prio, ha_prio = (HA_PRIORITY_HIGH, HA_PRIORITY_LOW) if ka_first else (100, 200)
    base = pair._instance(100, None)
    pair.ka = Keepalived(
        lk.lab,
        lk.ka_ns,
        pair.tmp,
        "ka",
        [
            replace(
                base,
                priority=ka_prio,
                unicast_src_ip="2001:db8::2",
                unicast_peers=("2001:db8::1",),
            )
        ],
        binary=lk.keepalived,
    )
    pair.ha = HaDaemon(
        lk.lab,
        lk.ha_ns,
        pair.tmp,
        "ha",
        [
            replace(
                base,
                priority=ha_prio,
                unicast_src_ip="2001:db8::1",
                unicast_peers=("2001:db8::2",),
            )
        ],
        metrics_listen="127.0.0.1:9650",
    )
    ka, ha = pair.ka, pair.ha
    master, backup = (ka, ha) if ka_first else (ha, ka)
    vip = str(pair.proto.address)
    sw_ns, _ = lk.switch
    with Witness(sw_ns, lk.ports[lk.ka_ns.name]) as from_ka:
        ha.start()
        ka.start()
        wait_single_holder(pair.peers, vip, master.name, timeout=pair.proto.converge_timeout)
        assert sample_single_holder(pair.peers, vip, duration=pair.proto.window) >= 3
        if ka_first:
            # What made the split brain: keepalived's unicast adverts carry hop limit 64.
            seen = from_ka.adverts(pair.vrid)
            assert seen and {(a.ttl, a.dst) for a in seen} == {(64, IPv6Address("2001:db8::1"))}
    samples = ha.metrics()
    drops = {k: v for k, v in samples.items() if "dropped" in k and v}
    assert not drops, drops
    received = samples.get('hacontrol_vrrp_adverts_received_total{vrrp_instance="VI_1"}', 0)
    assert received >= (3 if ka_first else 0), samples
    # Failover to the backup, and back when the master returns (it preempts).
    master.kill9()
    wait_single_holder([backup], vip, backup.name, timeout=pair.proto.master_down(100) + 5)
    master.start()
    wait_single_holder(pair.peers, vip, master.name, timeout=pair.proto.converge_timeout)
    assert sample_single_holder(pair.peers, vip, duration=pair.proto.window) >= 3
    assert ha.stop() == 0, ha.tail()
