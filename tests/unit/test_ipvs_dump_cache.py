"""The dump decoder's cache: equal bytes give the very same objects, any change is decoded.

Kernel answers are made here in ip_vs_genl_fill_service() / ip_vs_genl_fill_dest() layout
(benchmarks/ipvs_apply.py ``kernel_answers``, the layout the fast path of decode_dest reads);
what a no-drift pass must do (hash bytes, decode nothing) and what drift must do (decode
exactly what changed) are asserted by identity and by the decoder's own count.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from dataclasses import replace
from pathlib import Path

from hacontrol.ipvs.model import ForwardingMethod, RealServer, ServiceKey, Table, VirtualService
from hacontrol.ipvs.netlink import (
    DestCounters,
    DumpDecoder,
    Snapshot,
    Stats,
    decode_dest,
    decode_service,
)
from hacontrol.ipvs.plan import PlanMemo, plan

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from ipvs_apply import build_table, kernel_answers

Answers = list[tuple[bytes, list[bytes]]]


def dump(decoder: DumpDecoder, answers: Answers) -> Table:
    decoder.begin()
    for raw_svc, raws in answers:
        decoder.servers(decoder.service(memoryview(raw_svc)), [memoryview(r) for r in raws])
    return decoder.finish()


def fresh(answers: Answers) -> Table:
    """What decoding everything from scratch gives (no cache)."""
    out = []
    for raw_svc, raws in answers:
        svc, _ = decode_service(memoryview(raw_svc))
        family = svc.key.family
        servers = tuple(decode_dest(memoryview(r), family)[0] for r in raws)
        out.append(replace(svc, real_servers=servers))
    return Table.of(out)


def poke(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


# Offsets in a real server's payload (_DEST_FIXED): WEIGHT's value, ACTIVE_CONNS' value, the
# first u64 of the STATS64 nest (after STATS: 116 + 4 + 10 attributes + 4 + 4).
WEIGHT_AT = 20 + 8 + 8 + 4
ACTIVE_AT = 88
STATS64_FIRST_AT = 116 + (4 + 8 * 8 + 2 * 12) + 4 + 4


def test_layout_offsets_are_what_the_decoder_reads() -> None:
    (_, raws), *_ = kernel_answers(build_table(1))
    rs, counters = decode_dest(memoryview(raws[0]), 2)
    assert rs.weight == 1 and counters.active_conns == 3
    assert decode_dest(memoryview(poke(raws[0], WEIGHT_AT, "=I", 9)), 2)[0].weight == 9
    changed = decode_dest(memoryview(poke(raws[0], ACTIVE_AT, "=I", 77)), 2)[1]
    assert changed.active_conns == 77
    moved = decode_dest(memoryview(poke(raws[0], STATS64_FIRST_AT, "=Q", 5)), 2)[1]
    assert moved.stats.conns == 5


def test_unchanged_bytes_give_the_same_table_object_and_decode_nothing() -> None:
    table = build_table(30)
    answers = kernel_answers(table)
    decoder = DumpDecoder()
    first = dump(decoder, answers)
    assert decoder.decoded == 30 and first == table == fresh(answers)
    second = dump(decoder, answers)
    assert second is first and decoder.decoded == 0


def test_counters_changing_is_not_drift() -> None:
    answers = kernel_answers(build_table(5))
    decoder = DumpDecoder()
    first = dump(decoder, answers)
    busy = [
        (
            raw_svc,
            [poke(poke(r, ACTIVE_AT, "=I", 900), STATS64_FIRST_AT, "=Q", 10**9) for r in raws],
        )
        for raw_svc, raws in answers
    ]
    assert dump(decoder, busy) is first and decoder.decoded == 0


def test_each_kind_of_drift_is_decoded_afresh() -> None:
    table = build_table(6)
    answers = kernel_answers(table)
    decoder = DumpDecoder()
    before = dump(decoder, answers)
    # ipvsadm -e (a weight), ipvsadm -d (a real server), ipvsadm -D (a service), -E (scheduler)
    weight = [(s, [poke(raws[0], WEIGHT_AT, "=I", 7), *raws[1:]]) if i == 1 else (s, raws)
              for i, (s, raws) in enumerate(answers)]  # fmt: skip
    deleted_rs = [(s, raws[1:]) if i == 2 else (s, raws) for i, (s, raws) in enumerate(answers)]
    deleted_svc = answers[:3] + answers[4:]
    sched = list(answers)
    svc3 = replace(table.services[3], scheduler="rr")
    sched[3] = kernel_answers(Table.of([svc3]))[0]
    for drifted, changed in ((weight, 1), (deleted_rs, 1), (deleted_svc, 0), (sched, 1)):
        base = dump(decoder, answers)
        assert base == before
        got = dump(decoder, drifted)
        assert got is not base
        assert got == fresh(drifted)
        assert decoder.decoded == changed
        # The services that did not change are still the very same objects.
        same = [s for s in got if s is base.get(s.key)]
        assert len(same) == len(drifted) - changed
        assert plan(table, got, owned=()) != []
    # And back: the cache holds one dump, so the original bytes decode again (1 service).
    dump(decoder, sched)
    assert dump(decoder, answers) == table and decoder.decoded == 1


def test_clear_is_repaired_by_the_next_pass() -> None:
    # ipvsadm -C: an empty dump, then (after the repair) the same bytes as before.
    table = build_table(4)
    answers = kernel_answers(table)
    decoder, memo = DumpDecoder(), PlanMemo()
    kernel = dump(decoder, answers)
    assert plan(table, kernel, owned=(), memo=memo) == []
    assert len(plan(table, dump(decoder, []), owned=(), memo=memo)) == 4 + 4 * 5
    assert plan(table, dump(decoder, answers), owned=(), memo=memo) == []


def test_another_layout_is_decoded_every_time_and_still_right() -> None:
    # Attributes in another order (an older or newer kernel): no fixed-layout fingerprint, so
    # the whole payload, counters included, is compared.
    key = ServiceKey.of("tcp", "192.0.2.9", 80)
    svc = VirtualService(
        key, "wrr", real_servers=(RealServer(ipaddress.ip_address("198.51.100.9")),)
    )
    raw_svc, (raw,) = kernel_answers(Table.of([svc]))[0]
    short = raw[:116]  # no stats: shorter than the fixed layout plus stats, still decodable
    decoder = DumpDecoder()
    assert dump(decoder, [(raw_svc, [short])]) == Table.of([svc])
    assert dump(decoder, [(raw_svc, [short])]).services[0] == svc
    assert decoder.decoded == 0  # whole payload equal: the same object
    other = poke(short, WEIGHT_AT, "=I", 3)
    assert dump(decoder, [(raw_svc, [other])]).services[0].real_servers[0].weight == 3


def test_snapshot_decodes_counters_when_read() -> None:
    table = build_table(2)
    answers = kernel_answers(table)
    raw = [
        (svc.key, memoryview(raw_svc), svc.real_servers, [memoryview(r) for r in raws])
        for svc, (raw_svc, raws) in zip(table, answers, strict=True)
    ]
    snap = Snapshot.undecoded(table, raw)
    stats = Stats(*(1000 + i for i in range(1, 11)))
    expected = DestCounters(3, 4, 5, stats)
    assert snap.service_stats == {svc.key: stats for svc in table}
    assert set(snap.dest_counters.values()) == {expected}
    assert len(snap.dest_counters) == 10
    eager = Snapshot(table, snap.service_stats, snap.dest_counters)
    assert snap == eager
    assert table.services[0].real_servers[0].forwarding == ForwardingMethod.DR
