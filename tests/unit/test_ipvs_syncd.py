"""Sync daemon / timeouts: wire bytes, parsing, ipvsadm-exact formatting, role policy, plan."""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from hacontrol.ipvs.syncd import (
    IpvsKernelError,
    StartDaemon,
    StopDaemon,
    SyncDaemonConfig,
    SyncDaemonController,
    SyncRole,
    Timeouts,
    daemon_from_message,
    decode_messages,
    del_daemon_message,
    encode_message,
    format_daemons,
    format_timeouts,
    get_config_message,
    get_daemon_message,
    new_daemon_message,
    plan_sync_daemons,
    set_config_message,
    sync_role,
    timeouts_from_message,
)
from vrrp.types import State

# ---- the uapi layout, written out independently of pyroute2 -------------------------
# struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }  (host order)
# struct genlmsghdr { u8 cmd; u8 version; u16 reserved; }
# struct nlattr { u16 len; u16 type; } + payload, padded to 4 bytes

NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLA_F_NESTED = 0x8000
FAMILY = 0x1C  # whatever id the kernel gave "IPVS"; any value works for the layout
SEQ, PID = 7, 4242

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


def encode(msg: object, flags: int) -> bytes:
    return encode_message(msg, family_id=FAMILY, flags=flags, seq=SEQ, pid=PID)  # type: ignore[arg-type]


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
    assert encode(new_daemon_message(cfg), NLM_F_REQUEST | NLM_F_ACK) == expected


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
    assert encode(new_daemon_message(cfg), NLM_F_REQUEST | NLM_F_ACK) == expected


def test_new_daemon_defaults_leave_attributes_out() -> None:
    # Absent attributes are the kernel's defaults (group 224.0.0.81, port 8848, ...).
    cfg = SyncDaemonConfig("master", "eth0")
    inner = nla(D_STATE, u32(1)) + nla(D_IFN, b"eth0\0") + nla(D_SYNCID, u32(0))
    expected = genl(9, NLM_F_REQUEST | NLM_F_ACK, nla(CMD_ATTR_DAEMON | NLA_F_NESTED, inner))
    assert encode(new_daemon_message(cfg), NLM_F_REQUEST | NLM_F_ACK) == expected


def test_del_and_get_daemon_bytes() -> None:
    inner = nla(D_STATE, u32(2))
    expected = genl(10, NLM_F_REQUEST | NLM_F_ACK, nla(CMD_ATTR_DAEMON | NLA_F_NESTED, inner))
    assert encode(del_daemon_message("backup"), NLM_F_REQUEST | NLM_F_ACK) == expected
    dump = NLM_F_REQUEST | NLM_F_DUMP
    assert encode(get_daemon_message(), dump) == genl(11, dump, b"")


def test_timeouts_bytes() -> None:
    attrs = (
        nla(CMD_ATTR_TIMEOUT_TCP, u32(900))
        + nla(CMD_ATTR_TIMEOUT_TCP_FIN, u32(0))
        + nla(CMD_ATTR_TIMEOUT_UDP, u32(300))
    )
    flags = NLM_F_REQUEST | NLM_F_ACK
    assert encode(set_config_message(Timeouts(900, 0, 300)), flags) == genl(12, flags, attrs)
    assert encode(get_config_message(), flags) == genl(13, flags, b"")


# ---- parsing what the kernel sends --------------------------------------------------


def kernel_daemon_entry(state: int, inner_extra: bytes) -> bytes:
    # ip_vs_genl_fill_daemon(): nla_nest_start_noflag (no NLA_F_NESTED), cmd NEW_DAEMON,
    # STATE, MCAST_IFN, SYNC_ID, SYNC_MAXLEN, MCAST_PORT, MCAST_TTL, then the group.
    inner = (
        nla(D_STATE, u32(state))
        + nla(D_IFN, b"veth0\0")
        + nla(D_SYNCID, u32(9))
        + nla(D_MAXLEN, u16(1472))
        + nla(D_PORT, u16(8848))
        + nla(D_TTL, u8(1))
        + inner_extra
    )
    return genl(9, 0x2, nla(CMD_ATTR_DAEMON, inner), pid=0)  # NLM_F_MULTI


def test_parse_daemon_dump() -> None:
    data = kernel_daemon_entry(1, nla(D_GROUP, socket.inet_aton("224.0.0.81"))) + (
        kernel_daemon_entry(2, nla(D_GROUP6, socket.inet_pton(socket.AF_INET6, "ff02::81")))
    )
    msgs = decode_messages(data)
    assert [daemon_from_message(m) for m in msgs] == [
        SyncDaemonConfig("master", "veth0", 9, 1472, IPv4Address("224.0.0.81"), 8848, 1),
        SyncDaemonConfig("backup", "veth0", 9, 1472, IPv6Address("ff02::81"), 8848, 1),
    ]


def test_parse_daemon_entry_without_state_is_ignored() -> None:
    (msg,) = decode_messages(kernel_daemon_entry(0, b""))
    assert daemon_from_message(msg) is None
    (msg,) = decode_messages(genl(9, 0x2, b"", pid=0))
    assert daemon_from_message(msg) is None


def test_truncated_buffer_is_rejected() -> None:
    data = kernel_daemon_entry(1, b"")
    with pytest.raises(ValueError):
        decode_messages(data[:-8])


def test_parse_timeouts_reply() -> None:
    attrs = (
        nla(CMD_ATTR_TIMEOUT_TCP, u32(900))
        + nla(CMD_ATTR_TIMEOUT_TCP_FIN, u32(120))
        + nla(CMD_ATTR_TIMEOUT_UDP, u32(300))
    )
    (msg,) = decode_messages(genl(12, 0, attrs, pid=0))
    assert timeouts_from_message(msg) == Timeouts(900, 120, 300)


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


# ---- role policy and plan ----------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "role"),
    [
        (State.MASTER, "master"),
        (State.BACKUP, "backup"),
        (State.FAULT, "backup"),  # keepalived: leaving MASTER for FAULT -> backup daemon
        (State.INITIALIZE, "backup"),  # keepalived starts the backup daemon unless MASTER
        (None, None),  # instance gone (shutdown): no daemon
    ],
)
def test_sync_role(state: State | None, role: SyncRole | None) -> None:
    assert sync_role(state) == role


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


class RecordingBackend:
    """In-memory stand-in for the kernel's daemon table (the real one runs in the VM)."""

    def __init__(self, running: list[SyncDaemonConfig], vanish: bool = False) -> None:
        self.running = running
        self.vanish = vanish  # the daemon disappears before our stop arrives
        self.calls: list[str] = []

    async def get_daemons(self) -> list[SyncDaemonConfig]:
        return list(self.running)

    async def stop_daemon(self, state: SyncRole) -> None:
        self.calls.append(f"stop {state}")
        if self.vanish:
            raise IpvsKernelError("stop_daemon", errno.ESRCH)
        self.running = [d for d in self.running if d.state != state]

    async def start_daemon(self, cfg: SyncDaemonConfig) -> None:
        self.calls.append(f"start {cfg.state}")
        self.running.append(cfg)


async def test_controller_applies_the_plan() -> None:
    backend = RecordingBackend([B_RUNNING])
    controller = SyncDaemonController(backend, SyncDaemonConfig("backup", "eth1", 5))
    assert await controller.apply("master") == [StopDaemon("backup"), StartDaemon(M)]
    assert backend.calls == ["stop backup", "start master"]
    assert await controller.apply("master") == []
    assert backend.calls == ["stop backup", "start master"]


async def test_controller_tolerates_a_daemon_already_gone() -> None:
    backend = RecordingBackend([M_RUNNING], vanish=True)
    controller = SyncDaemonController(backend, M)
    assert await controller.apply(None) == [StopDaemon("master")]


async def test_controller_reports_other_kernel_errors() -> None:
    class Refusing(RecordingBackend):
        async def start_daemon(self, cfg: SyncDaemonConfig) -> None:
            raise IpvsKernelError("start_daemon", errno.ENODEV, "no such interface")

    controller = SyncDaemonController(Refusing([]), M)
    with pytest.raises(IpvsKernelError) as err:
        await controller.apply("master")
    assert err.value.errno_name == "ENODEV"
    assert "No such device" in str(err.value)
