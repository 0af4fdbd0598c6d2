"""Witnesses for notify tests: scripts that record how they were called, a FIFO reader.

- `Recorder` writes one executable shell script and links it under each name a test
  configures (`master`, `backup`, `notify`, ...). Every call appends one line to a log:
  its name, its arguments, when it started (and ended), its pid and process group. A
  script can be told to hang (and leave a child in its process group) or to fail.
- `FifoReader` reads a FIFO the way keepalived's sample consumer does (one line at a
  time, reopening when the writer recreated it), with a bounded wait for every read.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shlex
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

# A shell script, not Python: it must start within milliseconds even on a loaded machine
# (a test's timeouts are about the daemon, not the interpreter's start-up). One line per
# event, fields separated by tabs: start|end, time, pid, process group, name, arguments;
# each line is one write() to a file opened O_APPEND, so scripts that run at once
# (keepalived forks them all) never interleave their lines.
_SCRIPT = """\
#!/bin/sh
name=$(basename "$0")
behaviour=$(sed -n "s/^$name=//p" {behaviour})
pgid=$(cut -d' ' -f5 /proc/$$/stat)
child=-
if [ "$behaviour" = hang ]; then
    sleep 3600 &
    child=$!
fi
line=$(printf 'start\\t%s\\t%s\\t%s\\t%s\\t%s' "$(date +%s.%N)" "$$" "$pgid" "$child" "$name"
      for arg in "$@"; do printf '\\t%s' "$arg"; done)
printf '%s\\n' "$line" >> {log}
[ "$behaviour" = hang ] && sleep 3600
[ "$behaviour" = fail ] && exit 3
line=$(printf 'end\\t%s\\t%s\\t-\\t-\\t%s' "$(date +%s.%N)" "$$" "$name"
      for arg in "$@"; do printf '\\t%s' "$arg"; done)
printf '%s\\n' "$line" >> {log}
"""


class Recorder:
    """Scripts that log their calls to `log`; `path(name)` is the script to configure."""

    def __init__(
        self, workdir: Path, names: Sequence[str], behaviour: dict[str, str] | None = None
    ):
        self.dir = workdir / "scripts"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "calls.log"
        behaviours = workdir / "behaviour"
        behaviours.write_text("".join(f"{k}={v}\n" for k, v in (behaviour or {}).items()))
        main = self.dir / "recorder.sh"
        main.write_text(
            _SCRIPT.format(log=shlex.quote(str(self.log)), behaviour=shlex.quote(str(behaviours)))
        )
        main.chmod(0o755)
        for name in names:
            link = self.dir / name
            if not link.exists():
                link.symlink_to(main)

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def records(self) -> list[dict[str, Any]]:
        """One dict per event: {name, args, start|end, pid, pgid, child}."""
        try:
            text = self.log.read_text()
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for line in text.splitlines():
            kind, at, pid, pgid, child, name, *args = line.split("\t")
            record: dict[str, Any] = {"name": name, "args": args, kind: float(at), "pid": int(pid)}
            if kind == "start":
                record["pgid"] = int(pgid)
                if child != "-":
                    record["child"] = int(child)
            out.append(record)
        return out

    def calls(self) -> list[tuple[str, ...]]:
        """(name, *args) of every call, in the order they started."""
        starts = [r for r in self.records() if "start" in r]
        return [(r["name"], *r["args"]) for r in sorted(starts, key=lambda r: r["start"])]

    def wait_calls(self, count: int, timeout: float) -> list[tuple[str, ...]]:
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls()
            if len(calls) >= count:
                return calls
            if time.monotonic() >= deadline:
                raise AssertionError(f"wanted {count} script calls, got {len(calls)}: {calls}")
            time.sleep(0.05)


class FifoReader:
    """Lines from a FIFO, read non-blocking with bounded waits.

    `create`: make the FIFO first (as a consumer started before the daemon does).
    `pipe_size`: shrink the pipe (F_SETPIPE_SZ) so that a test fills it with few lines.
    A writer that closes the FIFO and recreates it (keepalived on reload) is followed: the
    reader reopens the path when its inode changes, as keepalived's sample script does.
    """

    def __init__(self, path: Path, *, create: bool = True, pipe_size: int | None = None):
        self.path = path
        if create and not path.exists():
            os.mkfifo(path, 0o600)
        self.fd: int | None = None
        self.lines: list[str] = []
        self.eofs = 0
        self._partial = b""
        self._had_data = False
        self._inode = 0
        self.pipe_size = pipe_size
        self.open()

    def open(self) -> None:
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._inode = os.fstat(self.fd).st_ino
        if self.pipe_size is not None:
            fcntl.fcntl(self.fd, F_SETPIPE_SZ, self.pipe_size)

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FifoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self, wait: float = 0.0, max_bytes: int = 1 << 20) -> list[str]:
        """Read what is there (waiting up to `wait` s for something); return all lines."""
        if self.fd is None:
            return self.lines
        if wait > 0:
            select.select([self.fd], [], [], wait)
        got = 0
        while got < max_bytes:
            try:
                data = os.read(self.fd, min(65536, max_bytes - got))
            except BlockingIOError:
                break
            if not data:
                self._end_of_file()
                break
            got += len(data)
            self._had_data = True
            self._partial += data
            *complete, self._partial = self._partial.split(b"\n")
            self.lines.extend(line.decode() for line in complete)
        return self.lines

    def _end_of_file(self) -> None:
        if self._had_data:
            self.eofs += 1
            self._had_data = False
        # No writer (or none yet): follow a recreated FIFO, else idle without spinning.
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(self.path)
            if stat.S_ISFIFO(info.st_mode) and info.st_ino != self._inode:
                self.close()
                self.open()
                return
        time.sleep(0.02)

    def wait_for(
        self, predicate: Callable[[list[str]], bool], *, timeout: float, what: str
    ) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.poll()
            if predicate(lines):
                return lines
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {lines}")
            self.poll(min(left, 0.1))

    def wait_lines(self, count: int, *, timeout: float) -> list[str]:
        return self.wait_for(
            lambda lines: len(lines) >= count, timeout=timeout, what=f"{count} lines"
        )
