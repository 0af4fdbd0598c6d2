"""DNS_CHECK probe against Debian's dnsmasq on loopback (no upstream) and broken servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from typing import cast

import pytest

from healthcheck.config import DnsCheck
from healthcheck.probes import ProbeTarget, run_probe
from healthcheck.probes.dns import QTYPES, build_query, parse_message
from tests.netns.probe_servers import closed_udp_port, dnsmasq, fresh_loopback

RECORDS = ("/example.test/192.0.2.7", "/nx.test/")


@pytest.fixture
async def dns() -> AsyncIterator[ProbeTarget]:
    addr = fresh_loopback()
    async with dnsmasq(addr, *RECORDS) as port:
        yield ProbeTarget(addr, port)


async def test_a_record_with_expected_answer(dns: ProbeTarget) -> None:
    check = DnsCheck(name="www.example.test", qtype="A", expect_answer=IPv4Address("192.0.2.7"))
    result = await run_probe(check, dns)
    assert (result.ok, result.reason) == (True, "ok")


async def test_wrong_expected_answer(dns: ProbeTarget) -> None:
    check = DnsCheck(name="www.example.test", qtype="A", expect_answer=IPv4Address("192.0.2.8"))
    result = await run_probe(check, dns)
    assert (result.ok, result.reason) == (False, "dns_answer_missing")


async def test_rcode_is_named_in_the_reason(dns: ProbeTarget) -> None:
    nx = await run_probe(DnsCheck(name="host.nx.test", qtype="A"), dns)
    assert (nx.ok, nx.reason) == (False, "dns_rcode_NXDOMAIN")
    # With no upstream, dnsmasq refuses what it has no local data for (keepalived's default
    # query, SOA of the root, included).
    root = await run_probe(DnsCheck(), dns)
    assert (root.ok, root.reason) == (False, "dns_rcode_REFUSED")


async def test_expected_rcode(dns: ProbeTarget) -> None:
    assert (await run_probe(DnsCheck(name="host.nx.test", rcode="NXDOMAIN"), dns)).ok
    assert (await run_probe(DnsCheck(rcode="REFUSED"), dns)).ok


async def test_name_case_and_trailing_dot_do_not_matter(dns: ProbeTarget) -> None:
    check = DnsCheck(name="WWW.Example.TEST.", qtype="A", expect_answer=IPv4Address("192.0.2.7"))
    assert (await run_probe(check, dns)).ok


async def test_closed_port_is_refused() -> None:
    addr = fresh_loopback()
    result = await run_probe(DnsCheck(), ProbeTarget(addr, closed_udp_port(addr)))
    assert (result.ok, result.reason) == (False, "refused")


class _Scripted(asyncio.DatagramProtocol):
    """Answers every query with reply(query)."""

    def __init__(self, reply: object) -> None:
        self.reply = reply
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        out = self.reply(data)  # type: ignore[operator]
        if out is not None:
            self.transport.sendto(out, addr)


def _flags_reply(query: bytes, flags: bytes) -> bytes:
    return query[:2] + flags + query[4:]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (lambda q: b"\x00\x01", "dns_short_reply"),
        (lambda q: bytes([q[0] ^ 0xFF]) + q[1:2] + b"\x81\x80" + q[4:], "dns_id_mismatch"),
        (lambda q: q, "dns_not_a_response"),
        # Claims one answer but carries none.
        (lambda q: q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01" + q[8:], "dns_truncated_name"),
        # A question that is not ours.
        (
            lambda q: q[:2] + b"\x81\x80" + q[4:12] + b"\x01x\x00\x00\x06\x00\x01",
            "dns_question_mismatch",
        ),
        # A compression pointer pointing at itself.
        (lambda q: q[:2] + b"\x81\x80" + q[4:12] + b"\xc0\x0c\x00\x06\x00\x01", "dns_pointer_loop"),
        (lambda q: None, "no_reply"),
    ],
)
async def test_broken_replies(reply: object, reason: str) -> None:
    addr = fresh_loopback()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Scripted(reply), local_addr=(str(addr), 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        result = await run_probe(DnsCheck(connect_timeout=0.3), ProbeTarget(addr, port))
    finally:
        transport.close()
    assert (result.ok, result.reason) == (False, reason)


def test_query_layout_rfc1035() -> None:
    query = build_query(0xABCD, "www.example.test", QTYPES["AAAA"])
    assert query[:12] == bytes.fromhex("abcd 0100 0001 0000 0000 0000")
    assert query[12:] == b"\x03www\x07example\x04test\x00" + b"\x00\x1c\x00\x01"
    assert build_query(1, ".", QTYPES["SOA"])[12:] == b"\x00\x00\x06\x00\x01"


def test_parse_follows_compression_pointers() -> None:
    question = b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"
    # Answer owner name is a pointer to offset 12 (the question's name), RFC 1035 §4.1.4.
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, 7])
    msg = parse_message(bytes.fromhex("1234 8180 0001 0001 0000 0000") + question + answer)
    assert msg.qid == 0x1234 and msg.rcode == 0
    assert msg.questions == (("www.example.test.", 1, 1),)
    assert [(rr.rtype, rr.rdata) for rr in msg.answers] == [(1, bytes([192, 0, 2, 7]))]
