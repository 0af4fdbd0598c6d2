"""keepalived's checker keywords against real servers on loopback (issue 14, part 2).

HTTP_GET / SSL_GET with several url blocks (all must pass), http_protocol, virtualhost per
url; SSL_GET with a client certificate that the server verifies, enable_sni; UDP_CHECK
with require_reply patterns and reply lengths; FILE_CHECK with reverse and init_file.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from healthcheck.config import FileCheck, HttpCheck, HttpsCheck, UdpCheck
from healthcheck.probes import ProbeTarget, run_probe
from healthcheck.probes.file import init_file
from tests.netns.probe_servers import (
    HttpRequest,
    HttpServer,
    fresh_loopback,
    response,
    udp_echo_server,
)

A_BODY = b"page a\n"
B_BODY = b"page b\n"


async def page_a(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(response(200, A_BODY))


async def page_b(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(response(200, B_BODY))


async def chunked(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npage\r\n3\r\n 11\r\n0\r\n\r\n"
    )


@pytest.fixture
async def web() -> AsyncIterator[HttpServer]:
    routes = {"/a": page_a, "/b": page_b, "/chunked": chunked}
    async with HttpServer(fresh_loopback(), routes) as server:
        yield server


def target(server: HttpServer) -> ProbeTarget:
    return ProbeTarget(server.address, server.port)


# ---- several urls ------------------------------------------------------------------------


async def test_every_url_is_fetched_and_must_pass(web: HttpServer) -> None:
    check = HttpCheck(
        urls=[
            {"path": "/a", "digest": hashlib.md5(A_BODY).hexdigest()},
            {"path": "/b", "digest": hashlib.md5(B_BODY).hexdigest(), "virtualhost": "b.test"},
        ],
        virtualhost="a.test",
    )
    result = await run_probe(check, target(web))
    assert (result.ok, result.reason) == (True, "ok")
    assert [(r.path, r.headers["host"]) for r in web.requests] == [
        ("/a", "a.test"),
        ("/b", "b.test"),
    ]


async def test_a_failing_url_fails_the_check_and_is_named(web: HttpServer) -> None:
    check = HttpCheck(
        urls=[
            {"path": "/a"},
            {"path": "/missing"},
            {"path": "/b"},
        ]
    )
    result = await run_probe(check, target(web))
    assert (result.ok, result.reason) == (False, "url2:status_404")
    assert [r.path for r in web.requests] == ["/a", "/missing"]  # stops at the first failure


async def test_second_url_digest_mismatch(web: HttpServer) -> None:
    check = HttpCheck(
        urls=[{"path": "/a"}, {"path": "/b", "digest": hashlib.md5(A_BODY).hexdigest()}]
    )
    result = await run_probe(check, target(web))
    assert (result.ok, result.reason) == (False, "url2:digest_mismatch")


# ---- http_protocol -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "line", "connection"),
    [
        ("1.0", "GET /a HTTP/1.0", None),
        ("1.0C", "GET /a HTTP/1.0", "close"),
        ("1.1", "GET /a HTTP/1.1", "close"),
    ],
)
async def test_http_protocol_request(
    web: HttpServer, protocol: str, line: str, connection: str | None
) -> None:
    check = HttpCheck(path="/a", http_protocol=protocol)
    assert (await run_probe(check, target(web))).ok
    (request,) = web.requests
    assert request.request_line == line
    assert request.headers.get("connection") == connection


async def test_http_11_chunked_body_is_judged(web: HttpServer) -> None:
    check = HttpCheck(
        path="/chunked", http_protocol="1.1", digest=hashlib.md5(b"page 11").hexdigest()
    )
    result = await run_probe(check, target(web))
    assert (result.ok, result.reason) == (True, "ok")


# ---- SSL_GET with a client certificate -------------------------------------------------------

NAME = "www.example.test"


@dataclass
class MutualTls:
    http: HttpServer
    client_cert: Path
    client_key: Path
    combined: Path
    stranger_cert: Path
    sni_seen: list[str | None]


@pytest.fixture
async def mutual_tls(tmp_path: Path) -> AsyncIterator[MutualTls]:
    address = fresh_loopback()
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME, str(address)).configure_cert(ctx)
    # The server verifies client certificates against its CA, and requires one.
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(ctx)
    sni_seen: list[str | None] = []

    def on_sni(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        sni_seen.append(name)
        return None

    ctx.sni_callback = on_sni
    client = ca.issue_cert("director.example.test")
    cert = tmp_path / "client.pem"
    key = tmp_path / "client.key"
    combined = tmp_path / "client-and-key.pem"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    client.private_key_and_cert_chain_pem.write_to_path(str(combined))
    stranger = trustme.CA().issue_cert("stranger.example.test")
    stranger_file = tmp_path / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(stranger_file))
    async with HttpServer(address, {"/a": page_a}, ssl_context=ctx) as http:
        yield MutualTls(http, cert, key, combined, stranger_file, sni_seen)


async def test_client_certificate_is_presented_and_verified(mutual_tls: MutualTls) -> None:
    tgt = ProbeTarget(mutual_tls.http.address, mutual_tls.http.port)
    without = await run_probe(HttpsCheck(path="/a", connect_timeout=2), tgt)
    assert not without.ok
    assert without.reason in ("tls_error", "closed_early", "no_response", "reset")
    separate = HttpsCheck(
        path="/a", client_cert=mutual_tls.client_cert, client_key=mutual_tls.client_key
    )
    result = await run_probe(separate, tgt)
    assert (result.ok, result.reason) == (True, "ok")
    together = HttpsCheck(path="/a", client_cert=mutual_tls.combined)
    assert (await run_probe(together, tgt)).ok
    assert [r.path for r in mutual_tls.http.requests] == ["/a", "/a"]


async def test_client_certificate_of_another_ca_is_refused(mutual_tls: MutualTls) -> None:
    tgt = ProbeTarget(mutual_tls.http.address, mutual_tls.http.port)
    result = await run_probe(
        HttpsCheck(path="/a", client_cert=mutual_tls.stranger_cert, connect_timeout=2), tgt
    )
    assert not result.ok
    assert mutual_tls.http.requests == []


async def test_unreadable_client_certificate_is_a_clear_failure(
    mutual_tls: MutualTls, tmp_path: Path
) -> None:
    tgt = ProbeTarget(mutual_tls.http.address, mutual_tls.http.port)
    result = await run_probe(HttpsCheck(path="/a", client_cert=tmp_path / "none.pem"), tgt)
    assert (result.ok, result.reason) == (False, "client_cert_error")


async def test_enable_sni_sends_the_virtualhost_only_when_set(mutual_tls: MutualTls) -> None:
    tgt = ProbeTarget(mutual_tls.http.address, mutual_tls.http.port)
    common = {"path": "/a", "client_cert": mutual_tls.combined, "virtualhost": NAME}
    assert (await run_probe(HttpsCheck(**common, enable_sni=True), tgt)).ok
    assert (await run_probe(HttpsCheck(**common, enable_sni=False), tgt)).ok
    assert mutual_tls.sni_seen == [NAME, None]
    assert [r.headers["host"] for r in mutual_tls.http.requests] == [NAME, NAME]


# ---- UDP_CHECK replies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload_hex", "settings", "expected"),
    [
        ("01 02 03 04", {"min_reply_length": 4, "max_reply_length": 8}, (True, "ok")),
        ("01 02", {"min_reply_length": 4}, (False, "reply_too_short")),
        ("01 02 03 04 05 06 07 08 09", {"max_reply_length": 8}, (False, "reply_too_long")),
        ("4a 01 00 ff", {"reply_hex": "4a XX 00"}, (True, "ok")),
        ("4a 01 01 ff", {"reply_hex": "4a XX 00"}, (False, "reply_mismatch")),
        ("4a 1f", {"reply_hex": "4A 1x 00 00"}, (True, "ok")),  # up to the shorter
        ("4a 2f", {"reply_hex": "4A 1x"}, (False, "reply_mismatch")),
    ],
)
async def test_udp_reply_lengths_and_patterns(
    payload_hex: str, settings: dict[str, object], expected: tuple[bool, str]
) -> None:
    address = fresh_loopback()
    async with udp_echo_server(address) as (port, server):
        check = UdpCheck(payload_hex=payload_hex, connect_timeout=2, **settings)
        result = await run_probe(check, ProbeTarget(address, port))
    assert (result.ok, result.reason) == expected
    assert server.received == [bytes.fromhex(payload_hex)]


async def test_udp_reply_pattern_requires_a_reply() -> None:
    import socket

    address = fresh_loopback()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((str(address), 0))
        check = UdpCheck(payload_hex="00", reply_hex="00", connect_timeout=0.3)
        result = await run_probe(check, ProbeTarget(address, silent.getsockname()[1]))
    assert (result.ok, result.reason) == (False, "no_reply")


# ---- FILE_CHECK reverse and init_file ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "settings", "expected"),
    [
        ("5", {"weight": 2, "reverse": True}, (False, "file_negative")),
        ("-5", {"weight": 2, "reverse": True, "dynamic": True}, (True, 10)),
        ("0", {"weight": 0, "reverse": True}, (False, "file_zero")),
        ("3", {"weight": 0, "reverse": True}, (True, None)),
        ("3", {"weight": 0}, (False, "file_nonzero")),
    ],
)
async def test_file_check_reverse(
    tmp_path: Path, value: str, settings: dict[str, object], expected: tuple[bool, object]
) -> None:
    path = tmp_path / "track"
    path.write_text(value + "\n")
    result = await run_probe(FileCheck(path=path, **settings), None)
    if expected[0]:
        assert (result.ok, result.weight) == expected
    else:
        assert (result.ok, result.reason) == expected


async def test_init_file_writes_only_a_missing_file_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "track"
    check = FileCheck(path=path, init_file=7)
    assert init_file(check) is True
    assert path.read_text() == "7\n"
    path.write_text("3\n")
    assert init_file(check) is False
    assert path.read_text() == "3\n"
    assert init_file(FileCheck(path=path, init_file=0, init_overwrite=True)) is True
    assert path.read_text() == "0\n"
    result = await run_probe(FileCheck(path=path, weight=0), None)
    assert result.ok
