"""The daemon: builds the runtime from a validated config and runs it.

```
 VRRP process (vrrp_host) ──(events)──> bus ──> metrics, read model, logs, LVS runtime
 CheckRunner (lvs) ─────────(events)──┘   │
 config + states + overrides ──> desired ──> reconciler ──> kernel (IPVS, sync daemon, ...)
 control socket (status, reload, drain, step-down) <── read model / runtime
```

Start-up order matters: the config is already valid and the pid lock held when we get
here (hacontrol/cli.py); the metrics endpoint and the control socket come up first (so a
stuck start can be seen), then IPVS (a VIP that arrives before its virtual service would
take traffic the kernel then drops), then the VRRP process; systemd hears READY=1 once
the instances run. SIGTERM and SIGINT stop the instances (a master sends priority 0 so
its backup takes over after Skew_Time instead of Master_Down_Interval, RFC 5798 §6.4.3)
and remove the VIPs before the process exits 0. SIGHUP (or `hacontrol reload`) re-reads
the file and applies it in place; an invalid file changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from pathlib import Path
from typing import Any

from hacontrol import sdnotify
from hacontrol.config import Config, ConfigError, check_file
from hacontrol.desired import service_keys, sync_groups, vrrp_instances
from hacontrol.gcpace import GcPacer
from hacontrol.lvs import LvsRuntime
from hacontrol.metrics import Metrics
from hacontrol.runtime import resume
from hacontrol.runtime.bus import Bus
from hacontrol.runtime.control import (
    CONTROL_SOCKET,
    ControlServer,
    Request,
    RequestError,
    ok_response,
)
from hacontrol.runtime.events import (
    InstanceInfo,
    IpvsAvailability,
    OverridesChanged,
    RealServerInfo,
    ReloadResult,
    Topology,
    VirtualServerInfo,
)
from hacontrol.runtime.kernel import MODPROBE
from hacontrol.runtime.lock import DEFAULT_RUN_DIR
from hacontrol.runtime.readmodel import ReadModel, merge_counters
from hacontrol.runtime.state import DEFAULT_STATE_DIR, PersistentState, RealServerRef, StateFile
from hacontrol.runtime.vrrp_host import COUNTERS_TIMEOUT, VrrpSupervisor, discard_kept
from hacontrol.runtime.vrrp_launch import Launched
from hacontrol.tracking import TrackingRuntime
from hacontrol.vrrp_notify import VrrpNotify
from vrrp.events import InstanceStateChanged, ReconfigureResult
from vrrp.types import State

log = logging.getLogger("hacontrol.daemon")


def topology(config: Config, path: str | Path) -> Topology:
    return Topology(
        instances=tuple(
            InstanceInfo(i.name, i.interface, i.vrid, i.family, i.priority)
            for i in config.vrrp_instances
        ),
        virtual_servers=tuple(
            VirtualServerInfo(
                name=vs.display_name,
                key=", ".join(str(k) for k in service_keys(config, vs)[:4])
                + (", ..." if len(service_keys(config, vs)) > 4 else ""),
                quorum=vs.quorum,
                real_servers=tuple(
                    RealServerInfo(
                        str(rs.address), rs.port or vs.port or 0, rs.weight, len(rs.checks)
                    )
                    for rs in vs.real_servers
                ),
                sorry_server=None
                if vs.sorry_server is None
                else f"{vs.sorry_server.address}:{vs.sorry_server.port or vs.port or 0}",
            )
            for vs in config.virtual_servers
        ),
        sync_daemon_instance=None
        if config.ipvs.sync_daemon is None
        else config.ipvs.sync_daemon.follows,
        config_path=str(path),
        sync_groups=tuple((g.name, g.group) for g in config.vrrp_sync_groups),
    )


class Daemon:
    def __init__(
        self,
        config: Config,
        config_path: str | Path,
        *,
        run_dir: Path = DEFAULT_RUN_DIR,
        state_dir: Path = DEFAULT_STATE_DIR,
        log_level: str = "info",
        vrrp_inline: bool = False,
        modprobe: tuple[str, ...] | None = MODPROBE,
        vrrp_launched: Launched | None = None,
    ) -> None:
        self.config = config
        # The VRRP process `hacontrol run` started before loading anything (vrrp_launch.py).
        self._vrrp_launched = vrrp_launched
        self.config_path = Path(config_path)
        self.bus = Bus()
        self.metrics = Metrics()
        self.metrics.subscribe(self.bus)
        self.metrics.watch_bus(self.bus)
        self.readmodel = ReadModel()
        self.bus.subscribe(self.readmodel.kinds, self.readmodel.apply, name="readmodel")
        self.bus.subscribe(
            (InstanceStateChanged, IpvsAvailability), self._systemd_status, name="systemd"
        )
        self.state_file = StateFile(state_dir)
        self.persistent = self._prune(self.state_file.load(), config)
        self.lvs = LvsRuntime(
            config,
            self.bus,
            drained=self.persistent.drained,
            owned=self.persistent.owned_services,
            drain_timeouts=self.persistent.drain_timeouts,
            on_owned_changed=self._owned_changed,
            modprobe=modprobe,
        )
        self.metrics.watch_check_runner(self.lvs.runner.stats)
        self.vrrp_notify = VrrpNotify(config, self.bus)
        self.metrics.watch_notify("vrrp", self.vrrp_notify.notifier.stats)
        self.metrics.watch_notify("lvs", self.lvs.notifier.stats)
        self.metrics.watch_notify_fifos(self.vrrp_notify.fifo_stats)
        self.vrrp = VrrpSupervisor(
            self.bus.publish,
            inline=vrrp_inline,
            log_level=log_level,
            rt_priority=config.global_.vrrp_rt_priority,
            nice=config.global_.vrrp_priority,
        )
        # Scripts, files and processes tracked by VRRP instances: judged here, weighed in
        # the VRRP process (hacontrol/tracking.py).
        self.tracking = TrackingRuntime(config, self.vrrp.set_tracked)
        self.metrics.watch_tracking(self.tracking.stats)
        self.control = ControlServer(run_dir / CONTROL_SOCKET, self._handle)
        self.run_dir = run_dir
        # `hacontrol restart`: run() ends without resigning, and the caller executes the
        # daemon again (runtime/resume.py).
        self.restart_requested = False
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._metrics_server: Any = None
        self.gc_pacer = GcPacer(on_collect=self.metrics.on_gc_collect)

    # ---- life cycle ------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        # CPython ignores SIGPIPE already; say so here, where it matters: a notify FIFO
        # whose reader went away must fail a write with EPIPE, not kill the director.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # After `hacontrol restart`: what the daemon before this one left (runtime/resume.py).
        # Its VRRP process, kept running, goes on advertising and gets the new config as a
        # reload. Otherwise a new one loads its modules meanwhile; it advertises nothing
        # until `vrrp.start()` below, after IPVS.
        handoff = resume.take(self.run_dir, time.time())
        taken = "no"
        if handoff.vrrp_process is not None:
            taken = await self.vrrp.adopt(handoff.vrrp_process)
        kept = taken == "kept"
        # A kept process is the one: prestart then discards what `hacontrol run` launched.
        launched, self._vrrp_launched = self._vrrp_launched, None
        await self.vrrp.prestart(bool(self.config.vrrp_instances), launched)

        self._start_metrics(self.config.global_.metrics_address)
        try:
            await self.control.start()
        except OSError as exc:
            # Status and maintenance need it, failover does not: run without, loudly.
            log.error("control.listen_failed path=%s error=%s", self.control.path, exc)
        self.bus.publish(topology(self.config, self.config_path))
        self._publish_overrides()
        # After `hacontrol restart`: the instances this director was MASTER of stay MASTER
        # (kept VRRP process) or resume as MASTER if in time (their VIPs never left).
        configured = {i.name for i in self.config.vrrp_instances}
        if taken == "no":
            resuming = {n: left for n, left in handoff.masters.items() if n in configured}
        else:
            # The previous process advertised for them all along (an outgoing one's
            # masters resume when the new process is ready: vrrp.start()).
            resuming = {n: 0.0 for n in handoff.kept_masters if n in configured}
        if resuming:
            log.info(
                "daemon.resuming masters=%s vrrp_process=%s",
                ",".join(sorted(resuming)),
                {"kept": "kept", "outgoing": "replaced"}.get(taken, "new"),
            )
            self.lvs.assume_vrrp_states(dict.fromkeys(resuming, State.MASTER))
        # IPVS first: a VIP that arrives before its virtual service would take traffic the
        # kernel then drops.
        await self.lvs.start()
        # Before the VRRP process: its first transitions (BACKUP at start-up) notify too.
        await self.vrrp_notify.start()
        # The VRRP process may take a while to start on a slow machine: a SIGTERM meanwhile
        # is honoured at once, not after start-up.
        # Files and processes are judged before VRRP starts, so that only scripts begin
        # without a verdict (keepalived reads its track files at start too).
        self.vrrp.verdicts.update(self.tracking.prime())
        starting = asyncio.ensure_future(
            self.vrrp.start(
                vrrp_instances(self.config),
                self._holds(self.config),
                sync_groups(self.config),
                # A kept process runs its masters still; an instance the new config
                # restarts resigns and must not then resume.
                resume={} if kept else resuming,
            )
        )
        stopping = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
            log.info("daemon.stop_during_start")
            await self.tracking.stop()
            self.vrrp_notify.begin_shutdown()
            await self.vrrp.stop()
            await self.vrrp_notify.stop()
            await self.lvs.stop()
            await self.control.stop()
            self._stop_metrics()
            return 0
        try:
            result = starting.result()
        except OSError as exc:
            log.error("daemon.start_failed error=%s", exc)
            result = ReconfigureResult(errors={"*": str(exc)})
        if "*" in result.errors:
            log.error("daemon.start_failed error=%s", result.errors["*"])
            self.vrrp_notify.begin_shutdown()
            await self.vrrp.stop()
            await self.vrrp_notify.stop()
            await self.lvs.stop()
            await self.control.stop()
            return 1
        for name, error in result.errors.items():
            log.error("vrrp.instance_refused instance=%s error=%s", name, error)
        await self.tracking.start()
        # Everything built so far (config, check specs, tables) lives as long as the
        # process: freeze it, and run full collections once a minute rather than whenever
        # the allocator decides (every few seconds under check load; gcpace.py).
        self.gc_pacer.install()
        self.gc_pacer.start(loop)
        self.metrics.gc_interval.set(self.gc_pacer.interval)
        sdnotify.notify("READY=1\nSTATUS=" + self._status_line())
        log.info(
            "daemon.started config=%s vrrp_instances=%d vrrp_pid=%s",
            self.config_path,
            len(self.config.vrrp_instances),
            self.vrrp.pid,
        )
        watchdog = asyncio.create_task(self._watchdog())
        try:
            await self._wait_for_stop()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        if self.restart_requested:
            await self._end_for_restart()
            return 0
        sdnotify.notify("STOPPING=1")
        await self.tracking.stop()
        # Instances that stop from now on say STOP (notify_stop), not deleted.
        self.vrrp_notify.begin_shutdown()
        await self.vrrp.stop()
        await self.vrrp_notify.stop()
        await self.lvs.stop()
        await self.control.stop()
        self._stop_metrics()
        self.gc_pacer.uninstall()
        self.metrics.gc_interval.set(0)
        log.info("daemon.stopped")
        return 0

    async def _end_for_restart(self) -> None:
        """`hacontrol restart`: end without resigning; what this director holds stays."""
        sdnotify.notify("RELOADING=1\nSTATUS=restarting in place")
        deadlines = self.vrrp.resume_deadlines(time.monotonic())
        kept = await self.vrrp.detach()
        if kept is None:
            await self.vrrp.abandon()
        wall = time.time() - time.monotonic()  # the wall clock's offset, now
        saved = resume.save(self.run_dir, {n: d + wall for n, d in deadlines.items()}, kept)
        if kept is not None and not saved:
            # The next daemon would not know it is there: two VRRP processes must never
            # advertise for one director. Killed, it removes nothing.
            discard_kept(kept)
            kept = None
        await self.tracking.stop()
        await self.vrrp_notify.stop()
        await self.lvs.stop(restarting=True)
        await self.control.stop()
        self._stop_metrics()
        self.gc_pacer.uninstall()
        log.info(
            "daemon.restarting masters=%s resume_saved=%s vrrp_process=%s",
            ",".join(sorted(deadlines)) or "-",
            saved,
            "kept" if kept is not None else "ended",
        )

    def _request_restart(self) -> None:
        self.restart_requested = True
        self._stop.set()

    async def _wait_for_stop(self) -> None:
        while not self._stop.is_set():
            stop = asyncio.ensure_future(self._stop.wait())
            reload = asyncio.ensure_future(self._reload.wait())
            await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            reload.cancel()
            if self._reload.is_set():
                self._reload.clear()
                await self.reload()

    # ---- reload ------------------------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Re-read the config file and apply it in place; a bad file changes nothing."""
        async with self._reload_lock:
            result = await self._reload_locked()
        self.bus.publish(result)
        return result

    async def _reload_locked(self) -> ReloadResult:
        try:
            # The same rules as at start-up (`run`), so a file that could not start the
            # daemon cannot replace its config either (an empty one, for instance). In a
            # worker thread: a large file takes seconds, and the daemon's loop runs on.
            checked = await asyncio.to_thread(check_file, self.config_path, for_run=True)
        except ConfigError as exc:
            # A bad file never disturbs what runs: report it, keep going.
            for issue in exc.issues:
                log.error("config.reload_rejected %s", issue)
            return ReloadResult("rejected", rejected=tuple(str(i) for i in exc.issues))
        except Exception as exc:
            # A loader bug must not take the director down: the running config stays.
            log.exception("config.reload_failed path=%s", self.config_path)
            return ReloadResult(
                "rejected", rejected=(f"{self.config_path}: internal error: {exc}",)
            )
        warnings = tuple(str(w) for w in checked.warnings)
        for warning in warnings:
            log.warning("config.warning %s", warning)
        new = checked.config
        if new == self.config:
            log.info("config.reload unchanged=true")
            return ReloadResult("unchanged", warnings=warnings)
        old = self.config
        applied: list[str] = []
        # What the new config declares goes out first: the engines' events about new
        # objects (a real server's first verdict, ...) must find them in the read model.
        self.bus.publish(topology(new, self.config_path))
        self.persistent = self._prune(self.persistent, new)
        self.lvs.set_drained(self.persistent.drained)
        applied.extend(self.lvs.reload(new))
        self.tracking.reload(new)
        applied.extend(_describe_tracking_changes(old, new))
        # Before the VRRP process hears of it: an instance the new config drops then stops
        # as a removed one (FAULT or DELETED to its scripts), and new scripts apply from the
        # next transition. Its stop may arrive before its answer to the Configure.
        applied.extend(self.vrrp_notify.reload(new))
        vrrp_result = await self.vrrp.configure(
            vrrp_instances(new), self._holds(new), sync_groups(new)
        )
        applied.extend(f"vrrp instance {n}: added" for n in vrrp_result.added)
        applied.extend(f"vrrp instance {n}: removed" for n in vrrp_result.removed)
        applied.extend(f"vrrp instance {n}: changed in place" for n in vrrp_result.updated)
        applied.extend(
            f"vrrp instance {n}: NOT applied: {e}" for n, e in vrrp_result.errors.items()
        )
        if new.global_ != old.global_:
            applied.extend(self._apply_global(old, new))
        self.config = new
        self._publish_overrides()
        if self.gc_pacer.installed:
            # The replaced config and what was built from it were frozen at start-up:
            # let a collection see them, then freeze what runs now.
            self.gc_pacer.collect(thaw=True)
        log.info(
            "config.reload applied=%s restarted=%s",
            "; ".join(applied) or "-",
            ",".join(vrrp_result.restarted) or "-",
        )
        return ReloadResult(
            "applied",
            applied=tuple(sorted(applied)),
            restarted=vrrp_result.restarted,
            warnings=warnings,
        )

    def _apply_global(self, old: Config, new: Config) -> list[str]:
        applied = []
        g_old, g_new = old.global_, new.global_
        if g_old.metrics_listen != g_new.metrics_listen:
            self._stop_metrics()
            self._start_metrics(g_new.metrics_address)
            applied.append(f"global metrics_listen: {g_new.metrics_listen}")
        if (g_old.vrrp_rt_priority, g_old.vrrp_priority) != (
            g_new.vrrp_rt_priority,
            g_new.vrrp_priority,
        ):
            self.vrrp.set_scheduling(g_new.vrrp_rt_priority, g_new.vrrp_priority)
            applied.append("global vrrp scheduling")
        if g_old.router_id != g_new.router_id:
            applied.append(f"global router_id: {g_new.router_id}")
        return applied

    # ---- operator overrides --------------------------------------------------------------------

    def _holds(self, config: Config) -> frozenset[str]:
        names = {i.name for i in config.vrrp_instances}
        return frozenset(self.persistent.stepped_down & names)

    def _prune(self, state: PersistentState, config: Config) -> PersistentState:
        """Overrides that name what the config no longer has are dropped (and said so)."""
        names = {i.name for i in config.vrrp_instances}
        servers = {
            (vs.display_name, str(rs.address), rs.port or vs.port or 0)
            for vs in config.virtual_servers
            for rs in vs.real_servers
        }
        stepped = frozenset(n for n in state.stepped_down if n in names)
        drained = frozenset(
            d for d in state.drained if (d.virtual_server, d.address, d.port) in servers
        )
        for name in state.stepped_down - stepped:
            log.warning("maintenance.forgotten step_down=%s reason=not_in_config", name)
        for ref in state.drained - drained:
            log.warning("maintenance.forgotten drain=%s reason=not_in_config", ref)
        if stepped == state.stepped_down and drained == state.drained:
            return state
        return PersistentState(drained, stepped, state.owned_services, state.drain_timeouts)

    def _save(self) -> None:
        self.state_file.save(self.persistent)

    def _owned_changed(self, owned: frozenset[Any], timeouts: dict[Any, float]) -> None:
        p = self.persistent
        self.persistent = PersistentState(p.drained, p.stepped_down, owned, timeouts)
        self._save()

    def _publish_overrides(self) -> None:
        p = self.persistent
        self.bus.publish(
            OverridesChanged(
                frozenset((d.virtual_server, d.address, d.port) for d in p.drained),
                p.stepped_down,
            )
        )

    # ---- the control socket ------------------------------------------------------------------

    async def _handle(self, request: Request) -> dict[str, Any]:
        command = request.command
        if command == "status":
            counted = request.args.get("counters", True)
            if counted:
                await self.vrrp.refresh_counters()  # adverts sent / received as of now
            snap = self.readmodel.snapshot()
            if counted:
                counters = await self.lvs.connection_counters()
                if counters is not None:
                    merge_counters(snap, counters)
            return ok_response(snap)
        if command == "reload":
            result = await self.reload()
            return ok_response(
                {
                    "result": result.result,
                    "applied": list(result.applied),
                    "restarted": list(result.restarted),
                    "rejected": list(result.rejected),
                    "warnings": list(result.warnings),
                }
            )
        if command in ("drain", "undrain"):
            return ok_response({"messages": self._drain(request, command == "drain")})
        if command in ("step-down", "release"):
            return ok_response({"messages": self._step_down(request, command == "step-down")})
        if command == "restart":
            if self.restart_requested:
                return ok_response({"messages": ["a restart is already under way"]})
            # The restarted daemon starts from the file as it is now. One it could not start
            # from would leave this director without a daemon (its VIPs in place, nobody
            # advertising): refuse, as a reload refuses it, and keep running.
            try:
                await asyncio.to_thread(check_file, self.config_path, for_run=True)
            except ConfigError as exc:
                raise RequestError(
                    "not restarting: the configuration on disk would not start: "
                    + "; ".join(str(i) for i in exc.issues)
                ) from None
            masters = sorted(self.vrrp.resume_deadlines(time.monotonic()))
            # After this answer has gone out: the control socket closes on the way.
            asyncio.get_running_loop().call_later(0.2, self._request_restart)
            return ok_response(
                {
                    "messages": [
                        "restarting in place: no resignation, VIPs, IPVS and the sync daemon "
                        "stay; masters resume as MASTER: " + (", ".join(masters) or "none")
                    ]
                }
            )
        raise RequestError(f"unknown command {command!r}")

    def _drain(self, request: Request, drain: bool) -> list[str]:
        try:
            ref = self.lvs.find_real_server(
                request.args["virtual_server"], request.args["real_server"]
            )
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        p = self.persistent
        drained = p.drained | {ref} if drain else p.drained - {ref}
        if drained == p.drained:
            state = "already drained" if drain else "not drained"
            return [f"{ref}: {state}; nothing to do"]
        self.persistent = PersistentState(
            drained, p.stepped_down, p.owned_services, p.drain_timeouts
        )
        saved = self.state_file.save(self.persistent)
        self.lvs.set_drained(drained)
        self._publish_overrides()
        log.info("maintenance.%s real_server=%s", "drain" if drain else "undrain", ref)
        message = (
            f"{ref}: drained: {self.lvs.drain_behaviour(ref)}"
            if drain
            else f"{ref}: back in service (weight from its checks and config)"
        )
        if not saved:
            message += f" (WARNING: not saved to {self.state_file.path}: lost on restart)"
        return [message]

    def _step_down(self, request: Request, hold: bool) -> list[str]:
        configured = [i.name for i in self.config.vrrp_instances]
        names = list(request.args.get("instances") or configured)
        unknown = [n for n in names if n not in configured]
        if unknown:
            raise RequestError(
                f"no VRRP instance {', '.join(map(repr, unknown))} "
                f"(configured: {', '.join(configured) or 'none'})"
            )
        if not names:
            raise RequestError("no VRRP instances are configured")
        p = self.persistent
        stepped = p.stepped_down | set(names) if hold else p.stepped_down - set(names)
        self.persistent = PersistentState(p.drained, stepped, p.owned_services, p.drain_timeouts)
        saved = self.state_file.save(self.persistent)
        self.vrrp.set_hold(names, hold)
        self._publish_overrides()
        log.info("maintenance.%s instances=%s", "step_down" if hold else "release", ",".join(names))
        messages = []
        for name in names:
            state = self.vrrp.states.get(name)
            if hold:
                what = (
                    "was MASTER: priority 0 sent, the peer takes over after Skew_Time; "
                    if state is State.MASTER
                    else ""
                )
                messages.append(f"{name}: stepped down: {what}stays BACKUP until released")
            else:
                messages.append(f"{name}: released: elects normally again")
        if not saved:
            messages.append(f"WARNING: not saved to {self.state_file.path}: lost on restart")
        return messages

    # ---- systemd, metrics ----------------------------------------------------------------------

    def _status_line(self) -> str:
        states = self.vrrp.states
        masters = sum(1 for s in states.values() if s is State.MASTER)
        parts = [f"{len(self.config.vrrp_instances)} VRRP instance(s), {masters} master"]
        if self.lvs.link.available is False:
            parts.append(f"IPVS UNAVAILABLE: {self.lvs.link.detail}")
        return "; ".join(parts)

    def _systemd_status(self, event: object) -> None:
        sdnotify.notify("STATUS=" + self._status_line())

    def _start_metrics(self, address: tuple[str, int] | None) -> None:
        if address is None:
            return
        from prometheus_client import start_http_server

        host, port = address
        self.metrics.vrrp_counters.refresh = functools.partial(
            self._counters_for_scrape, asyncio.get_running_loop()
        )
        try:
            self._metrics_server = start_http_server(
                port, addr=host, registry=self.metrics.registry
            )
        except OSError as exc:
            # Metrics are not worth a failover: run without them, loudly.
            log.error("metrics.listen_failed address=%s:%d error=%s", host, port, exc)

    def _counters_for_scrape(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the scrape's thread: have the VRRP process's counters published as of now
        (they are pulled, not pushed). Waits at most COUNTERS_TIMEOUT; the last figures
        are shown if nothing answered, or if this runs in the loop's own thread."""
        try:
            asyncio.get_running_loop()
            return  # the loop's thread (a collector called in-process): never block it
        except RuntimeError:
            pass
        if loop.is_closed():
            return
        # The loop may close meanwhile (the daemon stopping): a scrape then shows the last.
        with contextlib.suppress(Exception):
            refresh = asyncio.run_coroutine_threadsafe(self.vrrp.refresh_counters(), loop)
            refresh.result(COUNTERS_TIMEOUT + 1.0)

    def _stop_metrics(self) -> None:
        server = self._metrics_server
        self._metrics_server = None
        if isinstance(server, tuple) and server:
            with contextlib.suppress(Exception):
                server[0].shutdown()
                server[0].server_close()

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def _describe_tracking_changes(old: Config, new: Config) -> list[str]:
    out: list[str] = []
    for section in ("vrrp_scripts", "track_files", "track_processes", "vrrp_sync_groups"):
        before = {i.name: i for i in getattr(old, section)}
        after = {i.name: i for i in getattr(new, section)}
        out.extend(f"{section} {n}: added" for n in sorted(after.keys() - before.keys()))
        out.extend(f"{section} {n}: removed" for n in sorted(before.keys() - after.keys()))
        out.extend(
            f"{section} {n}: changed in place"
            for n in sorted(after.keys() & before.keys())
            if after[n] != before[n]
        )
    return out


__all__ = ["Daemon", "RealServerRef", "topology"]
