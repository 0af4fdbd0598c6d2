"""Tracking and sync groups between two whole daemons in namespaces, on two links.

Each tracked kind moves the priority (or holds FAULT) and causes the failover it should: a
script that starts failing, an interface taken down, a file rewritten, a process killed;
a sync group of two instances on two interfaces fails over together when one link goes
down. Bad input (a hanging script, one flooding stdout, one exiting with garbage, a track
file with no number in it) is a log line and a counted error, and the instance follows
keepalived's rule for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.interop.ka_util import HaDaemon, Instance, Script, SyncGroup, wait_single_holder
from tests.netns.netns_util import Lab, Netns, require_root

VIP1, VIP2 = "192.0.2.100/24", "198.51.100.100/24"
HIGH, LOW = 200, 100
ADVERT_INT = 0.2


@dataclass
class TwoLinks:
    lab: Lab
    tmp: Path
    a: Netns
    b: Netns

    def daemon(
        self, ns: Netns, name: str, *instances: Instance, metrics: bool = False, **extra: Any
    ) -> HaDaemon:
        listen = "127.0.0.1:9650" if metrics else None
        return HaDaemon(self.lab, ns, self.tmp, name, instances, extra=extra, metrics_listen=listen)


@pytest.fixture
def links(tmp_path: Path) -> Iterator[TwoLinks]:
    require_root()
    with Lab("kt") as lab:
        sw1, sw2 = lab.switch("s1"), lab.switch("s2")
        a, b = lab.netns("a"), lab.netns("b")
        lab.plug(a, sw1, "eth0", "192.0.2.1/24")
        lab.plug(b, sw1, "eth0", "192.0.2.2/24")
        lab.plug(a, sw2, "eth1", "198.51.100.1/24")
        lab.plug(b, sw2, "eth1", "198.51.100.2/24")
        yield TwoLinks(lab, tmp_path, a, b)


def inst(priority: int, vip: str = VIP1, **kw: Any) -> Instance:
    return replace(Instance(42, priority, (vip,), version=3, advert_int=ADVERT_INT), **kw)


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def status_of(daemon: HaDaemon, name: str = "VI_1") -> dict[str, Any]:
    snap = daemon.control({"command": "status"})
    return next(i for i in snap["vrrp_instances"] if i["name"] == name)


def item(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in status["tracking"] if t["name"] == name)


def pair(
    links: TwoLinks, a_inst: Instance, b_inst: Instance, **extra: Any
) -> tuple[HaDaemon, HaDaemon]:
    a = links.daemon(links.a, "a", a_inst, metrics=True, **extra)
    b = links.daemon(links.b, "b", b_inst)
    a.start()
    b.start()
    wait_single_holder([a, b], VIP1.split("/")[0], "a", timeout=15.0)
    return a, b


def test_script_that_starts_failing_lowers_priority_and_fails_over(links: TwoLinks) -> None:
    ok = links.tmp / "ok"
    ok.write_text("")
    script = Script("chk", ("/usr/bin/test", "-e", str(ok)), interval=0.2, weight=-150)
    a, b = pair(
        links,
        inst(HIGH, track_script=(("chk", None),)),
        inst(LOW),
        vrrp_scripts=[script.hacontrol()],
    )
    assert status_of(a)["effective_priority"] == HIGH
    ok.unlink()
    # 200 - 150 = 50 < 100: b preempts when it hears a's lower priority.
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=10.0)
    st = status_of(a)
    assert st["effective_priority"] == HIGH - 150
    assert item(st, "chk")["state"] == "down" and item(st, "chk")["delta"] == -150
    ok.write_text("")
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=10.0)
    assert status_of(a)["effective_priority"] == HIGH


def test_interface_taken_down_faults_the_instance(links: TwoLinks) -> None:
    a, b = pair(links, inst(HIGH, track_interface=(("eth1", None),)), inst(LOW))
    links.a.ip("link", "set", "eth1", "down")
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=10.0)
    st = status_of(a)
    assert st["state"] == "FAULT"
    assert st["faults"] == ["track_interface:eth1"]
    links.a.ip("link", "set", "eth1", "up")
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=10.0)
    # Deleted is down too (keepalived follows the interface by name).
    links.a.ip("link", "del", "eth1")
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=10.0)
    assert status_of(a)["state"] == "FAULT"


def test_weighted_interface_moves_priority(links: TwoLinks) -> None:
    a, b = pair(links, inst(HIGH, track_interface=(("eth1", -150),)), inst(LOW))
    links.a.ip("link", "set", "eth1", "down")
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=10.0)
    st = status_of(a)
    assert (st["state"], st["effective_priority"]) == ("BACKUP", 50)


def test_file_rewritten_moves_priority_and_garbage_reads_as_zero(links: TwoLinks) -> None:
    path = links.tmp / "prio"
    path.write_text("0\n")
    a, b = pair(
        links,
        inst(HIGH, track_file=(("prio", None),)),
        inst(LOW),
        track_files=[{"name": "prio", "file": str(path), "weight": -1}],
    )
    path.write_text("150\n")  # 200 - 150 = 50
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=10.0)
    st = status_of(a)
    assert st["effective_priority"] == 50 and item(st, "prio")["value"] == 150
    # Not a number: keepalived's strtol reads 0, so the instance is back at 200; said
    # and counted.
    path.write_text("high please\n")
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=10.0)
    assert status_of(a)["effective_priority"] == HIGH
    assert "track.file_not_a_number" in a.log_text()
    samples = a.metrics()
    key = 'hacontrol_track_errors_total{kind="file",name="prio",reason="not_a_number"}'
    assert samples.get(key, 0) >= 1


def test_process_killed_faults_the_instance(links: TwoLinks) -> None:
    # A process of a name nothing else on this host has (processes are host-wide).
    name = f"hatrk{os.getpid() % 100000}"
    binary = links.tmp / name
    shutil.copy("/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "300"])
    links.lab.on_cleanup(lambda: _kill(proc))
    a = links.daemon(
        links.a,
        "a",
        inst(HIGH),
        track_processes=[{"name": "worker", "process": name, "weight": 0}],
    )
    _add_instance_keys(a, track_process=["worker"])
    b = links.daemon(links.b, "b", inst(LOW))
    a.start()
    b.start()
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=15.0)
    proc.kill()
    proc.wait()
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=10.0)
    st = status_of(a)
    assert st["state"] == "FAULT" and st["faults"] == ["track_process:worker"]
    again = subprocess.Popen([str(binary), "300"])
    links.lab.on_cleanup(lambda: _kill(again))
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=10.0)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _add_instance_keys(daemon: HaDaemon, **keys: Any) -> None:
    config = yaml.safe_load(daemon.config_path.read_text())
    config["vrrp_instances"][0].update(keys)
    daemon.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_sync_group_fails_over_together_when_one_link_goes_down(links: TwoLinks) -> None:
    group = SyncGroup("G", ("VI_1", "VI_2"))
    extra = {"vrrp_sync_groups": [group.hacontrol()]}
    a = links.daemon(
        links.a,
        "a",
        inst(HIGH),
        inst(HIGH, VIP2, name="VI_2", interface="eth1", vrid=43),
        **extra,
    )
    b = links.daemon(
        links.b,
        "b",
        inst(LOW),
        inst(LOW, VIP2, name="VI_2", interface="eth1", vrid=43),
        **extra,
    )
    a.start()
    b.start()
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=15.0)
    eventually(lambda: a.holds("198.51.100.100", "eth1"), 10.0, "a holds VIP2")
    # A reload that changes a member in place says so and keeps the group.
    a.instances = (inst(HIGH), inst(HIGH + 10, VIP2, name="VI_2", interface="eth1", vrid=43))
    a.write_config()
    out = a.cli("reload")
    assert out.returncode == 0, out.stderr
    assert "vrrp instance VI_2: changed in place" in out.stdout, out.stdout
    assert a.control({"command": "status"})["vrrp_sync_groups"][0]["state"] == "MASTER"
    # Only eth1 goes down on a: VI_2 faults, and the group takes VI_1 (whose link is fine)
    # along; b takes both.
    links.a.ip("link", "set", "eth1", "down")
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=10.0)
    eventually(lambda: b.holds("198.51.100.100", "eth1"), 10.0, "b holds VIP2")
    snap = a.control({"command": "status"})
    states = {i["name"]: (i["state"], tuple(i["faults"])) for i in snap["vrrp_instances"]}
    assert states == {
        "VI_1": ("FAULT", ("sync_group",)),
        "VI_2": ("FAULT", ("link_down",)),
    }
    assert snap["vrrp_sync_groups"][0]["state"] == "FAULT"
    b_group = b.control({"command": "status"})["vrrp_sync_groups"][0]
    assert b_group["state"] == "MASTER"
    links.a.ip("link", "set", "eth1", "up")
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=15.0)
    eventually(lambda: a.holds("198.51.100.100", "eth1"), 10.0, "a holds VIP2 again")
    assert not b.holds("198.51.100.100", "eth1")


def test_bad_scripts_are_counted_and_judged_as_keepalived_does(links: TwoLinks) -> None:
    scripts = [
        # Hangs: killed at its timeout, a failure (weight -10 applies).
        Script("hang", ("/bin/sleep", "30"), interval=0.5, timeout=0.3, weight=-10),
        # Floods stdout, then exits 0: a success (+5); its output goes nowhere.
        Script("flood", ("/bin/sh", "-c", "yes | head -c 20000000"), interval=0.5, weight=5),
        # Exit status 255: a failure (-20).
        Script("garbage", ("/bin/sh", "-c", "exit 255"), interval=0.5, weight=-20),
        # Not executable at all: a failure (-30), counted as exec_error.
        Script("missing", ("/nonexistent/check",), interval=0.5, weight=-30),
    ]
    a = links.daemon(
        links.a,
        "a",
        inst(HIGH, track_script=tuple((s.name, None) for s in scripts)),
        metrics=True,
        vrrp_scripts=[s.hacontrol() for s in scripts],
    )
    a.start()
    a.wait_ready()
    expected = HIGH - 10 + 5 - 20 - 30
    eventually(lambda: status_of(a)["effective_priority"] == expected, 10.0, f"priority {expected}")
    samples = a.metrics()
    for name, reason in (("hang", "timeout"), ("missing", "exec_error")):
        key = f'hacontrol_track_errors_total{{kind="script",name="{name}",reason="{reason}"}}'
        assert samples.get(key, 0) >= 1, key
    runs = 'hacontrol_track_script_runs_total{result="success",script="flood"}'
    assert samples.get(runs, 0) >= 1
    log = a.log_text()
    assert "track.script_timeout script=hang" in log
    assert "track.script script=garbage result=exit_255" in log
    # Alone on its link it becomes MASTER (after Master_Down_Interval): the hanging and
    # flooding scripts block nothing.
    eventually(lambda: status_of(a)["state"] == "MASTER", 10.0, "a is MASTER")
