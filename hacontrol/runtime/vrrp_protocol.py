"""The messages between the daemon and its VRRP process, and their framing.

The VRRP process runs the VRRP engine alone (keepalived's model: VRRP, checkers and
the reconciler each busy in their own process must not delay an advert). The daemon
tells it which instances to run and the operator's holds; it answers with the engine's
events (vrrp.events), unchanged. Both ends are this program, started together, over a
socketpair nobody else can reach, so the payload is pickled; frames are a 4-byte
length and the pickle, bounded by MAX_FRAME so a corrupt length cannot make either
side allocate without limit.

This module imports only vrrp/ and the standard library: the VRRP process must stay
small and start fast (no pydantic, no config models).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

import vrrp as vrrp_package
from vrrp.track import TrackKey, Verdict
from vrrp.types import InstanceSpec, SyncGroupSpec

MAX_FRAME = 64 * 1024 * 1024
_LENGTH = struct.Struct("!I")


# ---- daemon -> VRRP process ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Configure:
    """Run exactly these instances (a reload sends the new full set; the engine diffs).

    `resume_until`: instance name -> monotonic deadline. An instance listed here that
    the engine starts (after a crash of the previous VRRP process) goes straight back to
    MASTER if the deadline has not passed: its VIPs are still on the interface and its
    backups have not yet declared it down, so resuming keeps the VIPs where they are.
    """

    instances: tuple[InstanceSpec, ...]
    resume_until: dict[str, float] = field(default_factory=dict)
    holds: frozenset[str] = frozenset()
    groups: tuple[SyncGroupSpec, ...] = ()
    # Every tracked verdict the daemon knows (scripts, files, processes): a restarted VRRP
    # process starts from them rather than from "no result yet".
    verdicts: dict[TrackKey, Verdict] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SetHold:
    """Step instances down and keep them BACKUP (`held`), or release them."""

    instances: tuple[str, ...]
    held: bool


@dataclass(frozen=True, slots=True)
class SetTracked:
    """New verdicts of tracked scripts, files or processes, by (kind, name)."""

    verdicts: dict[TrackKey, Verdict]


@dataclass(frozen=True, slots=True)
class SetScheduling:
    """keepalived's vrrp_rt_priority (SCHED_RR 1-99) and vrrp_priority (nice)."""

    rt_priority: int | None
    nice: int | None


@dataclass(frozen=True, slots=True)
class SendCounters:
    """Answer with the engine's cumulative `VrrpCounters` now (a scrape or a status
    asks: the figures are pulled, not pushed every second, since building them costs a
    fixed amount per instance)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Resign every master (priority 0), remove the VIPs, exit 0."""


@dataclass(frozen=True, slots=True)
class Detach:
    """`hacontrol restart`: the daemon is about to execute itself again and keep this
    process. Answer Detached, then send nothing (keep running the instances) until a
    daemon says Attach over the same socket."""


@dataclass(frozen=True, slots=True)
class Attach:
    """The restarted daemon took this process over: send every instance's state as an
    event (it knows nothing yet), then carry on as before."""


# ---- VRRP process -> daemon ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    pid: int


@dataclass(frozen=True, slots=True)
class Detached:
    """The last message before Attach: nothing of this process's follows it."""

    code: str  # code_id() when this process started: what it loaded


@dataclass(frozen=True, slots=True)
class Stopped:
    pass


def code_id() -> str:
    """What identifies the code a VRRP process runs: this package's and vrrp's source
    files (name, size, mtime). A restarted daemon keeps its VRRP process only while this
    is unchanged: after an upgrade the two would speak different versions of this
    protocol, and the upgrade is meant to take effect."""
    digest = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    roots = (os.path.dirname(here), os.path.dirname(os.path.abspath(vrrp_package.__file__)))
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def encode(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > MAX_FRAME:
        raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_FRAME}")
    return _LENGTH.pack(len(payload)) + payload


class FrameError(Exception):
    """The other end sent something that is not a frame of ours."""


async def read_message(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at EOF. FrameError on a corrupt frame."""
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    try:
        return pickle.loads(payload)
    except Exception as exc:
        raise FrameError(f"undecodable frame: {type(exc).__name__}: {exc}") from None
