"""The real-server policy: quiescent vs removal, quorum with hysteresis, sorry server, drain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from healthcheck.policy import (
    ConnCounters,
    DesiredRealServer,
    DrainFinished,
    DrainStarted,
    HealthView,
    PolicyDecision,
    PolicyState,
    QuorumChanged,
    RealServerPolicy,
    ServerStatus,
    SorryServer,
    VirtualServicePolicy,
    decide,
    shutdown_events,
)
from healthcheck.state import CheckParams, RealServerId, initial_health

ADDRS = [f"192.0.2.{i}" for i in range(1, 11)]
UP = ServerStatus(True)
DOWN = ServerStatus(False)


def vs(n: int = 3, **kwargs: object) -> VirtualServicePolicy:
    servers = tuple(RealServerPolicy(a, 80, 1) for a in ADDRS[:n])
    return VirtualServicePolicy("web", servers, **kwargs)  # type: ignore[arg-type]


def rid(address: str, port: int = 80, service: str = "web") -> RealServerId:
    return RealServerId(service, address, port)


def health_of(service: VirtualServicePolicy, up: Sequence[bool]) -> dict[RealServerId, HealthView]:
    return {
        rid(rs.address, rs.port, service.id): (UP if u else DOWN)
        for rs, u in zip(service.real_servers, up, strict=True)
    }


class Run:
    """Feeds successive decisions, threading the state through."""

    def __init__(self) -> None:
        self.state = PolicyState()

    def __call__(
        self,
        services: Sequence[VirtualServicePolicy],
        health: Mapping[RealServerId, HealthView],
        now: float = 0.0,
        counters: Mapping[RealServerId, ConnCounters] | None = None,
    ) -> PolicyDecision:
        d = decide(services, health, counters or {}, self.state, now)
        self.state = d.state
        return d


def table(d: PolicyDecision, service: str = "web") -> dict[str, int]:
    return {rs.address: rs.weight for rs in d.desired[service]}


def test_live_servers_with_their_weights() -> None:
    s = VirtualServicePolicy(
        "web", (RealServerPolicy("192.0.2.1", 80, 5), RealServerPolicy("192.0.2.2", 8080, 2))
    )
    d = Run()([s], {})  # no health entry: a server without checks is alive
    assert d.desired["web"] == (
        DesiredRealServer("192.0.2.1", 80, 5),
        DesiredRealServer("192.0.2.2", 8080, 2),
    )
    assert d.events == ()


def test_down_server_removed_or_quiescent() -> None:
    removal = vs(3)
    d = Run()([removal], health_of(removal, [True, False, True]))
    assert table(d) == {"192.0.2.1": 1, "192.0.2.3": 1}

    inhibit = vs(3, inhibit_on_failure=True)
    d = Run()([inhibit], health_of(inhibit, [True, False, True]))
    assert table(d) == {"192.0.2.1": 1, "192.0.2.2": 0, "192.0.2.3": 1}


def test_a_real_server_s_own_inhibit_on_failure_overrides_the_service_s() -> None:
    # keepalived.conf.inhibit: `inhibit_on_failure` inside the real_server block.
    servers = (
        RealServerPolicy(ADDRS[0], 80, 1, inhibit_on_failure=True),
        RealServerPolicy(ADDRS[1], 80, 1),
    )
    s = VirtualServicePolicy("web", servers)
    assert table(Run()([s], health_of(s, [False, False]))) == {"192.0.2.1": 0}
    servers = (RealServerPolicy(ADDRS[0], 80, 1, inhibit_on_failure=False), servers[1])
    s = VirtualServicePolicy("web", servers, inhibit_on_failure=True)
    assert table(Run()([s], health_of(s, [False, False]))) == {"192.0.2.2": 0}


def test_dynamic_weights_are_used_and_count_towards_quorum() -> None:
    s = vs(2, quorum=10)
    health: dict[RealServerId, HealthView] = {
        rid("192.0.2.1"): ServerStatus(True, 7),
        rid("192.0.2.2"): ServerStatus(True, 0),  # alive, weight 0: present, counts nothing
    }
    d = Run()([s], health)
    assert table(d) == {"192.0.2.1": 7, "192.0.2.2": 0}
    assert d.events == (QuorumChanged("web", False, 7, 10, "initial"),)


def test_real_health_values_fit_the_policy() -> None:
    s = vs(1)
    h = initial_health(rid("192.0.2.1"), 1, [CheckParams(alpha=True)], [0.0])
    d = Run()([s], {h.server: h})
    assert table(d) == {}


def test_quorum_hysteresis_exact_thresholds() -> None:
    # quorum 4, hysteresis 1: lost below 3 (or at 0), regained at 5 (keepalived).
    s = vs(6, quorum=4, hysteresis=1)
    run = Run()
    seen: list[tuple[int, tuple[object, ...]]] = []
    for n_up in (6, 4, 3, 2, 3, 4, 5, 6):
        d = run([s], health_of(s, [i < n_up for i in range(6)]))
        seen.append((n_up, d.events))
        assert run.state.quorum_up["web"] == (n_up >= 3 if len(seen) <= 3 else n_up >= 5)
    assert seen == [
        (6, ()),
        (4, ()),
        (3, ()),  # 3 is not below quorum - hysteresis = 3
        (2, (QuorumChanged("web", False, 2, 3, "lost"),)),
        (3, ()),
        (4, ()),  # 4 >= quorum, but regaining needs quorum + hysteresis
        (5, (QuorumChanged("web", True, 5, 5, "gained"),)),
        (6, ()),
    ]


def test_starting_between_the_thresholds_is_down() -> None:
    # keepalived's set_quorum_states: up at start only with sum >= quorum + hysteresis.
    s = vs(6, quorum=4, hysteresis=1)
    d = Run()([s], health_of(s, [True] * 4 + [False] * 2))
    assert d.state.quorum_up["web"] is False
    assert d.events == (QuorumChanged("web", False, 4, 5, "initial"),)


def test_a_sum_of_zero_loses_quorum_even_when_hysteresis_covers_it() -> None:
    s = vs(2, quorum=1, hysteresis=2)
    run = Run()
    run([s], health_of(s, [True, True]), 0.0)  # 2 < 3: starts down
    d = run([s], health_of(s, [True, True, True][:2]), 1.0)
    assert d.events == ()
    s3 = vs(3, quorum=1, hysteresis=2)
    d = run([s3], health_of(s3, [True, True, True]), 2.0)
    assert d.events == (QuorumChanged("web", True, 3, 3, "gained"),)
    d = run([s3], health_of(s3, [True, False, False]), 3.0)
    assert d.events == ()  # 1 is not below 1 - 2
    d = run([s3], health_of(s3, [False, False, False]), 4.0)
    assert d.events == (QuorumChanged("web", False, 0, -1, "lost"),)


def test_sorry_server_replaces_the_pool_while_quorum_is_lost() -> None:
    s = vs(3, sorry_server=SorryServer("198.51.100.9", 80, 3))
    run = Run()
    assert table(run([s], health_of(s, [True, True, False]))) == {"192.0.2.1": 1, "192.0.2.2": 1}
    d = run([s], health_of(s, [False, False, False]))
    assert table(d) == {"198.51.100.9": 3}
    assert d.events == (QuorumChanged("web", False, 0, 1, "lost"),)
    d = run([s], health_of(s, [False, True, False]))
    assert table(d) == {"192.0.2.2": 1}
    assert d.events == (QuorumChanged("web", True, 1, 1, "gained"),)


def test_sorry_server_takes_out_live_servers_too_and_inhibit_keeps_them_at_zero() -> None:
    # keepalived's perform_quorum_state(vs, false): alive servers leave the pool as well.
    s = vs(4, quorum=3, inhibit_on_failure=True, sorry_server=SorryServer("198.51.100.9", 80))
    d = Run()([s], health_of(s, [True, True, False, False]))
    assert table(d) == {
        "192.0.2.1": 0,
        "192.0.2.2": 0,
        "192.0.2.3": 0,
        "192.0.2.4": 0,
        "198.51.100.9": 1,
    }
    without_inhibit = vs(4, quorum=3, sorry_server=SorryServer("198.51.100.9", 80))
    d = Run()([without_inhibit], health_of(without_inhibit, [True, True, False, False]))
    assert table(d) == {"198.51.100.9": 1}


def test_no_sorry_server_quorum_loss_keeps_the_live_servers() -> None:
    s = vs(3, quorum=3)
    d = Run()([s], health_of(s, [True, True, False]))
    assert table(d) == {"192.0.2.1": 1, "192.0.2.2": 1}
    assert d.events == (QuorumChanged("web", False, 2, 3, "initial"),)


def test_sorry_server_inhibit_keeps_it_at_weight_zero() -> None:
    s = vs(2, sorry_server=SorryServer("198.51.100.9", 80, 2, inhibit=True))
    run = Run()
    assert table(run([s], health_of(s, [True, False]))) == {"192.0.2.1": 1, "198.51.100.9": 0}
    assert table(run([s], health_of(s, [False, False]))) == {"198.51.100.9": 2}


def test_sorry_server_that_is_also_a_real_server() -> None:
    s = vs(2, quorum=2, sorry_server=SorryServer("192.0.2.1", 80, 9))
    run = Run()
    assert table(run([s], health_of(s, [True, True]))) == {"192.0.2.1": 1, "192.0.2.2": 1}
    assert table(run([s], health_of(s, [True, False]))) == {"192.0.2.1": 9}


def test_drain_ends_when_connections_reach_zero() -> None:
    run = Run()
    before = vs(3)
    run([before], health_of(before, [True] * 3), 0.0)
    after = vs(2)
    gone = rid("192.0.2.3")
    d = run([after], health_of(after, [True] * 2), 1.0, {gone: ConnCounters(0, 0)})
    # First round: weight 0, and the counters (dumped before the weight change) are not
    # trusted yet even though they say 0.
    assert table(d) == {"192.0.2.1": 1, "192.0.2.2": 1, "192.0.2.3": 0}
    assert d.events == (DrainStarted(gone),)
    d = run([after], health_of(after, [True] * 2), 2.0, {gone: ConnCounters(3, 7)})
    assert table(d)["192.0.2.3"] == 0 and d.events == ()
    d = run([after], health_of(after, [True] * 2), 3.0, {gone: ConnCounters(0, 1)})
    assert "192.0.2.3" in table(d)
    d = run([after], health_of(after, [True] * 2), 4.0, {gone: ConnCounters(0, 0)})
    assert table(d) == {"192.0.2.1": 1, "192.0.2.2": 1}
    assert d.events == (DrainFinished(gone, "connections"),)
    d = run([after], health_of(after, [True] * 2), 5.0)
    assert d.events == () and gone not in d.state.draining


def test_drain_ends_at_the_timeout() -> None:
    run = Run()
    before = vs(2, drain_timeout=30.0)
    run([before], {}, 0.0)
    after = vs(1, drain_timeout=30.0)
    gone = rid("192.0.2.2")
    busy = {gone: ConnCounters(12, 40)}
    assert run([after], {}, 100.0, busy).events == (DrainStarted(gone),)
    d = run([after], {}, 129.999, busy)
    assert table(d) == {"192.0.2.1": 1, "192.0.2.2": 0}
    d = run([after], {}, 130.0, busy)
    assert table(d) == {"192.0.2.1": 1}
    assert d.events == (DrainFinished(gone, "timeout"),)


def test_drained_server_coming_back_stops_the_drain() -> None:
    run = Run()
    full = vs(2)
    run([full], {}, 0.0)
    run([vs(1)], {}, 1.0)
    d = run([full], {}, 2.0)
    assert d.events == (DrainFinished(rid("192.0.2.2"), "returned"),)
    assert table(d) == {"192.0.2.1": 1, "192.0.2.2": 1}
    assert d.state.draining == {}


def test_a_server_absent_from_the_table_is_not_drained() -> None:
    run = Run()
    before = vs(2)
    run([before], health_of(before, [True, False]), 0.0)  # removal mode: .2 not in the table
    d = run([vs(1)], health_of(vs(1), [True]), 1.0)
    assert d.events == () and table(d) == {"192.0.2.1": 1}


def test_drain_is_per_virtual_service_and_a_removed_service_just_goes() -> None:
    run = Run()
    a = VirtualServicePolicy(
        "a", (RealServerPolicy("192.0.2.1", 80), RealServerPolicy("192.0.2.2", 80))
    )
    b = VirtualServicePolicy("b", (RealServerPolicy("192.0.2.2", 80),))
    run([a, b], {}, 0.0)
    a2 = VirtualServicePolicy("a", (RealServerPolicy("192.0.2.1", 80),))
    d = run([a2, b], {}, 1.0)
    assert d.events == (DrainStarted(rid("192.0.2.2", service="a")),)
    assert table(d, "a") == {"192.0.2.1": 1, "192.0.2.2": 0}
    assert table(d, "b") == {"192.0.2.2": 1}
    d = run([b], {}, 2.0)
    assert set(d.desired) == {"b"} and d.state.draining == {}


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="quorum"):
        vs(2, quorum=0)
    with pytest.raises(ValueError, match="hysteresis"):
        vs(2, hysteresis=-1)
    with pytest.raises(ValueError, match="twice"):
        VirtualServicePolicy("x", (RealServerPolicy("192.0.2.1", 80),) * 2)


def test_omega_fires_quorum_down_on_shutdown() -> None:
    services = [vs(2, omega=True), VirtualServicePolicy("quiet", ())]
    assert shutdown_events(services) == (QuorumChanged("web", False, 0, 1, "shutdown"),)


def test_leftovers_seeded_from_the_kernel_table_are_drained() -> None:
    s = vs(1)
    seeded = PolicyState(present={"web": frozenset({("192.0.2.1", 80), ("192.0.2.99", 80)})})
    d = decide([s], {}, {}, seeded, 0.0)
    assert d.events == (DrainStarted(rid("192.0.2.99")),)
    assert table(d) == {"192.0.2.1": 1, "192.0.2.99": 0}
    # The quorum state was not seeded: the first decision decides it, silently when up.
    assert d.state.quorum_up == {"web": True}
