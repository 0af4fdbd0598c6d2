"""Spread dumps: a large table's real servers read over two dumps, and what that may not cost.

``IpvsNetlink.dump`` runs here over kernel answers made in ip_vs_genl_fill_service() /
ip_vs_genl_fill_dest() layout (benchmarks/ipvs_apply.py ``kernel_answers``): only the socket
is replaced (``_dump_attrs``, which asks the kernel one dump and returns its attributes), so
the loop that decides what to ask the kernel for is the daemon's own. The kernel tier proves
the same against the real kernel (tests/kernel/test_ipvs_apply.py).
"""

from __future__ import annotations

import errno
import sys
from dataclasses import replace
from pathlib import Path

from hacontrol.ipvs.errors import IpvsError
from hacontrol.ipvs.model import ServiceKey, Table
from hacontrol.ipvs.netlink import (
    IPVS_CMD_GET_DEST,
    IPVS_CMD_GET_SERVICE,
    SPREAD_ABOVE,
    DumpDecoder,
    IpvsNetlink,
    decode_service,
)
from hacontrol.ipvs.plan import PlanMemo, plan

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from ipvs_apply import build_table, kernel_answers

from tests.unit.test_ipvs_dump_cache import ACTIVE_AT, WEIGHT_AT, poke

Answers = list[tuple[bytes, list[bytes]]]


class CannedKernel(IpvsNetlink):
    """The transport with its socket replaced by canned answers (``answers``, settable)."""

    def __init__(self, answers: Answers, spread_above: int) -> None:  # no socket
        self._decoder = DumpDecoder()
        self.spread_above = spread_above
        self.answers = answers
        self.asked: list[ServiceKey] = []  # whose real servers each dump asked for
        self.gone: set[ServiceKey] = set()

    def _dump_attrs(
        self, cmd: int, attrs: bytes, attr_type: int, service: ServiceKey | None = None
    ) -> list[memoryview]:
        if cmd == IPVS_CMD_GET_SERVICE:
            self.asked = []
            return [memoryview(svc) for svc, _ in self.answers]
        assert cmd == IPVS_CMD_GET_DEST and service is not None
        self.asked.append(service)
        if service in self.gone:
            raise IpvsError(errno.ESRCH, f"dump service {service}", "No such process")
        for svc, raws in self.answers:
            if decode_service(memoryview(svc), with_stats=False)[0].key == service:
                return [memoryview(r) for r in raws]
        raise IpvsError(errno.ESRCH, f"dump service {service}", "No such process")

    def table(self, *, spread: bool = True) -> Table:
        return self.dump(counters=False, spread=spread).table


def weight_changed(answers: Answers, index: int, weight: int) -> Answers:
    out = list(answers)
    svc, raws = out[index]
    out[index] = (svc, [poke(raws[0], WEIGHT_AT, "=I", weight), *raws[1:]])
    return out


def test_a_table_up_to_the_limit_is_read_whole_every_dump() -> None:
    assert SPREAD_ABOVE == 1000
    answers = kernel_answers(build_table(30))
    kernel = CannedKernel(answers, spread_above=30)
    for _ in range(3):
        kernel.table()
        assert len(kernel.asked) == 30


def test_above_the_limit_each_dump_reads_half_and_every_service_every_second_dump() -> None:
    table = build_table(30)
    kernel = CannedKernel(kernel_answers(table), spread_above=10)
    first = kernel.table()
    assert first == table and len(kernel.asked) == 30  # nothing to carry yet
    halves = []
    for _ in range(4):
        got = kernel.table()
        # Nothing changed: the very table object of the previous dump (plan.PlanMemo's cue).
        assert got is first
        assert len(kernel.asked) == 15 and kernel._decoder.servers_read == 15
        halves.append(set(kernel.asked))
    assert halves[0] | halves[1] == set(table.keys())
    assert halves[0] == halves[2] and halves[1] == halves[3]
    assert not halves[0] & halves[1]


def test_drift_by_hand_is_seen_within_two_dumps_wherever_it_is() -> None:
    table = build_table(20)
    answers = kernel_answers(table)
    memo = PlanMemo()
    for index in range(20):
        kernel = CannedKernel(answers, spread_above=10)
        kernel.table()
        kernel.table()
        kernel.answers = weight_changed(answers, index, 9)  # ipvsadm -e behind our back
        seen = [plan(table, kernel.table(), owned=(), memo=memo) for _ in range(2)]
        assert seen[0] or seen[1], index
        (op,) = seen[1] or seen[0]
        assert op.service.key == table.services[index].key
        assert str(op).startswith("edit real server"), str(op)


def test_a_written_service_is_read_by_the_next_dump() -> None:
    table = build_table(20)
    kernel = CannedKernel(kernel_answers(table), spread_above=10)
    kernel.table()
    kernel.table()
    carried_next = list(kernel.asked)  # read now: carried by the next dump
    assert len(carried_next) == 10
    written = carried_next[3]
    kernel._decoder.touch([written])  # what IpvsNetlink.apply does before it sends
    kernel.table()
    assert written in kernel.asked and len(kernel.asked) == 11
    # Read after the write, it takes its turns again (read by dump 4, carried by dump 5).
    kernel.table()
    assert written in kernel.asked and len(kernel.asked) == 10
    kernel.table()
    assert written not in kernel.asked and len(kernel.asked) == 10


def test_a_service_whose_settings_changed_or_that_is_new_is_read_whole() -> None:
    table = build_table(20)
    answers = kernel_answers(table)
    kernel = CannedKernel(answers, spread_above=10)
    kernel.table()
    kernel.table()
    would_carry = list(kernel.asked)  # read now: carried by the next dump
    index = list(table.keys()).index(would_carry[0])
    changed = list(answers)
    other = replace(table.services[index], scheduler="rr")
    changed[index] = kernel_answers(Table.of([other]))[0]
    kernel.answers = changed
    got = kernel.table()
    assert would_carry[0] in kernel.asked
    assert got.services[index] == other
    # A service added by hand, with real servers, is read whole the first time it is seen.
    extra = build_table(21).services[20]
    kernel.answers = [*changed, *kernel_answers(Table.of([extra]))]
    got = kernel.table()
    assert extra.key in kernel.asked and got.get(extra.key) == extra


def test_a_service_gone_between_the_two_dumps_is_left_out() -> None:
    table = build_table(12)
    answers = kernel_answers(table)
    kernel = CannedKernel(answers, spread_above=10)
    kernel.table()
    gone = table.services[5].key
    kernel.gone.add(gone)  # listed by the service dump, deleted before its own
    for _ in range(2):  # whichever half it falls in
        got = kernel.table()
        if gone not in got:
            break
    assert gone not in got and len(got) in (11, 12)


def test_counters_of_a_carried_service_are_those_of_the_dump_that_read_it() -> None:
    table = build_table(20)
    answers = kernel_answers(table)
    kernel = CannedKernel(answers, spread_above=10)
    snap = kernel.dump(counters=True, spread=True)
    assert {c.active_conns for c in snap.dest_counters.values()} == {3}
    kernel.answers = [(s, [poke(r, ACTIVE_AT, "=I", 40) for r in raws]) for s, raws in answers]
    snap = kernel.dump(counters=True, spread=True)
    assert len(kernel.asked) == 10
    counts = {key: c.active_conns for key, c in snap.dest_counters.items()}
    assert len(counts) == 100  # every real server still has its counters
    fresh = {k for k in counts if k[0] in kernel.asked}
    assert {counts[k] for k in fresh} == {40}
    assert {counts[k] for k in counts if k not in fresh} == {3}
    # The next dump reads the other half: every counter is now at most one dump old.
    snap = kernel.dump(counters=True, spread=True)
    assert {c.active_conns for c in snap.dest_counters.values()} == {40}


def test_a_dump_with_counters_reads_what_one_without_them_read() -> None:
    # A dump without counters keeps no payloads: the next one with counters cannot carry them.
    table = build_table(20)
    kernel = CannedKernel(kernel_answers(table), spread_above=10)
    kernel.table()
    snap = kernel.dump(counters=True, spread=True)
    assert len(kernel.asked) == 20 and len(snap.dest_counters) == 100
    kernel.dump(counters=True, spread=True)
    assert len(kernel.asked) == 10


def test_a_whole_dump_in_between_keeps_every_service_within_two() -> None:
    # `hacontrol status` and a drain ask for whole dumps on the same socket.
    table = build_table(20)
    kernel = CannedKernel(kernel_answers(table), spread_above=10)
    kernel.table()
    kernel.table()
    kernel.table(spread=False)
    assert len(kernel.asked) == 20
    reads = dict.fromkeys(table.keys(), 0)
    for _ in range(2):
        kernel.table()
        for k in kernel.asked:
            reads[k] += 1
    assert set(reads.values()) == {1}


def test_a_service_carried_once_is_read_next_even_when_the_order_shifts() -> None:
    # A service deleted near the top moves every later one by one place, which flips the
    # parity that picks the carried half: what was carried must still be read next.
    table = build_table(20)
    answers = kernel_answers(table)
    kernel = CannedKernel(answers, spread_above=10)
    kernel.table()
    kernel.table()
    carried = set(table.keys()) - set(kernel.asked)
    kernel.answers = answers[1:]  # ipvsadm -D of the first service
    kernel.table()
    assert carried - {table.services[0].key} <= set(kernel.asked)
