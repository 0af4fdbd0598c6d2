"""`hacontrol run` starts its VRRP process before it loads the config (vrrp_launch.py), and
no such process outlives a run that did not take it: an invalid config, a second daemon
refused by the pid lock, an LVS-only director (which launches none at all). Real processes
throughout; the launch is only wrapped to see which process it started."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacontrol import cli
from hacontrol.runtime import vrrp_launch
from hacontrol.runtime.lock import PidLock
from hacontrol.runtime.resume import RESUME_FILE
from hacontrol.runtime.vrrp_host import VrrpSupervisor
from hacontrol.runtime.vrrp_launch import Launched, launch

GOOD = """
global: {router_id: t}
vrrp_instances:
- {name: VI_1, interface: eth0, vrid: 51, priority: 100, virtual_ipaddresses: [192.0.2.100/32]}
"""


def _gone(launched: Launched) -> bool:
    """Exited and reaped by whoever discarded it: nothing left running or as a zombie."""
    return launched.popen.returncode is not None and not Path(f"/proc/{launched.pid}").exists()


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Launched]]:
    seen: list[Launched] = []

    def recording(log_level: str) -> Launched:
        launched = launch(log_level)
        seen.append(launched)
        return launched

    monkeypatch.setattr(vrrp_launch, "launch", recording)
    yield seen
    for launched in seen:  # whatever the test did, nothing is left behind
        launched.discard()


def test_only_run_launches_early(launches: list[Launched], tmp_path: Path) -> None:
    assert cli._launch_vrrp_early(["check", "-c", "x"]) is None
    assert cli._launch_vrrp_early([]) is None
    assert cli._launch_vrrp_early(["run", "--help"]) is None
    assert cli._launch_vrrp_early(["run", "--vrrp-inline", "--run-dir", str(tmp_path)]) is None
    # After `hacontrol restart` the previous daemon's VRRP process is taken over instead.
    (tmp_path / RESUME_FILE).write_text("{}")
    assert cli._launch_vrrp_early(["run", "--run-dir", str(tmp_path)]) is None
    assert launches == []
    (tmp_path / RESUME_FILE).unlink()
    launched = cli._launch_vrrp_early(["run", "--log-level", "debug", "--run-dir", str(tmp_path)])
    assert launched is not None and launches == [launched]
    cmdline = Path(f"/proc/{launched.pid}/cmdline").read_bytes().split(b"\0")
    assert b"hacontrol.runtime.vrrp_process" in cmdline and b"debug" in cmdline
    launched.discard()
    assert _gone(launched)


def test_an_lvs_only_config_launches_no_vrrp_process(
    launches: list[Launched], tmp_path: Path
) -> None:
    run = ["run", "--run-dir", str(tmp_path / "run"), "-c"]
    lvs_only = tmp_path / "lvs.yaml"
    lvs_only.write_text("global: {router_id: t}\nvirtual_servers: []\n")
    assert cli._launch_vrrp_early([*run, str(lvs_only)]) is None
    assert launches == []
    # Instances here or possibly in an included file: launched, as for a config that
    # cannot be read (the daemon reports that one).
    included = tmp_path / "main.yaml"
    included.write_text("global: {router_id: t}\ninclude: conf.d/*.yaml\n")
    for config in (tmp_path / "vrrp.yaml", included, tmp_path / "missing.yaml"):
        if config.name == "vrrp.yaml":
            config.write_text(GOOD)
        launched = cli._launch_vrrp_early([*run, str(config)])
        assert launched is not None and launches[-1] is launched
        launched.discard()
    assert len(launches) == 3


def test_invalid_config_leaves_no_vrrp_process(
    launches: list[Launched], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(GOOD.replace("priority: 100", "priority: 300"))
    code = cli.main(["run", "-c", str(config), "--run-dir", str(tmp_path / "run")])
    assert code == 1
    assert "invalid config, not starting" in capsys.readouterr().err
    assert len(launches) == 1 and _gone(launches[0])


def test_second_daemon_refused_leaves_no_vrrp_process(
    launches: list[Launched], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "good.yaml"
    config.write_text(GOOD)
    run_dir = tmp_path / "run"
    held = PidLock.acquire(run_dir)  # the daemon already running
    try:
        code = cli.main(["run", "-c", str(config), "--run-dir", str(run_dir)])
    finally:
        held.release()
    assert code == 1
    assert "already running" in capsys.readouterr().err
    assert len(launches) == 1 and _gone(launches[0])


def test_supervisor_takes_the_launched_process_or_discards_it() -> None:
    async def scenario() -> None:
        taken = launch("info")
        sup = VrrpSupervisor(lambda _event: None)
        try:
            await sup.prestart(True, taken)
            assert taken.taken and sup.pid == taken.pid
            await asyncio.wait_for(sup.hello.wait(), 60)  # it is the one that answers
            taken.discard()  # the supervisor's now: a late discard is a no-op
            assert taken.popen.returncode is None
        finally:
            await sup.stop()
        assert _gone(taken)
        unneeded = launch("info")  # an LVS-only director has no use for it
        await VrrpSupervisor(lambda _event: None).prestart(False, unneeded)
        assert _gone(unneeded)

    asyncio.run(scenario())
