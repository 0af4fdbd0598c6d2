"""The LVS half of the daemon: checks -> policy -> desired IPVS table -> kernel.

```
config.virtual_servers ──> CheckRunner ──(up/down)──> policy.decide ──> desired_table ──┐
                                                                                        v
kernel dump ──────────────────────────────────────────────────────> Reconciler (plan, apply)
VRRP state of ipvs.sync_daemon.vrrp_instance ──> sync_role ──> SyncDaemonController
```

The pure pieces (`policy_inputs`, `desired_table`, `check_specs`) are
functions of the config and the policy's verdict; `LvsRuntime` is the thin
asyncio adapter around them. The health checks and the IPVS layer meet only
through `policy.PolicyDecision.desired`, a plain value.

On stop the kernel table and the sync daemon are left as they are: a restart
adopts them, so restarting the daemon drops no connection (keepalived removes
its virtual servers on exit unless told otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from hacontrol.config import Config
from hacontrol.config_lvs import RealServerConfig, VirtualServerConfig
from hacontrol.desired import desired_table, model_problems, service_key
from hacontrol.desired import rs_port as _rs_port
from hacontrol.ipvs.model import (
    DestKey,
    ServiceKey,
    Table,
)
from hacontrol.ipvs.netlink import ApplyResult, AsyncIpvs, DestCounters
from hacontrol.ipvs.plan import Op
from hacontrol.ipvs.reconcile import PassResult, Reconciler
from hacontrol.ipvs.syncd import (
    IpvsConfigClient,
    IpvsKernelError,
    SyncDaemonConfig,
    SyncDaemonController,
    Timeouts,
    sync_role,
)
from hacontrol.ipvs.sysctl import IpvsSysctlError, IpvsSysctls, apply_sysctls
from healthcheck.notify import Notifier, NotifyCommand
from healthcheck.policy import (
    ConnCounters,
    PolicyDecision,
    PolicyEvent,
    PolicyState,
    QuorumChanged,
    RealServerPolicy,
    SorryServer,
    VirtualServicePolicy,
    decide,
    shutdown_events,
)
from healthcheck.probes import ProbeTarget
from healthcheck.runner import CheckRunner, CheckSpec
from healthcheck.state import (
    CheckParams,
    HealthEvent,
    RealServerDown,
    RealServerId,
    RealServerUp,
)
from vrrp.types import State, StateChanged

log = logging.getLogger("hacontrol.lvs")

NOTIFY_TIMEOUT = 10.0


# ---- pure: config -> values -------------------------------------------------------------


def policy_inputs(config: Config) -> tuple[VirtualServicePolicy, ...]:
    out = []
    for vs in config.virtual_servers:
        sorry = None
        if vs.sorry_server is not None:
            s = vs.sorry_server
            sorry = SorryServer(str(s.address), _rs_port(vs, s.port), s.weight, s.inhibit)
        out.append(
            VirtualServicePolicy(
                id=vs.display_name,
                real_servers=tuple(
                    RealServerPolicy(str(rs.address), _rs_port(vs, rs.port), rs.weight)
                    for rs in vs.real_servers
                ),
                quorum=vs.quorum,
                hysteresis=vs.hysteresis,
                inhibit_on_failure=vs.inhibit_on_failure,
                sorry_server=sorry,
                drain_timeout=vs.drain_timeout,
                omega=vs.omega,
            )
        )
    return tuple(out)


def check_specs(vs: VirtualServerConfig, rs: RealServerConfig) -> tuple[CheckSpec, ...]:
    return tuple(
        CheckSpec(CheckParams.from_check(check, alpha=vs.alpha, name=check.type), check)
        for check in rs.checks
    )


def sync_template(config: Config) -> SyncDaemonConfig | None:
    sync = config.ipvs.sync_daemon
    if sync is None:
        return None
    return SyncDaemonConfig(
        state="backup",
        interface=sync.interface,
        syncid=sync.syncid,
        maxlen=sync.maxlen,
        group=sync.group,
        port=sync.port,
        ttl=sync.ttl,
    )


def wanted_sysctls(config: Config) -> IpvsSysctls:
    s = config.ipvs.sysctls
    return IpvsSysctls(
        expire_nodest_conn=s.expire_nodest_conn,
        expire_quiescent_template=s.expire_quiescent_template,
        conntrack=s.conntrack,
        conn_reuse_mode=s.conn_reuse_mode,
        sync_version=s.sync_version,
    )


def uses_ipvs(config: Config) -> bool:
    """A VRRP-only config never touches IPVS (the host may not even have it)."""
    return bool(config.virtual_servers) or config.ipvs.sync_daemon is not None


# ---- the asyncio adapter ----------------------------------------------------------------


class _CountingKernel:
    """The reconciler's Kernel: a dump also keeps the connection counters for draining."""

    def __init__(self, ipvs: AsyncIpvs) -> None:
        self.ipvs = ipvs
        self.dest_counters: dict[tuple[ServiceKey, DestKey], DestCounters] = {}

    async def dump(self) -> Table:
        snap = await self.ipvs.snapshot()
        self.dest_counters = dict(snap.dest_counters)
        return snap.table

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        return await self.ipvs.apply(ops)


class LvsRuntime:
    """Runs the checks, the policy, the reconciler and the sync daemon for one config."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_pass: Callable[[PassResult], None] | None = None,
        on_policy_event: Callable[[PolicyEvent], None] | None = None,
        on_health_event: Callable[[HealthEvent], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_pass_cb = on_pass
        self._on_policy_event = on_policy_event
        self._on_health_cb = on_health_event
        self._use_config(config)
        self._policy_state = PolicyState()
        self.decision: PolicyDecision | None = None
        self.runner = CheckRunner(self._on_health_event, clock=clock)
        self.notifier = Notifier()
        self.reconciler: Reconciler | None = None
        self._kernel: _CountingKernel | None = None
        self._syncd: SyncDaemonController | None = None
        self._sync_client: IpvsConfigClient | None = None
        self._sync_lock = asyncio.Lock()
        # The tied VRRP instance's last state: the role a (re)opened controller applies.
        self._sync_vrrp_state = State.BACKUP
        self._recompute_handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _use_config(self, config: Config) -> None:
        """Everything derived from the config, built once per config (start, reload):
        health events and drain passes look servers up here instead of scanning."""
        self.config = config
        self._policies = policy_inputs(config)
        self._vs_by_name = {vs.display_name: vs for vs in config.virtual_servers}
        self._vs_by_key = {service_key(vs): vs for vs in config.virtual_servers}
        self._rs_by_id: dict[RealServerId, tuple[VirtualServerConfig, RealServerConfig]] = {
            RealServerId(vs.display_name, str(rs.address), _rs_port(vs, rs.port)): (vs, rs)
            for vs in config.virtual_servers
            for rs in vs.real_servers
        }

    # -- life cycle

    async def start(self) -> None:
        if not uses_ipvs(self.config):
            return
        await self.notifier.start()
        self._apply_sysctls()
        try:
            ipvs = await AsyncIpvs.open()
        except Exception as exc:  # no ip_vs module, no permission: VRRP runs on regardless
            log.error("ipvs.unavailable error=%s", exc)
            return
        self._kernel = _CountingKernel(ipvs)
        await self._apply_timeouts_and_open_sync()
        for server, (vs, rs) in self._rs_by_id.items():
            self.runner.add_real_server(
                server, ProbeTarget(rs.address, server.port), rs.weight, check_specs(vs, rs)
            )
        self._recompute()
        assert self.decision is not None
        self.reconciler = Reconciler(
            self._kernel,
            desired_table(self.config, self.decision.desired),
            purge_unowned=self.config.ipvs.purge_unowned,
            interval=self.config.ipvs.reconcile_interval,
            on_pass=self._on_pass,
        )
        self.reconciler.start()
        await self.runner.start()
        log.info(
            "lvs.started virtual_servers=%d real_servers=%d",
            len(self.config.virtual_servers),
            len(self.runner),
        )

    def reload(self, new: Config) -> bool:
        """Apply a new config's `virtual_servers` and `ipvs` sections in place.

        Check state survives for every real server whose checks did not change
        (runner.update_real_server keeps it); a real server that left the config
        is drained by the policy (weight 0, deleted once its connections are gone
        or after drain_timeout) rather than deleted at once. Returns False when
        the change needs a restart (IPVS was not in use and now is).
        """
        if self._kernel is None:
            return not uses_ipvs(new)
        old = self.config
        self._use_config(new)
        for server, (vs, rs) in self._rs_by_id.items():
            self.runner.update_real_server(
                server, ProbeTarget(rs.address, server.port), rs.weight, check_specs(vs, rs)
            )
        for server in set(self.runner.healths()) - self._rs_by_id.keys():
            self.runner.remove_real_server(server)
        if new.ipvs.sysctls != old.ipvs.sysctls:
            self._apply_sysctls()
        if self.reconciler is not None:
            self.reconciler.purge_unowned = new.ipvs.purge_unowned
            self.reconciler.interval = new.ipvs.reconcile_interval
        if new.ipvs.timeouts != old.ipvs.timeouts or new.ipvs.sync_daemon != old.ipvs.sync_daemon:
            if self._sync_client is not None:
                self._sync_client.close()
                self._sync_client = None
            self._syncd = None
            self._spawn(self._apply_timeouts_and_open_sync())
        self._recompute_now()
        log.info(
            "lvs.reloaded virtual_servers=%d real_servers=%d",
            len(new.virtual_servers),
            len(self.runner),
        )
        return True

    async def stop(self) -> None:
        if self._recompute_handle is not None:
            self._recompute_handle.cancel()
        await self.runner.stop()
        if self.decision is not None:  # only a runtime that ran has hooks to fire
            for event in shutdown_events(self._policies):
                self._quorum_hook(event)
        if self.reconciler is not None:
            await self.reconciler.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.notifier.stop(drain=True, timeout=NOTIFY_TIMEOUT)
        if self._sync_client is not None:
            self._sync_client.close()
        if self._kernel is not None:
            self._kernel.ipvs.close()

    # -- VRRP -> sync daemon

    def on_vrrp_state(self, instance: str, change: StateChanged) -> None:
        sync = self.config.ipvs.sync_daemon
        if sync is None or instance != sync.vrrp_instance:
            return
        if change.new is State.INITIALIZE:
            return  # shutting down: leave the daemon; a restart adopts it
        self._sync_vrrp_state = change.new
        if self._syncd is None:
            return
        self._spawn(self._apply_sync_role(change.new))

    async def _apply_sync_role(self, state: State) -> None:
        assert self._syncd is not None
        role = sync_role(state)
        async with self._sync_lock:  # one role change at a time, in order
            try:
                steps = await self._syncd.apply(role)
            except (IpvsKernelError, OSError) as exc:
                log.error("ipvs.sync_daemon_failed role=%s error=%s", role, exc)
                return
        if steps:
            log.info("ipvs.sync_daemon role=%s steps=%s", role, ",".join(map(str, steps)))

    # -- health -> policy -> table

    def _on_health_event(self, event: HealthEvent) -> None:
        log.info("check.%s", _describe(event))
        if self._on_health_cb is not None:
            self._on_health_cb(event)
        found = self._rs_by_id.get(event.server)
        if found is not None:
            rs = found[1]
            if isinstance(event, RealServerUp) and rs.notify_up:
                self.notifier.submit(
                    NotifyCommand(rs.notify_up, NOTIFY_TIMEOUT, f"notify_up {event.server}")
                )
            if isinstance(event, RealServerDown) and rs.notify_down:
                self.notifier.submit(
                    NotifyCommand(rs.notify_down, NOTIFY_TIMEOUT, f"notify_down {event.server}")
                )
        self._schedule_recompute()

    def _schedule_recompute(self) -> None:
        # Coalesce a burst of results (thousands of checks) into one decision.
        if self._recompute_handle is None:
            loop = asyncio.get_running_loop()
            self._recompute_handle = loop.call_soon(self._recompute_now)

    def _recompute_now(self) -> None:
        self._recompute_handle = None
        self._recompute()
        if self.reconciler is not None and self.decision is not None:
            self.reconciler.set_desired(desired_table(self.config, self.decision.desired))

    def _recompute(self) -> None:
        counters: dict[RealServerId, ConnCounters] = {}
        if self._kernel is not None and self._policy_state.draining:
            counters = self._drain_counters()
        decision = decide(
            self._policies, self.runner.healths(), counters, self._policy_state, self._clock()
        )
        self._policy_state = decision.state
        self.decision = decision
        for event in decision.events:
            log.info("policy.%s", event)
            if isinstance(event, QuorumChanged):
                self._quorum_hook(event)
            if self._on_policy_event is not None:
                self._on_policy_event(event)

    def _drain_counters(self) -> dict[RealServerId, ConnCounters]:
        assert self._kernel is not None
        out: dict[RealServerId, ConnCounters] = {}
        for (skey, dkey), c in self._kernel.dest_counters.items():
            vs = self._vs_by_key.get(skey)
            if vs is None:
                continue
            address = str(dkey.address)
            port = dkey.port or (vs.port or 0)
            out[RealServerId(vs.display_name, address, port)] = ConnCounters(
                c.active_conns, c.inact_conns
            )
        return out

    def _on_pass(self, result: PassResult) -> None:
        # Draining servers leave once their connections are gone: look again after each
        # dump, which brought fresh counters.
        if self._policy_state.draining:
            self._schedule_recompute()
        if self._on_pass_cb is not None:
            self._on_pass_cb(result)

    def _quorum_hook(self, event: QuorumChanged) -> None:
        vs = self._vs_by_name.get(event.virtual_service)
        if vs is None:
            return
        argv = vs.quorum_up if event.up else vs.quorum_down
        if argv:
            what = "quorum_up" if event.up else "quorum_down"
            self.notifier.submit(NotifyCommand(argv, NOTIFY_TIMEOUT, f"{what} {vs.display_name}"))

    # -- kernel settings

    def _apply_sysctls(self) -> None:
        try:
            changes = apply_sysctls(wanted_sysctls(self.config))
        except IpvsSysctlError as exc:
            log.error("ipvs.sysctls_failed error=%s", exc)
            return
        for change in changes:
            log.info("ipvs.sysctl name=%s old=%d new=%d", change.name, change.old, change.new)

    async def _apply_timeouts_and_open_sync(self) -> None:
        t = self.config.ipvs.timeouts
        template = sync_template(self.config)
        if not (t.tcp or t.tcpfin or t.udp) and template is None:
            return
        client = IpvsConfigClient()
        try:
            await client.open()
        except (IpvsKernelError, OSError) as exc:
            log.error("ipvs.config_client_failed error=%s", exc)
            return
        self._sync_client = client
        if t.tcp or t.tcpfin or t.udp:
            try:
                await client.set_timeouts(Timeouts(t.tcp, t.tcpfin, t.udp))
            except (IpvsKernelError, OSError) as exc:
                log.error("ipvs.timeouts_failed error=%s", exc)
        if template is not None:
            self._syncd = SyncDaemonController(client, template)
            # Until VRRP says otherwise this director is not master: run the backup daemon.
            self._spawn(self._apply_sync_role(self._sync_vrrp_state))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _describe(event: HealthEvent) -> str:
    if isinstance(event, RealServerUp):
        return f"up server={event.server} weight={event.weight} reason={event.reason}"
    if isinstance(event, RealServerDown):
        return f"down server={event.server} reason={event.reason}"
    return f"weight server={event.server} old={event.old} new={event.new} reason={event.reason}"


__all__ = ["LvsRuntime", "desired_table", "model_problems", "policy_inputs", "uses_ipvs"]
