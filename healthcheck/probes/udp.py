"""UDP_CHECK: send one datagram from a connected UDP socket and judge what comes back.

On a connected UDP socket the kernel reports an ICMP port unreachable for our datagram as
ECONNREFUSED on the next receive (udp(7), IP_RECVERR off): that is the "closed port"
signal. Without `require_reply`/`expect`/`reply_hex`/`min_reply_length`, silence until the
deadline counts as up, as in keepalived (a reply is not mandatory for UDP services). A reply
is then judged as keepalived does: its length within min/max_reply_length, its first bytes
matching `reply_hex` (up to the shorter of the two), and here also `expect`.
"""

from __future__ import annotations

import re

from healthcheck.config import UdpCheck
from healthcheck.probes.common import (
    Clock,
    ProbeFailure,
    ProbeTarget,
    Up,
    deadline_of,
    endpoint,
    timed,
    udp_exchange,
)
from healthcheck.types import ProbeResult


async def _udp(check: UdpCheck, target: ProbeTarget) -> Up:
    reply = await udp_exchange(
        check, endpoint(check, target), check.payload_bytes(), deadline_of(check)
    )
    if reply is None:
        if check.needs_reply:
            raise ProbeFailure("no_reply")
        return Up()
    if len(reply) < check.min_reply_length:
        raise ProbeFailure("reply_too_short")
    if check.max_reply_length is not None and len(reply) > check.max_reply_length:
        raise ProbeFailure("reply_too_long")
    if not check.reply_matches(reply):
        raise ProbeFailure("reply_mismatch")
    if check.expect is not None and re.search(check.expect.encode("utf-8"), reply) is None:
        raise ProbeFailure("reply_mismatch")
    return Up()


async def probe_udp(
    check: UdpCheck, target: ProbeTarget, *, clock: Clock | None = None
) -> ProbeResult:
    """Send the payload, await a reply or an ICMP error; never raises but CancelledError."""
    return await timed(lambda: _udp(check, target), clock)
