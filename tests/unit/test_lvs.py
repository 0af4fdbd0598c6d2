"""The pure config -> policy inputs -> desired IPVS table translation (hacontrol/desired.py)."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from hacontrol.config import parse_config
from hacontrol.desired import (
    desired_table,
    policy_inputs,
    sync_role,
    sync_template,
    uses_ipvs,
)
from hacontrol.ipvs.model import DestKey, ForwardingMethod, ServiceKey, TunnelType
from hacontrol.ipvs.syncd import SyncRole
from hacontrol.lvs import check_specs
from healthcheck.policy import DesiredRealServer, PolicyState, decide
from healthcheck.state import RealServerId
from vrrp.types import State

CONFIG = """\
vrrp_instances:
  - {name: VI_1, interface: eth0, vrid: 1, virtual_ipaddresses: [192.0.2.10/24]}
virtual_servers:
  - address: 192.0.2.10
    port: 80
    scheduler: wrr
    forwarding: DR
    persistence_timeout: 120
    persistence_granularity: 255.255.255.0
    inhibit_on_failure: true
    quorum: 2
    alpha: true
    sorry_server: {address: 198.51.100.99}
    real_servers:
      - {address: 198.51.100.1, weight: 3, uthreshold: 100, lthreshold: 10,
         checks: [{type: tcp, delay_loop: 2}]}
      - {address: 198.51.100.2, forwarding: TUN, tunnel_type: gue, tunnel_port: 6080}
  - address: 192.0.2.10
    port: 53
    protocol: UDP
    forwarding: NAT
    real_servers: [{address: 198.51.100.3, port: 5353}]
ipvs:
  sync_daemon: {interface: eth0, vrrp_instance: VI_1, syncid: 4}
"""


def test_policy_inputs_use_the_service_port_for_dr_servers() -> None:
    config = parse_config(CONFIG)
    web, dns = policy_inputs(config)
    assert web.id == "TCP 192.0.2.10:80"
    assert [(r.address, r.port, r.weight) for r in web.real_servers] == [
        ("198.51.100.1", 80, 3),
        ("198.51.100.2", 80, 1),
    ]
    assert web.inhibit_on_failure and web.quorum == 2
    assert web.sorry_server is not None and web.sorry_server.port == 80
    assert [(r.address, r.port) for r in dns.real_servers] == [("198.51.100.3", 5353)]


def test_checks_carry_alpha_from_the_virtual_server() -> None:
    config = parse_config(CONFIG)
    vs = config.virtual_servers[0]
    (spec,) = check_specs(vs, vs.real_servers[0])
    assert spec.params.alpha is True
    assert spec.params.delay_loop == 2
    assert check_specs(vs, vs.real_servers[1]) == ()


def test_desired_table_carries_every_setting_and_the_policy_weights() -> None:
    config = parse_config(CONFIG)
    table = desired_table(
        config,
        {
            "TCP 192.0.2.10:80": (
                DesiredRealServer("198.51.100.1", 80, 0),
                DesiredRealServer("198.51.100.2", 80, 1),
            ),
            "UDP 192.0.2.10:53": (DesiredRealServer("198.51.100.3", 5353, 1),),
        },
    )
    assert table.check() is table
    web = table.get(ServiceKey.of("TCP", "192.0.2.10", 80))
    assert web is not None
    assert web.scheduler == "wrr" and web.persistence_timeout == 120
    assert str(web.persistence_netmask) == "255.255.255.0"
    dr = web.real_server(DestKey(ip_address("198.51.100.1"), 80))
    assert dr is not None
    assert dr.forwarding is ForwardingMethod.DR and dr.weight == 0
    assert (dr.upper_threshold, dr.lower_threshold) == (100, 10)
    tun = web.real_server(DestKey(ip_address("198.51.100.2"), 80))
    assert tun is not None
    assert tun.forwarding is ForwardingMethod.TUN
    assert tun.tunnel_type is TunnelType.GUE and tun.tunnel_port == 6080
    dns = table.get(ServiceKey.of("UDP", "192.0.2.10", 53))
    assert dns is not None
    nat = dns.real_servers[0]
    assert nat.forwarding is ForwardingMethod.NAT and nat.port == 5353


def test_alpha_servers_start_down_and_quorum_brings_the_sorry_server() -> None:
    # With alpha the checked server starts down: the live weight (1, the unchecked
    # server) is below quorum 2, so the sorry server replaces the pool.
    config = parse_config(CONFIG)
    policies = policy_inputs(config)

    class Health:
        def __init__(self, up: bool) -> None:
            self.up = up
            self.dynamic_weight = None

    health = {
        RealServerId("TCP 192.0.2.10:80", "198.51.100.1", 80): Health(False),
        RealServerId("TCP 192.0.2.10:80", "198.51.100.2", 80): Health(True),
        RealServerId("UDP 192.0.2.10:53", "198.51.100.3", 5353): Health(True),
    }
    decision = decide(policies, health, {}, PolicyState(), 0.0)
    table = desired_table(config, decision.desired)
    web = table.get(ServiceKey.of("TCP", "192.0.2.10", 80))
    assert web is not None
    servers = {str(rs.address): rs.weight for rs in web.real_servers}
    assert servers.get("198.51.100.99") == 1  # the sorry server
    assert servers.get("198.51.100.1", 0) == 0


def test_sync_template_and_vrrp_only_configs() -> None:
    config = parse_config(CONFIG)
    template = sync_template(config)
    assert template is not None
    assert (template.interface, template.syncid, template.port) == ("eth0", 4, 8848)
    assert uses_ipvs(config)
    vrrp_only = parse_config(
        "vrrp_instances:\n  - {name: a, interface: eth0, vrid: 1, "
        "virtual_ipaddresses: [192.0.2.1/24]}\n"
    )
    assert not uses_ipvs(vrrp_only)


@pytest.mark.parametrize(
    ("state", "role"),
    [
        (State.MASTER, "master"),
        (State.BACKUP, "backup"),
        (State.FAULT, "backup"),  # keepalived: leaving MASTER for FAULT -> backup daemon
        (State.INITIALIZE, "backup"),  # keepalived starts the backup daemon unless MASTER
        (None, "backup"),  # no state heard yet: not master, so ready to take over
    ],
)
def test_sync_role(state: State | None, role: SyncRole) -> None:
    assert sync_role(state) == role
