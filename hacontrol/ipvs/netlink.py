"""The one IPVS transport over generic netlink: encode, send pipelined, collect acks, dump.

Everything hacontrol asks the kernel's IPVS goes through ``IpvsNetlink`` (blocking) or its
asyncio face ``AsyncIpvs``: the table executor and reconciler, the sync-daemon controller, the
timeout commands and ``hacontrol ipvs list``. Every refusal is an ``IpvsError`` naming the
object (errors.py); ``IpvsUnavailable`` when the ip_vs module is not loaded.

The wire format is include/uapi/linux/ip_vs.h over generic netlink (family "IPVS", version 1)::

    struct nlmsghdr  { u32 len; u16 type (= family id); u16 flags; u32 seq; u32 pid; }
    struct genlmsghdr{ u8 cmd; u8 version (= 1); u16 reserved; }
    IPVS_CMD_ATTR_SERVICE (nested) { AF u16, PROTOCOL u16, ADDR 16 bytes, PORT be16 | FWMARK u32,
                                     SCHED_NAME asciiz, PE_NAME asciiz, FLAGS {u32 flags, u32 mask},
                                     TIMEOUT u32, NETMASK u32 (IPv4: mask bytes; IPv6: prefix len) }
    IPVS_CMD_ATTR_DEST (nested)    { ADDR 16 bytes, PORT be16, ADDR_FAMILY u16, FWD_METHOD u32,
                                     WEIGHT u32, U_THRESH u32, L_THRESH u32,
                                     TUN_TYPE u8, TUN_PORT be16, TUN_FLAGS u16 }
    IPVS_CMD_ATTR_DAEMON (nested)  { STATE u32 (1 master, 2 backup), MCAST_IFN asciiz < 16 bytes,
                                     SYNC_ID u32, SYNC_MAXLEN u16 (host order),
                                     MCAST_GROUP 4 bytes | MCAST_GROUP6 16 bytes (network order),
                                     MCAST_PORT u16 (host order: nla_get_u16, not be16),
                                     MCAST_TTL u8 }
    IPVS_CMD_ATTR_TIMEOUT_TCP / _TCP_FIN / _UDP  u32 seconds (SET_CONFIG, GET_CONFIG's answer)

Nested attributes are sent with NLA_F_NESTED. The kernel's own answers leave it out
(nla_nest_start_noflag) and it parses ours either way, but a nested attribute is meant to say
so. Encoding and decoding are pure functions (golden-bytes tested); ``IpvsNetlink`` owns the
socket.

Why our own codec and not pyroute2's IPVS mapping (0.9.7; pyroute2 stays for rtnetlink in
vrrp/addresses.py): its "update" verb sends IPVS_CMD_DEL_SERVICE / DEL_DEST, so an edit deletes
the service or real server and its connections; it declares IPVS_DEST_ATTR_TUN_PORT as a
host-order u16 where the kernel reads be16; it encodes IPVS_SVC_ATTR_NETMASK as an IPv4 address
even for IPv6 services, whose netmask the kernel takes as a prefix length; and it leaves the
daemon and timeout attributes opaque ("hex").

Why the pipeline works: a netlink request is processed inside the sender's ``sendmsg`` call, one
message after another (``netlink_rcv_skb``), and processing continues after a failed message. A
failure always produces an NLMSG_ERROR carrying the request's sequence number, even without
NLM_F_ACK. So a batch of many requests goes out in one ``sendmsg``; by default only the batch's
last request asks for an ack, which then acts as a barrier: every error of the batch is queued
before it. That is one write and a handful of reads per batch instead of a round trip per
request (``ack_each=True`` asks for one ack per request instead, for comparison). Daemon and
timeout commands are single requests with an ack: there are at most a few of them per change.

Dumps cannot be pipelined: a socket holds one dump at a time (``-EBUSY`` otherwise), so the real
servers of each service are dumped one service after the other.

Network namespaces: each has its own IPVS table, sync daemons and timeouts, and a netlink socket
talks to the namespace it was created in for its whole life. ``IpvsNetlink(netns=NAME)`` creates
its socket inside /run/netns/NAME from a short-lived thread that calls setns(2) (which changes
only the calling thread), so no thread of the caller ever leaves its own namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from socket import AF_INET6
from typing import TypeVar

# Re-exported: the transport's users catch these from here.
from hacontrol.ipvs.errors import IpvsError as IpvsError
from hacontrol.ipvs.errors import IpvsUnavailable as IpvsUnavailable
from hacontrol.ipvs.errors import kernel_error
from hacontrol.ipvs.model import (
    SVC_F_HASHED,
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    DestKey,
    ForwardingMethod,
    RealServer,
    ServiceKey,
    Table,
    TunnelFlags,
    TunnelType,
    VirtualService,
    sched_flag_names,
)
from hacontrol.ipvs.plan import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    EditDest,
    EditService,
    Op,
)
from hacontrol.ipvs.syncd import (
    STATE_CODE,
    STATE_NAME,
    SyncDaemonConfig,
    SyncRole,
    Timeouts,
)

# --- netlink / genetlink constants (include/uapi/linux/netlink.h, genetlink.h) ---------------
NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NETLINK_CAP_ACK = 10
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP = 0x300
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

# --- IPVS (include/uapi/linux/ip_vs.h) ---------------------------------------------------------
IPVS_GENL_NAME = "IPVS"
IPVS_GENL_VERSION = 1
IPVS_CMD_NEW_SERVICE = 1
IPVS_CMD_SET_SERVICE = 2
IPVS_CMD_DEL_SERVICE = 3
IPVS_CMD_GET_SERVICE = 4
IPVS_CMD_NEW_DEST = 5
IPVS_CMD_SET_DEST = 6
IPVS_CMD_DEL_DEST = 7
IPVS_CMD_GET_DEST = 8
IPVS_CMD_NEW_DAEMON = 9
IPVS_CMD_DEL_DAEMON = 10
IPVS_CMD_GET_DAEMON = 11
IPVS_CMD_SET_CONFIG = 12
IPVS_CMD_GET_CONFIG = 13
IPVS_CMD_GET_INFO = 15
IPVS_CMD_ZERO = 16
IPVS_CMD_FLUSH = 17

IPVS_CMD_ATTR_SERVICE = 1
IPVS_CMD_ATTR_DEST = 2
IPVS_CMD_ATTR_DAEMON = 3
IPVS_CMD_ATTR_TIMEOUT_TCP = 4
IPVS_CMD_ATTR_TIMEOUT_TCP_FIN = 5
IPVS_CMD_ATTR_TIMEOUT_UDP = 6

IPVS_DAEMON_ATTR_STATE = 1
IPVS_DAEMON_ATTR_MCAST_IFN = 2
IPVS_DAEMON_ATTR_SYNC_ID = 3
IPVS_DAEMON_ATTR_SYNC_MAXLEN = 4
IPVS_DAEMON_ATTR_MCAST_GROUP = 5
IPVS_DAEMON_ATTR_MCAST_GROUP6 = 6
IPVS_DAEMON_ATTR_MCAST_PORT = 7
IPVS_DAEMON_ATTR_MCAST_TTL = 8

IPVS_SVC_ATTR_AF = 1
IPVS_SVC_ATTR_PROTOCOL = 2
IPVS_SVC_ATTR_ADDR = 3
IPVS_SVC_ATTR_PORT = 4
IPVS_SVC_ATTR_FWMARK = 5
IPVS_SVC_ATTR_SCHED_NAME = 6
IPVS_SVC_ATTR_FLAGS = 7
IPVS_SVC_ATTR_TIMEOUT = 8
IPVS_SVC_ATTR_NETMASK = 9
IPVS_SVC_ATTR_STATS = 10
IPVS_SVC_ATTR_PE_NAME = 11
IPVS_SVC_ATTR_STATS64 = 12

IPVS_DEST_ATTR_ADDR = 1
IPVS_DEST_ATTR_PORT = 2
IPVS_DEST_ATTR_FWD_METHOD = 3
IPVS_DEST_ATTR_WEIGHT = 4
IPVS_DEST_ATTR_U_THRESH = 5
IPVS_DEST_ATTR_L_THRESH = 6
IPVS_DEST_ATTR_ACTIVE_CONNS = 7
IPVS_DEST_ATTR_INACT_CONNS = 8
IPVS_DEST_ATTR_PERSIST_CONNS = 9
IPVS_DEST_ATTR_STATS = 10
IPVS_DEST_ATTR_ADDR_FAMILY = 11
IPVS_DEST_ATTR_STATS64 = 12
IPVS_DEST_ATTR_TUN_TYPE = 13
IPVS_DEST_ATTR_TUN_PORT = 14
IPVS_DEST_ATTR_TUN_FLAGS = 15

IPVS_INFO_ATTR_VERSION = 1
IPVS_INFO_ATTR_CONN_TAB_SIZE = 2

IP_VS_CONN_F_FWD_MASK = 0x7

_HDR = struct.Struct("=IHHII")  # nlmsghdr
_GENL = struct.Struct("=BBH")  # genlmsghdr
_NLA = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_BE16 = struct.Struct("!H")
_BE32 = struct.Struct("!I")
_FLAGS = struct.Struct("=II")
_ERR = struct.Struct("=i")


# --- encoding (pure) ---------------------------------------------------------------------------


def nla(attr_type: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes (NLA_ALIGN)."""
    length = 4 + len(payload)
    return _NLA.pack(length, attr_type) + payload + b"\0" * (-length & 3)


def nla_nested(attr_type: int, payload: bytes) -> bytes:
    return nla(attr_type | NLA_F_NESTED, payload)


def _addr16(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    # union nf_inet_addr is 16 bytes; ipvsadm (libipvs) always sends all 16 (struct "16s"
    # pads a 4-byte IPv4 address with zeros).
    return address.packed


_SVC_KEY_ADDR = struct.Struct("=HHH2xHHH2xHH16sHH2s2x")  # AF, PROTOCOL, ADDR, PORT
_SVC_KEY_FWMARK = struct.Struct("=HHH2xHHI")  # AF, FWMARK


@functools.lru_cache(maxsize=1 << 16)
def encode_service_key(key: ServiceKey) -> bytes:
    """The attributes that name a service (inside IPVS_CMD_ATTR_SERVICE).

    Cached: every real-server request of a service repeats them.
    """
    if key.is_fwmark:
        return _SVC_KEY_FWMARK.pack(
            6, IPVS_SVC_ATTR_AF, key.family, 8, IPVS_SVC_ATTR_FWMARK, key.fwmark
        )
    assert key.address is not None
    return _SVC_KEY_ADDR.pack(
        6, IPVS_SVC_ATTR_AF, key.family,
        6, IPVS_SVC_ATTR_PROTOCOL, key.protocol,
        20, IPVS_SVC_ATTR_ADDR, _addr16(key.address),
        6, IPVS_SVC_ATTR_PORT, _BE16.pack(key.port),
    )  # fmt: skip


@functools.lru_cache(maxsize=1 << 16)
def _service_key_nest(key: ServiceKey) -> bytes:
    return nla_nested(IPVS_CMD_ATTR_SERVICE, encode_service_key(key))


def encode_service(svc: VirtualService, *, full: bool = True) -> bytes:
    """IPVS_CMD_ATTR_SERVICE; ``full`` adds the settings the kernel requires on add and edit."""
    body = encode_service_key(svc.key)
    if full:
        body += nla(IPVS_SVC_ATTR_SCHED_NAME, svc.scheduler.encode() + b"\0")
        if svc.persistence_engine:
            body += nla(IPVS_SVC_ATTR_PE_NAME, svc.persistence_engine.encode() + b"\0")
        # mask ~0: the flags sent are the whole new flag word (the kernel merges under the mask).
        body += nla(IPVS_SVC_ATTR_FLAGS, _FLAGS.pack(svc.flag_bits, 0xFFFFFFFF))
        body += nla(IPVS_SVC_ATTR_TIMEOUT, _U32.pack(svc.persistence_timeout or 0))
        if svc.key.family == AF_INET6:
            # ip_vs_ctl.c treats an IPv6 netmask as a plain prefix length in host order.
            mask = _U32.pack(svc.netmask_value)
        else:
            mask = _BE32.pack(svc.netmask_value)
        body += nla(IPVS_SVC_ATTR_NETMASK, mask)
    return nla_nested(IPVS_CMD_ATTR_SERVICE, body)


# ADDR, PORT, ADDR_FAMILY; then FWD_METHOD, WEIGHT, U_THRESH, L_THRESH; then the tunnel three.
_DEST_KEY = struct.Struct("=HH16sHH2s2xHHH2x")
_DEST_SETTINGS = struct.Struct("=HHIHHIHHIHHI")
_DEST_TUNNEL = struct.Struct("=HHB3xHH2s2xHHH2x")


def encode_dest(dest: RealServer, *, full: bool = True) -> bytes:
    """IPVS_CMD_ATTR_DEST; ``full`` adds the settings the kernel requires on add and edit."""
    body = _DEST_KEY.pack(
        20, IPVS_DEST_ATTR_ADDR, _addr16(dest.address),
        6, IPVS_DEST_ATTR_PORT, _BE16.pack(dest.port or 0),
        6, IPVS_DEST_ATTR_ADDR_FAMILY, dest.family,
    )  # fmt: skip
    if full:
        body += _DEST_SETTINGS.pack(
            8, IPVS_DEST_ATTR_FWD_METHOD, int(dest.forwarding),
            8, IPVS_DEST_ATTR_WEIGHT, dest.weight & 0xFFFFFFFF,
            8, IPVS_DEST_ATTR_U_THRESH, dest.upper_threshold,
            8, IPVS_DEST_ATTR_L_THRESH, dest.lower_threshold,
        )  # fmt: skip
        if dest.forwarding == ForwardingMethod.TUN:
            # Absent tunnel attributes read as zero (ipip, port 0, nocsum) in the kernel.
            body += _DEST_TUNNEL.pack(
                5, IPVS_DEST_ATTR_TUN_TYPE, int(dest.tunnel_type),
                6, IPVS_DEST_ATTR_TUN_PORT, _BE16.pack(dest.tunnel_port),
                6, IPVS_DEST_ATTR_TUN_FLAGS, int(dest.tunnel_flags),
            )  # fmt: skip
    return _NLA.pack(4 + len(body), IPVS_CMD_ATTR_DEST | NLA_F_NESTED) + body


def encode_message(family_id: int, cmd: int, flags: int, seq: int, attrs: bytes = b"") -> bytes:
    """nlmsghdr + genlmsghdr + attributes (pid 0: the kernel fills in the sender)."""
    length = _HDR.size + _GENL.size + len(attrs)
    return (
        _HDR.pack(length, family_id, flags, seq, 0) + _GENL.pack(cmd, IPVS_GENL_VERSION, 0) + attrs
    )


_OP_CMD: dict[type, int] = {
    AddService: IPVS_CMD_NEW_SERVICE,
    DeleteService: IPVS_CMD_DEL_SERVICE,
    AddDest: IPVS_CMD_NEW_DEST,
    EditDest: IPVS_CMD_SET_DEST,
    DeleteDest: IPVS_CMD_DEL_DEST,
}


def encode_op_attrs(op: Op) -> tuple[int, bytes]:
    """The IPVS command and attributes for one planned operation."""
    if isinstance(op, AddService | EditService):
        cmd = IPVS_CMD_NEW_SERVICE if isinstance(op, AddService) else IPVS_CMD_SET_SERVICE
        return cmd, encode_service(op.service)
    if isinstance(op, DeleteService):
        return IPVS_CMD_DEL_SERVICE, encode_service(op.service, full=False)
    svc = _service_key_nest(op.service.key)
    if isinstance(op, AddDest | EditDest):
        return _OP_CMD[type(op)], svc + encode_dest(op.dest)
    return IPVS_CMD_DEL_DEST, svc + encode_dest(op.dest, full=False)


def encode_op(op: Op, family_id: int, seq: int, *, ack: bool = True) -> bytes:
    """One request for ``op``; with ``ack`` the kernel answers even on success."""
    cmd, attrs = encode_op_attrs(op)
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    return encode_message(family_id, cmd, flags, seq, attrs)


def encode_daemon(cfg: SyncDaemonConfig) -> bytes:
    """IPVS_CMD_ATTR_DAEMON for IPVS_CMD_NEW_DAEMON; 0 / None fields are left out.

    Leaving an attribute out is how the kernel takes its default (the ``if (a)`` tests in
    ip_vs_genl_new_daemon), which is what ipvsadm does too.
    """
    body = (
        nla(IPVS_DAEMON_ATTR_STATE, _U32.pack(STATE_CODE[cfg.state]))
        + nla(IPVS_DAEMON_ATTR_MCAST_IFN, cfg.interface.encode() + b"\0")
        + nla(IPVS_DAEMON_ATTR_SYNC_ID, _U32.pack(cfg.syncid))
    )
    if cfg.maxlen:
        body += nla(IPVS_DAEMON_ATTR_SYNC_MAXLEN, _U16.pack(cfg.maxlen))
    if isinstance(cfg.group, ipaddress.IPv4Address):
        body += nla(IPVS_DAEMON_ATTR_MCAST_GROUP, cfg.group.packed)  # nla_get_in_addr
    elif isinstance(cfg.group, ipaddress.IPv6Address):
        body += nla(IPVS_DAEMON_ATTR_MCAST_GROUP6, cfg.group.packed)
    if cfg.port:
        body += nla(IPVS_DAEMON_ATTR_MCAST_PORT, _U16.pack(cfg.port))  # nla_get_u16: host order
    if cfg.ttl:
        body += nla(IPVS_DAEMON_ATTR_MCAST_TTL, bytes((cfg.ttl,)))
    return nla_nested(IPVS_CMD_ATTR_DAEMON, body)


def encode_daemon_state(state: SyncRole) -> bytes:
    """IPVS_CMD_ATTR_DAEMON for IPVS_CMD_DEL_DAEMON: ip_vs_genl_del_daemon() reads only STATE."""
    return nla_nested(
        IPVS_CMD_ATTR_DAEMON, nla(IPVS_DAEMON_ATTR_STATE, _U32.pack(STATE_CODE[state]))
    )


def encode_timeouts(timeouts: Timeouts) -> bytes:
    """The IPVS_CMD_ATTR_TIMEOUT_* of IPVS_CMD_SET_CONFIG.

    All three, zeros included, as ipvsadm sends them: ip_vs_set_timeout() leaves a protocol's
    timeout alone when its value is 0.
    """
    return (
        nla(IPVS_CMD_ATTR_TIMEOUT_TCP, _U32.pack(timeouts.tcp))
        + nla(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, _U32.pack(timeouts.tcpfin))
        + nla(IPVS_CMD_ATTR_TIMEOUT_UDP, _U32.pack(timeouts.udp))
    )


# --- decoding (pure) ---------------------------------------------------------------------------


def iter_messages(buf: bytes | memoryview) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, seq, payload) of every netlink message in a datagram."""
    view = memoryview(buf)
    offset = 0
    end = len(view)
    while offset + _HDR.size <= end:
        length, mtype, flags, seq, _pid = _HDR.unpack_from(view, offset)
        if length < _HDR.size or offset + length > end:
            raise NetlinkDecodeError(f"bad nlmsg length {length} at offset {offset}")
        yield mtype, flags, seq, view[offset + _HDR.size : offset + length]
        offset += (length + 3) & ~3


def parse_attrs(buf: memoryview) -> dict[int, memoryview]:
    """Attributes by type (flag bits stripped); unknown types are kept, PAD attributes too."""
    out: dict[int, memoryview] = {}
    offset = 0
    end = len(buf)
    while offset + 4 <= end:
        length, atype = _NLA.unpack_from(buf, offset)
        if length < 4 or offset + length > end:
            raise NetlinkDecodeError(f"bad attribute length {length} at offset {offset}")
        out[atype & NLA_TYPE_MASK] = buf[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def _u16(v: memoryview) -> int:
    return int(_U16.unpack_from(v)[0])


def _u32(v: memoryview) -> int:
    return int(_U32.unpack_from(v)[0])


def _be16(v: memoryview) -> int:
    return int(_BE16.unpack_from(v)[0])


def _str(v: memoryview) -> str:
    return bytes(v).split(b"\0", 1)[0].decode("ascii", "replace")


@functools.lru_cache(maxsize=1 << 16)
def _address_of(family: int, packed: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # Cached: the same real-server addresses recur in service after service.
    if family == AF_INET6:
        return ipaddress.IPv6Address(packed)
    return ipaddress.IPv4Address(packed[:4])


def _address(family: int, raw: memoryview | bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return _address_of(family, bytes(raw[:16] if family == AF_INET6 else raw[:4]))


@dataclass(frozen=True, slots=True)
class Stats:
    """IPVS counters (totals since creation or zeroing) and rates (per second, kernel-estimated)."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0


_STATS_FIELDS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
_RATE_FIELDS = ("cps", "inpps", "outpps", "inbps", "outbps")


# IPVS_*_ATTR_STATS64 as ip_vs_genl_fill_stats64() writes it on 64-bit machines: attributes
# 1..10, each {u16 len 12, u16 type, u64}, in order, no pad attribute.
_STATS64 = struct.Struct("=" + "IQ" * 10)
_STATS64_HEADERS = tuple(12 | (i << 16) for i in range(1, 11))


def decode_stats(raw: memoryview, *, wide: bool) -> Stats:
    """IPVS_*_ATTR_STATS64 (all u64) or the old IPVS_*_ATTR_STATS (u32, bytes u64)."""
    if wide and len(raw) == _STATS64.size:
        fixed = _STATS64.unpack_from(raw)
        if fixed[0::2] == _STATS64_HEADERS:
            return Stats(*fixed[1::2])
    attrs = parse_attrs(raw)
    values: dict[str, int] = {}
    for i, name in enumerate(_STATS_FIELDS + _RATE_FIELDS, start=1):
        v = attrs.get(i)
        if v is None:
            continue
        # The attribute length says the width (the old STATS mixes u32 and u64).
        values[name] = int(_U64.unpack_from(v)[0]) if len(v) >= 8 else _u32(v)
    return Stats(**values)


@dataclass(frozen=True, slots=True)
class DestCounters:
    """What the kernel counts for a real server besides the stats (ipvsadm's columns)."""

    active_conns: int = 0
    inact_conns: int = 0
    persist_conns: int = 0
    stats: Stats = field(default_factory=Stats)


_NO_COUNTERS = DestCounters()
_NO_STATS = Stats()


def decode_service(raw: memoryview, *, with_stats: bool = True) -> tuple[VirtualService, Stats]:
    """One IPVS_CMD_ATTR_SERVICE payload from a dump -> (service without servers, stats)."""
    a = parse_attrs(raw)
    family = _u16(a[IPVS_SVC_ATTR_AF])
    if IPVS_SVC_ATTR_FWMARK in a and _u32(a[IPVS_SVC_ATTR_FWMARK]):
        key = ServiceKey.of_fwmark(_u32(a[IPVS_SVC_ATTR_FWMARK]), family)
    else:
        key = ServiceKey(
            family=family,
            fwmark=0,
            protocol=_u16(a[IPVS_SVC_ATTR_PROTOCOL]),
            address=_address(family, a[IPVS_SVC_ATTR_ADDR]),
            port=_be16(a[IPVS_SVC_ATTR_PORT]),
        )
    scheduler = _str(a[IPVS_SVC_ATTR_SCHED_NAME]) if IPVS_SVC_ATTR_SCHED_NAME in a else ""
    flags = _FLAGS.unpack_from(a[IPVS_SVC_ATTR_FLAGS])[0] if IPVS_SVC_ATTR_FLAGS in a else 0
    flags &= ~SVC_F_HASHED
    persistent = bool(flags & SVC_F_PERSISTENT)
    timeout = _u32(a[IPVS_SVC_ATTR_TIMEOUT]) if IPVS_SVC_ATTR_TIMEOUT in a else 0
    netmask: ipaddress.IPv4Address | int | None = None
    if persistent and IPVS_SVC_ATTR_NETMASK in a:
        nm = a[IPVS_SVC_ATTR_NETMASK]
        netmask = _u32(nm) if family == AF_INET6 else ipaddress.IPv4Address(bytes(nm[:4]))
    pe = _str(a[IPVS_SVC_ATTR_PE_NAME]) if IPVS_SVC_ATTR_PE_NAME in a else None
    svc = VirtualService(
        key=key,
        scheduler=scheduler,
        sched_flags=sched_flag_names(scheduler, flags),
        one_packet=bool(flags & SVC_F_ONEPACKET),
        persistence_timeout=timeout if persistent else None,
        persistence_netmask=netmask,
        persistence_engine=(pe or None) if persistent else None,
    )
    return svc, _stats_of(a, IPVS_SVC_ATTR_STATS64) if with_stats else _NO_STATS


# The settings part of IPVS_CMD_ATTR_DEST as ip_vs_genl_fill_dest() (Linux 5.3+) writes it:
# ADDR, PORT, FWD_METHOD, WEIGHT, TUN_TYPE, TUN_PORT, TUN_FLAGS, U_THRESH, L_THRESH, ACTIVE_CONNS,
# INACT_CONNS, PERSIST_CONNS, ADDR_FAMILY (then STATS, STATS64). Each header is read as one u32
# (len | type << 16) so a single comparison confirms the layout; anything else takes the
# generic path.
_DEST_FIXED = struct.Struct("=I16sI2s2xIIIIIB3xI2s2xIH2xIIIIIIIIIIIH2x")
_DEST_FIXED_HEADERS = (
    20 | IPVS_DEST_ATTR_ADDR << 16,
    6 | IPVS_DEST_ATTR_PORT << 16,
    8 | IPVS_DEST_ATTR_FWD_METHOD << 16,
    8 | IPVS_DEST_ATTR_WEIGHT << 16,
    5 | IPVS_DEST_ATTR_TUN_TYPE << 16,
    6 | IPVS_DEST_ATTR_TUN_PORT << 16,
    6 | IPVS_DEST_ATTR_TUN_FLAGS << 16,
    8 | IPVS_DEST_ATTR_U_THRESH << 16,
    8 | IPVS_DEST_ATTR_L_THRESH << 16,
    8 | IPVS_DEST_ATTR_ACTIVE_CONNS << 16,
    8 | IPVS_DEST_ATTR_INACT_CONNS << 16,
    8 | IPVS_DEST_ATTR_PERSIST_CONNS << 16,
    6 | IPVS_DEST_ATTR_ADDR_FAMILY << 16,
)
_FORWARDING = {int(m): m for m in ForwardingMethod}
_TUNNEL_TYPES = {int(t): t for t in TunnelType}


def _decode_dest_fast(
    raw: memoryview, service_family: int, with_counters: bool
) -> tuple[RealServer, DestCounters] | None:
    if len(raw) < _DEST_FIXED.size:
        return None
    v = _DEST_FIXED.unpack_from(raw)
    if v[0::2] != _DEST_FIXED_HEADERS:
        return None
    family = v[25] or service_family
    weight = v[7]
    rs = RealServer(
        address=_address(family, v[1]),
        port=int.from_bytes(v[3], "big"),
        forwarding=_FORWARDING.get(v[5] & IP_VS_CONN_F_FWD_MASK, ForwardingMethod.BYPASS),
        weight=weight - (1 << 32) if weight >= 1 << 31 else weight,
        upper_threshold=v[15],
        lower_threshold=v[17],
        tunnel_type=_TUNNEL_TYPES.get(v[9], TunnelType.IPIP),
        tunnel_port=int.from_bytes(v[11], "big"),
        tunnel_flags=TunnelFlags(v[13]),
    )
    if not with_counters:
        return rs, _NO_COUNTERS
    stats = Stats()
    rest = parse_attrs(raw[_DEST_FIXED.size :])
    if IPVS_DEST_ATTR_STATS64 in rest:
        stats = decode_stats(rest[IPVS_DEST_ATTR_STATS64], wide=True)
    elif IPVS_DEST_ATTR_STATS in rest:
        stats = decode_stats(rest[IPVS_DEST_ATTR_STATS], wide=False)
    return rs, DestCounters(v[19], v[21], v[23], stats)


def decode_dest(
    raw: memoryview, service_family: int, *, with_counters: bool = True
) -> tuple[RealServer, DestCounters]:
    """One IPVS_CMD_ATTR_DEST payload from a dump -> (real server, counters)."""
    fast = _decode_dest_fast(raw, service_family, with_counters)
    if fast is not None:
        return fast
    a = parse_attrs(raw)
    family = _u16(a[IPVS_DEST_ATTR_ADDR_FAMILY]) if IPVS_DEST_ATTR_ADDR_FAMILY in a else 0
    family = family or service_family
    fwd = _u32(a[IPVS_DEST_ATTR_FWD_METHOD]) & IP_VS_CONN_F_FWD_MASK
    try:
        forwarding = ForwardingMethod(fwd)
    except ValueError:
        forwarding = ForwardingMethod.BYPASS
    tun_type = a[IPVS_DEST_ATTR_TUN_TYPE][0] if IPVS_DEST_ATTR_TUN_TYPE in a else 0
    try:
        tunnel_type = TunnelType(tun_type)
    except ValueError:
        tunnel_type = TunnelType.IPIP
    weight = _u32(a[IPVS_DEST_ATTR_WEIGHT])
    rs = RealServer(
        address=_address(family, a[IPVS_DEST_ATTR_ADDR]),
        port=_be16(a[IPVS_DEST_ATTR_PORT]),
        forwarding=forwarding,
        weight=weight - (1 << 32) if weight >= 1 << 31 else weight,
        upper_threshold=_u32(a[IPVS_DEST_ATTR_U_THRESH]) if IPVS_DEST_ATTR_U_THRESH in a else 0,
        lower_threshold=_u32(a[IPVS_DEST_ATTR_L_THRESH]) if IPVS_DEST_ATTR_L_THRESH in a else 0,
        tunnel_type=tunnel_type,
        tunnel_port=_be16(a[IPVS_DEST_ATTR_TUN_PORT]) if IPVS_DEST_ATTR_TUN_PORT in a else 0,
        tunnel_flags=TunnelFlags(_u16(a[IPVS_DEST_ATTR_TUN_FLAGS]))
        if IPVS_DEST_ATTR_TUN_FLAGS in a
        else TunnelFlags(0),
    )
    stats = Stats()
    if IPVS_DEST_ATTR_STATS64 in a:
        stats = decode_stats(a[IPVS_DEST_ATTR_STATS64], wide=True)
    elif IPVS_DEST_ATTR_STATS in a:
        stats = decode_stats(a[IPVS_DEST_ATTR_STATS], wide=False)
    counters = DestCounters(
        active_conns=_u32(a[IPVS_DEST_ATTR_ACTIVE_CONNS])
        if IPVS_DEST_ATTR_ACTIVE_CONNS in a
        else 0,
        inact_conns=_u32(a[IPVS_DEST_ATTR_INACT_CONNS]) if IPVS_DEST_ATTR_INACT_CONNS in a else 0,
        persist_conns=_u32(a[IPVS_DEST_ATTR_PERSIST_CONNS])
        if IPVS_DEST_ATTR_PERSIST_CONNS in a
        else 0,
        stats=stats,
    )
    return rs, counters


def decode_dest_counters(raw: memoryview) -> DestCounters:
    """The counters of one IPVS_CMD_ATTR_DEST payload (its settings are not decoded)."""
    if len(raw) >= _DEST_FIXED.size:
        v = _DEST_FIXED.unpack_from(raw)
        if v[0::2] == _DEST_FIXED_HEADERS:
            rest = parse_attrs(raw[_DEST_FIXED.size :])
            return DestCounters(v[19], v[21], v[23], _stats_of(rest, IPVS_DEST_ATTR_STATS64))
    a = parse_attrs(raw)
    return DestCounters(
        _u32(a[IPVS_DEST_ATTR_ACTIVE_CONNS]) if IPVS_DEST_ATTR_ACTIVE_CONNS in a else 0,
        _u32(a[IPVS_DEST_ATTR_INACT_CONNS]) if IPVS_DEST_ATTR_INACT_CONNS in a else 0,
        _u32(a[IPVS_DEST_ATTR_PERSIST_CONNS]) if IPVS_DEST_ATTR_PERSIST_CONNS in a else 0,
        _stats_of(a, IPVS_DEST_ATTR_STATS64),
    )


def decode_service_stats(raw: memoryview) -> Stats:
    """The stats of one IPVS_CMD_ATTR_SERVICE payload (its settings are not decoded)."""
    return _stats_of(parse_attrs(raw), IPVS_SVC_ATTR_STATS64)


def _stats_of(a: dict[int, memoryview], stats64: int) -> Stats:
    # STATS64 is STATS + 2 for services and real servers alike.
    if stats64 in a:
        return decode_stats(a[stats64], wide=True)
    if stats64 - 2 in a:
        return decode_stats(a[stats64 - 2], wide=False)
    return Stats()


_STATS_TYPES = frozenset({IPVS_SVC_ATTR_STATS, IPVS_SVC_ATTR_STATS64})


def service_fingerprint(raw: memoryview) -> bytes:
    """The bytes of an IPVS_CMD_ATTR_SERVICE payload that say its settings: all of it up to
    the stats, which ip_vs_genl_fill_service() writes last. Anything after a stats attribute
    that is not one keeps the whole payload (then the counters defeat the cache: slower, never
    wrong)."""
    offset = 0
    end = len(raw)
    stats_at = -1
    while offset + 4 <= end:
        length, atype = _NLA.unpack_from(raw, offset)
        if length < 4:
            break
        if atype & NLA_TYPE_MASK in _STATS_TYPES:
            if stats_at < 0:
                stats_at = offset
        elif stats_at >= 0:
            return bytes(raw)
        offset += (length + 3) & ~3
    return bytes(raw[:stats_at] if stats_at >= 0 else raw)


# The settings bytes of a real server in ip_vs_genl_fill_dest()'s layout (_DEST_FIXED): the
# nine setting attributes, the three connection-count headers without their values (they
# change with traffic), ADDR_FAMILY. Stats follow and are left out.
_DEST_FINGERPRINT = struct.Struct("=88s4x4s4x4s4x8s")


def dest_fingerprint(raw: memoryview, parts: list[bytes]) -> None:
    """Append the bytes of an IPVS_CMD_ATTR_DEST payload that say its settings (see above) to
    ``parts``; another layout appends the whole payload (counters included: it then never
    matches twice). A kind byte first, and a length for a whole payload, so that joined parts
    of different real servers can never read alike."""
    if len(raw) >= _DEST_FIXED.size:
        parts.append(b"\1")
        parts.extend(_DEST_FINGERPRINT.unpack_from(raw))
    else:
        parts.append(b"\2" + _U32.pack(len(raw)))
        parts.append(bytes(raw))


class DumpDecoder:
    """Decodes a table dump, reusing what the previous dump decoded when its bytes are equal.

    A no-drift pass then hashes and compares bytes instead of building tens of thousands of
    objects: a service whose settings bytes (``service_fingerprint``) and real servers' bytes
    (``dest_fingerprint``) equal the previous dump's is the very same ``VirtualService``
    object, and when every service is, the very same ``Table`` (which ``plan.PlanMemo`` then
    recognises). Counters are never part of a fingerprint: they change with traffic and are
    decoded apart, only when asked. Equal bytes decode to equal values, so this is exact: any
    change the kernel reports, whoever made it, changes the bytes and is decoded afresh.

    Pure: the socket feeds it payloads. Entries live one dump: what a dump did not see again
    (a deleted service) is forgotten.

    A spread dump (``carry``) asks the kernel for the real servers of only about half the
    services of a large table: IPVS answers one dump per service, and at 10,000 services
    those answers are most of a pass. Every other service, in dump order, takes the real
    servers the previous dump read for it, and only when that dump did read them (never two
    carries in a row: each service's real servers are read at least every second dump), its
    settings bytes are unchanged and nothing was written to it since (``touch``). Drift
    made by hand in a carried service is then seen by the next dump instead of this one.
    """

    def __init__(self) -> None:
        self._services: dict[bytes, VirtualService] = {}
        self._next_services: dict[bytes, VirtualService] = {}
        self._full: dict[ServiceKey, tuple[VirtualService, bytes, VirtualService]] = {}
        self._next_full: dict[ServiceKey, tuple[VirtualService, bytes, VirtualService]] = {}
        # Whose real servers the previous dump read from the kernel (not carried), and the
        # payloads it read (only a dump with counters keeps them, for the next one's).
        self._read: set[ServiceKey] = set()
        self._next_read: set[ServiceKey] = set()
        self._raws: dict[ServiceKey, Sequence[memoryview]] = {}
        self._next_raws: dict[ServiceKey, Sequence[memoryview]] = {}
        self._touched: set[ServiceKey] = set()
        self._counters = False
        self._table = Table()
        self._order: list[VirtualService] = []
        self.dumps = 0  # dumps begun: the parity that picks which half a spread dump carries
        self.decoded = 0  # services decoded afresh in the last dump (for tests and benchmarks)
        self.servers_read = 0  # services whose real servers the last dump asked the kernel for

    def begin(self, *, counters: bool = False) -> None:
        """A dump starts; ``counters``: its real servers' payloads are kept for their counters
        (a later dump with counters may carry only what one with counters read)."""
        self._next_services = {}
        self._next_full = {}
        self._next_read = set()
        self._next_raws = {}
        self._counters = counters
        self._order = []
        self.dumps += 1
        self.decoded = 0
        self.servers_read = 0

    def touch(self, keys: Iterable[ServiceKey]) -> None:
        """These services are being written to: the next dump reads their real servers."""
        self._touched.update(keys)

    def carry(
        self, index: int, base: VirtualService
    ) -> tuple[VirtualService, Sequence[memoryview]] | None:
        """In a spread dump, before asking the kernel for the real servers of ``base`` (the
        ``index``-th service of the dump): whether the previous dump's may stand in for them.
        If so they are this dump's, and the service with them is returned with the payloads
        they came from (none when this dump keeps no counters). None: dump them and call
        ``servers``."""
        key = base.key
        if (index + self.dumps) % 2 == 0 or key not in self._read or key in self._touched:
            return None
        known = self._full.get(key)
        if known is None or known[0] is not base:
            return None  # its settings changed (or it is new): read all of it
        raws: Sequence[memoryview] = ()
        if self._counters:
            kept = self._raws.get(key)
            if kept is None:
                return None  # read by a dump without counters: nothing to count from
            raws = self._next_raws[key] = kept
        self._next_full[key] = known
        self._order.append(known[2])
        return known[2], raws

    def service(self, raw: memoryview) -> VirtualService:
        """An IPVS_CMD_ATTR_SERVICE payload -> the service without real servers."""
        fp = service_fingerprint(raw)
        svc = self._services.get(fp)
        if svc is None:
            svc = decode_service(raw, with_stats=False)[0]
        self._next_services[fp] = svc
        return svc

    def servers(self, base: VirtualService, raws: Sequence[memoryview]) -> VirtualService:
        """``base`` with the real servers of these IPVS_CMD_ATTR_DEST payloads (dump order)."""
        parts: list[bytes] = []
        fixed, fingerprint = _DEST_FIXED.size, _DEST_FINGERPRINT.unpack_from
        for raw in raws:
            if len(raw) >= fixed:  # dest_fingerprint(), inlined: this loop is the steady state
                parts.append(b"\1")
                parts.extend(fingerprint(raw))
            else:
                dest_fingerprint(raw, parts)
        fp = b"".join(parts)
        known = self._full.get(base.key)
        if known is None or known[0] is not base or known[1] != fp:
            family = base.key.family
            servers = tuple(decode_dest(r, family, with_counters=False)[0] for r in raws)
            # (A hit keeps its old entry: no new object per service for the collector.)
            known = (base, fp, replace(base, real_servers=servers))
            self.decoded += 1
        key = base.key
        self._next_full[key] = known
        self._next_read.add(key)
        if self._counters:
            self._next_raws[key] = raws
        self.servers_read += 1
        self._order.append(known[2])
        return known[2]

    def finish(self) -> Table:
        """The dump's table: the previous one itself when every service is the same object."""
        order, previous = self._order, self._table.services
        self._services, self._full = self._next_services, self._next_full
        self._next_services, self._next_full = {}, {}
        self._read, self._raws = self._next_read, self._next_raws
        self._next_read, self._next_raws = set(), {}
        # Whatever was written before this dump has been read by it: carry() refused it.
        self._touched = set()
        if len(order) == len(previous) and all(
            a is b for a, b in zip(order, previous, strict=True)
        ):
            return self._table
        self._table = Table.of(order)
        return self._table


def decode_error(payload: memoryview, flags: int) -> tuple[int, str]:
    """NLMSG_ERROR -> (positive errno or 0, the kernel's extended-ack message or "")."""
    code = -int(_ERR.unpack_from(payload)[0])
    text = ""
    if flags & NLM_F_ACK_TLVS:
        # With NETLINK_CAP_ACK the echoed request is its header only; TLVs follow it.
        inner_len = _HDR.size
        if not flags & 0x100:  # NLM_F_CAPPED
            inner_len = _HDR.unpack_from(payload, 4)[0]
        tlvs = parse_attrs(payload[4 + ((inner_len + 3) & ~3) :])
        if NLMSGERR_ATTR_MSG in tlvs:
            text = _str(tlvs[NLMSGERR_ATTR_MSG])
    return code, text


def _sized(a: dict[int, memoryview], attr_type: int, size: int, what: str) -> memoryview | None:
    """Attribute ``attr_type`` if present, checked to hold at least ``size`` bytes."""
    v = a.get(attr_type)
    if v is not None and len(v) < size:
        raise NetlinkDecodeError(f"{what}: {len(v)} bytes, expected {size}")
    return v


def decode_daemon(attrs: memoryview) -> SyncDaemonConfig | None:
    """The attributes of one IPVS_CMD_GET_DAEMON answer -> the daemon (None: no daemon in it).

    ip_vs_genl_fill_daemon() writes STATE, MCAST_IFN, SYNC_ID, SYNC_MAXLEN, MCAST_PORT,
    MCAST_TTL and then MCAST_GROUP or MCAST_GROUP6, nested without NLA_F_NESTED.
    """
    top = parse_attrs(attrs)
    if IPVS_CMD_ATTR_DAEMON not in top:
        return None
    a = parse_attrs(top[IPVS_CMD_ATTR_DAEMON])
    state_raw = _sized(a, IPVS_DAEMON_ATTR_STATE, 4, "daemon state")
    ifn = a.get(IPVS_DAEMON_ATTR_MCAST_IFN)
    state = STATE_NAME.get(_u32(state_raw)) if state_raw is not None else None
    if state is None or ifn is None or not _str(ifn):
        return None
    syncid = _sized(a, IPVS_DAEMON_ATTR_SYNC_ID, 4, "daemon syncid")
    maxlen = _sized(a, IPVS_DAEMON_ATTR_SYNC_MAXLEN, 2, "daemon maxlen")
    group4 = _sized(a, IPVS_DAEMON_ATTR_MCAST_GROUP, 4, "daemon group")
    group6 = _sized(a, IPVS_DAEMON_ATTR_MCAST_GROUP6, 16, "daemon group6")
    port = _sized(a, IPVS_DAEMON_ATTR_MCAST_PORT, 2, "daemon port")
    ttl = _sized(a, IPVS_DAEMON_ATTR_MCAST_TTL, 1, "daemon ttl")
    group: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    if group6 is not None:
        group = ipaddress.IPv6Address(bytes(group6[:16]))
    elif group4 is not None:
        group = ipaddress.IPv4Address(bytes(group4[:4]))
    try:
        return SyncDaemonConfig(
            state=state,
            interface=_str(ifn),
            syncid=_u32(syncid) if syncid is not None else 0,
            maxlen=_u16(maxlen) if maxlen is not None else 0,
            group=group,
            port=_u16(port) if port is not None else 0,
            ttl=ttl[0] if ttl is not None else 0,
        )
    except ValueError as exc:  # e.g. a syncid above 255 set by another tool
        raise NetlinkDecodeError(f"sync daemon the kernel reported: {exc}") from None


def decode_timeouts(attrs: memoryview) -> Timeouts | None:
    """The attributes of IPVS_CMD_GET_CONFIG's answer -> the timeouts (None: none in it)."""
    a = parse_attrs(attrs)
    values = [
        _sized(a, t, 4, f"timeout attribute {t}")
        for t in (
            IPVS_CMD_ATTR_TIMEOUT_TCP,
            IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            IPVS_CMD_ATTR_TIMEOUT_UDP,
        )
    ]
    if values[0] is None:
        return None
    tcp, tcpfin, udp = (_u32(v) if v is not None else 0 for v in values)
    try:
        return Timeouts(tcp, tcpfin, udp)
    except ValueError as exc:
        raise NetlinkDecodeError(f"timeouts the kernel reported: {exc}") from None


class NetlinkDecodeError(ValueError):
    """The kernel sent something this decoder cannot read."""


# --- errors ------------------------------------------------------------------------------------


def describe_error(op: Op, code: int, kernel_text: str = "") -> IpvsError:
    """The cause of a failed op in operator words (ip_vs_ctl.c's errno conventions)."""
    svc = op.service
    is_service_op = isinstance(op, AddService | EditService | DeleteService)
    pe = svc.persistence_engine
    hints = {
        errno.ENOENT: (
            f"scheduler {svc.scheduler!r} or persistence engine {pe!r} not found "
            f"(no kernel module ip_vs_{svc.scheduler} / ip_vs_pe_{pe})"
            if pe
            else f"scheduler {svc.scheduler!r} not found (no kernel module ip_vs_{svc.scheduler})"
        )
        if is_service_op
        else "no such real server",
        errno.ESRCH: "no such service",
        errno.EEXIST: "service already exists" if is_service_op else "real server already exists",
        errno.ERANGE: "weight or thresholds out of range",
    }
    return kernel_error(str(op), code, kernel_text, hints)


# What a daemon or timeout command's errno means (ip_vs_ctl.c, ip_vs_sync.c).
_NEW_DAEMON_HINTS = {
    errno.EEXIST: "a daemon in this state is already running",
    errno.ENODEV: "no such interface in this network namespace",
}
_DEL_DAEMON_HINTS = {errno.ESRCH: "no daemon in this state is running"}
_SET_CONFIG_HINTS = {
    # ip_vs_set_timeout(): a value above INT_MAX / HZ.
    errno.EINVAL: "a timeout is out of range for this kernel",
}


def start_daemon_error(cfg: SyncDaemonConfig, code: int, kernel_text: str = "") -> IpvsError:
    """A refused IPVS_CMD_NEW_DAEMON, naming the daemon in ipvsadm -L --daemon's words."""
    subject = f"start {cfg.state} sync daemon (mcast={cfg.interface}, syncid={cfg.syncid})"
    return kernel_error(subject, code, kernel_text, _NEW_DAEMON_HINTS)


def stop_daemon_error(state: SyncRole, code: int, kernel_text: str = "") -> IpvsError:
    """A refused IPVS_CMD_DEL_DAEMON."""
    return kernel_error(f"stop {state} sync daemon", code, kernel_text, _DEL_DAEMON_HINTS)


def set_timeouts_error(timeouts: Timeouts, code: int, kernel_text: str = "") -> IpvsError:
    """A refused IPVS_CMD_SET_CONFIG."""
    t = timeouts
    subject = f"set timeouts (tcp tcpfin udp) {t.tcp} {t.tcpfin} {t.udp}"
    return kernel_error(subject, code, kernel_text, _SET_CONFIG_HINTS)


@dataclass(frozen=True, slots=True)
class OpFailure:
    op: Op
    error: IpvsError


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What happened to a list of ops: how many the kernel took, which failed and why."""

    applied: int
    failures: tuple[OpFailure, ...]
    writes: int  # requests sent to the kernel (one per op)

    @property
    def ok(self) -> bool:
        return not self.failures


# What a dump keeps of the counters until someone reads them: per service its key, its
# IPVS_CMD_ATTR_SERVICE payload, its real servers and their IPVS_CMD_ATTR_DEST payloads.
RawCounters = list[tuple[ServiceKey, memoryview, tuple[RealServer, ...], Sequence[memoryview]]]


class Snapshot:
    """A kernel dump: the table (settings only) and, apart from it, the counters.

    A dump keeps the counters' bytes and decodes them the first time ``service_stats`` or
    ``dest_counters`` is read: the reconciler dumps with counters on every pass while the
    metrics endpoint is configured, but they are only needed when Prometheus scrapes (or a
    drain is waiting for connections to end), and decoding them is most of a large dump's
    Python work. Decoding twice from two threads at once gives the same values.
    """

    __slots__ = ("_dest_counters", "_raw", "_service_stats", "table")

    def __init__(
        self,
        table: Table,
        service_stats: dict[ServiceKey, Stats],
        dest_counters: dict[tuple[ServiceKey, DestKey], DestCounters],
    ) -> None:
        self.table = table
        self._service_stats = service_stats
        self._dest_counters = dest_counters
        self._raw: RawCounters | None = None

    @classmethod
    def undecoded(cls, table: Table, raw: RawCounters) -> Snapshot:
        snap = cls(table, {}, {})
        snap._raw = raw
        return snap

    @property
    def service_stats(self) -> dict[ServiceKey, Stats]:
        self._decode()
        return self._service_stats

    @property
    def dest_counters(self) -> dict[tuple[ServiceKey, DestKey], DestCounters]:
        self._decode()
        return self._dest_counters

    def _decode(self) -> None:
        raw = self._raw
        if raw is None:
            return
        stats: dict[ServiceKey, Stats] = {}
        counters: dict[tuple[ServiceKey, DestKey], DestCounters] = {}
        for key, svc_raw, servers, dests in raw:
            stats[key] = decode_service_stats(svc_raw)
            for rs, dest_raw in zip(servers, dests, strict=True):
                counters[(key, rs.key)] = decode_dest_counters(dest_raw)
        self._service_stats, self._dest_counters = stats, counters
        self._raw = None  # after the dicts: a reader in another thread sees them filled

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return (self.table, self.service_stats, self.dest_counters) == (
            other.table,
            other.service_stats,
            other.dest_counters,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Snapshot({len(self.table)} services)"


@dataclass(frozen=True, slots=True)
class Info:
    version: str
    conn_tab_size: int


# --- network namespaces ------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
_T = TypeVar("_T")


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def in_netns(netns: str, func: Callable[[], _T]) -> _T:
    """``func()`` run inside network namespace /run/netns/``netns``; the caller stays put.

    setns(2) switches only the calling thread, so this runs ``func`` in a thread of its own that
    ends right after: a socket ``func`` creates belongs to ``netns`` for good, and no thread of
    the caller (nor of asyncio's pool) is ever left in another namespace.
    """
    subject = f"network namespace {netns!r}"
    if not netns or "/" in netns or netns in (".", ".."):
        raise IpvsError(errno.EINVAL, subject, f"not a name under {NETNS_RUN_DIR} (EINVAL)")
    result: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(os.path.join(NETNS_RUN_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            code = exc.errno or errno.EIO
            failure.append(kernel_error(subject, code, hints={errno.ENOENT: "does not exist"}))
            return
        try:
            _setns(fd)
        except OSError as exc:
            code = exc.errno or errno.EIO
            failure.append(kernel_error(f"enter {subject}", code))
            return
        finally:
            os.close(fd)
        try:
            result.append(func())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


# --- the socket --------------------------------------------------------------------------------

# A spread dump (``IpvsNetlink.dump``) reads every real server of a table of up to this many
# services: a whole pass over them costs tens of milliseconds at most, and drift made by hand
# is seen by the very next pass. Above it the kernel's one answer per service dominates a pass
# (a generic-netlink dump round trip took 12-29 µs of system time on our machines: 10,000 of
# them are 2.4-6% of a core at the default 5 s interval, before any Python work).
SPREAD_ABOVE = 1000


class IpvsNetlink:
    """A blocking generic-netlink socket bound to the IPVS family of one network namespace.

    ``netns``: a name under /run/netns (as ``ip netns`` makes them); None is the caller's own
    namespace. The socket stays in that namespace whichever thread uses it later.
    """

    def __init__(
        self,
        *,
        netns: str | None = None,
        batch_bytes: int = 192 * 1024,
        ack_each: bool = False,
        timeout: float = 60.0,
        rcvbuf: int = 32 * 1024 * 1024,
        spread_above: int = SPREAD_ABOVE,
    ) -> None:
        self.netns = netns
        self.batch_bytes = batch_bytes
        self.ack_each = ack_each
        self.spread_above = spread_above

        def make() -> socket.socket:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)

        self._sock = make() if netns is None else in_netns(netns, make)
        try:
            self._sock.bind((0, 0))
            self._sock.settimeout(timeout)
            for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):
                    self._sock.setsockopt(SOL_NETLINK, opt, 1)
            for opt, size in ((SO_RCVBUFFORCE, rcvbuf), (SO_SNDBUFFORCE, 4 * batch_bytes)):
                # Without root the ordinary (smaller) limits apply.
                with contextlib.suppress(OSError):
                    self._sock.setsockopt(socket.SOL_SOCKET, opt, size)
            self._buf = bytearray(1 << 20)
            self._decoder = DumpDecoder()
            self._seq = 0
            self.family_id = self._resolve_family()
        except BaseException:
            self._sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> IpvsNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _recv(self) -> memoryview:
        n = self._sock.recv_into(self._buf)
        return memoryview(self._buf)[:n]

    def _resolve_family(self) -> int:
        seq = self._next_seq()
        attrs = nla(CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME.encode() + b"\0")
        length = _HDR.size + _GENL.size + len(attrs)
        msg = (
            _HDR.pack(length, GENL_ID_CTRL, NLM_F_REQUEST, seq, 0)
            + _GENL.pack(CTRL_CMD_GETFAMILY, 1, 0)
            + attrs
        )
        self._sock.send(msg)
        for mtype, flags, rseq, payload in iter_messages(self._recv()):
            if rseq != seq:
                continue
            if mtype == NLMSG_ERROR:
                code, text = decode_error(payload, flags)
                raise family_error(code, text)
            a = parse_attrs(payload[_GENL.size :])
            return _u16(a[CTRL_ATTR_FAMILY_ID])
        raise IpvsError(
            errno.EPROTO, "IPVS generic netlink family", "no answer from the kernel (EPROTO)"
        )

    # -- requests with one answer ----------------------------------------------------------

    def _request(
        self,
        cmd: int,
        attrs: bytes = b"",
        subject: str = "",
        describe: Callable[[int, str], IpvsError] | None = None,
    ) -> list[memoryview]:
        """Send one request with NLM_F_ACK; return the payloads of the answer before the ack.

        A refusal raises ``describe(errno, kernel_text)``, or a plain error about ``subject``.
        """
        seq = self._next_seq()
        self._sock.send(encode_message(self.family_id, cmd, NLM_F_REQUEST | NLM_F_ACK, seq, attrs))
        out: list[memoryview] = []
        while True:
            for mtype, flags, rseq, payload in iter_messages(self._recv()):
                if rseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code, text = decode_error(payload, flags)
                    if code:
                        if describe is not None:
                            raise describe(code, text)
                        raise kernel_error(subject or f"IPVS command {cmd}", code, text)
                    return out
                out.append(memoryview(bytes(payload)))

    def info(self) -> Info:
        payloads = self._request(IPVS_CMD_GET_INFO, subject="IPVS info")
        a = parse_attrs(payloads[0][_GENL.size :])
        v = _u32(a[IPVS_INFO_ATTR_VERSION])
        return Info(
            version=f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}",
            conn_tab_size=_u32(a[IPVS_INFO_ATTR_CONN_TAB_SIZE]),
        )

    def zero(self, service: ServiceKey | None = None) -> None:
        """Zero the counters of one service (and its real servers) or of all services."""
        attrs = b""
        subject = "zero all counters"
        if service is not None:
            attrs = nla_nested(IPVS_CMD_ATTR_SERVICE, encode_service_key(service))
            subject = f"zero counters of service {service}"
        self._request(IPVS_CMD_ZERO, attrs, subject)

    def flush(self) -> None:
        """Delete every service. Only on explicit request: it drops every connection's service."""
        self._request(IPVS_CMD_FLUSH, subject="flush")

    # -- sync daemons and timeouts ------------------------------------------------------

    def start_daemon(self, cfg: SyncDaemonConfig) -> None:
        """``ipvsadm --start-daemon``: start the master or backup sync daemon."""
        describe = functools.partial(start_daemon_error, cfg)
        self._request(IPVS_CMD_NEW_DAEMON, encode_daemon(cfg), describe=describe)

    def stop_daemon(self, state: SyncRole) -> None:
        """``ipvsadm --stop-daemon``: stop the master or backup sync daemon."""
        describe = functools.partial(stop_daemon_error, state)
        self._request(IPVS_CMD_DEL_DAEMON, encode_daemon_state(state), describe=describe)

    def get_daemons(self) -> list[SyncDaemonConfig]:
        """The running sync daemons, master first (``ipvsadm -L --daemon``)."""
        subject = "list sync daemons"
        out: list[SyncDaemonConfig] = []
        try:
            for payload in self._dump(IPVS_CMD_GET_DAEMON, b"", subject):
                daemon = decode_daemon(payload)
                if daemon is not None:
                    out.append(daemon)
        except NetlinkDecodeError as exc:
            raise _unreadable(subject, exc) from None
        return out

    def set_timeouts(self, timeouts: Timeouts) -> None:
        """``ipvsadm --set tcp tcpfin udp`` (0 leaves that timeout as it is)."""
        describe = functools.partial(set_timeouts_error, timeouts)
        self._request(IPVS_CMD_SET_CONFIG, encode_timeouts(timeouts), describe=describe)

    def get_timeouts(self) -> Timeouts:
        """The global timeouts (``ipvsadm -L --timeout``)."""
        subject = "read timeouts"
        try:
            for payload in self._request(IPVS_CMD_GET_CONFIG, subject=subject):
                found = decode_timeouts(payload[_GENL.size :])
                if found is not None:
                    return found
        except NetlinkDecodeError as exc:
            raise _unreadable(subject, exc) from None
        raise IpvsError(errno.ENODATA, subject, "no timeouts in the kernel's answer (ENODATA)")

    # -- dumps ------------------------------------------------------------------------------

    def _dump(self, cmd: int, attrs: bytes, subject: str) -> Iterator[memoryview]:
        seq = self._next_seq()
        self._sock.send(encode_message(self.family_id, cmd, NLM_F_REQUEST | NLM_F_DUMP, seq, attrs))
        while True:
            view = self._recv()
            for mtype, flags, rseq, payload in iter_messages(view):
                if rseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    code, text = decode_error(payload, flags)
                    if code:
                        raise kernel_error(subject, code, text)
                    return
                yield payload[_GENL.size :]

    def _dump_attrs(
        self, cmd: int, attrs: bytes, attr_type: int, service: ServiceKey | None = None
    ) -> list[memoryview]:
        """The ``attr_type`` attribute of every answer of a dump (IPVS's dump answers hold that
        one attribute), each a view of a copy of its datagram: the receive buffer is reused by
        the next read. An error names ``service`` (or the whole table)."""
        seq = self._next_seq()
        self._sock.send(encode_message(self.family_id, cmd, NLM_F_REQUEST | NLM_F_DUMP, seq, attrs))
        out: list[memoryview] = []
        start = _HDR.size + _GENL.size
        head, nla_header = _HDR.unpack_from, _NLA.unpack_from
        while True:
            n = self._sock.recv_into(self._buf)
            view = memoryview(self._buf[:n])
            offset = 0
            while offset + _HDR.size <= n:
                length, mtype, flags, rseq, _pid = head(view, offset)
                if length < _HDR.size or offset + length > n:
                    raise NetlinkDecodeError(f"bad nlmsg length {length} at offset {offset}")
                if rseq == seq:
                    if mtype == NLMSG_DONE:
                        return out
                    if mtype == NLMSG_ERROR:
                        code, text = decode_error(view[offset + _HDR.size : offset + length], flags)
                        if code:
                            subject = (
                                "dump services" if service is None else f"dump service {service}"
                            )
                            raise kernel_error(subject, code, text)
                        return out
                    # The one attribute read in place (the slower lookup for anything else).
                    at = offset + start
                    if at + 4 <= offset + length:
                        alen, atype = nla_header(view, at)
                        fits = alen >= 4 and at + alen <= offset + length
                        if atype & NLA_TYPE_MASK == attr_type and fits:
                            out.append(view[at + 4 : at + alen])
                        else:
                            found = parse_attrs(view[at : offset + length]).get(attr_type)
                            if found is not None:
                                out.append(found)
                offset += (length + 3) & ~3

    def dump(self, *, counters: bool = True, spread: bool = False) -> Snapshot:
        """The kernel's whole table with 64-bit stats, rates and connection counts.

        ``counters=False`` leaves them out (the reconciler only compares settings); with
        them they are decoded when first read (``Snapshot``). The settings are decoded by this
        socket's ``DumpDecoder``: what did not change since the previous dump is not decoded
        again, so a dump of an unchanged table costs the kernel's answers and a comparison of
        their bytes.

        ``spread``: on a table of more than ``SPREAD_ABOVE`` services, about half of them
        keep the real servers the previous dump read (``DumpDecoder.carry``: never twice in a
        row, never after a write to them), and their counters are that dump's. A service's
        own settings and counters are read every time.
        """
        decoder = self._decoder
        decoder.begin(counters=counters)
        services = [
            (decoder.service(raw), raw)
            for raw in self._dump_attrs(IPVS_CMD_GET_SERVICE, b"", IPVS_CMD_ATTR_SERVICE)
        ]
        spreading = spread and len(services) > self.spread_above
        raw_counters: RawCounters = []
        for index, (base, svc_raw) in enumerate(services):
            key = base.key
            carried = decoder.carry(index, base) if spreading else None
            if carried is not None:
                if counters:
                    full, kept = carried
                    raw_counters.append((key, svc_raw, full.real_servers, kept))
                continue
            try:
                raws = self._dump_attrs(
                    IPVS_CMD_GET_DEST, _service_key_nest(key), IPVS_CMD_ATTR_DEST, key
                )
            except IpvsError as exc:
                # Deleted between the two dumps: it is simply not there any more.
                if exc.errno != errno.ESRCH:
                    raise
                continue
            full = decoder.servers(base, raws)
            if counters:
                raw_counters.append((key, svc_raw, full.real_servers, raws))
        table = decoder.finish()
        return Snapshot.undecoded(table, raw_counters) if counters else Snapshot(table, {}, {})

    # -- writes -----------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op]) -> ApplyResult:
        """Send every op, pipelined in batches; one failing op never stops the others."""
        # Failed or not, the next dump reads these services' real servers afresh.
        self._decoder.touch(op.service.key for op in ops)
        failures: list[OpFailure] = []
        i = 0
        n = len(ops)
        fam = self.family_id
        while i < n:
            batch: list[tuple[int, int, bytes]] = []
            size = 0
            pending: dict[int, Op] = {}
            while i < n and size < self.batch_bytes:
                op = ops[i]
                seq = self._next_seq()
                cmd, attrs = encode_op_attrs(op)
                batch.append((seq, cmd, attrs))
                size += len(attrs) + 20
                pending[seq] = op
                i += 1
            # Without ack_each only the batch's last request asks for an ack: errors of the
            # others are reported anyway and are queued before that ack (see module docstring).
            last_seq = batch[-1][0]
            flags = NLM_F_REQUEST | (NLM_F_ACK if self.ack_each else 0)
            data = b"".join(
                encode_message(fam, cmd, flags | (NLM_F_ACK if seq == last_seq else 0), seq, at)
                for seq, cmd, at in batch
            )
            self._send_batch(data, pending, last_seq, failures)
        return ApplyResult(applied=n - len(failures), failures=tuple(failures), writes=n)

    def _send_batch(
        self, data: bytes, pending: dict[int, Op], last_seq: int, failures: list[OpFailure]
    ) -> None:
        try:
            self._sock.send(data)
        except OSError as exc:
            code = exc.errno or errno.EIO
            failures.extend(
                OpFailure(op, IpvsError(code, str(op), f"send failed: {os.strerror(code)}"))
                for op in pending.values()
            )
            return
        answered: set[int] = set()
        done = False
        while not done:
            try:
                view = self._recv()
            except OSError as exc:
                # ENOBUFS: acks were dropped (receive buffer overrun); the outcome of the
                # unanswered ops is unknown, so they count as failed and the next pass re-dumps.
                code = exc.errno or errno.ETIMEDOUT
                for seq, op in pending.items():
                    if seq not in answered:
                        failures.append(
                            OpFailure(op, IpvsError(code, str(op), "no answer from the kernel"))
                        )
                return
            for mtype, flags, seq, payload in iter_messages(view):
                if mtype != NLMSG_ERROR or seq not in pending:
                    continue
                answered.add(seq)
                code, text = decode_error(payload, flags)
                if code:
                    failures.append(
                        OpFailure(pending[seq], describe_error(pending[seq], code, text))
                    )
                if seq == last_seq or (self.ack_each and len(answered) == len(pending)):
                    done = True


def family_error(code: int, kernel_text: str = "") -> IpvsError:
    """Why the "IPVS" generic-netlink family could not be resolved.

    The controller answers ENOENT for a family nobody registered: the ip_vs module is not
    loaded (or the kernel has none). That is ``IpvsUnavailable``, for callers that carry on
    without IPVS or tell the operator to load it.
    """
    if code == errno.ENOENT:
        return IpvsUnavailable(code)
    return kernel_error("IPVS generic netlink family", code, kernel_text)


def _unreadable(subject: str, exc: NetlinkDecodeError) -> IpvsError:
    return IpvsError(errno.EPROTO, subject, f"unreadable answer from the kernel: {exc} (EPROTO)")


class AsyncIpvs:
    """The asyncio face of ``IpvsNetlink``: each call runs in a worker thread, one at a time.

    One socket serves the reconciler, the sync-daemon controller (``SyncDaemonBackend``) and the
    timeout commands; the lock keeps a daemon or timeout command from interleaving with a dump.
    A caller that gives up waiting (``asyncio.wait_for``) releases the asyncio lock, but its
    worker thread cannot be stopped and goes on using the socket: a second lock, taken in
    the worker, keeps the next call's thread off the socket until that one is done.
    """

    def __init__(self, nl: IpvsNetlink) -> None:
        self._nl = nl
        self._lock = asyncio.Lock()
        self._socket_lock = threading.Lock()

    def _locked(self, call: Callable[[], _T]) -> _T:
        with self._socket_lock:
            return call()

    async def _run(self, call: Callable[[], _T]) -> _T:
        async with self._lock:
            return await asyncio.to_thread(self._locked, call)

    @classmethod
    async def open(cls, *, netns: str | None = None, **kwargs: object) -> AsyncIpvs:
        """Open the socket (in ``netns``, a name under /run/netns, if given) off the loop."""
        nl = await asyncio.to_thread(
            lambda: IpvsNetlink(netns=netns, **kwargs)  # type: ignore[arg-type]
        )
        return cls(nl)

    @property
    def sync(self) -> IpvsNetlink:
        return self._nl

    async def snapshot(self, *, spread: bool = False) -> Snapshot:
        return await self._run(functools.partial(self._nl.dump, spread=spread))

    async def dump(self, *, spread: bool = False) -> Table:
        """The table without counters: what the reconciler compares."""
        snap = await self._run(functools.partial(self._nl.dump, counters=False, spread=spread))
        return snap.table

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        return await self._run(functools.partial(self._nl.apply, ops))

    async def info(self) -> Info:
        return await self._run(self._nl.info)

    async def zero(self, service: ServiceKey | None = None) -> None:
        await self._run(functools.partial(self._nl.zero, service))

    async def flush(self) -> None:
        await self._run(self._nl.flush)

    async def start_daemon(self, cfg: SyncDaemonConfig) -> None:
        await self._run(functools.partial(self._nl.start_daemon, cfg))

    async def stop_daemon(self, state: SyncRole) -> None:
        await self._run(functools.partial(self._nl.stop_daemon, state))

    async def get_daemons(self) -> list[SyncDaemonConfig]:
        return await self._run(self._nl.get_daemons)

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        await self._run(functools.partial(self._nl.set_timeouts, timeouts))

    async def get_timeouts(self) -> Timeouts:
        return await self._run(self._nl.get_timeouts)

    def close(self) -> None:
        self._nl.close()
