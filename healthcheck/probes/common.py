"""What every probe shares: the target, socket set-up (bind, SO_MARK), socket I/O bounded by a
deadline (TCP connect, send, receive), abortive close, and the boundary that turns any failure
into a down ProbeResult."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import socket
import ssl
import struct
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

from healthcheck.config import NetworkCheck
from healthcheck.types import ProbeResult

log = logging.getLogger("healthcheck.probes")

Clock = Callable[[], float]
Address = IPv4Address | IPv6Address

# struct linger {l_onoff = 1, l_linger = 0} (socket(7)): close() then resets the connection.
_LINGER_ZERO = struct.pack("ii", 1, 0)
_MAX_DATAGRAM = 65535


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """The real server a check is attached to; a check's connect_ip/connect_port win.

    `port` 0 means the real server has no port (keepalived allows `real_server IP` alone);
    a port-based check then needs `connect_port`.
    """

    address: IPv4Address | IPv6Address
    port: int
    # str(address), which connect() takes: made once here rather than on every attempt
    # (ipaddress formats in Python: ~4% of an HTTP check's CPU when made each time).
    host: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", str(self.address))


class Endpoint(NamedTuple):
    """Where a check connects: the target's address and port unless overridden."""

    address: Address
    port: int
    host: str  # str(address)


class ProbeFailure(Exception):
    """Ends a probe as down with `reason`; raised inside probes, caught by `timed`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Up:
    """A probe's success; `weight` as in ProbeResult (None: keep the configured weight)."""

    weight: int | None = None


def endpoint(check: NetworkCheck, target: ProbeTarget) -> Endpoint:
    port = check.connect_port if check.connect_port is not None else target.port
    if check.connect_ip is not None:
        return Endpoint(check.connect_ip, port, str(check.connect_ip))
    return Endpoint(target.address, port, target.host)


def family_of(address: Address) -> socket.AddressFamily:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def reason_for_oserror(exc: OSError) -> str:
    """A stable reason token for a socket error."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if exc.errno == errno.EHOSTUNREACH:
        return "host_unreachable"
    if exc.errno == errno.ENETUNREACH:
        return "network_unreachable"
    if exc.errno is not None and exc.errno in errno.errorcode:
        return "error_" + errno.errorcode[exc.errno].lower()
    return "os_error"


def open_socket(
    check: NetworkCheck,
    family: socket.AddressFamily,
    kind: socket.SocketKind,
    proto: int = 0,
    *,
    bind_port: bool = True,
) -> socket.socket:
    """A non-blocking socket with the check's SO_MARK and source address applied."""
    # SOCK_NONBLOCK (socket(2)) saves the fcntl() calls of setblocking(False) on every probe.
    sock = socket.socket(family, kind | socket.SOCK_NONBLOCK, proto)
    try:
        if check.fwmark is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, check.fwmark)
            except PermissionError as exc:
                # SO_MARK needs CAP_NET_ADMIN (socket(7)); without it the check would bypass
                # the policy route it exists to test, so it must not silently go unmarked.
                raise ProbeFailure("fwmark_not_permitted") from exc
        port = check.bind_port if bind_port and check.bind_port is not None else 0
        if check.bind_ip is not None or port:
            if port:
                # A fixed source port is reused every delay_loop; without SO_REUSEADDR a
                # lingering TIME_WAIT of a previous probe would make bind() fail.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            host = "" if check.bind_ip is None else str(check.bind_ip)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise ProbeFailure("bind_failed_" + reason_for_oserror(exc)) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def deadline_of(check: NetworkCheck) -> float:
    """The loop time by which the whole probe must end (connect_timeout bounds all of it)."""
    return asyncio.get_running_loop().time() + check.connect_timeout


class _ProbePoller:
    """The readiness of probe sockets, on an epoll set of our own that the loop watches as
    one reader, and their deadlines.

    Why not loop.add_reader/add_writer per wait: measured at 5,000 HTTP checks/s, they and
    their removal were ~17% of the checker's CPU (a Handle, a SelectorKey, a KeyError on
    every new fd, and an epoll_ctl to add and another to delete, per wait). Here a wait is
    one epoll_ctl, armed EPOLLONESHOT: an event disarms it, so nothing is deleted after a
    wake, and the socket's close() takes it out of the set (epoll(7)). A wait that ends
    without its event (deadline, cancellation) deletes its entry at once: left armed, it
    could fire later under the same fd number once that has been reused.

    Why deadlines by a sweep every `sweep_interval` while any wait is pending, rather than a
    loop timer per wait: a TimerHandle, its heap push (compared in Python) and its cancel
    were another ~6%. A wait thus times out up to `sweep_interval` after its deadline:
    nothing against connect_timeouts of a second or more.
    """

    sweep_interval = 0.01

    __slots__ = ("__weakref__", "epoll", "sweeping", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.epoll = select.epoll()
        self.waiters: dict[int, tuple[asyncio.Future[None], float]] = {}
        self.sweeping = False
        try:
            loop.add_reader(self.epoll.fileno(), self._ready)
        except BaseException:
            self.epoll.close()
            raise
        # The loop's selector holds our callback; we hold nothing of the loop (no timer
        # handle either: it would hold the loop). When the loop is gone, so is our epoll fd.
        weakref.finalize(loop, self.epoll.close)

    def watch(
        self, loop: asyncio.AbstractEventLoop, fd: int, events: int, deadline: float
    ) -> asyncio.Future[None]:
        """A future set when `fd` has `events` (or an error), or failed with TimeoutError
        once `deadline` (loop time) has passed."""
        events |= select.EPOLLONESHOT
        try:
            self.epoll.register(fd, events)
        except FileExistsError:
            # A later wait on the same socket: its entry is there, disarmed by the last event.
            self.epoll.modify(fd, events)
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters[fd] = (waiter, deadline)
        if not self.sweeping:
            self.sweeping = True
            loop.call_later(self.sweep_interval, self._sweep)
        return waiter

    def unwatch(self, fd: int, waiter: asyncio.Future[None]) -> None:
        """Drop the entry of a wait that ended without its event."""
        pending = self.waiters.get(fd)
        if pending is not None and pending[0] is waiter:
            del self.waiters[fd]
        with contextlib.suppress(OSError):
            self.epoll.unregister(fd)

    def _ready(self) -> None:
        waiters = self.waiters
        for fd, _events in self.epoll.poll(0):
            pending = waiters.pop(fd, None)
            if pending is not None and not pending[0].done():
                pending[0].set_result(None)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        waiters = self.waiters
        now = loop.time()
        expired = [fd for fd, (_waiter, deadline) in waiters.items() if deadline <= now]
        for fd in expired:
            waiter, _deadline = waiters.pop(fd)
            if not waiter.done():
                waiter.set_exception(TimeoutError())
        if waiters:
            loop.call_later(self.sweep_interval, self._sweep)
        else:
            self.sweeping = False


_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ProbePoller] = (
    weakref.WeakKeyDictionary()
)


async def wait_ready(sock: socket.socket, *, writable: bool, deadline: float) -> None:
    """Wait until `sock` is readable (or writable); TimeoutError once loop time `deadline`
    has passed (within _ProbePoller.sweep_interval).

    On our own epoll set (_ProbePoller), rather than loop.sock_* under asyncio.timeout:
    measured on loopback (CPU per connect+RST close), loop.sock_connect costs ~76 us against
    ~56 us with the loop's add_writer and a timer (it re-resolves the address and wraps its
    callbacks), and asyncio.timeout around it ~15 us more (a Timeout object, task
    cancel/uncancel); the poller saves most of what add_writer and the timer cost.
    """
    loop = asyncio.get_running_loop()
    poller = _pollers.get(loop)
    if poller is None:
        poller = _pollers[loop] = _ProbePoller(loop)
    fd = sock.fileno()
    waiter = poller.watch(loop, fd, select.EPOLLOUT if writable else select.EPOLLIN, deadline)
    try:
        await waiter
    except BaseException:
        poller.unwatch(fd, waiter)
        raise


def _established(sock: socket.socket) -> bool:
    """Whether the handshake has already completed although connect() said EINPROGRESS.

    To a local address (loopback, the director's own addresses) the kernel runs the whole
    handshake inside connect(): both ends' segments are processed before the call returns.
    Waiting a loop iteration for writability then costs for nothing; measured at 5,000 HTTP
    checks/s on loopback, ~25 us of the ~150 us a check cost. getpeername(2) fails with
    ENOTCONN until the connection is established, so over a network, a round trip away, it
    always fails, for one syscall, and the probe waits as before.
    """
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


async def sock_connect(sock: socket.socket, address: tuple[str, int], deadline: float) -> None:
    """Connect the non-blocking `sock`; OSError as connect(2) reports it, TimeoutError at
    `deadline` (the SYN unanswered)."""
    err = sock.connect_ex(address)
    if err in (errno.EINPROGRESS, errno.EINTR):
        # connect(2): EINPROGRESS (and EINTR) mean the handshake goes on; writability then
        # tells it ended, and SO_ERROR how.
        if _established(sock):
            return
        await wait_ready(sock, writable=True, deadline=deadline)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        # OSError(errno, ...) builds the matching subclass (ConnectionRefusedError, ...).
        raise OSError(err, os.strerror(err))


async def sock_sendall(sock: socket.socket, data: bytes, deadline: float) -> None:
    """Send all of `data` on the non-blocking `sock`; TimeoutError at `deadline`."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, InterruptedError):
            sent = 0
        view = view[sent:]
        if view:
            await wait_ready(sock, writable=True, deadline=deadline)


async def sock_recv(
    sock: socket.socket, size: int, deadline: float, *, wait_first: bool = False
) -> bytes:
    """At most `size` bytes from the non-blocking `sock` (b"" at EOF); TimeoutError at
    `deadline`. `wait_first`: wait for readability before the first recv, where the data
    cannot be there yet (a reply to what was just sent), rather than fail a recv first."""
    if wait_first:
        await wait_ready(sock, writable=False, deadline=deadline)
    while True:
        try:
            return sock.recv(size)
        except (BlockingIOError, InterruptedError):
            await wait_ready(sock, writable=False, deadline=deadline)


async def tcp_connect(check: NetworkCheck, where: Endpoint, deadline: float) -> socket.socket:
    """A connected TCP socket; fails with connect_timeout / refused / ... as a ProbeFailure.

    The caller then bounds the rest of the exchange by the same `deadline`, one after the
    other rather than nested, so that a SYN left unanswered ("connect_timeout") is told
    apart from a server that accepted and then hung ("timeout").
    """
    if where.port == 0:
        raise ProbeFailure("no_port")
    sock = open_socket(check, family_of(where.address), socket.SOCK_STREAM)
    try:
        await sock_connect(sock, (where.host, where.port), deadline)
    except TimeoutError as exc:
        sock.close()
        raise ProbeFailure("connect_timeout") from exc
    except BaseException:
        sock.close()
        raise
    return sock


async def udp_exchange(
    check: NetworkCheck, where: Endpoint, payload: bytes, deadline: float
) -> bytes | None:
    """Send `payload` as one datagram and return the first reply, or None at `deadline`.

    Connected: the kernel drops datagrams from any other source, and an ICMP port
    unreachable surfaces as ConnectionRefusedError ("refused"). Not asyncio-dgram: its
    recv() looks for a queued ICMP error only before it starts waiting, so a refusal that
    arrives during the wait would read as no reply after the whole timeout.
    """
    if where.port == 0:
        raise ProbeFailure("no_port")
    loop = asyncio.get_running_loop()
    sock = open_socket(check, family_of(where.address), socket.SOCK_DGRAM)
    try:
        await loop.sock_connect(sock, (where.host, where.port))
        await loop.sock_sendall(sock, payload)
        try:
            async with asyncio.timeout_at(deadline):
                return await loop.sock_recv(sock, _MAX_DATAGRAM)
        except TimeoutError:
            return None
    finally:
        sock.close()


def set_linger_zero(sock: socket.socket | None) -> None:
    """Make the next close() send RST instead of FIN.

    The side that closes first keeps the connection in TIME_WAIT for 60 s (RFC 9293
    §3.6.1); a prober that closes first every few seconds per server piles up thousands of
    them and can exhaust its source ports (fatal with a fixed bind_port). Only used once the
    exchange is complete, so nothing the server still sends is lost.
    """
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)


def close_writer(writer: asyncio.StreamWriter, *, abortive: bool) -> None:
    """Close a stream's transport now; with `abortive`, by RST (see set_linger_zero)."""
    transport = writer.transport
    if abortive:
        set_linger_zero(transport.get_extra_info("socket"))
        transport.abort()
    else:
        # The peer closed first (we saw EOF): our FIN leaves no TIME_WAIT on our side.
        transport.close()


async def timed(body: Callable[[], Awaitable[Up]], clock: Clock | None) -> ProbeResult:
    """Run one probe body, time it, and turn every failure into a down ProbeResult.

    Only asyncio.CancelledError (and BaseExceptions such as KeyboardInterrupt) escape: the
    scheduler must be able to cancel a probe on reload or shutdown.
    """
    now = clock if clock is not None else asyncio.get_running_loop().time
    start = now()
    ok, reason, weight = False, "internal_error", None
    try:
        up = await body()
        ok, reason, weight = True, "ok", up.weight
    except ProbeFailure as exc:
        reason = exc.reason
    except ssl.SSLCertVerificationError as exc:
        log.debug("probe.tls_verify_failed error=%s", exc)
        reason = "tls_verify_failed"
    except ssl.SSLError as exc:
        log.debug("probe.tls_error error=%s", exc)
        reason = "tls_error"
    except TimeoutError:
        reason = "timeout"
    except asyncio.IncompleteReadError:
        reason = "closed_early"
    except asyncio.LimitOverrunError:
        reason = "line_too_long"
    except OSError as exc:
        reason = reason_for_oserror(exc)
    except UnicodeError:
        reason = "decode_error"
    except Exception:
        log.exception("probe.internal_error")
    return ProbeResult(ok=ok, reason=reason, duration=now() - start, weight=weight)
