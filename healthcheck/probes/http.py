"""HTTP_GET / SSL_GET: a GET per url (optionally in TLS), then status, regex, digest.

The request is HTTP/1.0 with `Connection: close` by default (keepalived's "1.0C"): the
server ends the body by closing, and the server, closing first, keeps the TIME_WAIT.
`http_protocol` "1.0" leaves the header out (keepalived's default) and "1.1" asks in
HTTP/1.1, with `Connection: close` as keepalived does; a chunked answer is decoded. The
body is read only when a regex or digest needs it, and never more than `max_body_bytes`.
With several urls (keepalived's url blocks), each is one connection and GET, in turn, and
every one must pass; a failure names the url (`url2:status_404`).

One pure parser (`judge_response`, fed bytes, never touching a socket or clock) judges the
response for both: plain HTTP reads it straight off the non-blocking socket, HTTPS through
an asyncio TLS stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from collections.abc import Generator
from typing import TypeVar

from healthcheck.config import HttpCheck, HttpsCheck, UrlConfig
from healthcheck.probes.common import (
    Address,
    Clock,
    Endpoint,
    ProbeFailure,
    ProbeTarget,
    Up,
    close_writer,
    deadline_of,
    endpoint,
    set_linger_zero,
    sock_recv,
    sock_sendall,
    tcp_connect,
    timed,
)
from healthcheck.types import ProbeResult

USER_AGENT = "hacontrol-healthcheck"
_LINE_LIMIT = 16 * 1024
_MAX_HEADERS = 100
_STATUS_RE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?\r?\n")
_CHUNK_SIZE_RE = re.compile(rb"[0-9a-fA-F]{1,16}")
_PORT_SUFFIX_RE = re.compile(r":[0-9]+$")
_FRAMING_HEADERS = (b"content-length", b"transfer-encoding")
_RECV_SIZE = 64 * 1024
_T = TypeVar("_T")


def host_header(
    check: HttpCheck | HttpsCheck, where: Endpoint, url: UrlConfig | None = None
) -> str:
    virtualhost = check.virtualhost if url is None else url.virtualhost
    if virtualhost is not None:
        return virtualhost
    host = f"[{where.host}]" if where.address.version == 6 else where.host
    default = 443 if check.type == "https" else 80
    return host if where.port == default else f"{host}:{where.port}"


def build_request(check: HttpCheck | HttpsCheck, host: str, url: UrlConfig | None = None) -> bytes:
    protocol = check.http_protocol
    version = "HTTP/1.1" if protocol == "1.1" else "HTTP/1.0"
    close = "" if protocol == "1.0" else "Connection: close\r\n"
    return (
        f"GET {(url or check).path} {version}\r\n"
        f"Host: {host}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\n"
        f"{close}"
        "\r\n"
    ).encode("ascii")


def tls_context(check: HttpsCheck) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if check.client_cert is not None:
        try:
            ctx.load_cert_chain(
                str(check.client_cert),
                str(check.client_key) if check.client_key is not None else None,
                check.client_key_password,
            )
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ProbeFailure("client_cert_error") from exc
    if not check.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        if check.ca_file is not None:
            ctx.load_verify_locations(cafile=str(check.ca_file))
        else:
            ctx.load_default_certs()
    except (OSError, ValueError) as exc:
        raise ProbeFailure("ca_file_error") from exc
    return ctx


def server_hostname(check: HttpsCheck, address: Address) -> str:
    """The name sent as SNI and verified; "" sends no SNI (Python never sends an IP)."""
    name = check.sni
    if name is None and check.virtualhost is not None and check.enable_sni:
        name = _PORT_SUFFIX_RE.sub("", check.virtualhost)
    if name is not None:
        return name
    # No name: verify against an IP SAN of the connect address.
    return str(address) if check.verify else ""


# Each `yield` asks the driver for more bytes; it sends them back, b"" meaning EOF. The parser
# thus never touches a socket or a clock, and the same one reads plain HTTP and TLS.
Needs = Generator[None, bytes, _T]


class _Received:
    """The bytes received and not yet consumed, and whether EOF has been seen."""

    __slots__ = ("data", "eof", "pos")

    def __init__(self) -> None:
        self.data = bytearray()
        self.pos = 0
        self.eof = False

    def _more(self) -> Needs[None]:
        chunk = yield
        if not chunk:
            self.eof = True
            return
        if self.pos:
            del self.data[: self.pos]
            self.pos = 0
        self.data += chunk

    def line(self, *, first: bool = False) -> Needs[bytes]:
        """One line with its line ending (lines longer than _LINE_LIMIT: headers_too_large)."""
        while True:
            end = self.data.find(b"\n", self.pos)
            length = (end if end >= 0 else len(self.data)) - self.pos
            if length > _LINE_LIMIT:
                raise ProbeFailure("headers_too_large")
            if end >= 0:
                line = bytes(self.data[self.pos : end + 1])
                self.pos = end + 1
                return line
            if self.eof:
                nothing = first and self.pos == len(self.data)
                raise ProbeFailure("no_response" if nothing else "closed_early")
            yield from self._more()

    def exactly(self, size: int) -> Needs[bytes]:
        while len(self.data) - self.pos < size:
            if self.eof:
                raise ProbeFailure("closed_early")
            yield from self._more()
        chunk = bytes(self.data[self.pos : self.pos + size])
        self.pos += size
        return chunk

    def to_eof(self, limit: int) -> Needs[bytes]:
        while True:
            if len(self.data) - self.pos > limit:
                raise ProbeFailure("body_too_large")
            if self.eof:
                return bytes(self.data[self.pos :])
            yield from self._more()


def _read_head(received: _Received) -> Needs[tuple[int, dict[bytes, list[str]]]]:
    """Status code and the framing headers (Content-Length, Transfer-Encoding)."""
    match = _STATUS_RE.fullmatch((yield from received.line(first=True)))
    if match is None:
        raise ProbeFailure("bad_status_line")
    framing: dict[bytes, list[str]] = {}
    for _ in range(_MAX_HEADERS):
        line = yield from received.line()
        if line in (b"\r\n", b"\n"):
            return int(match.group(1)), framing
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProbeFailure("bad_header")
        key = name.lower()
        if key in _FRAMING_HEADERS:
            framing.setdefault(key, []).append(value.strip().decode("latin-1"))
    raise ProbeFailure("headers_too_large")


def _read_chunked(received: _Received, limit: int) -> Needs[bytes]:
    # RFC 9112 §7.1: chunk-size [; ext] CRLF data CRLF ... last-chunk trailers CRLF.
    body = bytearray()
    while True:
        size_text = (yield from received.line()).split(b";", 1)[0].strip()
        if not _CHUNK_SIZE_RE.fullmatch(size_text):
            raise ProbeFailure("bad_chunk")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise ProbeFailure("body_too_large")
        body += yield from received.exactly(size)
        if (yield from received.line()).strip():
            raise ProbeFailure("bad_chunk")
    for _ in range(_MAX_HEADERS):
        if not (yield from received.line()).strip():
            return bytes(body)
    raise ProbeFailure("headers_too_large")


def _read_body(
    received: _Received, status: int, framing: dict[bytes, list[str]], limit: int
) -> Needs[tuple[bytes, bool]]:
    """The body (at most `limit` bytes, else body_too_large) and whether EOF was seen."""
    if status in (204, 304) or status < 200:
        return b"", False
    encodings = ",".join(framing.get(b"transfer-encoding", [])).lower()
    if encodings:
        if encodings.replace(" ", "").split(",")[-1] != "chunked":
            raise ProbeFailure("bad_transfer_encoding")
        return (yield from _read_chunked(received, limit)), False
    lengths = {v.strip() for v in ",".join(framing.get(b"content-length", [])).split(",") if v}
    if lengths:
        # RFC 9112 §6.3: differing or non-numeric Content-Length values are unrecoverable.
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise ProbeFailure("bad_content_length")
        length = int(next(iter(lengths)))
        if length > limit:
            raise ProbeFailure("body_too_large")
        return (yield from received.exactly(length)), False
    return (yield from received.to_eof(limit)), True


def judge_response(check: UrlConfig, max_body_bytes: int | None = None) -> Needs[bool]:
    """Judge a response fed in pieces: status, then (only if needed) the body.

    Raises ProbeFailure with the first reason it fails; returns whether it read up to EOF
    (then the server closed first, and our close leaves no TIME_WAIT: no RST needed). The
    head is read whole even when only the status matters, so a truncated or malformed head
    is still a failure; the body is read only when a regex or digest needs it.
    """
    received = _Received()
    status, framing = yield from _read_head(received)
    if not check.accepts_status(status):
        raise ProbeFailure(f"status_{status}")
    if not check.needs_body:
        return False
    if max_body_bytes is None:
        max_body_bytes = int(getattr(check, "max_body_bytes", 1 << 20))
    body, saw_eof = yield from _read_body(received, status, framing, max_body_bytes)
    judge_body(check, body)
    return saw_eof


def judge_body(check: UrlConfig, body: bytes) -> None:
    """Raise the first reason the body fails the check, in keepalived's order."""
    if check.regex is not None:
        found = re.search(check.regex.encode("utf-8"), body) is not None
        if found and check.regex_no_match:
            raise ProbeFailure("regex_matched")
        if not found and not check.regex_no_match:
            raise ProbeFailure("regex_not_matched")
    if check.digest is not None and hashlib.md5(body).hexdigest() != check.digest:
        raise ProbeFailure("digest_mismatch")
    if check.sha256_digest is not None and hashlib.sha256(body).hexdigest() != check.sha256_digest:
        raise ProbeFailure("sha256_digest_mismatch")


async def _each_url(check: HttpCheck | HttpsCheck, target: ProbeTarget) -> Up:
    urls = check.url_list()
    for index, url in enumerate(urls, 1):
        try:
            if isinstance(check, HttpsCheck):
                await _https(check, url, target)
            else:
                await _http(check, url, target)
        except ProbeFailure as exc:
            if len(urls) == 1:
                raise
            raise ProbeFailure(f"url{index}:{exc.reason}") from exc
    return Up()


async def _http(check: HttpCheck, url: UrlConfig, target: ProbeTarget) -> Up:
    # Straight on the socket, no asyncio streams: a transport, protocol and StreamReader per
    # check cost more CPU than the whole exchange (see wait_ready).
    where = endpoint(check, target)
    deadline = deadline_of(check)
    sock = await tcp_connect(check, where, deadline)
    loop = asyncio.get_running_loop()
    saw_eof = False
    try:
        request = build_request(check, host_header(check, where, url), url)
        await sock_sendall(sock, request, deadline)
        judge = judge_response(url, check.max_body_bytes)
        next(judge)
        first = True
        while True:
            chunk = await sock_recv(sock, _RECV_SIZE, deadline, wait_first=first)
            first = False
            # A server that always has more data ready never makes sock_recv wait, so the
            # deadline is checked here too.
            if loop.time() >= deadline:
                raise TimeoutError
            judge.send(chunk)
    except StopIteration as done:
        saw_eof = done.value
    except TimeoutError as exc:
        raise ProbeFailure("timeout") from exc
    finally:
        if not saw_eof:
            set_linger_zero(sock)
        sock.close()
    return Up()


async def _https(check: HttpsCheck, url: UrlConfig, target: ProbeTarget) -> Up:
    where = endpoint(check, target)
    ctx = tls_context(check)
    deadline = deadline_of(check)
    sock = await tcp_connect(check, where, deadline)
    writer: asyncio.StreamWriter | None = None
    saw_eof = False
    try:
        async with asyncio.timeout_at(deadline):
            try:
                reader, writer = await asyncio.open_connection(
                    sock=sock,
                    ssl=ctx,
                    server_hostname=server_hostname(check, where.address),
                    limit=_LINE_LIMIT,
                )
            except ssl.SSLCertVerificationError:
                raise
            except (ssl.SSLError, ConnectionError) as exc:
                # A server refusing the handshake sends an alert and closes; whether we
                # read the alert or the RST that follows it is a race: both are TLS errors.
                raise ProbeFailure("tls_error") from exc
            writer.write(build_request(check, host_header(check, where, url), url))
            await writer.drain()
            judge = judge_response(url, check.max_body_bytes)
            try:
                next(judge)
                while True:
                    judge.send(await reader.read(_RECV_SIZE))
            except StopIteration as done:
                saw_eof = done.value
    except TimeoutError as exc:
        raise ProbeFailure("timeout") from exc
    finally:
        if writer is not None:
            close_writer(writer, abortive=not saw_eof)
        else:
            sock.close()
    return Up()


async def probe_http(
    check: HttpCheck | HttpsCheck, target: ProbeTarget, *, clock: Clock | None = None
) -> ProbeResult:
    """GET each url and judge the responses; never raises except asyncio.CancelledError."""
    return await timed(lambda: _each_url(check, target), clock)
