"""One daemon per host: an exclusive lock on the pid file, taken before anything else.

A second `hacontrol run` on the same host used to treat the running master's VIP as a
stale leftover, delete it, and end up MASTER beside the first one. The lock is the first
thing `run` does after validating its config: a second daemon exits non-zero at once,
naming the running pid, before it opens a socket, touches an address or reads the
kernel's tables.

flock(2) rather than "does the pid in the file still run": the kernel releases the lock
when the holder dies, even by kill -9, so there is no stale-lock state to get wrong, and
a recycled pid can never make us refuse to start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

DEFAULT_RUN_DIR = Path("/run/hacontrol")
PID_FILE = "hacontrol.pid"


class AlreadyRunning(Exception):
    """Another daemon holds the lock; `pid` is what its pid file says (None if unreadable)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"hacontrol is already running ({who}, lock {path}); "
            "stop it first, or give this one another --run-dir only if it runs in "
            "another network namespace"
        )


class PidLock:
    """Holds the lock for the life of the process; `release()` at a clean exit."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run_dir: Path = DEFAULT_RUN_DIR) -> PidLock:
        """Take the lock or raise AlreadyRunning (OSError when run_dir cannot be made)."""
        run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        path = run_dir / PID_FILE
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                pid = _read_pid(fd)
                os.close(fd)
                raise AlreadyRunning(path, pid) from None
            # A predecessor may have unlinked the file between our open and our flock
            # (release() order): then we locked an orphan inode; open the path again.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return cls(path, fd)
            os.close(fd)
        raise OSError(errno.EAGAIN, f"{path}: replaced repeatedly while locking it")

    def release(self) -> None:
        """Remove the pid file and drop the lock (in that order: a successor that opens
        the file after the unlink creates a new one and locks that)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
