"""The IPVS sysctls hacontrol manages (net.ipv4.vs.*, one set per network namespace).

Why these five (Documentation/networking/ipvs-sysctl.rst):

- expire_nodest_conn: 1 expires a connection at once when its real server is
  removed, instead of dropping its packets until the entry times out; the
  health-check "remove" policy relies on it.
- expire_quiescent_template: 1 expires persistence templates pointing at a
  weight-0 (quiescent) server, so persistent clients move on.
- conntrack: 1 keeps netfilter conntrack entries for IPVS connections (needed
  when the director also filters or NATs with nftables/iptables).
- conn_reuse_mode: a bitmap (0..3); how a reused client port is rescheduled.
- sync_version: 0 or 1; the sync-daemon wire format (1 since Linux 2.6.39; 0
  only to interoperate with an old peer). Both directors must agree.

The files exist only once ip_vs is loaded, and each process sees the values of
its own network namespace. Reading and writing is plain file I/O; planning
which values to write is pure (`plan_sysctls`).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, fields
from pathlib import Path

IPVS_SYSCTL_DIR = Path("/proc/sys/net/ipv4/vs")

# Allowed values, from the kernel: the boolean ones are proc_dointvec (any int
# is stored, but only 0/1 mean anything), conn_reuse_mode is a two-bit map and
# sync_version goes through proc_do_sync_mode (0..1, EINVAL otherwise).
ALLOWED: dict[str, range] = {
    "expire_nodest_conn": range(0, 2),
    "expire_quiescent_template": range(0, 2),
    "conntrack": range(0, 2),
    "conn_reuse_mode": range(0, 4),
    "sync_version": range(0, 2),
}


class IpvsSysctlError(Exception):
    """A managed sysctl could not be read or written."""

    def __init__(self, name: str, message: str, code: int | None = None) -> None:
        self.name = name
        self.errno = code
        super().__init__(f"net.ipv4.vs.{name}: {message}" if name else message)


class IpvsSysctlsUnavailable(IpvsSysctlError):
    """/proc/sys/net/ipv4/vs is missing: ip_vs is not loaded (or no such kernel support)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(
            "",
            f"{directory} does not exist: the ip_vs kernel module is not loaded "
            "(modprobe ip_vs) or the kernel has no IPVS",
            errno.ENOENT,
        )


@dataclass(frozen=True, slots=True)
class IpvsSysctls:
    """Desired (or read) values; None means "not managed, leave as is"."""

    expire_nodest_conn: int | None = None
    expire_quiescent_template: int | None = None
    conntrack: int | None = None
    conn_reuse_mode: int | None = None
    sync_version: int | None = None

    def __post_init__(self) -> None:
        for name, value in self.items():
            if value is None:
                continue
            allowed = ALLOWED[name]
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise ValueError(
                    f"net.ipv4.vs.{name} must be in {allowed.start}..{allowed.stop - 1},"
                    f" got {value!r}"
                )

    def items(self) -> list[tuple[str, int | None]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass(frozen=True, slots=True)
class SysctlChange:
    name: str
    old: int
    new: int


def plan_sysctls(desired: IpvsSysctls, current: IpvsSysctls) -> list[SysctlChange]:
    """The writes that make `current` match `desired` (managed values only)."""
    changes = []
    for name, want in desired.items():
        have = getattr(current, name)
        if want is not None and have != want:
            changes.append(SysctlChange(name, -1 if have is None else have, want))
    return changes


def _require_dir(directory: Path) -> None:
    if not directory.is_dir():
        raise IpvsSysctlsUnavailable(directory)


def _read_one(directory: Path, name: str) -> int:
    try:
        text = (directory / name).read_text()
    except FileNotFoundError:
        _require_dir(directory)
        raise IpvsSysctlError(name, "missing (kernel too old?)", errno.ENOENT) from None
    except OSError as e:
        raise IpvsSysctlError(name, f"cannot read: {e.strerror}", e.errno) from e
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        raise IpvsSysctlError(name, f"unexpected content {text!r}") from None


def read_sysctls(directory: Path = IPVS_SYSCTL_DIR) -> IpvsSysctls:
    """Every managed value as the kernel has it now (in this process's netns)."""
    _require_dir(directory)
    values = {name: _read_one(directory, name) for name in ALLOWED}
    # Not through __post_init__'s range check: report what the kernel has,
    # even a value outside what hacontrol would write (e.g. conntrack=2).
    obj = object.__new__(IpvsSysctls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    return obj


def write_sysctl(name: str, value: int, directory: Path = IPVS_SYSCTL_DIR) -> None:
    if name not in ALLOWED:
        raise ValueError(f"net.ipv4.vs.{name} is not managed by hacontrol")
    _require_dir(directory)
    try:
        # O_WRONLY without O_CREAT/O_TRUNC: a proc file, never create a regular one.
        fd = os.open(directory / name, os.O_WRONLY)
        try:
            os.write(fd, f"{value}\n".encode())
        finally:
            os.close(fd)
    except OSError as e:
        reason = "the kernel rejected the value" if e.errno == errno.EINVAL else e.strerror
        raise IpvsSysctlError(name, f"cannot write {value}: {reason}", e.errno) from e


def apply_sysctls(desired: IpvsSysctls, directory: Path = IPVS_SYSCTL_DIR) -> list[SysctlChange]:
    """Write the managed values that differ; returns what changed (old -> new)."""
    changes = plan_sysctls(desired, read_sysctls(directory))
    for change in changes:
        write_sysctl(change.name, change.new, directory)
    return changes
