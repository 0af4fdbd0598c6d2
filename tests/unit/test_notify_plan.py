"""The VRRP notify planner and the notify FIFO's buffer policy, as pure values.

Which scripts run and which FIFO lines are written for each transition follow keepalived
2.2.7 (checked against the real daemon in tests/interop/test_keepalived_notify.py); the
ordering (specific script, then the generic one, then the next transition) is hacontrol's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hacontrol.notify_plan import (
    PIPE_BUF,
    Command,
    Conditions,
    FifoBuffer,
    NotifyScripts,
    VrrpNotifyPlanner,
    fifo_line,
    fifo_paths,
    group_scripts_of,
    scripts_of,
)
from vrrp.types import State

ROOT = Path(__file__).resolve().parents[2]

FULL = NotifyScripts(
    master=("/bin/master", "a1", "b 2"),
    backup=("/bin/backup",),
    fault=("/bin/fault",),
    stop=("/bin/stop",),
    notify=("/bin/notify", "x"),
    timeout=3.0,
)


def argvs(note: object) -> list[tuple[str, ...]]:
    assert note is not None
    return [c.argv for c in note.commands]  # type: ignore[attr-defined]


def test_fifo_line_is_keepalived_byte_for_byte() -> None:
    assert fifo_line("INSTANCE", "VI_1", "MASTER", 150) == 'INSTANCE "VI_1" MASTER 150\n'
    assert fifo_line("GROUP", "G1", "BACKUP", 0) == 'GROUP "G1" BACKUP 0\n'


def test_start_up_enters_backup_specific_script_then_generic_then_the_line() -> None:
    planner = VrrpNotifyPlanner({"VI_1": FULL})
    note = planner.state_changed("VI_1", State.BACKUP, 150)
    assert note is not None
    assert note.commands == (
        Command(("/bin/backup",), 3.0, "notify_backup VI_1"),
        Command(
            ("/bin/notify", "x", "INSTANCE", "VI_1", "BACKUP", "150"), 3.0, "notify VI_1 BACKUP"
        ),
    )
    assert note.fifo_line == 'INSTANCE "VI_1" BACKUP 150\n'


def test_a_whole_life_election_failover_fault_recovery_stop() -> None:
    planner = VrrpNotifyPlanner({"VI_1": FULL})
    life = [
        (State.BACKUP, 150),
        (State.MASTER, 150),
        (State.BACKUP, 150),  # preempted by a higher priority
        (State.MASTER, 150),  # the peer resigned
        (State.FAULT, 150),  # link down
        (State.BACKUP, 150),  # link up: leaving FAULT is entering BACKUP
        (State.MASTER, 150),
    ]
    lines = []
    calls: list[tuple[str, ...]] = []
    for state, priority in life:
        note = planner.state_changed("VI_1", state, priority)
        assert note is not None
        lines.append(note.fifo_line)
        calls.extend(argvs(note))
    planner.begin_shutdown()
    note = planner.state_changed("VI_1", State.INITIALIZE, 150)
    assert note is not None
    lines.append(note.fifo_line)
    calls.extend(argvs(note))
    assert lines == [
        f'INSTANCE "VI_1" {w} 150\n'
        for w in ("BACKUP", "MASTER", "BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER", "STOP")
    ]
    # Each transition: the state's own script, then the generic one with its 4 arguments.
    assert calls[:4] == [
        ("/bin/backup",),
        ("/bin/notify", "x", "INSTANCE", "VI_1", "BACKUP", "150"),
        ("/bin/master", "a1", "b 2"),
        ("/bin/notify", "x", "INSTANCE", "VI_1", "MASTER", "150"),
    ]
    assert calls[8:10] == [
        ("/bin/fault",),
        ("/bin/notify", "x", "INSTANCE", "VI_1", "FAULT", "150"),
    ]
    assert calls[-2:] == [("/bin/stop",), ("/bin/notify", "x", "INSTANCE", "VI_1", "STOP", "150")]
    assert len(calls) == 16


def test_the_effective_priority_is_what_is_said() -> None:
    planner = VrrpNotifyPlanner({"VI_1": NotifyScripts(notify=("/bin/n",))})
    note = planner.state_changed("VI_1", State.MASTER, 255)
    assert note is not None and note.fifo_line == 'INSTANCE "VI_1" MASTER 255\n'
    assert argvs(note) == [("/bin/n", "INSTANCE", "VI_1", "MASTER", "255")]


def test_without_scripts_only_the_line_and_without_generic_only_the_specific() -> None:
    planner = VrrpNotifyPlanner(
        {"bare": NotifyScripts(), "one": NotifyScripts(master=("/bin/m",), timeout=1.5)}
    )
    bare = planner.state_changed("bare", State.MASTER, 100)
    assert bare is not None and bare.commands == () and bare.fifo_line
    one = planner.state_changed("one", State.MASTER, 100)
    assert one is not None and one.commands == (Command(("/bin/m",), 1.5, "notify_master one"),)
    assert planner.state_changed("one", State.BACKUP, 100) is not None
    assert argvs(planner.state_changed("one", State.FAULT, 100)) == []


def test_a_state_already_said_is_not_said_again() -> None:
    # A VRRP process that died and resumes as MASTER: its VIPs never moved.
    planner = VrrpNotifyPlanner({"VI_1": FULL})
    assert planner.state_changed("VI_1", State.MASTER, 150) is not None
    assert planner.state_changed("VI_1", State.MASTER, 150) is None
    assert planner.state_changed("VI_1", State.BACKUP, 150) is not None


def test_unknown_instances_say_nothing() -> None:
    planner = VrrpNotifyPlanner({})
    assert planner.state_changed("ghost", State.MASTER, 100) is None
    assert planner.state_changed("ghost", State.INITIALIZE, 100) is None


def test_removed_by_a_reload_is_fault_to_the_generic_script_and_the_fifo() -> None:
    # keepalived 2.2.7 without notify_deleted: "FAULT" to `notify` and the FIFO, and
    # notify_fault is NOT run.
    planner = VrrpNotifyPlanner({"VI_1": FULL, "VI_2": FULL})
    planner.state_changed("VI_2", State.MASTER, 120)
    planner.configure({"VI_1": FULL})
    note = planner.state_changed("VI_2", State.INITIALIZE, 120)
    assert note is not None
    assert note.fifo_line == 'INSTANCE "VI_2" FAULT 120\n'
    assert argvs(note) == [("/bin/notify", "x", "INSTANCE", "VI_2", "FAULT", "120")]
    # Said once: the instance is gone.
    assert planner.state_changed("VI_2", State.INITIALIZE, 120) is None


def test_removed_with_notify_deleted_is_deleted_and_runs_its_script() -> None:
    flag = scripts_of(None, None, ("/bin/fault",), None, True, ("/bin/n",), 2.0)
    script = scripts_of(None, None, None, None, ("/bin/gone", "now"), ("/bin/n",), 2.0)
    planner = VrrpNotifyPlanner({"A": flag, "B": script})
    planner.configure({})
    a = planner.state_changed("A", State.INITIALIZE, 100)
    b = planner.state_changed("B", State.INITIALIZE, 90)
    assert a is not None and a.fifo_line == 'INSTANCE "A" DELETED 100\n'
    assert argvs(a) == [("/bin/n", "INSTANCE", "A", "DELETED", "100")]
    assert b is not None and b.fifo_line == 'INSTANCE "B" DELETED 90\n'
    assert argvs(b) == [("/bin/gone", "now"), ("/bin/n", "INSTANCE", "B", "DELETED", "90")]
    assert b.commands[0].event == "notify_deleted B"


def test_an_instance_removed_then_added_again_starts_afresh() -> None:
    planner = VrrpNotifyPlanner({"VI_1": FULL})
    planner.state_changed("VI_1", State.BACKUP, 100)
    planner.configure({})
    assert planner.state_changed("VI_1", State.INITIALIZE, 100) is not None
    planner.configure({"VI_1": FULL})
    assert planner.state_changed("VI_1", State.BACKUP, 100) is not None


def test_restarted_by_a_reload_says_no_stop_and_its_new_life_speaks() -> None:
    # Identity changed (new VRID): the engine stops the old life and starts a new one; the
    # new one's BACKUP may arrive before the old one's stop.
    planner = VrrpNotifyPlanner({"VI_1": FULL})
    planner.state_changed("VI_1", State.MASTER, 150)
    planner.configure({"VI_1": FULL})
    new_life = planner.state_changed("VI_1", State.BACKUP, 150)
    assert new_life is not None and new_life.fifo_line == 'INSTANCE "VI_1" BACKUP 150\n'
    assert planner.state_changed("VI_1", State.INITIALIZE, 150) is None


def test_new_scripts_apply_from_the_next_transition() -> None:
    planner = VrrpNotifyPlanner({"VI_1": NotifyScripts(master=("/bin/old",))})
    assert argvs(planner.state_changed("VI_1", State.MASTER, 100)) == [("/bin/old",)]
    planner.configure({"VI_1": NotifyScripts(fault=("/bin/new",), timeout=7.0)})
    note = planner.state_changed("VI_1", State.FAULT, 100)
    assert note is not None and note.commands == (Command(("/bin/new",), 7.0, "notify_fault VI_1"),)


def test_shutdown_says_stop_once_and_fills_in_what_the_engine_did_not_report() -> None:
    planner = VrrpNotifyPlanner({"A": FULL, "B": FULL, "never": FULL})
    planner.state_changed("A", State.MASTER, 150)
    planner.state_changed("B", State.BACKUP, 140)
    planner.begin_shutdown()
    a = planner.state_changed("A", State.INITIALIZE, 150)
    assert a is not None and a.fifo_line == 'INSTANCE "A" STOP 150\n'
    assert planner.state_changed("A", State.INITIALIZE, 150) is None
    # B's stop never arrived (the VRRP process died): STOP at its last priority. An
    # instance that never ran says nothing.
    rest = planner.shutdown_remaining()
    assert [n.fifo_line for n in rest] == ['INSTANCE "B" STOP 140\n']
    assert argvs(rest[0])[0] == ("/bin/stop",)
    assert planner.shutdown_remaining() == []


def test_a_removed_instance_still_stopping_at_shutdown_says_stop() -> None:
    planner = VrrpNotifyPlanner({"A": FULL})
    planner.state_changed("A", State.MASTER, 150)
    planner.configure({})
    planner.begin_shutdown()
    note = planner.state_changed("A", State.INITIALIZE, 150)
    assert note is not None and note.state == "STOP"


GROUP = NotifyScripts(
    master=("/bin/gmaster", "m1"),
    backup=("/bin/gbackup",),
    fault=("/bin/gfault",),
    stop=("/bin/gstop",),
    notify=("/bin/gnotify", "x"),
    timeout=4.0,
)


def test_sync_group_lines_and_scripts_priority_zero() -> None:
    planner = VrrpNotifyPlanner({})
    planner.configure({}, {"G1": FULL})
    note = planner.group_state_changed("G1", State.MASTER)
    assert note is not None and note.fifo_line == 'GROUP "G1" MASTER 0\n'
    assert note.kind == "GROUP" and note.priority == 0
    assert argvs(note) == [
        ("/bin/master", "a1", "b 2"),
        ("/bin/notify", "x", "GROUP", "G1", "MASTER", "0"),
    ]
    assert planner.group_state_changed("G1", State.MASTER) is None
    assert planner.group_state_changed("G9", State.MASTER) is None


def test_a_sync_group_whole_life_as_keepalived_2_2_7_says_it() -> None:
    # tests/interop/test_notify_sync_group.py: start-up, preempted by a higher priority,
    # the peer stops, a member's link down and up, the daemon stops.
    planner = VrrpNotifyPlanner({})
    planner.configure({}, {"G": GROUP})
    life = [State.BACKUP, State.MASTER, State.BACKUP, State.MASTER, State.FAULT]
    life += [State.BACKUP, State.MASTER]
    notes = [planner.group_state_changed("G", state) for state in life]
    planner.begin_shutdown()
    notes.extend(planner.shutdown_remaining())
    words = ["BACKUP", "MASTER", "BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER", "STOP"]
    assert [n.fifo_line if n else None for n in notes] == [f'GROUP "G" {w} 0\n' for w in words]
    own = {
        "MASTER": ("/bin/gmaster", "m1"),
        "BACKUP": ("/bin/gbackup",),
        "FAULT": ("/bin/gfault",),
        "STOP": ("/bin/gstop",),
    }
    keyword = {"MASTER": "master", "BACKUP": "backup", "FAULT": "fault", "STOP": "stop"}
    for note, word in zip(notes, words, strict=True):
        assert note is not None
        # The state's own script, then the generic one with GROUP NAME STATE 0.
        assert note.commands == (
            Command(own[word], 4.0, f"notify_{keyword[word]} G"),
            Command(("/bin/gnotify", "x", "GROUP", "G", word, "0"), 4.0, f"notify G {word}"),
        )


def test_a_group_at_init_says_nothing_unless_the_daemon_stops() -> None:
    # Every member restarted by a reload: the group passes INIT between two lives, which
    # keepalived has no word for; while stopping, INIT is the group's STOP, said once.
    planner = VrrpNotifyPlanner({})
    planner.configure({}, {"G": GROUP})
    assert planner.group_state_changed("G", State.MASTER) is not None
    assert planner.group_state_changed("G", State.INITIALIZE) is None
    assert planner.group_state_changed("G", State.MASTER) is None  # nothing new to say
    planner.begin_shutdown()
    stop = planner.group_state_changed("G", State.INITIALIZE)
    assert stop is not None and stop.fifo_line == 'GROUP "G" STOP 0\n'
    assert planner.group_state_changed("G", State.INITIALIZE) is None
    assert planner.shutdown_remaining() == []


def test_at_shutdown_groups_say_stop_after_every_instance() -> None:
    # keepalived's notify_shutdown: every instance's STOP, then every group's.
    planner = VrrpNotifyPlanner({})
    planner.configure({"VI_1": FULL, "VI_2": FULL}, {"G": GROUP, "H": GROUP, "never": GROUP})
    for name in ("VI_1", "VI_2"):
        planner.state_changed(name, State.MASTER, 150)
    planner.group_state_changed("G", State.MASTER)
    planner.group_state_changed("H", State.FAULT)
    planner.begin_shutdown()
    first = planner.state_changed("VI_1", State.INITIALIZE, 150)  # the engine reported it
    assert first is not None and first.fifo_line == 'INSTANCE "VI_1" STOP 150\n'
    rest = planner.shutdown_remaining()
    assert [n.fifo_line for n in rest] == [
        'INSTANCE "VI_2" STOP 150\n',
        'GROUP "G" STOP 0\n',
        'GROUP "H" STOP 0\n',
    ]  # "never" was never told a state: nothing to take back
    assert argvs(rest[1]) == [("/bin/gstop",), ("/bin/gnotify", "x", "GROUP", "G", "STOP", "0")]
    assert planner.shutdown_remaining() == []


def test_a_group_removed_by_a_reload_says_nothing_and_no_stop_at_exit() -> None:
    # keepalived 2.2.7: no GROUP line and no script when a reload removes a sync group
    # (its members kept or not), and no STOP for it at exit.
    planner = VrrpNotifyPlanner({})
    planner.configure({"VI_1": FULL}, {"G": GROUP, "H": GROUP})
    planner.group_state_changed("G", State.MASTER)
    planner.group_state_changed("H", State.MASTER)
    planner.configure({"VI_1": FULL}, {"H": GROUP})
    assert planner.group_state_changed("G", State.BACKUP) is None  # a late event of it
    planner.begin_shutdown()
    assert [n.fifo_line for n in planner.shutdown_remaining() if n.kind == "GROUP"] == [
        'GROUP "H" STOP 0\n'
    ]


def test_a_group_added_again_starts_afresh_and_new_scripts_apply_next() -> None:
    planner = VrrpNotifyPlanner({})
    planner.configure({}, {"G": GROUP})
    planner.group_state_changed("G", State.MASTER)
    planner.configure({}, {})
    other = NotifyScripts(master=("/bin/other",), timeout=1.0)
    planner.configure({}, {"G": other})
    again = planner.group_state_changed("G", State.MASTER)  # forgotten: said again
    assert again is not None and argvs(again) == [("/bin/other",)]
    planner.configure({}, {"G": GROUP})
    backup = planner.group_state_changed("G", State.BACKUP)
    assert backup is not None and argvs(backup)[0] == ("/bin/gbackup",)


def test_group_scripts_of_has_no_deleted() -> None:
    s = group_scripts_of(("/m",), ("/b",), ("/f",), ("/s",), ("/n",), 2.0)
    assert s == NotifyScripts(
        master=("/m",), backup=("/b",), fault=("/f",), stop=("/s",), notify=("/n",), timeout=2.0
    )
    assert s.say_deleted is False and s.deleted is None


def test_scripts_of_reads_notify_deleted_as_flag_or_script() -> None:
    assert scripts_of(None, None, None, None, False, None, 1.0).say_deleted is False
    assert scripts_of(None, None, None, None, True, None, 1.0).say_deleted is True
    s = scripts_of(None, None, None, None, ("/bin/x",), None, 1.0)
    assert s.say_deleted and s.deleted == ("/bin/x",)


def test_fifo_paths_write_one_path_once() -> None:
    assert fifo_paths(None, None) == ()
    assert fifo_paths("/run/a", "/run/b") == ("/run/a", "/run/b")
    assert fifo_paths("/run/a", "/run/a") == ("/run/a",)
    assert fifo_paths(None, "/run/b") == ("/run/b",)


# ---- the FIFO buffer ---------------------------------------------------------------------------


def line(n: int) -> bytes:
    return fifo_line("INSTANCE", f"VI_{n}", "MASTER", 100).encode()


def test_buffer_drops_the_oldest_and_reports_one_episode() -> None:
    buf = FifoBuffer(3)
    assert [buf.push(line(i)) for i in range(3)] == [False, False, False]
    assert buf.push(line(3)) is True  # the first drop begins an episode: log it
    assert buf.push(line(4)) is False  # later drops of the same episode: counted only
    assert buf.dropped == 2 and len(buf) == 3
    assert buf.chunk() == line(2) + line(3) + line(4)  # the newest survive
    buf.consumed(len(buf.chunk()))
    assert len(buf) == 0 and buf.written == 3 and not buf.dropping
    assert buf.push(line(5)) is False
    for i in range(6, 9):
        buf.push(line(i))
    assert buf.dropping  # a new episode after the buffer emptied


def test_chunks_are_whole_lines_within_pipe_buf() -> None:
    buf = FifoBuffer(1000)
    for i in range(500):
        buf.push(line(i))
    chunk = buf.chunk()
    k = chunk.count(b"\n")
    assert chunk == b"".join(line(i) for i in range(k))  # whole lines from the head
    assert len(chunk) <= PIPE_BUF < len(chunk) + len(line(k))  # as many as fit
    long = b"x" * (PIPE_BUF + 10) + b"\n"
    solo = FifoBuffer(2)
    solo.push(long)
    assert solo.chunk() == long  # a line longer than PIPE_BUF goes alone


def test_a_partly_written_line_is_finished_first_and_never_dropped() -> None:
    buf = FifoBuffer(2)
    buf.push(b"first line\n")
    buf.push(b"second\n")
    buf.consumed(4)  # the kernel took "firs"
    assert buf.written == 0
    buf.push(b"third\n")
    buf.push(b"fourth\n")  # drops the oldest whole lines, not the partial one
    assert buf.chunk() == b"t line\n" + b"third\n" + b"fourth\n"
    buf.consumed(len(b"t line\nthi"))
    assert buf.written == 1
    assert buf.chunk() == b"rd\nfourth\n"
    buf.consumed(len(b"rd\nfourth\n"))
    assert buf.written == 3 and len(buf) == 0


def test_resize_and_clear_count_what_they_drop() -> None:
    buf = FifoBuffer(5)
    for i in range(5):
        buf.push(line(i))
    assert buf.resize(2) == 3 and buf.chunk() == line(3) + line(4)
    assert buf.clear() == 2 and len(buf) == 0 and buf.dropped == 5
    with pytest.raises(ValueError):
        FifoBuffer(0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(1, 60)),
            st.tuples(st.just("write"), st.integers(0, 200)),
        ),
        max_size=80,
    ),
    st.integers(1, 6),
)
def test_what_the_reader_gets_is_whole_lines_in_order(
    ops: list[tuple[str, int]], size: int
) -> None:
    """Whatever the pushes, drops and partial writes: the bytes written are whole lines, in
    the order pushed, a subsequence of them, and nothing pending is older than a drop."""
    buf = FifoBuffer(size)
    pushed: list[bytes] = []
    out = b""
    for op, n in ops:
        if op == "push":
            data = f"L{len(pushed)} ".encode() + b"." * n + b"\n"
            pushed.append(data)
            buf.push(data)
        else:
            chunk = buf.chunk(limit=64)
            taken = min(n, len(chunk))
            out += chunk[:taken]
            buf.consumed(taken)
    out += buf.chunk(limit=1 << 20)
    got = out.splitlines(keepends=True)
    assert all(g in pushed for g in got)
    indexes = [pushed.index(g) for g in got]
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
    assert len(got) + buf.dropped == len(pushed)
    if pushed:
        assert got[-1] == pushed[-1]  # the newest line always reaches the reader


def test_conditions_count_episodes_not_attempts() -> None:
    c = Conditions()
    assert c.enter("no_reader") is True
    assert c.enter("no_reader") is False  # a retry failing the same way
    assert c.clear() == "no_reader"
    assert c.clear() is None
    assert c.enter("no_reader") is True
    assert c.enter("reader_gone") is True
    assert c.counts == {"no_reader": 2, "reader_gone": 1}


def test_the_planner_is_pure() -> None:
    tree = ast.parse((ROOT / "hacontrol" / "notify_plan.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"asyncio", "os", "socket", "time", "subprocess", "select"}
