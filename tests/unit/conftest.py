"""Fixtures shared by the unit tests of the daemon's side of the VRRP process."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture
def child() -> Iterator[tuple[subprocess.Popen[bytes], socket.socket, int]]:
    """A child holding one end of a socketpair (it reads until EOF), our end as an fd."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"],
        stdin=subprocess.PIPE,
    )
    fd = ours.detach()
    try:
        yield proc, theirs, fd
    finally:
        if proc.returncode is None:
            proc.kill()
        assert proc.stdin is not None
        proc.stdin.close()
        with contextlib.suppress(ChildProcessError):
            proc.wait(10)
        theirs.close()
