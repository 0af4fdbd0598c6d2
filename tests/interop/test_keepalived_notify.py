"""The notify FIFO and notify scripts: hacontrol against the real keepalived (Debian 2.2.7).

keepalived and hacontrol are run in turn through the same scenario, in the same
namespaces, against the same peer (a keepalived at a higher priority), each writing its
notify FIFO (keepalived's `notify_fifo` in global_defs, hacontrol's `global.notify_fifo`)
and running the same notify scripts. A test reader reads each FIFO with bounded waits (and
follows keepalived when it recreates the FIFO on reload, as its sample consumer does). The
sequences of lines must be the same, byte for byte, and so must the scripts' arguments.

Scenarios:
- start alone (BACKUP, then MASTER), failover to a higher-priority peer (BACKUP) and back
  when it stops (MASTER), FAULT by taking the link down, back up (BACKUP, MASTER), stop
  (STOP);
- a reload that removes two of three instances: FAULT for one, DELETED (and its
  notify_deleted script) for the one with notify_deleted, STOP for the one left at exit.

keepalived forks a transition's two scripts at once, so their relative order within one
transition is not compared (hacontrol runs the specific one first, then the generic one);
the scenario waits for each transition's scripts to start before it causes the next, so
the order across transitions is compared (keepalived gives no such order by itself: on a
loaded machine its notify_backup once started before the notify_fault forked earlier).

keepalived's checker would also write VS/RS lines to notify_fifo; these runs are VRRP
only (-P), and hacontrol writes VRRP lines only (config_checks.py warns about that).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.interop.ka_util import HaDaemon, Instance, Keepalived, Peer, wait_single_holder
from tests.netns.netns_util import Lab, Netns, require_root, wait_until
from tests.netns.notify_util import FifoReader, Recorder
from tests.support import require_tool

pytestmark = pytest.mark.interop

SCRIPTS = ("master", "backup", "fault", "stop", "notify", "deleted")
VIP = "192.0.2.100"
SUBJECT, PEER = 150, 200


@dataclass
class Run:
    """What one implementation did: FIFO lines, the generic script's calls, the others'."""

    lines: list[str]
    generic: list[tuple[str, ...]]
    specific: list[tuple[str, ...]]


@dataclass
class Lan:
    lab: Lab
    subject: Netns
    peer: Netns


def lan(lab: Lab) -> Lan:
    switch = lab.switch()
    subject, peer = lab.netns("s"), lab.netns("p")
    lab.plug(subject, switch, "eth0", "192.0.2.1/24")
    lab.plug(peer, switch, "eth0", "192.0.2.2/24")
    return Lan(lab, subject, peer)


def with_scripts(inst: Instance, rec: Recorder, *, deleted: bool | str = False) -> Instance:
    """The same scripts in each implementation's syntax (no argument with a space:
    keepalived splits its command line itself)."""
    ha: list[tuple[str, Any]] = [
        ("notify_master", [rec.path("master"), "m1"]),
        ("notify_backup", [rec.path("backup")]),
        ("notify_fault", [rec.path("fault")]),
        ("notify_stop", [rec.path("stop")]),
        ("notify", [rec.path("notify"), "x"]),
    ]
    ka = [
        f'notify_master "{rec.path("master")} m1"',
        f"notify_backup {rec.path('backup')}",
        f"notify_fault {rec.path('fault')}",
        f"notify_stop {rec.path('stop')}",
        f'notify "{rec.path("notify")} x"',
    ]
    if deleted == "script":
        ha.append(("notify_deleted", [rec.path("deleted"), "d1"]))
        ka.append(f'notify_deleted "{rec.path("deleted")} d1"')
    elif deleted:
        ha.append(("notify_deleted", True))
        ka.append("notify_deleted")
    return replace(inst, hacontrol_extra=tuple(ha), keepalived_extra=tuple(ka))


def subject_daemon(
    kind: str, net: Lan, workdir: Path, instances: Sequence[Instance], fifo: Path
) -> HaDaemon | Keepalived:
    if kind == "keepalived":
        return Keepalived(
            net.lab,
            net.subject,
            workdir,
            "subject",
            instances,
            global_defs=(f"notify_fifo {fifo}", "script_user root"),
        )
    return HaDaemon(
        net.lab, net.subject, workdir, "subject", instances, global_extra={"notify_fifo": str(fifo)}
    )


def split(rec: Recorder) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    calls = rec.calls()
    return [c for c in calls if c[0] == "notify"], [c for c in calls if c[0] != "notify"]


def run_failover_scenario(kind: str, tmp_path: Path) -> Run:
    workdir = tmp_path / kind
    workdir.mkdir()
    rec = Recorder(workdir, SCRIPTS)
    fifo = workdir / "notify.fifo"
    base = Instance(51, SUBJECT, (f"{VIP}/24",), name="VI_1")
    with Lab("kf") as lab, FifoReader(fifo) as reader:
        net = lan(lab)
        subject = subject_daemon(kind, net, workdir, [with_scripts(base, rec)], fifo)
        peer = Keepalived(lab, net.peer, workdir, "peer", [replace(base, priority=PEER)])
        both: list[Peer] = [subject, peer]

        def saw(count: int, what: str) -> list[str]:
            """`count` lines so far, and the two scripts of each have run: keepalived
            forks them at once, so the next step waits until they have started, or a
            loaded machine could start a later script first."""
            got = reader.wait_for(lambda got: len(got) >= count, timeout=30, what=f"{kind}: {what}")
            rec.wait_calls(2 * count, timeout=30)
            return got

        # Alone: BACKUP at start-up, MASTER after Master_Down_Interval.
        subject.start()
        wait_single_holder([subject], VIP, "subject", timeout=20)
        saw(2, "BACKUP, MASTER")
        # A higher priority preempts it, then resigns when it stops.
        peer.start()
        wait_single_holder(both, VIP, "peer", timeout=20)
        saw(3, "BACKUP after preemption")
        assert peer.stop() == 0
        wait_single_holder([subject], VIP, "subject", timeout=20)
        saw(4, "MASTER after the peer stopped")
        # FAULT on link down; back to BACKUP then MASTER on link up.
        net.subject.ip("link", "set", "eth0", "down")
        saw(5, "FAULT")
        net.subject.ip("link", "set", "eth0", "up")
        wait_single_holder([subject], VIP, "subject", timeout=20)
        saw(7, "BACKUP, MASTER after the link came back")
        # Stop: STOP, and the writer closes the FIFO.
        assert subject.stop() == 0
        lines = reader.wait_for(lambda got: reader.eofs >= 1, timeout=10, what="end of file")
        rec.wait_calls(16, timeout=10)
        generic, specific = split(rec)
        return Run(list(lines), generic, specific)


@pytest.fixture
def keepalived_tool() -> None:
    require_root()
    require_tool("keepalived")


def test_failover_fault_stop_fifo_lines_and_scripts_match_keepalived(
    tmp_path: Path, keepalived_tool: None
) -> None:
    ka = run_failover_scenario("keepalived", tmp_path)
    ha = run_failover_scenario("hacontrol", tmp_path)
    states = ("BACKUP", "MASTER", "BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER", "STOP")
    expected = [f'INSTANCE "VI_1" {s} {SUBJECT}' for s in states]
    assert ka.lines == expected, "keepalived itself: the reference"
    assert ha.lines == ka.lines
    assert ka.generic == [("notify", "x", "INSTANCE", "VI_1", s, str(SUBJECT)) for s in states]
    assert ha.generic == ka.generic
    words = {"MASTER": ("master", "m1"), "BACKUP": ("backup",), "FAULT": ("fault",)}
    assert ka.specific == [words.get(s, ("stop",)) for s in states]
    assert ha.specific == ka.specific


def run_reload_scenario(kind: str, tmp_path: Path) -> dict[str, Run]:
    workdir = tmp_path / kind
    workdir.mkdir()
    rec = Recorder(workdir, SCRIPTS)
    fifo = workdir / "notify.fifo"
    vi1 = with_scripts(Instance(51, SUBJECT, ("192.0.2.101/24",), name="VI_1"), rec)
    vi2 = with_scripts(Instance(52, SUBJECT, ("192.0.2.102/24",), name="VI_2"), rec)
    vi3 = with_scripts(
        Instance(53, SUBJECT, ("192.0.2.103/24",), name="VI_3"), rec, deleted="script"
    )
    with Lab("kr") as lab, FifoReader(fifo) as reader:
        net = lan(lab)
        subject = subject_daemon(kind, net, workdir, [vi1, vi2, vi3], fifo)
        subject.start()
        for vip in ("192.0.2.101", "192.0.2.102", "192.0.2.103"):
            wait_single_holder([subject], vip, "subject", timeout=20)
        reader.wait_lines(6, timeout=20)
        rec.wait_calls(12, timeout=10)
        rewrite: Callable[[], None]
        if isinstance(subject, Keepalived):
            subject.instances = (vi1,)
            rewrite = lambda: subject.conf_path.write_text(subject.render())  # noqa: E731
        else:
            subject.instances = (vi1,)
            rewrite = subject.write_config
        rewrite()
        assert subject.proc is not None
        os.kill(subject.proc.pid, signal.SIGHUP)
        reader.wait_lines(8, timeout=20)
        wait_until(
            lambda: not net.subject.has_address("eth0", "192.0.2.102"),
            timeout=10,
            message="VI_2 gone",
        )
        rec.wait_calls(15, timeout=10)
        time.sleep(0.5)  # nothing else comes
        assert subject.stop() == 0
        reader.wait_lines(9, timeout=10)
        rec.wait_calls(17, timeout=10)
        out: dict[str, Run] = {}
        generic, specific = split(rec)
        for name in ("VI_1", "VI_2", "VI_3"):
            out[name] = Run(
                [line for line in reader.lines if f'"{name}"' in line],
                [c for c in generic if c[3] == name],
                [],
            )
        out["specific"] = Run([], [], specific)
        return out


def test_reload_removed_instances_fifo_lines_and_scripts_match_keepalived(
    tmp_path: Path, keepalived_tool: None
) -> None:
    ka = run_reload_scenario("keepalived", tmp_path)
    ha = run_reload_scenario("hacontrol", tmp_path)
    expected = {
        "VI_1": ("BACKUP", "MASTER", "STOP"),
        "VI_2": ("BACKUP", "MASTER", "FAULT"),  # removed, without notify_deleted
        "VI_3": ("BACKUP", "MASTER", "DELETED"),  # removed, with notify_deleted
    }
    for name, states in expected.items():
        assert ka[name].lines == [f'INSTANCE "{name}" {s} {SUBJECT}' for s in states], name
        assert ha[name].lines == ka[name].lines, name
        assert ka[name].generic == [
            ("notify", "x", "INSTANCE", name, s, str(SUBJECT)) for s in states
        ], name
        assert ha[name].generic == ka[name].generic, name
    # The specific scripts: notify_fault is not run for a removal, notify_deleted's is.
    assert sorted(ka["specific"].specific) == sorted(
        [("backup",)] * 3 + [("master", "m1")] * 3 + [("deleted", "d1"), ("stop",)]
    )
    assert sorted(ha["specific"].specific) == sorted(ka["specific"].specific)
