"""The daemon's runtime, as an operator uses it, on a pair of directors in namespaces.

Covered: `hacontrol status` (table and --json) on a running pair; `hacontrol reload` with a
good file (a priority change and a new VIP on a running master: no failover, no gap in its
adverts, the new VIP announced) and a bad one (refused, nothing changed); a second daemon
on the same host refused before it touches anything; a VIP deleted by hand on the master
put back and announced within an advert interval; step-down and release (kept across a
restart); a real server drained and undrained; the control socket under bad input.
"""

from __future__ import annotations

import cmath
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from hacontrol.runtime.control import ControlError
from tests.interop.ka_util import HaDaemon, sample_single_holder, wait_single_holder
from tests.netns.daemon_pair import (
    ADVERT_INT,
    HIGH,
    LOW,
    VIP4,
    VRID,
    Net,
    instance,
    master_down,
    start_pair,
)
from tests.netns.netns_util import wait_until

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def transitions(daemon: HaDaemon) -> list[str]:
    return [line for line in daemon.log_text().splitlines() if "vrrp.state " in line]


def test_status_table_and_json_on_a_running_pair(net: Net) -> None:
    a, b = start_pair(net)
    snap_a = a.control({"command": "status"})
    (vi_a,) = snap_a["vrrp_instances"]
    assert (vi_a["state"], vi_a["priority"], vi_a["effective_priority"]) == ("MASTER", HIGH, HIGH)
    assert vi_a["master_is_us"] and vi_a["master"] == "192.0.2.1"
    assert vi_a["reason"] == "preempt" or vi_a["reason"] == "master_down"
    assert isinstance(snap_a["vrrp_process"]["pid"], int)
    assert snap_a["vrrp_process"]["pid"] != a.proc.pid if a.proc else True  # its own process
    snap_b = b.control({"command": "status"})
    (vi_b,) = snap_b["vrrp_instances"]
    assert (vi_b["state"], vi_b["master"], vi_b["master_priority"]) == ("BACKUP", "192.0.2.1", HIGH)
    assert not vi_b["master_is_us"]

    table = b.cli("status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    row = next(line for line in lines if line.strip().startswith("VI_1"))
    assert row.split()[:6] == ["VI_1", "eth0", str(VRID), "BACKUP", str(LOW), str(LOW)]
    assert "192.0.2.1 (prio 200)" in row
    as_json = json.loads(b.cli("status", "--json").stdout)
    assert as_json["vrrp_instances"][0]["state"] == "BACKUP"


def test_reload_changes_a_running_master_in_place_and_a_bad_file_changes_nothing(
    net: Net,
) -> None:
    a, b = start_pair(net, garp_master_delay=0)
    mac_a = net.a.mac("eth0")
    before = len(transitions(a))
    good = a.config_path.read_text()
    a.instances = (
        instance(HIGH + 10, vips=("192.0.2.100/24", "192.0.2.101/24"), garp_master_delay=0),
    )
    a.write_config()
    reloaded_at = time.time()
    out = a.cli("reload")
    applied_at = time.time()
    assert out.returncode == 0, out.stderr
    assert "applied: vrrp instance VI_1: changed in place" in out.stdout, out.stdout
    wait_until(lambda: net.a.has_address("eth0", "192.0.2.101"), timeout=3, message="new VIP")
    # The new VIP is announced; the priority change goes out at once.
    net.witness.wait_for(
        lambda: [
            f
            for f in net.witness.garps(IPv4Address("192.0.2.101"), reloaded_at)
            if f.src_mac == mac_a
        ],
        timeout=3,
        message="GARP for the new VIP",
    )
    net.witness.collect(1.5)
    window = [x for x in net.adverts(reloaded_at - 1.0) if x.src_mac == mac_a]
    # Never resigned (no priority 0): the instance was changed, not restarted.
    assert all(x.priority in (HIGH, HIGH + 10) for x in window), [x.priority for x in window]
    assert max(gaps([x.at for x in window])) < master_down(LOW, ADVERT_INT)
    after = [x for x in window if x.at > applied_at]
    assert after and all(x.priority == HIGH + 10 for x in after)
    # No failover, no transition at all.
    assert len(transitions(a)) == before, a.tail()
    assert sample_single_holder([a, b], "192.0.2.100", duration=0.5) >= 2
    status = a.control({"command": "status"})
    assert status["vrrp_instances"][0]["effective_priority"] == HIGH + 10
    assert status["last_reload"]["result"] == "applied"

    # A bad file: refused with file:line, nothing changed, the daemon runs on.
    a.config_path.write_text(good.replace("priority: 200", "priority: 900"))
    bad = a.cli("reload")
    assert bad.returncode == 1
    assert f"{a.config_path}:" in bad.stderr and "priority" in bad.stderr, bad.stderr
    assert "reload rejected: nothing was changed" in bad.stderr
    assert a.control({"command": "status"})["vrrp_instances"][0]["effective_priority"] == HIGH + 10
    assert net.a.has_address("eth0", "192.0.2.101") and a.running


def test_a_second_daemon_is_refused_and_the_vip_untouched(net: Net) -> None:
    a, b = start_pair(net)
    mac_a = net.a.mac("eth0")
    pid_file = a.run_dir / "hacontrol.pid"
    pid = int(pid_file.read_text())
    transitions_b = len(transitions(b))
    # Every address change on a while the second daemon runs (the bug deleted the VIP,
    # which the master's repair then put back: only the event shows it).
    monitor = subprocess.Popen(
        net.a.argv("ip", "monitor", "address"), stdout=subprocess.PIPE, text=True
    )
    net.lab.on_cleanup(monitor.kill)
    time.sleep(0.2)  # subscribed before the second daemon starts
    started = time.time()
    second = subprocess.run(
        net.a.argv(
            sys.executable,
            "-m",
            "hacontrol",
            "run",
            "-c",
            str(a.config_path),
            "--run-dir",
            str(a.run_dir),
            "--state-dir",
            str(a.state_dir),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert second.returncode == 1
    assert f"hacontrol is already running (pid {pid}" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    net.witness.collect(1.0)
    monitor.terminate()
    events, _ = monitor.communicate(timeout=5)
    assert "Deleted" not in events, events
    # The master never noticed: its VIP stayed, it kept advertising at its priority (no
    # resignation), and the backup never took over. (How evenly it advertised is the
    # machine's load, measured by the benchmarks, not asserted here.)
    assert net.a.has_address("eth0", "192.0.2.100")
    assert holders_now(a, b) == ["a"]
    window = [x for x in net.adverts(started - 0.5) if x.src_mac == mac_a]
    assert window and all(x.priority == HIGH for x in window)
    # No gap the backup could take for the master's death.
    assert max(gaps([x.at for x in window])) < master_down(LOW, ADVERT_INT)
    assert len(transitions(b)) == transitions_b, b.tail()
    assert int(pid_file.read_text()) == pid  # the pid file is the running daemon's still


def holders_now(*daemons: HaDaemon) -> list[str]:
    return [d.name for d in daemons if d.holds("192.0.2.100")]


def test_a_vip_deleted_by_hand_on_the_master_comes_back_with_garp(net: Net) -> None:
    a, b = start_pair(net, garp_master_delay=0)
    mac_a = net.a.mac("eth0")
    deleted_at = time.time()
    net.a.ip("addr", "del", "192.0.2.100/24", "dev", "eth0")
    garp = net.witness.wait_for(
        lambda: next(
            (
                f
                for f in net.witness.garps(IPv4Address("192.0.2.100"), deleted_at)
                if f.src_mac == mac_a
            ),
            None,
        ),
        timeout=3,
        message="the repaired VIP announced",
    )
    # Put back within one advert interval (plus scheduling slack on a loaded box).
    assert garp.at - deleted_at < ADVERT_INT + 0.3, garp.at - deleted_at
    assert net.a.has_address("eth0", "192.0.2.100")
    wait_until(lambda: "vrrp.vip_repair" in a.log_text(), timeout=3, message="repair logged")
    status = a.control({"command": "status"})
    assert status["vrrp_instances"][0]["vip_repairs"] >= 0  # counters arrive within 1 s
    assert holders_now(a, b) == ["a"]


def test_step_down_holds_backup_across_a_restart_until_released(net: Net) -> None:
    a, b = start_pair(net)
    mac_a, mac_b = net.a.mac("eth0"), net.b.mac("eth0")
    stepped_at = time.time()
    out = a.cli("step-down")
    assert out.returncode == 0, out.stderr
    assert "VI_1: stepped down: was MASTER: priority 0 sent" in out.stdout, out.stdout
    resign = net.witness.wait_for(
        lambda: next((x for x in net.adverts(stepped_at, mac_a) if x.priority == 0), None),
        timeout=2,
        message="a's priority-0 advert",
    )
    first_b = net.witness.wait_for(
        lambda: next(iter(net.adverts(resign.at, mac_b)), None), timeout=3, message="b's advert"
    )
    assert first_b.at - resign.at < master_down(LOW, ADVERT_INT) / 2  # Skew_Time, not MDI
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=5)
    # a outranks b and preempts, but stays BACKUP while held: several Master_Down_Intervals.
    assert (
        sample_single_holder([a, b], "192.0.2.100", duration=3 * master_down(HIGH, ADVERT_INT)) >= 3
    )
    assert holders_now(a, b) == ["b"]
    snap = a.control({"command": "status"})
    assert (
        snap["vrrp_instances"][0]["stepped_down"] and snap["vrrp_instances"][0]["state"] == "BACKUP"
    )
    assert snap["maintenance"]["stepped_down"] == ["VI_1"]
    # The hold survives a restart of the daemon.
    assert a.stop(signal.SIGTERM) == 0
    a.start()
    wait_until(
        lambda: a.running and "daemon.started" in a.current_log(), timeout=20, message="a restarted"
    )
    assert (
        sample_single_holder([a, b], "192.0.2.100", duration=3 * master_down(HIGH, ADVERT_INT)) >= 3
    )
    assert holders_now(a, b) == ["b"]
    # Released: a listens a Master_Down_Interval, hears the lower b and preempts.
    out = a.cli("release")
    assert out.returncode == 0 and "VI_1: released" in out.stdout, out
    wait_single_holder([a, b], "192.0.2.100", "a", timeout=10)
    assert a.control({"command": "status"})["maintenance"]["stepped_down"] == []


def test_a_real_server_is_drained_and_undrained(net: Net) -> None:
    # The host kernel has no IPVS: the table is not programmed, but the daemon's verdict
    # (health, desired weight, the override) is what status shows and the state file keeps.
    net.lab.spawn(
        net.a,
        [
            sys.executable,
            "-c",
            "import socket\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('127.0.0.1', 8081)); s.listen(64)\n"
            "while True:\n    c, _ = s.accept(); c.close()\n",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    extra: dict[str, Any] = {
        "virtual_servers": [
            {
                "name": "web",
                "address": "192.0.2.100",
                "port": 80,
                "forwarding": "NAT",
                "real_servers": [
                    {
                        "address": "127.0.0.1",
                        "port": 8081,
                        "weight": 3,
                        "checks": [
                            {
                                "type": "tcp",
                                "delay_loop": 0.3,
                                "connect_timeout": 1,
                                "retry": 0,
                                "warmup": False,
                            }
                        ],
                    },
                ],
            }
        ]
    }
    a = HaDaemon(net.lab, net.a, net.tmp, "a", (instance(HIGH),), extra=extra)
    a.start()
    wait_until(
        lambda: _rs(a) is not None and _rs(a)["health"] == "up",
        timeout=20,
        message="the real server checked up",
    )
    assert _rs(a)["weight"] == 3
    out = a.cli("drain", "web", "127.0.0.1:8081")
    assert out.returncode == 0, out.stderr
    assert "web 127.0.0.1:8081: drained: weight 0" in out.stdout, out.stdout
    wait_until(
        lambda: _rs(a)["health"] == "drained" and _rs(a)["weight"] == 0,
        timeout=5,
        message="drained at weight 0",
    )
    # Unknown names are refused with what exists.
    bad = a.cli("drain", "web", "127.0.0.9:8081")
    assert bad.returncode == 1 and "configured: 127.0.0.1:8081" in bad.stderr, bad.stderr
    # Kept across a restart.
    assert a.stop(signal.SIGTERM) == 0
    a.start()
    wait_until(
        lambda: _rs(a) is not None and _rs(a)["health"] == "drained",
        timeout=20,
        message="still drained after a restart",
    )
    out = a.cli("undrain", "web", "127.0.0.1")
    assert out.returncode == 0, out.stderr
    wait_until(
        lambda: _rs(a)["health"] == "up" and _rs(a)["weight"] == 3,
        timeout=5,
        message="back in service",
    )


def _rs(daemon: HaDaemon) -> dict[str, Any] | None:
    try:
        snap = daemon.control({"command": "status"})
    except ControlError:
        return None
    for vs in snap["virtual_servers"]:
        for rs in vs["real_servers"]:
            return dict(rs)
    return None


def test_the_control_socket_survives_bad_clients(net: Net) -> None:
    a = net.daemon(net.a, "a", instance(HIGH))
    # A run directory others can traverse (pytest's own is 0700), so that only the
    # socket's mode and its peer-credential check keep a non-root user out.
    run_dir = Path(tempfile.mkdtemp(prefix="hacontrol-ctl-"))
    net.lab.on_cleanup(lambda: shutil.rmtree(run_dir, ignore_errors=True))
    run_dir.chmod(0o755)
    a.run_dir = run_dir
    a.start()
    wait_until(lambda: a.control_socket.exists(), timeout=20, message="the control socket")
    path = str(a.control_socket)
    assert (os.stat(path).st_mode & 0o777) == 0o600

    def raw(data: bytes, *, shutdown: bool = True) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            try:
                s.sendall(data)
                if shutdown:
                    s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon answered and hung up before we finished: read its answer
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        doc: dict[str, Any] = json.loads(reply)
        return doc

    garbage = raw(b"not json\n")
    assert garbage["ok"] is False and "not JSON" in garbage["error"]
    assert "unknown command 'format-disk'" in raw(b'{"command": "format-disk"}\n')["error"]
    # Megabytes without a newline: refused, bounded.
    big = raw(b"x" * (8 * 1024 * 1024), shutdown=False)
    assert "request too large" in big["error"]
    # A client that connects and says nothing does not hold the daemon up.
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(path)
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(path)
    half.sendall(b'{"command": "sta')
    half.close()  # gone mid-request
    started = time.monotonic()
    assert a.control({"command": "status"})["vrrp_instances"][0]["name"] == "VI_1"
    assert time.monotonic() - started < 3.0
    idle.close()
    # Not root: the socket's mode keeps others out; and with the mode opened, the peer
    # credentials still do.
    nobody = (
        "import json, os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "try:\n    s.connect(sys.argv[1])\n"
        "except PermissionError:\n    print('EACCES'); sys.exit(0)\n"
        's.sendall(b\'{"command": "status"}\\n\'); print(s.recv(65536).decode())\n'
    )
    out = subprocess.run(
        [sys.executable, "-c", nobody, path], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "EACCES"
    os.chmod(path, 0o666)
    out = subprocess.run(
        [sys.executable, "-c", nobody, path], capture_output=True, text=True, timeout=30, check=True
    )
    assert "permission denied: only root may use the control socket" in out.stdout, out.stdout
    assert a.running


def test_stopping_never_takes_the_administrators_address(net: Net) -> None:
    # The VIP is the first address of its subnet on the interface (the director's own
    # address is in another subnet), so the kernel makes it that subnet's primary; the
    # administrator then adds an address in the VIP's subnet: a secondary. Deleting a
    # primary deletes its secondaries unless promote_secondaries is on.
    net.a.ip("addr", "flush", "dev", "eth0")
    net.a.ip("addr", "add", "198.51.100.1/24", "dev", "eth0")
    net.a.run("sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=0")
    a = net.daemon(net.a, "a", instance(HIGH))
    a.start()
    wait_until(lambda: net.a.has_address("eth0", "192.0.2.100"), timeout=15, message="VIP")
    net.a.ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
    shown = net.a.ip("-4", "addr", "show", "dev", "eth0")
    assert "192.0.2.1/24" in shown and "secondary" in shown.split("192.0.2.1/24")[1].split("\n")[0]
    assert a.stop(signal.SIGTERM) == 0, a.tail()
    assert not net.a.has_address("eth0", "192.0.2.100")
    assert net.a.has_address("eth0", "192.0.2.1"), "the administrator's address survives"
    assert "vrrp.promote_secondaries iface=eth0" in a.log_text(), a.tail()


def test_a_vip_that_is_the_interfaces_own_address_is_never_taken(net: Net) -> None:
    # An operator configured the director's own addresses as VIPs (RFC 5798's address
    # owner, or a slip). At start they look like VIPs an earlier run left behind, which a
    # backup takes back; taking these would cut the director off (keepalived 2.2.7 does).
    # IPv4: no other IPv4 address is left; IPv6: it lacks the IFA_F_NODAD a VIP goes on with.
    # The IPv6 instance has a link-local address to send from: it becomes master, finds
    # its VIP there already, and must still leave it when it stops. The lab adds its
    # addresses with nodad; an administrator's goes through DAD.
    net.a.ip("addr", "del", "2001:db8::1/64", "dev", "eth0")
    net.a.ip("addr", "add", "2001:db8::1/64", "dev", "eth0")
    wait_until(
        lambda: "tentative" not in net.a.ip("-6", "addr", "show", "dev", "eth0"),
        timeout=10,
        message="DAD of 2001:db8::1",
    )
    a = net.daemon(
        net.a,
        "a",
        instance(HIGH, vip="192.0.2.1/24"),
        instance(HIGH, vip="2001:db8::1/64", name="VI_6", vrid=VRID + 1),
    )
    a.start()
    try:
        wait_until(lambda: a.log_text().count("vrrp.vip_is_own_address") >= 2, timeout=30)
    except AssertionError:
        raise AssertionError(a.tail(80)) from None
    assert net.a.has_address("eth0", "192.0.2.1") and net.a.has_address("eth0", "2001:db8::1")
    assert a.stop(signal.SIGTERM) == 0, a.tail()
    assert net.a.has_address("eth0", "192.0.2.1"), a.tail()
    assert net.a.has_address("eth0", "2001:db8::1"), a.tail()


def test_a_killed_vrrp_process_is_restarted_and_the_vip_stays(net: Net) -> None:
    # advert_int 1 s: the backup would take over after Master_Down_Interval (3.6 s); the
    # VRRP process is back long before that and resumes as master.
    a, b = start_pair(net, advert_int=1.0)
    mac_a = net.a.mac("eth0")
    before = a.control({"command": "status"})["vrrp_process"]["pid"]
    assert isinstance(before, int)
    transitions_b = len(transitions(b))
    killed_at = time.time()
    os.kill(before, signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        snap: dict[str, Any] = a.control({"command": "status"})
        process = snap["vrrp_process"]
        return snap if process["pid"] not in (None, before) and process["restarts"] == 1 else None

    wait_until(restarted, timeout=5, message="a new VRRP process")
    assert sample_single_holder([a, b], "192.0.2.100", duration=3 * master_down(LOW, 1.0)) >= 3
    assert holders_now(a, b) == ["a"]
    assert len(transitions(b)) == transitions_b, b.tail()  # the backup never took over
    (vi,) = a.control({"command": "status"})["vrrp_instances"]
    assert (vi["state"], vi["reason"]) == ("MASTER", "resume")
    adverts = [x.at for x in net.adverts(killed_at - 2.0) if x.src_mac == mac_a]
    assert max(gaps(adverts)) < master_down(LOW, 1.0), gaps(adverts)
    assert "vrrp.process_exited" in a.log_text() and "killed by SIGKILL" in a.log_text()


def test_hacontrol_restart_keeps_mastership_without_a_failover(net: Net) -> None:
    # `hacontrol restart`: the daemon executes itself again without resigning, and keeps
    # its VRRP process running across that, so adverts never pause, however long the new
    # daemon takes to start. The config changed meanwhile (a second VIP): the kept process
    # gets it as a reload. `systemctl restart` would resign: two failovers.
    a, b = start_pair(net, advert_int=2.0)
    mac_a = net.a.mac("eth0")
    assert a.proc is not None
    pid = a.proc.pid
    vrrp_pid = a.control({"command": "status"})["vrrp_process"]["pid"]
    transitions_b = len(transitions(b))
    # A file the new daemon could not start from is refused: nothing restarts.
    good = a.config_path.read_text()
    a.config_path.write_text(good.replace("vrrp_instances:", "vrrp_instancez:"))
    out = a.cli("restart")
    assert out.returncode != 0 and "not restarting" in out.stderr, (out.stdout, out.stderr)
    assert "vrrp_instancez" in out.stderr, out.stderr
    assert "daemon.restarting" not in a.log_text(), a.tail()
    a.instances = (instance(HIGH, advert_int=2.0, vips=(VIP4, "192.0.2.101/24")),)
    a.write_config()
    asked_at = time.time()
    out = a.cli("restart")
    assert out.returncode == 0, out.stderr
    assert "masters resume as MASTER: VI_1" in out.stdout, out.stdout
    wait_until(lambda: "daemon.resuming masters=VI_1 vrrp_process=kept" in a.log_text(), timeout=30)
    wait_until(lambda: a.log_text().count("daemon.started") == 2, timeout=30)
    wait_until(lambda: net.a.has_address("eth0", "192.0.2.101"), timeout=10, message=".101")
    assert sample_single_holder([a, b], "192.0.2.100", duration=master_down(LOW, 2.0)) >= 3
    assert holders_now(a, b) == ["a"]
    assert len(transitions(b)) == transitions_b, b.tail()  # the backup never took over
    assert a.proc.pid == pid and a.running  # the same process (systemd follows it)
    snap = a.control({"command": "status"})
    (vi,) = snap["vrrp_instances"]
    assert (vi["state"], vi["reason"]) == ("MASTER", "resume")
    assert snap["vrrp_process"]["pid"] == vrrp_pid  # kept, not restarted
    assert "vrrp_process.detached" in a.log_text() and "vrrp_process.attached" in a.log_text()
    adverts = [x for x in net.adverts(asked_at) if x.src_mac == mac_a]
    assert adverts and all(x.priority == HIGH for x in adverts)  # no resigning advert
    assert max(gaps([x.at for x in adverts])) < 1.5 * 2.0  # never paused
    # A plain stop still resigns: the backup takes over, and the VIPs go.
    assert a.stop() == 0
    wait_single_holder([a, b], "192.0.2.100", "b", timeout=10.0)
    assert not net.a.has_address("eth0", "192.0.2.101")


def test_hacontrol_restart_after_an_upgrade_replaces_the_vrrp_process_without_a_failover(
    net: Net,
) -> None:
    # New code installed (here: one source file's mtime moved, which is what an upgrade
    # changes): the VRRP process is not taken over, it speaks the old protocol. It goes on
    # advertising while the new daemon starts, and is killed only once the new process is
    # ready to resume its master: no failover, however slow the start (1 s adverts: the
    # backup would take over 3.6 s after the last advert).
    a, b = start_pair(net, advert_int=1.0)
    mac_a = net.a.mac("eth0")
    old_vrrp = a.control({"command": "status"})["vrrp_process"]["pid"]
    transitions_b = len(transitions(b))
    upgraded = ROOT / "hacontrol" / "importer" / "__init__.py"
    st = upgraded.stat()
    asked_at = time.time()
    os.utime(upgraded, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        out = a.cli("restart")
        assert out.returncode == 0, out.stderr
        wait_until(lambda: a.log_text().count("daemon.started") == 2, timeout=30)
    finally:
        os.utime(upgraded, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "daemon.resuming masters=VI_1 vrrp_process=replaced" in a.log_text(), a.tail()
    assert "vrrp.process_outgoing_ended" in a.log_text(), a.tail()
    snap = a.control({"command": "status"})
    assert snap["vrrp_process"]["pid"] not in (None, old_vrrp)
    with pytest.raises(ProcessLookupError):
        os.kill(old_vrrp, 0)  # ended, and reaped
    assert sample_single_holder([a, b], "192.0.2.100", duration=master_down(LOW, 1.0)) >= 3
    assert holders_now(a, b) == ["a"]
    assert len(transitions(b)) == transitions_b, b.tail()  # the backup never took over
    (vi,) = snap["vrrp_instances"]
    assert (vi["state"], vi["reason"]) == ("MASTER", "resume")
    adverts = [x for x in net.adverts(asked_at) if x.src_mac == mac_a]
    assert adverts and all(x.priority == HIGH for x in adverts)  # no resigning advert
    assert max(gaps([x.at for x in adverts])) < master_down(LOW, 1.0)


def test_a_master_at_10_ms_sends_one_advert_per_interval(net: Net) -> None:
    # The schedule is kept from each advert's deadline (vrrp/fsm.py), so timers that fire
    # a little late do not add up: a correctness property of the schedule, counted over
    # 30 s (3,000 intervals) on the wire. SCHED_RR for the VRRP process, as an operator
    # running 10 ms adverts would set (keepalived's vrrp_rt_priority). An interval the
    # machine stalled through entirely is skipped, not caught up with a burst, and the
    # daemon counts it (a CI machine once stalled through 32 of 3,000): the adverts on the
    # wire and the intervals counted as missed make up every interval.
    a = HaDaemon(
        net.lab,
        net.a,
        net.tmp,
        "a",
        (instance(HIGH, advert_int=0.01),),
        extra={"global": {"metrics_listen": None, "vrrp_rt_priority": 50}},
    )
    a.start()
    mac_a = net.a.mac("eth0")
    net.witness.wait_for(lambda: net.adverts(0.0, mac_a), timeout=20, message="a advertising")
    time.sleep(1.0)  # past the start-up transitions

    def missed() -> int:
        (vi,) = a.control({"command": "status"})["vrrp_instances"]
        return int(vi["advert_intervals_missed"])

    vrrp_pid = a.control({"command": "status"})["vrrp_process"]["pid"]
    missed_before = missed()  # counted over a little more than the window: never less
    start = time.time()
    net.witness.collect(10.0)
    # A stall on every run, not only on a loaded machine: the VRRP process stopped for
    # 0.3 s, 30 intervals without an advert.
    os.kill(vrrp_pid, signal.SIGSTOP)
    try:
        time.sleep(0.3)
    finally:
        os.kill(vrrp_pid, signal.SIGCONT)
    net.witness.collect(start + 30.0 - time.time())
    missed_in_window = missed() - missed_before
    window = [x.at for x in net.adverts(start, mac_a) if x.at < start + 30.0]
    assert missed_in_window >= 29, missed_in_window
    assert max(gaps(window)) >= 0.3
    assert abs(len(window) + missed_in_window - 3000) <= 30, (len(window), missed_in_window)
    # And the adverts stay on one grid of 10 ms from the first: a cadence timed from each
    # sending drifts by its wake-up lateness every interval (7.5% slow once), and its
    # phases spread over the whole interval within a second. Kernel receive timestamps
    # are CLOCK_REALTIME, which NTP slews at the same rate as the daemon's
    # CLOCK_MONOTONIC, so the grid holds across the 30 s.
    phases = [(at - window[0]) / 0.01 % 1.0 for at in window]
    grid = cmath.phase(sum(cmath.exp(2j * math.pi * p) for p in phases)) / (2 * math.pi)
    on_grid = sum(abs((p - grid + 0.5) % 1.0 - 0.5) < 0.25 for p in phases)
    assert on_grid >= 0.95 * len(window), (on_grid, len(window))


def test_a_reload_that_adds_the_first_virtual_server_starts_checking_it(net: Net) -> None:
    a = net.daemon(net.a, "a", instance(HIGH))
    a.start()
    wait_until(lambda: a.control_socket.exists(), timeout=20, message="a running")
    a.extra = {
        "virtual_servers": [
            {
                "name": "web",
                "address": "192.0.2.100",
                "port": 80,
                "forwarding": "NAT",
                "real_servers": [
                    {
                        "address": "127.0.0.1",
                        "port": 9,
                        "weight": 2,
                        "checks": [
                            {
                                "type": "tcp",
                                "delay_loop": 0.3,
                                "connect_timeout": 1,
                                "retry": 0,
                                "warmup": False,
                            }
                        ],
                    },
                ],
            }
        ]
    }
    a.write_config()
    out = a.cli("reload")
    assert out.returncode == 0, out.stderr
    assert "applied: IPVS is now in use: starting its runtime" in out.stdout, out.stdout
    # Nothing listens on port 9: the check (which now runs) takes the server down.
    wait_until(
        lambda: (_rs(a) or {}).get("health") == "down",
        timeout=10,
        message="the new real server checked",
    )
    subscribers = [line for line in a.log_text().splitlines() if "bus.subscriber_error" in line]
    assert subscribers == []
