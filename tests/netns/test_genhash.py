"""`hacontrol genhash` against real HTTP and TLS servers, with keepalived's genhash as witness.

The digest it prints is keepalived's genhash output for the same page, and it is the
digest an http / https check accepts; its verbose output has genhash's layout.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from healthcheck.config import HttpCheck, HttpsCheck
from healthcheck.probes import ProbeTarget, run_probe
from tests.netns.probe_servers import (
    HttpRequest,
    HttpServer,
    closed_tcp_port,
    fresh_loopback,
    response,
)

ROOT = Path(__file__).resolve().parents[2]
PAGE = b"<html>hello from a real server</html>\n" * 20


async def page(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(response(200, PAGE + req.headers.get("host", "").encode()))


async def chunked(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


def genhash_tool() -> str:
    path = shutil.which("genhash")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("genhash (Debian's keepalived) is not installed")
        pytest.skip("genhash (Debian's keepalived) is not installed")
    return path


async def run(*argv: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())


def hacontrol(*args: str) -> list[str]:
    return [sys.executable, "-m", "hacontrol", "genhash", *args]


@pytest.fixture
async def web() -> AsyncIterator[HttpServer]:
    async with HttpServer(fresh_loopback(), {"/page": page, "/chunked": chunked}) as server:
        yield server


async def test_digest_is_genhash_s_and_the_checks(web: HttpServer) -> None:
    tool = genhash_tool()
    host = str(web.address)
    port = str(web.port)
    ours = await run(*hacontrol(f"http://{host}:{port}/page"))
    theirs = await run(tool, "-s", host, "-p", port, "-u", "/page")
    assert ours.returncode == 0, ours.stderr
    # keepalived's genhash sends Host without the port too when asked; both with -V:
    with_host = await run(*hacontrol("-s", host, "-p", port, "-u", "/page", "-V", "www.test"))
    theirs_host = await run(tool, "-s", host, "-p", port, "-u", "/page", "-V", "www.test")
    assert with_host.stdout == theirs_host.stdout
    assert with_host.stdout.strip() == hashlib.md5(PAGE + b"www.test").hexdigest()
    # Without -V each sends its own Host (the page echoes it): each digest matches its page.
    assert ours.stdout.strip() == hashlib.md5(PAGE + f"{host}:{port}".encode()).hexdigest()
    assert len(theirs.stdout.strip()) == 32
    check = HttpCheck(path="/page", digest=ours.stdout.strip())
    assert (await run_probe(check, ProbeTarget(web.address, web.port))).ok


async def test_sha256_and_chunked_body(web: HttpServer) -> None:
    url = f"http://{web.address}:{web.port}/chunked"
    md5 = await run(*hacontrol(url, "-P", "1.1"))
    sha = await run(*hacontrol(url, "-P", "1.1", "--sha256"))
    assert md5.stdout == hashlib.md5(b"hello").hexdigest() + "\n"
    assert sha.stdout == hashlib.sha256(b"hello").hexdigest() + "\n"
    assert web.requests[0].request_line == "GET /chunked HTTP/1.1"


async def test_verbose_layout_matches_genhash(web: HttpServer) -> None:
    tool = genhash_tool()
    args = ["-s", str(web.address), "-p", str(web.port), "-u", "/page", "-V", "www.test", "-v"]
    ours = (await run(*hacontrol(*args))).stdout.splitlines()
    theirs = (await run(tool, *args)).stdout.splitlines()

    # The same sections in the same order, and the same body dump and digest lines.
    def sections(lines: list[str]) -> list[str]:
        return [line for line in lines if line.startswith("-----------------------[")]

    assert sections(ours) == sections(theirs)
    body_start = ours.index(sections(ours)[2]) + 1
    their_start = theirs.index(sections(theirs)[2]) + 1
    rows = len(PAGE + b"www.test") // 16 + 1
    assert ours[body_start : body_start + rows] == theirs[their_start : their_start + rows]
    final = sections(ours)[4]
    assert ours[ours.index(final) + 1] == theirs[theirs.index(final) + 1]


async def test_https_with_sni_and_the_https_check(tmp_path: Path) -> None:
    address = fresh_loopback()
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("www.test", str(address)).configure_cert(ctx)
    seen: list[str | None] = []
    ctx.sni_callback = lambda obj, name, c: seen.append(name)  # type: ignore[assignment,func-returns-value]
    async with HttpServer(address, {"/page": page}, ssl_context=ctx) as server:
        url = f"https://{address}:{server.port}/page"
        ours = await run(*hacontrol(url, "-V", "www.test"))
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout.strip() == hashlib.md5(PAGE + b"www.test").hexdigest()
        assert seen == ["www.test"]
        check = HttpsCheck(path="/page", virtualhost="www.test", digest=ours.stdout.strip())
        assert (await run_probe(check, ProbeTarget(address, server.port))).ok


async def test_failure_exits_non_zero() -> None:
    address = fresh_loopback()
    proc = await run(*hacontrol(f"http://{address}:{closed_tcp_port(address)}/"))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("Connection failed")
    bad = await run(*hacontrol("ftp://192.0.2.1/"))
    assert (bad.returncode, bad.stderr.strip()) == (
        1,
        "ftp://192.0.2.1/: only http:// and https:// URLs",
    )
