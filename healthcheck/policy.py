"""From real-server health to the desired real servers and weights of each virtual service.

Pure: `decide(services, health, counters, state, now)` returns the desired table as a plain
value (`desired[virtual_service_id] -> (DesiredRealServer, ...)`), the next `PolicyState` and
the events (quorum gained/lost, drains started/finished). The IPVS layer applies the value; the
two are joined only by it.

Rules (keepalived's, keepalived/check/ipwrapper.c, unless marked ours):

- A live real server is in the table with its weight (the dynamic weight its checks report,
  else the configured one). A down one is kept with weight 0 under `inhibit_on_failure`
  (quiescent: established connections finish, new ones go elsewhere), otherwise removed.
- Quorum: the sum of the weights of the live real servers (`weigh_live_realservers`) against
  `quorum` (default 1). With hysteresis h: quorum is GAINED when the sum reaches quorum + h, and
  LOST when the sum falls below quorum - h or reaches 0. At the first decision the state is
  "up" if the sum >= quorum + h (`set_quorum_states`).
- Sorry server: while quorum is lost, every real server is taken out of the pool (weight 0
  under inhibit_on_failure, else removed) and the sorry server is added with its weight; when
  quorum is regained the sorry server goes and the live real servers come back. With the
  default quorum 1 this is "the sorry server serves when every real server is down". With
  `sorry_server_inhibit` the sorry server stays in the table with weight 0 when not needed.
  Without a sorry server, losing quorum changes no weights: it only fires quorum_down.
- Ours, graceful drain: a real server that leaves the configuration is first set to weight 0
  and deleted only once its ActiveConn + InActConn reach 0 (counters from the kernel, passed
  in) or `drain_timeout` seconds have passed, whichever comes first. keepalived deletes it at
  once, which drops the requests in flight. Counters are trusted only from the decision after
  the one that started the drain: the dump they came from was taken while the weight was still
  non-zero.
- A whole virtual service that leaves the configuration is not drained: it disappears from the
  output (and its drains with it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from healthcheck.state import RealServerId

__all__ = [
    "ConnCounters",
    "DesiredRealServer",
    "DrainFinished",
    "DrainStarted",
    "HealthView",
    "PolicyDecision",
    "PolicyEvent",
    "PolicyState",
    "QuorumChanged",
    "RealServerPolicy",
    "ServerStatus",
    "SorryServer",
    "VirtualServicePolicy",
    "decide",
    "shutdown_events",
]


# --- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RealServerPolicy:
    address: str
    port: int
    weight: int = 1  # keepalived's default
    # keepalived's real_server-level inhibit_on_failure; None: the virtual server's.
    inhibit_on_failure: bool | None = None


@dataclass(frozen=True, slots=True)
class SorryServer:
    address: str
    port: int
    weight: int = 1
    inhibit: bool = False  # sorry_server_inhibit: kept at weight 0 while not needed


@dataclass(frozen=True, slots=True)
class VirtualServicePolicy:
    id: str
    real_servers: tuple[RealServerPolicy, ...]
    quorum: int = 1
    hysteresis: int = 0
    inhibit_on_failure: bool = False
    sorry_server: SorryServer | None = None
    drain_timeout: float = 300.0
    omega: bool = False  # on shutdown, fire quorum_down (keepalived's omega)

    def __post_init__(self) -> None:
        # quorum 0 would flap: a sum of 0 both loses (keepalived's "!weight_sum") and regains.
        if self.quorum < 1:
            raise ValueError(f"{self.id}: quorum must be >= 1, got {self.quorum}")
        if self.hysteresis < 0:
            raise ValueError(f"{self.id}: hysteresis must be >= 0, got {self.hysteresis}")
        if self.drain_timeout < 0:
            raise ValueError(f"{self.id}: drain_timeout must be >= 0")
        keys = [(rs.address, rs.port) for rs in self.real_servers]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.id}: a real server is listed twice")


class HealthView(Protocol):
    """What the policy reads of a real server's health (`state.RealServerHealth` fits)."""

    @property
    def up(self) -> bool: ...

    @property
    def dynamic_weight(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """A plain HealthView, for callers that do not hold a RealServerHealth."""

    up: bool
    dynamic_weight: int | None = None


@dataclass(frozen=True, slots=True)
class ConnCounters:
    """ipvsadm's ActiveConn / InActConn of one destination, from the kernel."""

    active_conn: int
    inact_conn: int


# --- outputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DesiredRealServer:
    address: str
    port: int
    weight: int


@dataclass(frozen=True, slots=True)
class QuorumChanged:
    """Quorum gained (`up`) or lost; the daemon runs quorum_up / quorum_down from it."""

    virtual_service: str
    up: bool
    weight_sum: int
    threshold: int
    reason: str  # "gained", "lost", "initial" (starting with quorum down), "shutdown"


@dataclass(frozen=True, slots=True)
class DrainStarted:
    server: RealServerId


@dataclass(frozen=True, slots=True)
class DrainFinished:
    server: RealServerId
    reason: str  # "connections" (counters reached 0), "timeout", "returned" (back in config)


PolicyEvent = QuorumChanged | DrainStarted | DrainFinished


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What the policy remembers between decisions. Treat the mappings as read-only."""

    quorum_up: Mapping[str, bool] = field(default_factory=dict)
    # (address, port) of the configured servers each virtual service had in the table
    present: Mapping[str, frozenset[tuple[str, int]]] = field(default_factory=dict)
    # server -> (drain start time, counters trusted yet)
    draining: Mapping[RealServerId, tuple[float, bool]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    desired: Mapping[str, tuple[DesiredRealServer, ...]]
    state: PolicyState
    events: tuple[PolicyEvent, ...]


# --- the decision --------------------------------------------------------------------------

_NO_CHECKS = ServerStatus(up=True)  # keepalived: a real server without checkers is alive


def _quorum(
    vs: VirtualServicePolicy, weight_sum: int, previous: bool | None
) -> tuple[bool, QuorumChanged | None]:
    gain_at = vs.quorum + vs.hysteresis
    lose_below = vs.quorum - vs.hysteresis
    if previous is None:
        up = weight_sum >= gain_at
        if up:
            return True, None
        return False, QuorumChanged(vs.id, False, weight_sum, gain_at, "initial")
    if not previous and weight_sum >= gain_at:
        return True, QuorumChanged(vs.id, True, weight_sum, gain_at, "gained")
    # keepalived loses quorum also when the sum is 0, whatever quorum - hysteresis is.
    if previous and (weight_sum == 0 or weight_sum < lose_below):
        return False, QuorumChanged(vs.id, False, weight_sum, lose_below, "lost")
    return previous, None


def decide(
    services: Sequence[VirtualServicePolicy],
    health: Mapping[RealServerId, HealthView],
    counters: Mapping[RealServerId, ConnCounters],
    state: PolicyState,
    now: float,
) -> PolicyDecision:
    """The desired real servers of every virtual service.

    `health` lacks servers with no checks (always alive). `counters` holds the kernel's
    ActiveConn/InActConn of the servers being drained; a draining server without counters
    waits for its drain_timeout. At start-up the daemon may seed `state.present` from the
    kernel's table so that servers left there by an earlier run are drained, not cut."""
    desired: dict[str, tuple[DesiredRealServer, ...]] = {}
    quorum_up: dict[str, bool] = {}
    present: dict[str, frozenset[tuple[str, int]]] = {}
    draining: dict[RealServerId, tuple[float, bool]] = {}
    events: list[PolicyEvent] = []

    for vs in services:
        live: dict[tuple[str, int], int] = {}
        for rs in vs.real_servers:
            status = health.get(RealServerId(vs.id, rs.address, rs.port), _NO_CHECKS)
            if status.up:
                dynamic = status.dynamic_weight
                live[(rs.address, rs.port)] = rs.weight if dynamic is None else dynamic
        weight_sum = sum(live.values())
        up, change = _quorum(vs, weight_sum, state.quorum_up.get(vs.id))
        quorum_up[vs.id] = up
        if change is not None:
            events.append(change)

        table: dict[tuple[str, int], int] = {}
        sorry = vs.sorry_server
        sorry_serving = sorry is not None and not up
        for rs in vs.real_servers:
            key = (rs.address, rs.port)
            if key in live and not sorry_serving:
                table[key] = live[key]
            elif vs.inhibit_on_failure if rs.inhibit_on_failure is None else rs.inhibit_on_failure:
                table[key] = 0
        if sorry is not None:
            key = (sorry.address, sorry.port)
            if sorry_serving:
                table[key] = sorry.weight
            elif sorry.inhibit and key not in table:
                table[key] = 0
        present[vs.id] = frozenset(table)

        # Graceful drain of servers that were in the table and left the configuration.
        configured = {(rs.address, rs.port) for rs in vs.real_servers}
        if sorry is not None:
            configured.add((sorry.address, sorry.port))
        for key in state.present.get(vs.id, frozenset()):
            server = RealServerId(vs.id, *key)
            if key not in configured and server not in state.draining:
                draining[server] = (now, False)
                events.append(DrainStarted(server))
        drained: list[DesiredRealServer] = []
        for server, (since, trusted) in state.draining.items():
            if server.virtual_service != vs.id:
                continue
            key = (server.address, server.port)
            if key in configured:
                events.append(DrainFinished(server, "returned"))
                continue
            conns = counters.get(server)
            if trusted and conns is not None and conns.active_conn + conns.inact_conn == 0:
                events.append(DrainFinished(server, "connections"))
                continue
            if now - since >= vs.drain_timeout:
                events.append(DrainFinished(server, "timeout"))
                continue
            draining[server] = (since, True)
        for server in sorted(draining, key=lambda s: (s.address, s.port)):
            if server.virtual_service == vs.id:
                drained.append(DesiredRealServer(server.address, server.port, 0))

        desired[vs.id] = tuple(DesiredRealServer(a, p, w) for (a, p), w in table.items()) + tuple(
            drained
        )

    return PolicyDecision(desired, PolicyState(quorum_up, present, draining), tuple(events))


def shutdown_events(services: Sequence[VirtualServicePolicy]) -> tuple[QuorumChanged, ...]:
    """keepalived on shutdown: every virtual service with omega fires quorum_down."""
    events = []
    for vs in services:
        if vs.omega:
            events.append(QuorumChanged(vs.id, False, 0, vs.quorum - vs.hysteresis, "shutdown"))
    return tuple(events)
