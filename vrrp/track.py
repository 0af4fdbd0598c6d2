"""Tracked items -> an instance's effective priority and tracking faults, as keepalived has it.

Pure: no clock, no I/O. The engine (vrrp/io.py) hands `evaluate()` the items an instance
tracks (its own and its sync group's) and the latest verdict of each thing tracked; it gets
back the effective priority, the faults that hold the instance in FAULT, and the items that
have no verdict yet. The rules, checked against keepalived.conf(5) and keepalived's
vrrp_track.c (2.2.x):

| kind      | weight w != 0 (m = -1 with `reverse`, else 1)            | weight 0           |
|-----------|----------------------------------------------------------|--------------------|
| interface | up: +m*w if w > 0; down: +m*w if w < 0                    | FAULT while down   |
| script    | as interface (up: `rise` successes; down: `fall` fails)   | FAULT while down   |
| process   | as interface (up: quorum <= count <= quorum_max)          | FAULT while down   |
| file      | v*w*m, clamped to -254..253; -254 (or less): FAULT        | FAULT while v != 0 |

(`reverse` with weight 0 inverts the condition: FAULT while *up*, or for a file while v is 0.)

Effective priority = base + the sum of the contributions, clamped to 1..254 (0 means
"resigning" and 255 "address owner", RFC 5798 §5.2.4); an address owner (base 255) stays
255 whatever its items say. keepalived also gives an owner's and a sync-group member's items
weight 0 (so they FAULT rather than lower the priority); the config layer does that before
the items get here (hacontrol/desired.py).

A verdict that is not known yet (a script before its first result) contributes nothing
with a weight; with weight 0 it is *pending*: keepalived keeps such an instance in INIT
until every weight-0 script has reported once, and so does the engine.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

OWNER_PRIORITY = 255
MAX_PRIORITY = 254  # the most a non-owner may advertise (RFC 5798 §5.2.4)
MIN_PRIORITY = 1  # 0 means "resigning" (RFC 5798 §5.2.4)
# keepalived's range for a file's value and for value * weight: -254 means FAULT.
FILE_FAULT = -254
FILE_MAX = 253
FILE_VALUE_LIMIT = 254


class TrackKind(enum.Enum):
    INTERFACE = "interface"
    SCRIPT = "script"
    FILE = "file"
    PROCESS = "process"


@dataclass(frozen=True, slots=True)
class TrackedItem:
    """One thing an instance (or its sync group) tracks, with the weight it tracks it by."""

    kind: TrackKind
    name: str  # the interface, or the vrrp_script / track_file / track_process name
    weight: int = 0  # -254..254; 0: FAULT while down
    reverse: bool = False

    @property
    def key(self) -> TrackKey:
        return (self.kind, self.name)

    @property
    def label(self) -> str:
        """The stable word for this item in faults, logs and status: `script:chk_web`."""
        return f"{self.kind.value}:{self.name}"


TrackKey = tuple[TrackKind, str]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The latest state of one tracked thing.

    `up`: None until known (a script before its first result). `value`: a track file's
    number (already limited to -254..254); unused for the other kinds.
    """

    up: bool | None
    value: int = 0

    @classmethod
    def of_file(cls, value: int) -> Verdict:
        return cls(True, max(-FILE_VALUE_LIMIT, min(FILE_VALUE_LIMIT, value)))


PENDING = Verdict(None)


class Effect(enum.Enum):
    NONE = "none"  # contributes 0
    PRIORITY = "priority"  # contributes `delta`
    FAULT = "fault"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class ItemState:
    """What one item does to the instance right now (status shows it)."""

    item: TrackedItem
    verdict: Verdict
    effect: Effect
    delta: int = 0


@dataclass(frozen=True, slots=True)
class TrackResult:
    priority: int  # effective priority
    faults: tuple[str, ...]  # labels of the items holding the instance in FAULT, sorted
    pending: tuple[str, ...]  # labels of weight-0 items without a verdict yet, sorted
    items: tuple[ItemState, ...]


def item_state(item: TrackedItem, verdict: Verdict) -> ItemState:
    """keepalived's contribution of one item (the table in the module docstring)."""
    multiplier = -1 if item.reverse else 1
    if verdict.up is None:
        effect = Effect.PENDING if item.weight == 0 else Effect.NONE
        return ItemState(item, verdict, effect)
    if item.kind is TrackKind.FILE:
        if item.weight == 0:
            failed = (verdict.value != 0) != item.reverse
            return ItemState(item, verdict, Effect.FAULT if failed else Effect.NONE)
        status = verdict.value * item.weight * multiplier
        if status <= FILE_FAULT:
            return ItemState(item, verdict, Effect.FAULT)
        delta = min(status, FILE_MAX)
        return ItemState(item, verdict, Effect.PRIORITY if delta else Effect.NONE, delta)
    up = verdict.up
    if item.weight == 0:
        # keepalived: `script_ok != (multiplier == 1)` puts the instance down.
        return ItemState(item, verdict, Effect.FAULT if up == item.reverse else Effect.NONE)
    if (up and item.weight > 0) or (not up and item.weight < 0):
        return ItemState(item, verdict, Effect.PRIORITY, item.weight * multiplier)
    return ItemState(item, verdict, Effect.NONE)


def clamp_priority(base: int, total: int) -> int:
    """keepalived's vrrp_set_effective_priority: the owner keeps 255, anyone else 1..254."""
    if base == OWNER_PRIORITY:
        return OWNER_PRIORITY
    return max(MIN_PRIORITY, min(MAX_PRIORITY, total))


def evaluate(
    base: int, items: Iterable[TrackedItem], verdicts: Mapping[TrackKey, Verdict]
) -> TrackResult:
    """The effective priority, faults and pending items of one instance."""
    states = tuple(item_state(item, verdicts.get(item.key, PENDING)) for item in items)
    total = base + sum(s.delta for s in states if s.effect is Effect.PRIORITY)
    return TrackResult(
        priority=clamp_priority(base, total),
        faults=tuple(sorted({s.item.label for s in states if s.effect is Effect.FAULT})),
        pending=tuple(sorted({s.item.label for s in states if s.effect is Effect.PENDING})),
        items=states,
    )


FAULT_PREFIX = "track_"  # fault names from tracking: `track_script:chk_web`, ...


def fault_name(label: str) -> str:
    """The fault an item's label becomes in the state machine's fault set."""
    return FAULT_PREFIX + label


__all__ = [
    "PENDING",
    "Effect",
    "ItemState",
    "TrackKey",
    "TrackKind",
    "TrackResult",
    "TrackedItem",
    "Verdict",
    "clamp_priority",
    "evaluate",
    "fault_name",
    "item_state",
]
