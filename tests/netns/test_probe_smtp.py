"""SMTP_CHECK probe against a real SMTP server (aiosmtpd) and broken ones on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from healthcheck.config import SmtpCheck
from healthcheck.probes import ProbeTarget, run_probe
from tests.netns.probe_servers import closed_tcp_port, fresh_loopback


@dataclass
class Recorder:
    """aiosmtpd handler hooks that note what the client said."""

    greetings: list[tuple[str, str]] = field(default_factory=list)
    quit: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_HELO(self, server: Any, session: Any, envelope: Any, hostname: str) -> str:
        self.greetings.append(("HELO", hostname))
        return "250 mx.example.test"

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.greetings.append(("EHLO", hostname))
        return responses

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quit.set()
        return "221 Bye"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[ProbeTarget, Recorder]]:
    addr = fresh_loopback()
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(recorder, hostname="mx.example.test"), str(addr), 0
    )
    try:
        yield ProbeTarget(addr, server.sockets[0].getsockname()[1]), recorder
    finally:
        server.close()
        await server.wait_closed()


async def test_ehlo_by_default(smtp: tuple[ProbeTarget, Recorder]) -> None:
    target, recorder = smtp
    result = await run_probe(SmtpCheck(helo_name="director1.example.test"), target)
    assert (result.ok, result.reason) == (True, "ok")
    assert recorder.greetings == [("EHLO", "director1.example.test")]
    assert recorder.quit.is_set()


async def test_helo_like_keepalived(smtp: tuple[ProbeTarget, Recorder]) -> None:
    target, recorder = smtp
    result = await run_probe(SmtpCheck(helo_name="lb.example.test", use_ehlo=False), target)
    assert result.ok
    assert recorder.greetings == [("HELO", "lb.example.test")]


async def test_default_helo_name_is_the_host_name(smtp: tuple[ProbeTarget, Recorder]) -> None:
    target, recorder = smtp
    assert (await run_probe(SmtpCheck(), target)).ok
    assert recorder.greetings == [("EHLO", socket.gethostname())]


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _run_scripted(script: Script, **check: Any) -> tuple[bool, str]:
    addr = fresh_loopback()
    release = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
            await writer.drain()
            await release.wait()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, str(addr), 0)
    try:
        port = server.sockets[0].getsockname()[1]
        result = await run_probe(SmtpCheck(**check), ProbeTarget(addr, port))
    finally:
        release.set()
        server.close()
        await server.wait_closed()
    return result.ok, result.reason


async def test_multiline_greeting_and_no_221_is_still_up() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"220-mx.example.test first line\r\n220 ready\r\n")
        assert (await r.readline()).startswith(b"EHLO ")
        w.write(b"250-mx.example.test\r\n250 8BITMIME\r\n")
        await r.readline()  # QUIT, left unanswered

    assert await _run_scripted(script, connect_timeout=0.5) == (True, "ok")


async def _greet_554(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"554 no service for you\r\n")


async def _reject_ehlo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"220 ready\r\n")
    await r.readline()
    w.write(b"501 bad name\r\n")


async def _garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"SSH-2.0-OpenSSH_9.2\r\n")


async def _mixed_codes(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"220-a\r\n250 b\r\n")


async def _close_at_once(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.close()


async def _silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    pass


async def _endless(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"220 " + b"x" * 5000 + b"\r\n")


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (_greet_554, "smtp_greeting_554"),
        (_reject_ehlo, "smtp_ehlo_501"),
        (_garbage, "smtp_bad_reply"),
        (_mixed_codes, "smtp_bad_reply"),
        (_close_at_once, "closed_early"),
        (_silent, "timeout"),
        (_endless, "smtp_line_too_long"),
    ],
)
async def test_broken_servers(script: Script, reason: str) -> None:
    assert await _run_scripted(script, connect_timeout=0.3) == (False, reason)


async def test_refused() -> None:
    addr = fresh_loopback()
    result = await run_probe(SmtpCheck(), ProbeTarget(addr, closed_tcp_port(addr)))
    assert (result.ok, result.reason) == (False, "refused")
