"""Prometheus metrics: a subscriber of the daemon's bus (never updated from pure code).

Each daemon owns its own CollectorRegistry, so tests can run several daemons in one
process and read each one's figures. Event-driven figures (states, transitions,
reconcile passes, reloads) are updated when their event is published; figures that
change thousands of times a second (adverts, drops, checks) are kept by their engines in
plain integers and read at scrape time: a scrape asks the VRRP process for a cumulative
`VrrpCounters` snapshot and waits for it (at most a second; hacontrol/daemon.py
`_counters_for_scrape`), the check runner's `RunnerStats` is read directly.

The kernel's IPVS table (`IpvsCollector`) is exported under node_exporter's ipvs collector
names and labels, so LVS dashboards and alerts written for node_exporter work unchanged:
`node_ipvs_backend_connections_active`, `node_ipvs_backend_connections_inactive` and
`node_ipvs_backend_weight` per real server, labelled `local_address`, `local_port`,
`remote_address`, `remote_port`, `proto`, `local_mark` exactly as node_exporter renders
/proc/net/ip_vs; and the host totals `node_ipvs_connections_total`,
`node_ipvs_{incoming,outgoing}_{packets,bytes}_total`, which node_exporter (and we) read
from /proc/net/ip_vs_stats (five numbers, read at scrape time: the kernel's own totals,
which a sum over the current services is not once a service was deleted or zeroed).
node_exporter has no per-service or per-real-server traffic counters; ours carry its label
names: `hacontrol_ipvs_service_*_total` and `hacontrol_ipvs_backend_*_total` (connections,
packets and bytes in and out, as `ipvsadm -Ln --stats`), plus the persistent connection
count (`ipvsadm --persistent-conn`).

Where the table figures come from, and what that costs. A dump at scrape time would be a
second dump of a table the reconciler already dumps every `ipvs.reconcile_interval`, and
on a large table (10,000 services x 5 real servers) one dump is one request per service.
So no dump is made for metrics: while the metrics endpoint is configured, the reconciler's
own table dump keeps the counters' bytes too (hacontrol/lvs.py `_want_counters`) and every
such dump is published on the bus (`IpvsTableDumped`); the collector keeps the last one
and renders it when Prometheus scrapes, with its age (`hacontrol_ipvs_snapshot_age_seconds`).
The figures are therefore as of the last reconcile pass's dump, taken before that pass's
writes: at most one `reconcile_interval` old while passes succeed, older (and said so by
the age) when they fail. (The kernel's own traffic totals lag too: it folds its per-CPU
counters into what it reports every 2 s, when its rate estimator runs.)

The trade-off: decoding the counters is most of the Python work of a dump whose settings
did not change (hacontrol/ipvs/netlink.py `DumpDecoder` skips decoding those), so a pass
only keeps their bytes and the first scrape after it decodes them (`Snapshot`), in the
scrape's thread: the cost moves from every `reconcile_interval` to at most once per scrape
and pass, and a pass without a scrape since pays nothing for them. Scraping more often than
passes run decodes each dump once. A drain in progress reads them on every pass.
benchmarks/ipvs_apply.py prints a pass without counters, with them kept, and with them
decoded (README, Benchmarks). While IPVS is unavailable nothing of the table is exported, as
node_exporter exports nothing without /proc/net/ip_vs.

Series of things the configuration no longer has (a VRRP instance, a virtual server, a real
server) are removed when the new `Topology` is published, so an alert on a stale value
(a removed real server that was down) cannot fire forever. The VRRP state carries the
virtual router's identity (`vrid`, `interface`, `family`) so rules can compare the
directors' states of one virtual router side by side.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector

from hacontrol.ipvs.model import IPAddress, Protocol, ServiceKey
from hacontrol.ipvs.netlink import Snapshot, Stats
from hacontrol.notify_plan import FifoStats
from hacontrol.runtime.bus import Bus
from hacontrol.runtime.events import (
    IpvsAvailability,
    IpvsTableDumped,
    OverridesChanged,
    RealServerHealthKnown,
    ReconcileResult,
    ReloadResult,
    Topology,
    VrrpProcessChanged,
)
from healthcheck.notify import NotifyStats
from healthcheck.policy import QuorumChanged
from healthcheck.runner import RunnerStats
from healthcheck.state import RealServerDown, RealServerUp

if TYPE_CHECKING:
    from hacontrol.tracking import TrackingStats
from vrrp.events import (
    FaultsChanged,
    HoldChanged,
    InstanceCounters,
    InstanceStateChanged,
    PriorityChanged,
    RouteRepaired,
    SyncGroupStateChanged,
    TrackingChanged,
    VipRepaired,
    VrrpCounters,
)
from vrrp.types import State

log = logging.getLogger("hacontrol.metrics")

_STATE_VALUE = {State.INITIALIZE: 0, State.BACKUP: 1, State.MASTER: 2, State.FAULT: 3}


class Metrics:
    def __init__(
        self, registry: CollectorRegistry | None = None, *, ipvs: IpvsCollector | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # vrid, interface and family name the virtual router, so that the states of one
        # router on every director can be compared (two masters, no master).
        self.vrrp_state = Gauge(
            "hacontrol_vrrp_state",
            "VRRP instance state: 0 init, 1 backup, 2 master, 3 fault",
            ["vrrp_instance", "vrid", "interface", "family"],
            registry=r,
        )
        self.vrrp_transitions = Counter(
            "hacontrol_vrrp_transitions",
            "VRRP state changes",
            ["vrrp_instance", "from_state", "to_state", "reason"],
            registry=r,
        )
        self.vrrp_priority = Gauge(
            "hacontrol_vrrp_priority",
            "VRRP priority: configured (kind=base) and advertised (kind=effective)",
            ["vrrp_instance", "kind"],
            registry=r,
        )
        self.vrrp_faults = Gauge(
            "hacontrol_vrrp_fault",
            "1 while this reason holds the instance in FAULT",
            ["vrrp_instance", "reason"],
            registry=r,
        )
        self.vrrp_tracked_up = Gauge(
            "hacontrol_vrrp_tracked_up",
            "1 while a tracked item (interface, script, file, process) of an instance is up, "
            "0 while down; absent until known",
            ["vrrp_instance", "kind", "name"],
            registry=r,
        )
        self.vrrp_tracked_delta = Gauge(
            "hacontrol_vrrp_tracked_priority_delta",
            "what a tracked item adds to the instance's priority now (weight; file: value*weight)",
            ["vrrp_instance", "kind", "name"],
            registry=r,
        )
        self.vrrp_sync_group_state = Gauge(
            "hacontrol_vrrp_sync_group_state",
            "VRRP sync group state: 0 init, 1 backup, 2 master, 3 fault",
            ["group"],
            registry=r,
        )
        self.vrrp_sync_group_transitions = Counter(
            "hacontrol_vrrp_sync_group_transitions",
            "VRRP sync group state changes",
            ["group", "to_state"],
            registry=r,
        )
        self._fault_reasons: dict[str, set[str]] = {}
        self.vrrp_stepped_down = Gauge(
            "hacontrol_vrrp_stepped_down",
            "1 while an operator's step-down holds the instance in BACKUP",
            ["vrrp_instance"],
            registry=r,
        )
        self.vrrp_vip_repairs = Counter(
            "hacontrol_vrrp_vip_repairs",
            "VIPs found missing on a master (deleted by hand) and added again",
            ["vrrp_instance"],
            registry=r,
        )
        self.vrrp_route_repairs = Counter(
            "hacontrol_vrrp_route_repairs",
            "virtual routes and rules found missing on a master and added again, by kind",
            ["vrrp_instance", "kind"],
            registry=r,
        )
        self.vrrp_process_restarts = Counter(
            "hacontrol_vrrp_process_restarts",
            "times the VRRP process died and was restarted",
            registry=r,
        )
        self.vrrp_counters = VrrpCountersCollector()
        r.register(self.vrrp_counters)
        self.reconcile_passes = Counter(
            "hacontrol_reconcile_passes",
            "reconcile passes, by kind of kernel state and result",
            ["kind", "result"],
            registry=r,
        )
        self.reconcile_repairs = Counter(
            "hacontrol_reconcile_repairs",
            "kernel state found drifted from the desired state and put back, by kind",
            ["kind"],
            registry=r,
        )
        self.reconcile_writes = Counter(
            "hacontrol_reconcile_writes",
            "kernel writes made by the reconciler, by kind",
            ["kind"],
            registry=r,
        )
        self.reconcile_duration = Gauge(
            "hacontrol_reconcile_last_duration_seconds",
            "how long the last reconcile pass of each kind took",
            ["kind"],
            registry=r,
        )
        self.reconcile_ok = Gauge(
            "hacontrol_reconcile_last_ok",
            "1 when the last reconcile pass of this kind succeeded",
            ["kind"],
            registry=r,
        )
        self.real_server_up = Gauge(
            "hacontrol_real_server_up",
            "1 when a real server's checks pass",
            ["virtual_server", "real_server"],
            registry=r,
        )
        self.check_transitions = Counter(
            "hacontrol_real_server_transitions",
            "real-server up/down changes",
            ["virtual_server", "to_state"],
            registry=r,
        )
        self.real_server_drained = Gauge(
            "hacontrol_real_server_drained",
            "1 while an operator's drain holds a real server out of service",
            ["virtual_server", "real_server"],
            registry=r,
        )
        self.quorum_up = Gauge(
            "hacontrol_virtual_server_quorum_up",
            "1 while a virtual server has quorum",
            ["virtual_server"],
            registry=r,
        )
        self.config_reloads = Counter(
            "hacontrol_config_reloads", "configuration reloads", ["result"], registry=r
        )
        for result in ("applied", "unchanged", "rejected"):
            self.config_reloads.labels(result)
        self.config_reload_ok = Gauge(
            "hacontrol_config_last_reload_successful",
            "0 while the last reload was rejected (the daemon runs the configuration it had)",
            registry=r,
        )
        self.config_reload_ok.set(1)
        self.ipvs = ipvs or IpvsCollector()
        r.register(self.ipvs)
        # Python's own per-generation figures (python_gc_collections_total{generation}),
        # beside ours for the full collections the daemon paces (hacontrol/gcpace.py).
        GCCollector(registry=r)
        self.gc_full_collections = Counter(
            "hacontrol_gc_full_collections",
            "full garbage collections run by the daemon's pacer, by whether they also walked "
            "the objects frozen at start-up",
            ["thawed"],
            registry=r,
        )
        self.gc_collected = Counter(
            "hacontrol_gc_collected_objects",
            "unreachable objects the paced full collections found",
            registry=r,
        )
        self.gc_last_pause = Gauge(
            "hacontrol_gc_last_full_collection_seconds",
            "how long the last paced full collection held the event loop",
            registry=r,
        )
        self.gc_interval = Gauge(
            "hacontrol_gc_full_collection_interval_seconds",
            "seconds between paced full collections; 0 while CPython's automatic ones run",
            registry=r,
        )
        for thawed in ("false", "true"):
            self.gc_full_collections.labels(thawed)
        self._drained: frozenset[tuple[str, str, int]] = frozenset()
        # Series per VRRP instance / virtual server, so those the config drops can go.
        self._instance_series: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}
        self._state_labels: dict[str, tuple[str, ...]] = {}
        self._instances: frozenset[str] | None = None  # of the last Topology
        self._real_servers: dict[str, frozenset[str]] = {}  # virtual server -> "ADDR:PORT"
        self._quorum_known: set[str] = set()
        self._notify: NotifyCollector | None = None

    def watch_check_runner(self, stats: RunnerStats) -> None:
        """Export a check runner's own figures (hacontrol_check_*)."""
        self.registry.register(CheckRunnerCollector(stats))

    def watch_tracking(self, stats: TrackingStats) -> None:
        """Export the tracking runtime's figures (hacontrol_track_*)."""
        self.registry.register(TrackingCollector(stats))

    def watch_notify(self, source: str, stats: NotifyStats) -> None:
        """Export a notify-script runner's figures (hacontrol_notify_scripts_*), `source`
        being `vrrp` (notify_master, ...) or `lvs` (notify_up, quorum_up, ...)."""
        if self._notify is None:
            self._notify = NotifyCollector()
            self.registry.register(self._notify)
        self._notify.sources[source] = stats

    def watch_notify_fifos(self, fifos: Callable[[], Iterable[FifoStats]]) -> None:
        """Export the notify FIFOs' figures (hacontrol_notify_fifo_*)."""
        self.registry.register(NotifyFifoCollector(fifos))

    def watch_bus(self, bus: Bus) -> None:
        """Export the bus's own health (subscribers that raised)."""
        self.registry.register(BusCollector(bus))

    def subscribe(self, bus: Bus) -> None:
        handlers: dict[type, Callable[[Any], None]] = {
            InstanceStateChanged: self.on_state_change,
            PriorityChanged: self.on_priority,
            FaultsChanged: self.on_faults,
            HoldChanged: self.on_hold,
            TrackingChanged: self.on_tracking,
            SyncGroupStateChanged: self.on_sync_group,
            VipRepaired: self.on_vip_repaired,
            RouteRepaired: self.on_route_repaired,
            VrrpCounters: self.vrrp_counters.update,
            VrrpProcessChanged: self.on_vrrp_process,
            ReconcileResult: self.on_reconcile,
            IpvsAvailability: self.on_ipvs_availability,
            RealServerUp: self.on_health_event,
            RealServerDown: self.on_health_event,
            RealServerHealthKnown: self.on_health_known,
            QuorumChanged: self.on_quorum,
            ReloadResult: self.on_reload,
            OverridesChanged: self.on_overrides,
            Topology: self.on_topology,
            IpvsTableDumped: self.on_ipvs_table,
        }
        for kind, handler in handlers.items():
            bus.subscribe(kind, handler, name=f"metrics.{kind.__name__}")

    # ---- VRRP ------------------------------------------------------------------------

    def _set(self, gauge: Gauge, instance: str, labels: tuple[str, ...], value: float) -> None:
        """Set a per-instance gauge, remembering the series so it can be removed."""
        gauge.labels(*labels).set(value)
        self._instance_series.setdefault(instance, set()).add((gauge, labels))

    def _forget_instance(self, instance: str) -> None:
        for gauge, labels in self._instance_series.pop(instance, ()):
            gauge.remove(*labels)
        self._state_labels.pop(instance, None)
        self._fault_reasons.pop(instance, None)

    def on_state_change(self, event: InstanceStateChanged) -> None:
        name = event.instance
        self.vrrp_transitions.labels(
            name, event.old.value, event.new.value, event.reason.value
        ).inc()
        if (
            event.new is State.INITIALIZE
            and self._instances is not None
            and name not in self._instances
        ):
            # The last words of an instance the new config removed: forget it, or its
            # INIT series would count as a director without a master for ever.
            self._forget_instance(name)
            return
        labels = (name, str(event.vrid), event.interface, event.family)
        old = self._state_labels.get(name)
        if old is not None and old != labels:
            # Restarted with another identity: the old virtual router is no longer ours.
            self.vrrp_state.remove(*old)
            self._instance_series[name].discard((self.vrrp_state, old))
        self._state_labels[name] = labels
        self._set(self.vrrp_state, name, labels, _STATE_VALUE[event.new])
        self._set(self.vrrp_priority, name, (name, "base"), event.priority)
        self._set(self.vrrp_priority, name, (name, "effective"), event.effective_priority)

    def on_priority(self, event: PriorityChanged) -> None:
        name = event.instance
        self._set(self.vrrp_priority, name, (name, "base"), event.priority)
        self._set(self.vrrp_priority, name, (name, "effective"), event.effective_priority)

    def on_faults(self, event: FaultsChanged) -> None:
        name = event.instance
        seen = self._fault_reasons.setdefault(name, set())
        seen.update(("no_such_interface", "link_down", "no_source_address"))
        seen.update(event.faults)  # tracking (track_script:NAME, ...) and sync_group too
        for reason in seen:
            self._set(self.vrrp_faults, name, (name, reason), 1 if reason in event.faults else 0)

    def on_tracking(self, event: TrackingChanged) -> None:
        name = event.instance
        for item in event.items:
            labels = (name, item.kind, item.name)
            if item.state == "pending":
                continue
            self._set(self.vrrp_tracked_up, name, labels, 1 if item.state == "up" else 0)
            self._set(self.vrrp_tracked_delta, name, labels, item.delta)
        self._set(self.vrrp_priority, name, (name, "effective"), event.effective_priority)

    def on_sync_group(self, event: SyncGroupStateChanged) -> None:
        self.vrrp_sync_group_state.labels(event.group).set(_STATE_VALUE[event.new])
        self.vrrp_sync_group_transitions.labels(event.group, event.new.value).inc()

    def on_hold(self, event: HoldChanged) -> None:
        name = event.instance
        self._set(self.vrrp_stepped_down, name, (name,), 1 if event.held else 0)

    def on_vip_repaired(self, event: VipRepaired) -> None:
        self.vrrp_vip_repairs.labels(event.instance).inc()

    def on_route_repaired(self, event: RouteRepaired) -> None:
        self.vrrp_route_repairs.labels(event.instance, event.kind).inc()

    def on_vrrp_process(self, event: VrrpProcessChanged) -> None:
        if event.event == "started" and event.detail == "restart":
            self.vrrp_process_restarts.inc()
            self.vrrp_counters.process_restarted()

    def on_gc_collect(self, pause: float, collected: int, thawed: bool) -> None:
        self.gc_full_collections.labels("true" if thawed else "false").inc()
        self.gc_collected.inc(collected)
        self.gc_last_pause.set(pause)

    # ---- kernel, checks, operator ----------------------------------------------------

    def on_reconcile(self, result: ReconcileResult) -> None:
        self.reconcile_passes.labels(result.kind, "ok" if result.ok else "failed").inc()
        if result.repairs:
            self.reconcile_repairs.labels(result.kind).inc(result.repairs)
        else:
            self.reconcile_repairs.labels(result.kind)
        self.reconcile_writes.labels(result.kind).inc(result.writes)
        self.reconcile_duration.labels(result.kind).set(result.duration)
        self.reconcile_ok.labels(result.kind).set(1 if result.ok else 0)

    def on_ipvs_availability(self, event: IpvsAvailability) -> None:
        self.ipvs.set_available(event.available)

    def on_ipvs_table(self, event: IpvsTableDumped) -> None:
        self.ipvs.update(event.snapshot, event.at)

    def on_health_event(self, event: RealServerUp | RealServerDown) -> None:
        server = event.server
        rs = f"{server.address}:{server.port}"
        up = isinstance(event, RealServerUp)
        self.real_server_up.labels(server.virtual_service, rs).set(1 if up else 0)
        self.check_transitions.labels(server.virtual_service, "up" if up else "down").inc()

    def on_health_known(self, event: RealServerHealthKnown) -> None:
        rs = f"{event.address}:{event.port}"
        self.real_server_up.labels(event.virtual_server, rs).set(1 if event.up else 0)

    def on_quorum(self, event: QuorumChanged) -> None:
        self.quorum_up.labels(event.virtual_service).set(1 if event.up else 0)
        self._quorum_known.add(event.virtual_service)

    def on_reload(self, event: ReloadResult) -> None:
        self.config_reloads.labels(event.result).inc()
        self.config_reload_ok.set(0 if event.result == "rejected" else 1)

    def on_topology(self, event: Topology) -> None:
        """The configuration now running: drop the series of what it no longer has."""
        instances = frozenset(i.name for i in event.instances)
        if self._instances is not None:
            for name in self._instances - instances:
                self._forget_instance(name)
        self._instances = instances
        servers = {
            vs.name: frozenset(f"{rs.address}:{rs.port}" for rs in vs.real_servers)
            for vs in event.virtual_servers
        }
        for vs, old in self._real_servers.items():
            for rs in old - servers.get(vs, frozenset()):
                with contextlib.suppress(KeyError):
                    self.real_server_up.remove(vs, rs)
                with contextlib.suppress(KeyError):
                    self.real_server_drained.remove(vs, rs)
        self._real_servers = servers
        drained = {(vs, f"{address}:{port}") for vs, address, port in self._drained}
        for vs, rss in servers.items():
            for rs in rss:
                # Present from the start, so "not drained" is a value, not a missing series.
                self.real_server_drained.labels(vs, rs).set(1 if (vs, rs) in drained else 0)
        for vs in self._quorum_known - servers.keys():
            self.quorum_up.remove(vs)
        # The policy says nothing of a virtual server that starts with quorum (only of one
        # that starts without): it has quorum until told otherwise.
        for vs in servers.keys() - self._quorum_known:
            self.quorum_up.labels(vs).set(1)
        self._quorum_known = set(servers)

    def on_overrides(self, event: OverridesChanged) -> None:
        for vs, address, port in self._drained - event.drained:
            self.real_server_drained.labels(vs, f"{address}:{port}").set(0)
        for vs, address, port in event.drained:
            self.real_server_drained.labels(vs, f"{address}:{port}").set(1)
        self._drained = event.drained


class VrrpCountersCollector:
    """The VRRP engine's per-packet figures from its cumulative snapshots.

    A restarted VRRP process counts from zero again; what the previous one had counted is
    kept as a base, so the exported counters never go backwards.
    """

    def __init__(self) -> None:
        self._base = VrrpCounters({}, {})
        self._last = VrrpCounters({}, {})
        # Called first thing in collect(): the daemon's way to get a fresh snapshot.
        self.refresh: Callable[[], None] | None = None

    def update(self, counters: VrrpCounters) -> None:
        self._last = counters

    def process_restarted(self) -> None:
        self._base = _add(self._base, self._last)
        self._last = VrrpCounters({}, {})

    def describe(self) -> Iterator[Metric]:
        return self._families()  # the names only: no need to ask for fresh figures

    def collect(self) -> Iterator[Metric]:
        if self.refresh is not None:
            self.refresh()
        return self._families()

    def _families(self) -> Iterator[Metric]:
        total = _add(self._base, self._last)
        for attr, name, doc in (
            ("adverts_sent", "hacontrol_vrrp_adverts_sent", "VRRP advertisements sent"),
            (
                "adverts_received",
                "hacontrol_vrrp_adverts_received",
                "valid VRRP advertisements received",
            ),
            (
                "garp_sent",
                "hacontrol_vrrp_gratuitous_arp_sent",
                "gratuitous ARP / unsolicited NA frames sent",
            ),
            (
                "address_mismatch",
                "hacontrol_vrrp_address_list_mismatch",
                "adverts whose address list differs from ours (RFC 5798 §7.1: logged, not dropped)",
            ),
            (
                "intervals_missed",
                "hacontrol_vrrp_advert_intervals_missed",
                "Advertisement_Intervals a master let pass without an advert because its timer "
                "fired that late (a stall of the machine or the process)",
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["vrrp_instance"])
            for instance, c in sorted(total.instances.items()):
                family.add_metric([instance], getattr(c, attr))
            yield family
        errors = CounterMetricFamily(
            "hacontrol_vrrp_errors",
            "VRRP actions that failed (send_advert, add_address, remove_address, send_garp)",
            labels=["vrrp_instance", "operation"],
        )
        for instance, c in sorted(total.instances.items()):
            for operation, n in sorted(c.errors.items()):
                errors.add_metric([instance, operation], n)
        yield errors
        drops = CounterMetricFamily(
            "hacontrol_vrrp_packets_dropped",
            "VRRP packets dropped, by reason",
            labels=["interface", "reason"],
        )
        for (interface, reason), n in sorted(total.drops.items()):
            drops.add_metric([interface, reason], n)
        yield drops


def _add(a: VrrpCounters, b: VrrpCounters) -> VrrpCounters:
    instances: dict[str, InstanceCounters] = dict(a.instances)
    for name, c in b.instances.items():
        base = instances.get(name)
        if base is None:
            instances[name] = c
            continue
        errors: dict[str, int] = dict(base.errors)
        for op, n in c.errors.items():
            errors[op] = errors.get(op, 0) + n
        instances[name] = InstanceCounters(
            adverts_sent=base.adverts_sent + c.adverts_sent,
            adverts_received=base.adverts_received + c.adverts_received,
            garp_sent=base.garp_sent + c.garp_sent,
            address_mismatch=base.address_mismatch + c.address_mismatch,
            errors=errors,
            intervals_missed=base.intervals_missed + c.intervals_missed,
        )
    drops: dict[tuple[str, str], int] = dict(a.drops)
    for key, n in b.drops.items():
        drops[key] = drops.get(key, 0) + n
    return VrrpCounters(instances, drops)


class TrackingCollector:
    """The tracking runtime's counters (hacontrol/tracking.py), read when scraped."""

    def __init__(self, stats: TrackingStats) -> None:
        self._stats = stats

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(
            "hacontrol_track_errors",
            "tracking errors: a script that timed out, could not start or died of a signal; "
            "a track file that is missing, empty or not a number; process events lost",
            labels=["kind", "name", "reason"],
        )
        for (kind, name, reason), n in sorted(self._stats.errors.items()):
            errors.add_metric([kind, name, reason], n)
        yield errors
        runs = CounterMetricFamily(
            "hacontrol_track_script_runs",
            "vrrp_script runs by result (success: exit status 0)",
            labels=["script", "result"],
        )
        for (name, result), n in sorted(self._stats.runs.items()):
            runs.add_metric([name, result], n)
        yield runs


class NotifyCollector:
    """The Notifiers' counts (one per source), read at scrape time."""

    RESULTS = ("succeeded", "failed", "timed_out", "exec_errors", "dropped", "abandoned")

    def __init__(self) -> None:
        self.sources: dict[str, NotifyStats] = {}

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "hacontrol_notify_scripts",
            "notify scripts by outcome: succeeded (exit 0), failed, timed_out (killed with "
            "their process group), exec_errors (could not start), dropped (queue full), "
            "abandoned (still queued when the daemon stopped)",
            labels=["source", "result"],
        )
        for source, stats in sorted(self.sources.items()):
            for result in self.RESULTS:
                family.add_metric([source, result], getattr(stats, result))
        yield family


class NotifyFifoCollector:
    """The notify FIFOs' figures, read at scrape time (hacontrol/notify_fifo.py)."""

    DROP_REASONS = ("buffer_full", "shutdown")
    ERROR_REASONS = (
        "no_reader",
        "reader_gone",
        "reader_slow",
        "not_a_fifo",
        "create_failed",
        "open_failed",
        "write_failed",
    )

    def __init__(self, fifos: Callable[[], Iterable[FifoStats]]) -> None:
        self._fifos = fifos

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        written = CounterMetricFamily(
            "hacontrol_notify_fifo_lines_written",
            "lines written to a notify FIFO",
            labels=["fifo"],
        )
        dropped = CounterMetricFamily(
            "hacontrol_notify_fifo_lines_dropped",
            "lines a notify FIFO never got: buffer_full (its reader was absent or slow and "
            "the buffer full: the oldest go first), shutdown (undelivered at exit)",
            labels=["fifo", "reason"],
        )
        errors = CounterMetricFamily(
            "hacontrol_notify_fifo_errors",
            "episodes of trouble with a notify FIFO, counted once each however long they "
            "last: no_reader, reader_gone, reader_slow, not_a_fifo, create_failed, "
            "open_failed, write_failed",
            labels=["fifo", "reason"],
        )
        buffered = GaugeMetricFamily(
            "hacontrol_notify_fifo_buffered_lines",
            "lines waiting for a notify FIFO's reader",
            labels=["fifo"],
        )
        reader = GaugeMetricFamily(
            "hacontrol_notify_fifo_open",
            "1 while a notify FIFO is open for writing (a reader had it open at the last write)",
            labels=["fifo"],
        )
        for stats in self._fifos():
            written.add_metric([stats.path], stats.written)
            for reason in sorted({*self.DROP_REASONS, *stats.dropped}):
                dropped.add_metric([stats.path, reason], stats.dropped.get(reason, 0))
            for reason in sorted({*self.ERROR_REASONS, *stats.errors}):
                errors.add_metric([stats.path, reason], stats.errors.get(reason, 0))
            buffered.add_metric([stats.path], stats.buffered)
            reader.add_metric([stats.path], 1 if stats.reader else 0)
        yield from (written, dropped, errors, buffered, reader)


class BusCollector:
    """Subscribers of the event bus that raised (a bug: logged with a traceback too)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "hacontrol_bus_subscriber_errors",
            "events whose delivery to a subscriber raised (the other subscribers still got them)",
            labels=["subscriber"],
        )
        errors: Mapping[str, int] = self._bus.errors
        for name, n in sorted(errors.items()):
            family.add_metric([name], n)
        yield family


class CheckRunnerCollector:
    """The health-check runner's figures, read from its RunnerStats when Prometheus scrapes:
    the runner counts in plain attributes, so the per-attempt path (thousands a second)
    pays nothing for the export.

    Lateness is how late an attempt started against its schedule (delay_loop after the
    last one): it is what grows when the director cannot keep up with its checks, before
    any check times out.
    """

    # Upper edges in ms; the runner's histogram has 1 ms buckets up to 10 s, so these are
    # exact counts, not interpolations.
    LATENESS_BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

    def __init__(self, stats: RunnerStats) -> None:
        self._stats = stats

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        for name, doc, value in (
            ("attempts", "health-check attempts started", stats.attempts),
            ("results", "health-check results fed to the rise/fall state", stats.results),
            (
                "crashes",
                "exceptions that escaped a probe or a check worker (a bug: the check is "
                "restarted at its next delay_loop and its real server keeps its state)",
                stats.crashes,
            ),
            (
                "guard_timeouts",
                "attempts cancelled for overrunning their own timeout (counted as failed)",
                stats.guard_timeouts,
            ),
            (
                "callback_errors",
                "up/down events whose handler raised",
                stats.callback_errors,
            ),
            (
                "dispatcher_restarts",
                "restarts of the check dispatcher after it raised",
                stats.dispatcher_restarts,
            ),
        ):
            yield CounterMetricFamily(f"hacontrol_check_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "hacontrol_check_in_flight", "health-check attempts running now", stats.in_flight
        )
        lateness = stats.lateness
        histogram = HistogramMetricFamily(
            "hacontrol_check_lateness_seconds",
            "how late health-check attempts started against their schedule",
        )
        edges = self.LATENESS_BUCKETS_MS
        buckets: list[tuple[str, float]] = [
            (str(ms / 1000), count)
            for ms, count in zip(edges, lateness.counts_within(edges), strict=True)
        ]
        buckets.append(("+Inf", lateness.total))
        histogram.add_metric([], buckets, lateness.late_seconds)
        yield histogram


IP_VS_STATS = Path("/proc/net/ip_vs_stats")

# ip_vs_proto_name(): the protocol column of /proc/net/ip_vs, node_exporter's `proto`.
_PROTO_NAME = {int(p): p.name for p in Protocol}

# (name, help) of node_exporter's host totals, in /proc/net/ip_vs_stats's column order.
_TOTALS = (
    ("node_ipvs_connections", "The total number of connections made."),
    ("node_ipvs_incoming_packets", "The total number of incoming packets."),
    ("node_ipvs_outgoing_packets", "The total number of outgoing packets."),
    ("node_ipvs_incoming_bytes", "The total amount of incoming data."),
    ("node_ipvs_outgoing_bytes", "The total amount of outgoing data."),
)
# (Stats field, name suffix, what) of our per-service and per-real-server counters.
_TRAFFIC = (
    ("conns", "connections", "connections scheduled"),
    ("inpkts", "incoming_packets", "incoming packets"),
    ("outpkts", "outgoing_packets", "outgoing packets"),
    ("inbytes", "incoming_bytes", "incoming bytes"),
    ("outbytes", "outgoing_bytes", "outgoing bytes"),
)
SERVICE_LABELS = ["local_address", "local_port", "proto", "local_mark"]
BACKEND_LABELS = [
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
]


@functools.lru_cache(maxsize=1 << 16)
def go_ip(address: IPAddress) -> str:
    """An address as node_exporter prints it (Go's net.IP.String()): RFC 5952 for IPv6,
    except that an IPv4-mapped IPv6 address prints as the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def service_labels(key: ServiceKey) -> tuple[str, str, str, str]:
    """(local_address, local_port, proto, local_mark) of a service, as node_exporter reads
    its line of /proc/net/ip_vs: "TCP  C0000264:0050 ..." or "FWM  00000007 ..."."""
    if key.is_fwmark:
        return ("", "0", "FWM", f"{key.fwmark:08X}")
    assert key.address is not None
    return (go_ip(key.address), str(key.port), _PROTO_NAME.get(key.protocol, "UNK"), "")


def parse_ip_vs_stats(text: str) -> tuple[int, int, int, int, int]:
    """The five hexadecimal totals on the third line of /proc/net/ip_vs_stats (conns, in
    packets, out packets, in bytes, out bytes); ValueError if the file is not that shape."""
    lines = text.split("\n", 3)
    if len(lines) != 4:
        raise ValueError("ip_vs_stats: too short")
    fields = lines[2].split()
    if len(fields) != 5:
        raise ValueError(f"ip_vs_stats: {len(fields)} fields on the totals line, expected 5")
    conns, inpkts, outpkts, inbytes, outbytes = (int(f, 16) for f in fields)
    return conns, inpkts, outpkts, inbytes, outbytes


class IpvsCollector:
    """The kernel's IPVS figures from the reconciler's last dump (see the module docstring).

    node_exporter sums the rows whose labels coincide (it does so when told to drop some
    labels; with all six only an IPv4 and an IPv6 fwmark service with the same mark and
    real server coincide): so do we, so the values stay the same as its.
    """

    def __init__(
        self, *, stats_path: Path = IP_VS_STATS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stats_path = stats_path
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._at = 0.0
        # None until the daemon first tries IPVS: a director without virtual servers has
        # no IPVS to miss (a plain Gauge would say 0, "unavailable", from the start).
        self._available: bool | None = None

    def update(self, snapshot: Snapshot, at: float) -> None:
        self._snapshot, self._at = snapshot, at

    def set_available(self, available: bool) -> None:
        self._available = available
        if not available:
            self._snapshot = None

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the families depend on the table: nothing to check at register

    def collect(self) -> Iterator[Metric]:
        if self._available is not None:
            yield GaugeMetricFamily(
                "hacontrol_ipvs_available",
                "1 when the kernel's IPVS is usable, 0 when not (module missing); "
                "absent while IPVS is not in use",
                value=1 if self._available else 0,
            )
        snap = self._snapshot
        if snap is None:
            return
        yield GaugeMetricFamily(
            "hacontrol_ipvs_snapshot_age_seconds",
            "seconds since the IPVS table behind the node_ipvs_* and hacontrol_ipvs_* "
            "figures was dumped (by the reconciler)",
            value=max(0.0, self._clock() - self._at),
        )
        yield from self._totals()
        active = GaugeMetricFamily(
            "node_ipvs_backend_connections_active",
            "The current active connections by local and remote address.",
            labels=BACKEND_LABELS,
        )
        inactive = GaugeMetricFamily(
            "node_ipvs_backend_connections_inactive",
            "The current inactive connections by local and remote address.",
            labels=BACKEND_LABELS,
        )
        weight = GaugeMetricFamily(
            "node_ipvs_backend_weight",
            "The current backend weight by local and remote address.",
            labels=BACKEND_LABELS,
        )
        persistent = GaugeMetricFamily(
            "hacontrol_ipvs_backend_connections_persistent",
            "connection templates of persistent services by real server (ipvsadm's PersistConn)",
            labels=BACKEND_LABELS,
        )
        backend_traffic = [
            CounterMetricFamily(
                f"hacontrol_ipvs_backend_{suffix}",
                f"{what} by virtual service and real server (ipvsadm -Ln --stats)",
                labels=BACKEND_LABELS,
            )
            for _, suffix, what in _TRAFFIC
        ]
        service_traffic = [
            CounterMetricFamily(
                f"hacontrol_ipvs_service_{suffix}",
                f"{what} by virtual service (ipvsadm -Ln --stats)",
                labels=SERVICE_LABELS,
            )
            for _, suffix, what in _TRAFFIC
        ]
        backends: dict[tuple[str, ...], list[int]] = {}
        services: dict[tuple[str, ...], list[int]] = {}
        no_stats = Stats()
        for service in snap.table:
            local_address, local_port, proto, local_mark = service_labels(service.key)
            svc_sums = services.setdefault(
                (local_address, local_port, proto, local_mark), [0] * len(_TRAFFIC)
            )
            stats = snap.service_stats.get(service.key, no_stats)
            for i, (attr, _, _) in enumerate(_TRAFFIC):
                svc_sums[i] += getattr(stats, attr)
            for rs in service.real_servers:
                counters = snap.dest_counters.get((service.key, rs.key))
                row = (
                    local_address,
                    local_port,
                    go_ip(rs.address),
                    str(rs.port or 0),
                    proto,
                    local_mark,
                )
                sums = backends.setdefault(row, [0] * (4 + len(_TRAFFIC)))
                sums[0] += rs.weight
                if counters is None:
                    continue
                sums[1] += counters.active_conns
                sums[2] += counters.inact_conns
                sums[3] += counters.persist_conns
                for i, (attr, _, _) in enumerate(_TRAFFIC):
                    sums[4 + i] += getattr(counters.stats, attr)
        for labels, sums in backends.items():
            values = list(labels)
            weight.add_metric(values, sums[0])
            active.add_metric(values, sums[1])
            inactive.add_metric(values, sums[2])
            persistent.add_metric(values, sums[3])
            for family, value in zip(backend_traffic, sums[4:], strict=True):
                family.add_metric(values, value)
        for labels, svc_sums in services.items():
            for family, value in zip(service_traffic, svc_sums, strict=True):
                family.add_metric(list(labels), value)
        yield from (active, inactive, weight, persistent, *backend_traffic, *service_traffic)

    def _totals(self) -> Iterator[Metric]:
        try:
            totals = parse_ip_vs_stats(self._stats_path.read_text())
        except (OSError, ValueError) as exc:
            # As node_exporter: no file (IPVS gone meanwhile), no totals; the table stays.
            log.debug("metrics.ip_vs_stats_unreadable path=%s error=%s", self._stats_path, exc)
            return
        for (name, doc), value in zip(_TOTALS, totals, strict=True):
            yield CounterMetricFamily(name, doc, value=value)
