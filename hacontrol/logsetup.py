"""Logging for the daemon and its VRRP process: one format, pyroute2 kept quiet.

On a terminal or a file each line carries its own timestamp. When stderr is systemd's
journal (the unit's default), journald stamps every line itself and the level should
become the entry's priority: lines then start with an sd-daemon prefix (`<3>` error,
`<4>` warning, `<6>` info, `<7>` debug; sd-daemon(3)) and carry no timestamp of ours.
Whether stderr is the journal is decided as sd_journal_stream_fd(3) documents it:
systemd sets JOURNAL_STREAM=DEV:INODE for the stream it connected, and stderr is that
stream only if its fstat() matches (a child whose stderr was redirected still inherits
the variable).

Standard library only: the VRRP process imports this and must stay small.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s %(message)s"

# syslog(3) priorities, as sd-daemon(3) prefixes expect them.
_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG_PRIORITY = 7


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (custom levels round down to the next one)."""
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return _DEBUG_PRIORITY


class JournalFormatter(logging.Formatter):
    """No timestamp; every line of the record (a traceback too) gets the `<N>` prefix,
    because journald reads each line of a stream as an entry of its own."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def is_journal_stream(journal_stream: str | None, st_dev: int, st_ino: int) -> bool:
    """True if JOURNAL_STREAM names the file whose fstat() gave `st_dev`, `st_ino`."""
    if not journal_stream:
        return False
    dev, sep, ino = journal_stream.partition(":")
    if not sep:
        return False
    try:
        return int(dev) == st_dev and int(ino) == st_ino
    except ValueError:
        return False


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int | None = None) -> bool:
    """Is `fd` (stderr by default) the stream systemd connected to the journal?"""
    environ = os.environ if environ is None else environ
    value = environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        st = os.fstat(sys.stderr.fileno() if fd is None else fd)
    except (OSError, ValueError):  # stderr closed or replaced by something without a fd
        return False
    return is_journal_stream(value, st.st_dev, st.st_ino)


def make_formatter(journal: bool) -> logging.Formatter:
    return JournalFormatter() if journal else logging.Formatter(PLAIN_FORMAT)


class QuietLibraries(logging.Filter):
    """Drops records of the named libraries' loggers below `threshold`.

    A handler's filter, not the loggers' levels: pyroute2 resets its logger to NOTSET when
    it is imported (pyroute2/config/log.py: setLevel(0)), and the VRRP process imports it
    only on first use (routes, rules, VMACs; vrrp/rtnl.py says why), long after logging
    was set up; importing it here to have that reset done first would load all of pyroute2
    into every VRRP process."""

    def __init__(self, names: tuple[str, ...], threshold: int) -> None:
        super().__init__()
        self._prefixes = tuple(f"{name}." for name in names)
        self._names = names
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name in self._names or name.startswith(self._prefixes):
            return record.levelno >= self.threshold
        return True


def setup_logging(log_level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(stderr_is_journal()))
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), handlers=[handler])
    # pyroute2 logs every netlink message at debug level, asyncio its slow callbacks;
    # --log-level debug is for our own events (each dropped packet), not for those.
    threshold = max(logging.INFO, logging.getLogger().level)
    handler.addFilter(QuietLibraries(("pyroute2", "asyncio"), threshold))
    for noisy in ("pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(threshold)
