"""LvsRuntime hands the reconciler's dumps to metrics (hacontrol/lvs.py): counters are
decoded while the metrics endpoint is configured (or something drains), and each dump is
published as it is, without waking the drain logic when nothing drains."""

from __future__ import annotations

from hacontrol.config import parse_config
from hacontrol.desired import start_service_drain
from hacontrol.ipvs.model import ServiceKey, Table, VirtualService
from hacontrol.ipvs.netlink import Snapshot
from hacontrol.lvs import LvsRuntime
from hacontrol.runtime.bus import Bus
from hacontrol.runtime.events import DesiredWeights, IpvsTableDumped

CONFIG = """\
global: {metrics_listen: %s}
virtual_servers:
  - address: 192.0.2.10
    port: 80
    real_servers:
      - {address: 198.51.100.1}
"""


async def test_dumps_go_to_the_bus_while_metrics_are_served() -> None:
    bus = Bus()
    got: list[object] = []
    bus.subscribe((IpvsTableDumped, DesiredWeights), got.append)
    lvs = LvsRuntime(parse_config(CONFIG % '"127.0.0.1:9650"'), bus, clock=lambda: 42.0)
    assert lvs._want_counters()
    snap = Snapshot(Table(), {}, {})
    lvs._on_snapshot(snap)
    assert got == [IpvsTableDumped(snap, 42.0)], "published whole; no drain, no recompute"

    quiet = LvsRuntime(parse_config(CONFIG % "null"), Bus())
    assert not quiet._want_counters(), "no endpoint, nothing draining: no counters to decode"


async def test_a_large_tables_dumps_are_spread_except_while_a_drain_waits() -> None:
    """The reconciler may read a large table's real servers over two passes
    (netlink.IpvsNetlink.dump), but not while a drain waits for connection counts: those
    must be the pass's own."""
    lvs = LvsRuntime(parse_config(CONFIG % "null"), Bus(), clock=lambda: 42.0)
    assert lvs._spread_dumps()
    # A service removed from the config drains, as LvsRuntime.reload starts it.
    service = VirtualService(ServiceKey.of("tcp", "192.0.2.10", 80), "wlc")
    lvs._service_drains[service.key] = start_service_drain(service, 42.0, 60.0)
    assert lvs._draining() and not lvs._spread_dumps()
    lvs._service_drains.clear()
    assert lvs._spread_dumps()
