"""The daemon: builds the runtime from a validated config and runs it.

Start-up order matters: the config is already valid when we get here, the
metrics endpoint comes up first (so a scrape can see a stuck start), then the
VRRP engine; systemd hears READY=1 only once the instances run. SIGTERM and
SIGINT stop the instances (a master sends priority 0 so its backup takes over
after Skew_Time instead of Master_Down_Interval, RFC 5798 §6.4.3) and remove
the VIPs before the process exits 0. SIGHUP re-reads the file: an invalid
file is logged and the running config is left untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from hacontrol import sdnotify
from hacontrol.config import Config, ConfigError, VrrpInstanceConfig, load_config
from hacontrol.gcpace import GcPacer
from hacontrol.iptypes import IPAddress
from hacontrol.lvs import LvsRuntime
from hacontrol.metrics import Metrics
from vrrp.types import InstanceParams, StateChanged

log = logging.getLogger("hacontrol.daemon")


async def primary_address(interface: str, family: int, exclude: set[IPAddress]) -> IPAddress | None:
    """The address adverts come from and the tie-break key (RFC 5798 §6.4.3).

    IPv4: the interface's first address that is not one of our VIPs (the
    kernel lists primaries before secondaries; keepalived takes the same).
    IPv6: the link-local address, which RFC 5798 §5.1.2.1 makes the source
    of every advert. None when the interface or the address is absent; the
    instance then starts in FAULT.
    """
    from vrrp.addresses import Rtnl

    rtnl = Rtnl()
    try:
        await rtnl.open()
        index = {link.ifname: link.ifindex for link in await rtnl.links()}.get(interface)
        if index is None:
            return None
        for entry in await rtnl.addresses():
            addr = entry.address.ip
            if entry.ifindex != index or addr.version != family or addr in exclude:
                continue
            if family == 6 and not addr.is_link_local:
                continue
            return addr
        return None
    finally:
        rtnl.close()


def instance_params(inst: VrrpInstanceConfig, primary: IPAddress | None) -> InstanceParams:
    """The state machine's view of one configured instance."""
    if inst.unicast_src_ip is not None:
        primary = inst.unicast_src_ip
    if primary is None:
        # No address yet: the engine puts the instance in FAULT until the
        # interface is usable; the unspecified address loses every tie-break.
        primary = IPv4Address(0) if inst.family == 4 else IPv6Address(0)
    return InstanceParams(
        name=inst.name,
        vrid=inst.vrid,
        version=inst.effective_version,
        priority=inst.priority,
        advert_int=inst.advert_int_centis,
        primary_address=primary,
        virtual_addresses=tuple(vip.address for vip in inst.virtual_ipaddresses),
        excluded_addresses=tuple(vip.address for vip in inst.virtual_ipaddresses_excluded),
        preempt=inst.preempt_mode,
        preempt_delay=inst.preempt_delay,
        accept_mode=inst.accept,
        auth_type=inst.auth_type,
        auth_data=inst.auth_data,
        garp=inst.garp,
    )


class Daemon:
    def __init__(self, config: Config, config_path: str | Path) -> None:
        self.config = config
        self.config_path = Path(config_path)
        self.metrics = Metrics()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._lvs: LvsRuntime | None = None
        self.gc_pacer = GcPacer(on_collect=self.metrics.on_gc_collect)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)

        self._start_metrics()
        from vrrp.io import VrrpEngine

        # IPVS first: a VIP that arrives before its virtual service would
        # take traffic the kernel then drops.
        lvs = LvsRuntime(
            self.config,
            on_pass=self.metrics.on_pass,
            on_policy_event=self.metrics.on_policy_event,
            on_health_event=self.metrics.on_health_event,
        )
        self.metrics.watch_check_runner(lvs.runner.stats)
        await lvs.start()
        self._lvs = lvs
        engine = VrrpEngine(_Observers(self.metrics, lvs))
        for inst in self.config.vrrp_instances:
            vips = {
                vip.address.ip
                for vip in (*inst.virtual_ipaddresses, *inst.virtual_ipaddresses_excluded)
            }
            try:
                primary = await primary_address(inst.interface, inst.family, vips)
            except OSError as exc:
                log.error("vrrp.primary_address_failed instance=%s error=%s", inst.name, exc)
                primary = None
            if primary is None and inst.unicast_src_ip is None:
                log.warning(
                    "vrrp.no_primary_address instance=%s iface=%s", inst.name, inst.interface
                )
            engine.add_instance(
                instance_params(inst, primary),
                inst.interface,
                unicast_src_ip=inst.unicast_src_ip,
                unicast_peers=inst.unicast_peers,
                unicast_ttl=inst.unicast_ttl,
                min_ttl=inst.min_ttl,
                max_ttl=inst.max_ttl,
                check_unicast_src=inst.check_unicast_src,
                vip_labels={
                    vip.address.ip: vip.label
                    for vip in (*inst.virtual_ipaddresses, *inst.virtual_ipaddresses_excluded)
                    if vip.label
                },
            )
        try:
            await engine.start()
        except OSError as exc:
            log.error("daemon.start_failed error=%s", exc)
            await engine.stop()
            await lvs.stop()
            return 1
        # Everything built so far (config, check specs, tables) lives as long as
        # the process: freeze it, and run full collections once a minute rather
        # than whenever the allocator decides (every few seconds under check
        # load, each a pause that delays checks and VRRP timers; gcpace.py).
        self.gc_pacer.install()
        self.gc_pacer.start(loop)
        self.metrics.gc_interval.set(self.gc_pacer.interval)
        sdnotify.notify("READY=1\nSTATUS=running")
        log.info(
            "daemon.started config=%s vrrp_instances=%d",
            self.config_path,
            len(self.config.vrrp_instances),
        )
        watchdog = asyncio.create_task(self._watchdog())
        try:
            await self._wait_for_stop()
        finally:
            sdnotify.notify("STOPPING=1")
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await engine.stop()
            await lvs.stop()
            self.gc_pacer.uninstall()
            self.metrics.gc_interval.set(0)
            log.info("daemon.stopped")
        return 0

    async def _wait_for_stop(self) -> None:
        while not self._stop.is_set():
            stop = asyncio.ensure_future(self._stop.wait())
            reload = asyncio.ensure_future(self._reload.wait())
            await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            reload.cancel()
            if self._reload.is_set():
                self._reload.clear()
                self._reload_config()

    def _reload_config(self) -> None:
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            # A bad file never disturbs what runs: report it, keep going.
            for issue in exc.issues:
                log.error("config.reload_rejected %s", issue)
            self.metrics.config_reloads.labels("rejected").inc()
            return
        if new == self.config:
            log.info("config.reload unchanged=true")
            self.metrics.config_reloads.labels("unchanged").inc()
            return
        # The LVS half reloads in place; VRRP instances and global settings
        # need a restart in this version (said loudly, never half-applied).
        assert self._lvs is not None
        lvs_done = self._lvs.reload(new)
        restart_needed = [
            name
            for name, changed in (
                ("vrrp_instances", new.vrrp_instances != self.config.vrrp_instances),
                ("global", new.global_ != self.config.global_),
                ("virtual_servers/ipvs", not lvs_done),
            )
            if changed
        ]
        # Keep what runs for the parts not applied, so the next diff is honest.
        self.config = self.config.model_copy(
            update={"virtual_servers": new.virtual_servers, "ipvs": new.ipvs} if lvs_done else {}
        )
        if lvs_done and self.gc_pacer.installed:
            # The replaced config and what was built from it were frozen at start-up:
            # let a collection see them, then freeze what runs now.
            self.gc_pacer.collect(thaw=True)
        if restart_needed:
            log.warning("config.reload applied=partial needs_restart=%s", ",".join(restart_needed))
            self.metrics.config_reloads.labels("needs_restart").inc()
        else:
            log.info("config.reload applied=true")
            self.metrics.config_reloads.labels("applied").inc()

    def _start_metrics(self) -> None:
        address = self.config.global_.metrics_address
        if address is None:
            return
        from prometheus_client import start_http_server

        host, port = address
        try:
            start_http_server(port, addr=host, registry=self.metrics.registry)
        except OSError as exc:
            # Metrics are not worth a failover: run without them, loudly.
            log.error("metrics.listen_failed address=%s:%d error=%s", host, port, exc)

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


class _Observers:
    """The VRRP engine's observer: metrics, plus the sync daemon following the state."""

    def __init__(self, metrics: Metrics, lvs: LvsRuntime) -> None:
        self.metrics = metrics
        self.lvs = lvs

    def on_state_change(self, instance: str, change: StateChanged) -> None:
        self.metrics.on_state_change(instance, change)
        self.lvs.on_vrrp_state(instance, change)

    def on_drop(self, interface: str, reason: str) -> None:
        self.metrics.on_drop(interface, reason)

    def on_advert_sent(self, instance: str) -> None:
        self.metrics.on_advert_sent(instance)

    def on_advert_received(self, instance: str) -> None:
        self.metrics.on_advert_received(instance)

    def on_address_mismatch(self, instance: str) -> None:
        self.metrics.on_address_mismatch(instance)

    def on_garp_sent(self, instance: str, count: int) -> None:
        self.metrics.on_garp_sent(instance, count)

    def on_error(self, instance: str, operation: str) -> None:
        self.metrics.on_error(instance, operation)
