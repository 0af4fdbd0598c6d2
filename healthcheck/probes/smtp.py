"""SMTP_CHECK: 220 greeting, EHLO/HELO answered 250, QUIT (RFC 5321 §4.1, §4.2, §4.3.2)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket

from healthcheck.config import SmtpCheck
from healthcheck.probes.common import (
    Clock,
    ProbeFailure,
    ProbeTarget,
    Up,
    close_writer,
    deadline_of,
    endpoint,
    tcp_connect,
    timed,
)
from healthcheck.types import ProbeResult

# RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; allow slack for sloppy servers.
_LINE_LIMIT = 2048
_MAX_LINES = 100
# RFC 5321 §4.2: "Reply-code [ SP text ] CRLF", "Reply-code - text CRLF" for all but the last.
_REPLY_RE = re.compile(rb"([2-5][0-9]{2})([ -]?)([^\r\n]*)\r?\n")


async def read_reply(reader: asyncio.StreamReader) -> int:
    """The code of one (possibly multi-line) reply."""
    code: bytes | None = None
    for _ in range(_MAX_LINES):
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raise ProbeFailure("closed_early") from exc
        except asyncio.LimitOverrunError as exc:
            raise ProbeFailure("smtp_line_too_long") from exc
        match = _REPLY_RE.fullmatch(line)
        if match is None or (code is not None and match.group(1) != code):
            raise ProbeFailure("smtp_bad_reply")
        code = match.group(1)
        if match.group(2) != b"-":
            return int(code)
    raise ProbeFailure("smtp_reply_too_long")


async def _greet(
    check: SmtpCheck, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    code = await read_reply(reader)
    if code != 220:
        raise ProbeFailure(f"smtp_greeting_{code}")
    verb = "EHLO" if check.use_ehlo else "HELO"
    name = check.helo_name or socket.gethostname() or "localhost"
    writer.write(f"{verb} {name}\r\n".encode("ascii", "replace"))
    await writer.drain()
    code = await read_reply(reader)
    if code != 250:
        raise ProbeFailure(f"smtp_{verb.lower()}_{code}")


async def _smtp(check: SmtpCheck, target: ProbeTarget) -> Up:
    deadline = deadline_of(check)
    sock = await tcp_connect(check, endpoint(check, target), deadline)
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await asyncio.open_connection(sock=sock, limit=_LINE_LIMIT)
                await _greet(check, reader, writer)
        except TimeoutError as exc:
            raise ProbeFailure("timeout") from exc
        # The server is judged up already: QUIT is politeness (RFC 5321 §4.1.1.10), and a
        # missing 221 is the server's business, not a failure.
        with contextlib.suppress(TimeoutError, ProbeFailure, OSError):
            async with asyncio.timeout_at(deadline):
                writer.write(b"QUIT\r\n")
                await writer.drain()
                await read_reply(reader)
    finally:
        if writer is not None:
            close_writer(writer, abortive=True)
        else:
            sock.close()
    return Up()


async def probe_smtp(
    check: SmtpCheck, target: ProbeTarget, *, clock: Clock | None = None
) -> ProbeResult:
    """Greet the server and quit; never raises except asyncio.CancelledError."""
    return await timed(lambda: _smtp(check, target), clock)
