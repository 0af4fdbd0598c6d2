"""Two hacontrol daemons (`python3 -m hacontrol run -c FILE`) in namespaces on one bridge.

The whole daemon runs, as an operator starts it: YAML config, CLI, VRRP engine, signals.
Topology per test: a bridge in its own namespace, directors "a" (192.0.2.1, 2001:db8::1)
and "b" (192.0.2.2, 2001:db8::2), and a witness namespace "w" that only captures frames with
kernel timestamps (tests/interop/ka_util.py's Witness). Processes are stopped by pid and
namespaces deleted by the Lab, whatever the outcome.

Covered: election; kill -9 of the master (takeover, the GARP bursts byte for byte, a restart
that clears its stale VIP and preempts back); SIGTERM (priority 0, takeover after Skew_Time,
exit 0, VIP removed); unicast mode; interface down -> FAULT -> recovery with preemption;
an IPv6 / VRRPv3 pair with unsolicited neighbour advertisements; `--log-level debug`
showing our own events without pyroute2's netlink chatter; 300 VIPs in one instance.
"""

from __future__ import annotations

import signal
import time
from ipaddress import IPv4Address, IPv6Address
from itertools import pairwise
from typing import Any

import pytest

from tests.interop.ka_util import (
    HaDaemon,
    Witness,
    holders,
    sample_single_holder,
    wait_single_holder,
)
from tests.netns.daemon_pair import (
    ADVERT_INT,
    HIGH,
    LOW,
    SLACK,
    VIP6,
    VRID,
    Net,
    garp_bursts,
    instance,
    master_down,
    skew_time,
    start_pair,
)
from tests.netns.netns_util import wait_until
from vrrp import arp

pytestmark = pytest.mark.netns


def test_election_higher_priority_holds_the_vip(net: Net) -> None:
    a, b = start_pair(net, metrics_listen="127.0.0.1:9652")
    start = time.time()
    assert sample_single_holder([a, b], "192.0.2.100", duration=1.5) >= 3
    adverts = net.adverts(start)
    assert adverts, "the master advertises"
    assert {x.src_mac for x in adverts} == {net.a.mac("eth0")}, "the backup stays silent"
    for adv in adverts:
        assert (adv.src, adv.dst) == (IPv4Address("192.0.2.1"), IPv4Address("224.0.0.18"))
        assert (adv.version, adv.priority, adv.ttl, adv.interval_centis) == (3, HIGH, 255, 20)
    assert a.running and b.running
    samples = a.metrics()
    # The virtual router's identity comes with the state, for comparing directors.
    key = 'hacontrol_vrrp_state{family="ipv4",interface="eth0",vrid="42",vrrp_instance="VI_1"}'
    assert samples[key] == 2, samples
    # Once started, full collections are the pacer's (hacontrol/gcpace.py), once a minute.
    assert samples["hacontrol_gc_full_collection_interval_seconds"] == 60.0
    assert 'python_gc_collections_total{generation="2"}' in samples
    # The check runner's figures are exported even with no virtual server to check.
    assert samples["hacontrol_check_attempts_total"] == 0.0
    assert samples['hacontrol_check_lateness_seconds_bucket{le="0.05"}'] == 0.0


def test_kill9_backup_takes_over_with_two_garp_bursts(net: Net) -> None:
    a, b = start_pair(net, garp_master_delay=1.0, garp_master_repeat=5)
    mac_a, mac_b = net.a.mac("eth0"), net.b.mac("eth0")
    killed_at = a.kill9()
    assert net.a.has_address("eth0", "192.0.2.100"), "a crashed process leaves its VIP"
    wait_single_holder([b], "192.0.2.100", "b", timeout=master_down(LOW, ADVERT_INT) + 5)

    first = net.witness.wait_for(
        lambda: next(iter(net.adverts(killed_at, mac_b)), None), timeout=3, message="b's advert"
    )
    last_a = [x for x in net.adverts(killed_at - 60) if x.src_mac == mac_a][-1]
    detection = first.at - last_a.at
    mdi = master_down(LOW, ADVERT_INT)
    assert mdi - 0.03 <= detection <= mdi + SLACK, (detection, mdi)

    # keepalived's defaults, shortened: garp_master_repeat frames at once, as many again
    # garp_master_delay later, then nothing (garp_master_refresh 0).
    vip = IPv4Address("192.0.2.100")
    net.witness.collect(1.0 + 1.0)
    frames = [f for f in net.witness.garps(vip, killed_at) if f.src_mac == mac_b]
    bursts = garp_bursts(frames)
    assert [len(burst) for burst in bursts] == [5, 5], [round(f.at - first.at, 3) for f in frames]
    assert 0 <= bursts[0][0].at - first.at < 0.1, "GARPs follow the first advert at once"
    second = bursts[1][0].at - bursts[0][0].at
    assert 1.0 - 0.02 <= second <= 1.0 + SLACK, second
    wanted = arp.gratuitous_arp(mac_b, vip)
    assert all(f.data == wanted for f in frames), [f.data.hex() for f in frames]
    parsed = arp.parse_arp(frames[0].data)
    assert parsed.is_gratuitous and parsed.sender_mac == mac_b

    # a comes back: as a backup it first removes the VIP its crash left behind, then
    # preempts; b lets go. One holder from then on.
    a.start()
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=15.0)
    assert sample_single_holder([a, b], "192.0.2.100", duration=1.0) >= 3
    assert "vrrp.stale_vip" in a.log_text() or "stale" in a.log_text().lower(), a.tail()


def test_sigterm_sends_priority_zero_and_exits_clean(net: Net) -> None:
    # advert_int 1 s separates Skew_Time (0.61 s) from Master_Down_Interval (3.61 s) by far
    # more than any scheduling noise.
    a, b = start_pair(net, advert_int=1.0)
    mac_a, mac_b = net.a.mac("eth0"), net.b.mac("eth0")
    stopped_at = time.time()
    assert a.stop(signal.SIGTERM) == 0, a.tail()
    assert not net.a.has_address("eth0", "192.0.2.100"), "VIP removed before exit"
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=5.0)
    resign = net.witness.wait_for(
        lambda: next((x for x in net.adverts(stopped_at, mac_a) if x.priority == 0), None),
        timeout=2,
        message="a's priority-0 advert",
    )
    first_b = net.witness.wait_for(
        lambda: next(iter(net.adverts(resign.at, mac_b)), None), timeout=3, message="b's advert"
    )
    delay = first_b.at - resign.at
    skew, mdi = skew_time(LOW, 1.0), master_down(LOW, 1.0)
    assert skew - 0.03 <= delay <= skew + SLACK, (delay, skew)
    assert delay < mdi / 2
    assert "reason=priority_zero" in b.log_text(), b.tail()


def test_unicast_peers(net: Net) -> None:
    capture_a = Witness(net.switch, net.port_a)  # what a sends, seen from the switch
    capture_b = Witness(net.switch, net.port_b)
    try:
        ucast_a: dict[str, Any] = {"unicast_src_ip": "192.0.2.1", "unicast_peers": ("192.0.2.2",)}
        ucast_b: dict[str, Any] = {"unicast_src_ip": "192.0.2.2", "unicast_peers": ("192.0.2.1",)}
        a = net.daemon(net.a, "a", instance(HIGH, **ucast_a))
        b = net.daemon(net.b, "b", instance(LOW, **ucast_b))
        a.start()
        b.start()
        wait_single_holder([a, b], "192.0.2.100", "a", timeout=15.0)
        start = time.time()
        assert sample_single_holder([a, b], "192.0.2.100", duration=1.0) >= 3
        sent_a = capture_a.adverts(VRID, start)
        assert sent_a and {(x.src, x.dst) for x in sent_a} == {
            (IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))
        }
        assert not capture_b.adverts(VRID, start), "the backup stays silent"
        assert not net.adverts(start), "nothing goes to the multicast group"

        killed_at = a.kill9()
        wait_single_holder([b], "192.0.2.100", "b", timeout=master_down(LOW, ADVERT_INT) + 5)
        sent_b = capture_b.wait_for(
            lambda: capture_b.adverts(VRID, killed_at), timeout=3, message="b's unicast adverts"
        )
        assert {(x.src, x.dst) for x in sent_b} == {
            (IPv4Address("192.0.2.2"), IPv4Address("192.0.2.1"))
        }
    finally:
        capture_a.close()
        capture_b.close()


def test_interface_down_fault_and_recovery(net: Net) -> None:
    a, b = start_pair(net)
    net.a.ip("link", "set", "eth0", "down")
    try:
        # FAULT drops the VIP; b hears nothing more and takes over.
        wait_until(
            lambda: not net.a.has_address("eth0", "192.0.2.100"), timeout=5, message="a's VIP gone"
        )
        wait_single_holder([a, b], "192.0.2.100", "b", timeout=master_down(LOW, ADVERT_INT) + 5)
        wait_until(lambda: "to=FAULT" in a.log_text(), timeout=5, message="a logs FAULT")
        assert a.running, a.tail()
    finally:
        net.a.ip("link", "set", "eth0", "up")
    # Back up: a returns to BACKUP, hears the lower-priority b and preempts.
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=15.0)
    assert sample_single_holder([a, b], "192.0.2.100", duration=1.0) >= 3
    log = a.log_text()
    assert "from=FAULT" in log and "reason=interface_up" in log, a.tail()


def test_ipv6_vrrpv3_pair(net: Net) -> None:
    a, b = start_pair(net, VIP6, garp_master_delay=0)
    vip = IPv6Address("2001:db8::100")
    start = time.time()
    assert sample_single_holder([a, b], str(vip), duration=1.0) >= 3
    mac_a, mac_b = net.a.mac("eth0"), net.b.mac("eth0")
    adverts = net.adverts(start)
    assert adverts and {x.src_mac for x in adverts} == {mac_a}
    for adv in adverts:
        # RFC 5798 §5.1.2: from the link-local address, to ff02::12, Hop Limit 255.
        assert isinstance(adv.src, IPv6Address) and adv.src.is_link_local
        assert (adv.dst, adv.ttl, adv.version) == (IPv6Address("ff02::12"), 255, 3)
    killed_at = a.kill9()
    wait_single_holder([b], str(vip), "b", timeout=master_down(LOW, ADVERT_INT) + 5)
    nas = net.witness.wait_for(
        lambda: (
            [f for f in net.witness.garps(vip, killed_at) if f.src_mac == mac_b][:5]
            if len(net.witness.garps(vip, killed_at)) >= 5
            else None
        ),
        timeout=3,
        message="b's unsolicited NAs",
    )
    wanted = arp.unsolicited_na(mac_b, vip)
    assert [f.data for f in nas] == [wanted] * 5
    parsed = arp.parse_na(nas[0].data)
    assert parsed.override and not parsed.solicited and parsed.checksum_valid
    assert holders([a, b], str(vip)) in (["b"], ["a", "b"])  # a's stale VIP: it crashed


def test_debug_log_is_ours_not_pyroute2s(net: Net) -> None:
    """`--log-level debug` shows hacontrol's own events, not every netlink message.

    pyroute2 resets its logger to NOTSET when it is imported (pyroute2/config/log.py), so a
    level set before that import is lost and its per-message debug lines flood the log.
    """
    a = HaDaemon(net.lab, net.a, net.tmp, "a", [instance(HIGH)], log_level="debug")
    a.start()
    wait_single_holder([a], "192.0.2.100", "a", timeout=15.0)
    # Netlink is busy here: links and addresses dumped, the VIP added, its event received.
    time.sleep(1.0)
    lines = a.current_log().splitlines()
    ours = [line for line in lines if " DEBUG vrrp." in line]
    theirs = [line for line in lines if " pyroute2" in line]
    assert ours, "debug level shows hacontrol's own debug events"
    assert not theirs, f"{len(theirs)} pyroute2 lines of {len(lines)}:\n" + "\n".join(theirs[:5])


def test_more_than_255_vips_advertises_255_and_holds_them_all(net: Net) -> None:
    """300 VIPs: adverts carry the first 255 (keepalived moves the rest to its excluded
    VIPs); the master holds all 300 and the backup none. Before, every advert failed to
    encode (a traceback a second), none was sent, and both directors held every VIP."""
    vips = tuple(f"198.51.{i // 250}.{i % 250 + 1}/16" for i in range(300))
    first, last = "198.51.0.1", "198.51.1.50"
    a = net.daemon(net.a, "a", instance(HIGH, vips=vips))
    b = net.daemon(net.b, "b", instance(LOW, vips=vips))
    a.start()
    b.start()
    wait_single_holder([a, b], last, "a", timeout=15.0)
    time.sleep(3 * ADVERT_INT)
    start = time.time()
    # Each sample lists 300 addresses in two namespaces: slow under load, hence few.
    assert sample_single_holder([a, b], first, duration=2.0) >= 2
    assert set(vips) <= net.a.addresses("eth0"), "a holds all 300"
    assert not set(vips) & net.b.addresses("eth0"), "b holds none"
    adverts = net.adverts(start)
    assert adverts and {(x.src_mac, x.count) for x in adverts} == {(net.a.mac("eth0"), 255)}
    # No advert waited for the 300 address adds (seconds of netlink under load): from its
    # first one on, a never fell silent for a Master_Down_Interval of b's.
    times = [x.at for x in net.adverts(0.0, net.a.mac("eth0"))]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert gaps and max(gaps) < master_down(LOW, ADVERT_INT), max(gaps)
    log = a.current_log()
    excluded = [line for line in log.splitlines() if "vrrp.vips_excluded" in line]
    assert len(excluded) == 1 and " WARNING " in excluded[0], excluded
    assert "advertised=255 excluded=45 first_excluded=198.51.1.6/16" in excluded[0]
    assert "Traceback" not in log and "encode_error" not in log, a.tail()
    # The backup takes every VIP over, the excluded ones included.
    killed_at = a.kill9()
    wait_single_holder([b], last, "b", timeout=master_down(LOW, ADVERT_INT) + 5)
    assert set(vips) <= net.b.addresses("eth0"), "b holds all 300"
    taken = net.witness.wait_for(
        lambda: net.adverts(killed_at, net.b.mac("eth0")), timeout=3, message="b's adverts"
    )
    assert {x.count for x in taken} == {255}
