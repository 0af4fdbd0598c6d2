"""The daemon's own events, beside the engines' (vrrp.events, healthcheck.state/policy).

Everything here is a frozen plain value: the bus delivers it, the read model folds it,
metrics count it, logs print it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from hacontrol.ipvs.netlink import Snapshot


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """One kind of kernel state brought to its desired value once (or the attempt failed).

    `kind` names what was compared: `ipvs_table`, `sync_daemon`, `timeouts`, `sysctls`.
    `repairs` counts the changes made so the kernel matches (0: nothing drifted);
    `detail` describes the first few of them; `error` says why the pass failed, and the
    reconciler then retries with backoff.
    """

    kind: str
    ok: bool
    repairs: int
    writes: int
    duration: float
    at: float  # wall-clock time the pass finished (for status)
    detail: tuple[str, ...] = ()
    error: str | None = None
    next_attempt_in: float | None = None  # seconds, when a failure is retried


@dataclass(frozen=True, slots=True)
class IpvsAvailability:
    """Whether the kernel's IPVS is usable; `detail` says why not, and what was tried."""

    available: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class IpvsTableDumped:
    """The IPVS table as the reconciler just dumped it, counters included.

    `at` is the monotonic time of the dump. Published once per table pass that dumped with
    counters (hacontrol/lvs.py decides when), so metrics export the kernel's figures from the
    dumps the reconciler makes anyway instead of dumping again at scrape time.
    """

    snapshot: Snapshot
    at: float


@dataclass(frozen=True, slots=True)
class SyncDaemonRoleChanged:
    """The sync daemon role the daemon wants (master on the VRRP master, else backup)."""

    role: Literal["master", "backup"] | None
    vrrp_instance: str | None


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did. `result` is `applied`, `unchanged` or `rejected`.

    `applied` lists the sections or objects changed in place, `restarted` the VRRP
    instances whose identity changed (stopped and started anew), `rejected` the file's
    errors as `FILE:LINE: key: message` lines (nothing was changed then).
    """

    result: Literal["applied", "unchanged", "rejected"]
    applied: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OverridesChanged:
    """The operator's maintenance overrides as they now stand (persisted across restarts)."""

    drained: frozenset[tuple[str, str, int]]  # (virtual server, address, port)
    stepped_down: frozenset[str]  # VRRP instance names


@dataclass(frozen=True, slots=True)
class VrrpProcessChanged:
    """The VRRP process started, exited or was restarted (`pid` None: not running)."""

    event: Literal["started", "exited"]
    pid: int | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """A configured VRRP instance, as status lists it before anything has happened."""

    name: str
    interface: str
    vrid: int
    family: int
    priority: int


@dataclass(frozen=True, slots=True)
class RealServerInfo:
    address: str
    port: int
    weight: int  # configured
    checks: int  # how many checks (0: always considered alive, as keepalived does)


@dataclass(frozen=True, slots=True)
class VirtualServerInfo:
    name: str
    key: str  # as ipvsadm prints it: "TCP 192.0.2.10:80", "FWM 7"
    quorum: int
    real_servers: tuple[RealServerInfo, ...]
    sorry_server: str | None = None


@dataclass(frozen=True, slots=True)
class Topology:
    """What the running configuration declares (published at start and on every reload)."""

    instances: tuple[InstanceInfo, ...]
    virtual_servers: tuple[VirtualServerInfo, ...]
    sync_daemon_instance: str | None = None
    config_path: str = ""
    sync_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (group, members)


@dataclass(frozen=True, slots=True)
class DesiredWeights:
    """The policy's verdict: the real servers each virtual service should have, with
    their weights (drained and draining servers at 0), after every decision."""

    weights: dict[str, tuple[tuple[str, int, int], ...]]  # vs -> ((address, port, weight), ...)


@dataclass(frozen=True, slots=True)
class RealServerHealthKnown:
    """A real server's verdict when the daemon starts checking it (start, reload).

    Without alpha a real server starts up (keepalived adds it at once and lets the first
    failure remove it), with alpha down; no RealServerUp/Down is published for that first
    verdict, because nothing changed, so notify hooks do not run. Status and metrics need
    it all the same.
    """

    virtual_server: str
    address: str
    port: int
    up: bool
    weight: int
    reason: str
