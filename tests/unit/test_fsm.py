"""The VRRP state machine (vrrp/fsm.py): RFC 5798 §6 timings and transitions, keepalived extras.

Time is a float passed in; instances talk over the in-memory link of
vrrp_link.py, which jumps from deadline to deadline. Expected instants are
computed exactly, with Fraction, and compared with ==.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.unit.vrrp_link import Link, assert_one_master, one_master_check
from vrrp.fsm import Instance, InstanceUsageError
from vrrp.types import (
    AddAddresses,
    Advertisement,
    ApplyRoutes,
    AuthType,
    GarpSettings,
    InstanceParams,
    Reason,
    RemoveAddresses,
    SendAdvertisement,
    SendGratuitousArp,
    State,
    StateChanged,
)

DEFAULT_GARP = GarpSettings()
VIP = IPv4Interface("192.0.2.100/24")
VIP2 = IPv4Interface("192.0.2.101/24")
ADDR = {
    "a": IPv4Address("192.0.2.1"),
    "b": IPv4Address("192.0.2.2"),
    "c": IPv4Address("192.0.2.3"),
    "x": IPv4Address("192.0.2.9"),
}


def params(
    name: str,
    priority: int,
    *,
    version: int = 3,
    advert_int: int = 100,
    preempt: bool = True,
    preempt_delay: float = 0.0,
    garp: GarpSettings = DEFAULT_GARP,
    vips: tuple[IPv4Interface | IPv6Interface, ...] = (VIP,),
    auth_type: AuthType = AuthType.NONE,
    auth_data: bytes = b"",
) -> InstanceParams:
    return InstanceParams(
        name=name,
        vrid=51,
        version=version,
        priority=priority,
        advert_int=advert_int,
        primary_address=ADDR[name],
        virtual_addresses=vips,
        preempt=preempt,
        preempt_delay=preempt_delay,
        garp=garp,
        auth_type=auth_type,
        auth_data=auth_data,
    )


def mdi(version: int, priority: int, interval_cs: int) -> float:
    """Master_Down_Interval in seconds, exactly rounded from the exact rational value."""
    if version == 3:
        # RFC 5798 §6.1: 3 * Master_Adver_Interval + ((256 - Priority) * MAI) / 256
        exact = 3 * Fraction(interval_cs, 100) + Fraction((256 - priority) * interval_cs, 25600)
    else:
        # RFC 3768 §6.1: 3 * Advertisement_Interval + (256 - Priority) / 256
        exact = 3 * Fraction(interval_cs, 100) + Fraction(256 - priority, 256)
    return float(exact)


def skew(version: int, priority: int, interval_cs: int) -> float:
    if version == 3:
        return float(Fraction((256 - priority) * interval_cs, 25600))
    return float(Fraction(256 - priority, 256))


def advert(
    priority: int, *, version: int = 3, interval: int = 100, vrid: int = 51
) -> Advertisement:
    return Advertisement(version, vrid, priority, interval, (VIP.ip,))


def own_advert(p: InstanceParams, priority: int | None = None) -> Advertisement:
    return Advertisement(
        p.version,
        p.vrid,
        p.priority if priority is None else priority,
        p.advert_int,
        tuple(v.ip for v in p.virtual_addresses if v.version == p.primary_address.version),
        p.auth_type if p.version == 2 else AuthType.NONE,
        p.auth_data if p.version == 2 else b"",
    )


def become_master_actions(p: InstanceParams, old: State, reason: Reason) -> list[object]:
    return [
        StateChanged(old, State.MASTER, reason),
        # RFC 5798 §6.4.2: the advert goes out before the VIPs are added.
        SendAdvertisement(own_advert(p)),
        AddAddresses(p.virtual_addresses),
        ApplyRoutes(True),  # the routes after the VIPs they may use, before the GARP
        SendGratuitousArp(tuple(v.ip for v in p.virtual_addresses), p.garp.master_repeat),
    ]


def state_of(inst: Instance) -> State:
    """The state, read through a call so that mypy does not narrow it across actions."""
    return inst.state


def master_at(p: InstanceParams, now: float = 0.0) -> Instance:
    """An instance that took over alone at `now` (its start was Master_Down_Interval before)."""
    inst = Instance(p)
    inst.start(now - inst.master_down_interval)
    deadline = inst.get_timer()
    assert deadline is not None
    inst.handle_timer(deadline)
    assert inst.state is State.MASTER
    return inst


# ---- timer formulas ------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "priority", "interval", "skew_s", "mdi_s"),
    [
        (3, 100, 100, 0.609375, 3.609375),
        (3, 200, 100, 0.21875, 3.21875),
        (3, 254, 100, 0.0078125, 3.0078125),
        (3, 100, 10, float(Fraction(1560, 25600)), float(Fraction(9240, 25600))),
        (2, 100, 100, 0.609375, 3.609375),
        (2, 1, 300, 0.99609375, 9.99609375),
    ],
)
def test_skew_and_master_down_interval(
    version: int, priority: int, interval: int, skew_s: float, mdi_s: float
) -> None:
    inst = Instance(params("a", priority, version=version, advert_int=interval))
    assert inst.skew_time == skew_s
    assert inst.master_down_interval == mdi_s
    assert inst.master_adver_interval == interval


# ---- start ---------------------------------------------------------------------


def test_backup_alone_takes_over_exactly_at_start_plus_master_down_interval() -> None:
    p = params("a", 100)
    inst = Instance(p)
    assert (inst.state, inst.get_timer()) == (State.INITIALIZE, None)
    t0 = 10.25
    assert inst.start(t0) == [StateChanged(State.INITIALIZE, State.BACKUP, Reason.STARTUP)]
    takeover = t0 + mdi(3, 100, 100)
    assert inst.get_timer() == takeover
    # Early or repeated calls are harmless.
    assert inst.handle_timer(t0) == []
    assert inst.handle_timer(takeover - 1e-9) == []
    assert inst.state is State.BACKUP
    actions = inst.handle_timer(takeover)
    assert actions == become_master_actions(p, State.BACKUP, Reason.MASTER_DOWN)
    assert state_of(inst) is State.MASTER
    # Adver_Timer and the delayed GARP burst are the next deadlines.
    assert inst.get_timer() == takeover + 1.0


def test_owner_is_master_at_once() -> None:
    p = params("a", 255, preempt=False)
    inst = Instance(p)
    assert inst.start(5.0) == become_master_actions(p, State.INITIALIZE, Reason.ADDRESS_OWNER)
    assert inst.state is State.MASTER
    assert inst.get_timer() == 6.0


def test_action_order_and_advert_contents_v2_with_auth_and_mixed_families() -> None:
    v6 = IPv6Interface("2001:db8::100/64")
    p = params(
        "a",
        255,
        version=2,
        advert_int=300,
        vips=(VIP, v6, VIP2),
        auth_type=AuthType.SIMPLE,
        auth_data=b"secret",
    )
    actions = Instance(p).start(0.0)
    assert actions == [
        StateChanged(State.INITIALIZE, State.MASTER, Reason.ADDRESS_OWNER),
        # RFC 5798 §5.2.9: only the instance's own family in the advert.
        SendAdvertisement(
            Advertisement(2, 51, 255, 300, (VIP.ip, VIP2.ip), AuthType.SIMPLE, b"secret")
        ),
        AddAddresses((VIP, v6, VIP2)),
        ApplyRoutes(True),
        SendGratuitousArp((VIP.ip, v6.ip, VIP2.ip), 5),
    ]


def test_vips_beyond_255_are_held_and_announced_but_not_advertised() -> None:
    # keepalived advertises the first 255 and moves the rest to excluded VIPs; so do we,
    # and excluded VIPs (either family) are held like them. Before, every advert of such
    # an instance failed to encode and none was ever sent.
    vips = tuple(IPv4Interface(f"198.51.{i // 250}.{i % 250 + 1}/16") for i in range(300))
    excluded = (IPv6Interface("2001:db8::100/64"), IPv4Interface("203.0.113.1/24"))
    p = dataclasses.replace(params("x", 255, vips=vips), excluded_addresses=excluded)
    held = vips + excluded
    assert Instance(p).start(0.0) == [
        StateChanged(State.INITIALIZE, State.MASTER, Reason.ADDRESS_OWNER),
        SendAdvertisement(Advertisement(3, 51, 255, 100, tuple(v.ip for v in vips[:255]))),
        AddAddresses(held),
        ApplyRoutes(True),
        SendGratuitousArp(tuple(v.ip for v in held), 5),
    ]
    assert p.overflow_addresses == vips[255:]
    inst = Instance(p)
    inst.start(0.0)
    assert inst.stop(1.0)[-1] == RemoveAddresses(held)


def test_fewer_addresses_per_advert_where_the_mtu_allows_fewer() -> None:
    vips = tuple(IPv6Interface(f"2001:db8::1:{i:x}/64") for i in range(1, 101))
    p = InstanceParams(
        name="v6",
        vrid=51,
        version=3,
        priority=255,
        advert_int=100,
        primary_address=IPv6Address("fe80::1"),
        virtual_addresses=vips,
        max_advert_addresses=89,  # keepalived's figure for IPv6 at MTU 1500
    )
    actions = Instance(p).start(0.0)
    assert actions[1] == SendAdvertisement(
        Advertisement(3, 51, 255, 100, tuple(v.ip for v in vips[:89]))
    )
    assert actions[2] == AddAddresses(vips)
    assert p.overflow_addresses == vips[89:]


def test_v3_advert_carries_no_auth_even_if_configured() -> None:
    p = params("a", 255, auth_type=AuthType.SIMPLE, auth_data=b"secret")
    actions = Instance(p).start(0.0)
    assert SendAdvertisement(Advertisement(3, 51, 255, 100, (VIP.ip,))) in actions


# ---- takeover timing over the link -------------------------------------------


@pytest.mark.parametrize(("version", "interval"), [(2, 100), (3, 100), (3, 10)])
def test_takeover_exactly_master_down_interval_after_the_master_falls_silent(
    version: int, interval: int
) -> None:
    link = Link()
    link.add("a", params("a", 200, version=version, advert_int=interval))
    link.add("b", params("b", 100, version=version, advert_int=interval))
    link.start("a")
    link.start("b")
    link.run_until(20.0, None)
    assert_one_master(link, "a")
    # a took over alone, Master_Down_Interval after start.
    assert link.transitions("a")[-1] == (
        mdi(version, 200, interval),
        State.BACKUP,
        State.MASTER,
        Reason.MASTER_DOWN,
    )
    link.kill("a")
    last = link.last_advert_time("a")
    link.run_until(40.0)
    assert link.transitions("b") == [
        (0.0, State.INITIALIZE, State.BACKUP, Reason.STARTUP),
        (last + mdi(version, 100, interval), State.BACKUP, State.MASTER, Reason.MASTER_DOWN),
    ]


@pytest.mark.parametrize(("version", "interval"), [(2, 100), (3, 100), (3, 10)])
def test_priority_zero_means_takeover_after_skew_time_only(version: int, interval: int) -> None:
    link = Link()
    pa = params("a", 200, version=version, advert_int=interval)
    link.add("a", pa)
    link.add("b", params("b", 100, version=version, advert_int=interval))
    link.start("a")
    link.start("b")
    link.run_until(20.05)
    assert_one_master(link, "a")
    actions = link.stop("a")
    assert actions == [
        StateChanged(State.MASTER, State.INITIALIZE, Reason.SHUTDOWN),
        SendAdvertisement(own_advert(pa, 0)),
        ApplyRoutes(False),  # rules and routes go before the VIPs they may use
        RemoveAddresses((VIP,)),
    ]
    assert link.nodes["a"].holds == set()
    link.run_until(30.0)
    assert link.transitions("b")[-1] == (
        20.05 + skew(version, 100, interval),
        State.BACKUP,
        State.MASTER,
        Reason.PRIORITY_ZERO,
    )


def test_stop_from_backup_sends_nothing() -> None:
    inst = Instance(params("a", 100))
    inst.start(0.0)
    assert inst.stop(1.0) == [StateChanged(State.BACKUP, State.INITIALIZE, Reason.SHUTDOWN)]
    assert inst.get_timer() is None
    assert inst.stop(2.0) == []  # twice is harmless
    # In-flight packets after stop are ignored, and the instance can start again.
    assert inst.receive(advert(200), ADDR["b"], 2.5) == []
    assert inst.start(3.0) == [StateChanged(State.INITIALIZE, State.BACKUP, Reason.STARTUP)]


# ---- preempt ---------------------------------------------------------------------


def test_higher_priority_backup_coming_up_preempts_a_lower_master() -> None:
    link = Link()
    link.add("a", params("a", 100))
    link.add("b", params("b", 200))
    link.start("a")
    link.run_until(10.5)
    assert_one_master(link, "a")
    link.start("b")
    link.run_until(60.0, None)
    takeover = 10.5 + mdi(3, 200, 100)
    assert link.transitions("b") == [
        (10.5, State.INITIALIZE, State.BACKUP, Reason.STARTUP),
        (takeover, State.BACKUP, State.MASTER, Reason.PREEMPT),
    ]
    # a steps down the instant it hears b's first advert.
    assert link.transitions("a")[-1] == (
        takeover,
        State.MASTER,
        State.BACKUP,
        Reason.HIGHER_PRIORITY,
    )
    assert link.actions_of("a", RemoveAddresses)[-1].time == takeover
    assert_one_master(link, "b")


def test_nopreempt_backup_never_takes_over_from_a_live_lower_master() -> None:
    link = Link()
    link.add("a", params("a", 100))
    link.add("b", params("b", 200, preempt=False))
    link.start("a")
    link.run_until(10.5)
    link.start("b")
    link.run_until(10.5 + mdi(3, 200, 100) + 1e-6, None)
    # From here on a must stay the one master: check after every step.
    link.run_until(120.0, one_master_check("a"))
    assert link.transitions("b") == [(10.5, State.INITIALIZE, State.BACKUP, Reason.STARTUP)]
    link.kill("a")
    last = link.last_advert_time("a")
    link.run_until(140.0)
    assert link.transitions("b")[-1] == (
        last + mdi(3, 200, 100),
        State.BACKUP,
        State.MASTER,
        Reason.MASTER_DOWN,
    )


def test_nopreempt_backup_takes_over_at_skew_time_when_the_master_resigns() -> None:
    link = Link()
    link.add("a", params("a", 100))
    link.add("b", params("b", 200, preempt=False))
    link.start("a")
    link.run_until(10.5)
    link.start("b")
    link.run_until(30.25)
    link.stop("a")
    link.run_until(40.0)
    assert link.transitions("b")[-1] == (
        30.25 + skew(3, 200, 100),
        State.BACKUP,
        State.MASTER,
        Reason.PRIORITY_ZERO,
    )


@pytest.mark.parametrize("delay", [0.5, 7.5, 30.0])
def test_preempt_delay_postpones_the_takeover_by_exactly_the_delay(delay: float) -> None:
    def run(preempt_delay: float) -> tuple[Link, float]:
        link = Link()
        link.add("a", params("a", 100))
        link.add("b", params("b", 200, preempt_delay=preempt_delay))
        link.start("a")
        link.run_until(10.5)
        link.start("b")
        link.run_until(100.0, None)
        (t, old, new, reason) = link.transitions("b")[1]
        assert (old, new, reason) == (State.BACKUP, State.MASTER, Reason.PREEMPT)
        return link, t

    _, undelayed = run(0.0)
    assert undelayed == 10.5 + mdi(3, 200, 100)
    link, delayed = run(delay)
    assert delayed == undelayed + delay
    # The lower master kept the VIPs until then, and lost them at that instant.
    a = link.transitions("a")
    assert a[-1] == (delayed, State.MASTER, State.BACKUP, Reason.HIGHER_PRIORITY)
    assert [t for (t, *_rest) in a].count(delayed) == 1


def test_preempt_delay_does_not_hold_back_a_takeover_from_a_silent_master() -> None:
    link = Link()
    link.add("a", params("a", 100))
    link.add("b", params("b", 200, preempt_delay=60.0))
    link.start("a")
    link.run_until(10.5)
    link.start("b")
    link.run_until(20.0)
    assert link.masters() == ["a"]
    link.kill("a")
    last = link.last_advert_time("a")
    link.run_until(40.0)
    assert link.transitions("b")[-1] == (
        last + mdi(3, 200, 100),
        State.BACKUP,
        State.MASTER,
        Reason.MASTER_DOWN,
    )


def test_preempt_delay_restarts_after_a_master_we_follow_speaks() -> None:
    inst = Instance(params("b", 200, preempt_delay=5.0))
    inst.start(0.0)
    inst.receive(advert(100), ADDR["a"], 1.0)  # lower: hold until 3.21875 + 5
    assert inst.get_timer() == 1.0 + mdi(3, 200, 100)  # and its advert was accepted
    inst.receive(advert(250), ADDR["c"], 2.0)  # a higher master: follow it, hold cancelled
    inst.receive(advert(100), ADDR["a"], 3.0)  # lower again: hold until 5.21875 + 5
    for t in (4.0, 5.0, 6.0, 7.0, 8.0, 8.21875, 9.0, 10.0):
        inst.receive(advert(100), ADDR["a"], t)
        assert inst.handle_timer(t) == []
    assert inst.get_timer() == 10.21875
    assert inst.handle_timer(10.21875)[0] == StateChanged(
        State.BACKUP, State.MASTER, Reason.PREEMPT
    )


def test_owner_preempts_a_lower_master_at_once_even_with_preempt_off() -> None:
    link = Link()
    link.add("a", params("a", 254))
    link.add("x", params("x", 255, preempt=False))
    link.start("a")
    link.run_until(10.5)
    assert_one_master(link, "a")
    link.start("x")
    assert link.transitions("x") == [(10.5, State.INITIALIZE, State.MASTER, Reason.ADDRESS_OWNER)]
    assert link.transitions("a")[-1] == (10.5, State.MASTER, State.BACKUP, Reason.HIGHER_PRIORITY)
    link.run_until(60.0, one_master_check("x"))


def test_owner_in_backup_preempts_regardless_of_preempt_setting() -> None:
    inst = Instance(params("x", 255, preempt=False))
    assert inst.preempt_mode is True
    inst.start(0.0)
    # Another owner with a higher address wins the tie and sends us to BACKUP.
    inst.receive(advert(255), IPv4Address("192.0.2.200"), 1.0)
    assert inst.state is State.BACKUP
    # A lower master is then discarded, so the owner takes over when its timer runs out.
    inst.receive(advert(100), ADDR["a"], 2.0)
    deadline = inst.get_timer()
    assert deadline == 1.0 + mdi(3, 255, 100)
    assert inst.handle_timer(deadline)[0] == StateChanged(
        State.BACKUP, State.MASTER, Reason.PREEMPT
    )


# ---- equal priority -------------------------------------------------------------


@pytest.mark.parametrize("first", ["a", "b"])
def test_equal_priority_the_first_master_keeps_the_vips_whatever_the_addresses(first: str) -> None:
    # RFC 5798 §6.4.2 (440): a backup follows a master of greater or equal priority, so
    # the director that comes back second stays backup even with the higher address
    # (192.0.2.2 > 192.0.2.1): no failover the operator did not ask for.
    link = Link()
    link.add("a", params("a", 150))
    link.add("b", params("b", 150))
    second = "b" if first == "a" else "a"
    link.start(first)
    link.run_until(10.5)
    assert_one_master(link, first)
    link.start(second)
    link.run_until(120.0, one_master_check(first))
    assert link.transitions(second) == [(10.5, State.INITIALIZE, State.BACKUP, Reason.STARTUP)]
    assert link.transitions(first)[-1][2] is State.MASTER
    # The second one is a live backup: it takes over when the first dies.
    link.kill(first)
    last = link.last_advert_time(first)
    link.run_until(140.0)
    assert link.transitions(second)[-1] == (
        last + mdi(3, 150, 100),
        State.BACKUP,
        State.MASTER,
        Reason.MASTER_DOWN,
    )


def test_backup_with_the_higher_address_follows_an_equal_master() -> None:
    inst = Instance(params("b", 150))  # 192.0.2.2
    inst.start(0.0)
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        # 192.0.2.1 at 150: followed, its timer restarted from each advert (§6.4.2 (460)).
        assert inst.receive(advert(150), ADDR["a"], t) == []
        assert inst.handle_timer(t) == []
        assert inst.get_timer() == t + mdi(3, 150, 100)
    assert inst.state is State.BACKUP
    # Equal priority with preempt_delay: followed too, no hold is started.
    held = Instance(params("b", 150, preempt_delay=1.0))
    held.start(0.0)
    held.receive(advert(150), ADDR["a"], 1.0)
    assert held.get_timer() == 1.0 + mdi(3, 150, 100)
    assert held.handle_timer(1.0 + mdi(3, 150, 100) - 1e-9) == []


def test_equal_backups_whose_timers_run_out_together_use_the_address_tie_break() -> None:
    # b (192.0.2.2) and a (192.0.2.1) time out at the same instant; a's timer was handled
    # first and its advert reaches b at that instant. b is a master in waiting, so §6.4.3
    # (735) decides: b does not follow, its own timer fires, and a steps down.
    b = Instance(params("b", 150))
    b.start(0.0)
    due = mdi(3, 150, 100)
    assert b.receive(advert(150), ADDR["a"], due) == []
    assert b.get_timer() == due
    assert b.handle_timer(due)[0] == StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN)
    # The loser of the tie follows, and a moment earlier nobody is in a tie at all.
    a = Instance(params("a", 150))
    a.start(0.0)
    assert a.receive(advert(150), ADDR["b"], due) == []
    assert a.get_timer() == due + mdi(3, 150, 100)
    early = Instance(params("b", 150))
    early.start(0.0)
    early.receive(advert(150), ADDR["a"], due - 0.001)
    assert early.get_timer() == due - 0.001 + mdi(3, 150, 100)


def test_equal_priority_simultaneous_start_settles_in_one_instant() -> None:
    link = Link()
    link.add("a", params("a", 150))
    link.add("b", params("b", 150))
    link.start("a")
    link.start("b")
    takeover = mdi(3, 150, 100)
    link.run_until(takeover)
    assert_one_master(link, "b")
    assert link.transitions("a") == [
        (0.0, State.INITIALIZE, State.BACKUP, Reason.STARTUP),
        (takeover, State.BACKUP, State.MASTER, Reason.MASTER_DOWN),
        (takeover, State.MASTER, State.BACKUP, Reason.HIGHER_PRIORITY),
    ]


def test_master_tie_break_compares_addresses_as_integers() -> None:
    # 192.0.2.10 > 192.0.2.9 as integers, though "10" < "9" as text.
    inst = master_at(params("x", 150))
    assert inst.receive(advert(150), IPv4Address("192.0.2.10"), 1.0)[0] == StateChanged(
        State.MASTER, State.BACKUP, Reason.HIGHER_PRIORITY
    )


# ---- v3 interval learning --------------------------------------------------------


def test_v3_backup_times_the_master_by_the_masters_interval() -> None:
    link = Link()
    link.add("a", params("a", 200, advert_int=50))
    link.add("b", params("b", 100, advert_int=100))
    link.start("a")
    link.start("b")
    link.run_until(10.0)
    b = link.nodes["b"].instance
    assert b.master_adver_interval == 50
    assert b.master_down_interval == mdi(3, 100, 50)
    assert b.get_timer() == link.last_advert_time("a") + mdi(3, 100, 50)
    link.kill("a")
    last = link.last_advert_time("a")
    link.run_until(20.0)
    assert link.transitions("b")[-1][0] == last + mdi(3, 100, 50)
    # As master it advertises, and reports, its own interval.
    assert b.master_adver_interval == 100
    assert link.adverts_of("b")[-1][1].max_advert_int == 100


def test_v3_master_stepping_down_learns_the_new_masters_interval() -> None:
    inst = master_at(params("a", 100, advert_int=100), 4.0)
    inst.receive(advert(200, interval=25), ADDR["b"], 4.5)
    assert inst.state is State.BACKUP
    assert inst.master_adver_interval == 25
    assert inst.get_timer() == 4.5 + mdi(3, 100, 25)


def test_v2_backup_does_not_learn_the_interval() -> None:
    inst = Instance(params("b", 100, version=2, advert_int=100))
    inst.start(0.0)
    inst.receive(advert(200, version=2, interval=300), ADDR["a"], 1.0)
    assert inst.master_adver_interval == 100
    assert inst.get_timer() == 1.0 + mdi(2, 100, 100)


# ---- master behaviour -------------------------------------------------------------


def test_master_hearing_a_lower_priority_answers_with_advert_and_garp_burst() -> None:
    p = params("b", 200, garp=GarpSettings(lower_prio_repeat=3))
    inst = master_at(p, 3.0)
    assert inst.receive(advert(100), ADDR["a"], 4.25) == [
        SendAdvertisement(own_advert(p)),
        SendGratuitousArp((VIP.ip,), 3),
    ]
    assert inst.state is State.MASTER
    assert inst.get_timer() == 5.25  # Adver_Timer restarted from the extra advert


def test_master_answers_lower_priority_at_most_once_per_advertisement_interval() -> None:
    p = params("b", 200, garp=GarpSettings(lower_prio_repeat=3))
    inst = master_at(p, 3.0)
    answer = [SendAdvertisement(own_advert(p)), SendGratuitousArp((VIP.ip,), 3)]
    inst.handle_timer(4.0)  # the periodic advert
    assert inst.receive(advert(100), ADDR["a"], 4.25) == answer
    assert inst.get_timer() == 5.25
    # Within one Advertisement_Interval (1 s) of the answer: held back and counted; the
    # Adver_Timer is left alone.
    for t in (4.25, 4.5, 5.0, 5.2499):
        assert inst.receive(advert(100), ADDR["a"], t) == []
    assert inst.suppressed_answers == 4
    assert inst.get_timer() == 5.25
    # One interval after the answer, the next lower advert is answered again.
    assert inst.receive(advert(100), ADDR["c"], 5.25) == answer
    assert inst.suppressed_answers == 4
    # A priority-0 advert is always answered (RFC 5798 §6.4.3 (705)-(715)): backups
    # that started their Skew_Time countdown must hear that a master is still here.
    assert inst.receive(advert(0), ADDR["a"], 5.5) == [SendAdvertisement(own_advert(p))]


def test_a_master_stepping_down_sends_one_parting_advert_at_its_own_priority() -> None:
    # Not in RFC 5798: after a split brain heals, the higher master may never have heard
    # us; this advert makes it answer with its GARP burst (next test), so hosts that learnt
    # our MAC for the VIPs move back to it.
    p = params("a", 100)
    inst = master_at(p, 4.0)
    out = inst.receive(advert(200), ADDR["b"], 10.0)
    assert out[0] == StateChanged(State.MASTER, State.BACKUP, Reason.HIGHER_PRIORITY)
    assert out[-1] == SendAdvertisement(own_advert(p))  # priority 100, after the VIPs went
    assert sum(isinstance(a, SendAdvertisement) for a in out) == 1
    assert not any(isinstance(a, SendGratuitousArp) for a in out)


def test_a_long_standing_master_hearing_a_parting_advert_re_announces_its_vips() -> None:
    p = params("b", 200, garp=GarpSettings(lower_prio_repeat=5))
    inst = master_at(p, 4.0)
    out = inst.receive(own_advert(params("a", 100)), ADDR["a"], 60.0)
    assert out == [SendAdvertisement(own_advert(p)), SendGratuitousArp((VIP.ip,), 5)]


def test_a_long_standing_master_hearing_a_resignation_re_announces_its_vips() -> None:
    # A split brain healing with sync groups: the other side's group resigns this
    # instance (priority 0) on another member's step-down; its MAC may be learnt for our
    # VIPs. At most once per interval, and not right after our own takeover burst.
    p = params("b", 200, garp=GarpSettings(lower_prio_repeat=5))
    inst = master_at(p, 4.0)
    answer = [SendAdvertisement(own_advert(p)), SendGratuitousArp((VIP.ip,), 5)]
    assert inst.receive(advert(0), ADDR["a"], 60.0) == answer
    assert inst.receive(advert(0), ADDR["a"], 60.5) == [SendAdvertisement(own_advert(p))]
    assert inst.receive(advert(0), ADDR["a"], 61.0) == answer
    fresh = master_at(p, 100.0)
    assert fresh.receive(advert(0), ADDR["a"], 100.1) == [SendAdvertisement(own_advert(p))]


def test_a_flood_of_lower_priority_adverts_draws_one_answer_per_interval() -> None:
    # 10,240 spoofed adverts, one every 1/1024 s for 10 s (binary fractions: exact).
    p = params("b", 200)
    inst = master_at(p, 4.0)
    adverts = garp_bursts = answers = 0
    for k in range(1, 10 * 1024 + 1):
        now = 4.0 + k / 1024
        deadline = inst.get_timer()
        if deadline is not None and deadline <= now:
            periodic = inst.handle_timer(now)
            adverts += sum(isinstance(a, SendAdvertisement) for a in periodic)
        out = inst.receive(advert(100), ADDR["a"], now)
        answers += bool(out)
        adverts += sum(isinstance(a, SendAdvertisement) for a in out)
        garp_bursts += sum(isinstance(a, SendGratuitousArp) for a in out)
    # Answers at k = 1, 1025, ..., 9217; the periodic advert falls due at each answer
    # but the first (the answer restarted the Adver_Timer one interval ahead). The first
    # answer comes 1 ms after the takeover, whose GARP burst is that fresh: no second one.
    assert (answers, garp_bursts, adverts) == (10, 9, 19)
    assert inst.suppressed_answers == 10 * 1024 - 10
    assert inst.state is State.MASTER


def test_answer_limit_starts_afresh_with_each_mastership() -> None:
    # A 10 s interval, so the next mastership starts well within it.
    inst = master_at(params("b", 200, advert_int=1000), 4.0)
    assert inst.receive(advert(100), ADDR["a"], 4.25) != []
    inst.receive(advert(250, interval=100), ADDR["c"], 4.5)  # steps down, learns 1 s
    assert inst.state is State.BACKUP
    takeover = 4.5 + mdi(3, 200, 100)
    assert inst.handle_timer(takeover)[0] == StateChanged(
        State.BACKUP, State.MASTER, Reason.MASTER_DOWN
    )
    assert inst.receive(advert(100), ADDR["a"], takeover + 0.1) != []
    assert inst.suppressed_answers == 0


def test_split_brain_lower_master_steps_down_on_the_answer() -> None:
    link = Link()
    link.add("a", params("a", 100))
    link.add("b", params("b", 200))
    link.start("a")
    link.start("b")
    link.run_until(1.0)
    link.kill("a")
    link.run_until(10.0)
    assert link.masters() == ["b"]
    # a, cut off since 1.0 (a partition), comes back just as its own timer makes it master.
    node = link.nodes["a"]
    node.instance = Instance(node.params)
    node.instance.start(10.0 - node.instance.master_down_interval)
    node.running = True
    link.run_until(10.0)
    # b answered a's first advert with its own and a GARP burst; a stepped down at once.
    assert link.transitions("a")[-2:] == [
        (10.0, State.BACKUP, State.MASTER, Reason.MASTER_DOWN),
        (10.0, State.MASTER, State.BACKUP, Reason.HIGHER_PRIORITY),
    ]
    assert link.garps("b")[-1] == (10.0, 5)
    assert link.adverts_of("b")[-1][0] == 10.0
    assert_one_master(link, "b")


def test_master_hearing_priority_zero_answers_with_an_advert() -> None:
    p = params("b", 200)
    inst = master_at(p, 4.0)
    assert inst.receive(advert(0), ADDR["a"], 4.5) == [SendAdvertisement(own_advert(p))]
    assert inst.get_timer() == 5.5


def test_master_ignores_its_own_looped_back_advert_and_other_vrids() -> None:
    inst = master_at(params("b", 200), 4.0)
    assert inst.receive(advert(250), ADDR["b"], 4.5) == []
    assert inst.receive(advert(250, vrid=52), ADDR["c"], 4.5) == []
    assert inst.receive(advert(250, version=2), ADDR["c"], 4.5) == []
    assert inst.state is State.MASTER


def test_master_sends_adverts_every_advertisement_interval() -> None:
    link = Link()
    link.add("a", params("a", 100, advert_int=50))
    link.start("a")
    link.run_until(10.0)
    times = [t for t, _ in link.adverts_of("a")]
    # Takeover, a whole interval (RFC 5798 (1)), then every interval on the schedule of
    # multiples of 0.5 s that every instance of this interval keeps.
    takeover = mdi(3, 100, 50)
    expected = [takeover, takeover + 0.5, 2.5]
    while expected[-1] + 0.5 <= 10.0:
        expected.append(expected[-1] + 0.5)
    assert times == expected


# ---- gratuitous ARP ---------------------------------------------------------------


def test_garp_bursts_at_takeover_and_after_master_delay_only_by_default() -> None:
    link = Link()
    link.add("a", params("a", 100, vips=(VIP, VIP2)))
    link.start("a")
    link.run_until(100.0)
    t0 = mdi(3, 100, 100)
    assert link.garps("a") == [(t0, 5), (t0 + 5.0, 5)]
    assert link.actions_of("a", SendGratuitousArp)[0].action == SendGratuitousArp(
        (VIP.ip, VIP2.ip), 5
    )


def test_garp_refresh_while_master() -> None:
    garp = GarpSettings(
        master_repeat=2, master_delay=3.0, master_refresh=10.0, master_refresh_repeat=1
    )
    link = Link()
    link.add("a", params("a", 100, garp=garp))
    link.start("a")
    link.run_until(45.0)
    t0 = mdi(3, 100, 100)
    refresh = [t0 + 10.0]
    while refresh[-1] + 10.0 <= 45.0:
        refresh.append(refresh[-1] + 10.0)
    assert link.garps("a") == sorted([(t0, 2), (t0 + 3.0, 2), *[(t, 1) for t in refresh]])


def test_no_garp_after_step_down() -> None:
    garp = GarpSettings(master_refresh=2.0)
    link = Link()
    link.add("a", params("a", 100, garp=garp))
    link.add("b", params("b", 200, garp=garp))
    link.start("a")
    link.run_until(4.0)  # a master since 3.609375
    link.start("b")
    link.run_until(60.0)
    step_down = link.transitions("a")[-1][0]
    assert step_down == 4.0 + mdi(3, 200, 100)
    t0 = mdi(3, 100, 100)
    # Only the burst at takeover, and one refresh before step-down; no delayed burst at t0 + 5.
    assert link.garps("a") == [(t0, 5), (t0 + 2.0, 1)]
    assert link.garps("b")[:2] == [(step_down, 5), (step_down + 2.0, 1)]


def test_no_garp_when_repeat_is_zero() -> None:
    p = params("x", 255, garp=GarpSettings(master_repeat=0, master_delay=5.0))
    inst = Instance(p)
    actions = inst.start(0.0)
    assert not any(isinstance(a, SendGratuitousArp) for a in actions)
    assert not any(isinstance(a, SendGratuitousArp) for a in inst.handle_timer(5.0))


# ---- three instances ----------------------------------------------------------------


def three(*, preempt: bool = True) -> Link:
    link = Link()
    link.add("a", params("a", 100, preempt=preempt))
    link.add("b", params("b", 150, preempt=preempt))
    link.add("c", params("c", 200, preempt=preempt))
    return link


def test_three_started_together_elect_the_highest() -> None:
    link = three()
    for name in ("a", "b", "c"):
        link.start(name)
    link.run_until(mdi(3, 200, 100))
    link.run_until(120.0, one_master_check("c"))
    assert link.transitions("a") == [(0.0, State.INITIALIZE, State.BACKUP, Reason.STARTUP)]


def test_three_staggered_lowest_first_end_with_the_highest() -> None:
    link = three()
    link.start("a")
    link.run_until(5.0)
    link.start("b")
    link.run_until(10.0)
    link.start("c")
    link.run_until(10.0 + mdi(3, 200, 100))
    link.run_until(60.0, one_master_check("c"))
    # Each newcomer preempted the master before it.
    assert [r for (*_x, r) in link.transitions("b")] == [
        Reason.STARTUP,
        Reason.PREEMPT,
        Reason.HIGHER_PRIORITY,
    ]


def test_three_failover_chain() -> None:
    link = three()
    for name in ("a", "b", "c"):
        link.start(name)
    link.run_until(30.0)
    assert_one_master(link, "c")
    link.kill("c")
    last = link.last_advert_time("c")
    link.run_until(last + mdi(3, 150, 100))
    link.run_until(60.0, one_master_check("b"))
    link.stop("b")
    link.run_until(60.0 + skew(3, 100, 100))
    link.run_until(90.0, one_master_check("a"))
    link.start("c")  # a fresh process
    link.run_until(90.0 + mdi(3, 200, 100))
    link.run_until(120.0, one_master_check("c"))


def test_three_nopreempt_keep_the_first_master() -> None:
    link = three(preempt=False)
    link.start("a")
    link.run_until(5.0)
    link.start("c")
    link.run_until(6.0)
    link.start("b")
    link.run_until(120.0, one_master_check("a"))
    link.kill("a")
    link.run_until(125.0)
    # Silence: the highest backup has the shortest Master_Down_Interval.
    link.run_until(200.0, one_master_check("c"))


# ---- priority changes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "requested", "effective"),
    [(100, 300, 254), (100, 254, 254), (100, 255, 254), (100, 0, 1), (100, -40, 1), (100, 42, 42)],
)
def test_set_priority_clamps(base: int, requested: int, effective: int) -> None:
    inst = Instance(params("a", base))
    inst.set_priority(requested, 0.0)
    assert inst.effective_priority == effective


def test_owner_stays_255() -> None:
    inst = Instance(params("x", 255))
    assert inst.set_priority(100, 0.0) == []
    assert inst.effective_priority == 255
    inst.start(0.0)
    assert inst.set_priority(10, 1.0) == []
    assert inst.effective_priority == 255


def test_lowered_master_is_preempted_when_the_backups_timer_runs_out() -> None:
    link = Link()
    pa = params("a", 200)
    link.add("a", pa)
    link.add("b", params("b", 150))
    link.start("a")
    link.start("b")
    link.run_until(20.5)
    last_high = link.last_advert_time("a")
    # The lowered master tells the backups at once.
    assert link.set_priority("a", 100) == [SendAdvertisement(own_advert(pa, 100))]
    link.run_until(40.0)
    takeover = last_high + mdi(3, 150, 100)
    assert link.transitions("b")[-1] == (takeover, State.BACKUP, State.MASTER, Reason.PREEMPT)
    assert link.transitions("a")[-1] == (
        takeover,
        State.MASTER,
        State.BACKUP,
        Reason.HIGHER_PRIORITY,
    )
    assert_one_master(link, "b")


def test_master_recovering_priority_in_time_stops_the_preemption() -> None:
    link = Link()
    link.add("a", params("a", 200))
    link.add("b", params("b", 150))
    link.start("a")
    link.start("b")
    link.run_until(20.5)
    link.set_priority("a", 100)
    link.run_until(21.0)
    link.set_priority("a", 200)  # heard by b before its timer runs out
    link.run_until(60.0, one_master_check("a"))


def test_raised_backup_preempts() -> None:
    link = Link()
    link.add("a", params("a", 150))
    link.add("b", params("b", 100))
    link.start("a")
    link.start("b")
    link.run_until(20.5)
    last_followed = link.last_advert_time("a")
    assert link.set_priority("b", 180) == []
    link.run_until(40.0)
    # The timer armed by the last accepted advert (old priority) runs out.
    takeover = last_followed + mdi(3, 100, 100)
    assert link.transitions("b")[-1] == (takeover, State.BACKUP, State.MASTER, Reason.PREEMPT)
    assert_one_master(link, "b")


def test_lowering_below_the_master_cancels_a_preempt_delay_hold() -> None:
    inst = Instance(params("b", 200, preempt_delay=2.0))
    inst.start(0.0)
    inst.receive(advert(150), ADDR["a"], 1.0)  # hold until 3.21875 + 2
    inst.set_priority(120, 1.5)
    for t in (2.0, 3.0, 4.0, 5.0, 5.21875, 6.0):
        inst.receive(advert(150), ADDR["a"], t)
        assert inst.handle_timer(t) == []
    assert inst.state is State.BACKUP


# ---- interface down / up ---------------------------------------------------------------


def test_interface_down_and_up_on_the_master() -> None:
    link = Link()
    link.add("a", params("a", 200))
    link.add("b", params("b", 100))
    link.start("a")
    link.start("b")
    link.run_until(20.5)
    last = link.last_advert_time("a")
    assert link.interface_down("a") == [
        StateChanged(State.MASTER, State.FAULT, Reason.INTERFACE_DOWN),
        ApplyRoutes(False),
        RemoveAddresses((VIP,)),
    ]
    a = link.nodes["a"].instance
    assert a.get_timer() is None
    link.run_until(40.0)
    assert link.transitions("b")[-1] == (
        last + mdi(3, 100, 100),
        State.BACKUP,
        State.MASTER,
        Reason.MASTER_DOWN,
    )
    # Adverts reach a's instance, but in FAULT they are ignored.
    assert a.state is State.FAULT
    assert a.receive(advert(100), ADDR["b"], 40.0) == []
    assert a.handle_timer(40.0) == []
    assert link.interface_down("a") == []
    assert link.interface_up("a") == [StateChanged(State.FAULT, State.BACKUP, Reason.INTERFACE_UP)]
    assert a.get_timer() == 40.0 + mdi(3, 200, 100)
    link.run_until(80.0)
    assert_one_master(link, "a")  # a preempts b again
    assert link.transitions("a")[-1] == (
        40.0 + mdi(3, 200, 100),
        State.BACKUP,
        State.MASTER,
        Reason.PREEMPT,
    )


def test_interface_down_on_a_backup_and_owner_recovery() -> None:
    inst = Instance(params("b", 100))
    inst.start(0.0)
    assert inst.interface_down(1.0) == [
        StateChanged(State.BACKUP, State.FAULT, Reason.INTERFACE_DOWN)
    ]
    assert inst.get_timer() is None
    owner = Instance(params("x", 255))
    owner.start(0.0)
    owner.interface_down(1.0)
    assert owner.interface_up(2.0) == become_master_actions(
        owner.params, State.FAULT, Reason.INTERFACE_UP
    )


def test_interface_down_before_start_starts_in_fault() -> None:
    inst = Instance(params("a", 100))
    assert inst.interface_down(0.0) == []
    assert inst.start(1.0) == [StateChanged(State.INITIALIZE, State.FAULT, Reason.INTERFACE_DOWN)]
    assert inst.interface_up(2.0) == [StateChanged(State.FAULT, State.BACKUP, Reason.INTERFACE_UP)]
    assert inst.stop(3.0) == [StateChanged(State.BACKUP, State.INITIALIZE, Reason.SHUTDOWN)]


# ---- misuse and bad input ----------------------------------------------------------------


def test_receive_before_start_is_our_bug() -> None:
    with pytest.raises(InstanceUsageError, match="before start"):
        Instance(params("a", 100)).receive(advert(100), ADDR["b"], 0.0)


def test_start_twice_is_our_bug() -> None:
    inst = Instance(params("a", 100))
    inst.start(0.0)
    with pytest.raises(InstanceUsageError, match="BACKUP"):
        inst.start(1.0)


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 4},
        {"priority": 0},
        {"priority": 256},
        {"advert_int": 0},
        {"advert_int": 4096},
        {"version": 2, "advert_int": 150},
        {"preempt_delay": -1.0},
        {"vrid": 0},
        {"max_advert_addresses": 0},
        {"max_advert_addresses": 256},
    ],
)
def test_bad_params_are_rejected(changes: dict[str, Any]) -> None:
    bad = dataclasses.replace(params("a", 100), **changes)
    with pytest.raises(ValueError, match="instance 'a'"):
        Instance(bad)


def test_odd_network_input_never_raises() -> None:
    inst = Instance(params("a", 100))
    inst.start(0.0)
    # A zero interval (the codec should have dropped it) is not learnt.
    assert inst.receive(advert(200, interval=0), ADDR["b"], 1.0) == []
    assert inst.master_adver_interval == 100
    # Equal priority: followed (RFC 5798 §6.4.2), from a source of either family.
    assert inst.receive(advert(100), IPv4Address("192.0.2.250"), 1.5) == []
    assert inst.receive(advert(100), IPv6Address("2001:db8::1"), 2.0) == []
    assert inst.state is State.BACKUP


# ---- property: never two masters, never none, once converged ------------------------------

NAMES = ("a", "b", "c")
INTERVALS = (50, 100)
MAX_DELAY = 1.5
# Longest chain: a master dies (Master_Down_Interval, under 4 intervals), then up to two
# successive preemptions, each waiting at most Master_Down_Interval plus preempt_delay.
CONVERGENCE = 3 * (4 * max(INTERVALS) / 100 + MAX_DELAY) + 1.0
# Then watch for longer than any timer can run, to catch a flap.
STABLE = 2 * (4 * max(INTERVALS) / 100 + MAX_DELAY)


class Election(RuleBasedStateMachine):
    @initialize(
        version=st.sampled_from([2, 3]),
        configs=st.lists(
            st.tuples(
                st.sampled_from([1, 100, 100, 150, 254, 255]),
                st.booleans(),
                st.sampled_from(INTERVALS),
                st.sampled_from([0.0, 0.0, MAX_DELAY]),
            ),
            min_size=2,
            max_size=3,
        ),
    )
    def build(self, version: int, configs: list[tuple[int, bool, int, float]]) -> None:
        self.link = Link()
        for name, (priority, preempt, interval, delay) in zip(NAMES, configs, strict=False):
            self.link.add(
                name,
                params(
                    name,
                    priority,
                    version=version,
                    advert_int=100 if version == 2 else interval,
                    preempt=preempt,
                    preempt_delay=delay,
                ),
            )

    def _pick(self, data: st.DataObject) -> str:
        # Half the time, the current master: disturbing it is where elections go wrong.
        masters = self.link.masters()
        prefer_master: bool = data.draw(st.booleans())
        if masters and prefer_master:
            return masters[0]
        return data.draw(st.sampled_from(sorted(self.link.nodes)))

    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        name = self._pick(data)
        if not self.link.nodes[name].running:
            self.link.start(name)

    @rule(data=st.data())
    def stop(self, data: st.DataObject) -> None:
        name = self._pick(data)
        if self.link.nodes[name].running:
            self.link.stop(name)

    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        self.link.kill(self._pick(data))

    @rule(data=st.data(), priority=st.integers(-10, 300))
    def set_priority(self, data: st.DataObject, priority: int) -> None:
        name = self._pick(data)
        if self.link.nodes[name].running:
            self.link.set_priority(name, priority)

    @rule(data=st.data(), up=st.booleans())
    def interface(self, data: st.DataObject, up: bool) -> None:
        name = self._pick(data)
        if self.link.nodes[name].running:
            (self.link.interface_up if up else self.link.interface_down)(name)

    @rule(seconds=st.floats(0.0, 5.0))
    def advance(self, seconds: float) -> None:
        self.link.run_for(seconds)

    @precondition(lambda self: hasattr(self, "link"))
    @rule()
    def settle(self) -> None:
        """Leave it alone: converged, it has one master and stays so, without a flap."""
        self.link.run_for(CONVERGENCE)
        self.check_converged(self.link)
        changes = len(self.link.actions_of_kind(StateChanged))
        self.link.run_for(STABLE, self.check_converged)
        assert len(self.link.actions_of_kind(StateChanged)) == changes, "flapped after settling"

    @staticmethod
    def check_converged(link: Link) -> None:
        alive = [
            n for n in link.nodes.values() if n.running and n.state in (State.BACKUP, State.MASTER)
        ]
        if alive:
            assert_one_master(link)
            # Nobody who would preempt outranks the master; an equal one follows it
            # (RFC 5798 §6.4.2 (440)).
            master = link.nodes[link.masters()[0]].instance
            for node in alive:
                if node.instance.preempt_mode:
                    assert node.instance.effective_priority <= master.effective_priority
        else:
            assert link.masters() == []

    @invariant()
    def timers_never_in_the_past(self) -> None:
        if hasattr(self, "link"):
            deadline = self.link.next_deadline()
            assert deadline is None or deadline >= self.link.now

    def teardown(self) -> None:
        if hasattr(self, "link"):
            self.settle()


TestElection = Election.TestCase
TestElection.settings = settings(
    max_examples=200,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
