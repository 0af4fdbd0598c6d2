"""The one error type of the IPVS layer: what the kernel refused, about which object, and why.

Every IPVS request that fails (a service or real-server op, a sync-daemon or timeout command, a
dump) becomes an ``IpvsError(errno, subject, cause)``: ``subject`` names the object in ipvsadm's
words ("add service TCP 192.0.2.1:80", "start master sync daemon (mcast=eth0, syncid=42)"),
``cause`` says why in the operator's words and ends with the errno's name. ``IpvsUnavailable``
is the one case a caller may want to tell apart: the kernel has no "IPVS" generic-netlink
family, so no request can work until ``modprobe ip_vs``.

Pure: no sockets here, so the netlink transport and the sync-daemon controller both import it
without importing each other.
"""

from __future__ import annotations

import errno
import os


class IpvsError(Exception):
    """A kernel refusal, naming the object and the cause (``errno`` is positive)."""

    def __init__(self, errno_: int, subject: str, cause: str) -> None:
        super().__init__(f"{subject}: {cause}")
        self.errno = errno_
        self.subject = subject
        self.cause = cause

    @property
    def errno_name(self) -> str:
        return errno.errorcode.get(self.errno, str(self.errno))


class IpvsUnavailable(IpvsError):
    """No "IPVS" generic-netlink family: the ip_vs module is not loaded (or not built)."""

    def __init__(self, errno_: int = errno.ENOENT) -> None:
        super().__init__(
            errno_,
            "IPVS",
            "not available: the kernel has no generic netlink family 'IPVS', so the ip_vs "
            f"module is not loaded (try: modprobe ip_vs) ({errno_name(errno_)})",
        )


def errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


# Causes every IPVS command shares (ip_vs_ctl.c / genetlink conventions); command-specific ones
# are passed as ``hints`` by the caller.
_COMMON_CAUSES = {
    # The IPVS genetlink ops carry GENL_ADMIN_PERM.
    errno.EPERM: "operation not permitted (needs root or CAP_NET_ADMIN)",
    errno.EINVAL: "invalid argument (kernel refused the settings)",
    errno.EAFNOSUPPORT: "address family not supported",
}


def kernel_error(
    subject: str, code: int, kernel_text: str = "", hints: dict[int, str] | None = None
) -> IpvsError:
    """An ``IpvsError`` for errno ``code``: a hint for this command, else a common cause, else
    the C library's text; the kernel's extended-ack message in brackets; the errno's name."""
    cause = (hints or {}).get(code) or _COMMON_CAUSES.get(code) or os.strerror(code)
    if kernel_text:
        cause += f" [{kernel_text}]"
    return IpvsError(code, subject, f"{cause} ({errno_name(code)})")
