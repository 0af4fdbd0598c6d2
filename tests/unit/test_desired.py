"""hacontrol/desired.py: operator drains, whole-service drains, the sync daemon role."""

from __future__ import annotations

from ipaddress import ip_address

from hacontrol.config import parse_config
from hacontrol.desired import (
    ServiceDrainFinished,
    desired_sync_daemon,
    desired_table,
    health_overrides,
    policy_inputs,
    start_service_drain,
    step_service_drains,
    sync_role,
    wanted_timeouts,
)
from hacontrol.ipvs.model import DestKey, ServiceKey
from hacontrol.runtime.state import RealServerRef
from healthcheck.policy import DesiredRealServer, PolicyState, ServerStatus, decide
from healthcheck.state import RealServerId
from vrrp.types import State

CONFIG = """\
vrrp_instances:
  - {name: VI_1, interface: eth0, vrid: 1, virtual_ipaddresses: [192.0.2.10/24]}
virtual_servers:
  - name: web
    address: 192.0.2.10
    port: 80
    real_servers:
      - {address: 198.51.100.1}
      - {address: 198.51.100.2}
  - name: quiet
    address: 192.0.2.10
    port: 443
    inhibit_on_failure: true
    real_servers:
      - {address: 198.51.100.1}
      - {address: 198.51.100.2}
ipvs:
  timeouts: {tcp: 900}
  sync_daemon: {interface: eth1, vrrp_instance: VI_1, syncid: 9}
"""

WEB = ServiceKey.of("TCP", "192.0.2.10", 80)


def weights(config_text: str, drained: set[RealServerRef]) -> dict[str, list[tuple[str, int]]]:
    config = parse_config(config_text)
    policies = policy_inputs(config, drained)
    health = {**health_overrides(config, drained)}
    state = PolicyState()
    out: dict[str, list[tuple[str, int]]] = {}
    # Two decisions: the first puts everything in the table, the second drains.
    for now in (0.0, 1.0):
        decision = decide(policies, health, {}, state, now)
        state = decision.state
        out = {k: [(d.address, d.weight) for d in v] for k, v in decision.desired.items()}
    return out


def test_an_operator_drain_follows_inhibit_on_failure() -> None:
    drained = {
        RealServerRef("web", "198.51.100.1", 80),
        RealServerRef("quiet", "198.51.100.1", 443),
    }
    config = parse_config(CONFIG)
    web, quiet = policy_inputs(config, drained)
    # Without inhibit_on_failure the server leaves the policy's view: the policy drains it.
    assert [r.address for r in web.real_servers] == ["198.51.100.2"]
    # With it, the server stays and is held down: weight 0, quiescent.
    assert [r.address for r in quiet.real_servers] == ["198.51.100.1", "198.51.100.2"]
    assert health_overrides(config, drained) == {
        RealServerId("quiet", "198.51.100.1", 443): ServerStatus(up=False)
    }


def test_a_real_server_s_own_inhibit_on_failure_reaches_the_policy() -> None:
    # keepalived.conf.inhibit's real server: removed instead of weight 0 before the fix.
    text = CONFIG.replace(
        "      - {address: 198.51.100.1}\n      - {address: 198.51.100.2}\n  - name: quiet",
        "      - {address: 198.51.100.1, inhibit_on_failure: true}\n"
        "      - {address: 198.51.100.2}\n  - name: quiet",
    )
    config = parse_config(text)
    web, _quiet = policy_inputs(config)
    assert [r.inhibit_on_failure for r in web.real_servers] == [True, False]
    down = {RealServerId("web", "198.51.100.1", 80): ServerStatus(up=False)}
    decision = decide(policy_inputs(config), down, {}, PolicyState(), 0.0)
    assert [(d.address, d.weight) for d in decision.desired["web"]] == [
        ("198.51.100.1", 0),
        ("198.51.100.2", 1),
    ]
    # An operator drain of it holds it down (quiescent) rather than draining it out.
    drained = {RealServerRef("web", "198.51.100.1", 80)}
    assert [r.address for r in policy_inputs(config, drained)[0].real_servers] == [
        "198.51.100.1",
        "198.51.100.2",
    ]


def test_drained_servers_go_to_weight_zero() -> None:
    drained = {
        RealServerRef("web", "198.51.100.1", 80),
        RealServerRef("quiet", "198.51.100.1", 443),
    }
    config = parse_config(CONFIG)
    policies = policy_inputs(config)
    health: dict[RealServerId, ServerStatus] = {}
    first = decide(policies, health, {}, PolicyState(), 0.0)  # before the drain: all in
    after = decide(
        policy_inputs(config, drained),
        health_overrides(config, drained),
        {},
        first.state,
        1.0,
    )
    got = {k: sorted((d.address, d.weight) for d in v) for k, v in after.desired.items()}
    assert got == {
        "web": [("198.51.100.1", 0), ("198.51.100.2", 1)],  # draining
        "quiet": [("198.51.100.1", 0), ("198.51.100.2", 1)],  # quiescent
    }


def test_a_draining_service_stays_in_the_table_at_weight_zero() -> None:
    config = parse_config(CONFIG)
    old = parse_config(
        CONFIG.replace(
            "virtual_servers:",
            "virtual_servers:\n  - {address: 192.0.2.20, "
            "port: 25, real_servers: [{address: 198.51.100.5, weight: 4}]}",
        )
    )
    gone_key = ServiceKey.of("TCP", "192.0.2.20", 25)
    old_table = desired_table(
        old, {"TCP 192.0.2.20:25": (DesiredRealServer("198.51.100.5", 25, 4),)}
    )
    old_service = old_table.get(gone_key)
    assert old_service is not None
    drain = start_service_drain(old_service, now=100.0, timeout=30.0)
    table = desired_table(config, {}, {gone_key: drain})
    kept = table.get(gone_key)
    assert kept is not None
    assert [(str(rs.address), rs.weight) for rs in kept.real_servers] == [("198.51.100.5", 0)]
    assert kept.scheduler == old_service.scheduler
    # A drain never shadows a configured service of the same key.
    assert desired_table(config, {}, {WEB: drain}).get(WEB) == desired_table(config, {}).get(WEB)


def test_service_drain_ends_on_trusted_zero_counters_timeout_or_return() -> None:
    config = parse_config(CONFIG)
    table = desired_table(
        config,
        {
            "web": (
                DesiredRealServer("198.51.100.1", 80, 1),
                DesiredRealServer("198.51.100.2", 80, 1),
            )
        },
    )
    service = table.get(WEB)
    assert service is not None
    d1, d2 = (DestKey(ip_address(a), 80) for a in ("198.51.100.1", "198.51.100.2"))
    drains = {WEB: start_service_drain(service, now=0.0, timeout=60.0)}
    zero = {(WEB, d1): (0, 0), (WEB, d2): (0, 0)}
    # First step: counters come from a dump taken before the weights dropped: not trusted.
    drains, events = step_service_drains(drains, set(), zero, 1.0)
    assert events == [] and drains[WEB].trusted
    busy = {(WEB, d1): (3, 1), (WEB, d2): (0, 0)}
    drains, events = step_service_drains(drains, set(), busy, 2.0)
    assert events == [] and WEB in drains
    partial = {(WEB, d1): (0, 0)}  # one real server missing from the dump: keep waiting
    drains, events = step_service_drains(drains, set(), partial, 3.0)
    assert events == []
    done, events = step_service_drains(drains, set(), zero, 4.0)
    assert done == {} and events == [ServiceDrainFinished(WEB, "connections")]
    _, events = step_service_drains(drains, set(), busy, 60.0)
    assert events == [ServiceDrainFinished(WEB, "timeout")]
    _, events = step_service_drains(drains, {WEB}, busy, 5.0)
    assert events == [ServiceDrainFinished(WEB, "returned")]


def test_sync_daemon_follows_the_vrrp_state_and_timeouts() -> None:
    config = parse_config(CONFIG)
    assert sync_role(State.MASTER) == "master"
    for state in (State.BACKUP, State.FAULT, State.INITIALIZE, None):
        assert sync_role(state) == "backup"
    master = desired_sync_daemon(config, State.MASTER)
    assert master is not None and master.state == "master" and master.syncid == 9
    assert master.interface == "eth1"
    backup = desired_sync_daemon(config, State.FAULT)
    assert backup is not None and backup.state == "backup"
    timeouts = wanted_timeouts(config)
    assert timeouts is not None and (timeouts.tcp, timeouts.tcpfin, timeouts.udp) == (900, 0, 0)
    bare = parse_config("virtual_servers: [{address: 192.0.2.1, port: 80}]")
    assert desired_sync_daemon(bare, State.MASTER) is None
    assert wanted_timeouts(bare) is None
