"""The sync-group rule (vrrp/syncgroup.py) row by row, and the rule driving real state
machines (vrrp/fsm.py) to a fixed point on a simulated LAN: two directors, each with a sync
group of two instances on two links."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from vrrp.fsm import SYNC_GROUP_FAULT, Instance
from vrrp.syncgroup import Input, Member, group_state, next_inputs
from vrrp.types import (
    Action,
    Advertisement,
    InstanceParams,
    Reason,
    SendAdvertisement,
    State,
    StateChanged,
)

M, B, F, INIT = State.MASTER, State.BACKUP, State.FAULT, State.INITIALIZE


def member(state: State, *, own: bool = False, held: bool = False, wants: bool = False) -> Member:
    return Member(state, own_fault=own, group_fault=held, wants_master=wants)


# joint state -> inputs, one row per rule in the module's table.
ROWS: list[tuple[dict[str, Member], dict[str, Input]]] = [
    # A member in FAULT of its own takes the others to FAULT (masters and backups).
    ({"a": member(F, own=True), "b": member(M)}, {"b": Input.SET_FAULT}),
    (
        {"a": member(F, own=True), "b": member(B), "c": member(M)},
        {"b": Input.SET_FAULT, "c": Input.SET_FAULT},
    ),
    # ... and keeps them there; both in FAULT of their own: nothing to do.
    ({"a": member(F, own=True), "b": member(F, held=True)}, {}),
    ({"a": member(F, own=True), "b": member(F, own=True)}, {}),
    # A member not yet started is held too.
    ({"a": member(F, own=True), "b": member(INIT)}, {"b": Input.SET_FAULT}),
    # Own faults gone: the held members are released.
    ({"a": member(B), "b": member(F, held=True)}, {"b": Input.CLEAR_FAULT}),
    # Every member wants MASTER (or is MASTER): the wanting ones are promoted.
    (
        {"a": member(B, wants=True), "b": member(B, wants=True)},
        {"a": Input.PROMOTE, "b": Input.PROMOTE},
    ),
    ({"a": member(M), "b": member(B, wants=True)}, {"b": Input.PROMOTE}),
    # One wants, the other still follows a master: the group stays BACKUP.
    ({"a": member(B, wants=True), "b": member(B)}, {}),
    ({"a": member(B, wants=True), "b": member(INIT)}, {}),
    # A MASTER beside a BACKUP that does not want MASTER: the MASTER steps down.
    ({"a": member(M), "b": member(B)}, {"a": Input.TO_BACKUP}),
    (
        {"a": member(M), "b": member(M), "c": member(B)},
        {"a": Input.TO_BACKUP, "b": Input.TO_BACKUP},
    ),
    ({"a": member(M), "b": member(INIT)}, {"a": Input.TO_BACKUP}),
    # Stable joint states.
    ({"a": member(M), "b": member(M)}, {}),
    ({"a": member(B), "b": member(B)}, {}),
    ({"a": member(INIT), "b": member(INIT)}, {}),
]


@pytest.mark.parametrize(("members", "expected"), ROWS)
def test_rule(members: dict[str, Member], expected: dict[str, Input]) -> None:
    assert next_inputs(members) == expected


@pytest.mark.parametrize(
    ("members", "state"),
    [
        ({"a": member(M), "b": member(M)}, M),
        ({"a": member(M), "b": member(B)}, B),
        ({"a": member(B), "b": member(B)}, B),
        ({"a": member(F, own=True), "b": member(F, held=True)}, F),
        ({"a": member(B, own=True), "b": member(M)}, F),  # a fault not yet carried out
        ({"a": member(INIT), "b": member(INIT)}, INIT),
        ({"a": member(INIT), "b": member(B)}, B),
    ],
)
def test_group_state(members: dict[str, Member], state: State) -> None:
    assert group_state(members) == state


# ---- the rule driving real state machines ---------------------------------------------

VIPS = {"v1": IPv4Interface("192.0.2.100/24"), "v2": IPv4Interface("198.51.100.100/24")}
ADDRS = {
    ("a", "v1"): IPv4Address("192.0.2.1"),
    ("b", "v1"): IPv4Address("192.0.2.2"),
    ("a", "v2"): IPv4Address("198.51.100.1"),
    ("b", "v2"): IPv4Address("198.51.100.2"),
}
INTERVAL = 100  # centiseconds


class Director:
    """One director's sync group of two instances, run to a fixed point as vrrp/io.py does."""

    def __init__(self, name: str, priority: int) -> None:
        self.name = name
        self.fsms = {
            inst: Instance(
                InstanceParams(
                    name=f"{name}-{inst}",
                    vrid=51,
                    version=3,
                    priority=priority,
                    advert_int=INTERVAL,
                    primary_address=ADDRS[(name, inst)],
                    virtual_addresses=(VIPS[inst],),
                )
            )
            for inst in ("v1", "v2")
        }
        for fsm in self.fsms.values():
            fsm.set_gated(True)
        self.faults: dict[str, set[str]] = {"v1": set(), "v2": set()}
        self.transitions: list[tuple[str, State, State, Reason]] = []

    def members(self) -> dict[str, Member]:
        return {
            inst: Member(
                fsm.state,
                own_fault=bool(set(fsm.faults) - {SYNC_GROUP_FAULT}),
                group_fault=SYNC_GROUP_FAULT in fsm.faults,
                wants_master=fsm.wants_master,
            )
            for inst, fsm in self.fsms.items()
        }

    def sync(self, now: float) -> list[tuple[str, Action]]:
        out: list[tuple[str, Action]] = []
        for _ in range(8):
            inputs = next_inputs(self.members())
            if not inputs:
                return out
            for inst, what in inputs.items():
                fsm = self.fsms[inst]
                if what is Input.SET_FAULT:
                    actions = fsm.set_fault(SYNC_GROUP_FAULT, True, now)
                elif what is Input.CLEAR_FAULT:
                    actions = fsm.set_fault(SYNC_GROUP_FAULT, False, now)
                elif what is Input.PROMOTE:
                    actions = fsm.promote(now)
                else:
                    actions = fsm.sync_to_backup(now)
                out.extend(self._record(inst, actions))
        raise AssertionError("no fixed point")

    def _record(self, inst: str, actions: list[Action]) -> list[tuple[str, Action]]:
        for a in actions:
            if isinstance(a, StateChanged):
                self.transitions.append((inst, a.old, a.new, a.reason))
        return [(inst, a) for a in actions]

    def feed(self, inst: str, actions: list[Action], now: float) -> list[tuple[str, Action]]:
        return self._record(inst, actions) + self.sync(now)

    def states(self) -> tuple[State, State]:
        return (self.fsms["v1"].state, self.fsms["v2"].state)


class Lan:
    """Two directors; each instance's adverts reach the peer's instance on the same link
    unless that link is down on either side. Time jumps from deadline to deadline."""

    def __init__(self, a: Director, b: Director) -> None:
        self.d = {"a": a, "b": b}
        self.now = 0.0
        self.down: set[tuple[str, str]] = set()  # (director, instance link)

    def deliver(self, sender: str, out: list[tuple[str, Action]]) -> None:
        pending = [(sender, inst, a) for inst, a in out]
        for _ in range(1000):
            if not pending:
                return
            src, inst, action = pending.pop(0)
            if not isinstance(action, SendAdvertisement):
                continue
            dst = "b" if src == "a" else "a"
            if (src, inst) in self.down or (dst, inst) in self.down:
                continue
            fsm = self.d[dst].fsms[inst]
            if fsm.state in (State.INITIALIZE, State.FAULT):
                continue
            adv: Advertisement = action.advertisement
            got = self.d[dst].feed(inst, fsm.receive(adv, ADDRS[(src, inst)], self.now), self.now)
            pending.extend((dst, i, a) for i, a in got)
        raise AssertionError("advert storm")

    def start(self) -> None:
        for name, d in self.d.items():
            for inst, fsm in d.fsms.items():
                self.deliver(name, d.feed(inst, fsm.start(self.now), self.now))

    def run_until(self, end: float) -> None:
        for _ in range(100_000):
            deadlines = [
                (t, name, inst)
                for name, d in self.d.items()
                for inst, fsm in d.fsms.items()
                if (t := fsm.get_timer()) is not None
            ]
            if not deadlines:
                return
            t, name, inst = min(deadlines)
            if t > end:
                self.now = end
                return
            self.now = t
            d = self.d[name]
            self.deliver(name, d.feed(inst, d.fsms[inst].handle_timer(t), t))
        raise AssertionError("timer storm")

    def link(self, director: str, inst: str, up: bool) -> None:
        d = self.d[director]
        if up:
            self.down.discard((director, inst))
        else:
            self.down.add((director, inst))
        actions = d.fsms[inst].set_fault("link_down", not up, self.now)
        self.deliver(director, d.feed(inst, actions, self.now))


def test_two_directors_elect_one_group_master_and_fail_over_together() -> None:
    a, b = Director("a", 200), Director("b", 100)
    lan = Lan(a, b)
    lan.start()
    lan.run_until(10.0)
    assert a.states() == (M, M)
    assert b.states() == (B, B)
    # One link down on the master: its member goes FAULT, takes the other along (which
    # resigns with priority 0 on its live link), and b's group takes over both.
    lan.link("a", "v2", up=False)
    assert a.states() == (F, F)
    assert ("v1", M, F, Reason.SYNC_GROUP) in a.transitions
    lan.run_until(lan.now + 5.0)
    assert b.states() == (M, M)
    assert group_state(b.members()) is M
    assert group_state(a.members()) is F
    # The link comes back: a's members start over as BACKUP, then preempt together.
    lan.link("a", "v2", up=True)
    assert a.states() in ((B, B),)
    lan.run_until(lan.now + 10.0)
    assert a.states() == (M, M)
    assert b.states() == (B, B)


def test_member_that_hears_a_master_keeps_the_group_backup() -> None:
    # b's v1 link is cut from a only on a's side view: b's v1 never hears a, so b's v1
    # wants MASTER; b's v2 still follows a's v2, so b's group stays BACKUP (keepalived:
    # prefer backup to avoid thrashing).
    a, b = Director("a", 200), Director("b", 100)
    lan = Lan(a, b)
    lan.start()
    lan.run_until(10.0)
    lan.down.add(("a", "v1"))  # a's v1 adverts stop reaching b (a still thinks it is up)
    lan.run_until(lan.now + 10.0)
    assert b.fsms["v1"].wants_master
    assert b.states() == (B, B)
    assert a.states() == (M, M)


def test_master_member_stepping_down_takes_the_group_along() -> None:
    a, b = Director("a", 100), Director("b", 200)
    lan = Lan(a, b)
    lan.down = {("b", "v1"), ("b", "v2")}  # b unreachable: a becomes master of both
    lan.start()
    lan.run_until(10.0)
    assert a.states() == (M, M)
    # b is back with a higher priority: b's group preempts, and when a's first member
    # hears it and steps down, a's other master member goes BACKUP with it.
    lan.down.clear()
    lan.run_until(lan.now + 10.0)
    assert b.states() == (M, M)
    assert a.states() == (B, B)
    # b's v1 advert arrives first: a's v1 steps down for it, and takes a's v2 along
    # before b's v2 advert even arrives.
    left = [(inst, r) for inst, old, new, r in a.transitions if old is M]
    assert left == [("v1", Reason.HIGHER_PRIORITY), ("v2", Reason.SYNC_GROUP)]
