"""HTTP_GET / SSL_GET: one GET over HTTP/1.0 (optionally in TLS), then status, regex, digest.

The request is HTTP/1.0 with `Connection: close` (keepalived's "1.0C"): the server ends the
body by closing, so no chunked decoding is needed, and the server, closing first, keeps the
TIME_WAIT. A server that answers chunked anyway (RFC 9112 §7.1 forbids it towards 1.0) is
still decoded. The body is read only when a regex or digest needs it, and never more than
`max_body_bytes`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl

from healthcheck.config import HttpCheck, HttpsCheck
from healthcheck.probes.common import (
    Address,
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

USER_AGENT = "hacontrol-healthcheck"
_LINE_LIMIT = 16 * 1024
_MAX_HEADERS = 100
_STATUS_RE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?\r?\n")
_CHUNK_SIZE_RE = re.compile(rb"[0-9a-fA-F]{1,16}")
_PORT_SUFFIX_RE = re.compile(r":[0-9]+$")


def host_header(check: HttpCheck | HttpsCheck, address: Address, port: int) -> str:
    if check.virtualhost is not None:
        return check.virtualhost
    host = f"[{address}]" if address.version == 6 else str(address)
    default = 443 if check.type == "https" else 80
    return host if port == default else f"{host}:{port}"


def build_request(check: HttpCheck | HttpsCheck, host: str) -> bytes:
    return (
        f"GET {check.path} HTTP/1.0\r\n"
        f"Host: {host}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode("ascii")


def tls_context(check: HttpsCheck) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
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
    if name is None and check.virtualhost is not None:
        name = _PORT_SUFFIX_RE.sub("", check.virtualhost)
    if name is not None:
        return name
    # No name: verify against an IP SAN of the connect address.
    return str(address) if check.verify else ""


async def _read_line(reader: asyncio.StreamReader, *, first: bool = False) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        raise ProbeFailure("no_response" if first and not exc.partial else "closed_early") from exc
    except asyncio.LimitOverrunError as exc:
        raise ProbeFailure("headers_too_large") from exc


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, list[str]]]:
    """Status code and headers (names lower-cased) of a response."""
    match = _STATUS_RE.fullmatch(await _read_line(reader, first=True))
    if match is None:
        raise ProbeFailure("bad_status_line")
    headers: dict[str, list[str]] = {}
    for _ in range(_MAX_HEADERS):
        line = await _read_line(reader)
        if line in (b"\r\n", b"\n"):
            return int(match.group(1)), headers
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProbeFailure("bad_header")
        key = name.decode("latin-1").lower()
        headers.setdefault(key, []).append(value.strip().decode("latin-1"))
    raise ProbeFailure("headers_too_large")


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    # RFC 9112 §7.1: chunk-size [; ext] CRLF data CRLF ... last-chunk trailers CRLF.
    body = bytearray()
    while True:
        size_text = (await _read_line(reader)).split(b";", 1)[0].strip()
        if not _CHUNK_SIZE_RE.fullmatch(size_text):
            raise ProbeFailure("bad_chunk")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise ProbeFailure("body_too_large")
        body += await reader.readexactly(size)
        if (await _read_line(reader)).strip():
            raise ProbeFailure("bad_chunk")
    for _ in range(_MAX_HEADERS):
        if not (await _read_line(reader)).strip():
            return bytes(body)
    raise ProbeFailure("headers_too_large")


async def read_body(
    reader: asyncio.StreamReader, status: int, headers: dict[str, list[str]], limit: int
) -> tuple[bytes, bool]:
    """The body (at most `limit` bytes, else body_too_large) and whether EOF was seen."""
    if status in (204, 304) or status < 200:
        return b"", False
    encodings = ",".join(headers.get("transfer-encoding", [])).lower()
    if encodings:
        if encodings.replace(" ", "").split(",")[-1] != "chunked":
            raise ProbeFailure("bad_transfer_encoding")
        return await _read_chunked(reader, limit), False
    lengths = {v.strip() for v in ",".join(headers.get("content-length", [])).split(",") if v}
    if lengths:
        # RFC 9112 §6.3: differing or non-numeric Content-Length values are unrecoverable.
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise ProbeFailure("bad_content_length")
        length = int(next(iter(lengths)))
        if length > limit:
            raise ProbeFailure("body_too_large")
        return await reader.readexactly(length), False
    body = bytearray()
    while data := await reader.read(64 * 1024):
        body += data
        if len(body) > limit:
            raise ProbeFailure("body_too_large")
    return bytes(body), True


def judge_body(check: HttpCheck | HttpsCheck, body: bytes) -> None:
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


async def _http(check: HttpCheck | HttpsCheck, target: ProbeTarget) -> Up:
    address, port = endpoint(check, target)
    ctx = tls_context(check) if isinstance(check, HttpsCheck) else None
    deadline = deadline_of(check)
    sock = await tcp_connect(check, address, port, deadline)
    writer: asyncio.StreamWriter | None = None
    saw_eof = False
    try:
        async with asyncio.timeout_at(deadline):
            if isinstance(check, HttpsCheck):
                try:
                    reader, writer = await asyncio.open_connection(
                        sock=sock,
                        ssl=ctx,
                        server_hostname=server_hostname(check, address),
                        limit=_LINE_LIMIT,
                    )
                except ssl.SSLCertVerificationError:
                    raise
                except (ssl.SSLError, ConnectionError) as exc:
                    # A server refusing the handshake sends an alert and closes; whether we
                    # read the alert or the RST that follows it is a race: both are TLS errors.
                    raise ProbeFailure("tls_error") from exc
            else:
                reader, writer = await asyncio.open_connection(sock=sock, limit=_LINE_LIMIT)
            writer.write(build_request(check, host_header(check, address, port)))
            await writer.drain()
            status, headers = await read_head(reader)
            if not check.accepts_status(status):
                raise ProbeFailure(f"status_{status}")
            if check.needs_body:
                body, saw_eof = await read_body(reader, status, headers, check.max_body_bytes)
                judge_body(check, body)
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
    """GET `check.path` and judge the response; never raises except asyncio.CancelledError."""
    return await timed(lambda: _http(check, target), clock)
