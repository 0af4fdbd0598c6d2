"""Helpers for the kernel-tier tests that run the whole daemon (`hacontrol run`) in a
namespace of the VM: start it, ask it for its status, read the table with ipvsadm."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.kernel.conftest import Ipvsadm

ROOT = Path(__file__).resolve().parents[2]

SERVER = textwrap.dedent(
    """
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok\\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.HTTPServer((sys.argv[1], 8080), H).serve_forever()
    """
)


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    # Bounded poll: the VM is software-emulated, so allow generous time.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def start_daemon(
    procs: Procs,
    ns: str,
    config: Path,
    log: Path,
    tmp_path: Path,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return procs.start(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "hacontrol",
                "run",
                "-c",
                str(config),
                "--log-level",
                "info",
                "--run-dir",
                str(tmp_path / "run"),
                "--state-dir",
                str(tmp_path / "state"),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )


def status(tmp_path: Path) -> dict[str, Any]:
    """`hacontrol status --json`, asked over the control socket from this process (a path:
    any namespace reaches it; a CLI process per poll would cost tens of seconds of imports
    under emulation). AssertionError while the daemon does not answer yet."""
    from hacontrol.runtime.control import ControlError, call

    try:
        doc: dict[str, Any] = call(tmp_path / "run" / "control", {"command": "status"})
    except ControlError as exc:
        raise AssertionError(f"no status: {exc}") from None
    return doc


def weights(ipvsadm: Ipvsadm, netns: str, service: str) -> dict[str, int]:
    """Real servers and weights of one service, from `ipvsadm -Ln`."""
    out = ipvsadm("-Ln", netns=netns)
    found: dict[str, int] = {}
    current = None
    for line in out.splitlines():
        if not line.startswith("  "):
            parts = line.split()
            current = f"{parts[0]} {parts[1]}" if len(parts) > 1 else None
        elif line.strip().startswith("->") and current == service:
            parts = line.split()
            if parts[1] != "RemoteAddress:Port":
                found[parts[1]] = int(parts[3])
    return found
