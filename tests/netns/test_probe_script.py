"""MISC_CHECK probe: real programs, exit codes, dynamic weights, and killing a hung group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from healthcheck.config import ScriptCheck
from healthcheck.probes import ProbeTarget, run_probe
from tests.support import require_root

TARGET = ProbeTarget(IPv4Address("127.0.0.1"), 80)
SH = "/bin/sh"


def exits(code: int) -> tuple[str, ...]:
    return (SH, "-c", f"exit {code}")


@pytest.mark.parametrize(
    ("code", "dynamic", "ok", "reason", "weight"),
    [
        (0, False, True, "ok", None),
        (1, False, False, "exit_1", None),
        (2, False, False, "exit_2", None),
        (7, False, False, "exit_7", None),
        (0, True, True, "ok", None),
        (1, True, False, "exit_1", None),
        (2, True, True, "ok", 0),
        (7, True, True, "ok", 5),
        (255, True, True, "ok", 253),
    ],
)
async def test_exit_codes(
    code: int, dynamic: bool, ok: bool, reason: str, weight: int | None
) -> None:
    result = await run_probe(ScriptCheck(argv=exits(code), dynamic=dynamic, timeout=10), TARGET)
    assert (result.ok, result.reason, result.weight) == (ok, reason, weight)


async def test_argv_is_not_given_to_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    # With a shell, "; touch" would run; exec'd directly, /bin/echo just prints its argument.
    check = ScriptCheck(argv=("/bin/echo", f"x; touch {marker}"), timeout=10)
    assert (await run_probe(check, TARGET)).ok
    assert not marker.exists()


async def test_killed_by_a_signal() -> None:
    result = await run_probe(ScriptCheck(argv=(SH, "-c", "kill -TERM $$"), timeout=10), TARGET)
    assert (result.ok, result.reason) == (False, "signal_SIGTERM")


async def test_missing_program_is_exec_error(tmp_path: Path) -> None:
    result = await run_probe(ScriptCheck(argv=(str(tmp_path / "absent"),), timeout=10), TARGET)
    assert (result.ok, result.reason) == (False, "exec_error")


async def test_unknown_user_is_exec_error() -> None:
    check = ScriptCheck(argv=exits(0), user="hacontrol-no-such-user", timeout=10)
    assert (await run_probe(check, TARGET)).reason == "exec_error"


def _gone(pid: int) -> bool:
    """True when `pid` has exited (absent, or a zombie not yet reaped by its new parent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def _await_exit(pidfd: int) -> None:
    # A pidfd becomes readable when its process terminates (pidfd_open(2)).
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(pidfd, done.set_result, None)
    try:
        await done
    finally:
        loop.remove_reader(pidfd)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pids"
    os.mkfifo(path)
    yield path


async def test_timeout_kills_the_whole_process_group(fifo: Path) -> None:
    # The script starts a child in its own process group, reports both pids, then hangs.
    script = f'sleep 600 & echo "$$ $!" > {fifo}; wait'
    check = ScriptCheck(argv=(SH, "-c", script), timeout=1.0)
    loop = asyncio.get_running_loop()
    reader_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    pidfds: list[int] = []
    pids: list[int] = []
    try:
        probe = asyncio.create_task(run_probe(check, TARGET))
        line = loop.create_future()

        def on_readable() -> None:
            data = os.read(reader_fd, 100)
            if data and not line.done():
                line.set_result(data)

        loop.add_reader(reader_fd, on_readable)
        try:
            async with asyncio.timeout(10):
                raw = await line
        finally:
            loop.remove_reader(reader_fd)
        pids = [int(p) for p in raw.split()]
        pidfds = [os.pidfd_open(pid) for pid in pids]  # both alive: the probe is waiting
        assert not probe.done()
        result = await probe
        assert (result.ok, result.reason) == (False, "timeout")
        assert 0.9 <= result.duration < 6
        async with asyncio.timeout(10):
            await asyncio.gather(*(_await_exit(fd) for fd in pidfds))
        assert all(_gone(pid) for pid in pids)
    finally:
        os.close(reader_fd)
        for fd in pidfds:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)


async def test_cancelling_the_probe_kills_the_group_and_propagates(fifo: Path) -> None:
    # The child, not the leader: asyncio itself may kill a leader it stops watching, but
    # only killpg reaches the rest of the group.
    script = f'sleep 600 & echo "$!" > {fifo}; wait'
    check = ScriptCheck(argv=(SH, "-c", script), timeout=60)
    loop = asyncio.get_running_loop()
    reader_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    pidfd = -1
    try:
        probe = asyncio.create_task(run_probe(check, TARGET))
        line = loop.create_future()

        def on_readable() -> None:
            if not line.done():
                line.set_result(os.read(reader_fd, 100))

        loop.add_reader(reader_fd, on_readable)
        try:
            async with asyncio.timeout(10):
                raw = await line
        finally:
            loop.remove_reader(reader_fd)
        pidfd = os.pidfd_open(int(raw))
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        async with asyncio.timeout(10):
            await _await_exit(pidfd)
    finally:
        os.close(reader_fd)
        if pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)


async def test_python_program_with_arguments() -> None:
    check = ScriptCheck(argv=(sys.executable, "-c", "import sys; sys.exit(int(sys.argv[1]))", "9"))
    assert (await run_probe(check.model_copy(update={"dynamic": True}), TARGET)).weight == 7
    assert check.timeout == check.delay_loop == 60.0


async def test_runs_as_user_with_the_users_group_only() -> None:
    require_root()
    nobody = pwd.getpwnam("nobody")
    test = (
        f'test "$(id -u)" = {nobody.pw_uid} && test "$(id -g)" = {nobody.pw_gid}'
        f' && test "$(id -G)" = {nobody.pw_gid}'
    )
    check = ScriptCheck(argv=(SH, "-c", test), user="nobody", timeout=10)
    assert (await run_probe(check, TARGET)).reason == "ok"
    # The control: the same test as root fails, so the assertion above can fail.
    assert (await run_probe(check.model_copy(update={"user": None}), TARGET)).reason == "exit_1"
