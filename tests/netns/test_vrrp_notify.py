"""VRRP notify scripts and the notify FIFO with whole daemons in namespaces.

The scripts are small Python programs (tests/netns/notify_util.py's Recorder) that log
their arguments and when they started and ended; the FIFO is read by a test reader with
bounded waits. Covered: the scripts on election, failover (the master stops), FAULT (link
down) and back, and stop, in order and one at a time; a hanging script killed at its
timeout with its process group, the later ones still run in order; a FIFO nobody reads
(the daemon goes on, keeps the newest lines, counts drops), a late reader, a reader that
goes away and another that comes; a slow reader that gets every line; a reload that
removes instances (FAULT / DELETED as keepalived says) and changes scripts; sync-group
scripts in the same queue, after their members', and groups a reload removes or adds.
"""

from __future__ import annotations

import itertools
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.interop.ka_util import HaDaemon, Instance, wait_single_holder
from tests.netns.daemon_pair import ADVERT_INT, HIGH, LOW, VRID, Net, instance
from tests.netns.netns_util import wait_until
from tests.netns.notify_util import FifoReader, Recorder

pytestmark = pytest.mark.netns

SCRIPTS = ("master", "backup", "fault", "stop", "notify", "fault2", "deleted")
VIP = "192.0.2.100"


def scripts(rec: Recorder, timeout: float | None = None) -> tuple[tuple[str, Any], ...]:
    out: list[tuple[str, Any]] = [
        ("notify_master", [rec.path("master"), "a1", "b 2"]),
        ("notify_backup", [rec.path("backup")]),
        ("notify_fault", [rec.path("fault")]),
        ("notify_stop", [rec.path("stop")]),
        ("notify", [rec.path("notify"), "x"]),
    ]
    if timeout is not None:
        out.append(("notify_timeout", timeout))
    return tuple(out)


def generic(state: str, priority: int, name: str = "VI_1") -> tuple[str, ...]:
    return ("notify", "x", "INSTANCE", name, state, str(priority))


def one_at_a_time(rec: Recorder) -> None:
    """Every call started after the one before it ended (no overlap, submission order)."""
    records = rec.records()
    starts = sorted((r for r in records if "start" in r), key=lambda r: r["start"])
    ends = [r for r in records if "end" in r]
    for before, after in itertools.pairwise(starts):
        ended = [
            e["end"] for e in ends if e["name"] == before["name"] and e["args"] == before["args"]
        ]
        assert ended and min(ended) <= after["start"], (before, after)


def daemon(
    net: Net,
    name: str,
    *instances: Instance,
    metrics: bool = False,
    **global_extra: Any,
) -> HaDaemon:
    return HaDaemon(
        net.lab,
        net.a if name == "a" else net.b,
        net.tmp,
        name,
        instances,
        metrics_listen="127.0.0.1:9653" if metrics else None,
        global_extra=global_extra,
    )


def link(net: Net, ns_name: str, up: bool) -> None:
    ns = net.a if ns_name == "a" else net.b
    ns.ip("link", "set", "eth0", "up" if up else "down")


def test_scripts_on_election_failover_fault_and_stop_in_order(net: Net) -> None:
    rec_a, rec_b = Recorder(net.tmp / "a", SCRIPTS), Recorder(net.tmp / "b", SCRIPTS)
    # Adverts every second, not the pair's usual 0.2 s: a loaded machine must not make b
    # take over for a moment, which would be a transition (and scripts) of its own.
    a = daemon(net, "a", instance(HIGH, advert_int=1.0, hacontrol_extra=scripts(rec_a)))
    b = daemon(net, "b", instance(LOW, advert_int=1.0, hacontrol_extra=scripts(rec_b)))
    # b starts once a is master: started together, a slow start of a's VRRP process (a
    # loaded machine) lets b's Master_Down_Timer run out first, a transition of its own.
    a.start()
    wait_single_holder([a], VIP, "a", timeout=15)
    b.start()
    wait_single_holder([a, b], VIP, "a", timeout=15)
    # Election: both start in BACKUP (keepalived notifies BACKUP at start-up too), a wins.
    assert rec_a.wait_calls(4, timeout=10) == [
        ("backup",),
        generic("BACKUP", HIGH),
        ("master", "a1", "b 2"),
        generic("MASTER", HIGH),
    ]
    assert rec_b.wait_calls(2, timeout=10) == [("backup",), generic("BACKUP", LOW)]

    # Failover: a stops (STOP at its priority, not the resigning advert's 0), b takes over.
    assert a.stop() == 0
    assert rec_a.calls()[4:] == [("stop",), generic("STOP", HIGH)]
    wait_single_holder([a, b], VIP, "b", timeout=10)
    assert rec_b.wait_calls(4, timeout=10)[2:] == [("master", "a1", "b 2"), generic("MASTER", LOW)]

    # FAULT on link down; leaving FAULT is entering BACKUP, then MASTER (alone on the link).
    link(net, "b", up=False)
    assert rec_b.wait_calls(6, timeout=10)[4:] == [("fault",), generic("FAULT", LOW)]
    link(net, "b", up=True)
    calls = rec_b.wait_calls(10, timeout=15)
    assert calls[6:] == [
        ("backup",),
        generic("BACKUP", LOW),
        ("master", "a1", "b 2"),
        generic("MASTER", LOW),
    ]
    assert b.stop() == 0
    assert rec_b.calls()[10:] == [("stop",), generic("STOP", LOW)]
    one_at_a_time(rec_a)
    one_at_a_time(rec_b)


def test_a_hanging_script_is_killed_with_its_group_and_the_next_ones_run_in_order(
    net: Net,
) -> None:
    rec = Recorder(net.tmp / "a", SCRIPTS, behaviour={"backup": "hang"})
    a = daemon(net, "a", instance(HIGH, hacontrol_extra=scripts(rec, timeout=2.0)), metrics=True)
    a.start()
    # BACKUP's script hangs (with a child in its group); MASTER comes Master_Down_Interval
    # later and waits its turn.
    calls = rec.wait_calls(4, timeout=20)
    assert calls == [
        ("backup",),
        generic("BACKUP", HIGH),
        ("master", "a1", "b 2"),
        generic("MASTER", HIGH),
    ]
    records = {r["name"]: r for r in rec.records() if "start" in r}
    hung = records["backup"]
    assert hung["pgid"] == hung["pid"]  # its own process group, killable as a whole
    # The next script started after the daemon gave up on the hung one (the timeout is
    # logged before the kill) and not before its 2 s were up: the script's own record is
    # taken a moment after its start, by up to a few tenths on a loaded machine.
    timed_out = next(
        logged_at(line) for line in a.log_text().splitlines() if "notify.timeout" in line
    )
    assert records["notify"]["start"] >= timed_out
    assert timed_out - hung["start"] >= 2.0 - 0.5
    for pid in (hung["pid"], hung["child"]):
        wait_until(lambda pid=pid: not alive(pid), timeout=5, message=f"pid {pid} killed")
    assert not [r for r in rec.records() if r.get("name") == "backup" and "end" in r]
    ok = 'hacontrol_notify_scripts_total{result="succeeded",source="vrrp"}'
    wait_until(lambda: a.metrics()[ok] == 3, timeout=10, message="the other 3 scripts done")
    assert a.metrics()['hacontrol_notify_scripts_total{result="timed_out",source="vrrp"}'] == 1
    assert "notify.timeout event=notify_backup VI_1" in a.log_text()
    assert a.stop() == 0


def logged_at(line: str) -> float:
    """The time.time() of a daemon log line (`2026-12-02 11:32:10,443 ...`, local time)."""
    stamp, _, millis = line[:23].partition(",")
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def lines(*states: str, name: str = "VI_1", priority: int = HIGH) -> list[str]:
    return [f'INSTANCE "{name}" {s} {priority}' for s in states]


def test_a_fifo_nobody_reads_then_a_late_reader_then_one_that_leaves(net: Net) -> None:
    fifo = net.tmp / "notify.fifo"
    a = daemon(net, "a", instance(HIGH), metrics=True, notify_fifo=str(fifo), notify_fifo_buffer=3)
    a.start()
    wait_single_holder([a], VIP, "a", timeout=15)
    key = f'fifo="{fifo}"'

    def metric(name: str, reason: str | None = None) -> float:
        labels = key if reason is None else f'{key},reason="{reason}"'
        return a.metrics()[f"{name}{{{labels}}}"]

    # Nobody reads: the daemon runs on, created the FIFO, keeps the lines, says so once.
    assert fifo.is_fifo()
    wait_until(
        lambda: metric("hacontrol_notify_fifo_buffered_lines") == 2, timeout=5, message="2 kept"
    )
    assert metric("hacontrol_notify_fifo_errors_total", "no_reader") == 1
    assert metric("hacontrol_notify_fifo_lines_written_total") == 0
    # Three more transitions overflow the buffer of 3: the two oldest are dropped.
    link(net, "a", up=False)
    wait_until(lambda: not net.a.has_address("eth0", VIP), timeout=5, message="FAULT")
    link(net, "a", up=True)
    wait_single_holder([a], VIP, "a", timeout=15)
    wait_until(
        lambda: metric("hacontrol_notify_fifo_lines_dropped_total", "buffer_full") == 2,
        timeout=5,
        message="2 dropped",
    )
    assert metric("hacontrol_notify_fifo_errors_total", "no_reader") == 1  # one episode
    assert a.log_text().count("notify_fifo.no_reader") == 1
    assert a.log_text().count("notify_fifo.dropping") == 1
    assert a.control({"command": "status"})["vrrp_instances"][0]["state"] == "MASTER"

    # A reader comes late: it gets the newest lines, the current state last.
    with FifoReader(fifo, create=False) as late:
        got = late.wait_lines(3, timeout=5)
        assert got == lines("FAULT", "BACKUP", "MASTER")
    # It went away; the next line finds no reader (EPIPE, no SIGPIPE), waits, and goes to
    # the next reader.
    link(net, "a", up=False)
    wait_until(
        lambda: metric("hacontrol_notify_fifo_errors_total", "reader_gone") == 1,
        timeout=5,
        message="reader_gone",
    )
    with FifoReader(fifo, create=False) as next_reader:
        assert next_reader.wait_lines(1, timeout=5) == lines("FAULT")
        link(net, "a", up=True)
        wait_single_holder([a], VIP, "a", timeout=15)
        next_reader.wait_lines(3, timeout=5)
        assert a.stop() == 0
        # STOP, then the end of the file: the daemon closed it.
        final = next_reader.wait_for(
            lambda got: next_reader.eofs >= 1, timeout=5, what="end of file"
        )
        assert final == lines("FAULT", "BACKUP", "MASTER", "STOP")
    assert fifo.is_fifo()  # left in place, as keepalived leaves it


def test_a_slow_reader_gets_every_line_in_order_and_never_stalls_the_daemon(net: Net) -> None:
    # Long names and many instances: their start-up lines overflow a one-page pipe.
    count = 28
    instances = [
        Instance(
            vrid,
            HIGH,
            (f"192.0.2.{100 + vrid}/24",),
            version=3,
            advert_int=ADVERT_INT,
            name=f"VI_{vrid:02d}_" + "x" * 58,
        )
        for vrid in range(1, count + 1)
    ]
    fifo = net.tmp / "notify.fifo"
    with FifoReader(fifo, pipe_size=4096) as reader:  # it opens, and does not read yet
        a = daemon(net, "a", *instances, metrics=True, notify_fifo=str(fifo))
        a.start()
        a.wait_ready()
        key = f'fifo="{fifo}"'
        wait_until(
            lambda: (
                a.metrics()[f"hacontrol_notify_fifo_lines_written_total{{{key}}}"]
                + a.metrics()[f"hacontrol_notify_fifo_buffered_lines{{{key}}}"]
                == 2 * count
            ),
            timeout=20,
            message="every instance BACKUP then MASTER",
        )
        samples = a.metrics()
        assert samples[f"hacontrol_notify_fifo_buffered_lines{{{key}}}"] > 0  # the pipe is full
        assert samples[f'hacontrol_notify_fifo_errors_total{{{key},reason="reader_slow"}}'] == 1
        # The daemon does not wait for the reader: it answers and holds every VIP.
        asked = time.monotonic()
        status = a.control({"command": "status"})
        assert time.monotonic() - asked < 2.0
        assert {i["state"] for i in status["vrrp_instances"]} == {"MASTER"}
        # The reader catches up slowly, a kilobyte at a time.
        for _ in range(200):
            if len(reader.poll(max_bytes=1024)) >= 2 * count:
                break
            time.sleep(0.05)
        got = reader.lines
        assert len(got) == 2 * count
        for inst in instances:
            mine = [line for line in got if f'"{inst.name}"' in line]
            assert mine == lines("BACKUP", "MASTER", name=inst.name)
        samples = a.metrics()
        assert (
            samples[f'hacontrol_notify_fifo_lines_dropped_total{{{key},reason="buffer_full"}}'] == 0
        )
        assert a.stop() == 0
        reader.wait_for(lambda got: len(got) == 3 * count, timeout=5, what="STOP lines")


def test_reload_removed_instances_say_fault_or_deleted_and_new_scripts_apply(net: Net) -> None:
    rec = Recorder(net.tmp / "a", SCRIPTS)
    fifo = net.tmp / "notify.fifo"
    generic_only = (("notify", [rec.path("notify")]),)

    def inst(vrid: int, name: str, *extra: tuple[str, Any]) -> Instance:
        return instance(
            HIGH, f"192.0.2.{vrid}/24", vrid=vrid, name=name, hacontrol_extra=generic_only + extra
        )

    vi1 = inst(VRID, "VI_1", ("notify_fault", [rec.path("fault")]))
    vi2 = inst(VRID + 1, "VI_2", ("notify_fault", [rec.path("fault")]))  # removed: FAULT
    vi3 = inst(VRID + 2, "VI_3", ("notify_deleted", [rec.path("deleted"), "gone"]))
    with FifoReader(fifo) as reader:
        a = daemon(net, "a", vi1, vi2, vi3, notify_fifo=str(fifo))
        a.start()
        reader.wait_lines(6, timeout=20)
        assert sorted(reader.lines) == sorted(
            lines("BACKUP", "MASTER", name="VI_1")
            + lines("BACKUP", "MASTER", name="VI_2")
            + lines("BACKUP", "MASTER", name="VI_3")
        )
        rec.wait_calls(6, timeout=10)
        a.instances = (inst(VRID, "VI_1", ("notify_fault", [rec.path("fault2")])),)
        a.write_config()
        result = a.control({"command": "reload"})
        assert result["result"] == "applied", result
        got = reader.wait_lines(8, timeout=10)[6:]
        assert sorted(got) == sorted(lines("FAULT", name="VI_2") + lines("DELETED", name="VI_3"))
        calls = rec.wait_calls(9, timeout=10)[6:]
        # VI_2: notify_fault is not run for a removal (keepalived 2.2.7), the generic
        # script hears FAULT; VI_3: notify_deleted's script, then DELETED.
        assert sorted(calls) == sorted(
            [
                ("notify", "INSTANCE", "VI_2", "FAULT", str(HIGH)),
                ("deleted", "gone"),
                ("notify", "INSTANCE", "VI_3", "DELETED", str(HIGH)),
            ]
        )
        assert calls.index(("deleted", "gone")) < calls.index(
            ("notify", "INSTANCE", "VI_3", "DELETED", str(HIGH))
        )
        # The FIFO stayed open across the reload (keepalived recreates it: an end of file).
        assert reader.eofs == 0
        # VI_1's new notify_fault runs on its next FAULT, not the old one.
        link(net, "a", up=False)
        assert reader.wait_lines(9, timeout=10)[8] == lines("FAULT", name="VI_1")[0]
        assert rec.wait_calls(11, timeout=10)[9:] == [
            ("fault2",),
            ("notify", "INSTANCE", "VI_1", "FAULT", str(HIGH)),
        ]
        link(net, "a", up=True)
        assert a.stop(signal.SIGTERM) == 0


def test_sync_group_scripts_share_the_queue_and_a_reload_adds_and_removes_groups(
    net: Net,
) -> None:
    """A group's scripts run in the instances' queue, after its members' of the same
    transition (its first BACKUP before them, as keepalived at start-up); a group a reload
    removes says nothing, not even STOP at exit; one it adds says its state at once."""
    rec = Recorder(net.tmp / "a", ("notify", "gmaster", "gnotify", "gstop"))
    fifo = net.tmp / "notify.fifo"
    members = (
        instance(HIGH, "192.0.2.60/24", vrid=60, name="VI_1", advert_int=1.0),
        instance(HIGH, "192.0.2.61/24", vrid=61, name="VI_2", advert_int=1.0),
    )
    members = tuple(
        replace(m, hacontrol_extra=(("notify", [rec.path("notify")]),)) for m in members
    )

    def group(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "group": ["VI_1", "VI_2"],
            "notify_master": [rec.path("gmaster"), name],
            "notify_stop": [rec.path("gstop"), name],
            "notify": [rec.path("gnotify")],
        }

    def inst(name: str, state: str) -> tuple[str, ...]:
        return ("notify", "INSTANCE", name, state, str(HIGH))

    def grp(name: str, state: str) -> tuple[str, ...]:
        return ("gnotify", "GROUP", name, state, "0")

    with FifoReader(fifo) as reader:
        a = daemon(net, "a", *members, notify_fifo=str(fifo))
        a.extra = {"vrrp_sync_groups": [group("G")]}
        a.write_config()
        a.start()
        calls = rec.wait_calls(7, timeout=20)
        assert calls[0] == grp("G", "BACKUP")
        assert sorted(calls[1:3]) == [inst("VI_1", "BACKUP"), inst("VI_2", "BACKUP")]
        assert sorted(calls[3:5]) == [inst("VI_1", "MASTER"), inst("VI_2", "MASTER")]
        assert calls[5:] == [("gmaster", "G"), grp("G", "MASTER")]
        assert reader.wait_lines(6, timeout=10)[-1] == 'GROUP "G" MASTER 0'

        a.extra = {"vrrp_sync_groups": [group("H")]}
        a.write_config()
        result = a.control({"command": "reload"})
        assert result["result"] == "applied", result
        assert rec.wait_calls(9, timeout=10)[7:] == [("gmaster", "H"), grp("H", "MASTER")]
        assert reader.wait_lines(7, timeout=10)[6:] == ['GROUP "H" MASTER 0']

        assert a.stop(signal.SIGTERM) == 0
        calls = rec.wait_calls(13, timeout=10)
        assert sorted(calls[9:11]) == [inst("VI_1", "STOP"), inst("VI_2", "STOP")]
        assert calls[11:] == [("gstop", "H"), grp("H", "STOP")]  # none for G, removed
        got = reader.wait_for(lambda _: reader.eofs >= 1, timeout=10, what="end of file")
        assert got[-1] == 'GROUP "H" STOP 0'
        assert not any('"G"' in line for line in got[7:])
    one_at_a_time(rec)
