"""SSL_GET probe against a real TLS server on loopback with a throwaway CA (trustme)."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from healthcheck.config import HttpsCheck
from healthcheck.probes import ProbeTarget, run_probe
from tests.netns.probe_servers import HttpRequest, HttpServer, fresh_loopback, response

BODY = b"secure hello\n"
NAME = "www.example.test"


@dataclass
class TlsServer:
    http: HttpServer
    ca_file: Path
    wrong_ca_file: Path
    sni_seen: list[str | None]

    @property
    def target(self) -> ProbeTarget:
        return ProbeTarget(self.http.address, self.http.port)


async def ok(req: HttpRequest, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(response(200, BODY))


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    address = fresh_loopback()
    ca = trustme.CA()
    ca.issue_cert(NAME, str(address)).configure_cert(
        ctx := ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    )
    sni_seen: list[str | None] = []

    def on_sni(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        sni_seen.append(name)
        # Like a virtual-hosting TLS front end: names it does not serve are refused.
        if name is not None and name != NAME:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    ctx.sni_callback = on_sni
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    wrong_ca_file = tmp_path / "wrong-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong_ca_file))
    async with HttpServer(address, {"/ok": ok}, ssl_context=ctx) as http:
        yield TlsServer(http, ca_file, wrong_ca_file, sni_seen)


async def test_verified_with_sni(tls_server: TlsServer) -> None:
    check = HttpsCheck(path="/ok", sni=NAME, verify=True, ca_file=tls_server.ca_file)
    result = await run_probe(check, tls_server.target)
    assert (result.ok, result.reason) == (True, "ok")
    assert tls_server.sni_seen == [NAME]
    assert tls_server.http.requests[-1].request_line == "GET /ok HTTP/1.0"


async def test_virtualhost_is_sent_as_sni_and_host(tls_server: TlsServer) -> None:
    check = HttpsCheck(
        path="/ok",
        virtualhost=f"{NAME}:8443",
        verify=True,
        ca_file=tls_server.ca_file,
        digest=hashlib.md5(BODY).hexdigest(),
    )
    assert (await run_probe(check, tls_server.target)).ok
    assert tls_server.sni_seen == [NAME]
    assert tls_server.http.requests[-1].headers["host"] == f"{NAME}:8443"


async def test_verified_against_the_ip_san_without_a_name(tls_server: TlsServer) -> None:
    check = HttpsCheck(path="/ok", verify=True, ca_file=tls_server.ca_file)
    assert (await run_probe(check, tls_server.target)).ok
    # Python sends no SNI for an IP address (RFC 6066 §3 forbids literal addresses).
    assert tls_server.sni_seen == [None]


async def test_wrong_ca_fails_verification(tls_server: TlsServer) -> None:
    check = HttpsCheck(path="/ok", sni=NAME, verify=True, ca_file=tls_server.wrong_ca_file)
    result = await run_probe(check, tls_server.target)
    assert (result.ok, result.reason) == (False, "tls_verify_failed")
    assert tls_server.http.requests == []


async def test_name_not_in_certificate_fails_verification(tls_server: TlsServer) -> None:
    # The server accepts any SNI-less handshake; the name we verify is not in its cert.
    check = HttpsCheck(
        path="/ok", virtualhost="127.0.0.99", verify=True, ca_file=tls_server.ca_file
    )
    result = await run_probe(check, tls_server.target)
    assert (result.ok, result.reason) == (False, "tls_verify_failed")


async def test_unverified_by_default_like_keepalived(tls_server: TlsServer) -> None:
    result = await run_probe(HttpsCheck(path="/ok"), tls_server.target)
    assert (result.ok, result.reason) == (True, "ok")


async def test_server_refusing_the_sni_is_a_tls_error(tls_server: TlsServer) -> None:
    result = await run_probe(HttpsCheck(path="/ok", sni="other.example.test"), tls_server.target)
    assert (result.ok, result.reason) == (False, "tls_error")
    assert tls_server.sni_seen == ["other.example.test"]


async def test_missing_ca_file(tls_server: TlsServer, tmp_path: Path) -> None:
    check = HttpsCheck(path="/ok", verify=True, ca_file=tmp_path / "absent.pem")
    result = await run_probe(check, tls_server.target)
    assert (result.ok, result.reason) == (False, "ca_file_error")


async def test_tls_to_a_plain_http_server_is_a_tls_error() -> None:
    # A plain HTTP server answers the ClientHello with a 400, which is no TLS record.
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    address = fresh_loopback()
    server = await asyncio.start_server(plain, str(address), 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        result = await run_probe(HttpsCheck(path="/ok"), ProbeTarget(address, port))
    assert (result.ok, result.reason) == (False, "tls_error")
