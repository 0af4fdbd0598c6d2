"""IPVS netlink encoding as golden bytes, decoding of hand-made dump replies, error texts.

The expected bytes are written out by hand from include/uapi/linux/ip_vs.h and netlink(7):
nlmsghdr {u32 len, u16 type, u16 flags, u32 seq, u32 pid}, genlmsghdr {u8 cmd, u8 version,
u16 reserved}, attributes {u16 len, u16 type} + payload padded to 4 bytes, nested attributes
with NLA_F_NESTED (0x8000) set in the type. x86-64 is little-endian; ports are big-endian.
Golden files live in tests/fixtures/ipvs/ (one hex dump per message, comments with '#').
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from pathlib import Path
from socket import AF_INET6

import pytest
from pyroute2.netlink.generic.ipvs import ipvsmsg

from hacontrol.ipvs.model import (
    ForwardingMethod,
    RealServer,
    ServiceKey,
    TunnelFlags,
    TunnelType,
    VirtualService,
)
from hacontrol.ipvs.netlink import (
    NLM_F_ACK_TLVS,
    IpvsError,
    IpvsNetlink,
    NetlinkDecodeError,
    Stats,
    _decode_dest_fast,
    decode_dest,
    decode_error,
    decode_service,
    describe_error,
    encode_op,
    in_netns,
    iter_messages,
    parse_attrs,
)
from hacontrol.ipvs.plan import AddDest, AddService, DeleteService, EditDest, EditService

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ipvs"
FAMILY = 0x1C  # a dynamic genetlink family id, as the kernel would hand out


def golden(name: str) -> bytes:
    text = (FIXTURES / f"{name}.hex").read_text()
    return bytes.fromhex(" ".join(line.split("#", 1)[0] for line in text.splitlines()))


def rs(addr: str, port: int | None = None, **kw: object) -> RealServer:
    return RealServer(ipaddress.ip_address(addr), port, **kw)  # type: ignore[arg-type]


WEB = VirtualService(ServiceKey.of("tcp", "192.0.2.1", 80), scheduler="rr")
V6 = VirtualService(
    ServiceKey.of("tcp", "2001:db8::1", 80),
    scheduler="wlc",
    persistence_timeout=300,
    persistence_netmask=64,
    persistence_engine="sip",
)


def test_service_add_golden() -> None:
    assert encode_op(AddService(WEB), FAMILY, 1) == golden("service_add_tcp4_rr")


def test_service_add_ipv6_persistent_golden() -> None:
    # The IPv6 netmask is a prefix length in host order (ip_vs_ctl.c), not a mask.
    assert encode_op(AddService(V6), FAMILY, 2) == golden("service_add_tcp6_persistent_sip")


def test_service_edit_uses_set_service() -> None:
    edited = encode_op(EditService(WEB, WEB), FAMILY, 1)
    added = golden("service_add_tcp4_rr")
    # Same attributes; only the command differs: IPVS_CMD_SET_SERVICE (2), not DEL (3).
    assert edited[16] == 2
    assert edited[:16] == added[:16] and edited[17:] == added[17:]


def test_service_delete_fwmark_golden() -> None:
    svc = VirtualService(ServiceKey.of_fwmark(7))
    assert encode_op(DeleteService(svc), FAMILY, 3) == golden("service_del_fwmark7")


def test_dest_add_golden() -> None:
    dest = rs(
        "198.51.100.1",
        8080,
        forwarding=ForwardingMethod.NAT,
        weight=3,
        upper_threshold=100,
        lower_threshold=10,
    )
    assert encode_op(AddDest(WEB, dest), FAMILY, 4) == golden("dest_add_nat")


def test_dest_edit_tunnel_golden() -> None:
    svc = VirtualService(ServiceKey.of("tcp", "2001:db8::1", 80))
    dest = rs(
        "198.51.100.6",
        forwarding=ForwardingMethod.TUN,
        tunnel_type=TunnelType.GUE,
        tunnel_port=6080,
        tunnel_flags=TunnelFlags.CSUM,
    )
    svc = VirtualService(svc.key, real_servers=(dest,))
    dest = svc.real_servers[0]
    assert encode_op(EditDest(svc, dest, dest), FAMILY, 5) == golden("dest_set_tun_gue_csum")


def test_without_ack_only_the_flag_differs() -> None:
    with_ack = encode_op(AddService(WEB), FAMILY, 1)
    without = encode_op(AddService(WEB), FAMILY, 1, ack=False)
    assert struct.unpack_from("=H", with_ack, 6)[0] == 0x5  # NLM_F_REQUEST | NLM_F_ACK
    assert struct.unpack_from("=H", without, 6)[0] == 0x1
    assert with_ack[8:] == without[8:]


def test_pyroute2_reads_our_messages_the_same_way() -> None:
    # A second, independent decoder: pyroute2's own IPVS message class.
    dest = rs("198.51.100.1", 8080, forwarding=ForwardingMethod.NAT, weight=3)
    msg = ipvsmsg(encode_op(AddDest(WEB, dest), FAMILY, 4))
    msg.decode()
    assert msg["cmd"] == 5 and msg["version"] == 1
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert svc.get_attr("IPVS_SVC_ATTR_PORT") == 80
    assert svc.get_attr("IPVS_SVC_ATTR_PROTOCOL") == 6
    d = msg.get_attr("IPVS_CMD_ATTR_DEST")
    assert d.get_attr("IPVS_DEST_ATTR_PORT") == 8080
    assert d.get_attr("IPVS_DEST_ATTR_WEIGHT") == 3
    assert d.get_attr("IPVS_DEST_ATTR_FWD_METHOD") == 0
    add = ipvsmsg(encode_op(AddService(WEB), FAMILY, 1))
    add.decode()
    s = add.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert s.get_attr("IPVS_SVC_ATTR_SCHED_NAME") == "rr"
    assert s.get_attr("IPVS_SVC_ATTR_NETMASK") == "255.255.255.255"


# --- decoding hand-made kernel replies ------------------------------------------------------


def attr(t: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, t) + payload + b"\0" * (-n & 3)


def stats64(*values: int) -> bytes:
    out = b""
    for i, v in enumerate(values, start=1):
        out += attr(i, struct.pack("=Q", v))
    return out + attr(11, b"\0\0\0\0")  # IPVS_STATS_ATTR_PAD, as nla_put_u64_64bit adds


def test_decode_service_from_a_dump() -> None:
    payload = (
        attr(1, struct.pack("=H", AF_INET6))
        + attr(2, struct.pack("=H", 17))
        + attr(3, ipaddress.IPv6Address("2001:db8::1").packed)
        + attr(4, struct.pack("!H", 53))
        + attr(6, b"mh\0")
        + attr(7, struct.pack("=II", 0x1 | 0x2 | 0x4 | 0x10, 0xFFFFFFFF))  # + HASHED
        + attr(8, struct.pack("=I", 120))
        + attr(9, struct.pack("=I", 48))
        + attr(11, b"sip\0")
        + attr(10, attr(1, struct.pack("=I", 1)))  # the old 32-bit stats: ignored when 64 exist
        + attr(12 | 0x8000, stats64(2**40, 5, 6, 7, 8, 9, 10, 11, 12, 13))
    )
    svc, stats = decode_service(memoryview(payload))
    assert svc.key == ServiceKey.of("udp", "2001:db8::1", 53)
    assert svc.scheduler == "mh"
    assert svc.sched_flags == {"mh-port"}
    assert svc.one_packet
    assert svc.persistence_timeout == 120
    assert svc.persistence_netmask == 48
    assert svc.persistence_engine == "sip"
    assert stats == Stats(2**40, 5, 6, 7, 8, 9, 10, 11, 12, 13)


def test_decode_fwmark_service_and_non_persistent_normalisation() -> None:
    payload = (
        attr(1, struct.pack("=H", 2))
        + attr(5, struct.pack("=I", 9))
        + attr(6, b"rr\0")
        + attr(7, struct.pack("=II", 0x2, 0xFFFFFFFF))
        + attr(8, struct.pack("=I", 300))  # a stale timeout without the persistent flag
        + attr(9, b"\xff\xff\xff\x00")
    )
    svc, _ = decode_service(memoryview(payload))
    assert svc.key == ServiceKey.of_fwmark(9)
    assert svc.persistence_timeout is None and svc.persistence_netmask is None
    assert svc.settings() == VirtualService(ServiceKey.of_fwmark(9), scheduler="rr").settings()


def test_decode_dest_with_counters() -> None:
    payload = (
        attr(1, ipaddress.IPv4Address("198.51.100.7").packed + b"\0" * 12)
        + attr(2, struct.pack("!H", 80))
        + attr(3, struct.pack("=I", 2))
        + attr(4, struct.pack("=I", 9))
        + attr(5, struct.pack("=I", 50))
        + attr(6, struct.pack("=I", 5))
        + attr(7, struct.pack("=I", 11))
        + attr(8, struct.pack("=I", 22))
        + attr(9, struct.pack("=I", 33))
        + attr(11, struct.pack("=H", 2))
        + attr(12 | 0x8000, stats64(1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
        + attr(13, b"\x02")
        + attr(14, struct.pack("!H", 0))
        + attr(15, struct.pack("=H", 1))
    )
    dest, c = decode_dest(memoryview(payload), AF_INET6)
    assert dest == RealServer(
        ipaddress.IPv4Address("198.51.100.7"),
        80,
        ForwardingMethod.TUN,
        9,
        50,
        5,
        TunnelType.GRE,
        0,
        TunnelFlags.CSUM,
    )
    assert (c.active_conns, c.inact_conns, c.persist_conns) == (11, 22, 33)
    assert c.stats.outbps == 10


def test_iter_messages_and_malformed_input() -> None:
    m1 = struct.pack("=IHHII", 20, 3, 2, 7, 0) + b"\0\0\0\0"
    m2 = struct.pack("=IHHII", 18, 2, 0, 8, 0) + b"ab" + b"\0\0"
    got = [(t, f, s, bytes(p)) for t, f, s, p in iter_messages(m1 + m2)]
    assert got == [(3, 2, 7, b"\0\0\0\0"), (2, 0, 8, b"ab")]
    with pytest.raises(NetlinkDecodeError):
        list(iter_messages(struct.pack("=IHHII", 99, 3, 0, 1, 0)))
    with pytest.raises(NetlinkDecodeError):
        parse_attrs(memoryview(struct.pack("=HH", 40, 1)))


def test_decode_error_with_extended_ack() -> None:
    # NLMSG_ERROR payload: int error, the (capped) request header, then NLMSGERR_ATTR_MSG.
    inner = struct.pack("=IHHII", 100, FAMILY, 5, 42, 0)
    payload = struct.pack("=i", -errno.EINVAL) + inner + attr(1, b"bad thing\0")
    code, text = decode_error(memoryview(payload), NLM_F_ACK_TLVS | 0x100)
    assert (code, text) == (errno.EINVAL, "bad thing")
    assert decode_error(memoryview(struct.pack("=i", 0) + inner), 0x100) == (0, "")


def test_error_texts_name_object_and_cause() -> None:
    bad = VirtualService(ServiceKey.of("tcp", "192.0.2.21", 80), scheduler="twos")
    e = describe_error(AddService(bad), errno.ENOENT)
    assert str(e) == (
        "add service TCP 192.0.2.21:80: scheduler 'twos' not found "
        "(no kernel module ip_vs_twos) (ENOENT)"
    )
    assert e.errno == errno.ENOENT and e.errno_name == "ENOENT"
    d = rs("198.51.100.1")
    svc = VirtualService(WEB.key, real_servers=(d,))
    d = svc.real_servers[0]
    assert "no such service (ESRCH)" in str(describe_error(AddDest(svc, d), errno.ESRCH))
    assert "real server already exists" in str(describe_error(AddDest(svc, d), errno.EEXIST))
    assert "no such real server" in str(describe_error(EditDest(svc, d, d), errno.ENOENT))
    assert str(describe_error(AddDest(svc, d), errno.ERANGE)).startswith(
        "add real server 198.51.100.1:80 to service TCP 192.0.2.1:80: weight or thresholds"
    )


@pytest.mark.parametrize("name", ["", "a/b", "..", ".", "/run/netns/x"])
def test_netns_must_be_a_name_under_run_netns(name: str) -> None:
    # Refused before any thread, file or socket is made.
    called: list[bool] = []
    with pytest.raises(IpvsError) as err:
        in_netns(name, lambda: called.append(True))
    assert err.value.errno == errno.EINVAL
    assert str(err.value) == f"network namespace {name!r}: not a name under /run/netns (EINVAL)"
    assert called == []
    with pytest.raises(IpvsError):
        IpvsNetlink(netns=name)


def kernel_order_dest(weight: int) -> bytes:
    # ip_vs_genl_fill_dest()'s order (Linux 5.3+), which decode_dest reads in one unpack.
    return (
        attr(1, ipaddress.IPv4Address("198.51.100.7").packed + b"\0" * 12)
        + attr(2, struct.pack("!H", 8080))
        + attr(3, struct.pack("=I", 2))
        + attr(4, struct.pack("=I", weight))
        + attr(13, b"\x01")
        + attr(14, struct.pack("!H", 6080))
        + attr(15, struct.pack("=H", 2))
        + attr(5, struct.pack("=I", 50))
        + attr(6, struct.pack("=I", 5))
        + attr(7, struct.pack("=I", 11))
        + attr(8, struct.pack("=I", 22))
        + attr(9, struct.pack("=I", 33))
        + attr(11, struct.pack("=H", 2))
        + attr(10 | 0x8000, attr(1, struct.pack("=I", 1)))
        + attr(12 | 0x8000, b"".join(attr(i, struct.pack("=Q", i * 1000)) for i in range(1, 11)))
    )


def test_fast_and_generic_dest_decoding_agree() -> None:
    raw = kernel_order_dest(9)
    assert _decode_dest_fast(memoryview(raw), 2, True) is not None  # one unpack, no loop
    fast, fast_c = decode_dest(memoryview(raw), 2)
    # The same attributes in another order take the generic path.
    chunks = list(iter_attrs(raw))
    generic, generic_c = decode_dest(memoryview(b"".join(reversed(chunks))), 2)
    assert fast == generic
    assert fast_c == generic_c
    assert fast.tunnel_type == TunnelType.GUE and fast.tunnel_port == 6080
    assert fast.tunnel_flags == TunnelFlags.REMCSUM and fast.port == 8080
    assert (fast_c.active_conns, fast_c.inact_conns, fast_c.persist_conns) == (11, 22, 33)
    assert fast_c.stats == Stats(*(i * 1000 for i in range(1, 11)))
    bare, counters = decode_dest(memoryview(raw), 2, with_counters=False)
    assert bare == fast and counters.stats == Stats()
    # A weight the kernel holds as a negative int reads back negative (and fails validation).
    assert decode_dest(memoryview(kernel_order_dest(0xFFFFFFFF)), 2)[0].weight == -1


def iter_attrs(raw: bytes) -> list[bytes]:
    out, off = [], 0
    while off < len(raw):
        n = struct.unpack_from("=H", raw, off)[0]
        step = (n + 3) & ~3
        out.append(raw[off : off + step])
        off += step
    return out
