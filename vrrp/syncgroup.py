"""The sync-group rule (keepalived's vrrp_sync_group), pure: members' joint state -> inputs.

A sync group's instances are MASTER together or none is. The engine (vrrp/io.py) describes
each member with a `Member` after every member's transition, asks `next_inputs()` what
each member must be told, feeds those inputs to the members' state machines, and asks
again until nothing is left (a fixed point; h11's `_state.py` shape). keepalived's rules
(vrrp_sync.c, vrrp_track.c, 2.2.x), as rows of one table keyed by the joint state:

| joint state                                                  | input to each member          |
|--------------------------------------------------------------|-------------------------------|
| a member is in FAULT of its own (link, address, tracking)    | the others: SET_FAULT         |
| no member has a fault of its own                             | those held: CLEAR_FAULT       |
| every member is MASTER or wants to be, one at least wants    | the wanting: PROMOTE          |
| a member is MASTER while another is BACKUP and does not want  | the MASTERs: TO_BACKUP        |

- FAULT (vrrp_sync_fault): one member going FAULT takes every other member to FAULT (a
  master resigns first). The group leaves FAULT when no member has a fault of its own any
  more (try_up_instance counts num_member_fault down to 0): the members start over as
  BACKUP, like an instance whose fault clears.
- MASTER (vrrp_sync_can_goto_master): a member whose Master_Down_Timer (or preemption)
  fires does not take over alone; it *wants* MASTER and keeps listening. The group goes
  MASTER when every member wants it (or is MASTER already): "prefer backup to avoid
  thrashing". A member that still hears a master it follows keeps the group BACKUP.
- BACKUP (vrrp_sync_backup): a master member that steps down (it heard a higher
  priority) takes the other masters down with it.

A member that has not started yet (INIT: a weight-0 track script with no result) neither
wants MASTER nor lets the others take over without it (keepalived's num_member_init).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from vrrp.types import State


class Input(enum.Enum):
    SET_FAULT = "set_fault"  # hold the member in FAULT for the group
    CLEAR_FAULT = "clear_fault"  # release that hold
    PROMOTE = "promote"  # a member that wants MASTER becomes MASTER
    TO_BACKUP = "to_backup"  # a MASTER member steps down to BACKUP


@dataclass(frozen=True, slots=True)
class Member:
    """What the rule needs to know of one member."""

    state: State
    own_fault: bool = False  # a fault of its own (interface, address, tracking)
    group_fault: bool = False  # held in FAULT by the group
    wants_master: bool = False  # a BACKUP whose takeover is due, waiting for the others


def next_inputs(members: Mapping[str, Member]) -> dict[str, Input]:
    """The input each member must get now (none: the joint state is stable)."""
    out: dict[str, Input] = {}
    if any(m.own_fault for m in members.values()):
        for name, m in members.items():
            if not m.own_fault and not m.group_fault:
                out[name] = Input.SET_FAULT
        return out
    held = [name for name, m in members.items() if m.group_fault]
    if held:
        return dict.fromkeys(held, Input.CLEAR_FAULT)
    wanting = [n for n, m in members.items() if m.state is State.BACKUP and m.wants_master]
    masters = [n for n, m in members.items() if m.state is State.MASTER]
    ready = all(m.state is State.MASTER or name in wanting for name, m in members.items())
    if wanting and ready:
        return dict.fromkeys(wanting, Input.PROMOTE)
    if masters and not ready:
        return dict.fromkeys(masters, Input.TO_BACKUP)
    return out


def group_state(members: Mapping[str, Member]) -> State:
    """The group's state as status and notify hooks report it (keepalived's vgroup->state):
    FAULT while any member is, MASTER when all are, INIT before any has started, else
    BACKUP."""
    states = [m.state for m in members.values()]
    if any(s is State.FAULT for s in states) or any(m.own_fault for m in members.values()):
        return State.FAULT
    if states and all(s is State.MASTER for s in states):
        return State.MASTER
    if states and all(s is State.INITIALIZE for s in states):
        return State.INITIALIZE
    return State.BACKUP


__all__ = ["Input", "Member", "group_state", "next_inputs"]
