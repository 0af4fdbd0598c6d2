"""A notify FIFO writer that never blocks the daemon, whatever its reader does.

keepalived opens its FIFO read-write and non-blocking and ignores failed writes: with no
reader, lines pile up in the pipe (64 KiB) for whoever opens it later, and once that is
full the newest lines are lost without a word. Here:

- The FIFO is created (mode 0600) when missing, as keepalived does, and opened
  write-only and non-blocking, without following a symlink. With no reader the open
  fails (ENXIO): the daemon knows nobody listens, says so once, keeps the lines and tries
  again with backoff while any are waiting. A path that is not a FIFO is never written.
- Lines wait in a bounded buffer (hacontrol/notify_plan.py's `FifoBuffer`: the oldest are
  dropped first and counted) and are written only when the pipe has room: a write that
  would block (EAGAIN) parks the rest until the loop says the FIFO is writable.
- Writes are at most PIPE_BUF bytes of whole lines, so they are atomic: a reader never
  sees half a line.
- A reader that goes away makes the next write fail with EPIPE (SIGPIPE is ignored in
  the daemon, as CPython sets it, so it is an exception, not a signal): the FIFO is
  closed and reopened once a reader is back, and the line that failed is kept.

Each condition (no reader, reader gone, slow reader, not a FIFO, ...) is logged when it
begins and when it ends, and counted once per episode; drops are counted per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat

from hacontrol.notify_plan import Conditions, FifoBuffer, FifoStats

log = logging.getLogger("hacontrol.notify_fifo")

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)  # seconds between opens while lines wait for a reader


class FifoWriter:
    """Writes lines to one FIFO from the event loop; `write()` never blocks or raises."""

    def __init__(self, path: str, max_lines: int) -> None:
        self.path = path
        self.buffer = FifoBuffer(max_lines)
        self.conditions = Conditions()
        self._fd: int | None = None
        self._waiting_writable = False
        self._retry: asyncio.TimerHandle | None = None
        self._retries = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._drop_reasons: dict[str, int] = {}
        self._drops_counted = 0  # of buffer.dropped, already put under a reason

    # ---- public --------------------------------------------------------------------------

    def start(self) -> None:
        """Create the FIFO if needed and open it if a reader is there already."""
        self._loop = asyncio.get_running_loop()
        self._open()

    def write(self, line: str) -> None:
        """Queue a line (newline-terminated) and write what the pipe takes now."""
        if self._closed:
            return
        if self.buffer.push(line.encode()):
            log.error(
                "notify_fifo.dropping path=%s buffer=%d reason=%s: the oldest lines are "
                "dropped (hacontrol_notify_fifo_lines_dropped_total)",
                self.path,
                self.buffer.max_lines,
                self.conditions.current or "reader_slow",
            )
        self._count_drops("buffer_full")
        if self._fd is None:
            if self._retry is None:
                self._open()
        elif not self._waiting_writable:
            self._flush()

    def resize(self, max_lines: int) -> None:
        if max_lines != self.buffer.max_lines:
            self.buffer.resize(max_lines)
            self._count_drops("buffer_full")

    async def close(self, flush_timeout: float = 1.0) -> None:
        """Give waiting lines up to `flush_timeout` seconds to reach a reader, then close;
        lines still waiting are dropped (counted as `shutdown`)."""
        deadline = asyncio.get_running_loop().time() + flush_timeout
        while len(self.buffer) and self._fd is not None:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.sleep(min(0.05, left))
        self._closed = True
        self._cancel_retry()
        self._close_fd()
        left_over = self.buffer.clear()
        self._count_drops("shutdown")
        if left_over:
            log.error(
                "notify_fifo.closed path=%s undelivered=%d reason=%s",
                self.path,
                left_over,
                self.conditions.current or "reader_slow",
            )

    def stats(self) -> FifoStats:
        return FifoStats(
            path=self.path,
            written=self.buffer.written,
            dropped=dict(self._drop_reasons),
            errors=dict(self.conditions.counts),
            buffered=len(self.buffer),
            reader=self._fd is not None,
        )

    # ---- opening ---------------------------------------------------------------------------

    def _open(self) -> None:
        if self._closed or self._fd is not None:
            return
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            info = None
        except OSError as exc:
            self._trouble("open_failed", str(exc))
            return
        if info is None:
            try:
                os.mkfifo(self.path, 0o600)
                log.info("notify_fifo.created path=%s", self.path)
            except FileExistsError:
                pass
            except OSError as exc:
                self._trouble("create_failed", str(exc))
                return
        elif not stat.S_ISFIFO(info.st_mode):
            self._trouble("not_a_fifo", f"{_kind(info.st_mode)} is not a FIFO; nothing is written")
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO and self.conditions.current == "reader_gone":
                self._schedule_retry()  # the same episode: its reader has not come back
            elif exc.errno == errno.ENXIO:
                self._trouble(
                    "no_reader",
                    f"nobody has it open for reading; up to {self.buffer.max_lines} lines "
                    "are kept for a reader",
                )
            else:
                self._trouble("open_failed", str(exc))
            return
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):  # replaced between lstat and open
            os.close(fd)
            self._trouble("not_a_fifo", "not a FIFO; nothing is written")
            return
        self._fd = fd
        self._retries = 0
        self._flush()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._waiting_writable and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_writer(fd)
        self._waiting_writable = False
        with contextlib.suppress(OSError):
            os.close(fd)

    def _schedule_retry(self) -> None:
        if self._closed or self._retry is not None or not len(self.buffer):
            return
        if self._loop is None:
            return
        delay = RETRY_DELAYS[min(self._retries, len(RETRY_DELAYS) - 1)]
        self._retries += 1
        self._retry = self._loop.call_later(delay, self._on_retry)

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _on_retry(self) -> None:
        self._retry = None
        self._open()

    # ---- writing ---------------------------------------------------------------------------

    def _flush(self) -> None:
        fd = self._fd
        assert fd is not None
        while len(self.buffer):
            data = self.buffer.chunk()
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                self._wait_writable(fd)
                return
            except BrokenPipeError:
                self._close_fd()
                self._trouble("reader_gone", "its reader closed it; reopening when one is back")
                return
            except OSError as exc:
                self._close_fd()
                self._trouble("write_failed", str(exc))
                return
            self.buffer.consumed(written)
        self._healthy()

    def _wait_writable(self, fd: int) -> None:
        if self.conditions.enter("reader_slow"):
            log.warning(
                "notify_fifo.reader_slow path=%s buffered=%d: the pipe is full; lines wait "
                "(up to %d) until the reader catches up",
                self.path,
                len(self.buffer),
                self.buffer.max_lines,
            )
        if not self._waiting_writable and self._loop is not None:
            self._waiting_writable = True
            self._loop.add_writer(fd, self._on_writable)

    def _on_writable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        self._waiting_writable = False
        if self._loop is not None:
            self._loop.remove_writer(fd)
        self._flush()

    def _healthy(self) -> None:
        ended = self.conditions.clear()
        if ended is not None:
            log.info(
                "notify_fifo.writing path=%s after=%s dropped_so_far=%d",
                self.path,
                ended,
                self.buffer.dropped,
            )

    def _trouble(self, reason: str, detail: str) -> None:
        if self.conditions.enter(reason):
            level = logging.WARNING if reason in ("no_reader", "reader_gone") else logging.ERROR
            log.log(level, "notify_fifo.%s path=%s: %s", reason, self.path, detail)
        self._schedule_retry()

    def _count_drops(self, reason: str) -> None:
        new = self.buffer.dropped - self._drops_counted
        if new > 0:
            self._drop_reasons[reason] = self._drop_reasons.get(reason, 0) + new
            self._drops_counted = self.buffer.dropped


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink (not followed)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


__all__ = ["FifoWriter"]
