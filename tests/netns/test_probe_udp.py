"""UDP_CHECK probe against a real UDP echo server and a closed port on loopback."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address

from healthcheck.config import UdpCheck
from healthcheck.probes import ProbeTarget, run_probe
from tests.netns.probe_servers import closed_udp_port, fresh_loopback, udp_echo_server


async def test_echo_reply_matching_expect() -> None:
    addr = fresh_loopback()
    async with udp_echo_server(addr, prefix=b"PONG ") as (port, server):
        check = UdpCheck(payload="ping 42", expect=r"^PONG ping \d+$")
        result = await run_probe(check, ProbeTarget(addr, port))
    assert (result.ok, result.reason) == (True, "ok")
    assert server.received == [b"ping 42"]


async def test_hex_payload_is_sent_as_bytes() -> None:
    addr = fresh_loopback()
    async with udp_echo_server(addr) as (port, server):
        check = UdpCheck(payload_hex="de ad be ef 00", require_reply=True)
        assert (await run_probe(check, ProbeTarget(addr, port))).ok
    assert server.received == [b"\xde\xad\xbe\xef\x00"]


async def test_reply_not_matching_expect() -> None:
    addr = fresh_loopback()
    async with udp_echo_server(addr, prefix=b"ERR ") as (port, _):
        result = await run_probe(UdpCheck(payload="x", expect="^OK"), ProbeTarget(addr, port))
    assert (result.ok, result.reason) == (False, "reply_mismatch")


async def test_closed_port_icmp_unreachable_is_refused() -> None:
    addr = fresh_loopback()
    result = await run_probe(UdpCheck(payload="x"), ProbeTarget(addr, closed_udp_port(addr)))
    assert (result.ok, result.reason) == (False, "refused")
    assert result.duration < 1.0


async def _silent_socket(addr: IPv4Address) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((str(addr), 0))
    return sock


async def test_silence_is_up_unless_a_reply_is_required() -> None:
    addr = fresh_loopback()
    with await _silent_socket(addr) as silent:
        tgt = ProbeTarget(addr, silent.getsockname()[1])
        quiet = await run_probe(UdpCheck(payload="x", connect_timeout=0.2), tgt)
        strict = await run_probe(
            UdpCheck(payload="x", require_reply=True, connect_timeout=0.2), tgt
        )
        # The datagrams did arrive: silence was the server's choice, not a lost packet.
        silent.setblocking(False)
        received = [silent.recv(100), silent.recv(100)]
    assert (quiet.ok, quiet.reason) == (True, "ok")
    assert 0.15 <= quiet.duration < 2.0
    assert (strict.ok, strict.reason) == (False, "no_reply")
    assert received == [b"x", b"x"]


async def test_bind_ip_is_the_source() -> None:
    addr, source = fresh_loopback(), fresh_loopback()
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[tuple[str, int]] = loop.create_future()

    class Record(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, peer: tuple[str, int]) -> None:
            if not seen.done():
                seen.set_result(peer)

    transport, _ = await loop.create_datagram_endpoint(Record, local_addr=(str(addr), 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        check = UdpCheck(payload="x", bind_ip=source, connect_timeout=0.1)
        assert (await run_probe(check, ProbeTarget(addr, port))).ok
        async with asyncio.timeout(5):
            assert (await seen)[0] == str(source)
    finally:
        transport.close()
