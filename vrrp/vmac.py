"""VMAC: the RFC 5798 virtual MAC on a macvlan, as keepalived's `use_vmac` sets it up.

keepalived (2.2.7, checked in a namespace) creates a macvlan in private mode on the
instance's interface, named `vrrp.<VRID>` unless `use_vmac NAME` names it, with the virtual
router MAC of RFC 5798 §7.3 (00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID for IPv6),
IPv6 address generation off (no EUI-64 link-local from the shared MAC). The VIPs go on the
macvlan; adverts are sent and heard there (from the parent's address: for IPv6 keepalived
copies the parent's link-local onto the macvlan, no DAD, preferred lifetime 0), unless
`vmac_xmit_base`, when adverts use the parent. GARP/NA leave from the macvlan, so switches
learn the virtual MAC. On stop it deletes the macvlan.

It sets these sysctls, for reasons its own sources give (vrrp_if_config.c):

- on the macvlan: arp_ignore=1 (no ARP answers for the parent's addresses), accept_local=1
  (hear a peer advertising from an address we also hold), rp_filter=0 (receive on an
  interface with no address of its own), promote_secondaries=1; for an IPv4 instance with no
  IPv6 VIPs on it, IPv6 off (disable_ipv6=1);
- on the parent: arp_ignore=1 and arp_filter=1, so it never answers ARP for a VIP with its
  own MAC; put back when the last VMAC on it goes (keepalived means to; 2.2.7 leaves them);
- when net.ipv4.conf.all.rp_filter is set: every interface's rp_filter (and default's) is
  raised to the larger of its own and all's, and all's set to 0 (the kernel uses the larger
  of all and the interface's, so the macvlan's 0 would not count otherwise); all of it is
  put back when the last IPv4 VMAC goes.

The helpers here are pure, except `Sysctls`, which reads and writes /proc/sys and remembers
what it changed so that it can put it back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

log = logging.getLogger("vrrp.vmac")

VMAC_PREFIX = b"\x00\x00\x5e\x00"  # the IANA block RFC 5798 §7.3 gives virtual routers
IFNAMSIZ = 15


def vmac_address(vrid: int, family: int) -> bytes:
    """RFC 5798 §7.3: 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID} for IPv6."""
    if not 1 <= vrid <= 255:
        raise ValueError(f"vrid must be 1..255, not {vrid}")
    return VMAC_PREFIX + bytes((2 if family == 6 else 1, vrid))


def default_vmac_name(vrid: int) -> str:
    """keepalived's name for a VMAC without one of its own (both families)."""
    return f"vrrp.{vrid}"


def vmac_name_problem(name: str) -> str | None:
    """Why `name` cannot be an interface name, or None."""
    if not name or len(name) > IFNAMSIZ:
        return f"an interface name is 1-{IFNAMSIZ} characters, not {len(name)}"
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        return f"{name!r} is not a valid interface name (no '/', ':' or spaces)"
    return None


def raised_rp_filter(all_value: int, values: dict[str, int]) -> dict[str, int]:
    """keepalived's rp_filter rule: the new value of every interface (and "default") whose
    own is below all's, so that setting all to 0 changes no interface's effective value."""
    return {name: all_value for name, value in values.items() if value < all_value}


class Sysctls:
    """net.ipv{4,6}.conf.* under /proc/sys, with the first value of everything changed
    remembered, so that `restore()` can put it back."""

    def __init__(self, root: str = "/proc/sys/net") -> None:
        self._root = root
        self._original: dict[str, int] = {}

    def path(self, family: int, ifname: str, key: str) -> str:
        return f"{self._root}/ipv{family}/conf/{ifname}/{key}"

    def read(self, path: str) -> int | None:
        try:
            with open(path, "rb") as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def write(self, path: str, value: int, *, remember: bool = True) -> bool:
        """Set `path`; the value it had first is kept for restore() if `remember`.
        Failures (an interface gone, a read-only /proc) are logged and return False."""
        old = self.read(path)
        if old is None:
            log.warning("vrrp.sysctl_error path=%s error=unreadable", path)
            return False
        if old == value:
            return True
        try:
            with open(path, "wb") as f:
                f.write(f"{value}\n".encode())
        except OSError as exc:
            log.warning("vrrp.sysctl_error path=%s value=%d error=%s", path, value, exc)
            return False
        if remember:
            self._original.setdefault(path, old)
        log.info("vrrp.sysctl path=%s from=%d to=%d", path, old, value)
        return True

    def interfaces(self, family: int = 4) -> list[str]:
        try:
            return sorted(os.listdir(f"{self._root}/ipv{family}/conf"))
        except OSError:
            return []

    def changed(self) -> tuple[str, ...]:
        return tuple(self._original)

    def restore(self, paths: Iterable[str]) -> None:
        """Put back what this object changed under `paths` (files that are gone are skipped:
        their interface went, and its settings with it)."""
        for path in list(paths):
            value = self._original.pop(path, None)
            if value is None or not os.path.exists(path):
                continue
            self.write(path, value, remember=False)
