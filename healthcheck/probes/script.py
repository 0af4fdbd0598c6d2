"""MISC_CHECK: run a program (no shell) and judge its exit status.

Exit 0 is up, anything else down; with `dynamic`, 2..255 is up with weight `code - 2`
(keepalived misc_dynamic). The program runs in its own session so that on timeout (or when
the probe is cancelled) SIGKILL reaches everything it started, not just the leader: a hung
script that spawned children must not leave them behind every delay_loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import pwd
import signal
import subprocess
from collections.abc import Callable
from typing import Any

from healthcheck.config import ScriptCheck
from healthcheck.probes.common import Clock, ProbeFailure, ProbeTarget, Up, timed
from healthcheck.types import ProbeResult

# SIGKILL cannot be caught, but a process stuck in uninterruptible sleep (D state) dies only
# when its I/O ends; bound the wait for the reap so the probe itself cannot hang (asyncio's
# child watcher still reaps it later).
REAP_GRACE = 0.5


def judge_exit(check: ScriptCheck, returncode: int) -> Up:
    if returncode == 0:
        return Up()
    if returncode < 0:
        raise ProbeFailure("signal_" + signal.Signals(-returncode).name)
    if check.dynamic and 2 <= returncode <= 255:
        return Up(weight=returncode - 2)
    raise ProbeFailure(f"exit_{returncode}")


def _kill_group(pid: int) -> None:
    # start_new_session makes the child a session and process-group leader: pgid == pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _capability_dropper() -> Callable[[], None] | None:
    """A function that empties every capability set of the calling process."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    capset, prctl = libc.capset, libc.prctl
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    empty = (_CapData * 2)()  # all zero: two 32-bit words per set

    def drop() -> None:
        # Emptying the inheritable set empties the ambient set too. capset is in
        # systemd's @privileged group: if a filter refuses it, at least the ambient set
        # goes (prctl needs no privilege; it fails only on kernels that have none).
        if capset(ctypes.byref(header), empty) != 0:
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)

    return drop


# Built once, in the daemon: between fork and exec the child only makes the calls.
_DROP_CAPABILITIES = _capability_dropper()


def _credentials(check: ScriptCheck) -> dict[str, Any]:
    """Popen keyword arguments that run the program as `user` (keepalived's `user`)."""
    if check.user is None:
        return {}
    # Popen(user=) alone would keep the daemon's gid and supplementary groups (root's);
    # keepalived runs the script with the user's own group unless one is named.
    group: str | int = check.group if check.group is not None else pwd.getpwnam(check.user).pw_gid
    # A root daemon's capabilities go when the child's uids leave 0. The packaged unit's
    # daemon is not root: it holds ambient (and so inheritable) capabilities, which survive
    # a change between two non-root uids and execve(), so the check would run as `user`
    # with the daemon's CAP_NET_ADMIN and CAP_SETUID. The child empties its sets after the
    # uid change (subprocess calls preexec_fn after setreuid), before exec. preexec_fn
    # makes subprocess fork rather than vfork; the function only makes two system calls
    # and takes no lock another thread of the daemon could hold.
    return {
        "user": check.user,
        "group": group,
        "extra_groups": [],
        "preexec_fn": _DROP_CAPABILITIES,
    }


async def _script(check: ScriptCheck) -> Up:
    try:
        proc = await asyncio.create_subprocess_exec(
            *check.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **_credentials(check),
        )
    except (OSError, KeyError, ValueError, subprocess.SubprocessError) as exc:
        # OSError: missing program, not executable; KeyError: unknown user or group.
        raise ProbeFailure("exec_error") from exc
    try:
        async with asyncio.timeout(check.timeout):
            returncode = await proc.wait()
    except TimeoutError as exc:
        _kill_group(proc.pid)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REAP_GRACE):
                await proc.wait()
        raise ProbeFailure("timeout") from exc
    except asyncio.CancelledError:
        # The child watcher still reaps the leader after we are gone.
        _kill_group(proc.pid)
        raise
    return judge_exit(check, returncode)


async def probe_script(
    check: ScriptCheck, target: ProbeTarget | None = None, *, clock: Clock | None = None
) -> ProbeResult:
    """Run `check.argv`; never raises except asyncio.CancelledError."""
    return await timed(lambda: _script(check), clock)
