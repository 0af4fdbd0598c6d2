"""Sync groups and track_script against Debian's keepalived: a pair of directors, one
hacontrol and one keepalived, each with the same sync group of two instances on two links
and a track_script (weight 0) of its own. One link down on the master moves both
instances, and so does the master's script starting to fail; in both roles (hacontrol
master, keepalived backup, and the other way round)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.interop.ka_util import (
    HaDaemon,
    Instance,
    Keepalived,
    Peer,
    Script,
    SyncGroup,
    wait_single_holder,
)
from tests.netns.netns_util import Lab, Netns, require_root
from tests.support import require_tool

pytestmark = pytest.mark.interop

VIP1, VIP2 = "192.0.2.100", "198.51.100.100"
HIGH, LOW = 200, 100


@dataclass
class Directors:
    lab: Lab
    tmp: Path
    ha: Netns
    ka: Netns
    binary: str


@pytest.fixture
def directors(tmp_path: Path) -> Iterator[Directors]:
    require_root()
    binary = require_tool("keepalived")
    with Lab("kg") as lab:
        sw1, sw2 = lab.switch("s1"), lab.switch("s2")
        ha, ka = lab.netns("ha"), lab.netns("kd")
        lab.plug(ha, sw1, "eth0", "192.0.2.1/24")
        lab.plug(ka, sw1, "eth0", "192.0.2.2/24")
        lab.plug(ha, sw2, "eth1", "198.51.100.1/24")
        lab.plug(ka, sw2, "eth1", "198.51.100.2/24")
        yield Directors(lab, tmp_path, ha, ka, binary)


def instances(priority: int) -> tuple[Instance, Instance]:
    # keepalived's defaults where hacontrol's differ: VRRPv2, 1 s adverts.
    first = Instance(61, priority, (f"{VIP1}/24",), name="VI_1", track_script=(("chk", None),))
    second = replace(first, vrid=62, vips=(f"{VIP2}/24",), name="VI_2", interface="eth1")
    return first, second


def holder_of_both(peers: list[Peer], expected: str, timeout: float) -> None:
    wait_single_holder(peers, VIP1, expected, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p.name for p in peers if p.holds(VIP2, "eth1")]
        if found == [expected]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{VIP2}: wanted only {expected}, held by {found}")


def start(
    d: Directors, ha_priority: int, ka_priority: int
) -> tuple[HaDaemon, Keepalived, dict[str, Path]]:
    flags = {"ha": d.tmp / "ha-ok", "ka": d.tmp / "ka-ok"}
    for flag in flags.values():
        flag.write_text("")
    group = SyncGroup("G", ("VI_1", "VI_2"))
    ha_script = Script("chk", ("/usr/bin/test", "-e", str(flags["ha"])), interval=1.0)
    ka_script = Script("chk", ("/usr/bin/test", "-e", str(flags["ka"])), interval=1.0)
    ha = HaDaemon(
        d.lab,
        d.ha,
        d.tmp,
        "ha",
        instances(ha_priority),
        extra={
            "vrrp_scripts": [ha_script.hacontrol()],
            "vrrp_sync_groups": [group.hacontrol()],
        },
    )
    ka = Keepalived(
        d.lab,
        d.ka,
        d.tmp,
        "ka",
        instances(ka_priority),
        binary=d.binary,
        scripts=[ka_script],
        groups=[group],
    )
    ha.start()
    ka.start()
    return ha, ka, flags


@pytest.mark.parametrize("master", ["hacontrol", "keepalived"])
def test_sync_group_moves_both_instances_on_link_down_and_script_failure(
    directors: Directors, master: str
) -> None:
    high_is_ha = master == "hacontrol"
    ha, ka, flags = start(directors, HIGH if high_is_ha else LOW, LOW if high_is_ha else HIGH)
    peers: list[Peer] = [ha, ka]
    m, b = ("ha", "ka") if high_is_ha else ("ka", "ha")
    m_ns = directors.ha if high_is_ha else directors.ka
    holder_of_both(peers, m, timeout=20.0)
    # One link down on the master: both instances move to the other director.
    m_ns.ip("link", "set", "eth1", "down")
    holder_of_both(peers, b, timeout=15.0)
    m_ns.ip("link", "set", "eth1", "up")
    holder_of_both(peers, m, timeout=20.0)
    # The master's track_script (weight 0: FAULT while it fails) starts failing: both move.
    flags[m].unlink()
    holder_of_both(peers, b, timeout=15.0)
    flags[m].write_text("")
    holder_of_both(peers, m, timeout=20.0)
    if high_is_ha:
        groups = ha.control({"command": "status"})["vrrp_sync_groups"]
        assert groups[0]["state"] == "MASTER"
