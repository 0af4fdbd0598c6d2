"""The tracking reducer (vrrp/track.py), table-driven against keepalived.conf(5) and
keepalived's vrrp_track.c: weights up/down, `reverse`, weight 0 -> FAULT, track_file's
value * weight, clamping to 1..254, the address owner, pending scripts."""

from __future__ import annotations

import pytest

from vrrp.track import (
    PENDING,
    Effect,
    TrackedItem,
    TrackKind,
    Verdict,
    evaluate,
    fault_name,
    item_state,
)

S, IF, F, P = TrackKind.SCRIPT, TrackKind.INTERFACE, TrackKind.FILE, TrackKind.PROCESS
UP, DOWN = Verdict(True), Verdict(False)


# (kind, weight, reverse, verdict) -> (effect, delta): one row per rule of the docstring.
ITEM_ROWS = [
    # A positive weight is added while up (keepalived: "a success will add +w").
    (S, 10, False, UP, Effect.PRIORITY, 10),
    (S, 10, False, DOWN, Effect.NONE, 0),
    # A negative weight is added (subtracted) while down.
    (S, -10, False, UP, Effect.NONE, 0),
    (S, -10, False, DOWN, Effect.PRIORITY, -10),
    # reverse: the direction of the adjustment is reversed.
    (S, 10, True, UP, Effect.PRIORITY, -10),
    (S, 10, True, DOWN, Effect.NONE, 0),
    (S, -10, True, DOWN, Effect.PRIORITY, 10),
    (S, -10, True, UP, Effect.NONE, 0),
    # weight 0: FAULT while down; 'weight 0 reverse': FAULT while up.
    (S, 0, False, DOWN, Effect.FAULT, 0),
    (S, 0, False, UP, Effect.NONE, 0),
    (S, 0, True, UP, Effect.FAULT, 0),
    (S, 0, True, DOWN, Effect.NONE, 0),
    # The same rules for interfaces and processes.
    (IF, 0, False, DOWN, Effect.FAULT, 0),
    (IF, 5, False, UP, Effect.PRIORITY, 5),
    (IF, -5, False, DOWN, Effect.PRIORITY, -5),
    (P, 0, False, DOWN, Effect.FAULT, 0),
    (P, 20, False, UP, Effect.PRIORITY, 20),
    (P, -20, True, DOWN, Effect.PRIORITY, 20),
    # A script with no result yet: nothing with a weight, pending with weight 0.
    (S, 10, False, PENDING, Effect.NONE, 0),
    (S, -10, False, PENDING, Effect.NONE, 0),
    (S, 0, False, PENDING, Effect.PENDING, 0),
    # track_file, weight 0: non-zero is failure, zero is OK.
    (F, 0, False, Verdict.of_file(0), Effect.NONE, 0),
    (F, 0, False, Verdict.of_file(3), Effect.FAULT, 0),
    (F, 0, False, Verdict.of_file(-3), Effect.FAULT, 0),
    (F, 0, True, Verdict.of_file(0), Effect.FAULT, 0),
    # track_file, weight w: value * w added (negative lowers), 0 adds nothing.
    (F, 1, False, Verdict.of_file(7), Effect.PRIORITY, 7),
    (F, 2, False, Verdict.of_file(-7), Effect.PRIORITY, -14),
    (F, -3, False, Verdict.of_file(5), Effect.PRIORITY, -15),
    (F, 5, False, Verdict.of_file(0), Effect.NONE, 0),
    (F, 1, True, Verdict.of_file(7), Effect.PRIORITY, -7),
    # ... limited to 253; -254 or less is FAULT ("less than -253").
    (F, 10, False, Verdict.of_file(100), Effect.PRIORITY, 253),
    (F, 1, False, Verdict.of_file(-253), Effect.PRIORITY, -253),
    (F, 1, False, Verdict.of_file(-254), Effect.FAULT, 0),
    (F, 2, False, Verdict.of_file(-127), Effect.FAULT, 0),
    (F, 254, False, Verdict.of_file(-1), Effect.FAULT, 0),
    # The value itself is limited to -254..254 (keepalived clamps what it reads).
    (F, 1, False, Verdict.of_file(10**9), Effect.PRIORITY, 253),
    (F, -1, False, Verdict.of_file(10**9), Effect.FAULT, 0),
]


@pytest.mark.parametrize(("kind", "weight", "reverse", "verdict", "effect", "delta"), ITEM_ROWS)
def test_item_rule(
    kind: TrackKind, weight: int, reverse: bool, verdict: Verdict, effect: Effect, delta: int
) -> None:
    state = item_state(TrackedItem(kind, "x", weight, reverse), verdict)
    assert (state.effect, state.delta) == (effect, delta)


def test_file_value_is_limited_when_read() -> None:
    assert Verdict.of_file(999).value == 254
    assert Verdict.of_file(-999).value == -254


# base, [(weight, up)], expected effective priority
PRIORITY_ROWS = [
    (100, [(10, True), (20, True)], 130),  # weights add up
    (100, [(10, True), (-30, False)], 80),
    (100, [(-30, False), (-30, False), (-30, False), (-30, False)], 1),  # never below 1
    (250, [(10, True)], 254),  # never above 254 without being the owner
    (200, [(100, True)], 254),
    (1, [(-50, False)], 1),
    (255, [(-50, False), (10, True)], 255),  # the owner stays 255
    (255, [], 255),
    (100, [], 100),
]


@pytest.mark.parametrize(("base", "rows", "expected"), PRIORITY_ROWS)
def test_effective_priority(base: int, rows: list[tuple[int, bool]], expected: int) -> None:
    items = [TrackedItem(S, f"s{i}", w) for i, (w, _) in enumerate(rows)]
    verdicts = {(S, f"s{i}"): Verdict(up) for i, (_, up) in enumerate(rows)}
    assert evaluate(base, items, verdicts).priority == expected


def test_faults_and_pending_are_labelled_and_sorted() -> None:
    items = [
        TrackedItem(S, "zeta", 0),
        TrackedItem(IF, "eth1", 0),
        TrackedItem(S, "alpha", 0),
        TrackedItem(F, "maint", 0),
        TrackedItem(S, "weighted", 10),
    ]
    verdicts = {
        (S, "zeta"): DOWN,
        (IF, "eth1"): DOWN,
        (F, "maint"): Verdict.of_file(0),
        (S, "weighted"): UP,
    }  # alpha: no result yet
    result = evaluate(100, items, verdicts)
    assert result.faults == ("interface:eth1", "script:zeta")
    assert result.pending == ("script:alpha",)
    assert result.priority == 110
    assert fault_name("script:zeta") == "track_script:zeta"


def test_fault_and_weight_together() -> None:
    # A weight-0 item down holds FAULT; the weighted items still say the priority it will
    # have when it comes back.
    items = [TrackedItem(IF, "eth1", 0), TrackedItem(S, "chk", -20)]
    result = evaluate(100, items, {(IF, "eth1"): DOWN, (S, "chk"): DOWN})
    assert result.faults == ("interface:eth1",)
    assert result.priority == 80
