"""The kernel's IPVS connection-sync daemon and global timeouts, over generic netlink.

The sync daemon multicasts connection state from the director that owns the VIPs
(master) to its peer (backup), so established connections survive a failover.
This module holds:

- values: `SyncDaemonConfig` (one daemon, every IPVS_DAEMON_ATTR_* field) and
  `Timeouts` (IPVS_CMD_ATTR_TIMEOUT_*);
- pure parts: `sync_role()` (VRRP state -> daemon role, as keepalived does it),
  `plan_sync_daemons()` (running daemons -> minimal stop/start steps), the
  netlink message builders and `format_daemons()` / `format_timeouts()`, which
  print exactly like `ipvsadm -L --daemon` / `ipvsadm -L --timeout`;
- thin adapters: `IpvsConfigClient` (async generic-netlink socket, one per
  network namespace) and `SyncDaemonController` (applies a role, touching only
  what changed).

The wire layout follows include/uapi/linux/ip_vs.h and the kernel's
net/netfilter/ipvs/ip_vs_ctl.c policy (ip_vs_daemon_policy):

    IPVS_CMD_ATTR_DAEMON (nested)
      IPVS_DAEMON_ATTR_STATE          u32   1 = master, 2 = backup
      IPVS_DAEMON_ATTR_MCAST_IFN      NUL-terminated string, < 16 bytes
      IPVS_DAEMON_ATTR_SYNC_ID        u32
      IPVS_DAEMON_ATTR_SYNC_MAXLEN    u16   host order
      IPVS_DAEMON_ATTR_MCAST_GROUP    4 bytes, network order (nla_get_in_addr)
      IPVS_DAEMON_ATTR_MCAST_GROUP6   16 bytes
      IPVS_DAEMON_ATTR_MCAST_PORT     u16   host order (nla_get_u16, not be16)
      IPVS_DAEMON_ATTR_MCAST_TTL      u8

pyroute2 0.9.7 declares IPVS_CMD_ATTR_DAEMON and the timeout attributes as
opaque "hex", so the message class here re-declares them.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal, Protocol

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import AsyncGenericNetlinkSocket
from pyroute2.netlink.generic.ipvs import ipvsmsg

from vrrp.types import State

# ---- uapi constants (include/uapi/linux/ip_vs.h) ------------------------------

IPVS_GENL_NAME = "IPVS"
IPVS_GENL_VERSION = 1

IPVS_CMD_NEW_DAEMON = 9
IPVS_CMD_DEL_DAEMON = 10
IPVS_CMD_GET_DAEMON = 11
IPVS_CMD_SET_CONFIG = 12
IPVS_CMD_GET_CONFIG = 13

IP_VS_STATE_MASTER = 1
IP_VS_STATE_BACKUP = 2

# IP_VS_IFNAME_MAXLEN is 16 including the terminating NUL (= IFNAMSIZ).
IP_VS_IFNAME_MAXLEN = 16
# ip_vs_set_timeout() rejects values above INT_MAX / HZ; HZ is at most 1000.
MAX_TIMEOUT = 2**31 // 1000

SyncRole = Literal["master", "backup"]
IPAddress = IPv4Address | IPv6Address

_STATE_CODE: dict[str, int] = {"master": IP_VS_STATE_MASTER, "backup": IP_VS_STATE_BACKUP}
_STATE_NAME: dict[int, SyncRole] = {IP_VS_STATE_MASTER: "master", IP_VS_STATE_BACKUP: "backup"}


# ---- netlink message classes ---------------------------------------------------


class ipvs_daemon(nla):  # type: ignore[misc]  # pyroute2 is untyped
    """IPVS_CMD_ATTR_DAEMON's nested attributes (enum IPVS_DAEMON_ATTR_*)."""

    prefix = "IPVS_DAEMON_ATTR_"
    nla_map = (
        ("IPVS_DAEMON_ATTR_UNSPEC", "none"),
        ("IPVS_DAEMON_ATTR_STATE", "uint32"),
        ("IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
        ("IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
        ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", "uint16"),
        ("IPVS_DAEMON_ATTR_MCAST_GROUP", "ip4addr"),
        ("IPVS_DAEMON_ATTR_MCAST_GROUP6", "ip6addr"),
        ("IPVS_DAEMON_ATTR_MCAST_PORT", "uint16"),
        ("IPVS_DAEMON_ATTR_MCAST_TTL", "uint8"),
    )


class ipvs_config_msg(ipvsmsg):  # type: ignore[misc]
    """pyroute2's IPVS message with the daemon and timeout attributes typed.

    Service and destination attributes keep pyroute2's own classes (inherited),
    so this class can parse anything the IPVS family sends.
    """

    nla_map = (
        ("IPVS_CMD_ATTR_UNSPEC", "none"),
        ("IPVS_CMD_ATTR_SERVICE", "service"),
        ("IPVS_CMD_ATTR_DEST", "dest"),
        # NLA_F_NESTED: the kernel parses it either way (GENL_DONT_VALIDATE_STRICT),
        # but a nested attribute is meant to say so.
        ("IPVS_CMD_ATTR_DAEMON", "daemon|nested"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_UDP", "uint32"),
    )

    daemon = ipvs_daemon

    # pyroute2 compiles nla_map once per class and records that in a class
    # attribute; a subclass would inherit "compiled" (and the parent's map)
    # whenever pyroute2's own ipvsmsg was used first. Start uncompiled.
    _nlmsg_base__compiled_nla = False


# ---- values ----------------------------------------------------------------------


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


@dataclass(frozen=True, slots=True)
class SyncDaemonConfig:
    """One sync daemon, as `ipvsadm --start-daemon` takes it.

    0 / None mean "kernel default" when starting: maxlen from the interface MTU
    (1472 on a 1500-byte link), group 224.0.0.81, port 8848, ttl 1. The kernel
    reports the effective values back, so a config read with `get_daemons()` has
    them filled in; `satisfied_by()` compares the two with that in mind.
    """

    state: SyncRole
    interface: str
    syncid: int = 0
    maxlen: int = 0
    group: IPAddress | None = None
    port: int = 0
    ttl: int = 0

    def __post_init__(self) -> None:
        if self.state not in _STATE_CODE:
            raise ValueError(f"state must be 'master' or 'backup', got {self.state!r}")
        ifname = self.interface
        if (
            not isinstance(ifname, str)
            or not 0 < len(ifname.encode()) < IP_VS_IFNAME_MAXLEN
            or "/" in ifname
            or any(c.isspace() for c in ifname)
        ):
            raise ValueError(f"interface must be a valid interface name, got {ifname!r}")
        # The sync message header carries the syncid in one byte; ipvsadm allows 0..255.
        _check_range("syncid", self.syncid, 0, 255)
        _check_range("maxlen", self.maxlen, 0, 0xFFFF)
        _check_range("port", self.port, 0, 0xFFFF)
        _check_range("ttl", self.ttl, 0, 255)
        if self.group is not None:
            if not isinstance(self.group, IPv4Address | IPv6Address):
                raise ValueError(f"group must be an IP address, got {self.group!r}")
            # ip_vs_genl_new_daemon() answers EINVAL for a non-multicast group.
            if not self.group.is_multicast:
                raise ValueError(f"group must be a multicast address, got {self.group}")

    def satisfied_by(self, running: SyncDaemonConfig) -> bool:
        """Does this running daemon do what this (wanted) config asks?"""
        return (
            running.state == self.state
            and running.interface == self.interface
            and running.syncid == self.syncid
            and (self.maxlen == 0 or running.maxlen == self.maxlen)
            and (self.group is None or running.group == self.group)
            and (self.port == 0 or running.port == self.port)
            and (self.ttl == 0 or running.ttl == self.ttl)
        )


@dataclass(frozen=True, slots=True)
class Timeouts:
    """IPVS's global timeouts in seconds; 0 means "leave unchanged" when setting.

    tcp: established TCP; tcpfin: TCP after FIN (FIN_WAIT); udp: UDP flows.
    Same meaning as `ipvsadm --set tcp tcpfin udp`.
    """

    tcp: int = 0
    tcpfin: int = 0
    udp: int = 0

    def __post_init__(self) -> None:
        for name in ("tcp", "tcpfin", "udp"):
            _check_range(name, getattr(self, name), 0, MAX_TIMEOUT)


# ---- errors ----------------------------------------------------------------------


class IpvsKernelError(Exception):
    """The kernel refused an IPVS config/daemon request (errno and what we asked)."""

    def __init__(self, op: str, code: int, detail: str = "") -> None:
        self.op = op
        self.errno = code
        self.errno_name = errno.errorcode.get(code, str(code))
        self.detail = detail
        msg = f"{op}: {os.strerror(code)} ({self.errno_name})"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class IpvsNotLoaded(IpvsKernelError):
    """No "IPVS" generic-netlink family: the ip_vs module is not loaded."""

    def __init__(self, op: str) -> None:
        super().__init__(op, errno.ENOENT, "the ip_vs kernel module is not loaded")


_ERROR_HINTS = {
    (IPVS_CMD_NEW_DAEMON, errno.EEXIST): "a daemon in this state is already running",
    (IPVS_CMD_NEW_DAEMON, errno.ENODEV): "no such interface in this network namespace",
    (IPVS_CMD_DEL_DAEMON, errno.ESRCH): "no daemon in this state is running",
}


# ---- pure message builders and parsers -------------------------------------------


def daemon_attrs(cfg: SyncDaemonConfig) -> list[tuple[str, Any]]:
    """IPVS_DAEMON_ATTR_* for IPVS_CMD_NEW_DAEMON; 0 / None fields are left out.

    Leaving an attribute out is how the kernel takes its default (the
    `if (a)` tests in ip_vs_genl_new_daemon), which is what ipvsadm does too.
    """
    attrs: list[tuple[str, Any]] = [
        ("IPVS_DAEMON_ATTR_STATE", _STATE_CODE[cfg.state]),
        ("IPVS_DAEMON_ATTR_MCAST_IFN", cfg.interface),
        ("IPVS_DAEMON_ATTR_SYNC_ID", cfg.syncid),
    ]
    if cfg.maxlen:
        attrs.append(("IPVS_DAEMON_ATTR_SYNC_MAXLEN", cfg.maxlen))
    if isinstance(cfg.group, IPv4Address):
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_GROUP", str(cfg.group)))
    elif isinstance(cfg.group, IPv6Address):
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_GROUP6", str(cfg.group)))
    if cfg.port:
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_PORT", cfg.port))
    if cfg.ttl:
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_TTL", cfg.ttl))
    return attrs


def _message(cmd: int, attrs: list[tuple[str, Any]]) -> ipvs_config_msg:
    msg = ipvs_config_msg()
    msg["cmd"] = cmd
    msg["version"] = IPVS_GENL_VERSION
    msg["attrs"] = attrs
    return msg


def new_daemon_message(cfg: SyncDaemonConfig) -> ipvs_config_msg:
    return _message(IPVS_CMD_NEW_DAEMON, [("IPVS_CMD_ATTR_DAEMON", {"attrs": daemon_attrs(cfg)})])


def del_daemon_message(state: SyncRole) -> ipvs_config_msg:
    # ip_vs_genl_del_daemon() needs only the state.
    attrs = [("IPVS_DAEMON_ATTR_STATE", _STATE_CODE[state])]
    return _message(IPVS_CMD_DEL_DAEMON, [("IPVS_CMD_ATTR_DAEMON", {"attrs": attrs})])


def get_daemon_message() -> ipvs_config_msg:
    return _message(IPVS_CMD_GET_DAEMON, [])


def set_config_message(timeouts: Timeouts) -> ipvs_config_msg:
    # All three, zeros included, as ipvsadm sends them: ip_vs_set_timeout()
    # leaves a protocol's timeout alone when its value is 0.
    return _message(
        IPVS_CMD_SET_CONFIG,
        [
            ("IPVS_CMD_ATTR_TIMEOUT_TCP", timeouts.tcp),
            ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", timeouts.tcpfin),
            ("IPVS_CMD_ATTR_TIMEOUT_UDP", timeouts.udp),
        ],
    )


def get_config_message() -> ipvs_config_msg:
    return _message(IPVS_CMD_GET_CONFIG, [])


def encode_message(
    msg: ipvs_config_msg, *, family_id: int, flags: int, seq: int, pid: int
) -> bytes:
    """The bytes of `msg` with this netlink header (what goes on the socket)."""
    msg["header"]["type"] = family_id
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = pid
    msg.encode()
    data: bytes = msg.data
    return data


def decode_messages(data: bytes) -> list[ipvs_config_msg]:
    """Parse a buffer of IPVS netlink messages (for replies read off a socket)."""
    out: list[ipvs_config_msg] = []
    offset = 0
    while offset + 4 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        if length < 20 or offset + length > len(data):
            raise ValueError(f"truncated netlink message at offset {offset}")
        msg = ipvs_config_msg(data[offset : offset + length])
        msg.decode()
        out.append(msg)
        offset += (length + 3) & ~3
    return out


def daemon_from_message(msg: ipvs_config_msg) -> SyncDaemonConfig | None:
    """One IPVS_CMD_GET_DAEMON dump entry -> value (None if it carries no daemon)."""
    daemon = msg.get_attr("IPVS_CMD_ATTR_DAEMON")
    if daemon is None:
        return None
    state = _STATE_NAME.get(daemon.get_attr("IPVS_DAEMON_ATTR_STATE", 0))
    ifname = daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_IFN")
    if state is None or not ifname:
        return None
    group4 = daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_GROUP")
    group6 = daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_GROUP6")
    group: IPAddress | None = None
    if group6 is not None:
        group = IPv6Address(group6)
    elif group4 is not None:
        group = IPv4Address(group4)
    return SyncDaemonConfig(
        state=state,
        interface=ifname,
        syncid=daemon.get_attr("IPVS_DAEMON_ATTR_SYNC_ID", 0),
        maxlen=daemon.get_attr("IPVS_DAEMON_ATTR_SYNC_MAXLEN", 0),
        group=group,
        port=daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_PORT", 0),
        ttl=daemon.get_attr("IPVS_DAEMON_ATTR_MCAST_TTL", 0),
    )


def timeouts_from_message(msg: ipvs_config_msg) -> Timeouts:
    return Timeouts(
        tcp=msg.get_attr("IPVS_CMD_ATTR_TIMEOUT_TCP", 0),
        tcpfin=msg.get_attr("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", 0),
        udp=msg.get_attr("IPVS_CMD_ATTR_TIMEOUT_UDP", 0),
    )


# ---- formatting, exactly as ipvsadm 1.31 prints ----------------------------------


def format_daemons(daemons: Sequence[SyncDaemonConfig]) -> str:
    """Like `ipvsadm -L --daemon`: master first, then backup, one line each.

    ipvsadm prints maxlen/port/ttl only when non-zero and the group only when
    the kernel reported an address family.
    """
    lines = []
    for d in sorted(daemons, key=lambda d: _STATE_CODE[d.state]):
        line = f"{d.state} sync daemon (mcast={d.interface}, syncid={d.syncid}"
        if d.maxlen:
            line += f", maxlen={d.maxlen}"
        if d.group is not None:
            family = socket.AF_INET6 if d.group.version == 6 else socket.AF_INET
            line += f", group={socket.inet_ntop(family, d.group.packed)}"
        if d.port:
            line += f", port={d.port}"
        if d.ttl:
            line += f", ttl={d.ttl}"
        lines.append(line + ")\n")
    return "".join(lines)


def format_timeouts(timeouts: Timeouts) -> str:
    """Like `ipvsadm -L --timeout`."""
    return f"Timeout (tcp tcpfin udp): {timeouts.tcp} {timeouts.tcpfin} {timeouts.udp}\n"


# ---- role policy and plan (pure) -------------------------------------------------


def sync_role(vrrp_state: State | None) -> SyncRole | None:
    """Which sync daemon a director runs for its VRRP state.

    keepalived (lvs_sync_daemon): MASTER runs the master daemon; every other
    state runs the backup daemon: vrrp_state_leave_master() switches to backup
    whether it goes to BACKUP or FAULT, and at start/reload the daemon is master
    only if the instance is MASTER. A director that is not master must be ready
    to take over, so it keeps receiving connections. None (the instance is gone:
    shutdown) stops the daemon, as keepalived does when it exits.
    """
    if vrrp_state is None:
        return None
    if vrrp_state is State.MASTER:
        return "master"
    return "backup"


@dataclass(frozen=True, slots=True)
class StopDaemon:
    state: SyncRole


@dataclass(frozen=True, slots=True)
class StartDaemon:
    config: SyncDaemonConfig


SyncdStep = StopDaemon | StartDaemon


def plan_sync_daemons(
    wanted: SyncDaemonConfig | None, running: Sequence[SyncDaemonConfig]
) -> list[SyncdStep]:
    """Minimal steps from the running daemons to the wanted one (or none).

    Stops come first: keepalived's ipvs_syncd_master() stops the backup before
    starting the master, and a daemon whose settings differ must be stopped
    before it can be started again (the kernel answers EEXIST otherwise).
    """
    stops: list[SyncdStep] = []
    starts: list[SyncdStep] = []
    wanted_running = False
    for daemon in running:
        if wanted is not None and wanted.satisfied_by(daemon):
            wanted_running = True
        else:
            stops.append(StopDaemon(daemon.state))
    if wanted is not None and not wanted_running:
        starts.append(StartDaemon(wanted))
    return stops + starts


# ---- asyncio adapter ---------------------------------------------------------------


class IpvsConfigClient:
    """Generic-netlink IPVS client for daemon and timeout commands in one netns.

    `netns` is a name under /run/netns (None: this process's namespace); each
    namespace has its own IPVS table, daemons and timeouts.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._sock: AsyncGenericNetlinkSocket | None = None

    async def __aenter__(self) -> IpvsConfigClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def open(self) -> None:
        if self._sock is not None:
            return
        sock = AsyncGenericNetlinkSocket(netns=self.netns)
        try:
            await sock.bind(IPVS_GENL_NAME, ipvs_config_msg)
        except NetlinkError as e:
            sock.close()
            if e.code == errno.ENOENT:
                raise IpvsNotLoaded("open") from e
            raise IpvsKernelError("open", e.code) from e
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _request(self, msg: ipvs_config_msg, flags: int) -> list[ipvs_config_msg]:
        await self.open()
        assert self._sock is not None
        try:
            replies = await self._sock.nlm_request(msg, msg_type=self._sock.prid, msg_flags=flags)
            return [r async for r in replies]
        except NetlinkError as e:
            hint = _ERROR_HINTS.get((msg["cmd"], e.code), "")
            raise IpvsKernelError(_OP_NAMES.get(msg["cmd"], "ipvs"), e.code, hint) from e

    async def start_daemon(self, cfg: SyncDaemonConfig) -> None:
        await self._request(new_daemon_message(cfg), NLM_F_REQUEST | NLM_F_ACK)

    async def stop_daemon(self, state: SyncRole) -> None:
        await self._request(del_daemon_message(state), NLM_F_REQUEST | NLM_F_ACK)

    async def get_daemons(self) -> list[SyncDaemonConfig]:
        replies = await self._request(get_daemon_message(), NLM_F_REQUEST | NLM_F_DUMP)
        return [d for d in map(daemon_from_message, replies) if d is not None]

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        await self._request(set_config_message(timeouts), NLM_F_REQUEST | NLM_F_ACK)

    async def get_timeouts(self) -> Timeouts:
        replies = await self._request(get_config_message(), NLM_F_REQUEST | NLM_F_ACK)
        for reply in replies:
            if reply.get_attr("IPVS_CMD_ATTR_TIMEOUT_TCP") is not None:
                return timeouts_from_message(reply)
        raise IpvsKernelError("get_timeouts", errno.ENODATA, "no timeouts in the reply")


_OP_NAMES = {
    IPVS_CMD_NEW_DAEMON: "start_daemon",
    IPVS_CMD_DEL_DAEMON: "stop_daemon",
    IPVS_CMD_GET_DAEMON: "get_daemons",
    IPVS_CMD_SET_CONFIG: "set_timeouts",
    IPVS_CMD_GET_CONFIG: "get_timeouts",
}


async def start_daemon(cfg: SyncDaemonConfig, netns: str | None = None) -> None:
    async with IpvsConfigClient(netns) as client:
        await client.start_daemon(cfg)


async def stop_daemon(state: SyncRole, netns: str | None = None) -> None:
    async with IpvsConfigClient(netns) as client:
        await client.stop_daemon(state)


async def get_daemons(netns: str | None = None) -> list[SyncDaemonConfig]:
    async with IpvsConfigClient(netns) as client:
        return await client.get_daemons()


async def set_timeouts(timeouts: Timeouts, netns: str | None = None) -> None:
    async with IpvsConfigClient(netns) as client:
        await client.set_timeouts(timeouts)


async def get_timeouts(netns: str | None = None) -> Timeouts:
    async with IpvsConfigClient(netns) as client:
        return await client.get_timeouts()


class SyncDaemonBackend(Protocol):
    """What SyncDaemonController needs from the kernel side (IpvsConfigClient)."""

    async def start_daemon(self, cfg: SyncDaemonConfig) -> None: ...
    async def stop_daemon(self, state: SyncRole) -> None: ...
    async def get_daemons(self) -> list[SyncDaemonConfig]: ...


class SyncDaemonController:
    """Keeps the kernel's sync daemon in the role VRRP decided.

    Level-triggered: every `apply()` reads the running daemons and performs only
    the difference, so it adopts a daemon left by a previous run and repairs
    one stopped by hand. `template` gives every field but the state.
    """

    def __init__(self, backend: SyncDaemonBackend, template: SyncDaemonConfig) -> None:
        self.backend = backend
        self.template = template

    def wanted(self, role: SyncRole | None) -> SyncDaemonConfig | None:
        return None if role is None else dataclasses.replace(self.template, state=role)

    async def apply(self, role: SyncRole | None) -> list[SyncdStep]:
        """Bring the daemons to `role`; returns the steps performed (for logs/metrics)."""
        running = await self.backend.get_daemons()
        steps = plan_sync_daemons(self.wanted(role), running)
        for step in steps:
            if isinstance(step, StopDaemon):
                try:
                    await self.backend.stop_daemon(step.state)
                except IpvsKernelError as e:
                    # Stopped meanwhile (by hand or by a racing call): the goal holds.
                    if e.errno != errno.ESRCH:
                        raise
            else:
                await self.backend.start_daemon(step.config)
        return steps
