"""The VIP sweep's look at a master: a VIP it holds that is missing from its interface is
added again and announced; a present one, a `no_track` one, one not held and a re-add
already queued are left alone.

The sweep runs every second for every master (vrrp/io.py `_sweep`), so `_check_vips`
first checks the common case, every held VIP present, from a tuple kept beside
`held_vips`. These tests drive a real `VrrpEngine` (the rig of test_vrrp_repeat.py) and
change its address table and its held VIPs as route netlink and its worker would; the
tuple must follow every such change, or a lost VIP would go unrepaired.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import ip_interface
from typing import Any

import pytest

from tests.unit.test_vrrp_repeat import IFINDEX, VIP, Rig, instance_spec, make_rig
from vrrp.events import VipRepaired
from vrrp.rtnl import LinkAddress
from vrrp.types import AddAddresses, AddressOptions, SendGratuitousArp, State

HELD = ip_interface(f"{VIP}/24")


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    yield from make_rig(monkeypatch, instance_spec(priority=255), State.MASTER)


def holding(rig: Rig) -> Any:
    """The master's worker stopped and its queue emptied; the VIP held and present, as
    after its worker added it."""
    runner = rig.runner
    if runner.worker is not None:
        runner.worker.cancel()
        runner.worker = None
    while not runner.queue.empty():
        runner.queue.get_nowait()
    runner.hold(HELD, "eth0")
    rig.engine._addresses[IFINDEX][VIP] = LinkAddress(IFINDEX, HELD)
    return runner


def sweep(rig: Rig) -> tuple[list[Any], list[Any]]:
    """One sweep's look at the master: what it queued for its worker, what it published."""
    published: list[Any] = []
    rig.engine._publish = published.append  # type: ignore[method-assign]
    rig.engine._check_vips(rig.runner)
    queued = []
    while not rig.runner.queue.empty():
        queued.append(rig.runner.queue.get_nowait())
    return queued, published


def test_a_present_vip_is_left_alone(master: Rig) -> None:
    holding(master)
    assert sweep(master) == ([], [])


def test_a_missing_vip_is_added_again_and_announced_once(master: Rig) -> None:
    runner = holding(master)
    assert sweep(master) == ([], [])  # the fast path's tuple is built now...
    del master.engine._addresses[IFINDEX][VIP]  # ...and then the VIP goes (no event)
    queued, published = sweep(master)
    assert queued[0] == AddAddresses((HELD,))
    assert isinstance(queued[1], SendGratuitousArp) and queued[1].addresses == (VIP,)
    assert published == [VipRepaired("vi", "eth0", str(HELD))]
    # Queued already: the next sweep, before the worker ran, does not queue it twice.
    assert sweep(master) == ([], [])
    assert runner.repairing == {HELD}


def test_a_vip_released_and_held_again_is_watched_again(master: Rig) -> None:
    runner = holding(master)
    sweep(master)
    assert runner.release(HELD) == "eth0"
    del master.engine._addresses[IFINDEX][VIP]
    assert sweep(master) == ([], [])  # not held: not ours to put back
    runner.hold(HELD, "eth0")
    queued, _ = sweep(master)
    assert queued[0] == AddAddresses((HELD,))


def test_no_track_is_followed_across_a_reload(master: Rig) -> None:
    runner = holding(master)
    sweep(master)
    del master.engine._addresses[IFINDEX][VIP]
    no_track = ((VIP, AddressOptions(no_track=True)),)
    runner.spec = replace(runner.spec, vip_options=no_track)
    runner.derive()
    assert sweep(master) == ([], [])  # keepalived leaves a no_track VIP missing
    runner.spec = replace(runner.spec, vip_options=())
    runner.derive()
    queued, _ = sweep(master)
    assert queued[0] == AddAddresses((HELD,))


def test_a_backup_has_nothing_to_repair(monkeypatch: pytest.MonkeyPatch) -> None:
    for backup in make_rig(monkeypatch, instance_spec(), State.BACKUP):
        holding(backup)  # say, a step-down whose removal is still queued
        del backup.engine._addresses[IFINDEX][VIP]
        assert sweep(backup) == ([], [])
