"""Prometheus metrics, fed by the adapters' events (never by pure code).

Each daemon owns its own CollectorRegistry, so tests can run several daemons
in one process and read each one's figures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector

from hacontrol.ipvs.reconcile import PassResult
from healthcheck.policy import PolicyEvent, QuorumChanged
from healthcheck.runner import RunnerStats
from healthcheck.state import HealthEvent, RealServerDown, RealServerUp
from vrrp.types import State, StateChanged

log = logging.getLogger("hacontrol.vrrp")

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
        self.vrrp_adverts_sent = Counter(
            "hacontrol_vrrp_adverts_sent", "VRRP advertisements sent", ["instance"], registry=r
        )
        self.vrrp_adverts_received = Counter(
            "hacontrol_vrrp_adverts_received",
            "valid VRRP advertisements received",
            ["instance"],
            registry=r,
        )
        self.vrrp_drops = Counter(
            "hacontrol_vrrp_packets_dropped",
            "VRRP packets dropped, by reason",
            ["interface", "reason"],
            registry=r,
        )
        self.vrrp_address_mismatch = Counter(
            "hacontrol_vrrp_address_list_mismatch",
            "adverts whose address list differs from ours (RFC 5798 §7.1: logged, not dropped)",
            ["instance"],
            registry=r,
        )
        self.vrrp_garp_sent = Counter(
            "hacontrol_vrrp_gratuitous_arp_sent",
            "gratuitous ARP / unsolicited NA frames sent",
            ["instance"],
            registry=r,
        )
        self.vrrp_errors = Counter(
            "hacontrol_vrrp_errors",
            "VRRP actions that failed (send_advert, add_address, remove_address, send_garp)",
            ["instance", "operation"],
            registry=r,
        )
        self.ipvs_passes = Counter(
            "hacontrol_ipvs_reconcile_passes", "IPVS reconcile passes", ["result"], registry=r
        )
        self.ipvs_ops = Counter(
            "hacontrol_ipvs_ops", "IPVS kernel writes planned by the reconciler", registry=r
        )
        self.ipvs_op_failures = Counter(
            "hacontrol_ipvs_op_failures", "IPVS kernel writes that failed", ["errno"], registry=r
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
        self.quorum_up = Gauge(
            "hacontrol_virtual_server_quorum_up",
            "1 while a virtual server has quorum",
            ["virtual_server"],
            registry=r,
        )
        self.config_reloads = Counter(
            "hacontrol_config_reloads", "configuration reloads", ["result"], registry=r
        )
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

    def watch_check_runner(self, stats: RunnerStats) -> None:
        """Export a check runner's own figures (hacontrol_check_*)."""
        self.registry.register(CheckRunnerCollector(stats))

    # ---- the VRRP engine's observer interface ---------------------------

    def on_state_change(self, instance: str, event: StateChanged) -> None:
        self.vrrp_state.labels(instance).set(_STATE_VALUE[event.new])
        self.vrrp_transitions.labels(
            instance, event.old.value, event.new.value, event.reason.value
        ).inc()

    def on_drop(self, interface: str, reason: str) -> None:
        self.vrrp_drops.labels(interface, reason).inc()

    def on_advert_sent(self, instance: str) -> None:
        self.vrrp_adverts_sent.labels(instance).inc()

    def on_advert_received(self, instance: str) -> None:
        self.vrrp_adverts_received.labels(instance).inc()

    def on_address_mismatch(self, instance: str) -> None:
        self.vrrp_address_mismatch.labels(instance).inc()

    def on_garp_sent(self, instance: str, count: int) -> None:
        self.vrrp_garp_sent.labels(instance).inc(count)

    def on_error(self, instance: str, operation: str) -> None:
        self.vrrp_errors.labels(instance, operation).inc()

    def on_gc_collect(self, pause: float, collected: int, thawed: bool) -> None:
        self.gc_full_collections.labels("true" if thawed else "false").inc()
        self.gc_collected.inc(collected)
        self.gc_last_pause.set(pause)

    # ---- the LVS runtime's hooks -----------------------------------------

    def on_pass(self, result: PassResult) -> None:
        self.ipvs_passes.labels("ok" if result.ok else "failed").inc()
        self.ipvs_ops.inc(len(result.ops))
        for failure in result.failures:
            self.ipvs_op_failures.labels(failure.error.errno_name).inc()

    def on_health_event(self, event: HealthEvent) -> None:
        server = event.server
        rs = f"{server.address}:{server.port}"
        if isinstance(event, RealServerUp):
            self.real_server_up.labels(server.virtual_service, rs).set(1)
            self.check_transitions.labels(server.virtual_service, "up").inc()
        elif isinstance(event, RealServerDown):
            self.real_server_up.labels(server.virtual_service, rs).set(0)
            self.check_transitions.labels(server.virtual_service, "down").inc()

    def on_policy_event(self, event: PolicyEvent) -> None:
        if isinstance(event, QuorumChanged):
            self.quorum_up.labels(event.virtual_service).set(1 if event.up else 0)


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
