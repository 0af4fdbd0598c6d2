"""`hacontrol genhash`: the digest an HTTP_GET / SSL_GET check compares, as keepalived's
genhash prints it, for writing `digest:` into a check.

It fetches the page as the check does (the same request: path, Host, http_protocol;
TLS with SNI for https) and prints the MD5 of the body as 32 hex digits on one line,
which is genhash's output; `--sha256` prints the SHA-256 for `sha256_digest`. With
`-v` it also shows the header and the body in genhash's hex-dump layout. A chunked
body is hashed decoded, as the check hashes it.

Where it differs from genhash: a failure ("Connection failed", a TLS error, no
response) exits 1, where genhash exits 0; and the URL may be given whole
(`http://192.0.2.10:8080/health`) besides genhash's -s/-p/-u options.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import ssl
import sys
import time
from typing import Literal
from urllib.parse import urlsplit

# The checker's HTTP code (and its pydantic models) is imported where it is used: every
# `hacontrol` command builds this subcommand's parser, and the models cost 0.1 s to build.

MAX_RESPONSE = 64 << 20


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gh = sub.add_parser(
        "genhash",
        help="print a web page's digest for an http/https check (keepalived's genhash)",
        description="Fetch a page as an http or https check does and print the MD5 of its "
        "body (keepalived's genhash output), for a check's digest.",
    )
    gh.add_argument("url", nargs="?", help="http://HOST[:PORT]/PATH or https://...")
    gh.add_argument("-s", "--server", help="address to connect to (genhash -s)")
    gh.add_argument("-p", "--port", type=int, help="port (default 80, or 443 with -S)")
    gh.add_argument("-u", "--url-path", dest="path", help="path, e.g. /index.html (genhash -u)")
    gh.add_argument("-S", "--use-ssl", action="store_true", help="HTTPS")
    gh.add_argument("-V", "--use-virtualhost", dest="virtualhost", help="Host header (and SNI)")
    gh.add_argument(
        "-P",
        "--protocol",
        default="1.0",
        choices=["1.0", "1.0c", "1.0C", "1.1"],
        help="HTTP protocol, as a check's http_protocol (default 1.0, genhash's)",
    )
    gh.add_argument("-t", "--timeout", type=float, default=5.0, help="seconds (default 5)")
    gh.add_argument("-m", "--fwmark", type=int, help="SO_MARK on the socket")
    gh.add_argument("--sha256", action="store_true", help="print the SHA-256 instead")
    gh.add_argument("-v", "--verbose", action="store_true", help="show header and body")


class GenhashError(Exception):
    pass


def target_of(args: argparse.Namespace) -> tuple[str, int, str, bool]:
    """(server, port, path, tls) from a whole URL or genhash's options."""
    tls = bool(args.use_ssl)
    server, port, path = args.server, args.port, args.path
    if args.url:
        parts = urlsplit(args.url if "//" in args.url else f"http://{args.url}")
        if parts.scheme not in ("http", "https"):
            raise GenhashError(f"{args.url}: only http:// and https:// URLs")
        tls = tls or parts.scheme == "https"
        server = server or parts.hostname
        try:
            port = port or parts.port
        except ValueError:
            raise GenhashError(f"{args.url}: bad port") from None
        path = path or (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not server:
        raise GenhashError("no server: give a URL or -s")
    return server, port or (443 if tls else 80), path or "/", tls


def fetch(
    server: str,
    port: int,
    request: bytes,
    tls: bool,
    sni: str | None,
    timeout: float,
    fwmark: int | None,
) -> bytes:
    deadline = time.monotonic() + timeout
    try:
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        if fwmark is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, fwmark)
        raw.settimeout(timeout)
        raw.connect((server, port))
    except OSError as exc:
        raise GenhashError(f"Connection failed ({exc.strerror or exc})") from None
    try:
        sock: socket.socket = raw
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # as genhash and the check (without verify)
            try:
                sock = ctx.wrap_socket(raw, server_hostname=sni or None)
            except (ssl.SSLError, OSError) as exc:
                raise GenhashError(f"SSL handshake/communication error ({exc})") from None
        sock.sendall(request)
        chunks: list[bytes] = []
        size = 0
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
            if size > MAX_RESPONSE:
                raise GenhashError(f"response larger than {MAX_RESPONSE} bytes")
        return b"".join(chunks)
    except TimeoutError:
        raise GenhashError("timed out") from None
    except (ssl.SSLError, OSError) as exc:
        raise GenhashError(f"connection error ({exc})") from None
    finally:
        raw.close()


def split_response(response: bytes) -> tuple[bytes, bytes]:
    """(header with its blank line, body decoded from chunked if it was)."""
    for end in (b"\r\n\r\n", b"\n\n"):
        at = response.find(end)
        if at >= 0:
            head, body = response[: at + len(end)], response[at + len(end) :]
            break
    else:
        raise GenhashError("no HTTP header in the response")
    lines = head.decode("latin-1").lower().splitlines()
    if any(line.startswith("transfer-encoding:") and "chunked" in line for line in lines):
        body = _dechunk(body)
    return head, body


def _dechunk(body: bytes) -> bytes:
    from healthcheck.probes.common import ProbeFailure
    from healthcheck.probes.http import _read_chunked, _Received

    received = _Received()
    parser = _read_chunked(received, MAX_RESPONSE)
    try:
        next(parser)
        parser.send(body)
        parser.send(b"")
    except StopIteration as done:
        return bytes(done.value)
    except ProbeFailure as exc:
        raise GenhashError(f"bad chunked body ({exc.reason})") from None
    raise GenhashError("chunked body cut short")


def hex_dump(data: bytes) -> str:
    """genhash's layout: decimal offset, 16 bytes in two groups of 8, then the text."""
    out = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        left = " ".join(f"{b:02x}" for b in row[:8])
        right = " ".join(f"{b:02x}" for b in row[8:])
        hexes = f"{left} - {right}" if len(row) > 8 else left
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        out.append(f"{offset:04d}  {hexes:<49}   {text:<16}")
    return "\n".join(out)


# genhash's section banners, as it prints them (not all of one width).
_RULE = "-----------------------"
BANNERS = {
    "header": f"{_RULE}[    HTTP Header Buffer    ]{_RULE}",
    "ascii": f"{_RULE}[ HTTP Header Ascii Buffer ]{_RULE}",
    "body": f"{_RULE}[        HTML Buffer        ]{_RULE}",
    "hash": f"{_RULE}[    HTML hash resulting    ]{_RULE}",
    "final": f"{_RULE}[ HTML hash final resulting ]{_RULE}",
}


def run(args: argparse.Namespace) -> int:
    from healthcheck.config import HttpCheck, HttpsCheck
    from healthcheck.probes.http import build_request

    try:
        server, port, path, tls = target_of(args)
        protocol: Literal["1.0", "1.0C", "1.1"] = (
            "1.0C"
            if args.protocol.lower() == "1.0c"
            else "1.1"
            if args.protocol == "1.1"
            else "1.0"
        )
        model = HttpsCheck if tls else HttpCheck
        check = model(path=path, virtualhost=args.virtualhost, http_protocol=protocol)
        default = 443 if tls else 80
        host_name = f"[{server}]" if ":" in server else server
        host = args.virtualhost or (host_name if port == default else f"{host_name}:{port}")
        started = time.monotonic()
        response = fetch(
            server,
            port,
            build_request(check, host),
            tls,
            args.virtualhost,
            args.timeout,
            args.fwmark,
        )
        head, body = split_response(response)
    except (GenhashError, ValueError) as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 1
    digest = (hashlib.sha256 if args.sha256 else hashlib.md5)(body)
    if args.verbose:
        print(BANNERS["header"])
        print(hex_dump(head))
        print(BANNERS["ascii"])
        print(head.decode("latin-1").replace("\r\n", "\n"))
        print(BANNERS["body"])
        print(hex_dump(body))
        print()
        print(BANNERS["hash"])
        print(hex_dump(digest.digest()))
        print(BANNERS["final"])
        print(digest.hexdigest())
        print()
        elapsed = int((time.monotonic() - started) * 1e6)
        print(f"Global response time for [{path}] = {elapsed} usecs")
    else:
        print(digest.hexdigest())
    return 0
