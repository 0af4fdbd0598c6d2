"""Run notify hooks (notify_up, notify_down, quorum_up, quorum_down) strictly in order.

`Notifier.submit()` is synchronous and never blocks: it appends the command to one queue,
consumed by one task that runs one hook at a time, so hooks run in the order their events
happened (keepalived forks each script at once, so a quick "UP" can overtake a slow "DOWN" of
the same server unless a FIFO is used). Each hook is exec'd with an argv, never through a
shell (no quoting bugs, no injection through addresses or names), in its own session so that a
timeout can kill the whole process group (a hook's children die with it; keepalived also kills
the group). Errors are logged and counted, never raised to the caller.

The hook's stdout/stderr are inherited by default (under systemd they land in the journal):
reading them through a pipe would make us wait for any child the hook leaves running in the
background, which keepalived's hooks are allowed to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Notifier", "NotifyCommand", "NotifyStats"]

log = logging.getLogger("hacontrol.notify")


@dataclass(frozen=True, slots=True)
class NotifyCommand:
    argv: tuple[str, ...]
    timeout: float = 10.0
    event: str = ""  # what fired it, for logs: "notify_up vs=web rs=192.0.2.10:80"

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a notify command needs at least the program")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")


@dataclass(slots=True)
class NotifyStats:
    queued: int = 0
    run: int = 0  # hooks started
    succeeded: int = 0  # exit status 0
    failed: int = 0  # non-zero exit status or killed by a signal it did not get from us
    timed_out: int = 0  # killed by us after their timeout
    exec_errors: int = 0  # could not be started (missing, not executable, ...)
    dropped: int = 0  # queue full
    abandoned: int = 0  # still queued when stop() gave up waiting


class Notifier:
    """One FIFO of hooks and the task that runs them."""

    def __init__(
        self,
        *,
        max_queue: int = 10_000,
        kill_grace: float = 1.0,
        env: Mapping[str, str] | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> None:
        self._max_queue = max_queue
        self._kill_grace = kill_grace
        self._env = dict(env) if env is not None else None
        self._stdout = stdout
        self._stderr = stderr
        self._queue: asyncio.Queue[NotifyCommand] | None = None
        self._pending: list[NotifyCommand] = []  # submitted before start()
        self._task: asyncio.Task[None] | None = None
        self.stats = NotifyStats()

    def submit(self, command: NotifyCommand) -> bool:
        """Queue a hook; False (and counted) if the queue is full. Never blocks, never raises."""
        if self._queue is None:
            if len(self._pending) >= self._max_queue:
                return self._drop(command)
            self._pending.append(command)
        else:
            try:
                self._queue.put_nowait(command)
            except asyncio.QueueFull:
                return self._drop(command)
        self.stats.queued += 1
        return True

    def _drop(self, command: NotifyCommand) -> bool:
        self.stats.dropped += 1
        log.error(
            "notify.dropped event=%s argv0=%s dropped=%d",
            command.event,
            command.argv[0],
            self.stats.dropped,
        )
        return False

    async def start(self) -> None:
        if self._task is not None:
            return
        self._queue = asyncio.Queue(self._max_queue)
        for command in self._pending:
            self._queue.put_nowait(command)
        self._pending.clear()
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="notify")

    async def join(self) -> None:
        """Wait until every queued hook has finished."""
        if self._queue is not None:
            await self._queue.join()

    async def stop(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the consumer, first letting queued hooks run if `drain` (bounded by
        `timeout`); a hook still running when we give up is killed with its group."""
        if self._task is None:
            return
        if drain:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        left = self._queue.qsize() if self._queue is not None else 0
        if left:
            self.stats.abandoned += left
            log.error("notify.abandoned count=%d reason=stop_timeout", left)

    async def _consume(self) -> None:
        assert self._queue is not None
        while True:
            command = await self._queue.get()
            try:
                await self._run(command)
            except asyncio.CancelledError:
                raise
            except Exception:  # our bug: log it, keep the queue moving
                log.exception("notify.internal_error event=%s", command.event)
            finally:
                self._queue.task_done()

    async def _run(self, command: NotifyCommand) -> None:
        self.stats.run += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *command.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._stdout,
                stderr=self._stderr,
                env=self._env,
                start_new_session=True,  # its own process group, killable as a whole
            )
        except OSError as exc:
            self.stats.exec_errors += 1
            log.error(
                "notify.exec_error event=%s argv0=%s error=%s", command.event, command.argv[0], exc
            )
            return
        try:
            async with asyncio.timeout(command.timeout):
                status = await proc.wait()
        except TimeoutError:
            self.stats.timed_out += 1
            log.error(
                "notify.timeout event=%s argv0=%s pid=%d timeout=%s",
                command.event,
                command.argv[0],
                proc.pid,
                command.timeout,
            )
            await self._kill_group(proc)
            return
        except asyncio.CancelledError:
            await self._kill_group(proc)
            raise
        if status == 0:
            self.stats.succeeded += 1
            log.debug("notify.done event=%s argv0=%s", command.event, command.argv[0])
        else:
            self.stats.failed += 1
            log.warning(
                "notify.failed event=%s argv0=%s status=%d", command.event, command.argv[0], status
            )

    async def _kill_group(self, proc: asyncio.subprocess.Process) -> None:
        # SIGTERM to the group so the hook can clean up, then SIGKILL to whatever is left of the
        # group, even when the leader already exited (its children may ignore SIGTERM).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._kill_grace):
                await proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(5.0):
                await proc.wait()
        except TimeoutError:
            log.error("notify.unkillable pid=%d", proc.pid)
