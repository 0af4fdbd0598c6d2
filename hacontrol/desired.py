"""Config -> the IPVS model, pure: the table the kernel should hold, and what the model refuses.

Shared by the daemon (`hacontrol.lvs`, which feeds it the health checks' verdict) and by
config validation (`model_problems`, so that `hacontrol check` reports what the kernel layer
would refuse). Imports no runtime: checking a config loads no netlink library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, ip_address
from socket import AF_INET, AF_INET6

from hacontrol.config import Config
from hacontrol.config_lvs import RealServerConfig, VirtualServerConfig
from hacontrol.ipvs.model import (
    ForwardingMethod,
    RealServer,
    ServiceKey,
    Table,
    TunnelFlags,
    TunnelType,
    VirtualService,
)
from healthcheck.policy import DesiredRealServer

_FORWARDING = {"DR": ForwardingMethod.DR, "TUN": ForwardingMethod.TUN, "NAT": ForwardingMethod.NAT}
_TUNNEL_TYPE = {"ipip": TunnelType.IPIP, "gue": TunnelType.GUE, "gre": TunnelType.GRE}
_TUNNEL_FLAGS = {
    "nocsum": TunnelFlags(0),
    "csum": TunnelFlags.CSUM,
    "remcsum": TunnelFlags.REMCSUM,
}


def service_key(vs: VirtualServerConfig) -> ServiceKey:
    if vs.fwmark is not None:
        return ServiceKey.of_fwmark(vs.fwmark, AF_INET6 if vs.family == 6 else AF_INET)
    assert vs.address is not None and vs.port is not None
    return ServiceKey.of(vs.protocol, vs.address, vs.port)


def rs_port(vs: VirtualServerConfig, port: int | None) -> int:
    # The policy and the checks need a concrete port; None means the service's.
    if port is not None:
        return port
    return vs.port or 0


def base_service(vs: VirtualServerConfig) -> VirtualService:
    """The service's own settings, without real servers."""
    return _service(vs, ())


def _service(vs: VirtualServerConfig, real_servers: tuple[RealServer, ...]) -> VirtualService:
    netmask: IPv4Address | int | None = None
    if vs.persistence_granularity is not None:
        text = vs.persistence_granularity.lstrip("/")
        netmask = int(text) if text.isdigit() else IPv4Address(text)
    return VirtualService(
        key=service_key(vs),
        scheduler=vs.scheduler,
        sched_flags=frozenset(vs.sched_flags),
        one_packet=vs.ops,
        persistence_timeout=vs.persistence_timeout,
        persistence_netmask=netmask,
        persistence_engine=vs.persistence_engine,
        real_servers=real_servers,
    )


def _real_server(
    vs: VirtualServerConfig, rs: RealServerConfig | None, want: DesiredRealServer
) -> RealServer:
    forwarding = (rs.forwarding if rs is not None else None) or vs.forwarding
    # The configured server's address is parsed already (50,000 parses per check of a
    # large config otherwise).
    address = rs.address if rs is not None else ip_address(want.address)
    # DR/TUN keep the packet's port. want.port is the configured port, else the service's
    # (0 for fwmark): what VirtualService would put for None ("the service's port"),
    # given here so that it need not copy every server to fill it in.
    return RealServer(
        address=address,
        port=want.port,
        forwarding=_FORWARDING[forwarding],
        weight=want.weight,
        upper_threshold=rs.uthreshold if rs is not None else 0,
        lower_threshold=rs.lthreshold if rs is not None else 0,
        tunnel_type=_TUNNEL_TYPE[rs.tunnel_type] if rs is not None else TunnelType.IPIP,
        tunnel_port=rs.tunnel_port if rs is not None else 0,
        tunnel_flags=_TUNNEL_FLAGS[rs.tunnel_checksum] if rs is not None else TunnelFlags(0),
    )


def virtual_service(vs: VirtualServerConfig, wants: Sequence[DesiredRealServer]) -> VirtualService:
    by_key = {(str(rs.address), rs_port(vs, rs.port)): rs for rs in vs.real_servers}
    return _service(
        vs,
        tuple(_real_server(vs, by_key.get((want.address, want.port)), want) for want in wants),
    )


def desired_table(config: Config, desired: Mapping[str, Sequence[DesiredRealServer]]) -> Table:
    """The IPVS table for the policy's verdict: every configured service, with the real
    servers (and weights) the policy wants in it."""
    return Table.of(
        virtual_service(vs, desired.get(vs.display_name, ())) for vs in config.virtual_servers
    )


def model_problems(config: Config) -> list[tuple[int, str]]:
    """What the IPVS model refuses in each virtual server (index, message), so that
    `hacontrol check` and start-up report it before any kernel call."""
    out: list[tuple[int, str]] = []
    for index, vs in enumerate(config.virtual_servers):
        wants = [
            DesiredRealServer(str(rs.address), rs_port(vs, rs.port), rs.weight)
            for rs in vs.real_servers
        ]
        if vs.sorry_server is not None:
            s = vs.sorry_server
            wants.append(DesiredRealServer(str(s.address), rs_port(vs, s.port), s.weight))
        try:
            service = virtual_service(vs, wants)
        except ValueError as exc:
            out.append((index, str(exc)))
            continue
        out.extend((index, message) for message in service.validate())
    return out
