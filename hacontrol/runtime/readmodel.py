"""The read model behind `hacontrol status`: every event folded into one current view.

A bus subscriber and nothing else: it never asks an engine anything, so what status
shows is exactly what the engines said happened, and the model can be tested by feeding
it events. `snapshot()` is a JSON-ready dict (what `hacontrol status --json` prints);
`format_status()` renders that dict as the operator's table. The kernel's live
connection counters (ActiveConn / InActConn) are not events: the control handler merges
them from a dump taken when status is asked for (`merge_counters`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hacontrol.runtime.events import (
    DesiredWeights,
    IpvsAvailability,
    OverridesChanged,
    RealServerHealthKnown,
    ReconcileResult,
    ReloadResult,
    SyncDaemonRoleChanged,
    Topology,
    VrrpProcessChanged,
)
from healthcheck.policy import DrainFinished, DrainStarted, QuorumChanged
from healthcheck.state import RealServerDown, RealServerUp, RealServerWeight
from vrrp.events import (
    FaultsChanged,
    HoldChanged,
    InstanceStateChanged,
    MasterChanged,
    PriorityChanged,
    RouteRepaired,
    SyncGroupStateChanged,
    TrackedItemStatus,
    TrackingChanged,
    VipRepaired,
    VrrpCounters,
)


@dataclass
class _Instance:
    name: str
    interface: str
    vrid: int
    family: int
    priority: int
    effective_priority: int
    state: str = "INIT"
    master: str | None = None
    master_priority: int | None = None
    master_is_us: bool = False
    since: float | None = None  # wall time of the last transition
    reason: str | None = None
    faults: tuple[str, ...] = ()
    held: bool = False
    adverts_sent: int = 0
    adverts_received: int = 0
    advert_intervals_missed: int = 0
    vip_repairs: int = 0
    route_repairs: int = 0  # virtual routes and rules put back
    tracking: tuple[TrackedItemStatus, ...] = ()
    sync_group: str | None = None


@dataclass
class _SyncGroup:
    name: str
    members: tuple[str, ...]
    state: str = "INIT"
    since: float | None = None
    reason: str | None = None


@dataclass
class _RealServer:
    address: str
    port: int
    configured_weight: int
    checks: int
    up: bool | None = None  # None: no verdict yet
    reason: str | None = None
    since: float | None = None
    weight: int | None = None  # desired weight in the kernel; None: not in the table
    draining: bool = False
    drained_by_operator: bool = False


@dataclass
class _VirtualServer:
    name: str
    key: str
    quorum: int
    sorry_server: str | None
    real_servers: dict[tuple[str, int], _RealServer] = field(default_factory=dict)
    quorum_up: bool | None = None


class ReadModel:
    """Subscribe `apply` to the bus; read `snapshot()`."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.started = clock()
        self.config_path = ""
        self.instances: dict[str, _Instance] = {}
        self.sync_groups: dict[str, _SyncGroup] = {}
        self.virtual_servers: dict[str, _VirtualServer] = {}
        self.sync_instance: str | None = None
        self.sync_role: str | None = None
        self.ipvs_available: bool | None = None
        self.ipvs_detail = ""
        self.reconcile: dict[str, ReconcileResult] = {}
        self.last_reload: ReloadResult | None = None
        self.last_reload_at: float | None = None
        self.drained: frozenset[tuple[str, str, int]] = frozenset()
        self.stepped_down: frozenset[str] = frozenset()
        self.vrrp_pid: int | None = None
        self.vrrp_restarts = 0
        self._handlers: dict[type, Callable[[Any], None]] = {
            Topology: self._topology,
            InstanceStateChanged: self._state,
            PriorityChanged: self._priority,
            MasterChanged: self._master,
            FaultsChanged: self._faults,
            HoldChanged: self._hold,
            TrackingChanged: self._tracking,
            SyncGroupStateChanged: self._sync_group,
            VipRepaired: self._vip_repaired,
            RouteRepaired: self._route_repaired,
            VrrpCounters: self._counters,
            RealServerUp: self._health,
            RealServerDown: self._health,
            RealServerWeight: self._health,
            RealServerHealthKnown: self._health_known,
            QuorumChanged: self._quorum,
            DrainStarted: self._drain,
            DrainFinished: self._drain,
            DesiredWeights: self._weights,
            IpvsAvailability: self._ipvs,
            SyncDaemonRoleChanged: self._sync_role,
            ReconcileResult: self._reconcile,
            ReloadResult: self._reload,
            OverridesChanged: self._overrides,
            VrrpProcessChanged: self._vrrp_process,
        }

    @property
    def kinds(self) -> tuple[type, ...]:
        """The event classes to subscribe `apply` to."""
        return tuple(self._handlers)

    def apply(self, event: object) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    # ---- folding -----------------------------------------------------------------------

    def _topology(self, event: Topology) -> None:
        self.config_path = event.config_path
        self.sync_instance = event.sync_daemon_instance
        instances: dict[str, _Instance] = {}
        for info in event.instances:
            old = self.instances.get(info.name)
            if old is not None:
                old.interface, old.vrid, old.family = info.interface, info.vrid, info.family
                old.priority = info.priority
                instances[info.name] = old
            else:
                instances[info.name] = _Instance(
                    info.name, info.interface, info.vrid, info.family, info.priority, info.priority
                )
        self.instances = instances
        groups: dict[str, _SyncGroup] = {}
        for name, members in event.sync_groups:
            group = self.sync_groups.get(name) or _SyncGroup(name, members)
            group.members = members
            groups[name] = group
            for member in members:
                if member in instances:
                    instances[member].sync_group = name
        self.sync_groups = groups
        servers: dict[str, _VirtualServer] = {}
        for vs_info in event.virtual_servers:
            old_vs = self.virtual_servers.get(vs_info.name)
            vs = _VirtualServer(vs_info.name, vs_info.key, vs_info.quorum, vs_info.sorry_server)
            if old_vs is not None:
                vs.quorum_up = old_vs.quorum_up
            for rs_info in vs_info.real_servers:
                key = (rs_info.address, rs_info.port)
                known = old_vs.real_servers.get(key) if old_vs is not None else None
                if known is not None:
                    known.configured_weight, known.checks = rs_info.weight, rs_info.checks
                    vs.real_servers[key] = known
                else:
                    vs.real_servers[key] = _RealServer(
                        rs_info.address, rs_info.port, rs_info.weight, rs_info.checks
                    )
            # Servers that left the config but still drain stay visible until they are gone.
            if old_vs is not None:
                for key, rs in old_vs.real_servers.items():
                    if key not in vs.real_servers and rs.draining:
                        vs.real_servers[key] = rs
            servers[vs_info.name] = vs
        for name, old_vs in self.virtual_servers.items():
            if name not in servers and any(rs.draining for rs in old_vs.real_servers.values()):
                servers[name] = old_vs
        self.virtual_servers = servers
        self._mark_operator_drains()

    def _instance(self, name: str) -> _Instance | None:
        return self.instances.get(name)

    def _state(self, event: InstanceStateChanged) -> None:
        inst = self._instance(event.instance)
        if inst is None:
            return
        inst.state = event.new.value
        inst.reason = event.reason.value
        inst.since = self._clock()
        inst.priority = event.priority
        inst.effective_priority = event.effective_priority
        if event.new.value != "MASTER" and inst.master_is_us:
            inst.master, inst.master_priority, inst.master_is_us = None, None, False

    def _priority(self, event: PriorityChanged) -> None:
        inst = self._instance(event.instance)
        if inst is not None:
            inst.priority = event.priority
            inst.effective_priority = event.effective_priority

    def _master(self, event: MasterChanged) -> None:
        inst = self._instance(event.instance)
        if inst is not None:
            inst.master = None if event.address is None else str(event.address)
            inst.master_priority = event.priority
            inst.master_is_us = event.ours

    def _faults(self, event: FaultsChanged) -> None:
        inst = self._instance(event.instance)
        if inst is not None:
            inst.faults = event.faults

    def _hold(self, event: HoldChanged) -> None:
        inst = self._instance(event.instance)
        if inst is not None:
            inst.held = event.held

    def _tracking(self, event: TrackingChanged) -> None:
        inst = self._instance(event.instance)
        if inst is not None:
            inst.tracking = event.items
            inst.effective_priority = event.effective_priority

    def _sync_group(self, event: SyncGroupStateChanged) -> None:
        group = self.sync_groups.get(event.group)
        if group is not None:
            group.state = event.new.value
            group.reason = event.reason
            group.since = self._clock()

    def _vip_repaired(self, event: VipRepaired) -> None:
        inst = self._instance(event.instance)
        if inst is not None:
            inst.vip_repairs += 1

    def _route_repaired(self, event: RouteRepaired) -> None:
        inst = self._instance(event.instance)
        if inst is not None:
            inst.route_repairs += 1

    def _counters(self, event: VrrpCounters) -> None:
        for name, counters in event.instances.items():
            inst = self._instance(name)
            if inst is not None:
                inst.adverts_sent = counters.adverts_sent
                inst.adverts_received = counters.adverts_received
                inst.advert_intervals_missed = counters.intervals_missed

    def _real_server(self, vs_name: str, address: str, port: int) -> _RealServer | None:
        vs = self.virtual_servers.get(vs_name)
        return None if vs is None else vs.real_servers.get((address, port))

    def _health(self, event: RealServerUp | RealServerDown | RealServerWeight) -> None:
        server = event.server
        rs = self._real_server(server.virtual_service, server.address, server.port)
        if rs is None:
            return
        if isinstance(event, RealServerWeight):
            rs.reason = event.reason
            return
        up = isinstance(event, RealServerUp)
        if rs.up != up:
            rs.since = self._clock()
        rs.up = up
        rs.reason = event.reason

    def _health_known(self, event: RealServerHealthKnown) -> None:
        rs = self._real_server(event.virtual_server, event.address, event.port)
        if rs is not None and rs.up is None:
            rs.up, rs.reason, rs.since = event.up, event.reason, self._clock()

    def _quorum(self, event: QuorumChanged) -> None:
        vs = self.virtual_servers.get(event.virtual_service)
        if vs is not None:
            vs.quorum_up = event.up

    def _drain(self, event: DrainStarted | DrainFinished) -> None:
        server = event.server
        vs = self.virtual_servers.get(server.virtual_service)
        if vs is None:
            return
        key = (server.address, server.port)
        rs = vs.real_servers.get(key)
        if isinstance(event, DrainStarted):
            if rs is None:
                rs = vs.real_servers[key] = _RealServer(server.address, server.port, 0, 0)
            rs.draining = True
        elif rs is not None:
            rs.draining = False
            if event.reason != "returned":
                vs.real_servers.pop(key, None)

    def _weights(self, event: DesiredWeights) -> None:
        for vs_name, servers in event.weights.items():
            vs = self.virtual_servers.get(vs_name)
            if vs is None:
                continue
            present = {(address, port): weight for address, port, weight in servers}
            for key, rs in vs.real_servers.items():
                rs.weight = present.get(key)

    def _ipvs(self, event: IpvsAvailability) -> None:
        self.ipvs_available = event.available
        self.ipvs_detail = event.detail

    def _sync_role(self, event: SyncDaemonRoleChanged) -> None:
        self.sync_role = event.role
        self.sync_instance = event.vrrp_instance

    def _reconcile(self, event: ReconcileResult) -> None:
        self.reconcile[event.kind] = event

    def _reload(self, event: ReloadResult) -> None:
        self.last_reload = event
        self.last_reload_at = self._clock()

    def _overrides(self, event: OverridesChanged) -> None:
        self.drained = event.drained
        self.stepped_down = event.stepped_down
        self._mark_operator_drains()

    def _mark_operator_drains(self) -> None:
        for vs in self.virtual_servers.values():
            for (address, port), rs in vs.real_servers.items():
                rs.drained_by_operator = (vs.name, address, port) in self.drained

    def _vrrp_process(self, event: VrrpProcessChanged) -> None:
        if event.event == "started":
            self.vrrp_pid = event.pid
            if event.detail == "restart":
                self.vrrp_restarts += 1
        else:
            self.vrrp_pid = None

    # ---- reading -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole view as JSON-ready data (the `status --json` document)."""
        return {
            "config": self.config_path,
            "started": self.started,
            "now": self._clock(),
            "vrrp_process": {"pid": self.vrrp_pid, "restarts": self.vrrp_restarts},
            "vrrp_instances": [
                {
                    "name": i.name,
                    "interface": i.interface,
                    "vrid": i.vrid,
                    "family": i.family,
                    "state": i.state,
                    "priority": i.priority,
                    "effective_priority": i.effective_priority,
                    "master": i.master,
                    "master_priority": i.master_priority,
                    "master_is_us": i.master_is_us,
                    "since": i.since,
                    "reason": i.reason,
                    "faults": list(i.faults),
                    "stepped_down": i.held or i.name in self.stepped_down,
                    "adverts_sent": i.adverts_sent,
                    "adverts_received": i.adverts_received,
                    "advert_intervals_missed": i.advert_intervals_missed,
                    "vip_repairs": i.vip_repairs,
                    "sync_group": i.sync_group,
                    "tracking": [
                        {
                            "kind": t.kind,
                            "name": t.name,
                            "weight": t.weight,
                            "reverse": t.reverse,
                            "state": t.state,
                            "value": t.value,
                            "effect": t.effect,
                            "delta": t.delta,
                        }
                        for t in i.tracking
                    ],
                    "route_repairs": i.route_repairs,
                }
                for i in self.instances.values()
            ],
            "vrrp_sync_groups": [
                {
                    "name": g.name,
                    "members": list(g.members),
                    "state": g.state,
                    "since": g.since,
                    "reason": g.reason,
                }
                for g in self.sync_groups.values()
            ],
            "virtual_servers": [
                {
                    "name": vs.name,
                    "key": vs.key,
                    "quorum": vs.quorum,
                    "quorum_up": vs.quorum_up,
                    "sorry_server": vs.sorry_server,
                    "real_servers": [
                        {
                            "address": rs.address,
                            "port": rs.port,
                            "configured_weight": rs.configured_weight,
                            "checks": rs.checks,
                            "health": _health_word(rs),
                            "reason": rs.reason,
                            "since": rs.since,
                            "weight": rs.weight,
                            "draining": rs.draining,
                            "drained_by_operator": rs.drained_by_operator,
                            "active_conn": None,
                            "inact_conn": None,
                        }
                        for rs in vs.real_servers.values()
                    ],
                }
                for vs in self.virtual_servers.values()
            ],
            "ipvs": {"available": self.ipvs_available, "detail": self.ipvs_detail},
            "sync_daemon": {"vrrp_instance": self.sync_instance, "role": self.sync_role},
            "reconcile": {
                kind: {
                    "ok": r.ok,
                    "at": r.at,
                    "repairs": r.repairs,
                    "duration": round(r.duration, 6),
                    "error": r.error,
                    "detail": list(r.detail),
                    "next_attempt_in": r.next_attempt_in,
                }
                for kind, r in sorted(self.reconcile.items())
            },
            "last_reload": None
            if self.last_reload is None
            else {
                "at": self.last_reload_at,
                "result": self.last_reload.result,
                "applied": list(self.last_reload.applied),
                "restarted": list(self.last_reload.restarted),
                "rejected": list(self.last_reload.rejected),
            },
            "maintenance": {
                "drained": [
                    {"virtual_server": vs, "address": a, "port": p}
                    for vs, a, p in sorted(self.drained)
                ],
                "stepped_down": sorted(self.stepped_down),
            },
        }


def _health_word(rs: _RealServer) -> str:
    if rs.drained_by_operator:
        return "drained"
    if rs.draining:
        return "draining"
    if rs.up is None:
        return "alive" if rs.checks == 0 else "pending"
    return "up" if rs.up else "down"


def merge_counters(
    snapshot: dict[str, Any], counters: Mapping[tuple[str, str, int], tuple[int, int]]
) -> None:
    """Fill ActiveConn / InActConn in a snapshot from `counters` keyed by
    (virtual server name, address, port)."""
    for vs in snapshot["virtual_servers"]:
        for rs in vs["real_servers"]:
            found = counters.get((vs["name"], rs["address"], rs["port"]))
            if found is not None:
                rs["active_conn"], rs["inact_conn"] = found


# ---- the human table ---------------------------------------------------------------------


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    seconds = max(0, int(now - at))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    if seconds < 172800:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def format_status(snap: Mapping[str, Any]) -> str:
    """`hacontrol status` as an operator reads it."""
    now = float(snap["now"])
    out: list[str] = []
    vrrp = snap["vrrp_process"]
    out.append(
        f"hacontrol: config {snap['config'] or '-'}, up {_ago(snap['started'], now)[:-4]}, "
        f"VRRP process pid {vrrp['pid'] or '-'}"
        + (f" (restarted {vrrp['restarts']}x)" if vrrp["restarts"] else "")
    )
    instances = snap["vrrp_instances"]
    out.append("")
    out.append(f"VRRP instances ({len(instances)})")
    rows = [["NAME", "IFACE", "VRID", "STATE", "PRIO", "EFFECTIVE", "MASTER", "SINCE", "REASON"]]
    for i in instances:
        state = i["state"]
        notes = []
        if i["faults"]:
            notes.append(",".join(i["faults"]))
        if i["stepped_down"]:
            notes.append("stepped down")
        master = "this director" if i["master_is_us"] else (i["master"] or "-")
        if i["master_priority"] is not None and not i["master_is_us"]:
            master += f" (prio {i['master_priority']})"
        rows.append(
            [
                i["name"],
                i["interface"],
                str(i["vrid"]),
                state + (f" [{'; '.join(notes)}]" if notes else ""),
                str(i["priority"]),
                str(i["effective_priority"]),
                master,
                _ago(i["since"], now),
                i["reason"] or "-",
            ]
        )
    out.extend(_table(rows) if instances else ["  (none)"])
    tracked = [i for i in instances if i["tracking"]]
    if tracked:
        out.append("")
        out.append("Tracking")
        rows = [["INSTANCE", "ITEM", "WEIGHT", "STATE", "EFFECT"]]
        for i in tracked:
            for t in i["tracking"]:
                weight = str(t["weight"]) + (" reverse" if t["reverse"] else "")
                state = t["state"] if t["value"] is None else f"{t['state']} (value {t['value']})"
                effect = {"priority": f"{t['delta']:+d}", "fault": "FAULT"}.get(t["effect"], "-")
                rows.append([i["name"], f"{t['kind']} {t['name']}", weight, state, effect])
        out.extend(_table(rows))
    groups = snap["vrrp_sync_groups"]
    if groups:
        out.append("")
        out.append(f"VRRP sync groups ({len(groups)})")
        rows = [["NAME", "STATE", "MEMBERS", "SINCE", "REASON"]]
        for g in groups:
            rows.append(
                [
                    g["name"],
                    g["state"],
                    ",".join(g["members"]),
                    _ago(g["since"], now),
                    g["reason"] or "-",
                ]
            )
        out.extend(_table(rows))

    services = snap["virtual_servers"]
    out.append("")
    out.append(f"Virtual servers ({len(services)})")
    for vs in services:
        quorum = {True: "up", False: "LOST", None: "-"}[vs["quorum_up"]]
        header = f"  {vs['key']}"
        if vs["name"] != vs["key"]:
            header += f" ({vs['name']})"
        out.append(header + f"  quorum {quorum} (need {vs['quorum']})")
        rows = [["REAL SERVER", "HEALTH", "WEIGHT", "ACTIVECONN", "INACTCONN", "SINCE", "REASON"]]
        for rs in vs["real_servers"]:
            host = f"[{rs['address']}]" if ":" in rs["address"] else rs["address"]
            weight = "-" if rs["weight"] is None else str(rs["weight"])
            rows.append(
                [
                    f"{host}:{rs['port']}",
                    rs["health"],
                    weight,
                    "-" if rs["active_conn"] is None else str(rs["active_conn"]),
                    "-" if rs["inact_conn"] is None else str(rs["inact_conn"]),
                    _ago(rs["since"], now),
                    rs["reason"] or "-",
                ]
            )
        out.extend(_table(rows, "    "))
    if not services:
        out.append("  (none)")

    out.append("")
    ipvs = snap["ipvs"]
    available = {True: "available", False: "UNAVAILABLE", None: "not used"}[ipvs["available"]]
    out.append(f"IPVS: {available}" + (f" ({ipvs['detail']})" if ipvs["detail"] else ""))
    sync = snap["sync_daemon"]
    if sync["vrrp_instance"]:
        out.append(
            f"Sync daemon: {sync['role'] or '-'} (follows {sync['vrrp_instance']})"
            + _reconcile_note(snap["reconcile"].get("sync_daemon"))
        )
    for kind, r in snap["reconcile"].items():
        status = "ok" if r["ok"] else f"FAILED: {r['error']}"
        line = f"Reconcile {kind}: {status}, {_ago(r['at'], now)}"
        if r["repairs"]:
            line += f", {r['repairs']} repair(s)"
        if r["next_attempt_in"] is not None:
            line += f", retry in {r['next_attempt_in']:.0f}s"
        out.append(line)
    reload = snap["last_reload"]
    if reload is not None:
        out.append(f"Last reload: {reload['result']}, {_ago(reload['at'], now)}")
    maint = snap["maintenance"]
    if maint["drained"] or maint["stepped_down"]:
        out.append("")
        out.append("Maintenance")
        for d in maint["drained"]:
            out.append(f"  drained: {d['virtual_server']} {d['address']}:{d['port']}")
        for name in maint["stepped_down"]:
            out.append(f"  stepped down: {name}")
    return "\n".join(out) + "\n"


def _reconcile_note(r: Mapping[str, Any] | None) -> str:
    if r is None or r["ok"]:
        return ""
    return f", last attempt failed: {r['error']}"
