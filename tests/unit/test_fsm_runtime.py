"""The state machine's runtime inputs: faults with reasons, the operator's step-down,
resuming mastership after a VRRP-process restart, and new parameters applied in place.

Plain floats for time, exact instants, no I/O.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Interface

import pytest

from tests.unit.test_fsm import ADDR, VIP, VIP2, mdi, params
from vrrp.fsm import (
    LINK_DOWN,
    NO_SOURCE_ADDRESS,
    NO_SUCH_INTERFACE,
    Instance,
    InstanceUsageError,
    advert_due_after,
)
from vrrp.types import (
    AddAddresses,
    Advertisement,
    ApplyRoutes,
    Reason,
    RemoveAddresses,
    SendAdvertisement,
    SendGratuitousArp,
    State,
    StateChanged,
)

VIP3 = IPv4Interface("192.0.2.102/24")


def advert(priority: int, vips: tuple[IPv4Address, ...] = (VIP.ip,)) -> Advertisement:
    return Advertisement(version=3, vrid=51, priority=priority, max_advert_int=100, addresses=vips)


def master(priority: int = 150) -> Instance:
    inst = Instance(params("a", priority))
    inst.start(0.0)
    inst.handle_timer(mdi(3, priority, 100))
    assert inst.state is State.MASTER
    return inst


# ---- faults ------------------------------------------------------------------------------


def test_fault_reasons_accumulate_and_only_the_last_one_clearing_leaves_fault() -> None:
    inst = Instance(params("a", 150))
    inst.set_fault(NO_SOURCE_ADDRESS, True, 0.0)  # before start(): remembered
    assert inst.start(0.0) == [
        StateChanged(State.INITIALIZE, State.FAULT, Reason.NO_SOURCE_ADDRESS)
    ]
    assert inst.set_fault(LINK_DOWN, True, 1.0) == []  # already in FAULT
    assert inst.faults == (LINK_DOWN, NO_SOURCE_ADDRESS)
    assert inst.set_fault(LINK_DOWN, False, 2.0) == []  # no address yet: still FAULT
    assert inst.state is State.FAULT
    actions = inst.set_fault(NO_SOURCE_ADDRESS, False, 3.0)
    assert actions == [StateChanged(State.FAULT, State.BACKUP, Reason.SOURCE_ADDRESS)]
    assert inst.get_timer() == 3.0 + mdi(3, 150, 100)  # listens first, as at start-up


def test_a_missing_interface_is_said_as_such() -> None:
    inst = Instance(params("a", 150))
    inst.set_fault(NO_SUCH_INTERFACE, True, 0.0)
    assert inst.start(0.0) == [
        StateChanged(State.INITIALIZE, State.FAULT, Reason.NO_SUCH_INTERFACE)
    ]
    assert inst.set_fault(NO_SUCH_INTERFACE, False, 5.0) == [
        StateChanged(State.FAULT, State.BACKUP, Reason.INTERFACE_UP)
    ]


def test_a_master_losing_its_address_drops_its_vips() -> None:
    inst = master()
    actions = inst.set_fault(NO_SOURCE_ADDRESS, True, 10.0)
    assert actions == [
        StateChanged(State.MASTER, State.FAULT, Reason.NO_SOURCE_ADDRESS),
        ApplyRoutes(False),
        RemoveAddresses((VIP,)),
    ]
    assert inst.get_timer() is None  # no adverts from nowhere


def test_the_owner_returns_from_fault_as_master() -> None:
    inst = Instance(params("a", 255))
    inst.set_fault(LINK_DOWN, True, 0.0)
    inst.start(0.0)
    actions = inst.set_fault(LINK_DOWN, False, 1.0)
    assert actions[0] == StateChanged(State.FAULT, State.MASTER, Reason.INTERFACE_UP)


def test_the_primary_address_follows_and_is_the_tie_break_key() -> None:
    inst = master(150)
    assert inst.primary_address == ADDR["a"]
    inst.set_primary_address(IPv4Address("192.0.2.200"))
    # An equal-priority master with a lower address than our new one: it steps down, not us.
    actions = inst.receive(advert(150), IPv4Address("192.0.2.100"), 11.0)
    assert inst.state is State.MASTER
    assert any(isinstance(a, SendAdvertisement) for a in actions)
    # Our own new address looped back is ignored.
    assert inst.receive(advert(150), IPv4Address("192.0.2.200"), 11.5) == []


# ---- step-down ---------------------------------------------------------------------------


def test_step_down_resigns_like_shutdown_and_holds_backup() -> None:
    inst = master(150)
    actions = inst.set_hold(True, 10.0)
    assert actions[0] == StateChanged(State.MASTER, State.BACKUP, Reason.STEP_DOWN)
    zero = actions[1]
    assert isinstance(zero, SendAdvertisement) and zero.advertisement.priority == 0
    assert actions[2:4] == [ApplyRoutes(False), RemoveAddresses((VIP,))]
    assert inst.get_timer() is None  # never takes over while held
    # A lower-priority master speaks: held, we follow it instead of preempting.
    inst.receive(advert(100), ADDR["b"], 11.0)
    deadline = inst.get_timer()
    assert deadline is not None
    assert inst.handle_timer(deadline) == []  # the timer lapses; still BACKUP
    assert inst.state is State.BACKUP and inst.get_timer() is None
    # The master goes silent for good: held, nobody is master, we stay BACKUP.
    assert inst.handle_timer(100.0) == []
    assert inst.state is State.BACKUP


def test_release_listens_a_whole_master_down_interval_before_taking_over() -> None:
    inst = master(150)
    inst.set_hold(True, 10.0)
    assert inst.set_hold(True, 10.5) == []  # twice is harmless
    assert inst.set_hold(False, 20.0) == []
    assert inst.get_timer() == 20.0 + mdi(3, 150, 100)
    actions = inst.handle_timer(20.0 + mdi(3, 150, 100))
    assert actions[0] == StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN)


def test_a_held_owner_starts_backup_and_takes_over_at_release() -> None:
    inst = Instance(params("a", 255))
    inst.set_hold(True, 0.0)
    assert inst.start(0.0) == [StateChanged(State.INITIALIZE, State.BACKUP, Reason.STARTUP)]
    actions = inst.set_hold(False, 5.0)
    assert actions[0] == StateChanged(State.BACKUP, State.MASTER, Reason.RELEASED)


# ---- resume ------------------------------------------------------------------------------


def test_resume_goes_straight_back_to_master() -> None:
    inst = Instance(params("a", 100))
    actions = inst.start(50.0, resume=True)
    assert actions[0] == StateChanged(State.INITIALIZE, State.MASTER, Reason.RESUME)
    assert isinstance(actions[1], SendAdvertisement)
    assert actions[2] == AddAddresses((VIP,))  # idempotent: the VIPs are still there


def test_resume_is_no_excuse_to_leave_fault_or_a_hold() -> None:
    faulty = Instance(params("a", 100))
    faulty.set_fault(LINK_DOWN, True, 0.0)
    assert faulty.start(0.0, resume=True)[0].new is State.FAULT  # type: ignore[union-attr]
    held = Instance(params("a", 100))
    held.set_hold(True, 0.0)
    assert held.start(0.0, resume=True)[0].new is State.BACKUP  # type: ignore[union-attr]


# ---- update in place -----------------------------------------------------------------------


def test_a_master_keeps_its_state_and_moves_only_the_vip_difference() -> None:
    inst = master(150)
    new = dataclasses.replace(params("a", 150), virtual_addresses=(VIP2, VIP3))
    actions = inst.update(new, 10.0)
    assert inst.state is State.MASTER
    assert actions[0] == RemoveAddresses((VIP,))
    assert actions[1] == AddAddresses((VIP2, VIP3))
    assert actions[2] == SendGratuitousArp((VIP2.ip, VIP3.ip), 5)
    sent = actions[3]
    assert isinstance(sent, SendAdvertisement)  # the address list changed: tell the backups
    assert sent.advertisement.addresses == (VIP2.ip, VIP3.ip)
    assert not any(isinstance(a, StateChanged) for a in actions)


def test_an_unchanged_advert_is_not_sent_early() -> None:
    inst = master(150)
    timer = inst.get_timer()
    garp_only = dataclasses.replace(
        params("a", 150), garp=dataclasses.replace(params("a", 150).garp, lower_prio_repeat=2)
    )
    assert inst.update(garp_only, 10.0) == []
    assert inst.get_timer() == timer


def test_a_lower_priority_is_advertised_at_once_so_a_higher_backup_can_preempt() -> None:
    inst = master(150)
    actions = inst.update(params("a", 90), 10.0)
    assert actions == [SendAdvertisement(dataclasses.replace(actions[0].advertisement))]  # type: ignore[union-attr]
    assert actions[0].advertisement.priority == 90  # type: ignore[union-attr]
    assert inst.effective_priority == 90
    # The higher backup's advert now wins: we step down (RFC 5798 §6.4.3).
    inst.receive(advert(120), ADDR["b"], 10.5)
    assert inst.state is State.BACKUP


def test_a_backup_raised_above_its_master_preempts_by_the_rfc_rules() -> None:
    inst = Instance(params("a", 100))
    inst.start(0.0)
    inst.receive(advert(120), ADDR["b"], 1.0)
    assert inst.update(params("a", 200), 2.0) == []  # nothing happens by itself...
    inst.receive(advert(120), ADDR["b"], 3.0)  # ...the next lower advert is discarded
    deadline = inst.get_timer()
    assert deadline is not None
    actions = inst.handle_timer(deadline)
    assert actions[0] == StateChanged(State.BACKUP, State.MASTER, Reason.PREEMPT)


def test_priority_offset_from_tracking_survives_a_new_base() -> None:
    inst = master(150)
    inst.set_priority(130, 1.0)  # tracking took 20 off
    inst.update(params("a", 200), 2.0)
    assert inst.effective_priority == 180


def test_update_refuses_a_new_identity() -> None:
    inst = master(150)
    with pytest.raises(InstanceUsageError):
        inst.update(dataclasses.replace(params("a", 150), vrid=52), 1.0)


# ---- advert cadence ------------------------------------------------------------------------


@pytest.mark.parametrize("interval_cs", [1, 5, 100, 4095])
def test_the_advert_schedule_has_no_cumulative_drift(interval_cs: int) -> None:
    """A timer that always fires a little late (as every real one does) must not slow the
    cadence: over a long run the number of adverts is duration / Advertisement_Interval."""
    inst = Instance(dataclasses.replace(params("a", 255), advert_int=interval_cs))
    interval = interval_cs / 100
    actions = inst.start(0.0)  # the owner: master at once, first advert at 0
    sent = sum(isinstance(a, SendAdvertisement) for a in actions)
    duration = 6000 * interval  # 6,000 intervals
    late = [0.0003, 0.0011, 0.00005, 0.0007]  # always late, never a whole interval
    i = 0
    while True:
        deadline = inst.get_timer()
        assert deadline is not None
        fire = deadline + min(late[i % len(late)], interval * 0.4)
        i += 1
        if fire > duration:
            break
        sent += sum(isinstance(a, SendAdvertisement) for a in inst.handle_timer(fire))
    # The garp timers share get_timer(); only adverts are counted.
    assert sent == 6000, sent  # one at 0, then one per interval, until 6,000 intervals
    assert inst.intervals_missed == 0  # late, but never a whole interval


def test_after_a_stall_the_schedule_restarts_without_a_burst() -> None:
    inst = Instance(dataclasses.replace(params("a", 255), advert_int=10))  # 100 ms
    inst.start(0.0)
    assert inst.get_timer() == pytest.approx(0.1)
    actions = inst.handle_timer(0.55)  # the process was stalled for half a second
    assert sum(isinstance(a, SendAdvertisement) for a in actions) == 1
    # The next one due on the schedule, not 0.2, 0.3, ... at once.
    assert inst.get_timer() == pytest.approx(0.6)
    # 0.2 to 0.5 went by without an advert of their own: what a backup saw.
    assert inst.intervals_missed == 4
    inst.handle_timer(0.6001)  # a little late: nothing missed
    assert inst.intervals_missed == 4
    inst.handle_timer(0.9)  # exactly two whole intervals late: 0.8 and 0.9 missed
    assert inst.intervals_missed == 6
    assert inst.get_timer() == pytest.approx(1.0)


def test_only_a_master_timer_firing_late_counts_missed_intervals() -> None:
    # A backup's timers and the RFC's resets (an answer to a lower priority restarts
    # the advert timer from now) are not a periodic advert that went missing.
    inst = Instance(dataclasses.replace(params("a", 100), advert_int=10))
    inst.start(0.0)
    assert inst.state is State.BACKUP
    takeover = mdi(3, 100, 10)
    inst.handle_timer(takeover + 5.0)  # the backup's timer very late: it takes over
    assert inst.state is State.MASTER
    assert inst.intervals_missed == 0


def test_masters_that_took_over_apart_advertise_together() -> None:
    """Instances of one interval keep one schedule (multiples of the interval on the
    clock), so a master's adverts leave in one wake-up and a backup hears them in one
    burst. The first interval after a takeover is the RFC's whole Advertisement_Interval;
    the one after may be shorter (never longer) to join the schedule."""
    starts = [0.0, 0.013, 0.0371, 0.05, 0.0999]
    insts = [
        Instance(dataclasses.replace(params("a", 255), vrid=10 + k, advert_int=10))
        for k in range(5)
    ]
    for inst, start in zip(insts, starts, strict=True):
        inst.start(start)  # owners: master at once
        assert inst.get_timer() == pytest.approx(start + 0.1)
    for inst in insts:
        deadline = inst.get_timer()
        assert deadline is not None
        inst.handle_timer(deadline)
    # The last one joins 0.1 ms after its first periodic advert: an extra advert once per
    # takeover rather than a gap longer than the interval.
    assert [inst.get_timer() for inst in insts] == [0.2] * 5
    for inst in insts:
        inst.handle_timer(0.2)
    assert {inst.get_timer() for inst in insts} == {0.3}  # the same float, not merely close


@pytest.mark.parametrize("advert_int", [1, 3, 7, 10, 100, 4095])
def test_the_next_advert_is_due_on_the_schedule_within_one_interval(advert_int: int) -> None:
    interval = advert_int / 100
    for step in range(2000):
        # Times on the schedule itself (k * interval, however the float rounds) and between.
        for now in (step * advert_int / 100, step * interval + 1e-9, step * 0.0123 + 100.0):
            due = advert_due_after(now, advert_int)
            assert now < due <= now + interval + 1e-9
            k = round(due * 100 / advert_int)
            assert due == k * advert_int / 100  # exactly the schedule's float


# ---- keepalived's start hint (state MASTER|BACKUP) -----------------------------------------


def test_an_owner_told_state_backup_listens_before_taking_over() -> None:
    # keepalived 2.2.7: priority 255 with `state BACKUP` enters BACKUP and becomes master
    # when the master-down timer runs out; without a state (or with MASTER) at once.
    p = dataclasses.replace(params("a", 255), initial_state=State.BACKUP)
    inst = Instance(p)
    assert inst.start(10.0) == [StateChanged(State.INITIALIZE, State.BACKUP, Reason.STARTUP)]
    takeover = 10.0 + mdi(3, 255, 100)
    assert inst.get_timer() == takeover
    assert inst.handle_timer(takeover)[0] == StateChanged(
        State.BACKUP, State.MASTER, Reason.MASTER_DOWN
    )
    for hint in (None, State.MASTER):
        eager = Instance(dataclasses.replace(params("a", 255), initial_state=hint))
        assert eager.start(10.0)[0] == StateChanged(
            State.INITIALIZE, State.MASTER, Reason.ADDRESS_OWNER
        )


def test_the_start_hint_holds_after_a_fault_too() -> None:
    # Leaving FAULT is §6.4.1 again: the hint decides as it did at start.
    inst = Instance(dataclasses.replace(params("a", 255), initial_state=State.BACKUP))
    inst.set_fault(LINK_DOWN, True, 0.0)
    inst.start(0.0)
    assert inst.set_fault(LINK_DOWN, False, 1.0) == [
        StateChanged(State.FAULT, State.BACKUP, Reason.INTERFACE_UP)
    ]


def test_state_master_on_a_non_owner_changes_nothing_at_start() -> None:
    # keepalived waits like any backup (its other effect, preempting despite nopreempt, is
    # the config's: preempt is forced on).
    inst = Instance(dataclasses.replace(params("a", 150), initial_state=State.MASTER))
    assert inst.start(0.0) == [StateChanged(State.INITIALIZE, State.BACKUP, Reason.STARTUP)]
