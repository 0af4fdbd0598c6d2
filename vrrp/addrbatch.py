"""VIPs added and removed in pipelined netlink batches.

A master taking over hundreds of VIPs must have them all on the interface within
milliseconds: until then the traffic that GARP draws to it is dropped. pyroute2's request
API waits for each reply before the next request, and its per-request bookkeeping costs
about 0.3 ms in Python, so 750 VIPs took 244 ms where keepalived, which writes its
requests back to back, took 22 ms. Here the requests are written many to a `send()`: the
kernel handles every message of one netlink write in the sender's system call and queues
one acknowledgement per message, which are then read and matched by sequence number.

Why our own encoder rather than pyroute2's (which the rest of vrrp/addresses.py uses):
pyroute2 has no API for writing requests back to back and reading the acknowledgements,
and its message encoder alone costs about 70 us per address, most of a takeover's budget;
these requests are one fixed header and four attributes, packed with `struct` in a few
microseconds. The encoding follows iproute2's `ip addr add`: IFA_LOCAL and IFA_ADDRESS
both the address (no peer), IFA_F_NODAD for IPv6 (usable at once, as keepalived adds its
VIPs), a label and a broadcast address for IPv4 only; tests/netns/test_addrbatch.py holds
it to what pyroute2 and iproute2 produce.

`AddressChange` is one request; `encode_batch()` and `parse_acks()` are pure, and
`AddressBatcher` is the thin socket part, used by `Rtnl` (vrrp/addresses.py).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Interface

from vrrp.types import SCOPE_NUMBERS, IPAddress, IPInterface

# <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_addr.h>
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RTM_NEWADDR, RTM_DELADDR = 20, 21
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_CACHEINFO = 1, 2, 3, 4, 6
IFA_F_NODAD = 0x02
_ADD_FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_DEL_FLAGS = NLM_F_REQUEST | NLM_F_ACK
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acknowledgements without a copy of the request: 36 bytes each
# Requests per write. The kernel answers every one before send() returns, and the answers
# must fit the receive buffer (each costs a socket buffer of about 1 KB there).
BATCH = 64
RCVBUF = 1 << 20
ACK_TIMEOUT = 2.0  # seconds: the kernel answered in send(); this only bounds a lost answer
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ERROR = struct.Struct("=i")
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_NLA = struct.Struct("=HH")  # attribute length (header included), type
_CACHEINFO = struct.Struct("=IIII")  # preferred, valid (seconds), created, updated
INFINITY_LIFE_TIME = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class AddressChange:
    """One VIP to add (`add`) or remove on the interface `ifindex`."""

    add: bool
    ifindex: int
    address: IPInterface
    label: str | None = None
    scope: str | None = None
    broadcast: IPAddress | None = None
    # Preferred lifetime 0 (valid forever): never chosen as a source address by the kernel
    # on its own, as keepalived adds the link-local address a VMAC advertises from.
    deprecated: bool = False


def encode(change: AddressChange, sequence: int) -> bytes:
    """One RTM_NEWADDR (create, exclusive) or RTM_DELADDR request, acknowledged."""
    v6 = isinstance(change.address, IPv6Interface)
    packed = change.address.ip.packed
    attrs = _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
    if change.add and not v6:
        if change.label:
            attrs += _attr(IFA_LABEL, change.label.encode() + b"\0")
        if change.broadcast is not None:
            attrs += _attr(IFA_BROADCAST, change.broadcast.packed)
    if change.add and change.deprecated:
        attrs += _attr(IFA_CACHEINFO, _CACHEINFO.pack(0, INFINITY_LIFE_TIME, 0, 0))
    body = _IFADDRMSG.pack(
        socket.AF_INET6 if v6 else socket.AF_INET,
        change.address.network.prefixlen,
        IFA_F_NODAD if v6 and change.add else 0,
        SCOPE_NUMBERS[change.scope] if change.scope is not None else 0,
        change.ifindex,
    )
    kind, flags = (RTM_NEWADDR, _ADD_FLAGS) if change.add else (RTM_DELADDR, _DEL_FLAGS)
    length = _HEADER.size + len(body) + len(attrs)
    return _HEADER.pack(length, kind, flags, sequence, 0) + body + attrs


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def encode_batch(changes: Sequence[AddressChange], first_sequence: int) -> bytes:
    """The requests back to back, numbered from `first_sequence`."""
    return b"".join(encode(c, first_sequence + i) for i, c in enumerate(changes))


def parse_acks(data: bytes) -> Iterator[tuple[int, int]]:
    """(sequence, errno) per acknowledgement in one read (errno 0: done). Anything else
    (a truncated message, another type) is skipped: this socket only ever asks for acks."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, sequence, _port = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            return
        if kind == NLMSG_ERROR and length >= _HEADER.size + _ERROR.size:
            (code,) = _ERROR.unpack_from(data, offset + _HEADER.size)
            yield sequence, -code
        offset += (length + 3) & ~3


def outcome(change: AddressChange, code: int) -> bool | OSError:
    """keepalived's idempotence: adding what is there, or removing what is not, is no
    change (False); done is True; any other refusal is an OSError with the errno."""
    if code == 0:
        return True
    if change.add and code == errno.EEXIST:
        return False
    # EADDRNOTAVAIL: not there; ENODEV: the interface (and so the address) is gone.
    if not change.add and code in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
        return False
    return OSError(code, os.strerror(code))


class AddressBatcher:
    """A NETLINK_ROUTE socket of its own for batched VIP changes (no events on it)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._sequence = 0

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
            )
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
                sock.bind((0, 0))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def apply(self, changes: Sequence[AddressChange]) -> list[bool | OSError]:
        """Each change's outcome (see `outcome()`), in order. OSError from the socket
        itself (it could not be opened or written) is raised: nothing is known then."""
        results: list[bool | OSError] = []
        for start in range(0, len(changes), BATCH):
            chunk = changes[start : start + BATCH]
            results.extend(await self._apply_chunk(chunk))
        return results

    async def _apply_chunk(self, chunk: Sequence[AddressChange]) -> list[bool | OSError]:
        sock = self._socket()
        first = self._sequence + 1
        self._sequence = (self._sequence + len(chunk)) & 0x7FFFFFFF
        if self._sequence < first:  # wrapped: number this chunk from 1
            first, self._sequence = 1, len(chunk)
        wanted = {first + i: i for i in range(len(chunk))}
        codes: dict[int, int] = {}
        sock.send(encode_batch(chunk, first))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACK_TIMEOUT
        while len(codes) < len(chunk):
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                # The kernel answers within send(); waiting here is the rare exception.
                try:
                    await asyncio.wait_for(wait_readable(loop, sock), remaining)
                except TimeoutError:
                    break
                continue
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # Answers were lost (the receive buffer overflowed): those requests' fate
                # is unknown, and the VIP sweep of the adapter finds what is missing.
                break
            for sequence, code in parse_acks(data):
                if sequence in wanted:
                    codes[wanted[sequence]] = code
        return [
            outcome(change, codes[i]) if i in codes else OSError(errno.ETIMEDOUT, "no answer")
            for i, change in enumerate(chunk)
        ]


async def wait_readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Until `sock` (non-blocking) has something to read."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())
