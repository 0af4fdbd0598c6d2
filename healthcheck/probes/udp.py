"""UDP_CHECK: send one datagram from a connected UDP socket and judge what comes back.

On a connected UDP socket the kernel reports an ICMP port unreachable for our datagram as
ECONNREFUSED on the next receive (udp(7), IP_RECVERR off): that is the "closed port"
signal. Without `require_reply`/`expect`, silence until the deadline counts as up, as in
keepalived (a reply is not mandatory for UDP services).
"""

from __future__ import annotations

import asyncio
import re
import socket

from healthcheck.config import UdpCheck
from healthcheck.probes.common import (
    Clock,
    ProbeFailure,
    ProbeTarget,
    Up,
    deadline_of,
    endpoint,
    family_of,
    open_socket,
    sockaddr,
    timed,
)
from healthcheck.types import ProbeResult

_MAX_DATAGRAM = 65535


async def _udp(check: UdpCheck, target: ProbeTarget) -> Up:
    address, port = endpoint(check, target)
    if port == 0:
        raise ProbeFailure("no_port")
    deadline = deadline_of(check)
    loop = asyncio.get_running_loop()
    sock = open_socket(check, family_of(address), socket.SOCK_DGRAM)
    try:
        await loop.sock_connect(sock, sockaddr(address, port))
        await loop.sock_sendall(sock, check.payload_bytes())
        try:
            async with asyncio.timeout_at(deadline):
                reply = await loop.sock_recv(sock, _MAX_DATAGRAM)
        except TimeoutError as exc:
            if check.require_reply or check.expect is not None:
                raise ProbeFailure("no_reply") from exc
            return Up()
    finally:
        sock.close()
    if check.expect is not None and re.search(check.expect.encode("utf-8"), reply) is None:
        raise ProbeFailure("reply_mismatch")
    return Up()


async def probe_udp(
    check: UdpCheck, target: ProbeTarget, *, clock: Clock | None = None
) -> ProbeResult:
    """Send the payload, await a reply or an ICMP error; never raises but CancelledError."""
    return await timed(lambda: _udp(check, target), clock)
