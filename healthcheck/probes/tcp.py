"""TCP_CHECK: the server is up when a TCP handshake to it completes."""

from __future__ import annotations

from healthcheck.config import TcpCheck
from healthcheck.probes.common import (
    Clock,
    ProbeTarget,
    Up,
    deadline_of,
    endpoint,
    set_linger_zero,
    tcp_connect,
    timed,
)
from healthcheck.types import ProbeResult


async def _tcp(check: TcpCheck, target: ProbeTarget) -> Up:
    sock = await tcp_connect(check, endpoint(check, target), deadline_of(check))
    # The handshake is the whole exchange: close by RST so no TIME_WAIT stays behind.
    set_linger_zero(sock)
    sock.close()
    return Up()


async def probe_tcp(
    check: TcpCheck, target: ProbeTarget, *, clock: Clock | None = None
) -> ProbeResult:
    """Connect and close; never raises except asyncio.CancelledError."""
    return await timed(lambda: _tcp(check, target), clock)
