"""Prometheus metrics: a subscriber of the daemon's bus (never updated from pure code).

Each daemon owns its own CollectorRegistry, so tests can run several daemons in one
process and read each one's figures. Event-driven figures (states, transitions,
reconcile passes, reloads) are updated when their event is published; figures that
change thousands of times a second (adverts, drops, checks) are kept by their engines in
plain integers and read at scrape time: the VRRP process sends a cumulative
`VrrpCounters` snapshot every second, the check runner's `RunnerStats` is read directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector

from hacontrol.runtime.bus import Bus
from hacontrol.runtime.events import (
    IpvsAvailability,
    OverridesChanged,
    RealServerHealthKnown,
    ReconcileResult,
    ReloadResult,
    VrrpProcessChanged,
)
from healthcheck.policy import QuorumChanged
from healthcheck.runner import RunnerStats
from healthcheck.state import RealServerDown, RealServerUp
from vrrp.events import (
    FaultsChanged,
    HoldChanged,
    InstanceCounters,
    InstanceStateChanged,
    PriorityChanged,
    RouteRepaired,
    VipRepaired,
    VrrpCounters,
)
from vrrp.types import State

log = logging.getLogger("hacontrol.metrics")

_STATE_VALUE = {State.INITIALIZE: 0, State.BACKUP: 1, State.MASTER: 2, State.FAULT: 3}


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.vrrp_state = Gauge(
            "hacontrol_vrrp_state",
            "VRRP instance state: 0 init, 1 backup, 2 master, 3 fault",
            ["instance"],
            registry=r,
        )
        self.vrrp_transitions = Counter(
            "hacontrol_vrrp_transitions",
            "VRRP state changes",
            ["instance", "from_state", "to_state", "reason"],
            registry=r,
        )
        self.vrrp_priority = Gauge(
            "hacontrol_vrrp_priority",
            "VRRP priority: configured (kind=base) and advertised (kind=effective)",
            ["instance", "kind"],
            registry=r,
        )
        self.vrrp_faults = Gauge(
            "hacontrol_vrrp_fault",
            "1 while this reason holds the instance in FAULT",
            ["instance", "reason"],
            registry=r,
        )
        self.vrrp_stepped_down = Gauge(
            "hacontrol_vrrp_stepped_down",
            "1 while an operator's step-down holds the instance in BACKUP",
            ["instance"],
            registry=r,
        )
        self.vrrp_vip_repairs = Counter(
            "hacontrol_vrrp_vip_repairs",
            "VIPs found missing on a master (deleted by hand) and added again",
            ["instance"],
            registry=r,
        )
        self.vrrp_route_repairs = Counter(
            "hacontrol_vrrp_route_repairs",
            "virtual routes and rules found missing on a master and added again, by kind",
            ["instance", "kind"],
            registry=r,
        )
        self._fault_reasons: dict[str, set[str]] = {}
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
        self.ipvs_available = Gauge(
            "hacontrol_ipvs_available",
            "1 when the kernel's IPVS is usable, 0 when not (module missing), absent if unused",
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

    def watch_check_runner(self, stats: RunnerStats) -> None:
        """Export a check runner's own figures (hacontrol_check_*)."""
        self.registry.register(CheckRunnerCollector(stats))

    def watch_bus(self, bus: Bus) -> None:
        """Export the bus's own health (subscribers that raised)."""
        self.registry.register(BusCollector(bus))

    def subscribe(self, bus: Bus) -> None:
        handlers: dict[type, Callable[[Any], None]] = {
            InstanceStateChanged: self.on_state_change,
            PriorityChanged: self.on_priority,
            FaultsChanged: self.on_faults,
            HoldChanged: self.on_hold,
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
        }
        for kind, handler in handlers.items():
            bus.subscribe(kind, handler, name=f"metrics.{kind.__name__}")

    # ---- VRRP ------------------------------------------------------------------------

    def on_state_change(self, event: InstanceStateChanged) -> None:
        self.vrrp_state.labels(event.instance).set(_STATE_VALUE[event.new])
        self.vrrp_transitions.labels(
            event.instance, event.old.value, event.new.value, event.reason.value
        ).inc()
        self.vrrp_priority.labels(event.instance, "base").set(event.priority)
        self.vrrp_priority.labels(event.instance, "effective").set(event.effective_priority)

    def on_priority(self, event: PriorityChanged) -> None:
        self.vrrp_priority.labels(event.instance, "base").set(event.priority)
        self.vrrp_priority.labels(event.instance, "effective").set(event.effective_priority)

    def on_faults(self, event: FaultsChanged) -> None:
        # Every reason ever seen for the instance goes back to 0 when it clears, whatever
        # it is (the engine's list of reasons grows).
        seen = self._fault_reasons.setdefault(event.instance, set())
        seen.update(("no_such_interface", "link_down", "no_source_address", *event.faults))
        for reason in sorted(seen):
            self.vrrp_faults.labels(event.instance, reason).set(1 if reason in event.faults else 0)

    def on_hold(self, event: HoldChanged) -> None:
        self.vrrp_stepped_down.labels(event.instance).set(1 if event.held else 0)

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
        self.ipvs_available.set(1 if event.available else 0)

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

    def on_reload(self, event: ReloadResult) -> None:
        self.config_reloads.labels(event.result).inc()

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

    def update(self, counters: VrrpCounters) -> None:
        self._last = counters

    def process_restarted(self) -> None:
        self._base = _add(self._base, self._last)
        self._last = VrrpCounters({}, {})

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
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
        ):
            family = CounterMetricFamily(name, doc, labels=["instance"])
            for instance, c in sorted(total.instances.items()):
                family.add_metric([instance], getattr(c, attr))
            yield family
        errors = CounterMetricFamily(
            "hacontrol_vrrp_errors",
            "VRRP actions that failed (send_advert, add_address, remove_address, send_garp)",
            labels=["instance", "operation"],
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
        )
    drops: dict[tuple[str, str], int] = dict(a.drops)
    for key, n in b.drops.items():
        drops[key] = drops.get(key, 0) + n
    return VrrpCounters(instances, drops)


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
