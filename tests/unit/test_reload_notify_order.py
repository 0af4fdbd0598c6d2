"""A reload tells the notify planner what the new config drops before the VRRP process
hears of it.

The VRRP process may report a removed instance's stop before it answers the Configure
that removed it (its events and its reply share one socket, and the stop is queued first).
Were the planner told after the VRRP process, it would still know the instance and take
its stop for a restart: keepalived's FAULT (or DELETED) line and scripts for a removed
instance would be lost. Seen in tests/interop/test_notify_sync_group.py when the daemon
called the VRRP process twice per reload, once before the planner heard of the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hacontrol.config import parse_config
from hacontrol.daemon import Daemon
from hacontrol.notify_plan import Notification
from vrrp.events import InstanceStateChanged, ReconfigureResult
from vrrp.types import Reason, State

CONFIG = """\
global:
  notify_fifo: /nonexistent/notify.fifo
vrrp_instances:
  - {name: VI_1, interface: eth0, vrid: 51, virtual_ipaddresses: [192.0.2.10/24]}
  - {name: VI_2, interface: eth1, vrid: 52, virtual_ipaddresses: [198.51.100.10/24]}
vrrp_sync_groups:
  - {name: G, group: [VI_1, VI_2], notify: [/bin/true]}
"""
RELOADED = """\
global:
  notify_fifo: /nonexistent/notify.fifo
vrrp_instances:
  - {name: VI_1, interface: eth0, vrid: 51, virtual_ipaddresses: [192.0.2.10/24]}
vrrp_sync_groups:
  - {name: G, group: [VI_1], notify: [/bin/true]}
"""


class EagerVrrp:
    """The VRRP process, as far as a reload sees it: its events for the instances a
    Configure removes arrive before its reply."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.calls: list[tuple[tuple[str, ...], tuple[str, ...] | None]] = []
        self.running = {"VI_1", "VI_2"}

    async def configure(
        self, instances: Sequence[Any], holds: Iterable[str] | None = None, groups: Any = None
    ) -> ReconfigureResult:
        names = tuple(i.name for i in instances)
        self.calls.append((names, None if groups is None else tuple(g.name for g in groups)))
        removed = tuple(sorted(self.running - set(names)))
        for name in removed:
            self.daemon.bus.publish(
                InstanceStateChanged(
                    name, "eth1", 52, State.MASTER, State.INITIALIZE, Reason.SHUTDOWN, 100, 100
                )
            )
        self.running = set(names)
        return ReconfigureResult(unchanged=names, removed=removed)

    @property
    def states(self) -> dict[str, State]:
        return dict.fromkeys(self.running, State.MASTER)

    def set_tracked(self, *args: Any) -> None:
        pass


async def test_a_removed_instance_says_fault_even_when_its_stop_comes_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hacontrol.yaml"
    path.write_text(CONFIG)
    daemon = Daemon(
        parse_config(CONFIG, str(path)), path, run_dir=tmp_path / "run", state_dir=tmp_path
    )
    fake = EagerVrrp(daemon)
    daemon.vrrp = fake  # type: ignore[assignment]
    said: list[Notification] = []
    daemon.vrrp_notify._perform = said.append  # type: ignore[method-assign]
    # What VrrpNotify.start() subscribes (without its script runner and FIFO writers).
    daemon.bus.subscribe(InstanceStateChanged, daemon.vrrp_notify._on_event)
    for name in ("VI_1", "VI_2"):
        assert daemon.vrrp_notify.planner.state_changed(name, State.MASTER, 100) is not None
    path.write_text(RELOADED)
    result = await daemon.reload()
    assert result.result == "applied", result
    assert [n.fifo_line for n in said] == ['INSTANCE "VI_2" FAULT 100\n']
    # One Configure per reload, with the sync groups.
    assert fake.calls == [(("VI_1",), ("G",))]
