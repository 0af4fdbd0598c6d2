"""Starting the VRRP process: `python -m hacontrol.runtime.vrrp_process` with one end of
a socketpair.

Only the standard library, and nothing heavy of it: `hacontrol run` calls `launch()` as
its very first step, before it imports the config models or the daemon, so the VRRP
process loads its own modules (about 0.15 s) while the daemon loads and checks the config
(about 0.4 s) instead of after. The process advertises nothing until the daemon, once
IPVS is in place, sends it the instances (vrrp_host.VrrpSupervisor); a launch the daemon
does not take (an invalid config, an LVS-only director, a second daemon refused by the
pid lock) is `discard()`ed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys

MODULE = "hacontrol.runtime.vrrp_process"


class Launched:
    """A VRRP process just started, and the daemon's end of its socket."""

    __slots__ = ("popen", "sock", "taken")

    def __init__(self, popen: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.popen = popen
        self.sock = sock
        self.taken = False  # the supervisor owns it from now on

    @property
    def pid(self) -> int:
        return self.popen.pid

    def discard(self) -> None:
        """Kill it (it has been told nothing, so there is nothing to resign) and reap it."""
        if self.taken:
            return
        self.taken = True
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.popen.wait(5.0)
        self.sock.close()


def launch(log_level: str) -> Launched:
    """Start a VRRP process that will die with this one (it checks `--parent`)."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                MODULE,
                "--fd",
                str(child_end.fileno()),
                "--parent",
                str(os.getpid()),
                "--log-level",
                log_level,
            ],
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        parent_end.close()
        raise
    finally:
        child_end.close()
    return Launched(popen, parent_end)
