"""The receive path's copies: an advert a master repeats is judged once, and again whenever
what the judgement depends on changes.

A backup hears the same bytes from its master every Advertisement_Interval. The engine
keeps the last advert each instance accepted and hands a byte-identical copy straight to
the state machine (vrrp/io.py `_receive_repeat`). These tests drive a real `VrrpEngine`
through its readiness callback, with the raw socket replaced by one end of a datagram
socket pair (the engine reads whole IPv4 packets from it, as from a raw socket) and the
clock injected: the state machine must still see every copy, and a reload, an address
that became ours or a new peer filter must make the next copy be judged in full.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_interface
from typing import Any

import pytest

from vrrp import io as vrrp_io
from vrrp import packet
from vrrp.io import VrrpEngine, spec_of
from vrrp.rtnl import Link, LinkAddress
from vrrp.sockets import parse, repeat_key
from vrrp.types import VRRP_MCAST_V4, Advertisement, InstanceParams, InstanceSpec, State

MASTER = IPv4Address("192.0.2.1")
OURS = IPv4Address("192.0.2.2")
VIP = IPv4Address("192.0.2.100")
IFINDEX = 2


def ipv4_packet(
    adv: Advertisement,
    *,
    src: IPv4Address = MASTER,
    dst: IPv4Address = VRRP_MCAST_V4,
    ident: int = 0,
    ttl: int = 255,
) -> bytes:
    payload = packet.encode(adv, src, dst)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), ident, 0x4000, ttl, 112, ident ^ 0xFFFF,
        src.packed, dst.packed,
    )  # fmt: skip
    return header + payload


def advert(priority: int = 200, addresses: tuple[IPv4Address, ...] = (VIP,)) -> Advertisement:
    return Advertisement(
        version=3, vrid=51, priority=priority, max_advert_int=100, addresses=addresses
    )


def instance_spec(**changes: Any) -> InstanceSpec:
    params = InstanceParams(
        name="vi",
        vrid=51,
        version=3,
        priority=100,
        advert_int=100,
        primary_address=OURS,
        virtual_addresses=(ip_interface(f"{VIP}/24"),),
    )
    unicast = {k: changes.pop(k) for k in ("unicast_peers", "check_unicast_src") if k in changes}
    return spec_of(replace(params, **changes), "eth0", **unicast)


@dataclass
class Rig:
    engine: VrrpEngine
    loop: asyncio.AbstractEventLoop
    wire: socket.socket  # the master's end of the pair
    clock: list[float]
    decoded: list[bytes]
    ours: SendingEnd  # the engine's end

    @property
    def iface(self) -> Any:
        return self.engine._interfaces["eth0"]

    @property
    def runner(self) -> Any:
        return self.engine._runners["vi"]

    def hear(self, data: bytes) -> None:
        self.wire.send(data)
        self.engine._on_readable(self.iface, socket.AF_INET)

    def drops(self) -> dict[str, int]:
        return {reason: n for (_, reason), n in self.engine.counters().drops.items()}

    def received(self) -> int:
        return self.engine.counters().instances["vi"].adverts_received

    def run(self, step: Callable[[], object]) -> None:
        async def call() -> None:
            step()

        self.loop.run_until_complete(call())


class SendingEnd(socket.socket):
    """The engine's end of the pair. What it sends through `sendmsg` (with a raw socket's
    ancillary data and address, which a socket pair refuses) is kept to be looked at."""

    sent: list[tuple[bytes, list[tuple[int, int, bytes]], Any]]

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        data = b"".join(bytes(b) for b in buffers)
        self.sent.append((data, list(ancdata), address))
        return len(data)


def first_arguments(monkeypatch: pytest.MonkeyPatch, codec: str) -> list[Any]:
    """What `vrrp.packet.<codec>` is called with (its first argument), call by call."""
    calls: list[Any] = []
    real = getattr(packet, codec)

    def counting(first: Any, *rest: Any) -> Any:
        calls.append(first)
        return real(first, *rest)

    monkeypatch.setattr(packet, codec, counting)
    return calls


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    yield from make_rig(monkeypatch, instance_spec(), State.BACKUP)


@pytest.fixture
def master_rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    yield from make_rig(monkeypatch, instance_spec(priority=255), State.MASTER)


def make_rig(monkeypatch: pytest.MonkeyPatch, spec: InstanceSpec, state: State) -> Iterator[Rig]:
    loop = asyncio.new_event_loop()
    clock = [1000.0]
    loop.time = lambda: clock[0]  # type: ignore[method-assign]
    pair, wire = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours = SendingEnd(fileno=pair.detach())
    ours.sent = []
    ours.setblocking(False)
    monkeypatch.setattr(vrrp_io, "open_vrrp_socket", lambda family, name, ifindex: ours)
    decoded: list[bytes] = first_arguments(monkeypatch, "decode")
    engine = VrrpEngine(loop=loop)
    # What start() learns from route netlink, given instead: eth0 up, with our address.
    engine._started = True
    engine._links["eth0"] = Link(IFINDEX, "eth0", b"\x02\x00\x00\x00\x00\x02", up=True)
    engine._addresses[IFINDEX] = {OURS: LinkAddress(IFINDEX, ip_interface(f"{OURS}/24"))}
    r = Rig(engine, loop, wire, clock, decoded, ours)
    r.run(lambda: engine.configure([spec]))
    assert r.runner.fsm.state is state
    try:
        yield r
    finally:
        for runner in engine._runners.values():
            if runner.worker is not None:
                runner.worker.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        ours.close()
        wire.close()


def test_copies_reach_the_state_machine_without_being_decoded_again(rig: Rig) -> None:
    rig.hear(ipv4_packet(advert(), ident=1))
    assert len(rig.decoded) == 1
    for n in range(2, 7):
        rig.clock[0] += 0.5
        # A sender may number its packets: the Identification (and so the header
        # checksum) differs from copy to copy, and the copy is still recognised.
        rig.hear(ipv4_packet(advert(), ident=n))
        # Every copy restarts the Master_Down_Timer (RFC 5798 §6.4.2), as a decoded one would.
        assert rig.runner.fsm.get_timer() == rig.clock[0] + rig.runner.fsm.master_down_interval
    assert len(rig.decoded) == 1
    assert rig.received() == 6
    assert rig.drops() == {}
    assert rig.runner.heard == (MASTER, 200)


def test_a_different_advert_is_decoded_and_replaces_the_one_kept(rig: Rig) -> None:
    for priority in range(150, 200):
        rig.hear(ipv4_packet(advert(priority)))
        rig.hear(ipv4_packet(advert(priority)))
    assert len(rig.decoded) == 50
    assert rig.received() == 100
    assert rig.runner.heard == (MASTER, 199)
    assert len(rig.iface.repeats) == 1  # one per instance, whatever arrives


def test_a_copy_with_another_ttl_is_judged_again(rig: Rig) -> None:
    rig.hear(ipv4_packet(advert()))
    rig.hear(ipv4_packet(advert(), ttl=254))
    assert rig.drops() == {"bad_ttl": 1}
    assert rig.received() == 1


def test_after_a_reload_copies_are_judged_against_the_new_configuration(rig: Rig) -> None:
    rig.hear(ipv4_packet(advert()))
    # Other VIPs: the same bytes are now an address mismatch (counted, still accepted).
    rig.run(
        lambda: rig.engine.configure(
            [instance_spec(virtual_addresses=(ip_interface("192.0.2.101/24"),))]
        )
    )
    rig.hear(ipv4_packet(advert()))
    assert rig.engine.counters().instances["vi"].address_mismatch == 1
    assert len(rig.decoded) == 2
    # Unicast peers: the same multicast bytes are now refused.
    rig.run(
        lambda: rig.engine.configure(
            [instance_spec(unicast_peers=[IPv4Address("192.0.2.9")], check_unicast_src=True)]
        )
    )
    rig.hear(ipv4_packet(advert()))
    assert rig.drops() == {"not_a_peer": 1}
    assert rig.received() == 2


def test_a_copy_from_an_address_that_became_ours_is_dropped_as_our_own(rig: Rig) -> None:
    rig.hear(ipv4_packet(advert()))
    # Route netlink reports a new address by changing the interface's table in place.
    rig.engine._addresses[IFINDEX][MASTER] = LinkAddress(IFINDEX, ip_interface(f"{MASTER}/24"))
    rig.hear(ipv4_packet(advert()))
    assert rig.drops() == {"own_packet": 1}
    assert rig.received() == 1


def test_a_retired_instance_leaves_nothing_behind(rig: Rig) -> None:
    rig.hear(ipv4_packet(advert()))
    assert len(rig.iface.repeats) == 1
    rig.run(lambda: rig.engine.configure([]))
    assert rig.iface.repeats == {}
    rig.hear(ipv4_packet(advert()))
    assert rig.drops() == {"unknown_vrid": 1}


def test_equal_keys_mean_equal_parses() -> None:
    a = ipv4_packet(advert(), ident=1)
    assert repeat_key(socket.AF_INET, (a, [], None)) == repeat_key(
        socket.AF_INET, (ipv4_packet(advert(), ident=2), [], None)
    )
    for other in (
        ipv4_packet(advert(), ttl=1),
        ipv4_packet(advert(), src=IPv4Address("192.0.2.3")),
        ipv4_packet(advert(), dst=OURS),
        ipv4_packet(advert(201)),
    ):
        assert repeat_key(socket.AF_INET, (other, [], None)) != repeat_key(
            socket.AF_INET, (a, [], None)
        )
        assert parse(socket.AF_INET, (other, [], None)) != parse(socket.AF_INET, (a, [], None))
    assert repeat_key(socket.AF_INET, (a[:19], [], None)) is None
    cmsgs = [
        (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("=i", 255)),
        (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, IPv6Address("ff02::12").packed + b"\0" * 4),
    ]
    v6 = (b"x" * 24, ("fe80::1%eth0", 0, 0, 2), cmsgs)
    assert repeat_key(socket.AF_INET6, (v6[0], cmsgs, v6[1])) == repeat_key(
        socket.AF_INET6, (b"x" * 24, list(cmsgs), ("fe80::1%eth0", 0, 0, 2))
    )
    hop_64 = [(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("=i", 64)), cmsgs[1]]
    assert repeat_key(socket.AF_INET6, (v6[0], hop_64, v6[1])) != repeat_key(
        socket.AF_INET6, (v6[0], cmsgs, v6[1])
    )


# ---- sending: a master's adverts are encoded once --------------------------------------------


def test_a_master_sends_the_bytes_it_encoded_until_what_they_say_changes(
    master_rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = master_rig
    encoded: list[Advertisement] = first_arguments(monkeypatch, "encode")

    def advertise() -> bytes:
        """Run the Adver_Timer out; the advert it sent."""
        deadline = rig.runner.fsm.get_timer()
        rig.clock[0] = deadline
        before = len(rig.ours.sent)
        rig.run(lambda: rig.engine._on_timer(rig.runner))
        assert len(rig.ours.sent) == before + 1
        data, _ancdata, address = rig.ours.sent[-1]
        assert address == (str(VRRP_MCAST_V4), 0)
        return data

    takeover = rig.ours.sent[-1][0]  # encoded when the owner took over, at configure
    assert [advertise() for _ in range(5)] == [takeover] * 5
    assert encoded == []
    assert rig.ours.sent[-1][1][0][2][4:8] == OURS.packed  # IP_PKTINFO's source
    assert packet.decode(takeover, OURS, VRRP_MCAST_V4).priority == 255
    # A reload with another priority: encoded again, and the new bytes say it.
    rig.run(lambda: rig.engine.configure([instance_spec(priority=250)]))
    changed = advertise()
    assert packet.decode(changed, OURS, VRRP_MCAST_V4).priority == 250
    encodes = len(encoded)
    assert advertise() == changed
    assert len(encoded) == encodes  # a repeat again
    # Another source address (ours replaced: the checksum's pseudo-header changes).
    other = IPv4Address("192.0.2.3")
    rig.engine._addresses[IFINDEX] = {other: LinkAddress(IFINDEX, ip_interface(f"{other}/24"))}
    moved = advertise()
    assert rig.ours.sent[-1][1][0][2][4:8] == other.packed
    assert packet.decode(moved, other, VRRP_MCAST_V4).priority == 250
    assert advertise() == moved
    assert len(encoded) == encodes + 1


def test_adverts_due_together_leave_together_after_the_state_machines_ran(
    master_rig: Rig,
) -> None:
    """Every advert due in one pass of the loop is sent at its end, back to back, so that a
    backup reads them in one wake-up; and a stop sends the priority-0 adverts at once."""
    rig = master_rig
    rig.run(
        lambda: rig.engine.configure(
            [instance_spec(priority=255), instance_spec(name="vj", vrid=52, priority=255)]
        )
    )
    runners = [rig.engine._runners["vi"], rig.engine._runners["vj"]]
    for runner in runners:
        assert runner.fsm.state is State.MASTER
    rig.clock[0] = max(r.fsm.get_timer() for r in runners) + 1.0  # both due
    before = len(rig.ours.sent)

    def fire_both() -> None:
        for runner in runners:
            rig.engine._on_timer(runner)
        assert len(rig.ours.sent) == before  # queued, not sent, while the pass goes on

    rig.run(fire_both)
    sent = [packet.decode(data, OURS, VRRP_MCAST_V4).vrid for data, _, _ in rig.ours.sent[before:]]
    assert sent == [51, 52]
    before = len(rig.ours.sent)
    rig.loop.run_until_complete(rig.engine.stop())
    resigned = [packet.decode(data, OURS, VRRP_MCAST_V4) for data, _, _ in rig.ours.sent[before:]]
    assert [(a.vrid, a.priority) for a in resigned] == [(51, 0), (52, 0)]


def test_intervals_a_stalled_master_missed_are_counted_and_outlive_its_removal(
    master_rig: Rig,
) -> None:
    rig = master_rig
    runner = rig.runner
    deadline = runner.deadline  # 1 s adverts
    rig.clock[0] = deadline + 3.5  # the process stalled: 3 more deadlines went by
    rig.run(lambda: rig.engine._on_timer(runner))
    assert rig.engine.counters().instances["vi"].intervals_missed == 3
    # Removed, then configured again: the figure stays with the instance's name, as the
    # other counters do, and the new state machine's own count adds to it.
    rig.run(lambda: rig.engine.configure([]))
    assert rig.engine.counters().instances["vi"].intervals_missed == 3
    rig.run(lambda: rig.engine.configure([instance_spec(priority=255)]))
    runner = rig.runner
    rig.clock[0] = runner.deadline + 1.0  # a whole interval late: one missed
    rig.run(lambda: rig.engine._on_timer(runner))
    assert rig.engine.counters().instances["vi"].intervals_missed == 4


def test_a_master_waits_for_its_adverts_in_one_go_and_a_backup_wakes_early(
    master_rig: Rig, rig: Rig
) -> None:
    # The master's next advert, a second away: one handle, at the deadline itself.
    master = master_rig.runner
    assert master.deadline == master_rig.clock[0] + 1.0
    assert master.wake == master.deadline
    # The backup's Master_Down_Timer, 3.6 s away: woken early (the kernel's 0.1% slack on
    # a long wait would delay the takeover), then the remainder.
    backup = rig.runner
    assert backup.deadline == rig.clock[0] + backup.fsm.master_down_interval
    assert backup.deadline - 0.01 < backup.wake < backup.deadline


def test_a_run_of_send_failures_is_said_once_and_counted_every_time(
    master_rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rig = master_rig
    failing = [True]

    def sendmsg(*args: Any, **kwargs: Any) -> int:
        if failing[0]:
            raise OSError(101, "Network is unreachable")
        return 0

    monkeypatch.setattr(rig.ours, "sendmsg", sendmsg)

    def advertise() -> None:
        rig.clock[0] = rig.runner.fsm.get_timer()
        rig.run(lambda: rig.engine._on_timer(rig.runner))

    def said() -> list[str]:
        return [r.levelname for r in caplog.records if "vrrp.send_error" in r.getMessage()]

    caplog.set_level(logging.DEBUG, logger="vrrp")
    for _ in range(3):
        advertise()
    assert said() == ["WARNING", "DEBUG", "DEBUG"]
    assert rig.engine.counters().instances["vi"].errors["send_advert"] == 3
    failing[0] = False
    advertise()  # sent again: the run is over
    failing[0] = True
    advertise()
    assert said() == ["WARNING", "DEBUG", "DEBUG", "WARNING"]
    assert rig.engine.counters().instances["vi"].errors["send_advert"] == 4
