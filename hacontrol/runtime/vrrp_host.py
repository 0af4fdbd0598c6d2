"""The daemon's side of the VRRP engine: one supervised VRRP process (or, for comparison
and small tools, the engine inline in the daemon's own loop).

`VrrpSupervisor` starts `hacontrol.runtime.vrrp_process`, sends it the instances to run,
publishes every event it sends back on the daemon's bus, and restarts it if it dies.
A restart must not move the VIPs: the instances that were MASTER when the process died
are told to resume as MASTER, provided the restart comes before their backups can have
declared them down (Master_Down_Interval after the death). Their VIPs never left the
interface (a killed process removes nothing), so the master keeps them and simply
advertises again. Later than that, the backup has taken over, and the instance starts
as an ordinary BACKUP.

The daemon never waits on the VRRP process for anything time-critical: configure and
hold requests are messages; events arrive when they arrive.

`hacontrol restart` keeps the VRRP process: `detach()` leaves it running with its socket
open across the daemon's exec, and the new daemon `adopt()`s it, so adverts never pause
however long the new daemon takes to start (minutes in an emulated VM). Only when it
cannot be kept (new code installed, the file not written) is it killed and the new
daemon's process resumes the masters as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from hacontrol.runtime.events import VrrpProcessChanged
from hacontrol.runtime.vrrp_launch import Launched, launch
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
from vrrp.events import InstanceStateChanged, ReconfigureResult, VrrpCounters
from vrrp.track import TrackKey, Verdict
from vrrp.types import InstanceSpec, State, SyncGroupSpec

if TYPE_CHECKING:
    # Imported where the engine runs inline only: the engine (and route netlink) is the
    # VRRP process's business, and the daemon's start-up should not pay for it twice.
    from vrrp.io import VrrpEngine

log = logging.getLogger("hacontrol.vrrp")

# Seconds for a VRRP process to start and answer a Configure. Well under a second on a
# real machine; a software-emulated VM (the kernel test tier) needs tens of seconds just to
# import the interpreter's modules.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 8.0  # seconds it has to resign and remove its VIPs (the engine takes <= 5)
RESTART_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0)  # delays before restarts 1, 2, 3, ...
STABLE_AFTER = 60.0  # a process that lived this long resets the backoff
# How long a scrape or a status waits for fresh VRRP counters before showing the last ones.
COUNTERS_TIMEOUT = 1.0


def _master_down_interval(spec: InstanceSpec) -> float:
    """RFC 5798 §6.1 for the peer that outranks nobody: 3 * interval + Skew_Time, with the
    lowest possible priority, so the resume window is never longer than any backup's."""
    advert_int = spec.params.advert_int / 100
    return 3 * advert_int + (255 / 256) * advert_int


class ChildProcess:
    """The VRRP process, watched through a pidfd: one this daemon spawned or one it took
    over after `hacontrol restart` (asyncio's subprocess objects cannot represent the
    latter, and their transport kills a running child when the loop closes, which a
    process meant to outlive this daemon's loop cannot have)."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._popen = popen  # kept so that nothing else reaps it
        self._loop = asyncio.get_running_loop()
        self._exited = asyncio.Event()
        self._pidfd: int | None = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        self.release()
        try:
            if self._popen is not None:
                self.returncode = self._popen.wait()
            else:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            self.returncode = -signal.SIGKILL  # reaped elsewhere: its status is lost
        self._exited.set()

    def release(self) -> None:
        """Stop watching (the process is handed to the next daemon, or has exited)."""
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)


CODE_CHANGED = "the installed code changed since it started"


def adopt_refusal(daemon_code: str, child_code: str, alive: bool, is_socket: bool) -> str:
    """Why the VRRP process a restart left cannot be kept ("" when it can)."""
    if not alive:
        return "it is not running"
    if not is_socket:
        return "its socket did not survive the restart"
    if child_code != daemon_code:
        return CODE_CHANGED
    return ""


def discard(pid: int | None, fd: int | None) -> None:
    """Kill a kept VRRP process nobody will take over (a kill removes nothing: its VIPs
    stay for the resume deadlines), and close its socket."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def discard_kept(kept: Mapping[str, object]) -> None:
    """`discard()` what `VrrpSupervisor.detach()` returned."""
    pid, fd = kept.get("pid"), kept.get("fd")
    discard(pid if isinstance(pid, int) else None, fd if isinstance(fd, int) else None)


class VrrpSupervisor:
    """Runs the VRRP engine in its own process; `inline=True` runs it in this loop."""

    def __init__(
        self,
        publish: Callable[[object], None],
        *,
        inline: bool = False,
        log_level: str = "info",
        rt_priority: int | None = None,
        nice: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self.inline = inline
        self._log_level = log_level
        self._scheduling = SetScheduling(rt_priority, nice)
        self._clock = clock
        self._instances: tuple[InstanceSpec, ...] = ()
        self._holds: frozenset[str] = frozenset()
        self._groups: tuple[SyncGroupSpec, ...] = ()
        # The latest verdict of every tracked script, file and process: sent with every
        # Configure, so a restarted VRRP process starts from them.
        self.verdicts: dict[TrackKey, Verdict] = {}
        self.states: dict[str, State] = {}
        self.pid: int | None = None
        self.restarts = 0
        self._engine: VrrpEngine | None = None  # inline mode
        self._proc: ChildProcess | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._pending: asyncio.Future[ReconfigureResult] | None = None
        self._counters_asked: asyncio.Future[None] | None = None
        self._detaching: asyncio.Future[str] | None = None
        self._kept: ChildProcess | None = None  # detached for the next daemon
        # After `hacontrol restart` with new code: the previous VRRP process (pid, fd),
        # still advertising, until the new one can take its masters over.
        self._outgoing: tuple[int, int] | None = None
        self._configure_lock = asyncio.Lock()
        self._stopping = False
        self._started_at = 0.0
        self._stopped_cleanly = False
        self.hello = asyncio.Event()  # set when the current VRRP process said Hello

    # ---- public ------------------------------------------------------------------------

    async def prestart(self, instances: bool, launched: Launched | None = None) -> None:
        """Start the VRRP process early, when the config has `instances`: it loads its
        modules while the daemon starts IPVS and the rest, and `start()` then only sends
        it the instances. Nothing is advertised before `start()`. `launched`: the process
        `hacontrol run` started before anything else (vrrp_launch.py), taken over here or,
        when it is not needed, discarded."""
        if self.inline or not instances or self._proc is not None:
            if launched is not None:
                launched.discard()
            return
        await self._spawn(restart=False, launched=launched)

    async def start(
        self,
        instances: Sequence[InstanceSpec],
        holds: Iterable[str] = (),
        groups: Sequence[SyncGroupSpec] = (),
        resume: Mapping[str, float] | None = None,
    ) -> ReconfigureResult:
        """Start the engine with `instances`. `resume` (name -> seconds left) starts those
        instances as MASTER while in time: `hacontrol restart` (runtime/resume.py)."""
        self._instances = tuple(instances)
        self._holds = frozenset(holds)
        self._groups = tuple(groups)
        now = self._clock()
        resume_until = {name: now + left for name, left in (resume or {}).items()}
        if self.inline:
            from vrrp.io import VrrpEngine

            self._engine = VrrpEngine(publish=self._on_event)
            await self._engine.start()
            self.pid = os.getpid()
            return self._engine_configure(resume_until)
        if not self._instances and self._proc is None:
            self._retire_outgoing()
            return ReconfigureResult()  # an LVS-only director: no VRRP process until needed
        if self._proc is None:
            await self._spawn(restart=False)
        if self._outgoing is not None:
            # The previous process advertised until now: the masters resume from here.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hello.wait(), START_TIMEOUT)
            self._retire_outgoing()
            now = self._clock()
            resume_until = {
                spec.name: now + _master_down_interval(spec) - spec.params.advert_int / 100
                for spec in self._instances
                if spec.name in resume_until
            }
        # An adopted process runs its instances already: this is a reload for it.
        return await self._send_configure(resume_until)

    def _retire_outgoing(self) -> None:
        """Kill the previous VRRP process (a kill removes nothing: the new process
        resumes its masters where they are)."""
        if self._outgoing is not None:
            pid, fd = self._outgoing
            self._outgoing = None
            log.info("vrrp.process_outgoing_ended pid=%d", pid)
            discard(pid, fd)

    async def configure(
        self,
        instances: Sequence[InstanceSpec],
        holds: Iterable[str] | None = None,
        groups: Sequence[SyncGroupSpec] | None = None,
    ) -> ReconfigureResult:
        """Run exactly `instances` from now on (a reload); returns what the engine did."""
        self._instances = tuple(instances)
        if holds is not None:
            self._holds = frozenset(holds)
        if groups is not None:
            self._groups = tuple(groups)
        if self._engine is not None:
            return self._engine_configure()
        if self._proc is None:
            if not self._instances:
                return ReconfigureResult()
            await self._spawn(restart=False)  # the first instances of an LVS-only director
        return await self._send_configure({})

    def _engine_configure(self, resume_until: dict[str, float] | None = None) -> ReconfigureResult:
        assert self._engine is not None
        return self._engine.configure(
            self._instances,
            resume_until=resume_until,
            holds=self._holds,
            groups=self._groups,
            verdicts=dict(self.verdicts),
        )

    def set_tracked(self, verdicts: dict[TrackKey, Verdict]) -> None:
        """New verdicts of tracked scripts, files or processes (only changes are sent)."""
        changed = {k: v for k, v in verdicts.items() if self.verdicts.get(k) != v}
        if not changed:
            return
        self.verdicts.update(changed)
        if self._engine is not None:
            self._engine.set_tracked(changed)
        else:
            self._send(SetTracked(changed))

    def set_hold(self, instances: Sequence[str], held: bool) -> None:
        names = set(instances)
        self._holds = self._holds | names if held else self._holds - names
        if self._engine is not None:
            self._engine.set_hold(tuple(instances), held)
        else:
            self._send(SetHold(tuple(instances), held))

    def set_scheduling(self, rt_priority: int | None, nice: int | None) -> None:
        self._scheduling = SetScheduling(rt_priority, nice)
        if self._engine is None:
            self._send(self._scheduling)

    async def stop(self) -> None:
        """Resign every master, remove the VIPs, and end the VRRP process."""
        self._stopping = True
        self._retire_outgoing()  # stopped while starting after an upgrade: rare; killed
        if self._engine is not None:
            await self._engine.stop()
            return
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._send(Stop())
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            log.error("vrrp.process_stop_timeout pid=%s seconds=%s", proc.pid, STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader_task, 2.0)
        self._publish(VrrpProcessChanged("exited", None, "stopped"))

    def resume_deadlines(self, now: float) -> dict[str, float]:
        """For `hacontrol restart`: per instance that is MASTER, until when (on the clock
        that gave `now`) a restarted daemon may resume it: its lowest-priority backup's
        Master_Down_Interval, less one advert interval (the last advert may be that old)."""
        return {
            spec.name: now + _master_down_interval(spec) - spec.params.advert_int / 100
            for spec in self._instances
            if self.states.get(spec.name) is State.MASTER
        }

    async def abandon(self) -> None:
        """End the VRRP engine without resigning, for `hacontrol restart`: the VIPs, routes
        and mastership stay for the next daemon to take over. The process is killed: a
        killed process removes nothing. Inline, the engine goes with this process."""
        self._stopping = True
        self._retire_outgoing()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
        self._publish(VrrpProcessChanged("exited", None, "restart"))

    # ---- the process -------------------------------------------------------------------

    async def _spawn(self, restart: bool, launched: Launched | None = None) -> None:
        if launched is None:
            launched = launch(self._log_level)
        try:
            proc = ChildProcess(launched.pid, launched.popen)
        except OSError:
            launched.discard()
            raise
        launched.taken = True
        await self._connect(proc, launched.sock)
        self.hello.clear()
        log.info("vrrp.process_started pid=%d restart=%s", proc.pid, restart)
        self._publish(VrrpProcessChanged("started", proc.pid, "restart" if restart else ""))

    async def _connect(self, proc: ChildProcess, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        self._proc, self._writer = proc, writer
        self.pid = proc.pid
        self._started_at = self._clock()
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read(reader, proc), name="vrrp-process-reader"
        )
        self._send(self._scheduling)
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.get_running_loop().create_task(
                self._watch(), name="vrrp-process-watch"
            )

    # ---- `hacontrol restart`: the VRRP process outlives the daemon's exec ---------------

    async def detach(self) -> dict[str, object] | None:
        """Leave the VRRP process running for the daemon this one is about to execute:
        it answers Detached and goes quiet, its socket is kept open (inheritable) and
        this daemon stops watching it. Returns what `adopt()` needs (the pid, the
        socket's fd, the code it runs), or None if it cannot be kept (inline, not
        running, no answer): then `abandon()` it."""
        if self.inline or not self._running():
            return None
        proc, writer = self._proc, self._writer
        assert proc is not None and writer is not None
        self._stopping = True
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        self._detaching = asyncio.get_running_loop().create_future()
        self._send(Detach())
        try:
            code = await asyncio.wait_for(asyncio.shield(self._detaching), STOP_TIMEOUT)
        except TimeoutError:
            log.error("vrrp.process_detach_timeout pid=%d seconds=%s", proc.pid, STOP_TIMEOUT)
            return None
        finally:
            self._detaching = None
        # The reader has stopped after Detached, and nothing follows it: no frame is
        # left half-read for the next daemon.
        fd = os.dup(writer.get_extra_info("socket").fileno())
        os.set_inheritable(fd, True)
        writer.close()
        proc.release()
        self._kept = proc  # referenced to the end: its Popen must not be collected and reaped
        self._proc = self._writer = None
        log.info("vrrp.process_detached pid=%d fd=%d", proc.pid, fd)
        return {"pid": proc.pid, "fd": fd, "code": code}

    async def adopt(self, handoff: Mapping[str, object]) -> Literal["kept", "outgoing", "no"]:
        """Take over the VRRP process the daemon before `hacontrol restart` left running
        (`detach()`): "kept" when it is ours now. After an upgrade it is "outgoing": it
        advertises on until `start()` has a new process to resume its masters. Otherwise
        ("no") it is killed, without resigning (its VIPs stay; the caller's resume
        deadlines take it from there), so that two VRRP processes never advertise for
        one director."""
        pid, fd, code = handoff.get("pid"), handoff.get("fd"), handoff.get("code")
        if not isinstance(pid, int) or not isinstance(fd, int) or not isinstance(code, str):
            return "no"
        try:
            alive = os.waitpid(pid, os.WNOHANG) == (0, 0)  # raises if not our child
        except ChildProcessError:
            alive = False
        try:
            is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
        except OSError:
            is_socket = False
        refusal = (
            "the VRRP engine runs inline now"
            if self.inline
            else adopt_refusal(code_id(), code, alive, is_socket)
        )
        if refusal == CODE_CHANGED:
            # An upgrade: it speaks the old protocol, so it is not taken over, but it goes
            # on advertising until the new process is ready to resume its masters
            # (`start()`), however long this daemon takes to start.
            log.info("vrrp.process_outgoing pid=%d reason=%s", pid, refusal)
            self._outgoing = (pid, fd)
            return "outgoing"
        if refusal:
            log.warning("vrrp.process_not_kept pid=%d reason=%s", pid, refusal)
            discard(pid if alive else None, fd if is_socket else None)
            return "no"
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        await self._connect(ChildProcess(pid), sock)
        self.hello.set()  # it said Hello to the daemon before this one
        self._send(Attach())
        log.info("vrrp.process_kept pid=%d", pid)
        self._publish(VrrpProcessChanged("started", pid, "kept"))
        return "kept"

    async def refresh_counters(self, timeout: float = COUNTERS_TIMEOUT) -> bool:
        """Ask for the engine's counters now and wait (at most `timeout`) until they are
        published on the bus: a scrape or a status then shows them as of this moment.
        Concurrent callers share one request. False when nothing answered in time (the
        last figures published stay what is shown)."""
        if self.inline:
            if self._engine is None:
                return False
            self._on_event(self._engine.counters())
            return True
        if not self._running():
            return False
        asked = self._counters_asked
        if asked is None or asked.done():
            asked = self._counters_asked = asyncio.get_running_loop().create_future()
            self._send(SendCounters())
        try:
            await asyncio.wait_for(asyncio.shield(asked), timeout)
        except TimeoutError:
            return False
        return True

    def _send(self, message: Any) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        writer.write(encode(message))

    def _running(self) -> bool:
        proc, writer = self._proc, self._writer
        return (
            proc is not None
            and proc.returncode is None
            and writer is not None
            and not writer.is_closing()
            and self._reader_task is not None
            and not self._reader_task.done()
        )

    async def _send_configure(self, resume_until: dict[str, float]) -> ReconfigureResult:
        if not self._running():
            # Dead and being restarted: the restarted process gets the instances as they
            # are now (self._instances); nobody would answer this request.
            return ReconfigureResult(
                errors={"*": "the VRRP process is restarting; it starts with this configuration"}
            )
        async with self._configure_lock:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            self._send(
                Configure(
                    self._instances,
                    resume_until,
                    self._holds,
                    self._groups,
                    dict(self.verdicts),
                )
            )
            try:
                return await asyncio.wait_for(asyncio.shield(self._pending), START_TIMEOUT)
            except TimeoutError:
                return ReconfigureResult(
                    errors={"*": f"the VRRP process did not answer within {START_TIMEOUT:g} s"}
                )
            finally:
                self._pending = None

    async def _read(self, reader: asyncio.StreamReader, proc: ChildProcess) -> None:
        while True:
            try:
                message = await read_message(reader)
            except FrameError as exc:
                log.error("vrrp.process_bad_frame pid=%d error=%s", proc.pid, exc)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                break
            if message is None:
                break
            if isinstance(message, VrrpCounters):
                self._on_event(message)
                asked = self._counters_asked
                if asked is not None and not asked.done():
                    asked.set_result(None)
                continue
            if isinstance(message, Hello):
                self.hello.set()  # modules loaded, route netlink open: ready for instances
                continue
            if isinstance(message, Stopped):
                self._stopped_cleanly = True
                continue
            if isinstance(message, Detached):
                if self._detaching is not None and not self._detaching.done():
                    self._detaching.set_result(message.code)
                return  # nothing follows; the socket goes to the next daemon unread
            pending = self._pending
            if (
                isinstance(message, ReconfigureResult)
                and pending is not None
                and not pending.done()
            ):
                pending.set_result(message)
            self._on_event(message)
        pending = self._pending
        if pending is not None and not pending.done():
            pending.set_result(ReconfigureResult(errors={"*": "the VRRP process exited"}))

    def _on_event(self, event: object) -> None:
        if isinstance(event, InstanceStateChanged):
            self.states[event.instance] = event.new
        self._publish(event)

    async def _watch(self) -> None:
        """Restart the VRRP process whenever it dies while we are not stopping it."""
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            code = await proc.wait()
            if self._reader_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._reader_task, 2.0)
            if self._stopping:
                return
            died_at = self._clock()
            detail = (
                f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            )
            log.error("vrrp.process_exited pid=%d %s", proc.pid, detail)
            self._publish(VrrpProcessChanged("exited", None, detail))
            masters = {name for name, state in self.states.items() if state is State.MASTER}
            resume_until = {
                spec.name: died_at + _master_down_interval(spec)
                for spec in self._instances
                if spec.name in masters
            }
            lived = died_at - self._started_at
            if lived >= STABLE_AFTER:
                self.restarts = 0
            delay = RESTART_BACKOFF[min(self.restarts, len(RESTART_BACKOFF) - 1)]
            self.restarts += 1
            if delay:
                await asyncio.sleep(delay)
            if self._stopping:
                return
            self.states = {}
            try:
                await self._spawn(restart=True)
            except OSError as exc:
                log.error("vrrp.process_spawn_failed error=%s", exc)
                continue
            result = await self._send_configure(resume_until)
            if result.errors:
                log.error("vrrp.process_configure_failed errors=%s", dict(result.errors))
