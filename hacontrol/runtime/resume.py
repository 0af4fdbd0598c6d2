"""`hacontrol restart`: mastership carried across a restart of the daemon, no failover.

keepalived (and `systemctl restart hacontrol`) stop a master by resigning: priority 0, VIPs
removed, the backup takes over, and when the master comes back and preempts, the VIPs move
again; two failovers to load new code or settings that a reload cannot change. `hacontrol
restart` instead ends the daemon without resigning: the VRRP process is killed (a killed
process removes nothing, so the VIPs, routes, the IPVS table and the sync daemon stay),
and the daemon executes itself again. Before that it writes, for each instance it was
MASTER of, until when it may resume: the instance's Master_Down_Interval for the lowest
possible priority, less one advert interval (its last advert may be that old). Those
deadlines are the fallback when the VRRP process cannot be kept (new code was installed:
it is killed, which removes nothing): the new daemon reads the file once (and deletes it)
and starts those instances as MASTER if it is in time, the path a VRRP process restarted
after a crash takes. If it is late, the backup has taken over and the instance starts as
an ordinary BACKUP.

The file lives in the run directory (it means nothing after a reboot, and the boot id in
it says so) and holds wall-clock deadlines: a new process cannot read another's monotonic
clock. Anything unreadable, from another boot, or past its deadline is ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("hacontrol.resume")

RESUME_FILE = "resume.json"
MAX_BYTES = 1 << 20
# No Master_Down_Interval is longer (advert_int 40.95 s): anything beyond is not ours.
MAX_WAIT = 3 * 40.95 + 41.0


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Resume:
    """What a daemon restarted in place takes over: seconds left per master, and the VRRP
    process its predecessor kept running for it (pid, fd, code), if any."""

    masters: dict[str, float] = field(default_factory=dict)
    vrrp_process: dict[str, object] | None = None
    # With a kept VRRP process: every instance that was MASTER at the restart, in time or
    # not (the kept process went on advertising for them).
    kept_masters: tuple[str, ...] = ()


def encode(
    deadlines: Mapping[str, float],
    boot: str,
    vrrp_process: Mapping[str, object] | None = None,
    daemon_pid: int = 0,
) -> str:
    """The file's text: wall-clock deadlines by instance name, and the kept VRRP process
    (meaningful to the same daemon pid only: its fd number is this process's)."""
    doc: dict[str, object] = {"boot_id": boot, "masters": dict(sorted(deadlines.items()))}
    if vrrp_process is not None:
        doc["daemon_pid"] = daemon_pid
        doc["vrrp_process"] = dict(vrrp_process)
    return json.dumps(doc) + "\n"


def decode_process(text: str, boot: str, daemon_pid: int) -> dict[str, object] | None:
    """The VRRP process kept for this daemon (same boot, same pid), or None."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("boot_id") != boot:
        return None
    process = doc.get("vrrp_process")
    if doc.get("daemon_pid") != daemon_pid or not isinstance(process, dict):
        return None
    return process


def decode(text: str, boot: str, now: float, any_age: bool = False) -> dict[str, float]:
    """Seconds left per instance that may still resume (empty for anything unusable);
    `any_age`: every instance listed, past its deadline or not."""
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(doc, dict) or doc.get("boot_id") != boot:
        return {}
    masters = doc.get("masters")
    if not isinstance(masters, dict):
        return {}
    out: dict[str, float] = {}
    for name, deadline in masters.items():
        if not isinstance(name, str) or isinstance(deadline, bool):
            continue
        if not isinstance(deadline, int | float):
            continue
        left = float(deadline) - now
        if any_age or 0 < left <= MAX_WAIT:
            out[name] = left
    return out


def save(
    run_dir: Path,
    deadlines: Mapping[str, float],
    vrrp_process: Mapping[str, object] | None = None,
) -> bool:
    """Write atomically; False (logged) when it could not be written."""
    path = run_dir / RESUME_FILE
    tmp = run_dir / f".{RESUME_FILE}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(encode(deadlines, boot_id(), vrrp_process, os.getpid()))
        os.replace(tmp, path)
    except OSError as exc:
        log.error("restart.resume_write_failed path=%s error=%s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
    return True


def take(run_dir: Path, now: float) -> Resume:
    """Read and delete the file: seconds left per instance that may resume as MASTER, and
    the VRRP process kept for this daemon."""
    path = run_dir / RESUME_FILE
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES)
    except FileNotFoundError:
        return Resume()
    except OSError as exc:
        log.error("restart.resume_read_failed path=%s error=%s", path, exc)
        return Resume()
    with contextlib.suppress(OSError):
        path.unlink()
    text, boot = data.decode("utf-8", "replace"), boot_id()
    process = decode_process(text, boot, os.getpid())
    kept_masters = tuple(sorted(decode(text, boot, float("-inf"), any_age=True))) if process else ()
    return Resume(decode(text, boot, now), process, kept_masters)
