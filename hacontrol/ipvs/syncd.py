"""The kernel's IPVS connection-sync daemon and global timeouts: values, plan, controller.

The sync daemon multicasts connection state from the director that owns the VIPs
(master) to its peer (backup), so established connections survive a failover.
This module holds:

- values: `SyncDaemonConfig` (one daemon, every IPVS_DAEMON_ATTR_* field) and
  `Timeouts` (IPVS_CMD_ATTR_TIMEOUT_*), validated as the kernel and ipvsadm would;
- pure parts: `plan_sync_daemons()` (running daemons -> minimal stop/start
  steps) and `format_daemons()` / `format_timeouts()`, which print exactly like
  `ipvsadm -L --daemon` / `ipvsadm -L --timeout`;
- `SyncDaemonController`, which applies a role touching only what changed, over
  any `SyncDaemonBackend` (the real one is `netlink.AsyncIpvs`).

The wire format (IPVS_CMD_NEW_DAEMON / DEL_DAEMON / GET_DAEMON, SET_CONFIG /
GET_CONFIG) lives with every other IPVS message in netlink.py. Which role the
daemon should have is decided above this package (from the VRRP state, as
keepalived's lvs_sync_daemon does); here a role is just "master", "backup" or None.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Literal, Protocol

from hacontrol.ipvs.errors import IpvsError

# IP_VS_STATE_* (include/uapi/linux/ip_vs.h): the daemon states the kernel knows.
IP_VS_STATE_MASTER = 1
IP_VS_STATE_BACKUP = 2

# IP_VS_IFNAME_MAXLEN is 16 including the terminating NUL (= IFNAMSIZ).
IP_VS_IFNAME_MAXLEN = 16
# ip_vs_set_timeout() rejects values above INT_MAX / HZ; HZ is at most 1000.
MAX_TIMEOUT = 2**31 // 1000

SyncRole = Literal["master", "backup"]
IPAddress = IPv4Address | IPv6Address

STATE_CODE: dict[str, int] = {"master": IP_VS_STATE_MASTER, "backup": IP_VS_STATE_BACKUP}
STATE_NAME: dict[int, SyncRole] = {IP_VS_STATE_MASTER: "master", IP_VS_STATE_BACKUP: "backup"}


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
        if self.state not in STATE_CODE:
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


# ---- formatting, exactly as ipvsadm 1.31 prints ----------------------------------


def format_daemons(daemons: Sequence[SyncDaemonConfig]) -> str:
    """Like `ipvsadm -L --daemon`: master first, then backup, one line each.

    ipvsadm prints maxlen/port/ttl only when non-zero and the group only when
    the kernel reported an address family.
    """
    lines = []
    for d in sorted(daemons, key=lambda d: STATE_CODE[d.state]):
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


# ---- plan (pure) ---------------------------------------------------------------------


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


# ---- the controller ------------------------------------------------------------------


class SyncDaemonBackend(Protocol):
    """What SyncDaemonController needs from the kernel side (netlink.AsyncIpvs)."""

    async def start_daemon(self, cfg: SyncDaemonConfig) -> None: ...
    async def stop_daemon(self, state: SyncRole) -> None: ...
    async def get_daemons(self) -> list[SyncDaemonConfig]: ...


class SyncDaemonController:
    """Keeps the kernel's sync daemon in the role it is given (the caller derives it from VRRP).

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
                except IpvsError as e:
                    # Stopped meanwhile (by hand or by a racing call): the goal holds.
                    if e.errno != errno.ESRCH:
                        raise
            else:
                await self.backend.start_daemon(step.config)
        return steps
