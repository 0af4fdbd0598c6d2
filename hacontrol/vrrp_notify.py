"""VRRP notify scripts and notify FIFOs: one subscriber of the daemon's bus.

```
InstanceStateChanged (bus) ──> VrrpNotifyPlanner (pure, notify_plan.py) ──> Notification
    Notification.commands ──> Notifier (healthcheck/notify.py: exec, no shell, in order,
                                        timeouts, process group killed)
    Notification.fifo_line ──> one FifoWriter per FIFO (notify_fifo.py: never blocks)
```

SyncGroupStateChanged (bus) takes the same way through `planner.group_state_changed()`.

A script never delays a FIFO line (they are separate channels) and a FIFO never delays a
script. All VRRP scripts, the instances' and the sync groups', share one queue, so they
run in the order the transitions happened (a group's after its members' that moved it),
each bounded by its instance's or group's `notify_timeout`.

The daemon says when it begins to stop (`begin_shutdown`, before the VRRP process resigns
its instances), so that the stops that follow are STOP; any other stop of an instance is
its removal by a reload. The engine reports no group stopping: `stop()` says STOP for
every group after the instances' STOPs, as keepalived does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hacontrol.config import Config, GlobalConfig, VrrpInstanceConfig
from hacontrol.config_track import SyncGroupConfig
from hacontrol.notify_fifo import FifoWriter
from hacontrol.notify_plan import (
    FifoStats,
    Notification,
    NotifyScripts,
    VrrpNotifyPlanner,
    fifo_paths,
    group_scripts_of,
    scripts_of,
)
from hacontrol.runtime.bus import Bus
from healthcheck.notify import Notifier, NotifyCommand
from vrrp.events import InstanceStateChanged, SyncGroupStateChanged

log = logging.getLogger("hacontrol.vrrp_notify")

# The daemon has TimeoutStopSec=15 (systemd/hacontrol.service) for everything: the VRRP
# process resigning (a few seconds at most), the STOP scripts, the real-server hooks.
# keepalived gives notify_stop 1 s. Scripts still queued after this are abandoned (logged
# and counted); the one running is killed with its process group.
STOP_DRAIN = 5.0
FIFO_FLUSH_AT_STOP = 1.0  # seconds for the STOP lines to reach a slow reader


def instance_scripts(config: Config) -> dict[str, NotifyScripts]:
    return {i.name: _scripts(i) for i in config.vrrp_instances}


def group_scripts(config: Config) -> dict[str, NotifyScripts]:
    return {g.name: _group_scripts(g) for g in config.vrrp_sync_groups}


def _group_scripts(g: SyncGroupConfig) -> NotifyScripts:
    return group_scripts_of(
        g.notify_master, g.notify_backup, g.notify_fault, g.notify_stop, g.notify, g.notify_timeout
    )


def _scripts(i: VrrpInstanceConfig) -> NotifyScripts:
    return scripts_of(
        i.notify_master,
        i.notify_backup,
        i.notify_fault,
        i.notify_stop,
        i.notify_deleted,
        i.notify,
        i.notify_timeout,
    )


class VrrpNotify:
    """Runs the notify scripts and writes the notify FIFOs for the VRRP instances."""

    def __init__(self, config: Config, bus: Bus, *, notifier: Notifier | None = None) -> None:
        self._bus = bus
        self._global = config.global_
        self.notifier = notifier or Notifier()
        self.planner = VrrpNotifyPlanner()
        self.planner.configure(instance_scripts(config), group_scripts(config))
        self.writers: dict[str, FifoWriter] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._started = False
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Subscribe before the VRRP process starts: its first transitions count."""
        if self._started:
            return
        self._started = True
        self._unsubscribe = self._bus.subscribe(
            (InstanceStateChanged, SyncGroupStateChanged), self._on_event, name="vrrp_notify"
        )
        await self.notifier.start()
        self._set_fifos(self._global)

    def reload(self, config: Config) -> list[str]:
        """New scripts apply from the next transition; FIFOs are opened and closed as the
        config says (an unchanged FIFO stays open: its reader sees no end of file, unlike
        keepalived's, which recreates it on every reload)."""
        self.planner.configure(instance_scripts(config), group_scripts(config))
        old, self._global = self._global, config.global_
        new = config.global_
        before = (fifo_paths(old.notify_fifo, old.vrrp_notify_fifo), old.notify_fifo_buffer)
        after = (fifo_paths(new.notify_fifo, new.vrrp_notify_fifo), new.notify_fifo_buffer)
        if before == after:
            return []
        if self._started:
            self._set_fifos(new)
        return [f"global notify FIFOs: {', '.join(after[0]) or 'none'}"]

    def begin_shutdown(self) -> None:
        """The daemon is stopping: instances that stop from now on are STOP."""
        self.planner.begin_shutdown()

    async def stop(self) -> None:
        """STOP for instances the VRRP process did not report stopped, then for every
        sync group; then let the scripts and lines drain (bounded) and close."""
        self.planner.begin_shutdown()
        for note in self.planner.shutdown_remaining():
            self._perform(note)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.notifier.stop(drain=True, timeout=STOP_DRAIN)
        for writer in self.writers.values():
            await writer.close(FIFO_FLUSH_AT_STOP)
        self.writers.clear()

    def fifo_stats(self) -> list[FifoStats]:
        return [w.stats() for w in self.writers.values()]

    # ---- events ------------------------------------------------------------------------

    def _on_event(self, event: InstanceStateChanged | SyncGroupStateChanged) -> None:
        if isinstance(event, SyncGroupStateChanged):
            note = self.planner.group_state_changed(event.group, event.new)
        else:
            note = self.planner.state_changed(event.instance, event.new, event.effective_priority)
        if note is not None:
            self._perform(note)

    def _perform(self, note: Notification) -> None:
        log.info(
            "vrrp.notify %s=%s state=%s priority=%d scripts=%d fifos=%d",
            note.kind.lower(),
            note.name,
            note.state,
            note.priority,
            len(note.commands),
            len(self.writers),
        )
        for command in note.commands:
            self.notifier.submit(NotifyCommand(command.argv, command.timeout, command.event))
        for writer in self.writers.values():
            writer.write(note.fifo_line)

    def _set_fifos(self, g: GlobalConfig) -> None:
        wanted = fifo_paths(g.notify_fifo, g.vrrp_notify_fifo)
        for path in list(self.writers):
            if path not in wanted:
                self._close_later(self.writers.pop(path))
        for path in wanted:
            writer = self.writers.get(path)
            if writer is None:
                writer = self.writers[path] = FifoWriter(path, g.notify_fifo_buffer)
                writer.start()
            else:
                writer.resize(g.notify_fifo_buffer)

    def _close_later(self, writer: FifoWriter) -> None:
        # A FIFO a reload no longer names: closed at once, what waits for it dropped.
        task = asyncio.get_running_loop().create_task(writer.close(0.0), name="fifo-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


__all__ = ["VrrpNotify", "group_scripts", "instance_scripts"]
