"""Probes: each a small async function returning a ProbeResult; none ever raises."""

from __future__ import annotations

from healthcheck.config import (
    CheckConfig,
    DnsCheck,
    FileCheck,
    HttpCheck,
    HttpsCheck,
    IcmpCheck,
    ScriptCheck,
    SmtpCheck,
    TcpCheck,
    UdpCheck,
)
from healthcheck.probes.common import Clock, ProbeTarget, Up, timed
from healthcheck.probes.dns import probe_dns
from healthcheck.probes.file import probe_file
from healthcheck.probes.http import probe_http
from healthcheck.probes.icmp import probe_icmp
from healthcheck.probes.script import REAP_GRACE, probe_script
from healthcheck.probes.smtp import probe_smtp
from healthcheck.probes.tcp import probe_tcp
from healthcheck.probes.udp import probe_udp
from healthcheck.types import ProbeResult

__all__ = ["Clock", "ProbeTarget", "probe_timeout", "run_probe"]

# A file check reads a few bytes of a local file: no timeout of its own.
_FILE_CHECK_BOUND = 1.0


def probe_timeout(check: CheckConfig) -> float:
    """The longest `run_probe(check, ...)` takes, in seconds, before event-loop slack.

    Network checks are bounded by `connect_timeout` (it covers the whole exchange), scripts
    by `timeout` plus the bounded wait for the killed process group.
    """
    if isinstance(check, ScriptCheck):
        return check.timeout + REAP_GRACE
    if isinstance(check, FileCheck):
        return _FILE_CHECK_BOUND
    return check.connect_timeout


async def run_probe(
    check: CheckConfig, target: ProbeTarget, *, clock: Clock | None = None
) -> ProbeResult:
    """Run one attempt of `check` against `target` (the real server).

    Never raises except asyncio.CancelledError; every failure is a down ProbeResult with a
    specific reason. `clock` (default: the running loop's time) measures `duration`.
    """
    match check:
        case TcpCheck():
            return await probe_tcp(check, target, clock=clock)
        case HttpCheck() | HttpsCheck():
            return await probe_http(check, target, clock=clock)
        case ScriptCheck():
            return await probe_script(check, target, clock=clock)
        case UdpCheck():
            return await probe_udp(check, target, clock=clock)
        case DnsCheck():
            return await probe_dns(check, target, clock=clock)
        case SmtpCheck():
            return await probe_smtp(check, target, clock=clock)
        case IcmpCheck():
            return await probe_icmp(check, target, clock=clock)
        case FileCheck():
            return await probe_file(check, target, clock=clock)

    # Unreachable for a validated config; a wrong object still gets a down result, not a raise.
    async def _unknown() -> Up:
        raise TypeError(f"no probe for {type(check).__name__}")

    return await timed(_unknown, clock)
