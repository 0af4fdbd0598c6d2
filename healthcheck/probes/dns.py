"""DNS_CHECK: one query over UDP, built and parsed here (RFC 1035 §4), judged on rcode/answer.

Message layout (RFC 1035 §4.1.1), all big-endian:

    ID(16) | QR(1) OPCODE(4) AA TC RD RA Z(3) RCODE(4) | QDCOUNT | ANCOUNT | NSCOUNT | ARCOUNT
    question:  QNAME (labels) QTYPE(16) QCLASS(16)
    answer RR: NAME (labels or a §4.1.4 pointer) TYPE CLASS TTL(32) RDLENGTH RDATA

The reply must carry our ID, QR=1, and echo our question; then its RCODE must equal the
expected one and, if given, the expected address must be among the answers.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from healthcheck.config import DnsCheck
from healthcheck.probes.common import (
    Clock,
    ProbeFailure,
    ProbeTarget,
    Up,
    deadline_of,
    endpoint,
    timed,
    udp_exchange,
)
from healthcheck.types import ProbeResult

QTYPES = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "PTR": 12,
    "MX": 15,
    "TXT": 16,
    "AAAA": 28,
    "SRV": 33,
}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
CLASS_IN = 1
_FLAG_QR = 0x8000
_FLAG_RD = 0x0100
_HEADER = struct.Struct("!HHHHHH")
_MAX_POINTERS = 32


class DnsFormatError(Exception):
    """A reply that is not a well-formed DNS message; `reason` is a stable token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    rtype: int
    rclass: int
    rdata: bytes


@dataclass(frozen=True, slots=True)
class DnsMessage:
    qid: int
    flags: int
    questions: tuple[tuple[str, int, int], ...]
    answers: tuple[ResourceRecord, ...]

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def build_query(qid: int, name: str, qtype: int) -> bytes:
    # RD set as keepalived does: a recursive resolver answers from its cache, an
    # authoritative server ignores the bit (RFC 1035 §4.1.1).
    header = _HEADER.pack(qid, _FLAG_RD, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` and the offset just after it (pointers followed, bounded)."""
    labels: list[str] = []
    end = -1
    for _ in range(_MAX_POINTERS):
        while True:
            if offset >= len(data):
                raise DnsFormatError("dns_truncated_name")
            length = data[offset]
            if length & 0xC0 == 0xC0:
                if offset + 1 >= len(data):
                    raise DnsFormatError("dns_truncated_name")
                if end < 0:
                    end = offset + 2
                offset = ((length & 0x3F) << 8) | data[offset + 1]
                break
            if length & 0xC0:
                raise DnsFormatError("dns_bad_label")
            offset += 1
            if length == 0:
                return ".".join(labels) + ".", (end if end >= 0 else offset)
            if offset + length > len(data):
                raise DnsFormatError("dns_truncated_name")
            labels.append(data[offset : offset + length].decode("ascii", "replace"))
            offset += length
    raise DnsFormatError("dns_pointer_loop")


def parse_message(data: bytes) -> DnsMessage:
    """Decode header, questions and answers; authority/additional are not needed."""
    if len(data) < _HEADER.size:
        raise DnsFormatError("dns_short_reply")
    qid, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(data)
    offset = _HEADER.size
    questions: list[tuple[str, int, int]] = []
    for _ in range(qdcount):
        name, offset = _read_name(data, offset)
        if offset + 4 > len(data):
            raise DnsFormatError("dns_truncated_question")
        qtype, qclass = struct.unpack_from("!HH", data, offset)
        offset += 4
        questions.append((name, qtype, qclass))
    answers: list[ResourceRecord] = []
    for _ in range(ancount):
        _, offset = _read_name(data, offset)
        if offset + 10 > len(data):
            raise DnsFormatError("dns_truncated_answer")
        rtype, rclass, _ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        if offset + rdlength > len(data):
            raise DnsFormatError("dns_truncated_answer")
        answers.append(ResourceRecord(rtype, rclass, data[offset : offset + rdlength]))
        offset += rdlength
    return DnsMessage(qid, flags, tuple(questions), tuple(answers))


def judge_reply(check: DnsCheck, qid: int, data: bytes) -> Up:
    try:
        msg = parse_message(data)
    except DnsFormatError as exc:
        raise ProbeFailure(exc.reason) from exc
    if msg.qid != qid:
        raise ProbeFailure("dns_id_mismatch")
    if not msg.flags & _FLAG_QR:
        raise ProbeFailure("dns_not_a_response")
    qtype = QTYPES[check.qtype]
    want_name = encode_name(check.name)
    if len(msg.questions) != 1 or (
        encode_name(msg.questions[0][0]).lower() != want_name.lower()
        or msg.questions[0][1:] != (qtype, CLASS_IN)
    ):
        raise ProbeFailure("dns_question_mismatch")
    rcode = RCODES.get(msg.rcode, f"RCODE{msg.rcode}")
    if rcode != check.rcode:
        raise ProbeFailure(f"dns_rcode_{rcode}")
    if check.expect_answer is not None:
        packed = check.expect_answer.packed
        if not any(rr.rtype == qtype and rr.rdata == packed for rr in msg.answers):
            raise ProbeFailure("dns_answer_missing")
    return Up()


async def _dns(check: DnsCheck, target: ProbeTarget) -> Up:
    qid = secrets.randbelow(0x10000)
    query = build_query(qid, check.name, QTYPES[check.qtype])
    reply = await udp_exchange(check, endpoint(check, target), query, deadline_of(check))
    if reply is None:
        raise ProbeFailure("no_reply")
    return judge_reply(check, qid, reply)


async def probe_dns(
    check: DnsCheck, target: ProbeTarget, *, clock: Clock | None = None
) -> ProbeResult:
    """Query the server; never raises except asyncio.CancelledError."""
    return await timed(lambda: _dns(check, target), clock)
