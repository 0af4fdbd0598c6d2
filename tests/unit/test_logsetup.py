"""Log lines on a terminal and in the journal: timestamps, sd-daemon priority prefixes."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import pytest

from hacontrol.logsetup import (
    JournalFormatter,
    is_journal_stream,
    make_formatter,
    stderr_is_journal,
    syslog_priority,
)


def _record(level: int, message: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("hacontrol.daemon", level, __file__, 1, message, None, exc_info)
    record.created = 1_800_000_000.25  # a fixed instant: the plain format must show it
    record.msecs = 250.0
    return record


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.CRITICAL, "<2>"),
        (logging.ERROR, "<3>"),
        (logging.WARNING, "<4>"),
        (logging.INFO, "<6>"),
        (logging.DEBUG, "<7>"),
    ],
)
def test_journal_line_has_the_priority_prefix_and_no_timestamp(level: int, prefix: str) -> None:
    line = make_formatter(journal=True).format(_record(level, "vrrp.state vrid=51"))
    name = logging.getLevelName(level)
    assert line == f"{prefix}{name} hacontrol.daemon vrrp.state vrid=51"


def test_plain_line_keeps_its_timestamp_and_has_no_prefix() -> None:
    line = make_formatter(journal=False).format(_record(logging.ERROR, "vrrp.state vrid=51"))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_800_000_000))
    assert line == f"{stamp},250 ERROR hacontrol.daemon vrrp.state vrid=51"
    assert not line.startswith("<")


def test_every_line_of_a_traceback_keeps_the_records_priority() -> None:
    # journald reads each line of a stream as its own entry: an unprefixed traceback line
    # would be logged at the default priority (info) and vanish from `journalctl -p err`.
    text = JournalFormatter().format(_record(logging.ERROR, "daemon.crash", exc=True))
    lines = text.split("\n")
    assert len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: boom"


def test_custom_levels_round_down() -> None:
    assert syslog_priority(logging.INFO + 5) == 6
    assert syslog_priority(logging.DEBUG - 5) == 7
    assert syslog_priority(logging.CRITICAL + 10) == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("64769:1234", True),
        ("64769:1235", False),  # another inode: stderr was redirected by a parent
        ("64768:1234", False),
        ("", False),
        (None, False),
        ("64769", False),
        ("x:1234", False),
        ("64769:1234:5", False),
    ],
)
def test_journal_stream_must_name_stderrs_device_and_inode(
    value: str | None, expected: bool
) -> None:
    assert is_journal_stream(value, 64769, 1234) is expected


def test_stderr_is_journal_compares_with_the_fds_fstat(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as f:
        st = os.fstat(f.fileno())
        match = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        other = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}
        assert stderr_is_journal(match, f.fileno())
        assert not stderr_is_journal(other, f.fileno())
        assert not stderr_is_journal({}, f.fileno())
