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

import contextlib
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


def setup_logging(log_level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(stderr_is_journal()))
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), handlers=[handler])
    # pyroute2 logs every netlink message at debug level; --log-level debug is
    # for our own events (each dropped packet), not for that. Importing pyroute2
    # resets its logger to NOTSET (pyroute2/config/log.py: setLevel(0)), which
    # would undo a level set before the daemon's first import of it: import it
    # first, so the level set here is the last word.
    with contextlib.suppress(ImportError):
        import pyroute2.config.log  # noqa: F401
    for noisy in ("pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
