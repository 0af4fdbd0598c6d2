"""Real servers on loopback for the probe tests: HTTP(S), UDP echo, DNS (dnsmasq), SMTP.

Every server listens on its own 127.x.y.z address and an ephemeral port so that tests (and
other helpers' tests) never collide, and is stopped by the object or pid the test started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import cast

from tests.netns.netns_util import Lab, Netns
from tests.support import missing

_used: set[IPv4Address] = set()


def fresh_loopback() -> IPv4Address:
    """An address in 127.0.0.0/8 not handed out before in this process (all are local on lo)."""
    for _ in range(1000):
        addr = IPv4Address(
            f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        )
        if addr not in _used:
            _used.add(addr)
            return addr
    raise RuntimeError("no fresh loopback address")


# ---------------------------------------------------------------- HTTP / HTTPS


@dataclass
class HttpRequest:
    path: str
    headers: dict[str, str]
    request_line: str


Handler = Callable[[HttpRequest, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def response(status: int, body: bytes, *, extra: str = "") -> bytes:
    return (
        f"HTTP/1.0 {status} X\r\nContent-Type: text/plain\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class HttpServer:
    """An asyncio HTTP server whose answer per path is a test-supplied coroutine."""

    address: IPv4Address
    routes: dict[str, Handler]
    ssl_context: ssl.SSLContext | None = None
    requests: list[HttpRequest] = field(default_factory=list)
    port: int = 0
    hung: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def __aenter__(self) -> HttpServer:
        self._server = await asyncio.start_server(
            self._serve, str(self.address), 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        assert self._server is not None
        self._server.close()
        # Aborting the connections ends handlers blocked on reads (cancelling them instead
        # makes asyncio's streams log the CancelledError).
        for writer in list(self._writers):
            writer.transport.abort()
        async with asyncio.timeout(10):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def hang(self) -> None:
        """Block a handler until the server stops; tells the test it is hanging."""
        self.hung.set()
        await self._release.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            request = HttpRequest(path=path, headers=headers, request_line=lines[0])
            self.requests.append(request)
            handler = self.routes.get(path)
            if handler is None:
                writer.write(response(404, b"not found"))
            else:
                await handler(request, reader, writer)
            if not writer.is_closing():
                await writer.drain()
                writer.close()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()


def abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ---------------------------------------------------------------- UDP


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        assert self.transport is not None
        self.transport.sendto(self.prefix + data, addr)


@contextlib.asynccontextmanager
async def udp_echo_server(
    address: IPv4Address, prefix: bytes = b""
) -> AsyncIterator[tuple[int, _Echo]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Echo(prefix), local_addr=(str(address), 0)
    )
    try:
        yield transport.get_extra_info("sockname")[1], protocol
    finally:
        transport.close()


def closed_udp_port(address: IPv4Address) -> int:
    """A UDP port on `address` with nothing bound (freed right after the kernel chose it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((str(address), 0))
        port: int = s.getsockname()[1]
    return port


def closed_tcp_port(address: IPv4Address) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((str(address), 0))
        port: int = s.getsockname()[1]
    return port


# ---------------------------------------------------------------- dnsmasq


DNSMASQ = "/usr/sbin/dnsmasq"


@contextlib.asynccontextmanager
async def dnsmasq(address: IPv4Address, *records: str) -> AsyncIterator[int]:
    """Debian's dnsmasq answering only from `records` (--address=...), no upstream.

    Yields the port. Ready when it logs "started" (it binds its sockets before that).
    """
    if not os.path.exists(DNSMASQ):
        missing(f"needs {DNSMASQ} (Debian package dnsmasq-base)")
    port = closed_udp_port(address)
    proc = await asyncio.create_subprocess_exec(
        DNSMASQ,
        "--no-daemon",
        "--conf-file=/dev/null",
        f"--port={port}",
        f"--listen-address={address}",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--log-facility=-",
        "--pid-file=",
        *(f"--address={r}" for r in records),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(10):
            while b"started, version" not in (line := await proc.stderr.readline()):
                if not line:
                    raise RuntimeError(f"dnsmasq exited: rc={await proc.wait()}")
        drain = asyncio.create_task(proc.stderr.read())
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        async with asyncio.timeout(10):
            await proc.wait()
        if "drain" in locals():
            await drain


# ---------------------------------------------------------------- unanswered SYN


@contextlib.contextmanager
def full_backlog(address: IPv4Address) -> Iterator[tuple[socket.socket, int]]:
    """A TCP port whose SYNs go unanswered: listen(0) with its accept queue already full.

    Linux drops a SYN when the listener's accept queue is full (sk_acceptq_is_full in
    tcp_conn_request), so a connect() there neither succeeds nor is refused: it times out.
    Yields the listener and its port; accepting from the listener makes room again.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((str(address), 0))
        listener.listen(0)
        listener.settimeout(5)
        port = listener.getsockname()[1]
        filler.settimeout(5)
        filler.connect((str(address), port))
        yield listener, port
    finally:
        filler.close()
        listener.close()


@contextlib.contextmanager
def full_backlog_listener(address: IPv4Address) -> Iterator[int]:
    """The port of a full_backlog() listener."""
    with full_backlog(address) as (_listener, port):
        yield port


# ---------------------------------------------------------------- probes inside a namespace

# Run in a child (inside a namespace, maybe with capabilities dropped): optionally listen on
# TCP, then print run_probe's result as JSON.
PROBE_CHILD = """
import asyncio, json, socket, sys
from ipaddress import ip_address
from pydantic import TypeAdapter
from healthcheck.config import CheckConfig
from healthcheck.probes import ProbeTarget, run_probe

args = json.loads(sys.argv[1])
port = args["port"]
if args.get("listen"):
    listener = socket.socket()
    listener.bind((args["address"], 0))
    listener.listen(8)
    port = listener.getsockname()[1]
check = TypeAdapter(CheckConfig).validate_python(args["check"])
result = asyncio.run(run_probe(check, ProbeTarget(ip_address(args["address"]), port)))
print(json.dumps({"ok": result.ok, "reason": result.reason, "weight": result.weight}))
"""


def probe_in_netns(
    lab: Lab,
    ns: Netns,
    check: dict[str, object],
    address: str,
    port: int = 0,
    *,
    listen: bool = False,
    drop_caps: tuple[str, ...] = (),
) -> dict[str, object]:
    """run_probe in a child process inside `ns`; `drop_caps` are removed from its bounding set
    (so root loses e.g. CAP_NET_RAW as an unprivileged daemon would lack it)."""
    args = json.dumps({"check": check, "address": address, "port": port, "listen": listen})
    prefix = ["setpriv", "--bounding-set=" + ",".join(f"-{c}" for c in drop_caps)]
    argv = [*(prefix if drop_caps else []), sys.executable, "-c", PROBE_CHILD, args]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = lab.spawn(ns, argv, env={"PYTHONPATH": root}, stdin=None, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out)
    return result
