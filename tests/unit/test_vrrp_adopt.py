"""`hacontrol restart` keeps the VRRP process: the new daemon takes over the one its
predecessor left running (VrrpSupervisor.adopt), or kills it when it must not be kept,
so that two VRRP processes never advertise for one director.

Real child processes and a real socketpair; the child here is a stand-in (it only has
to be our child and hold the other end), the VRRP process itself is exercised by the
netns test of `hacontrol restart`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess

from hacontrol.runtime.events import VrrpProcessChanged
from hacontrol.runtime.vrrp_host import VrrpSupervisor
from hacontrol.runtime.vrrp_protocol import Attach, SetScheduling, code_id, read_message


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


async def test_a_process_running_older_code_advertises_until_the_new_one_starts(
    child: tuple[subprocess.Popen[bytes], socket.socket, int],
) -> None:
    # After an upgrade the kept process is not taken over (it speaks the old protocol),
    # but it is not killed either until `start()` has a new process to resume its
    # masters: here the new config has no instances, so it simply ends.
    proc, _, fd = child
    events: list[object] = []
    supervisor = VrrpSupervisor(events.append)
    taken = await supervisor.adopt({"pid": proc.pid, "fd": fd, "code": "older-code"})
    assert taken == "outgoing"
    assert alive(proc.pid) and fd_open(fd)
    assert supervisor.pid is None and events == []
    await supervisor.start([])
    assert not alive(proc.pid)  # killed (and reaped): it would advertise beside a new one
    assert not fd_open(fd)


async def test_a_dead_process_is_not_taken_over(
    child: tuple[subprocess.Popen[bytes], socket.socket, int],
) -> None:
    proc, _, fd = child
    proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped
    supervisor = VrrpSupervisor(lambda _: None)
    assert await supervisor.adopt({"pid": proc.pid, "fd": fd, "code": code_id()}) == "no"
    assert not fd_open(fd)


async def test_a_process_that_is_not_our_child_is_refused(
    child: tuple[subprocess.Popen[bytes], socket.socket, int],
) -> None:
    _, _, fd = child
    supervisor = VrrpSupervisor(lambda _: None)
    # pid 1 is alive but not our child: never signalled, never taken over.
    assert await supervisor.adopt({"pid": 1, "fd": fd, "code": code_id()}) == "no"
    assert not fd_open(fd)
    assert await supervisor.adopt({"pid": "1", "fd": None, "code": 3}) == "no"  # malformed


async def test_a_process_running_this_code_is_kept_and_told_to_attach(
    child: tuple[subprocess.Popen[bytes], socket.socket, int],
) -> None:
    proc, theirs, fd = child
    events: list[object] = []
    supervisor = VrrpSupervisor(events.append)
    assert await supervisor.adopt({"pid": proc.pid, "fd": fd, "code": code_id()}) == "kept"
    assert supervisor.pid == proc.pid and supervisor.hello.is_set()
    assert VrrpProcessChanged("started", proc.pid, "kept") in events
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    assert isinstance(await read_message(reader), SetScheduling)
    assert isinstance(await read_message(reader), Attach)
    await supervisor.abandon()  # ends it as `hacontrol restart` would without a handoff
    assert not alive(proc.pid)
    writer.close()
