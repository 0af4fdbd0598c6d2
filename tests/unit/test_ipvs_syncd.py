"""Sync daemon / timeouts: wire bytes, parsing, errors, ipvsadm-exact formatting, plan, controller.

The golden bytes are checked twice: against the layout written out below from
include/uapi/linux/ip_vs.h (independently of any codec), and against the files in
tests/fixtures/ipvs/ that hold what the former pyroute2-based builders sent.
"""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from hacontrol.ipvs.errors import IpvsError, IpvsUnavailable
from hacontrol.ipvs.netlink import (
    IPVS_CMD_DEL_DAEMON,
    IPVS_CMD_GET_CONFIG,
    IPVS_CMD_GET_DAEMON,
    IPVS_CMD_NEW_DAEMON,
    IPVS_CMD_SET_CONFIG,
    NetlinkDecodeError,
    decode_daemon,
    decode_timeouts,
    encode_daemon,
    encode_daemon_state,
    encode_message,
    encode_timeouts,
    family_error,
    iter_messages,
    set_timeouts_error,
    start_daemon_error,
    stop_daemon_error,
)
from hacontrol.ipvs.syncd import (
    StartDaemon,
    StopDaemon,
    SyncDaemonConfig,
    SyncDaemonController,
    Timeouts,
    format_daemons,
    format_timeouts,
    plan_sync_daemons,
)
from tests.unit.ipvs_fake import FakeKernel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ipvs"


def golden(name: str) -> bytes:
    text = (FIXTURES / f"{name}.hex").read_text()
    return bytes.fromhex(" ".join(line.split("#", 1)[0] for line in text.splitlines()))


# ---- the uapi layout, written out independently of pyroute2 -------------------------
# struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }  (host order)
# struct genlmsghdr { u8 cmd; u8 version; u16 reserved; }
# struct nlattr { u16 len; u16 type; } + payload, padded to 4 bytes

NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLA_F_NESTED = 0x8000
FAMILY = 0x1C  # whatever id the kernel gave "IPVS"; any value works for the layout
SEQ, PID = 7, 0  # pid 0: the kernel fills in the sender

# enum ipvs_cmd_attr / ipvs_daemon_attr values (include/uapi/linux/ip_vs.h)
CMD_ATTR_DAEMON, CMD_ATTR_TIMEOUT_TCP, CMD_ATTR_TIMEOUT_TCP_FIN, CMD_ATTR_TIMEOUT_UDP = 3, 4, 5, 6
D_STATE, D_IFN, D_SYNCID, D_MAXLEN, D_GROUP, D_GROUP6, D_PORT, D_TTL = 1, 2, 3, 4, 5, 6, 7, 8


def nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def u8(v: int) -> bytes:
    return struct.pack("=B", v)


def u16(v: int) -> bytes:
    return struct.pack("=H", v)


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def genl(cmd: int, flags: int, attrs: bytes, seq: int = SEQ, pid: int = PID) -> bytes:
    body = struct.pack("=BBH", cmd, 1, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), FAMILY, flags, seq, pid) + body


def encode(cmd: int, flags: int, attrs: bytes, seq: int = SEQ) -> bytes:
    return encode_message(FAMILY, cmd, flags, seq, attrs)


# ---- golden bytes ----------------------------------------------------------------


def test_new_daemon_master_every_attribute_bytes() -> None:
    cfg = SyncDaemonConfig("master", "eth1", 42, 1400, IPv4Address("239.1.2.3"), 8850, 3)
    inner = (
        nla(D_STATE, u32(1))
        + nla(D_IFN, b"eth1\0")
        + nla(D_SYNCID, u32(42))
        + nla(D_MAXLEN, u16(1400))
        + nla(D_GROUP, socket.inet_aton("239.1.2.3"))  # network order: nla_get_in_addr
        + nla(D_PORT, u16(8850))  # host order: nla_get_u16
        + nla(D_TTL, u8(3))
    )
    expected = genl(9, NLM_F_REQUEST | NLM_F_ACK, nla(CMD_ATTR_DAEMON | NLA_F_NESTED, inner))
    got = encode(IPVS_CMD_NEW_DAEMON, NLM_F_REQUEST | NLM_F_ACK, encode_daemon(cfg))
    assert got == expected
    assert encode_message(FAMILY, 9, 5, 1, encode_daemon(cfg)) == golden("daemon_new_master_all")


def test_new_daemon_backup_ipv6_group_bytes() -> None:
    cfg = SyncDaemonConfig("backup", "bond0.7", 255, 1200, IPv6Address("ff02::1:2"), 9000, 2)
    inner = (
        nla(D_STATE, u32(2))
        + nla(D_IFN, b"bond0.7\0")
        + nla(D_SYNCID, u32(255))
        + nla(D_MAXLEN, u16(1200))
        + nla(D_GROUP6, socket.inet_pton(socket.AF_INET6, "ff02::1:2"))
        + nla(D_PORT, u16(9000))
        + nla(D_TTL, u8(2))
    )
    expected = genl(9, NLM_F_REQUEST | NLM_F_ACK, nla(CMD_ATTR_DAEMON | NLA_F_NESTED, inner))
    got = encode(IPVS_CMD_NEW_DAEMON, NLM_F_REQUEST | NLM_F_ACK, encode_daemon(cfg))
    assert got == expected
    assert encode_message(FAMILY, 9, 5, 2, encode_daemon(cfg)) == golden(
        "daemon_new_backup_ipv6_all"
    )


def test_new_daemon_defaults_leave_attributes_out() -> None:
    # Absent attributes are the kernel's defaults (group 224.0.0.81, port 8848, ...).
    cfg = SyncDaemonConfig("master", "eth0")
    inner = nla(D_STATE, u32(1)) + nla(D_IFN, b"eth0\0") + nla(D_SYNCID, u32(0))
    expected = genl(9, NLM_F_REQUEST | NLM_F_ACK, nla(CMD_ATTR_DAEMON | NLA_F_NESTED, inner))
    got = encode(IPVS_CMD_NEW_DAEMON, NLM_F_REQUEST | NLM_F_ACK, encode_daemon(cfg))
    assert got == expected
    assert encode_message(FAMILY, 9, 5, 3, encode_daemon(cfg)) == golden(
        "daemon_new_master_defaults"
    )


def test_del_and_get_daemon_bytes() -> None:
    inner = nla(D_STATE, u32(2))
    expected = genl(10, NLM_F_REQUEST | NLM_F_ACK, nla(CMD_ATTR_DAEMON | NLA_F_NESTED, inner))
    attrs = encode_daemon_state("backup")
    assert encode(IPVS_CMD_DEL_DAEMON, NLM_F_REQUEST | NLM_F_ACK, attrs) == expected
    assert encode_message(FAMILY, 10, 5, 4, attrs) == golden("daemon_del_backup")
    dump = NLM_F_REQUEST | NLM_F_DUMP
    assert encode(IPVS_CMD_GET_DAEMON, dump, b"") == genl(11, dump, b"")
    assert encode_message(FAMILY, 11, dump, 5) == golden("daemon_get_dump")


def test_timeouts_bytes() -> None:
    attrs = (
        nla(CMD_ATTR_TIMEOUT_TCP, u32(900))
        + nla(CMD_ATTR_TIMEOUT_TCP_FIN, u32(0))
        + nla(CMD_ATTR_TIMEOUT_UDP, u32(300))
    )
    flags = NLM_F_REQUEST | NLM_F_ACK
    ours = encode_timeouts(Timeouts(900, 0, 300))
    assert encode(IPVS_CMD_SET_CONFIG, flags, ours) == genl(12, flags, attrs)
    assert encode_message(FAMILY, 12, flags, 6, ours) == golden("config_set_timeouts")
    assert encode(IPVS_CMD_GET_CONFIG, flags, b"") == genl(13, flags, b"")
    assert encode_message(FAMILY, 13, flags, 7) == golden("config_get")


# ---- parsing what the kernel sends --------------------------------------------------


def kernel_daemon_entry(state: int, inner_extra: bytes, syncid: int = 9) -> bytes:
    # ip_vs_genl_fill_daemon(): nla_nest_start_noflag (no NLA_F_NESTED), cmd NEW_DAEMON,
    # STATE, MCAST_IFN, SYNC_ID, SYNC_MAXLEN, MCAST_PORT, MCAST_TTL, then the group.
    inner = (
        nla(D_STATE, u32(state))
        + nla(D_IFN, b"veth0\0")
        + nla(D_SYNCID, u32(syncid))
        + nla(D_MAXLEN, u16(1472))
        + nla(D_PORT, u16(8848))
        + nla(D_TTL, u8(1))
        + inner_extra
    )
    return genl(9, 0x2, nla(CMD_ATTR_DAEMON, inner), pid=0)  # NLM_F_MULTI


def daemons_in(data: bytes) -> list[SyncDaemonConfig | None]:
    # What IpvsNetlink.get_daemons does with each message of the dump.
    return [decode_daemon(payload[4:]) for _t, _f, _s, payload in iter_messages(data)]


def test_parse_daemon_dump() -> None:
    data = kernel_daemon_entry(1, nla(D_GROUP, socket.inet_aton("224.0.0.81"))) + (
        kernel_daemon_entry(2, nla(D_GROUP6, socket.inet_pton(socket.AF_INET6, "ff02::81")))
    )
    assert daemons_in(data) == [
        SyncDaemonConfig("master", "veth0", 9, 1472, IPv4Address("224.0.0.81"), 8848, 1),
        SyncDaemonConfig("backup", "veth0", 9, 1472, IPv6Address("ff02::81"), 8848, 1),
    ]


def test_our_own_start_message_reads_back_as_the_same_daemon() -> None:
    # The decoder takes NLA_F_NESTED or not, as the kernel does.
    cfg = SyncDaemonConfig("backup", "bond0.7", 255, 1200, IPv6Address("ff02::1:2"), 9000, 2)
    assert decode_daemon(memoryview(encode_daemon(cfg))) == cfg


def test_parse_daemon_entry_without_state_is_ignored() -> None:
    assert daemons_in(kernel_daemon_entry(0, b"")) == [None]
    assert daemons_in(genl(9, 0x2, b"", pid=0)) == [None]


def test_malformed_daemon_entries_are_decode_errors() -> None:
    data = kernel_daemon_entry(1, b"")
    with pytest.raises(NetlinkDecodeError):
        list(iter_messages(data[:-8]))  # the message is cut short
    inner = nla(D_STATE, u32(1)) + nla(D_IFN, b"x\0") + nla(D_PORT, b"\x01")
    short_port = genl(9, 2, nla(CMD_ATTR_DAEMON, inner))
    with pytest.raises(NetlinkDecodeError, match="daemon port: 1 bytes, expected 2"):
        daemons_in(short_port)
    # A syncid the kernel holds but no sync message can carry (one byte on the wire).
    with pytest.raises(NetlinkDecodeError, match="syncid"):
        daemons_in(kernel_daemon_entry(1, b"", syncid=300))


def test_parse_timeouts_reply() -> None:
    attrs = (
        nla(CMD_ATTR_TIMEOUT_TCP, u32(900))
        + nla(CMD_ATTR_TIMEOUT_TCP_FIN, u32(120))
        + nla(CMD_ATTR_TIMEOUT_UDP, u32(300))
    )
    assert decode_timeouts(memoryview(attrs)) == Timeouts(900, 120, 300)
    assert decode_timeouts(memoryview(b"")) is None
    with pytest.raises(NetlinkDecodeError):
        decode_timeouts(memoryview(nla(CMD_ATTR_TIMEOUT_TCP, u16(1))))


# ---- errors: the object, the errno, the operator's words ----------------------------


def test_start_daemon_errors_name_the_daemon() -> None:
    cfg = SyncDaemonConfig("master", "eth1", 42)
    e = start_daemon_error(cfg, errno.EEXIST)
    assert isinstance(e, IpvsError)
    assert str(e) == (
        "start master sync daemon (mcast=eth1, syncid=42): "
        "a daemon in this state is already running (EEXIST)"
    )
    assert (e.errno, e.errno_name) == (errno.EEXIST, "EEXIST")
    assert e.subject == "start master sync daemon (mcast=eth1, syncid=42)"
    assert str(start_daemon_error(cfg, errno.ENODEV)).endswith(
        ": no such interface in this network namespace (ENODEV)"
    )
    assert str(start_daemon_error(cfg, errno.EPERM)).endswith(
        ": operation not permitted (needs root or CAP_NET_ADMIN) (EPERM)"
    )
    # An errno without a hint keeps the C library's text; the kernel's ext-ack text is kept.
    assert str(start_daemon_error(cfg, errno.ENOMEM, "no memory for the thread")).endswith(
        ": Cannot allocate memory [no memory for the thread] (ENOMEM)"
    )


def test_stop_daemon_and_timeouts_errors() -> None:
    assert str(stop_daemon_error("backup", errno.ESRCH)) == (
        "stop backup sync daemon: no daemon in this state is running (ESRCH)"
    )
    assert str(set_timeouts_error(Timeouts(900, 0, 300), errno.EINVAL)) == (
        "set timeouts (tcp tcpfin udp) 900 0 300: a timeout is out of range for this kernel"
        " (EINVAL)"
    )


def test_missing_ipvs_family_is_ipvs_unavailable() -> None:
    e = family_error(errno.ENOENT)
    assert isinstance(e, IpvsUnavailable) and isinstance(e, IpvsError)
    assert e.errno == errno.ENOENT
    assert "not available" in str(e) and "modprobe ip_vs" in str(e)
    # Any other failure to resolve the family is an ordinary IpvsError.
    other = family_error(errno.EPERM)
    assert not isinstance(other, IpvsUnavailable)
    assert str(other) == (
        "IPVS generic netlink family: operation not permitted (needs root or CAP_NET_ADMIN) (EPERM)"
    )


# ---- values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"state": "primary"},
        {"interface": ""},
        {"interface": "a-very-long-name"},  # 16 bytes: no room for the NUL
        {"interface": "eth 0"},
        {"interface": "a/b"},
        {"syncid": 256},
        {"syncid": -1},
        {"maxlen": 65536},
        {"port": 70000},
        {"ttl": 256},
        {"ttl": True},
        {"group": IPv4Address("192.0.2.1")},  # not multicast: the kernel says EINVAL
        {"group": IPv6Address("2001:db8::1")},
    ],
)
def test_invalid_daemon_config(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"state": "master", "interface": "eth0", **kwargs}
    with pytest.raises(ValueError):
        SyncDaemonConfig(**args)  # type: ignore[arg-type]


def test_invalid_timeouts() -> None:
    with pytest.raises(ValueError):
        Timeouts(tcp=-1)
    with pytest.raises(ValueError):
        Timeouts(udp=2**31)
    assert Timeouts() == Timeouts(0, 0, 0)


def test_satisfied_by_treats_zero_as_kernel_default() -> None:
    wanted = SyncDaemonConfig("master", "eth0", 7)
    running = SyncDaemonConfig("master", "eth0", 7, 1472, IPv4Address("224.0.0.81"), 8848, 1)
    assert wanted.satisfied_by(running)
    assert not SyncDaemonConfig("master", "eth0", 8).satisfied_by(running)
    assert not SyncDaemonConfig("backup", "eth0", 7).satisfied_by(running)
    assert not SyncDaemonConfig("master", "eth0", 7, ttl=2).satisfied_by(running)
    assert not SyncDaemonConfig("master", "eth0", 7, group=IPv4Address("239.0.0.1")).satisfied_by(
        running
    )


# ---- formatting (strings printed by ipvsadm 1.31 in the VM) --------------------------


def test_format_daemons_like_ipvsadm() -> None:
    daemons = [
        SyncDaemonConfig("backup", "d0", 9, 1200, IPv6Address("ff02::1:2"), 9000, 2),
        SyncDaemonConfig("master", "d0", 7, 1400, IPv4Address("239.1.2.3"), 8850, 3),
    ]
    assert format_daemons(daemons) == (
        "master sync daemon (mcast=d0, syncid=7, maxlen=1400, group=239.1.2.3, port=8850,"
        " ttl=3)\n"
        "backup sync daemon (mcast=d0, syncid=9, maxlen=1200, group=ff02::1:2, port=9000,"
        " ttl=2)\n"
    )
    assert format_daemons([]) == ""
    # Fields the kernel reported as 0 / no family are left out, as ipvsadm does.
    assert format_daemons([SyncDaemonConfig("master", "lo", 0)]) == (
        "master sync daemon (mcast=lo, syncid=0)\n"
    )


def test_format_timeouts_like_ipvsadm() -> None:
    assert format_timeouts(Timeouts(900, 120, 300)) == "Timeout (tcp tcpfin udp): 900 120 300\n"


# ---- plan ----------------------------------------------------------------------------


M = SyncDaemonConfig("master", "eth1", 5)
B = SyncDaemonConfig("backup", "eth1", 5)
M_RUNNING = SyncDaemonConfig("master", "eth1", 5, 1472, IPv4Address("224.0.0.81"), 8848, 1)
B_RUNNING = SyncDaemonConfig("backup", "eth1", 5, 1472, IPv4Address("224.0.0.81"), 8848, 1)


def test_plan_start_from_nothing() -> None:
    assert plan_sync_daemons(M, []) == [StartDaemon(M)]


def test_plan_nothing_to_do() -> None:
    assert plan_sync_daemons(M, [M_RUNNING]) == []


def test_plan_switch_roles_stops_first() -> None:
    assert plan_sync_daemons(M, [B_RUNNING]) == [StopDaemon("backup"), StartDaemon(M)]


def test_plan_changed_settings_restart() -> None:
    wanted = SyncDaemonConfig("master", "eth1", 6)
    assert plan_sync_daemons(wanted, [M_RUNNING]) == [StopDaemon("master"), StartDaemon(wanted)]


def test_plan_both_running_keeps_the_wanted_one() -> None:
    assert plan_sync_daemons(B, [M_RUNNING, B_RUNNING]) == [StopDaemon("master")]


def test_plan_none_stops_everything() -> None:
    assert plan_sync_daemons(None, [M_RUNNING, B_RUNNING]) == [
        StopDaemon("master"),
        StopDaemon("backup"),
    ]
    assert plan_sync_daemons(None, []) == []


async def test_controller_applies_the_plan() -> None:
    kernel = FakeKernel()
    kernel.daemons["backup"] = B_RUNNING
    controller = SyncDaemonController(kernel, SyncDaemonConfig("backup", "eth1", 5))
    assert await controller.apply("master") == [StopDaemon("backup"), StartDaemon(M)]
    assert kernel.daemon_calls == ["stop backup", "start master"]
    assert await kernel.get_daemons() == [M_RUNNING]  # the kernel's defaults filled in
    # Level-triggered: the running daemon satisfies the wanted one, nothing is touched.
    assert await controller.apply("master") == []
    assert kernel.daemon_calls == ["stop backup", "start master"]


async def test_controller_repairs_and_adopts() -> None:
    kernel = FakeKernel()
    controller = SyncDaemonController(kernel, B)
    assert await controller.apply("backup") == [StartDaemon(B)]
    del kernel.daemons["backup"]  # stopped by hand (ipvsadm --stop-daemon backup)
    assert await controller.apply("backup") == [StartDaemon(B)]
    # A daemon with other settings (another syncid) is replaced, not kept.
    kernel.daemons["backup"] = SyncDaemonConfig("backup", "eth1", 6)
    assert await controller.apply("backup") == [StopDaemon("backup"), StartDaemon(B)]
    assert (await kernel.get_daemons())[0].syncid == 5
    assert await controller.apply(None) == [StopDaemon("backup")]
    assert kernel.daemons == {}


async def test_controller_tolerates_a_daemon_already_gone() -> None:
    kernel = FakeKernel()
    kernel.daemons["master"] = M_RUNNING
    kernel.vanish_before_stop = "master"  # ESRCH from the kernel: the goal holds anyway
    controller = SyncDaemonController(kernel, M)
    assert await controller.apply(None) == [StopDaemon("master")]
    assert kernel.daemons == {}


async def test_controller_reports_other_kernel_errors() -> None:
    kernel = FakeKernel()
    controller = SyncDaemonController(kernel, SyncDaemonConfig("master", "vmnosuchdev", 5))
    with pytest.raises(IpvsError) as err:
        await controller.apply("master")
    assert err.value.errno_name == "ENODEV"
    assert str(err.value) == (
        "start master sync daemon (mcast=vmnosuchdev, syncid=5): "
        "no such interface in this network namespace (ENODEV)"
    )
    # The start that was refused left nothing behind.
    assert kernel.daemons == {}
