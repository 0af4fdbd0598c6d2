"""Real servers for tests/kernel/test_import_lvs_checks.py, run in one process in a namespace.

`python lvs_servers.py SPEC.json`: SPEC is {"body": str, "cert": path, "key": path,
"endpoints": [[kind, address, port], ...]} with kind one of http, https (the same pages
over TLS), tcp (accept and close), smtp (aiosmtpd) and udp (echo). Pages: every path
answers 200 with `body`, except a path with "status404" in it, which answers 404 with the
same body (for the sample whose url takes 400-499 as a good status). Prints "ready" once
every socket is bound; runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class Handler:
    """aiosmtpd hooks: a server that greets, says 250 to HELO/EHLO and 221 to QUIT."""

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        return "221 Bye"


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


def page(body: bytes) -> Any:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            status = b"404 Not Found" if b"status404" in path else b"200 OK"
            writer.write(
                b"HTTP/1.0 " + status + b"\r\nContent-Type: text/html\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return serve


async def accept_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def main(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(spec["cert"], spec["key"])
    serve = page(spec["body"].encode())
    servers: list[object] = []
    for kind, address, port in spec["endpoints"]:
        if kind == "http":
            servers.append(await asyncio.start_server(serve, address, port))
        elif kind == "https":
            servers.append(await asyncio.start_server(serve, address, port, ssl=tls))
        elif kind == "tcp":
            servers.append(await asyncio.start_server(accept_and_close, address, port))
        elif kind == "smtp":
            factory = lambda: SMTP(Handler(), hostname="rs.example.test")  # noqa: E731
            servers.append(await loop.create_server(factory, address, port))
        elif kind == "udp":
            servers.append(await loop.create_datagram_endpoint(Echo, local_addr=(address, port)))
        else:
            raise SystemExit(f"unknown endpoint kind {kind!r}")
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f)))
