"""The director-pair lab's traffic programs stay bounded whatever the other side does.

tests/kernel/lab_traffic.py runs as the lab's real servers and client (kernel tier). Here,
in a namespace on the host (no IPVS needed), each meets the bad peer the lab can produce:

- a client that sends and never reads: the server closes it once its output backlog
  passes the bound, keeps its own memory bounded, and serves everyone else meanwhile;
- a client that sends an endless line: closed;
- a server that accepts and then stalls (SIGSTOP): the client declares the long
  connection lost after its timeout and fails the short ones after theirs, and still
  answers its commands;
- the lab going away (stdin closed) or forgetting the process: it exits by itself.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns.netns_util import Lab, Netns, in_netns, require_root, wait_until

TRAFFIC = Path(__file__).resolve().parents[1] / "kernel" / "lab_traffic.py"
ADDR = "192.0.2.1"
PORT = 8080


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root()
    with Lab("lt") as lab:
        yield lab


def start_server(lab: Lab, ns: Netns, lifetime: int = 120) -> subprocess.Popen[bytes]:
    proc = lab.spawn(
        ns,
        [sys.executable, str(TRAFFIC), "server", "--name", "rs9", "--port", str(PORT),
         "--lifetime", str(lifetime)],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def netns_with_address(lab: Lab) -> Netns:
    ns = lab.netns("srv")
    ns.ip("addr", "add", f"{ADDR}/32", "dev", "lo")
    return ns


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connect(ns: Netns) -> socket.socket:
    sock: socket.socket = in_netns(ns.name, lambda: socket.socket())
    sock.settimeout(5)
    sock.connect((ADDR, PORT))
    return sock


def echo(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(100)
        assert chunk, "closed"
        got += chunk
    return got


def test_server_closes_a_client_that_never_reads(lab: Lab) -> None:
    ns = netns_with_address(lab)
    server = start_server(lab, ns)
    good = connect(ns)
    assert echo(good, b"HELLO\n") == b"rs9\n"
    before = rss_kib(server.pid)

    greedy = connect(ns)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.sendall(b"HELLO\n")
    line = b"x" * 1000 + b"\n"
    sent = 0
    deadline = time.monotonic() + 30
    closed = False
    # 16 MB of echo requests, never reading one answer; the server must give up on us.
    while sent < 16 << 20 and time.monotonic() < deadline:
        try:
            greedy.settimeout(1)
            greedy.sendall(line * 64)
            sent += len(line) * 64
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        except TimeoutError:
            # Our send buffer is full because the server stopped reading us: it closed
            # its end (or will: it stops reading once it gives up).
            break
    if not closed:

        def gone() -> bool:
            try:
                greedy.settimeout(0.5)
                while greedy.recv(65536):
                    pass
                return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False

        wait_until(gone, timeout=20, message="the server to close the client that never reads")
    assert echo(good, b"P 1\n") == b"P 1\n"  # the others are still served
    assert rss_kib(server.pid) - before < 16 * 1024, "the server buffered without bound"

    long_line = connect(ns)
    long_line.sendall(b"y" * 8000)  # no newline, ever
    long_line.settimeout(10)
    with contextlib.suppress(ConnectionResetError):
        assert long_line.recv(10) == b""
    server.send_signal(signal.SIGTERM)
    assert server.wait(10) == 0


class Client:
    def __init__(self, lab: Lab, ns: Netns, *args: str) -> None:
        self.proc = lab.spawn(ns, [sys.executable, str(TRAFFIC), "client", *args])
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        assert self.read(30).get("ready")
        self.n = 0

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        assert self.sel.select(timeout), "no answer from the client"
        doc: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return doc

    def call(self, timeout: float = 30, **req: Any) -> dict[str, Any]:
        self.n += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": self.n, **req}) + "\n").encode())
        self.proc.stdin.flush()
        doc = self.read(timeout)
        assert doc["id"] == self.n, doc
        return doc


def test_client_bounds_a_server_that_stalls(lab: Lab) -> None:
    ns = netns_with_address(lab)
    server = start_server(lab, ns)
    client = Client(lab, ns, "--long-timeout", "2", "--new-timeout", "1.5", "--lifetime", "60")
    opened = client.call(cmd="open", service="s", vip=ADDR, port=PORT, count=2, tag="a")["long"]
    assert [c["server"] for c in opened] == ["rs9", "rs9"]
    client.call(cmd="stream", service="s", vip=ADDR, port=PORT, rate=10)
    time.sleep(0.5)
    server.send_signal(signal.SIGSTOP)  # accepts (the kernel's backlog), answers nothing
    try:
        time.sleep(4)
        status = client.call(cmd="status")["long"]  # still answers its commands
        assert [c["state"] for c in status] == ["lost", "lost"], status
        assert {c["reason"] for c in status} == {"timeout"}, status
        report = client.call(timeout=10, cmd="stop")["report"]
    finally:
        server.send_signal(signal.SIGCONT)
    new = report["new"]["s"]
    assert new["ok"] >= 1, new  # before the stall
    assert new["failed"] >= 10 and set(new["reasons"]) == {"timeout"}, new
    assert new["attempted"] <= 10 * 5 + 5, new  # the rate holds: no burst, no unbounded queue
    # The lab going away: closing stdin ends the client.
    assert client.proc.stdin is not None
    client.proc.stdin.close()
    assert client.proc.wait(10) == 0


def test_processes_end_by_themselves(lab: Lab) -> None:
    ns = netns_with_address(lab)
    server = start_server(lab, ns, lifetime=2)
    client = lab.spawn(ns, [sys.executable, str(TRAFFIC), "client", "--lifetime", "2"])
    # SIGALRM after --lifetime: exit status 3, whatever they were doing.
    assert server.wait(15) == 3
    assert client.wait(15) == 3
