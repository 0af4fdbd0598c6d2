"""The LVS half of the daemon: checks -> policy -> desired kernel state -> reconciler.

```
config.virtual_servers ──> CheckRunner ──(HealthEvent, on the bus)──> policy.decide ─┐
operator drains, services draining, kernel counters ────────────────────────────────┤
                                                                                     v
VRRP state of ipvs.sync_daemon.vrrp_instance (bus) ──> desired.* ──> Reconciler ──> kernel
```

The pure translation lives in hacontrol/desired.py; this module is the asyncio adapter:
it runs the checks, publishes what happens on the bus (health, policy, desired weights,
drains), keeps the desired values of the convergers (hacontrol/runtime/kernel.py) up to
date and lets the reconciler converge the kernel. Nothing is applied on a transition
and forgotten: a sync daemon stopped by hand, a timeout or sysctl changed, a real
server deleted with ipvsadm all come back on the next pass.

On stop the kernel table and the sync daemon are left as they are: a restart adopts
them, so restarting the daemon drops no connection (keepalived removes its virtual
servers on exit unless told otherwise). What the daemon owns is remembered in the state
file, so a service removed from the config while the daemon was down is drained and
deleted at the next start rather than left forwarding without health checks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hacontrol.config import Config
from hacontrol.config_lvs import RealServerConfig, VirtualServerConfig
from hacontrol.desired import (
    DEFAULT_DRAIN_TIMEOUT,
    ServiceDrain,
    ServiceDrainStarted,
    desired_sync_daemon,
    desired_table,
    ha_suspended,
    health_overrides,
    inhibits_on_failure,
    policy_inputs,
    real_server_id,
    rs_port,
    service_keys,
    start_service_drain,
    step_service_drains,
    sync_role,
    uses_ipvs,
    wanted_sysctls,
    wanted_timeouts,
)
from hacontrol.ipvs.errors import IpvsError
from hacontrol.ipvs.model import DestKey, ServiceKey, Table
from hacontrol.ipvs.netlink import Snapshot
from hacontrol.runtime.bus import Bus
from hacontrol.runtime.events import (
    DesiredWeights,
    IpvsTableDumped,
    RealServerHealthKnown,
    ReconcileResult,
    SyncDaemonRoleChanged,
)
from hacontrol.runtime.kernel import (
    MODPROBE,
    IpvsLink,
    IpvsTableConverger,
    SyncDaemonConverger,
    SysctlsConverger,
    TimeoutsConverger,
)
from hacontrol.runtime.reconciler import Reconciler
from hacontrol.runtime.state import RealServerRef
from healthcheck.config import FileCheck
from healthcheck.notify import Notifier, NotifyCommand
from healthcheck.policy import (
    ConnCounters,
    PolicyDecision,
    PolicyState,
    QuorumChanged,
    decide,
    shutdown_events,
)
from healthcheck.probes import ProbeTarget
from healthcheck.probes.file import init_file
from healthcheck.runner import CheckRunner, CheckSpec
from healthcheck.state import (
    CheckParams,
    HealthEvent,
    RealServerDown,
    RealServerId,
    RealServerUp,
    RealServerWeight,
)
from vrrp.events import InstanceStateChanged, SyncGroupStateChanged
from vrrp.types import State

log = logging.getLogger("hacontrol.lvs")

NOTIFY_TIMEOUT = 10.0
STATUS_DUMP_TIMEOUT = 30.0


def check_specs(vs: VirtualServerConfig, rs: RealServerConfig) -> tuple[CheckSpec, ...]:
    return tuple(
        CheckSpec(
            CheckParams.from_check(
                check,
                # keepalived: the checker's alpha, else the real server's, else the service's
                alpha=check.alpha
                if check.alpha is not None
                else (rs.alpha if rs.alpha is not None else vs.alpha),
                name=check.type,
            ),
            check,
        )
        for check in rs.checks
    )


def _init_track_files(config: Config) -> None:
    """keepalived's init_file, at start and on reload (a file check new to the config)."""
    for vs in config.virtual_servers:
        for rs in vs.real_servers:
            for check in rs.checks:
                if isinstance(check, FileCheck) and init_file(check):
                    log.info("healthcheck.init_file path=%s value=%s", check.path, check.init_file)


def _id_port(vs: VirtualServerConfig, dest: DestKey) -> int:
    """The port a kernel destination has in its RealServerId (real_server_id)."""
    if vs.group is None:
        return dest.port or (vs.port or 0)
    # A group's real server without a port takes each member's port in the kernel, and
    # is known by port 0.
    address = str(dest.address)
    if any(str(rs.address) == address and rs.port == dest.port for rs in vs.real_servers):
        return dest.port
    return 0


class LvsRuntime:
    """Runs the checks, the policy and the kernel-facing convergers for one config."""

    def __init__(
        self,
        config: Config,
        bus: Bus,
        *,
        drained: Iterable[RealServerRef] = (),
        owned: Iterable[ServiceKey] = (),
        drain_timeouts: Mapping[ServiceKey, float] | None = None,
        on_owned_changed: Callable[[frozenset[ServiceKey], dict[ServiceKey, float]], None]
        | None = None,
        clock: Callable[[], float] = time.monotonic,
        modprobe: tuple[str, ...] | None = MODPROBE,
    ) -> None:
        self._bus = bus
        self._publish = bus.publish
        self._clock = clock
        self._drained = frozenset(drained)
        self._owned_at_start = frozenset(owned)
        self._drain_timeouts = dict(drain_timeouts or {})
        self._on_owned_changed = on_owned_changed
        self._use_config(config)
        self._policy_state = PolicyState()
        self.decision: PolicyDecision | None = None
        self.runner = CheckRunner(self._on_health_event, clock=clock)
        self.notifier = Notifier()
        self.link = IpvsLink(self._publish, modprobe=modprobe)
        self.reconciler = Reconciler(
            [], interval=config.ipvs.reconcile_interval, publish=self._publish
        )
        self._table: IpvsTableConverger | None = None
        self._sync: SyncDaemonConverger | None = None
        self._timeouts: TimeoutsConverger | None = None
        self._sysctls: SysctlsConverger | None = None
        self._service_drains: dict[ServiceKey, ServiceDrain] = {}
        self._rs_counters: dict[RealServerId, ConnCounters] = {}
        self._dest_counters: dict[tuple[ServiceKey, DestKey], tuple[int, int]] = {}
        self._sync_state: State | None = None
        self._vrrp_states: dict[str, State] = {}
        self._suspended: frozenset[str] = frozenset()
        self._recompute_handle: asyncio.Handle | None = None
        self._owned_saved: frozenset[ServiceKey] | None = None
        self._started = False
        self._unsubscribe: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references

    def _use_config(self, config: Config) -> None:
        """Everything derived from the config, built once per config (start, reload)."""
        self.config = config
        self._policies = policy_inputs(config, self._drained)
        self._overrides = health_overrides(config, self._drained)
        self._vs_by_name = {vs.display_name: vs for vs in config.virtual_servers}
        self._vs_by_key = {
            key: vs for vs in config.virtual_servers for key in service_keys(config, vs)
        }
        self._rs_by_id: dict[RealServerId, tuple[VirtualServerConfig, RealServerConfig]] = {
            real_server_id(vs, rs): (vs, rs)
            for vs in config.virtual_servers
            for rs in vs.real_servers
        }

    @property
    def active(self) -> bool:
        """Whether this runtime touches IPVS at all (a VRRP-only director does not)."""
        return self._started

    # ---- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._unsubscribe.append(
            self._bus.subscribe(
                (InstanceStateChanged, SyncGroupStateChanged),
                self._on_vrrp_state,
                name="lvs.sync_role",
            )
        )
        self._unsubscribe.append(
            self._bus.subscribe(
                (RealServerUp, RealServerDown), self._notify_hooks, name="lvs.notify_hooks"
            )
        )
        self._unsubscribe.append(
            self._bus.subscribe(ReconcileResult, self._after_pass, name="lvs.ownership")
        )
        if uses_ipvs(self.config) or self._owned_at_start:
            await self._start_ipvs()

    async def _start_ipvs(self) -> None:
        """Checks, policy and the kernel convergers: only once IPVS is in use."""
        self._started = True
        _init_track_files(self.config)
        await self.notifier.start()
        for server, (vs, rs) in self._rs_by_id.items():
            self.runner.add_real_server(
                server, ProbeTarget(rs.address, server.port), rs.weight, check_specs(vs, rs)
            )
            self._publish_known(server, rs.weight)
        self._apply_ha_suspend()
        self._recompute()
        self._sysctls = SysctlsConverger(wanted_sysctls(self.config))
        self.reconciler.add(self._sysctls)
        self._set_timeouts(self.config)
        assert self.decision is not None
        self._table = IpvsTableConverger(
            self.link,
            self._desired_table(),
            owned=self._owned_at_start,
            purge_unowned=self.config.ipvs.purge_unowned,
            want_counters=self._want_counters,
            on_snapshot=self._on_snapshot,
            before_first_pass=self._seed_from_kernel,
            spread_dumps=self._spread_dumps,
        )
        self.reconciler.add(self._table)
        self._set_sync_daemon(self.config)
        self.reconciler.start()
        await self.runner.start()
        log.info(
            "lvs.started virtual_servers=%d real_servers=%d",
            len(self.config.virtual_servers),
            len(self.runner),
        )

    def assume_vrrp_states(self, states: dict[str, State]) -> None:
        """Before start(): the VRRP states a restarted daemon resumes (`hacontrol restart`),
        so the sync daemon it finds running as master is not first turned into a backup."""
        self._vrrp_states.update(states)
        sync = self.config.ipvs.sync_daemon
        if sync is None:
            return
        if sync.vrrp_instance is not None and sync.vrrp_instance in states:
            self._sync_state = states[sync.vrrp_instance]
        elif sync.vrrp_sync_group is not None:
            group = next(
                (g for g in self.config.vrrp_sync_groups if g.name == sync.vrrp_sync_group), None
            )
            if group is not None and all(states.get(m) is State.MASTER for m in group.group):
                self._sync_state = State.MASTER

    async def stop(self, *, restarting: bool = False) -> None:
        """Stop checks and convergers; the kernel's table and sync daemon stay as they are.
        `restarting` (`hacontrol restart`): not a shutdown, so no quorum_down hooks."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._recompute_handle is not None:
            self._recompute_handle.cancel()
        if not self._started:
            return
        await self.runner.stop()
        if self.decision is not None and not restarting:  # only one that ran has hooks
            for event in shutdown_events(self._policies):
                self._quorum_hook(event)
        await self.reconciler.stop()
        await self.notifier.stop(drain=True, timeout=NOTIFY_TIMEOUT)
        self.link.close()

    def reload(self, new: Config) -> list[str]:
        """Apply a new config's `virtual_servers` and `ipvs` sections in place; returns
        what changed, in the operator's words.

        Check state survives for every real server whose checks did not change; a real
        server that left the config is drained by the policy; a whole virtual service that
        left it is drained here (weight 0, deleted once its connections are gone).
        """
        old = self.config
        applied = _describe_lvs_changes(old, new)
        if not self._started:
            self._use_config(new)
            if uses_ipvs(new):
                applied.append("IPVS is now in use: starting its runtime")
                task = asyncio.get_running_loop().create_task(self._start_ipvs())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return applied
        now = self._clock()
        if self._table is not None:
            new_keys = {key for vs in new.virtual_servers for key in service_keys(new, vs)}
            for key, vs in self._vs_by_key.items():
                current = self._table.desired.get(key)
                if key not in new_keys and current is not None and key not in self._service_drains:
                    self._service_drains[key] = start_service_drain(current, now, vs.drain_timeout)
                    self._drain_timeouts[key] = vs.drain_timeout
                    self._publish(ServiceDrainStarted(key, len(current.real_servers)))
                    log.info("lvs.service_drain_started service=%s", key)
        self._use_config(new)
        _init_track_files(new)
        known = set(self.runner.healths())
        for server, (vs, rs) in self._rs_by_id.items():
            self.runner.update_real_server(
                server, ProbeTarget(rs.address, server.port), rs.weight, check_specs(vs, rs)
            )
            if server not in known:
                self._publish_known(server, rs.weight)
        for server in set(self.runner.healths()) - self._rs_by_id.keys():
            self.runner.remove_real_server(server)
        self._apply_ha_suspend()
        self.reconciler.set_interval(new.ipvs.reconcile_interval)
        if self._sysctls is not None:
            self._sysctls.desired = wanted_sysctls(new)
        self._set_timeouts(new)
        self._set_sync_daemon(new)
        if self._table is not None:
            self._table.set_purge_unowned(new.ipvs.purge_unowned)
        self._recompute_now()
        self.reconciler.trigger()
        return applied

    # ---- operator drains ---------------------------------------------------------------------

    def set_drained(self, drained: Iterable[RealServerRef]) -> None:
        self._drained = frozenset(drained)
        self._use_config(self.config)
        self._recompute_now()

    def find_real_server(self, virtual_server: str, real_server: str) -> RealServerRef:
        """Resolve the operator's words to a configured real server; ValueError otherwise."""
        vs = self._vs_by_name.get(virtual_server)
        if vs is None:
            for candidate in self.config.virtual_servers:
                if virtual_server in {str(k) for k in service_keys(self.config, candidate)}:
                    vs = candidate
        if vs is None:
            known = ", ".join(sorted(self._vs_by_name)) or "none"
            raise ValueError(f"no virtual server {virtual_server!r} (configured: {known})")
        address, port = _split_endpoint(real_server)
        for rs in vs.real_servers:
            rid = real_server_id(vs, rs)
            if rid.address == address and (port is None or rid.port == port):
                return RealServerRef(vs.display_name, rid.address, rid.port)
        known = (
            ", ".join(
                f"{real_server_id(vs, rs).address}:{real_server_id(vs, rs).port}"
                for rs in vs.real_servers
            )
            or "none"
        )
        raise ValueError(
            f"{vs.display_name} has no real server {real_server!r} (configured: {known})"
        )

    def drain_behaviour(self, ref: RealServerRef) -> str:
        vs = self._vs_by_name.get(ref.virtual_server)
        if vs is not None:
            rs = next(
                (
                    r
                    for r in vs.real_servers
                    if (str(r.address), rs_port(vs, r.port)) == (ref.address, ref.port)
                ),
                None,
            )
            if inhibits_on_failure(vs, rs) if rs is not None else vs.inhibit_on_failure:
                return "kept at weight 0 (quiescent: inhibit_on_failure)"
        timeout = vs.drain_timeout if vs is not None else DEFAULT_DRAIN_TIMEOUT
        return (
            "weight 0, removed once its connections are gone "
            f"(or after drain_timeout {timeout:g} s)"
        )

    # ---- status --------------------------------------------------------------------------------

    async def connection_counters(self) -> dict[tuple[str, str, int], tuple[int, int]] | None:
        """ActiveConn / InActConn per (virtual server, address, port), from a fresh dump;
        None when IPVS is not in use or not available."""
        if not self._started or self.link.available is not True:
            return None
        try:
            ipvs = await self.link.get()
            snap = await asyncio.wait_for(ipvs.snapshot(), STATUS_DUMP_TIMEOUT)
        except (IpvsError, TimeoutError, OSError) as exc:
            log.warning("lvs.status_dump_failed error=%s", exc)
            return None
        out: dict[tuple[str, str, int], tuple[int, int]] = {}
        for (skey, dkey), c in snap.dest_counters.items():
            vs = self._vs_by_key.get(skey)
            name = vs.display_name if vs is not None else str(skey)
            port = _id_port(vs, dkey) if vs is not None else dkey.port
            before = out.get((name, str(dkey.address), port), (0, 0))
            # A group's real server is in every member's service: its connections add up.
            out[(name, str(dkey.address), port)] = (
                before[0] + c.active_conns,
                before[1] + c.inact_conns,
            )
        return out

    # ---- VRRP -> sync daemon -------------------------------------------------------------------

    def _apply_ha_suspend(self) -> None:
        """Suspend or resume the checks of ha_suspend services for the VRRP states now."""
        if not self._started:
            return
        wanted = ha_suspended(self.config, self._vrrp_states)
        for server, (vs, _rs) in self._rs_by_id.items():
            if vs.display_name in wanted:
                if self.runner.suspend(server):
                    log.info("healthcheck.suspended real_server=%s reason=ha_suspend", server)
            elif self.runner.resume(server):
                log.info("healthcheck.resumed real_server=%s reason=ha_suspend", server)
        self._suspended = wanted

    def _on_vrrp_state(self, event: InstanceStateChanged | SyncGroupStateChanged) -> None:
        if isinstance(event, InstanceStateChanged):
            self._vrrp_states[event.instance] = event.new
            self._apply_ha_suspend()
        sync = self.config.ipvs.sync_daemon
        if sync is None:
            return
        if isinstance(event, SyncGroupStateChanged):
            # hacontrol's vrrp_sync_group: master while the whole group is MASTER.
            if event.group != sync.vrrp_sync_group:
                return
        elif event.instance != sync.vrrp_instance or sync.vrrp_instance is None:
            return
        if event.new is State.INITIALIZE:
            return  # shutting down: leave the daemon; a restart adopts it
        self._sync_state = event.new
        if self._sync is not None:
            self._sync.desired = desired_sync_daemon(self.config, event.new)
            self.reconciler.trigger("sync_daemon")
        self._publish(SyncDaemonRoleChanged(sync_role(event.new), sync.follows))

    def _set_sync_daemon(self, config: Config) -> None:
        wanted = desired_sync_daemon(config, self._sync_state)
        sync = config.ipvs.sync_daemon
        if self._sync is None:
            if wanted is None:
                return
            self._sync = SyncDaemonConverger(self.link, wanted)
            self.reconciler.add(self._sync)
        else:
            # None after one was configured: the converger stops it (a daemon we ran).
            self._sync.desired = wanted
            self.reconciler.trigger("sync_daemon")
        self._publish(
            SyncDaemonRoleChanged(
                sync_role(self._sync_state) if sync else None,
                sync.follows if sync else None,
            )
        )

    def _set_timeouts(self, config: Config) -> None:
        wanted = wanted_timeouts(config)
        if wanted is None:
            if self._timeouts is not None:
                # No longer configured: the kernel keeps what it has (0 = leave alone).
                self.reconciler.remove("timeouts")
                self._timeouts = None
            return
        if self._timeouts is None:
            self._timeouts = TimeoutsConverger(self.link, wanted)
            self.reconciler.add(self._timeouts)
        else:
            self._timeouts.desired = wanted
            self.reconciler.trigger("timeouts")

    # ---- health -> policy -> table ----------------------------------------------------------

    def _on_health_event(self, event: HealthEvent) -> None:
        log.info("check.%s", _describe(event))
        self._publish(event)
        self._schedule_recompute()

    def _publish_known(self, server: RealServerId, weight: int) -> None:
        health = self.runner.health(server)
        if health is None:  # no checks: alive, as keepalived treats it
            self._publish(
                RealServerHealthKnown(
                    server.virtual_service, server.address, server.port, True, weight, "no checks"
                )
            )
            return
        reasons = {c.last_reason for c in health.checks}
        self._publish(
            RealServerHealthKnown(
                server.virtual_service,
                server.address,
                server.port,
                health.up,
                health.weight,
                ",".join(sorted(reasons)) or "init",
            )
        )

    def _notify_hooks(self, event: RealServerUp | RealServerDown) -> None:
        found = self._rs_by_id.get(event.server)
        if found is None:
            return
        rs = found[1]
        argv = rs.notify_up if isinstance(event, RealServerUp) else rs.notify_down
        if argv:
            what = "notify_up" if isinstance(event, RealServerUp) else "notify_down"
            self.notifier.submit(NotifyCommand(argv, NOTIFY_TIMEOUT, f"{what} {event.server}"))

    def _schedule_recompute(self) -> None:
        # Coalesce a burst of results (thousands of checks) into one decision.
        if self._recompute_handle is None:
            loop = asyncio.get_running_loop()
            self._recompute_handle = loop.call_soon(self._recompute_now)

    def _recompute_now(self) -> None:
        self._recompute_handle = None
        self._recompute()
        if self._table is not None:
            table = self._desired_table()
            if table != self._table.desired:
                self._table.set_desired(table)
                self.reconciler.trigger("ipvs_table")

    def _desired_table(self) -> Table:
        assert self.decision is not None
        return desired_table(self.config, self.decision.desired, self._service_drains)

    def _recompute(self) -> None:
        health: Mapping[RealServerId, Any] = self.runner.healths()
        if self._overrides:
            health = {**health, **self._overrides}
        counters = self._rs_counters if self._policy_state.draining else {}
        decision = decide(self._policies, health, counters, self._policy_state, self._clock())
        self._policy_state = decision.state
        self.decision = decision
        for event in decision.events:
            log.info("policy.%s", event)
            if isinstance(event, QuorumChanged):
                self._quorum_hook(event)
            self._publish(event)
        self._publish(
            DesiredWeights(
                {
                    vs: tuple((d.address, d.port, d.weight) for d in servers)
                    for vs, servers in decision.desired.items()
                }
            )
        )

    def _draining(self) -> bool:
        return bool(self._policy_state.draining or self._service_drains)

    def _want_counters(self) -> bool:
        # Drains need ActiveConn/InActConn; the metrics endpoint exports the kernel's
        # figures from the same dumps (hacontrol/metrics.py). A dump keeps the counters'
        # bytes and decodes them only when read (netlink.Snapshot): by a drain on every pass,
        # by metrics when Prometheus scrapes.
        return self._draining() or self.config.global_.metrics_listen is not None

    def _spread_dumps(self) -> bool:
        # A large table's real servers are read over two passes (netlink.IpvsNetlink.dump),
        # except while a drain waits: it ends on the connection counts, read every pass.
        return not self._draining()

    def _on_snapshot(self, snap: Snapshot) -> None:
        """A table pass dumped with counters: hand them to metrics, advance any drains."""
        self._publish(IpvsTableDumped(snap, self._clock()))
        if self._draining():
            self._advance_drains(snap)

    def _advance_drains(self, snap: Snapshot) -> None:
        """The counters of a dump: drains finish once their connections are gone."""
        self._dest_counters = {
            key: (c.active_conns, c.inact_conns) for key, c in snap.dest_counters.items()
        }
        counters: dict[RealServerId, ConnCounters] = {}
        for (skey, dkey), c in snap.dest_counters.items():
            vs = self._vs_by_key.get(skey)
            if vs is None:
                continue
            rid = RealServerId(vs.display_name, str(dkey.address), _id_port(vs, dkey))
            before = counters.get(rid)
            counters[rid] = (
                ConnCounters(c.active_conns, c.inact_conns)
                if before is None
                else ConnCounters(
                    before.active_conn + c.active_conns, before.inact_conn + c.inact_conns
                )
            )
        self._rs_counters = counters
        if self._service_drains:
            drains, events = step_service_drains(
                self._service_drains, self._vs_by_key.keys(), self._dest_counters, self._clock()
            )
            self._service_drains = drains
            for event in events:
                log.info("lvs.service_drain_finished service=%s reason=%s", event.key, event.reason)
                self._publish(event)
        self._recompute_now()

    def _seed_from_kernel(self, snap: Snapshot) -> None:
        """Before the first pass: what an earlier run left in the kernel.

        Real servers of our services that the config no longer names are drained by the
        policy (seeded as present); services we owned that the config no longer has are
        drained here. Without this a restart would delete both at once.
        """
        now = self._clock()
        present: dict[str, frozenset[tuple[str, int]]] = {}
        for service in snap.table.services:
            vs = self._vs_by_key.get(service.key)
            if vs is not None:
                present[vs.display_name] = present.get(vs.display_name, frozenset()) | frozenset(
                    (str(rs.address), _id_port(vs, rs.key)) for rs in service.real_servers
                )
            elif service.key in self._owned_at_start and service.key not in self._service_drains:
                timeout = self._drain_timeouts.get(service.key, DEFAULT_DRAIN_TIMEOUT)
                self._service_drains[service.key] = start_service_drain(service, now, timeout)
                self._publish(ServiceDrainStarted(service.key, len(service.real_servers)))
                log.info(
                    "lvs.service_drain_started service=%s reason=removed_while_down", service.key
                )
        self._policy_state = PolicyState(
            self._policy_state.quorum_up,
            {**present, **self._policy_state.present},
            self._policy_state.draining,
        )
        self._publish(IpvsTableDumped(snap, self._clock()))
        self._advance_drains(snap)

    def _after_pass(self, result: ReconcileResult) -> None:
        """Persist which services we own, when that changed after a table pass."""
        if result.kind != "ipvs_table" or self._table is None or self._on_owned_changed is None:
            return
        owned = frozenset(self._table.owned_now())
        if owned != self._owned_saved:
            self._owned_saved = owned
            timeouts = {key: self._drain_timeout_of(key) for key in owned}
            self._on_owned_changed(owned, timeouts)

    def _drain_timeout_of(self, key: ServiceKey) -> float:
        vs = self._vs_by_key.get(key)
        if vs is not None:
            return vs.drain_timeout
        return self._drain_timeouts.get(key, DEFAULT_DRAIN_TIMEOUT)

    def _quorum_hook(self, event: QuorumChanged) -> None:
        vs = self._vs_by_name.get(event.virtual_service)
        if vs is None:
            return
        argv = vs.quorum_up if event.up else vs.quorum_down
        if argv:
            what = "quorum_up" if event.up else "quorum_down"
            self.notifier.submit(NotifyCommand(argv, NOTIFY_TIMEOUT, f"{what} {vs.display_name}"))


def _split_endpoint(text: str) -> tuple[str, int | None]:
    """ "198.51.100.1:80", "[2001:db8::1]:80", "198.51.100.1", "2001:db8::1"."""
    from ipaddress import ip_address

    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    try:
        address = str(ip_address(host))
    except ValueError:
        raise ValueError(f"{text!r} is not ADDRESS, ADDRESS:PORT or [ADDRESS]:PORT") from None
    if not port:
        return address, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return address, int(port)


def _describe_lvs_changes(old: Config, new: Config) -> list[str]:
    out: list[str] = []
    old_vs = {vs.display_name: vs for vs in old.virtual_servers}
    new_vs = {vs.display_name: vs for vs in new.virtual_servers}
    for name in new_vs.keys() - old_vs.keys():
        out.append(f"virtual server {name}: added")
    for name in old_vs.keys() - new_vs.keys():
        out.append(f"virtual server {name}: removed (draining)")
    for name in sorted(new_vs.keys() & old_vs.keys()):
        if new_vs[name] != old_vs[name]:
            out.append(f"virtual server {name}: changed")
    if new.ipvs != old.ipvs:
        out.append("ipvs: changed")
    return sorted(out)


def _describe(event: HealthEvent) -> str:
    if isinstance(event, RealServerUp):
        return f"up server={event.server} weight={event.weight} reason={event.reason}"
    if isinstance(event, RealServerDown):
        return f"down server={event.server} reason={event.reason}"
    assert isinstance(event, RealServerWeight)
    return f"weight server={event.server} old={event.old} new={event.new} reason={event.reason}"


__all__ = ["LvsRuntime"]
