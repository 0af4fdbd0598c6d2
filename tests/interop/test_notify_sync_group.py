"""Sync-group notify scripts and GROUP lines on the notify FIFO: hacontrol against the real
keepalived (Debian 2.2.7).

keepalived and hacontrol are run in turn through the same scenario, in the same
namespaces, against the same peer (a keepalived with the same sync group at a higher
priority). The subject has a sync group G of two instances on two links (VI_1 on eth0,
VI_2 on eth1) with every group notify script (notify_master, notify_backup, notify_fault,
notify_stop and the generic notify), and writes its notify FIFO.

Scenarios: (1) start alone (group BACKUP, then MASTER); the peer starts and preempts
(BACKUP); the peer stops (MASTER); eth1 goes down on the subject (FAULT: VI_2's link, VI_1
held by the group); eth1 comes back (BACKUP, MASTER); the subject stops (STOP). (2) Both
members MASTER, then a reload that removes the group (its members stay) or one of its
members, then stop: keepalived says nothing for a removed group and forgets it (no STOP at
exit); a removed member says FAULT and its group nothing.

Compared, byte for byte: the GROUP lines of the FIFO, in order, and where they fall among
the INSTANCE lines (after the members' lines of the same transition; first at start-up);
the generic script's calls and the group's own scripts' calls, in order. The order of the
two members' lines within one transition is not compared: keepalived gives none.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.interop.ka_util import HaDaemon, Instance, Keepalived, Peer, SyncGroup
from tests.netns.netns_util import Lab, Netns, require_root, wait_until
from tests.netns.notify_util import FifoReader, Recorder
from tests.support import require_tool

pytestmark = pytest.mark.interop

SCRIPTS = ("gmaster", "gbackup", "gfault", "gstop", "gnotify")
VIP1, VIP2 = "192.0.2.100", "198.51.100.100"
SUBJECT, PEER = 150, 200


@dataclass
class Run:
    lines: list[str]  # every FIFO line, in order
    calls: list[tuple[str, ...]]  # every script call, in the order they started


@dataclass
class Net:
    lab: Lab
    subject: Netns
    peer: Netns


def net(lab: Lab) -> Net:
    sw1, sw2 = lab.switch("s1"), lab.switch("s2")
    subject, peer = lab.netns("s"), lab.netns("p")
    lab.plug(subject, sw1, "eth0", "192.0.2.1/24")
    lab.plug(peer, sw1, "eth0", "192.0.2.2/24")
    lab.plug(subject, sw2, "eth1", "198.51.100.1/24")
    lab.plug(peer, sw2, "eth1", "198.51.100.2/24")
    return Net(lab, subject, peer)


def instances(priority: int) -> tuple[Instance, Instance]:
    first = Instance(61, priority, (f"{VIP1}/24",), name="VI_1")
    return first, replace(first, vrid=62, vips=(f"{VIP2}/24",), name="VI_2", interface="eth1")


def group(rec: Recorder | None) -> SyncGroup:
    base = SyncGroup("G", ("VI_1", "VI_2"))
    if rec is None:
        return base
    ha: list[tuple[str, Any]] = [
        ("notify_master", [rec.path("gmaster"), "m1"]),
        ("notify_backup", [rec.path("gbackup")]),
        ("notify_fault", [rec.path("gfault")]),
        ("notify_stop", [rec.path("gstop")]),
        ("notify", [rec.path("gnotify"), "x"]),
    ]
    ka = [
        f'notify_master "{rec.path("gmaster")} m1"',
        f"notify_backup {rec.path('gbackup')}",
        f"notify_fault {rec.path('gfault')}",
        f"notify_stop {rec.path('gstop')}",
        f'notify "{rec.path("gnotify")} x"',
    ]
    return replace(base, hacontrol_extra=tuple(ha), keepalived_extra=tuple(ka))


def subject_daemon(
    kind: str, n: Net, workdir: Path, members: Sequence[Instance], g: SyncGroup, fifo: Path
) -> HaDaemon | Keepalived:
    if kind == "keepalived":
        return Keepalived(
            n.lab,
            n.subject,
            workdir,
            "subject",
            members,
            groups=[g],
            global_defs=(f"notify_fifo {fifo}",),
        )
    return HaDaemon(
        n.lab,
        n.subject,
        workdir,
        "subject",
        members,
        extra={"vrrp_sync_groups": [g.hacontrol()]},
        global_extra={"notify_fifo": str(fifo)},
    )


def holder_of_both(peers: Sequence[Peer], expected: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    found: tuple[list[str], list[str]] = ([], [])
    while time.monotonic() < deadline:
        found = (
            [p.name for p in peers if p.holds(VIP1, "eth0")],
            [p.name for p in peers if p.holds(VIP2, "eth1")],
        )
        if found == ([expected], [expected]):
            return
        time.sleep(0.05)
    raise AssertionError(f"wanted both VIPs on {expected} only, held by {found}")


def group_lines(lines: Sequence[str]) -> list[str]:
    return [line for line in lines if line.startswith("GROUP ")]


def run_scenario(kind: str, tmp_path: Path) -> Run:
    workdir = tmp_path / kind
    workdir.mkdir()
    rec = Recorder(workdir, SCRIPTS)
    fifo = workdir / "notify.fifo"
    with Lab("kn") as lab, FifoReader(fifo) as reader:
        n = net(lab)
        subject = subject_daemon(kind, n, workdir, instances(SUBJECT), group(rec), fifo)
        peer = Keepalived(lab, n.peer, workdir, "peer", instances(PEER), groups=[group(None)])
        both: list[Peer] = [subject, peer]

        def saw(count: int, what: str) -> None:
            """`count` GROUP lines so far, and the two scripts of each have started (the
            next step waits for them: keepalived forks its scripts and forgets them)."""
            reader.wait_for(
                lambda got: len(group_lines(got)) >= count,
                timeout=30,
                what=f"{kind}: {what}",
            )
            rec.wait_calls(2 * count, timeout=30)

        subject.start()
        holder_of_both([subject], "subject", timeout=20)
        saw(2, "BACKUP, MASTER")
        peer.start()
        holder_of_both(both, "peer", timeout=20)
        saw(3, "BACKUP after preemption")
        assert peer.stop() == 0
        holder_of_both([subject], "subject", timeout=20)
        saw(4, "MASTER after the peer stopped")
        n.subject.ip("link", "set", "eth1", "down")
        saw(5, "FAULT")
        n.subject.ip("link", "set", "eth1", "up")
        holder_of_both([subject], "subject", timeout=20)
        saw(7, "BACKUP, MASTER after the link came back")
        assert subject.stop() == 0
        reader.wait_for(lambda got: reader.eofs >= 1, timeout=10, what="end of file")
        rec.wait_calls(16, timeout=10)
        time.sleep(0.3)  # nothing else comes
        return Run(list(reader.poll()), rec.calls())


@pytest.fixture
def keepalived_tool() -> None:
    require_root()
    require_tool("keepalived")


def blocks(lines: Sequence[str]) -> list[tuple[list[str], str]]:
    """The FIFO cut after each GROUP line: (the INSTANCE lines since the last one, sorted;
    the GROUP line). The members' lines of one transition come in no promised order."""
    out: list[tuple[list[str], str]] = []
    since: list[str] = []
    for line in lines:
        if line.startswith("GROUP "):
            out.append((sorted(since), line))
            since = []
        else:
            since.append(line)
    assert not since, f"INSTANCE lines after the last GROUP line: {since}"
    return out


def test_sync_group_notify_scripts_and_fifo_lines_match_keepalived(
    tmp_path: Path, keepalived_tool: None
) -> None:
    ka = run_scenario("keepalived", tmp_path)
    ha = run_scenario("hacontrol", tmp_path)
    states = ("BACKUP", "MASTER", "BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER", "STOP")
    # The GROUP lines, byte for byte and in order.
    assert group_lines(ka.lines) == [f'GROUP "G" {s} 0' for s in states], "the reference"
    assert group_lines(ha.lines) == group_lines(ka.lines)
    # Each GROUP line follows its members' lines of that transition (at start-up the
    # group's BACKUP comes first, before its members say theirs).
    assert blocks(ka.lines)[0] == ([], 'GROUP "G" BACKUP 0')
    assert blocks(ka.lines)[-1] == (
        ['INSTANCE "VI_1" STOP 150', 'INSTANCE "VI_2" STOP 150'],
        'GROUP "G" STOP 0',
    )
    assert blocks(ha.lines) == blocks(ka.lines)
    # The generic script: GROUP NAME STATE 0 after its own arguments.
    generic = [c for c in ka.calls if c[0] == "gnotify"]
    assert generic == [("gnotify", "x", "GROUP", "G", s, "0") for s in states]
    assert [c for c in ha.calls if c[0] == "gnotify"] == generic
    # The state's own script for each transition, in order (keepalived forks a
    # transition's two scripts at once: only the order across transitions is compared).
    words = {"MASTER": ("gmaster", "m1"), "BACKUP": ("gbackup",), "FAULT": ("gfault",)}
    specific = [c for c in ka.calls if c[0] != "gnotify"]
    assert specific == [words.get(s, ("gstop",)) for s in states]
    assert [c for c in ha.calls if c[0] != "gnotify"] == specific
    # hacontrol runs a group's own script before its generic one, one at a time.
    assert ha.calls == [
        c
        for s in states
        for c in (words.get(s, ("gstop",)), ("gnotify", "x", "GROUP", "G", s, "0"))
    ]


def run_reload(kind: str, tmp_path: Path, change: str) -> Run:
    """Both members MASTER, then a reload that removes the group (`group`: its members
    stay) or one of its members (`member`), then stop."""
    workdir = tmp_path / kind
    workdir.mkdir()
    rec = Recorder(workdir, SCRIPTS)
    fifo = workdir / "notify.fifo"
    with Lab("kn") as lab, FifoReader(fifo) as reader:
        n = net(lab)
        g = group(rec)
        subject = subject_daemon(kind, n, workdir, instances(SUBJECT), g, fifo)
        subject.start()
        holder_of_both([subject], "subject", timeout=20)
        reader.wait_for(
            lambda got: group_lines(got) == ['GROUP "G" BACKUP 0', 'GROUP "G" MASTER 0'],
            timeout=20,
            what=f"{kind}: the group MASTER",
        )
        rec.wait_calls(4, timeout=10)
        before = len(reader.poll())
        if change == "group":
            groups: tuple[SyncGroup, ...] = ()
            members = instances(SUBJECT)
        else:
            groups = (replace(g, members=("VI_1",)),)
            members = instances(SUBJECT)[:1]
        if isinstance(subject, Keepalived):
            subject.groups, subject.instances = groups, members
            subject.conf_path.write_text(subject.render())
        else:
            subject.instances = members
            subject.extra = {"vrrp_sync_groups": [x.hacontrol() for x in groups]}
            subject.write_config()
        assert subject.proc is not None
        os.kill(subject.proc.pid, signal.SIGHUP)
        if change == "member":
            reader.wait_lines(before + 1, timeout=20)  # VI_2 removed: FAULT
            wait_until(
                lambda: not n.subject.has_address("eth1", VIP2), timeout=10, message="VI_2 gone"
            )
        else:
            time.sleep(3)  # a reload takes keepalived about a second; nothing is said
        assert subject.stop() == 0
        reader.wait_for(lambda got: reader.eofs >= 1, timeout=10, what="end of file")
        time.sleep(0.5)  # nothing else comes
        return Run(list(reader.poll()), rec.calls())


@pytest.mark.parametrize("change", ["group", "member"])
def test_reload_removing_a_group_or_a_member_matches_keepalived(
    tmp_path: Path, keepalived_tool: None, change: str
) -> None:
    ka = run_reload("keepalived", tmp_path, change)
    ha = run_reload("hacontrol", tmp_path, change)
    if change == "group":
        # The group is forgotten: no line, no script, no STOP at exit.
        assert group_lines(ka.lines) == ['GROUP "G" BACKUP 0', 'GROUP "G" MASTER 0']
        assert blocks(ka.lines[:-2])[-1][1] == 'GROUP "G" MASTER 0'
        assert sorted(ka.lines[-2:]) == ['INSTANCE "VI_1" STOP 150', 'INSTANCE "VI_2" STOP 150']
        assert len(ka.calls) == 4
    else:
        # The removed member says FAULT; the group (now VI_1 alone) says nothing until
        # its STOP at exit, after VI_1's.
        assert group_lines(ka.lines) == [f'GROUP "G" {s} 0' for s in ("BACKUP", "MASTER", "STOP")]
        assert ka.lines[-3:] == [
            'INSTANCE "VI_2" FAULT 150',
            'INSTANCE "VI_1" STOP 150',
            'GROUP "G" STOP 0',
        ]
        assert sorted(ka.calls[-2:]) == [("gnotify", "x", "GROUP", "G", "STOP", "0"), ("gstop",)]
    # hacontrol, the same: lines, their order around the GROUP lines, scripts.
    assert group_lines(ha.lines) == group_lines(ka.lines)
    if change == "group":
        assert blocks(ha.lines[:-2]) == blocks(ka.lines[:-2])
        assert sorted(ha.lines[-2:]) == sorted(ka.lines[-2:])
    else:
        assert blocks(ha.lines) == blocks(ka.lines)
        assert ha.lines[-3:] == ka.lines[-3:]
    for script in SCRIPTS:
        assert [c for c in ha.calls if c[0] == script] == [c for c in ka.calls if c[0] == script]
