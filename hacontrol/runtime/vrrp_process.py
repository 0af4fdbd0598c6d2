"""The VRRP process: the VRRP engine alone in its own interpreter, driven by the daemon.

Started by `VrrpSupervisor` as `python -m hacontrol.runtime.vrrp_process --fd N` with
one end of a socketpair. Why a process of its own: the daemon's event loop also runs
thousands of health checks a second, reconcile passes over large IPVS tables and full
garbage collections; any of those can hold a loop for tens of milliseconds, which a
master advertising every 10 ms (or a backup timing Master_Down_Interval) cannot afford.
keepalived separates VRRP from its checkers for the same reason. Here the VRRP loop has
nothing else to do, can run under SCHED_RR (keepalived's vrrp_rt_priority), and its
heap is small, so a full collection costs little.

Life cycle: it dies with the daemon (PR_SET_PDEATHSIG: a daemon killed with SIGKILL
takes it along, as a single-process daemon would go), stops gracefully on SIGTERM /
SIGINT or on the daemon's Stop message (every master resigns with priority 0 and
removes its VIPs), exits without resigning at EOF (the daemon was killed), and ignores
SIGHUP (reloads are the daemon's business; it sends the new instances).

`hacontrol restart` keeps it: the daemon says Detach, this process answers Detached and
goes quiet while the daemon executes itself again (same pid, so PR_SET_PDEATHSIG still
points at it, and the socket is inherited), and the new daemon says Attach. Meanwhile
the instances run on: adverts never stop, whatever the daemon's start costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from hacontrol.logsetup import setup_logging
from hacontrol.runtime.vrrp_protocol import (
    Attach,
    Configure,
    Detach,
    Detached,
    FrameError,
    Hello,
    SendCounters,
    SetHold,
    SetScheduling,
    SetTracked,
    Stop,
    Stopped,
    code_id,
    encode,
    read_message,
)
from vrrp.io import VrrpEngine

log = logging.getLogger("hacontrol.vrrp_process")

# Counters are sent when the daemon asks (SendCounters: a scrape, a status). Building them
# costs a fixed amount per instance (1,000 instances at 1 s: a third of a backup's CPU when
# it was done every second), so the unasked snapshot is rare: it only bounds what a crash of
# this process loses from the exported counters.
COUNTERS_INTERVAL = 30.0  # seconds between unasked snapshots (only sent when they changed)
MAX_BACKLOG = 16 * 1024 * 1024  # bytes queued to a stalled daemon before snapshots are skipped
PR_SET_PDEATHSIG = 1
SCHEDULING_HINT = "under systemd, install /usr/share/hacontrol/systemd/realtime.conf as a drop-in"


def _die_with_parent() -> None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def apply_scheduling(rt_priority: int | None, nice: int | None) -> None:
    """keepalived's vrrp_rt_priority / vrrp_priority for this process; failures are logged
    (a container may forbid SCHED_RR: VRRP then runs, just without the guarantee).

    With neither set, no scheduling call is made unless SCHED_RR from an earlier config
    has to be undone: the systemd unit's system-call filter refuses sched_setscheduler
    and setpriority unless the realtime drop-in allows them, and a director that asks
    for nothing must not log a failure on every start."""
    try:
        if rt_priority:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(rt_priority))
        elif os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError as exc:
        log.error(
            "vrrp_process.sched_failed rt_priority=%s error=%s hint=%s",
            rt_priority,
            exc,
            SCHEDULING_HINT,
        )
    if nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as exc:
            log.error(
                "vrrp_process.nice_failed nice=%s error=%s hint=%s", nice, exc, SCHEDULING_HINT
            )


class _Child:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.skipped = 0
        self.engine = VrrpEngine(publish=self.send)
        self.stop = asyncio.Event()
        self.code = ""  # code_id() of what this process loaded
        # Between Detach and Attach (`hacontrol restart`): nothing is sent; Attach replays
        # every instance's state instead of what happened meanwhile.
        self.detached = False
        self.held_back = 0

    def send(self, message: Any) -> None:
        if self.writer.is_closing():
            return
        if self.detached:
            self.held_back += 1
            return
        self.writer.write(encode(message))

    async def serve(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                message = await read_message(reader)
            except FrameError as exc:
                log.error("vrrp_process.bad_frame error=%s", exc)
                break
            if message is None:
                # The daemon is gone without saying Stop: it was killed (PR_SET_PDEATHSIG
                # is on its way). Die as it did, leaving everything in place: resigning
                # here would make a kill -9 of the daemon a graceful handover by luck of
                # timing, and its restart resumes from what is left.
                log.error("vrrp_process.daemon_gone: exiting without resigning")
                os._exit(1)
            if isinstance(message, Stop):
                break
            if isinstance(message, Detach):
                self.send(Detached(self.code))
                self.detached = True
                log.info("vrrp_process.detached: the daemon restarts; instances run on")
                continue
            if isinstance(message, Attach):
                self.detached = False
                log.info("vrrp_process.attached events_held_back=%d", self.held_back)
                self.held_back = 0
                for event in self.engine.replay():
                    self.send(event)
                self.send(self.engine.counters())
                continue
            if isinstance(message, SendCounters):
                self.send(self.engine.counters())
                continue
            if isinstance(message, Configure):
                result = self.engine.configure(
                    message.instances,
                    resume_until=message.resume_until,
                    holds=message.holds,
                    groups=message.groups,
                    verdicts=message.verdicts,
                )
                self.send(result)
            elif isinstance(message, SetTracked):
                self.engine.set_tracked(message.verdicts)
            elif isinstance(message, SetHold):
                self.engine.set_hold(message.instances, message.held)
            elif isinstance(message, SetScheduling):
                apply_scheduling(message.rt_priority, message.nice)
            else:
                log.error("vrrp_process.unknown_message type=%s", type(message).__name__)
        self.stop.set()

    async def counters(self) -> None:
        last = None
        while True:
            await asyncio.sleep(COUNTERS_INTERVAL)
            if self.detached:
                continue
            snapshot = self.engine.counters()
            if snapshot == last:
                continue
            transport = self.writer.transport
            if transport.get_write_buffer_size() > MAX_BACKLOG:
                self.skipped += 1  # the daemon is not reading: figures can wait
                continue
            self.send(snapshot)
            last = snapshot


async def _run(fd: int) -> int:
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    child = _Child(writer)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, child.stop.set)
    await child.engine.start()
    child.send(Hello(os.getpid()))
    child.code = code_id()  # after Hello: nobody waits on it until a restart
    # What exists now lives as long as the process; the rest is short-lived.
    gc.collect()
    gc.freeze()
    tasks = [
        loop.create_task(child.serve(reader), name="vrrp-process-serve"),
        loop.create_task(child.counters(), name="vrrp-process-counters"),
    ]
    try:
        await child.stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await child.engine.stop()
        child.send(child.engine.counters())
        child.send(Stopped())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.drain(), 2.0)
        writer.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hacontrol-vrrp")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="the daemon's pid")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    _die_with_parent()
    if os.getppid() != args.parent:
        return 1  # the daemon died before we could ask to die with it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    setup_logging(args.log_level)
    return asyncio.run(_run(args.fd))


if __name__ == "__main__":
    sys.exit(main())
