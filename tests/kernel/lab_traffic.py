"""The director-pair lab's traffic: a real server and a measuring client (stdlib only).

    python lab_traffic.py server --name rs1 [--port 80] [--lifetime S]
    python lab_traffic.py client [--lifetime S]        (commands on stdin, JSON lines out)

Both run as their own processes inside network namespaces of the lab (tests/kernel/lab.py)
and are killed by pid; each also ends by itself after --lifetime seconds (SIGALRM), so
nothing outlives a run that lost track of it.

The server speaks two protocols on one port, chosen by the first line a client sends:

- `HELLO` -> it answers its own name (which real server the connection reached), then
  echoes every line: the long-lived connections.
- `GET ...` -> an HTTP/1.0 answer (200, its name as the body) and close: the short
  connections, and what the directors' HTTP health checks ask.

Bounded whatever a client does: lines are at most MAX_LINE bytes, a client that does not
read its echoes is closed once MAX_OUTBUF bytes wait for it, at most MAX_CONNS connections
are served (more are closed at once), and a connection idle for IDLE_TIMEOUT seconds is
closed.

The client keeps long-lived connections that exchange one small message every
`interval` seconds (default 10 ms) and a stream of new short HTTP connections at a fixed
rate, and measures what an operator's users would see: for each long connection the
longest time between two answered messages (the client-visible outage) and whether it
was lost (reset, closed, wrong echo, or no answer within `long_timeout`); for the short
ones how many failed (refused, reset, timed out after `new_timeout`, wrong answer) and
their latency. Commands (one JSON object a line, each answered by one line with the same
"id"):

    {"id": 1, "cmd": "open", "service": "dr", "vip": "203.0.113.100", "port": 80,
     "count": 6, "tag": "a"}                   -> once all are greeted (or failed)
    {"id": 2, "cmd": "stream", "service": "dr", "vip": ..., "port": 80, "rate": 5}
    {"id": 3, "cmd": "status"}                 -> every long connection's state now
    {"id": 4, "cmd": "stop"}                   -> streams stopped, in-flight short
                                                  connections finished, long ones closed,
                                                  the report
    {"id": 5, "cmd": "exit"}

Every count is bounded (MAX_LONG long connections, MAX_INFLIGHT short ones in flight;
beyond that a due short connection is counted as skipped, not queued).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 1024
MAX_OUTBUF = 64 * 1024
MAX_CONNS = 1024
IDLE_TIMEOUT = 600.0
MAX_LONG = 256
MAX_INFLIGHT = 256
MAX_EVENTS = 200  # failure / gap records kept per kind, so a report stays bounded
SWEEP = 0.05  # seconds between timeout sweeps
GAP_RECORD = 0.2  # seconds: gaps at least this long are listed in the report
DEFAULT_LIFETIME = 4 * 3600.0


def _bounded_life(seconds: float) -> None:
    signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
    signal.alarm(max(1, int(seconds)))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


# ---- server ------------------------------------------------------------------------------


@dataclass(eq=False)
class _ServerConn:
    sock: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    mode: str = ""  # "", "echo", "http"
    closing: bool = False  # close once outbuf is flushed
    last_input: float = 0.0


def serve(name: str, port: int) -> int:
    sel = selectors.DefaultSelector()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(512)
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    conns: dict[socket.socket, _ServerConn] = {}
    greeting = f"{name}\n".encode()
    body = f"{name}\n".encode()
    response = (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    print("ready", flush=True)

    def close(conn: _ServerConn) -> None:
        conns.pop(conn.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(conn.sock)
        conn.sock.close()

    def want(conn: _ServerConn) -> None:
        events = selectors.EVENT_READ if not conn.closing else 0
        if conn.outbuf:
            events |= selectors.EVENT_WRITE
        if not events:
            close(conn)
            return
        sel.modify(conn.sock, events, conn)

    def flush(conn: _ServerConn) -> None:
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except BlockingIOError:
                sent = 0
            except OSError:
                close(conn)
                return
            del conn.outbuf[:sent]
        if len(conn.outbuf) > MAX_OUTBUF:
            close(conn)  # a client that does not read: never buffer without bound
            return
        if conn.closing and not conn.outbuf:
            close(conn)
            return
        want(conn)

    def on_input(conn: _ServerConn, now: float) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            close(conn)
            return
        if not data:
            close(conn)
            return
        conn.last_input = now
        conn.inbuf += data
        while True:
            nl = conn.inbuf.find(b"\n")
            if nl < 0:
                if len(conn.inbuf) > MAX_LINE:
                    close(conn)
                    return
                break
            line = bytes(conn.inbuf[: nl + 1])
            del conn.inbuf[: nl + 1]
            if conn.mode == "echo":
                conn.outbuf += line
            elif conn.mode == "http":
                if line in (b"\r\n", b"\n"):
                    conn.outbuf += response
                    conn.closing = True
                    conn.inbuf.clear()
                    break
            elif line.startswith(b"HELLO"):
                conn.mode = "echo"
                conn.outbuf += greeting
            elif line.startswith((b"GET ", b"HEAD ")):
                conn.mode = "http"
            else:
                close(conn)
                return
        if conn.sock in conns:
            flush(conn)

    next_sweep = time.monotonic() + 1.0
    while True:
        for key, events in sel.select(1.0):
            now = time.monotonic()
            if key.data is None:
                for _ in range(64):
                    try:
                        sock, _addr = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if len(conns) >= MAX_CONNS:
                        sock.close()
                        continue
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn = _ServerConn(sock, last_input=now)
                    conns[sock] = conn
                    sel.register(sock, selectors.EVENT_READ, conn)
                continue
            conn = key.data
            if conn.sock not in conns:
                continue
            if events & selectors.EVENT_READ:
                on_input(conn, now)
            if conn.sock in conns and events & selectors.EVENT_WRITE:
                flush(conn)
        now = time.monotonic()
        if now >= next_sweep:
            next_sweep = now + 1.0
            for conn in [c for c in conns.values() if now - c.last_input > IDLE_TIMEOUT]:
                close(conn)


# ---- client ------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


@dataclass(eq=False)
class _Long:
    id: int
    service: str
    tag: str
    sock: socket.socket
    opened: float
    state: str = "connecting"  # connecting, greeting, idle, waiting, lost, closed
    server: str = ""
    port: int = 0  # the client's local port: how the directors' tables name it
    inbuf: bytearray = field(default_factory=bytearray)
    seq: int = 0
    expect: bytes = b""
    sent_at: float = 0.0
    next_send: float = 0.0
    last_ok: float = 0.0
    exchanges: int = 0
    max_gap: float = 0.0
    max_gap_end: float = 0.0
    gaps: list[tuple[float, float]] = field(default_factory=list)
    lost_at: float | None = None
    reason: str = ""

    def summary(self, now: float) -> dict[str, Any]:
        open_gap = now - self.last_ok if self.state in ("idle", "waiting") and self.last_ok else 0
        return {
            "id": self.id,
            "service": self.service,
            "tag": self.tag,
            "server": self.server,
            "port": self.port,
            "state": self.state,
            "reason": self.reason,
            "opened": self.opened,
            "last_ok": self.last_ok,
            "lost_at": self.lost_at,
            "exchanges": self.exchanges,
            "max_gap": max(self.max_gap, open_gap),
            "max_gap_end": self.max_gap_end,
            "open_gap": open_gap,
            "gaps": self.gaps,
        }


@dataclass(eq=False)
class _Short:
    service: str
    sock: socket.socket
    started: float
    request: bytes
    sent: bool = False
    inbuf: bytearray = field(default_factory=bytearray)


@dataclass
class _ServiceStats:
    attempted: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)
    max_latency: float = 0.0
    slow: int = 0  # answered, but after more than 1 s (a SYN or request retransmitted)
    servers: dict[str, int] = field(default_factory=dict)

    def fail(self, now: float, reason: str) -> None:
        self.failed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.failures) < MAX_EVENTS:
            self.failures.append((now, reason))


@dataclass
class _Stream:
    service: str
    address: tuple[str, int]
    rate: float
    next_at: float


class Client:
    def __init__(self, interval: float, new_timeout: float, long_timeout: float) -> None:
        self.interval = interval
        self.new_timeout = new_timeout
        self.long_timeout = long_timeout
        self.sel = selectors.DefaultSelector()
        self.longs: list[_Long] = []
        self.shorts: dict[socket.socket, _Short] = {}
        self.streams: dict[str, _Stream] = {}
        self.stats: dict[str, _ServiceStats] = {}
        self.next_id = 1
        self.pending_open: list[tuple[Any, list[_Long]]] = []
        self.stopping: Any = None  # the stop request, while in-flight short ones finish
        self.stdin_buf = bytearray()
        self.done = False

    # ---- commands ----

    def reply(self, request_id: Any, **payload: Any) -> None:
        sys.stdout.write(json.dumps({"id": request_id, **payload}) + "\n")
        sys.stdout.flush()

    def command(self, line: bytes, now: float) -> None:
        try:
            req = json.loads(line)
            cmd = req["cmd"]
        except (ValueError, KeyError, TypeError):
            self.reply(None, error=f"bad command {line[:80]!r}")
            return
        rid = req.get("id")
        if cmd == "open":
            count = int(req["count"])
            if count < 1 or len(self.longs) + count > MAX_LONG:
                self.reply(rid, error=f"count {count} out of bounds (max {MAX_LONG} in all)")
                return
            opened = [
                self.open_long(req["service"], req.get("tag", ""), (req["vip"], req["port"]), now)
                for _ in range(count)
            ]
            self.pending_open.append((rid, opened))
        elif cmd == "stream":
            service = req["service"]
            rate = float(req["rate"])
            if not 0 <= rate <= 1000:
                self.reply(rid, error=f"rate {rate} out of bounds (0-1000/s)")
                return
            self.stats.setdefault(service, _ServiceStats())
            if rate == 0:
                self.streams.pop(service, None)
            else:
                self.streams[service] = _Stream(service, (req["vip"], req["port"]), rate, now)
            self.reply(rid, ok=True, t=now)
        elif cmd == "status":
            self.reply(
                rid, t=now, long=[c.summary(now) for c in self.longs], inflight=len(self.shorts)
            )
        elif cmd == "stop":
            self.streams.clear()
            self.stopping = rid
        elif cmd == "exit":
            self.done = True
        else:
            self.reply(rid, error=f"unknown command {cmd!r}")

    def finish_stop(self, now: float) -> None:
        report = {
            "t": now,
            "long": [c.summary(now) for c in self.longs],
            "new": {
                name: {
                    "attempted": s.attempted,
                    "ok": s.ok,
                    "failed": s.failed,
                    "skipped": s.skipped,
                    "reasons": s.reasons,
                    "failures": s.failures,
                    "max_latency": s.max_latency,
                    "slow": s.slow,
                    "servers": s.servers,
                }
                for name, s in self.stats.items()
            },
        }
        for conn in self.longs:
            self.drop(conn.sock)
        self.longs.clear()
        self.stats.clear()
        rid, self.stopping = self.stopping, None
        self.reply(rid, report=report)

    # ---- long connections ----

    def open_long(self, service: str, tag: str, address: tuple[str, int], now: float) -> _Long:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Long(self.next_id, service, tag, sock, now)
        self.next_id += 1
        self.longs.append(conn)
        try:
            sock.connect(address)
        except BlockingIOError:
            pass
        except OSError as exc:
            self.lose(conn, now, _reason(exc))
            return conn
        self.sel.register(sock, selectors.EVENT_WRITE, conn)
        return conn

    def lose(self, conn: _Long, now: float, reason: str) -> None:
        if conn.state in ("lost", "closed"):
            return
        conn.state = "lost"
        conn.reason = reason
        conn.lost_at = now
        self.drop(conn.sock)

    def drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)
        sock.close()

    def send_line(self, conn: _Long, line: bytes, now: float) -> None:
        try:
            sent = conn.sock.send(line)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.lose(conn, now, _reason(exc))
            return
        if sent != len(line):
            # Messages are a few bytes on an idle window: a short send means a stuck peer.
            self.lose(conn, now, "send_blocked")
            return
        conn.expect = line
        conn.sent_at = now
        conn.state = "waiting"

    def on_long(self, conn: _Long, events: int, now: float) -> None:
        if conn.state == "connecting":
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.lose(conn, now, errno.errorcode.get(err, str(err)))
                return
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            conn.port = conn.sock.getsockname()[1]
            self.send_line(conn, b"HELLO\n", now)
            if conn.state == "waiting":
                conn.state = "greeting"
            return
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self.lose(conn, now, _reason(exc))
            return
        if not data:
            self.lose(conn, now, "closed_by_peer")
            return
        conn.inbuf += data
        if len(conn.inbuf) > MAX_LINE:
            self.lose(conn, now, "garbage")
            return
        nl = conn.inbuf.find(b"\n")
        if nl < 0:
            return
        line = bytes(conn.inbuf[: nl + 1])
        del conn.inbuf[: nl + 1]
        if conn.state == "greeting":
            conn.server = line.decode(errors="replace").strip()
            conn.state = "idle"
            conn.last_ok = now
            conn.next_send = now
            return
        if conn.state != "waiting" or line != conn.expect:
            self.lose(conn, now, "wrong_echo")
            return
        gap = now - conn.last_ok
        if gap > conn.max_gap:
            conn.max_gap, conn.max_gap_end = gap, now
        if gap >= GAP_RECORD and len(conn.gaps) < MAX_EVENTS:
            conn.gaps.append((conn.last_ok, now))
        conn.last_ok = now
        conn.exchanges += 1
        conn.state = "idle"
        conn.next_send = max(conn.sent_at + self.interval, now)

    # ---- short connections ----

    def start_short(self, stream: _Stream, now: float) -> None:
        stats = self.stats.setdefault(stream.service, _ServiceStats())
        stats.attempted += 1
        if len(self.shorts) >= MAX_INFLIGHT:
            stats.skipped += 1
            stats.attempted -= 1
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(stream.address)
        except BlockingIOError:
            pass
        except OSError as exc:
            sock.close()
            stats.fail(now, _reason(exc))
            return
        host = stream.address[0]
        request = f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
        short = _Short(stream.service, sock, now, request)
        self.shorts[sock] = short
        self.sel.register(sock, selectors.EVENT_WRITE, short)

    def end_short(self, short: _Short, now: float, reason: str | None) -> None:
        self.shorts.pop(short.sock, None)
        self.drop(short.sock)
        stats = self.stats[short.service]
        if reason is not None:
            stats.fail(now, reason)
            return
        latency = now - short.started
        stats.ok += 1
        stats.max_latency = max(stats.max_latency, latency)
        if latency > 1.0:
            stats.slow += 1
        server = bytes(short.inbuf).rsplit(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
        stats.servers[server] = stats.servers.get(server, 0) + 1

    def on_short(self, short: _Short, events: int, now: float) -> None:
        if not short.sent:
            err = short.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.end_short(short, now, errno.errorcode.get(err, str(err)))
                return
            try:
                short.sock.send(short.request)
            except OSError as exc:
                self.end_short(short, now, _reason(exc))
                return
            short.sent = True
            self.sel.modify(short.sock, selectors.EVENT_READ, short)
            return
        try:
            data = short.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self.end_short(short, now, _reason(exc))
            return
        if data:
            short.inbuf += data
            if len(short.inbuf) > 4096:
                self.end_short(short, now, "garbage")
            return
        ok = bytes(short.inbuf).startswith(b"HTTP/1.0 200 ")
        self.end_short(short, now, None if ok else "bad_answer")

    # ---- the loop ----

    def on_stdin(self, now: float) -> None:
        try:
            data = os.read(sys.stdin.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:
            self.done = True  # the lab went away: so do we
            return
        self.stdin_buf += data
        if len(self.stdin_buf) > 1 << 20:
            self.done = True
            return
        while (nl := self.stdin_buf.find(b"\n")) >= 0:
            line = bytes(self.stdin_buf[:nl])
            del self.stdin_buf[: nl + 1]
            if line.strip():
                self.command(line, now)

    def tick(self, now: float) -> float:
        """Send what is due, start due short connections; the next instant anything is due."""
        wake = now + 0.05
        for conn in self.longs:
            if conn.state == "idle":
                if conn.next_send <= now:
                    conn.seq += 1
                    self.send_line(conn, f"P {conn.id} {conn.seq}\n".encode(), now)
                else:
                    wake = min(wake, conn.next_send)
        for stream in self.streams.values():
            period = 1.0 / stream.rate
            budget = 100  # a long stall of this loop must not turn into a burst
            while stream.next_at <= now and budget:
                self.start_short(stream, now)
                stream.next_at += period
                budget -= 1
            if stream.next_at <= now:
                stream.next_at = now + period
            wake = min(wake, stream.next_at)
        return wake

    def sweep(self, now: float) -> None:
        """Timeouts, finished opens, a pending stop: every SWEEP seconds is often enough."""
        for conn in self.longs:
            if conn.state in ("waiting", "greeting", "connecting"):
                since = conn.opened if conn.state == "connecting" else conn.sent_at
                if now - since > self.long_timeout:
                    self.lose(conn, now, "timeout")
        for short in [s for s in self.shorts.values() if now - s.started > self.new_timeout]:
            self.end_short(short, now, "timeout")
        for rid, opened in list(self.pending_open):
            if all(c.state not in ("connecting", "greeting") for c in opened):
                self.pending_open.remove((rid, opened))
                self.reply(rid, t=now, long=[c.summary(now) for c in opened])
        if self.stopping is not None and not self.shorts and not self.pending_open:
            self.finish_stop(now)

    def run(self) -> int:
        os.set_blocking(sys.stdin.fileno(), False)
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        print(json.dumps({"id": None, "ready": True}), flush=True)
        wake = next_sweep = time.monotonic()
        while not self.done:
            timeout = max(0.0, min(wake, next_sweep) - time.monotonic())
            for key, events in self.sel.select(timeout):
                now = time.monotonic()
                if key.data == "stdin":
                    self.on_stdin(now)
                elif isinstance(key.data, _Long):
                    if key.data.state not in ("lost", "closed"):
                        self.on_long(key.data, events, now)
                elif isinstance(key.data, _Short) and key.data.sock in self.shorts:
                    self.on_short(key.data, events, now)
            now = time.monotonic()
            wake = self.tick(now)
            if now >= next_sweep:
                self.sweep(now)
                next_sweep = now + SWEEP
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="role", required=True)
    server = sub.add_parser("server")
    server.add_argument("--name", required=True)
    server.add_argument("--port", type=int, default=80)
    server.add_argument("--lifetime", type=float, default=DEFAULT_LIFETIME)
    client = sub.add_parser("client")
    client.add_argument("--interval", type=float, default=0.01)
    client.add_argument("--new-timeout", type=float, default=10.0)
    client.add_argument("--long-timeout", type=float, default=60.0)
    client.add_argument("--lifetime", type=float, default=DEFAULT_LIFETIME)
    args = ap.parse_args(argv)
    _bounded_life(args.lifetime)
    if args.role == "server":
        return serve(args.name, args.port)
    return Client(args.interval, args.new_timeout, args.long_timeout).run()


if __name__ == "__main__":
    sys.exit(main())
