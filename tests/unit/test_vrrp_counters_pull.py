"""The VRRP process's counters are pulled: a scrape or a status asks (SendCounters)
and waits for the answer, instead of the process building and sending a snapshot of
every instance every second (a fixed cost per instance that was a third of a 1,000
instance backup's CPU). Real processes, a real socketpair."""

from __future__ import annotations

import asyncio
import pickle
import socket
import subprocess

from hacontrol.metrics import VrrpCountersCollector
from hacontrol.runtime.vrrp_host import START_TIMEOUT, VrrpSupervisor
from hacontrol.runtime.vrrp_protocol import (
    Attach,
    SendCounters,
    SetScheduling,
    code_id,
    encode,
    read_message,
)
from vrrp.events import InstanceCounters, VrrpCounters


async def test_the_real_vrrp_process_answers_a_request_for_its_counters() -> None:
    events: list[object] = []
    supervisor = VrrpSupervisor(events.append)
    await supervisor.prestart(True)
    try:
        await asyncio.wait_for(supervisor.hello.wait(), START_TIMEOUT)
        assert not [e for e in events if isinstance(e, VrrpCounters)]  # nothing unasked
        assert await supervisor.refresh_counters(timeout=START_TIMEOUT)
        assert [e for e in events if isinstance(e, VrrpCounters)] == [VrrpCounters({}, {})]
    finally:
        await supervisor.stop()


async def test_concurrent_requests_share_one_and_an_unanswered_one_times_out(
    child: tuple[subprocess.Popen[bytes], socket.socket, int],
) -> None:
    proc, theirs, fd = child
    events: list[object] = []
    supervisor = VrrpSupervisor(events.append)
    assert await supervisor.adopt({"pid": proc.pid, "fd": fd, "code": code_id()}) == "kept"
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    assert isinstance(await read_message(reader), SetScheduling)
    assert isinstance(await read_message(reader), Attach)
    try:
        first = asyncio.ensure_future(supervisor.refresh_counters(timeout=START_TIMEOUT))
        second = asyncio.ensure_future(supervisor.refresh_counters(timeout=START_TIMEOUT))
        assert isinstance(await read_message(reader), SendCounters)
        answer = VrrpCounters({"VI_1": InstanceCounters(adverts_received=7)}, {})
        writer.write(encode(answer))
        assert await first and await second
        assert answer in events
        # One request was sent for both: the next frame is the next request.
        third = asyncio.ensure_future(supervisor.refresh_counters(timeout=START_TIMEOUT))
        assert isinstance(await read_message(reader), SendCounters)
        writer.write(encode(answer))
        assert await third
        # Unanswered: the caller gets False (the last figures stay), nothing is stuck.
        assert not await supervisor.refresh_counters(timeout=0)
        assert isinstance(await read_message(reader), SendCounters)
    finally:
        await supervisor.abandon()
        writer.close()


def test_a_scrape_asks_for_fresh_counters_and_registration_does_not() -> None:
    collector = VrrpCountersCollector()
    asked: list[int] = []

    def refresh() -> None:  # as the daemon's: the answer is published before it returns
        asked.append(1)
        collector.update(VrrpCounters({"VI_1": InstanceCounters(adverts_sent=5)}, {}))

    collector.refresh = refresh
    list(collector.describe())
    assert asked == []
    sent = next(f for f in collector.collect() if f.name == "hacontrol_vrrp_adverts_sent")
    assert asked == [1]
    assert [s.value for s in sent.samples if s.name.endswith("_total")] == [5]


def test_missed_intervals_are_exported_and_survive_a_vrrp_process_restart() -> None:
    collector = VrrpCountersCollector()
    collector.update(VrrpCounters({"VI_1": InstanceCounters(intervals_missed=4)}, {}))
    collector.process_restarted()
    collector.update(VrrpCounters({"VI_1": InstanceCounters(intervals_missed=1)}, {}))
    (family,) = [
        f for f in collector.collect() if f.name == "hacontrol_vrrp_advert_intervals_missed"
    ]
    assert [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")] == [
        ({"vrrp_instance": "VI_1"}, 5)
    ]


def test_counters_pickle_whole_and_an_older_process_s_still_load() -> None:
    counters = InstanceCounters(1, 2, 3, 4, {"send_advert": 5}, intervals_missed=6)
    assert pickle.loads(pickle.dumps(counters)) == counters
    # A VRRP process of the previous release (`hacontrol restart` after an upgrade) pickles
    # five arguments: the field added since comes last, with its default.
    make, arguments = counters.__reduce__()
    assert make(*arguments[:5]) == InstanceCounters(1, 2, 3, 4, {"send_advert": 5})
