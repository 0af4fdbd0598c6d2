"""The daemon's side of tracking: run vrrp_scripts, watch track_files, follow processes,
and hand each verdict to the VRRP process (which weighs them: vrrp/track.py).

Why here and not in the VRRP process: that process must keep time and stay small; the
daemon already runs thousands of checks a second and can afford a few more programs.
Interfaces are judged in the VRRP process itself, which follows links anyway.

- vrrp_script: run every `interval` seconds without a shell, as its `user`/`group`, in a
  session of its own; stdin, stdout and stderr are /dev/null (a script flooding its
  output costs nothing, as with keepalived). Exit 0 is success, anything else failure;
  past `timeout` its process group gets SIGTERM, then SIGKILL 2 s later, and the run is
  a failure (keepalived's "timed_out"). `rise` / `fall` as keepalived counts them
  (`ScriptCounter`). Only scripts some instance or group tracks run.
- track_file: read when it changes (inotify on its directory, as keepalived; every
  second where inotify is unavailable), and once at start. keepalived reads the number
  with strtol(): leading whitespace, a sign, decimal, 0x hex or 0 octal, anything after
  the number ignored, no number at all 0; a missing file is 0 too. hacontrol reads it the
  same way (so the instance follows keepalived's rule) and logs and counts anything that
  is not plainly a number, an empty file and a missing one.
- vrrp_track_process: the processes of a name, counted once at start from /proc and then
  followed through the kernel's process-events connector (fork, exec, comm, exit: only
  the pid an event names is looked at), as keepalived does. Where the connector cannot
  be had (a network namespace other than the host's, no CAP_NET_ADMIN), /proc is
  counted every `PROCESS_POLL_INTERVAL` seconds instead, and that is logged once.

Every error is a log line with the item's name and a count in `stats.errors`
(exported as hacontrol_track_errors_total); none stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import pwd
import re
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacontrol.config import Config
from hacontrol.config_track import TrackFileConfig, TrackProcessConfig, VrrpScriptConfig
from vrrp.track import TrackKey, TrackKind, Verdict

log = logging.getLogger("hacontrol.tracking")

TERM_GRACE = 2.0  # keepalived: SIGTERM on timeout, SIGKILL 2 s later
REAP_TIMEOUT = 5.0  # a process in D state dies when its I/O ends; never wait longer
FILE_READ_MAX = 127  # keepalived reads at most this much of a track file
FILE_POLL_INTERVAL = 1.0  # where inotify is unavailable
PROCESS_POLL_INTERVAL = 1.0  # where the process-events connector is unavailable

OnVerdicts = Callable[[dict[TrackKey, Verdict]], None]


@dataclass
class TrackingStats:
    # (kind, name, reason) -> count: timeout, exec_error, signal, not_a_number, empty,
    # missing, unreadable, connector_lost
    errors: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (script name, result) -> runs: success, failure
    runs: dict[tuple[str, str], int] = field(default_factory=dict)

    def error(self, kind: str, name: str, reason: str) -> None:
        key = (kind, name, reason)
        self.errors[key] = self.errors.get(key, 0) + 1

    def run(self, name: str, ok: bool) -> None:
        key = (name, "success" if ok else "failure")
        self.runs[key] = self.runs.get(key, 0) + 1


# ---- rise / fall, as keepalived counts them (vrrp_scheduler.c) --------------------------


@dataclass
class ScriptCounter:
    """keepalived's `result` counter: 0..rise+fall-1, up from `rise` on.

    It starts one success short of up (`rise - 1`), so the first result decides at once
    (a first failure reports down straight away: keepalived's INIT state); with
    `init_fail` it starts at 0 (down, `rise` successes to come up).
    """

    rise: int
    fall: int
    init_fail: bool = False
    result: int = -1
    up: bool | None = None  # None: no result yet

    def __post_init__(self) -> None:
        if self.init_fail:
            self.result, self.up = 0, False
        else:
            self.result = self.rise - 1

    def feed(self, ok: bool) -> bool:
        """One run's outcome; True if `up` changed."""
        before = self.up
        if ok:
            if self.result < self.rise - 1:
                self.result += 1
            else:
                self.result = self.rise + self.fall - 1
                self.up = True
        elif self.result > self.rise:
            self.result -= 1
        else:
            self.result = 0
            self.up = False
        return self.up != before


# ---- track files --------------------------------------------------------------------------

_STRTOL = re.compile(rb"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_PLAIN = re.compile(rb"\s*[+-]?[0-9]+\s*")


def parse_track_file(raw: bytes) -> tuple[int, str | None]:
    """The value keepalived reads from `raw` (strtol base 0), and what is wrong with it."""
    match = _STRTOL.match(raw)
    if match is None:
        return 0, ("empty" if not raw.strip() else "not_a_number")
    sign, digits = match.groups()
    if digits[:2].lower() == b"0x":
        value = int(digits[2:], 16)
    elif digits.startswith(b"0") and len(digits) > 1:
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    value = -value if sign == b"-" else value
    # A leading 0 makes strtol read octal: "010" is 8, not what its writer meant; say so.
    plain = (
        match.end() == len(raw.rstrip())
        and _PLAIN.fullmatch(raw) is not None
        and not (digits.startswith(b"0") and len(digits) > 1)
    )
    return value, (None if plain else "not_a_number")


def read_track_file(path: Path) -> tuple[int, str | None, bytes]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(FILE_READ_MAX)
    except FileNotFoundError:
        return 0, "missing", b""
    except OSError:
        return 0, "unreadable", b""
    value, problem = parse_track_file(raw)
    return value, problem, raw


class _Inotify:
    """Just enough of inotify(7) through libc: watch directories, read names that changed."""

    IN_CLOSE_WRITE = 0x008
    IN_MOVED_FROM = 0x040
    IN_MOVED_TO = 0x080
    IN_DELETE = 0x200
    IN_NONBLOCK = os.O_NONBLOCK
    IN_CLOEXEC = os.O_CLOEXEC
    _EVENT = struct.Struct("iIII")

    def __init__(self) -> None:
        name = ctypes.util.find_library("c")
        if name is None:
            raise OSError(errno.ENOSYS, "no libc")
        self._libc = ctypes.CDLL(name, use_errno=True)
        fd = self._libc.inotify_init1(self.IN_NONBLOCK | self.IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.fd: int = fd

    def watch(self, directory: Path) -> int:
        mask = self.IN_CLOSE_WRITE | self.IN_MOVED_FROM | self.IN_MOVED_TO | self.IN_DELETE
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        return int(wd)

    def read(self) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for _ in range(64):
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset + self._EVENT.size <= len(data):
                wd, _mask, _cookie, length = self._EVENT.unpack_from(data, offset)
                start = offset + self._EVENT.size
                name = data[start : start + length].rstrip(b"\0")
                out.append((wd, os.fsdecode(name)))
                offset = start + length
        return out

    def close(self) -> None:
        os.close(self.fd)


# ---- processes ----------------------------------------------------------------------------


def process_matches(spec: TrackProcessConfig, comm: str, argv: list[str] | None) -> bool:
    """keepalived's match: the name (/proc/PID/comm) exactly, or with parameters (or
    `full_command`) the command line, its parameters exactly, as a prefix of the
    process's (`partial`), or with the last one a prefix of the process's (`initial`)."""
    wanted = list(spec.process)
    if not spec.full_command and len(wanted) == 1 and spec.param_match == "exact":
        return comm == wanted[0]
    if argv is None or not argv:
        return False
    if spec.param_match == "exact":
        return argv == wanted
    n = len(wanted)
    if spec.param_match == "partial":
        return argv[:n] == wanted
    return (
        len(argv) >= n and argv[: n - 1] == wanted[: n - 1] and argv[n - 1].startswith(wanted[-1])
    )


def _read_process(pid: int, need_argv: bool) -> tuple[str, list[str] | None] | None:
    """(comm, argv) of a running process, or None (gone, or a zombie)."""
    base = f"/proc/{pid}"
    try:
        with open(f"{base}/stat", "rb") as fh:
            stat = fh.read()
        # comm is in parentheses and may itself contain ")"; the state follows the last one.
        close = stat.rfind(b")")
        if stat[close + 2 : close + 3] in (b"Z", b"X"):
            return None
        comm = os.fsdecode(stat[stat.find(b"(") + 1 : close])
        argv: list[str] | None = None
        if need_argv:
            with open(f"{base}/cmdline", "rb") as fh:
                raw = fh.read(65536)
            argv = [os.fsdecode(a) for a in raw.split(b"\0")]
            if argv and argv[-1] == "":
                argv.pop()
    except OSError:
        return None
    return comm, argv


def _all_pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


class _ProcConnector:
    """The kernel's process-events connector (NETLINK_CONNECTOR, CN_IDX_PROC)."""

    NETLINK_CONNECTOR = 11
    CN_IDX_PROC = 1
    CN_VAL_PROC = 1
    PROC_CN_MCAST_LISTEN = 1
    NLMSG_DONE = 3
    PROC_EVENT_FORK = 0x1
    PROC_EVENT_EXEC = 0x2
    PROC_EVENT_COMM = 0x200
    PROC_EVENT_EXIT = 0x80000000

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, self.NETLINK_CONNECTOR)
        try:
            sock.setblocking(False)
            sock.bind((0, self.CN_IDX_PROC))
            op = struct.pack("I", self.PROC_CN_MCAST_LISTEN)
            cn = struct.pack("IIIIHH", self.CN_IDX_PROC, self.CN_VAL_PROC, 0, 0, len(op), 0) + op
            nl = struct.pack("IHHII", 16 + len(cn), self.NLMSG_DONE, 0, 0, 0) + cn
            sock.send(nl)  # ECONNREFUSED outside the host's network namespace
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def read(self) -> list[tuple[int, int, int]] | None:
        """(what, pid, child/parent pid) events; None when events were lost (ENOBUFS)."""
        out: list[tuple[int, int, int]] = []
        for _ in range(256):
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    return None
                raise
            # nlmsghdr (16) + cn_msg (20) + proc_event: what (4), cpu (4), timestamp (8),
            # then the event: fork: parent pid, tgid, child pid, tgid; others: pid, tgid.
            if len(data) < 16 + 20 + 16 + 8:
                continue
            what = struct.unpack_from("I", data, 36)[0]
            a, b = struct.unpack_from("ii", data, 52)
            if what == self.PROC_EVENT_FORK and len(data) >= 68:
                child = struct.unpack_from("i", data, 60)[0]
                out.append((what, child, a))
            else:
                out.append((what, b, a))
        return out

    def close(self) -> None:
        self.sock.close()


@dataclass
class _ProcessState:
    spec: TrackProcessConfig
    pids: set[int] = field(default_factory=set)
    up: bool = False
    reported: bool | None = None
    pending: asyncio.TimerHandle | None = None


# ---- the runtime --------------------------------------------------------------------------


class TrackingRuntime:
    """Runs what the config tracks and reports verdicts to `on_verdicts`."""

    def __init__(
        self,
        config: Config,
        on_verdicts: OnVerdicts,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_verdicts = on_verdicts
        self._clock = clock
        self.stats = TrackingStats()
        self.verdicts: dict[TrackKey, Verdict] = {}
        self._scripts: dict[str, VrrpScriptConfig] = {}
        self._script_tasks: dict[str, asyncio.Task[None]] = {}
        self._counters: dict[str, ScriptCounter] = {}
        self._files: dict[str, TrackFileConfig] = {}
        self._file_problem: dict[str, str | None] = {}
        self._inotify: _Inotify | None = None
        self._watches: dict[int, Path] = {}
        self._file_poll: asyncio.Task[None] | None = None
        self._processes: dict[str, _ProcessState] = {}
        self._connector: _ProcConnector | None = None
        self._process_poll: asyncio.Task[None] | None = None
        self._started = False
        self._use(config)

    # ---- life cycle --------------------------------------------------------------------

    def _use(self, config: Config) -> None:
        used = _used(config)
        self._scripts = {s.name: s for s in config.vrrp_scripts if s.name in used["script"]}
        self._files = {f.name: f for f in config.track_files if f.name in used["file"]}
        wanted = {p.name: p for p in config.track_processes if p.name in used["process"]}
        for name in list(self._processes):
            if name not in wanted:
                state = self._processes.pop(name)
                if state.pending is not None:
                    state.pending.cancel()
        for name, spec in wanted.items():
            known = self._processes.get(name)
            if known is None:
                self._processes[name] = _ProcessState(spec)
            else:
                known.spec = spec
        keys: set[TrackKey] = (
            {(TrackKind.SCRIPT, n) for n in self._scripts}
            | {(TrackKind.FILE, n) for n in self._files}
            | {(TrackKind.PROCESS, n) for n in self._processes}
        )
        for key in list(self.verdicts):
            if key not in keys:
                del self.verdicts[key]

    def prime(self) -> dict[TrackKey, Verdict]:
        """Read every file and count every process now (before VRRP starts), so that only
        scripts start without a verdict; returns the verdicts known."""
        for tfile in self._files.values():
            self._init_file(tfile)
            self._read_file(tfile, report=False)
        if self._processes:
            self._scan_processes(report=False)
        return dict(self.verdicts)

    async def start(self) -> None:
        self._started = True
        self._start_scripts()
        self._start_files()
        self._start_processes()

    def reload(self, config: Config) -> None:
        """Apply a new config in place: unchanged scripts keep their rise/fall state."""
        old_scripts = self._scripts
        self._use(config)
        for name, task in list(self._script_tasks.items()):
            if self._scripts.get(name) != old_scripts.get(name):
                task.cancel()
                del self._script_tasks[name]
                self._counters.pop(name, None)
                self.verdicts.pop((TrackKind.SCRIPT, name), None)
        self.prime()
        if self._started:
            self._start_scripts()
            self._start_files()
            self._start_processes()
        self._report(dict(self.verdicts))

    async def stop(self) -> None:
        tasks = [*self._script_tasks.values()]
        for task in (self._file_poll, self._process_poll):
            if task is not None:
                tasks.append(task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._script_tasks.clear()
        loop = asyncio.get_running_loop()
        if self._inotify is not None:
            loop.remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
        if self._connector is not None:
            loop.remove_reader(self._connector.sock.fileno())
            self._connector.close()
            self._connector = None
        for state in self._processes.values():
            if state.pending is not None:
                state.pending.cancel()

    def _report(self, verdicts: dict[TrackKey, Verdict]) -> None:
        if not verdicts:
            return
        try:
            self._on_verdicts(verdicts)
        except Exception:
            log.exception("track.report_error")

    def _set(self, key: TrackKey, verdict: Verdict, report: bool = True) -> None:
        if self.verdicts.get(key) == verdict:
            return
        self.verdicts[key] = verdict
        if report:
            self._report({key: verdict})

    # ---- scripts -----------------------------------------------------------------------

    def _start_scripts(self) -> None:
        loop = asyncio.get_running_loop()
        for name, script in self._scripts.items():
            if name not in self._script_tasks:
                counter = ScriptCounter(script.rise, script.fall, script.init_fail)
                self._counters[name] = counter
                if counter.up is not None:
                    self._set((TrackKind.SCRIPT, name), Verdict(counter.up))
                self._script_tasks[name] = loop.create_task(
                    self._script_loop(script, counter), name=f"track-script-{name}"
                )

    async def _script_loop(self, script: VrrpScriptConfig, counter: ScriptCounter) -> None:
        last: str | None = None
        while True:
            started = self._clock()
            try:
                outcome = await self._run_script(script)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("track.script_internal_error script=%s", script.name)
                outcome = "internal_error"
            ok = outcome == "exit_0"
            self.stats.run(script.name, ok)
            if outcome != last:
                # keepalived: "Script `x` now returning N": said when it changes only.
                level = logging.INFO if ok else logging.WARNING
                log.log(level, "track.script script=%s result=%s", script.name, outcome)
                last = outcome
            if counter.feed(ok):
                log.info(
                    "track.script_state script=%s state=%s result=%s",
                    script.name,
                    "up" if counter.up else "down",
                    outcome,
                )
                self._set((TrackKind.SCRIPT, script.name), Verdict(counter.up))
            delay = started + script.interval - self._clock()
            await asyncio.sleep(max(0.0, delay))

    async def _run_script(self, script: VrrpScriptConfig) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *script.script,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                **_credentials(script),
            )
        except (OSError, KeyError, ValueError, subprocess.SubprocessError) as exc:
            self.stats.error("script", script.name, "exec_error")
            log.error(
                "track.script_exec_error script=%s argv0=%s error=%s",
                script.name,
                script.script[0],
                exc,
            )
            return "exec_error"
        try:
            async with asyncio.timeout(script.effective_timeout):
                code = await proc.wait()
        except TimeoutError:
            self.stats.error("script", script.name, "timeout")
            log.warning(
                "track.script_timeout script=%s pid=%d timeout=%g: killing its process group",
                script.name,
                proc.pid,
                script.effective_timeout,
            )
            await _kill_group(proc)
            return "timeout"
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        # Children it left behind die with it: the group is ours (keepalived kills it too).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if code < 0:
            self.stats.error("script", script.name, "signal")
            return f"signal_{signal.Signals(-code).name}"
        return f"exit_{code}"

    # ---- files -------------------------------------------------------------------------

    def _init_file(self, tfile: TrackFileConfig) -> None:
        if tfile.init_file is None:
            return
        if tfile.file.exists() and not tfile.init_file_overwrite:
            return
        try:
            tfile.file.write_text(f"{tfile.init_file}\n")
        except OSError as exc:
            self.stats.error("file", tfile.name, "init_failed")
            log.error("track.file_init_error file=%s path=%s error=%s", tfile.name, tfile.file, exc)

    def _read_file(self, tfile: TrackFileConfig, report: bool = True) -> None:
        value, problem, raw = read_track_file(tfile.file)
        if problem is not None:
            self.stats.error("file", tfile.name, problem)
            if problem != self._file_problem.get(tfile.name):
                log.warning(
                    "track.file_%s file=%s path=%s content=%r value=%d: read as keepalived "
                    "reads it",
                    problem,
                    tfile.name,
                    tfile.file,
                    raw[:40],
                    value,
                )
        elif self._file_problem.get(tfile.name) is not None:
            log.info("track.file_ok file=%s value=%d", tfile.name, value)
        self._file_problem[tfile.name] = problem
        verdict = Verdict.of_file(value)
        if self.verdicts.get((TrackKind.FILE, tfile.name)) != verdict:
            log.info("track.file file=%s value=%d", tfile.name, verdict.value)
        self._set((TrackKind.FILE, tfile.name), verdict, report)

    def _start_files(self) -> None:
        if not self._files:
            return
        loop = asyncio.get_running_loop()
        if self._inotify is None and self._file_poll is None:
            try:
                self._inotify = _Inotify()
                loop.add_reader(self._inotify.fd, self._on_inotify)
            except OSError as exc:
                log.warning(
                    "track.inotify_unavailable error=%s: polling every %gs", exc, FILE_POLL_INTERVAL
                )
                self._file_poll = loop.create_task(self._poll_files(), name="track-file-poll")
        if self._inotify is not None:
            watched = set(self._watches.values())
            for tfile in self._files.values():
                directory = tfile.file.parent
                if directory in watched:
                    continue
                try:
                    self._watches[self._inotify.watch(directory)] = directory
                    watched.add(directory)
                except OSError as exc:
                    self.stats.error("file", tfile.name, "unwatchable")
                    log.error(
                        "track.file_unwatchable file=%s dir=%s error=%s: polling it",
                        tfile.name,
                        directory,
                        exc,
                    )
                    if self._file_poll is None:
                        self._file_poll = loop.create_task(self._poll_files())

    def _on_inotify(self) -> None:
        assert self._inotify is not None
        try:
            events = self._inotify.read()
        except OSError as exc:
            log.warning("track.inotify_error error=%s", exc)
            return
        for wd, name in events:
            directory = self._watches.get(wd)
            for tfile in self._files.values():
                if tfile.file.parent == directory and tfile.file.name == name:
                    self._read_file(tfile)

    async def _poll_files(self) -> None:
        while True:
            await asyncio.sleep(FILE_POLL_INTERVAL)
            for tfile in tuple(self._files.values()):
                self._read_file(tfile)

    # ---- processes ---------------------------------------------------------------------

    def _need_argv(self) -> bool:
        return any(
            s.spec.full_command or len(s.spec.process) > 1 or s.spec.param_match != "exact"
            for s in self._processes.values()
        )

    def _scan_processes(self, report: bool = True) -> None:
        need_argv = self._need_argv()
        found: dict[str, set[int]] = {name: set() for name in self._processes}
        for pid in _all_pids():
            info = _read_process(pid, need_argv)
            if info is None:
                continue
            for name, state in self._processes.items():
                if process_matches(state.spec, *info):
                    found[name].add(pid)
        for name, state in self._processes.items():
            state.pids = found[name]
            self._process_changed(state, report, immediate=not report)

    def _start_processes(self) -> None:
        if not self._processes or self._connector is not None or self._process_poll is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._connector = _ProcConnector()
            loop.add_reader(self._connector.sock.fileno(), self._on_proc_events)
            log.info("track.process_events source=connector")
        except OSError as exc:
            log.warning(
                "track.process_events source=proc_poll interval=%gs reason=%s",
                PROCESS_POLL_INTERVAL,
                exc,
            )
            self._process_poll = loop.create_task(self._poll_processes(), name="track-proc-poll")
        # Anything that started between prime() and the subscription is counted now.
        self._scan_processes()

    async def _poll_processes(self) -> None:
        while True:
            await asyncio.sleep(PROCESS_POLL_INTERVAL)
            self._scan_processes()

    def _on_proc_events(self) -> None:
        assert self._connector is not None
        try:
            events = self._connector.read()
        except OSError as exc:
            events = None
            log.warning("track.process_events_error error=%s", exc)
        if events is None:
            # The kernel dropped events (ENOBUFS): count everything again.
            self.stats.error("process", "*", "events_lost")
            self._scan_processes()
            return
        need_argv = self._need_argv()
        touched: set[str] = set()
        for what, pid, _other in events:
            if what == _ProcConnector.PROC_EVENT_EXIT:
                for name, state in self._processes.items():
                    if pid in state.pids:
                        state.pids.discard(pid)
                        touched.add(name)
                continue
            if what not in (
                _ProcConnector.PROC_EVENT_FORK,
                _ProcConnector.PROC_EVENT_EXEC,
                _ProcConnector.PROC_EVENT_COMM,
            ):
                continue
            info = _read_process(pid, need_argv)
            for name, state in self._processes.items():
                matches = info is not None and process_matches(state.spec, *info)
                if matches != (pid in state.pids):
                    if matches:
                        state.pids.add(pid)
                    else:
                        state.pids.discard(pid)
                    touched.add(name)
        for name in touched:
            self._process_changed(self._processes[name])

    def _process_changed(
        self, state: _ProcessState, report: bool = True, immediate: bool = False
    ) -> None:
        spec = state.spec
        up = spec.quorum <= len(state.pids) <= spec.max_count
        if up == state.reported:
            if state.pending is not None:
                state.pending.cancel()  # bounced back within the delay: nothing happened
                state.pending = None
            state.up = up
            return
        if state.pending is not None and state.up == up:
            return  # already on its way
        state.up = up
        if state.pending is not None:
            state.pending.cancel()
            state.pending = None
        delay = spec.up_delay if up else spec.down_delay
        if immediate or delay <= 0 or state.reported is None:
            self._process_verdict(state, report)
            return
        loop = asyncio.get_running_loop()
        state.pending = loop.call_later(delay, self._process_verdict, state, True)

    def _process_verdict(self, state: _ProcessState, report: bool) -> None:
        state.pending = None
        if state.reported != state.up:
            log.info(
                "track.process process=%s quorum=%s count=%d",
                state.spec.name,
                "gained" if state.up else "lost",
                len(state.pids),
            )
        state.reported = state.up
        self._set((TrackKind.PROCESS, state.spec.name), Verdict(state.up), report)


def _used(config: Config) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {"script": set(), "file": set(), "process": set()}
    trackers: Iterable[Any] = (*config.vrrp_instances, *config.vrrp_sync_groups)
    for tracker in trackers:
        used["script"].update(r.name for r in tracker.track_script)
        used["file"].update(r.name for r in tracker.track_file)
        used["process"].update(r.name for r in tracker.track_process)
    return used


def _credentials(script: VrrpScriptConfig) -> dict[str, Any]:
    """Popen keyword arguments that run the script as its `user` (keepalived's `user`),
    with the user's own group unless one is named, and no supplementary groups."""
    if script.user is None:
        return {}
    group: str | int = (
        script.group if script.group is not None else pwd.getpwnam(script.user).pw_gid
    )
    return {"user": script.user, "group": group, "extra_groups": []}


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(TERM_GRACE):
            await proc.wait()
    # The group, even when the leader is gone: its children may ignore SIGTERM.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        async with asyncio.timeout(REAP_TIMEOUT):
            await proc.wait()
    except TimeoutError:
        log.error("track.script_unkillable pid=%d", proc.pid)


__all__ = [
    "ScriptCounter",
    "TrackingRuntime",
    "TrackingStats",
    "parse_track_file",
    "process_matches",
    "read_track_file",
]
