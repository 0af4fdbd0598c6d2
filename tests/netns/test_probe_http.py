"""HTTP_GET probe against a real asyncio HTTP server on loopback (and keepalived's genhash)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from healthcheck.config import HttpCheck
from healthcheck.probes import ProbeTarget, run_probe
from healthcheck.probes.common import ProbeFailure
from healthcheck.probes.http import judge_response
from tests.netns.probe_servers import (
    Handler,
    HttpRequest,
    HttpServer,
    abort_with_rst,
    closed_tcp_port,
    fresh_loopback,
    full_backlog_listener,
    response,
)
from tests.netns.test_probe_tcp import TCP_TIME_WAIT, sockets_from
from tests.support import require_tool

BODY = b"<html><body>hacontrol says hello</body></html>\n"
BIG = 2 * 1024 * 1024


async def ok(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(response(200, BODY))


async def error500(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(response(500, b"boom"))


async def wrong(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(response(200, b"<html>maintenance page</html>"))


async def reset(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    abort_with_rst(w)


async def nothing(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.close()


async def garbage(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


async def mid_body(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    await w.drain()
    w.close()


async def mid_head(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.0 200 OK\r\nContent-")
    await w.drain()
    w.close()


async def big_declared(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(response(200, b"a" * BIG))


async def big_to_eof(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.0 200 OK\r\n\r\n")
    for _ in range(BIG // 65536):
        w.write(b"a" * 65536)
        await w.drain()


async def to_eof(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.0 200 OK\r\n\r\n" + BODY)


async def chunked(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    half = len(BODY) // 2
    w.write(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{half:x};ext=1\r\n".encode()
        + BODY[:half]
        + b"\r\n"
        + f"{len(BODY) - half:X}\r\n".encode()
        + BODY[half:]
        + b"\r\n0\r\nX-Trailer: y\r\n\r\n"
    )


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + f"{len(BODY) // 2:x};ext=1\r\n".encode()
    + BODY[: len(BODY) // 2]
    + b"\r\n"
    + f"{len(BODY) - len(BODY) // 2:X}\r\n".encode()
    + BODY[len(BODY) // 2 :]
    + b"\r\n0\r\nX-Trailer: y\r\n\r\n"
)


async def trickle(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    # One byte per segment (asyncio sets TCP_NODELAY), so the probe waits many times.
    for i in range(len(CHUNKED)):
        w.write(CHUNKED[i : i + 1])
        await w.drain()
        await asyncio.sleep(0.001)


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    routes: dict[str, Handler] = {
        "/ok": ok,
        "/500": error500,
        "/wrong": wrong,
        "/reset": reset,
        "/nothing": nothing,
        "/garbage": garbage,
        "/mid-body": mid_body,
        "/mid-head": mid_head,
        "/big": big_declared,
        "/big-eof": big_to_eof,
        "/eof": to_eof,
        "/chunked": chunked,
        "/trickle": trickle,
    }
    srv = HttpServer(fresh_loopback(), routes)
    routes["/hang"] = lambda req, r, w: srv.hang()
    async with srv:
        yield srv


def target(srv: HttpServer) -> ProbeTarget:
    return ProbeTarget(srv.address, srv.port)


async def test_200_is_up_and_request_is_http10_with_host(server: HttpServer) -> None:
    result = await run_probe(HttpCheck(path="/ok"), target(server))
    assert (result.ok, result.reason, result.weight) == (True, "ok", None)
    assert result.duration >= 0
    req = server.requests[-1]
    assert req.request_line == "GET /ok HTTP/1.0"
    assert req.headers["host"] == f"{server.address}:{server.port}"
    assert req.headers["connection"] == "close"


async def test_virtualhost_is_the_host_header(server: HttpServer) -> None:
    result = await run_probe(HttpCheck(path="/ok", virtualhost="www.example.test"), target(server))
    assert result.ok
    assert server.requests[-1].headers["host"] == "www.example.test"


async def test_status_500_is_down_with_its_code(server: HttpServer) -> None:
    result = await run_probe(HttpCheck(path="/500"), target(server))
    assert (result.ok, result.reason) == (False, "status_500")


async def test_status_codes_and_ranges(server: HttpServer) -> None:
    assert (await run_probe(HttpCheck(path="/500", status_codes=(500,)), target(server))).ok
    assert (await run_probe(HttpCheck(path="/500", status_codes=("400-599",)), target(server))).ok
    missing = await run_probe(
        HttpCheck(path="/nope", status_codes=(200, "500-503")), target(server)
    )
    assert missing.reason == "status_404"


async def test_hanging_server_times_out_after_connect(server: HttpServer) -> None:
    result = await run_probe(HttpCheck(path="/hang", connect_timeout=0.3), target(server))
    assert (result.ok, result.reason) == (False, "timeout")
    assert server.hung.is_set()
    assert 0.25 <= result.duration < 2.0


async def test_unanswered_syn_is_connect_timeout() -> None:
    addr = fresh_loopback()
    with full_backlog_listener(addr) as port:
        result = await run_probe(HttpCheck(connect_timeout=0.3), ProbeTarget(addr, port))
    assert (result.ok, result.reason) == (False, "connect_timeout")


async def test_refused() -> None:
    addr = fresh_loopback()
    result = await run_probe(HttpCheck(), ProbeTarget(addr, closed_tcp_port(addr)))
    assert (result.ok, result.reason) == (False, "refused")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/reset", "reset"),
        ("/nothing", "no_response"),
        ("/garbage", "bad_status_line"),
        ("/mid-head", "closed_early"),
    ],
)
async def test_broken_responses(server: HttpServer, path: str, reason: str) -> None:
    result = await run_probe(HttpCheck(path=path), target(server))
    assert (result.ok, result.reason) == (False, reason)


async def test_close_mid_body_fails_only_when_the_body_is_needed(server: HttpServer) -> None:
    assert (await run_probe(HttpCheck(path="/mid-body"), target(server))).ok
    needed = await run_probe(HttpCheck(path="/mid-body", regex="x"), target(server))
    assert (needed.ok, needed.reason) == (False, "closed_early")


async def test_regex_and_regex_no_match(server: HttpServer) -> None:
    assert (await run_probe(HttpCheck(path="/ok", regex=r"says \w+"), target(server))).ok
    wrong_body = await run_probe(HttpCheck(path="/wrong", regex=r"says \w+"), target(server))
    assert wrong_body.reason == "regex_not_matched"
    maint = HttpCheck(path="/wrong", regex="maintenance", regex_no_match=True)
    assert (await run_probe(maint, target(server))).reason == "regex_matched"
    assert (await run_probe(maint.model_copy(update={"path": "/ok"}), target(server))).ok


async def test_md5_digest_as_genhash_prints_it(server: HttpServer) -> None:
    md5 = hashlib.md5(BODY).hexdigest()
    for path in ("/ok", "/eof", "/chunked"):
        result = await run_probe(HttpCheck(path=path, digest=md5.upper()), target(server))
        assert (path, result.ok, result.reason) == (path, True, "ok")
    bad = await run_probe(HttpCheck(path="/wrong", digest=md5), target(server))
    assert (bad.ok, bad.reason) == (False, "digest_mismatch")


async def test_sha256_digest(server: HttpServer) -> None:
    sha = hashlib.sha256(BODY).hexdigest()
    assert (await run_probe(HttpCheck(path="/ok", sha256_digest=sha), target(server))).ok
    bad = await run_probe(HttpCheck(path="/wrong", sha256_digest=sha), target(server))
    assert bad.reason == "sha256_digest_mismatch"


@pytest.mark.parametrize("path", ["/big", "/big-eof"])
async def test_oversized_body_is_down_without_reading_it_all(server: HttpServer, path: str) -> None:
    result = await run_probe(HttpCheck(path=path, regex="b"), target(server))
    assert (result.ok, result.reason) == (False, "body_too_large")
    small = await run_probe(HttpCheck(path="/ok", regex="hello", max_body_bytes=10), target(server))
    assert small.reason == "body_too_large"
    # Status-only checks never read the body, so its size does not matter.
    assert (await run_probe(HttpCheck(path=path), target(server))).ok


async def test_injected_clock_measures_duration(server: HttpServer) -> None:
    ticks = iter([100.0, 102.5])
    result = await run_probe(HttpCheck(path="/ok"), target(server), clock=lambda: next(ticks))
    assert result.duration == 2.5


async def test_connect_ip_and_port_override_the_target(server: HttpServer) -> None:
    elsewhere = ProbeTarget(IPv4Address("127.0.0.1"), 9)
    check = HttpCheck(path="/ok", connect_ip=server.address, connect_port=server.port)
    assert (await run_probe(check, elsewhere)).ok


async def test_keepalived_genhash_agrees_with_hashlib_and_the_probe(server: HttpServer) -> None:
    genhash = require_tool("genhash")
    proc = await asyncio.create_subprocess_exec(
        genhash,
        "-s",
        str(server.address),
        "-p",
        str(server.port),
        "-u",
        "/ok",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    # genhash without -v prints only the MD5 of the body, as lowercase hex.
    printed = out.decode().strip()
    assert printed == hashlib.md5(BODY).hexdigest()
    assert (await run_probe(HttpCheck(path="/ok", digest=printed), target(server))).ok


async def test_cancellation_propagates(server: HttpServer) -> None:
    probe = asyncio.create_task(run_probe(HttpCheck(path="/hang"), target(server)))
    async with asyncio.timeout(5):
        await server.hung.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe


async def test_ipv6_host_header_is_bracketed() -> None:
    seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if not seen.done():
            seen.set_result(head)
        writer.write(response(200, BODY))
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(serve, "::1", 0)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        result = await run_probe(HttpCheck(), ProbeTarget(IPv6Address("::1"), port))
    assert result.ok
    assert f"\r\nHost: [::1]:{port}\r\n".encode() in seen.result()


async def test_a_non_check_object_is_a_down_result_not_an_exception() -> None:
    result = await run_probe(object(), ProbeTarget(IPv4Address("127.0.0.1"), 80))  # type: ignore[arg-type]
    assert (result.ok, result.reason) == (False, "internal_error")


async def test_response_trickling_in_byte_by_byte_is_read_whole(server: HttpServer) -> None:
    check = HttpCheck(path="/trickle", digest=hashlib.md5(BODY).hexdigest())
    result = await run_probe(check, target(server))
    assert (result.ok, result.reason) == (True, "ok")


async def test_no_time_wait_is_left_on_the_probe_side(server: HttpServer) -> None:
    # Status only (the body is left unread) and a body read to the server's close: neither
    # leaves the prober a TIME_WAIT (RST in the first case; the server closed first in the
    # second).
    source = fresh_loopback()
    for check in (
        HttpCheck(path="/ok", bind_ip=source),
        HttpCheck(path="/eof", bind_ip=source, regex="hello"),
    ):
        for _ in range(3):
            assert (await run_probe(check, target(server))).ok
    assert TCP_TIME_WAIT not in sockets_from(source)


async def test_after_eof_the_close_is_a_fin_not_a_reset(server: HttpServer) -> None:
    # The server closed first; our FIN (not an RST) completes its close, which leaves the
    # server in TIME_WAIT. An RST would have dropped its socket at once.
    assert TCP_TIME_WAIT not in sockets_from(server.address)
    assert (await run_probe(HttpCheck(path="/eof", regex="hello"), target(server))).ok
    async with asyncio.timeout(5):
        while TCP_TIME_WAIT not in sockets_from(server.address):
            await asyncio.sleep(0.01)


# ------------------------------------------------------ the pure parser, fed piece by piece


def judge(check: HttpCheck, response: bytes, step: int) -> tuple[str, bool | None]:
    """Feed `response` to judge_response `step` bytes at a time, then EOF: (reason, saw_eof)."""
    parser = judge_response(check)
    try:
        next(parser)
        for i in range(0, len(response), step):
            parser.send(response[i : i + step])
        parser.send(b"")
    except StopIteration as done:
        return "ok", done.value
    except ProbeFailure as exc:
        return exc.reason, None
    raise AssertionError("the parser asked for more after EOF")


def head(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode() + b"\r\n"


MD5 = HttpCheck(digest=hashlib.md5(BODY).hexdigest())


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
@pytest.mark.parametrize(
    ("check", "response", "expected"),
    [
        (HttpCheck(), response(200, BODY), ("ok", False)),
        (MD5, response(200, BODY), ("ok", False)),
        (MD5, b"HTTP/1.0 200 OK\r\n\r\n" + BODY, ("ok", True)),
        (MD5, b"HTTP/1.0 200 OK\nContent-Length: %d\n\n" % len(BODY) + BODY, ("ok", False)),
        (MD5, CHUNKED, ("ok", False)),
        (MD5, CHUNKED[:-2], ("closed_early", None)),
        (HttpCheck(), b"", ("no_response", None)),
        (HttpCheck(), b"HTTP/1.0 200 OK\r\nContent-", ("closed_early", None)),
        (HttpCheck(), b"HTTP/1.0 200 OK", ("closed_early", None)),
        (HttpCheck(), b"SSH-2.0-OpenSSH_9.2\r\n\r\n", ("bad_status_line", None)),
        (HttpCheck(), response(503, b"busy"), ("status_503", None)),
        (HttpCheck(status_codes=("500-503",)), response(503, b"busy"), ("ok", False)),
        (HttpCheck(), head("HTTP/1.0 200 OK", " folded: x"), ("bad_header", None)),
        (
            HttpCheck(),
            head("HTTP/1.0 200 OK", "X-Big: " + "a" * 17000),
            ("headers_too_large", None),
        ),
        (HttpCheck(), head("HTTP/1.0 200 OK", *["X: y"] * 101), ("headers_too_large", None)),
        (
            MD5,
            head("HTTP/1.0 200 OK", "Content-Length: 5, 6") + b"hello",
            ("bad_content_length", None),
        ),
        (MD5, head("HTTP/1.0 200 OK", "Transfer-Encoding: gzip"), ("bad_transfer_encoding", None)),
        (
            MD5,
            head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"zz\r\n",
            ("bad_chunk", None),
        ),
        (MD5, head("HTTP/1.0 204 No Content"), ("digest_mismatch", None)),
        (
            HttpCheck(regex="a", max_body_bytes=10),
            response(200, b"a" * 11),
            ("body_too_large", None),
        ),
        (
            HttpCheck(regex="a", max_body_bytes=10),
            head("HTTP/1.0 200 OK") + b"a" * 11,
            ("body_too_large", None),
        ),
        (
            HttpCheck(regex="a", max_body_bytes=10),
            head("HTTP/1.0 200 OK") + b"a" * 10,
            ("ok", True),
        ),
        # Status only: a truncated or huge body is never read.
        (HttpCheck(), head("HTTP/1.0 200 OK", "Content-Length: 99999999"), ("ok", False)),
    ],
)
def test_parser_verdict_does_not_depend_on_how_the_bytes_arrive(
    check: HttpCheck, response: bytes, expected: tuple[str, bool | None], step: int
) -> None:
    assert judge(check, response, step) == expected
