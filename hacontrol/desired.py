"""Everything the kernel should hold, as pure functions of the config and the runtime's
states: the IPVS table, the sync daemon, the global timeouts, the IPVS sysctls, the VRRP
instances. Shared by the daemon and by config validation (`model_problems`, so that
`hacontrol check` reports what the kernel layer would refuse): it imports no runtime, so
checking a config loads no netlink library.

```
config + health verdicts (policy) + VRRP state + operator overrides + services draining
        ──> desired_table / desired_sync_daemon / wanted_timeouts / wanted_sysctls
```

No I/O and no clock of its own (time comes in as `now`): the runtime computes these
values and the reconciler converges the kernel to them. Besides the translation of
the config, two decisions live here:

- Operator drains (`hacontrol drain VS RS`): the real server is taken out as a failure
  would take it out, so it follows the virtual server's `inhibit_on_failure`: kept at
  weight 0 (quiescent) with it, or drained (weight 0, then removed once its
  connections are gone or after `drain_timeout`) without it. Its checks keep running,
  so status still shows its health.
- Whole virtual services that leave the configuration (on reload, or while the daemon
  was down) are drained rather than deleted at once: every real server at weight 0,
  the service deleted when ActiveConn + InActConn of all of them reach 0 or after the
  drain timeout. keepalived deletes them at once, which cuts every connection through
  them. Counters are trusted only from the pass after the drain began (the dump before
  it was taken while the weights were still non-zero).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from socket import AF_INET, AF_INET6
from typing import TYPE_CHECKING, Literal

from hacontrol.ipvs.model import (
    DestKey,
    ForwardingMethod,
    RealServer,
    ServiceKey,
    Table,
    TunnelFlags,
    TunnelType,
    VirtualService,
)
from hacontrol.ipvs.syncd import SyncDaemonConfig, Timeouts
from hacontrol.ipvs.sysctl import IpvsSysctls
from hacontrol.runtime.state import RealServerRef
from healthcheck.policy import (
    DesiredRealServer,
    RealServerPolicy,
    ServerStatus,
    SorryServer,
    VirtualServicePolicy,
)
from healthcheck.state import RealServerId
from vrrp.track import TrackedItem, TrackKind
from vrrp.types import (
    AddressOptions,
    InstanceParams,
    InstanceSpec,
    State,
    SyncGroupSpec,
    VirtualRoute,
    VirtualRule,
)

if TYPE_CHECKING:
    # Types only: config.py calls model_problems() from here when it checks a file, so a
    # runtime import back would be a cycle.
    from hacontrol.config import Config, VrrpInstanceConfig
    from hacontrol.config_lvs import RealServerConfig, VirtualServerConfig
    from hacontrol.config_track import Tracking

_FORWARDING = {"DR": ForwardingMethod.DR, "TUN": ForwardingMethod.TUN, "NAT": ForwardingMethod.NAT}
_TUNNEL_TYPE = {"ipip": TunnelType.IPIP, "gue": TunnelType.GUE, "gre": TunnelType.GRE}
_TUNNEL_FLAGS = {
    "nocsum": TunnelFlags(0),
    "csum": TunnelFlags.CSUM,
    "remcsum": TunnelFlags.REMCSUM,
}

SyncRole = Literal["master", "backup"]


# ---- VRRP ---------------------------------------------------------------------------------

# keepalived's priority for a rule given none: 16384, then one less for each next one of
# the same family, in file order.
FIRST_DEFAULT_RULE_PRIORITY = 16384


def default_rule_priorities(config: Config) -> dict[tuple[int, int], int]:
    """(instance index, rule index) -> the priority keepalived would give a rule without
    one."""
    next_priority = {4: FIRST_DEFAULT_RULE_PRIORITY, 6: FIRST_DEFAULT_RULE_PRIORITY}
    out: dict[tuple[int, int], int] = {}
    for index, inst in enumerate(config.vrrp_instances):
        for rule_index, rule in enumerate(inst.virtual_rules):
            if rule.priority is None:
                out[(index, rule_index)] = next_priority[rule.family]
                next_priority[rule.family] -= 1
    return out


def vrrp_instance(
    inst: VrrpInstanceConfig,
    config: Config | None = None,
    rule_priorities: Mapping[int, int] | None = None,
) -> InstanceSpec:
    """One configured instance as the engine runs it (with `config`: what it tracks).

    The primary address (advert source, tie-break key) is followed live by the engine;
    here it is the unicast source when one is configured, else the unspecified address
    of the instance's family as a placeholder. `rule_priorities`: rule index -> the
    priority of a rule given none (config_checks.default_rule_priorities).
    """
    placeholder = IPv4Address(0) if inst.family == 4 else IPv6Address(0)
    primary = inst.unicast_src_ip if inst.unicast_src_ip is not None else placeholder
    vips = (*inst.virtual_ipaddresses, *inst.virtual_ipaddresses_excluded)
    priorities = rule_priorities or {}
    return InstanceSpec(
        params=InstanceParams(
            name=inst.name,
            vrid=inst.vrid,
            version=inst.effective_version,
            priority=inst.priority,
            advert_int=inst.advert_int_centis,
            primary_address=primary,
            virtual_addresses=tuple(vip.address for vip in inst.virtual_ipaddresses),
            excluded_addresses=tuple(vip.address for vip in inst.virtual_ipaddresses_excluded),
            preempt=inst.preempt_mode,
            preempt_delay=inst.preempt_delay,
            accept_mode=inst.accept,
            auth_type=inst.auth_type,
            auth_data=inst.auth_data,
            garp=inst.garp,
            initial_state=None if inst.state is None else State(inst.state),
        ),
        interface=inst.interface,
        unicast_src_ip=inst.unicast_src_ip,
        unicast_peers=tuple(inst.unicast_peers),
        vip_labels=tuple((vip.address.ip, vip.label) for vip in vips if vip.label),
        unicast_ttl=inst.unicast_ttl,
        min_ttl=inst.min_ttl,
        max_ttl=inst.max_ttl,
        check_unicast_src=inst.check_unicast_src,
        track=tracked_items(config, inst) if config is not None else (),
        dont_track_primary=inst.dont_track_primary,
        vip_options=tuple(
            (
                vip.address.ip,
                AddressOptions(
                    dev=vip.dev,
                    scope=vip.scope,
                    broadcast=vip.brd if isinstance(vip.brd, IPv4Address) else None,
                    no_track=vip.no_track,
                ),
            )
            for vip in vips
            if vip.dev or vip.scope or vip.brd or vip.no_track
        ),
        virtual_routes=tuple(
            VirtualRoute(
                dst=route.to,
                via=route.via,
                dev=route.dev,
                src=route.src,
                metric=route.metric,
                table=route.table,
                scope=route.scope,
                type=route.type,
                no_track=route.no_track,
            )
            for route in inst.virtual_routes
        ),
        virtual_rules=tuple(
            VirtualRule(
                family=rule.family,
                priority=rule.priority or priorities.get(index, FIRST_DEFAULT_RULE_PRIORITY),
                table=rule.table,
                src=rule.from_,
                dst=rule.to,
                fwmark=rule.fwmark_and_mask[0],
                fwmask=rule.fwmark_and_mask[1],
                no_track=rule.no_track,
            )
            for index, rule in enumerate(inst.virtual_rules)
        ),
        use_vmac=inst.vmac_name,
        vmac_xmit_base=inst.vmac_xmit_base,
    )


def vrrp_instances(config: Config) -> tuple[InstanceSpec, ...]:
    defaults = default_rule_priorities(config)
    return tuple(
        vrrp_instance(inst, config, {rule: p for (i, rule), p in defaults.items() if i == index})
        for index, inst in enumerate(config.vrrp_instances)
    )


def sync_groups(config: Config) -> tuple[SyncGroupSpec, ...]:
    return tuple(SyncGroupSpec(g.name, g.group) for g in config.vrrp_sync_groups)


def tracked_items(config: Config, inst: VrrpInstanceConfig) -> tuple[TrackedItem, ...]:
    """What an instance tracks, with the weights that apply (vrrp/track.py).

    Its own items, then its sync group's. keepalived.conf(5): an address owner's items and
    a sync-group member's own items (without sync_group_tracking_weight) get weight 0, so
    they put the instance in FAULT rather than move its priority (the config check warns
    about it); a group's items move every member alike.
    """
    group = next((g for g in config.vrrp_sync_groups if inst.name in g.group), None)
    owner = inst.priority == 255
    own_zero = owner or (group is not None and not group.keeps_member_weights)
    items = list(_items(config, inst, zero=own_zero))
    if group is not None:
        items.extend(_items(config, group, zero=owner))
    return tuple(items)


def _items(
    config: Config, tracker: Tracking | VrrpInstanceConfig, *, zero: bool
) -> list[TrackedItem]:
    scripts = {s.name: s for s in config.vrrp_scripts}
    files = {f.name: f for f in config.track_files}
    processes = {p.name: p for p in config.track_processes}
    out: list[TrackedItem] = []

    def add(kind: TrackKind, name: str, weight: int, reverse: bool) -> None:
        out.append(TrackedItem(kind, name, 0 if zero else weight, reverse))

    for i in tracker.track_interface:
        add(TrackKind.INTERFACE, i.name, i.weight, bool(i.reverse))
    for ref in tracker.track_script:
        script = scripts[ref.name]
        weight = ref.weight if ref.weight is not None else script.weight
        add(TrackKind.SCRIPT, ref.name, weight, _reverse(ref.reverse, script.reverse))
    for fref in tracker.track_file:
        tfile = files[fref.name]
        weight = fref.weight if fref.weight is not None else tfile.weight
        add(TrackKind.FILE, fref.name, weight, _reverse(fref.reverse, tfile.reverse))
    for pref in tracker.track_process:
        process = processes[pref.name]
        weight = pref.weight if pref.weight is not None else process.weight
        add(TrackKind.PROCESS, pref.name, weight, _reverse(pref.reverse, process.reverse))
    return out


def _reverse(given: bool | None, default: bool) -> bool:
    return default if given is None else given


# ---- the config as policy inputs ---------------------------------------------------------


def service_key(vs: VirtualServerConfig) -> ServiceKey:
    """The one service of a virtual server that is not a group's (see `service_keys`)."""
    if vs.group is not None:
        raise ValueError(f"{vs.display_name} is a group: use service_keys()")
    if vs.fwmark is not None:
        return ServiceKey.of_fwmark(vs.fwmark, AF_INET6 if vs.family == 6 else AF_INET)
    assert vs.address is not None and vs.port is not None
    return ServiceKey.of(vs.protocol, vs.address, vs.port)


def service_keys(config: Config, vs: VirtualServerConfig) -> tuple[ServiceKey, ...]:
    """Every IPVS service of a virtual server: one, or one per member of its group, in the
    group's order (keepalived's virtual_server_group as it programs IPVS)."""
    if vs.group is None:
        return (service_key(vs),)
    keys: list[ServiceKey] = []
    for group in config.virtual_server_groups:
        if group.name != vs.group:
            continue
        for member in group.members:
            if member.fwmark is not None:
                keys.append(
                    ServiceKey.of_fwmark(member.fwmark, AF_INET6 if member.family == 6 else AF_INET)
                )
            else:
                keys.extend(
                    ServiceKey.of(vs.protocol, address, member.port or 0)
                    for address in member.addresses()
                )
        break
    return tuple(dict.fromkeys(keys))


def rs_port(vs: VirtualServerConfig, port: int | None) -> int:
    """The concrete port the policy and the checks use; None means the service's."""
    if port is not None:
        return port
    return vs.port or 0


def real_server_id(vs: VirtualServerConfig, rs: RealServerConfig) -> RealServerId:
    return RealServerId(vs.display_name, str(rs.address), rs_port(vs, rs.port))


def inhibits_on_failure(vs: VirtualServerConfig, rs: RealServerConfig) -> bool:
    """keepalived's inhibit_on_failure for one real server: its own, else the service's."""
    return vs.inhibit_on_failure if rs.inhibit_on_failure is None else rs.inhibit_on_failure


def _drained_ids(drained: Collection[RealServerRef]) -> set[RealServerId]:
    return {RealServerId(d.virtual_server, d.address, d.port) for d in drained}


def policy_inputs(
    config: Config, drained: Collection[RealServerRef] = ()
) -> tuple[VirtualServicePolicy, ...]:
    """The policy's view of each virtual server. A real server the operator drained is
    left out (so the policy drains it) unless the service keeps failed servers
    quiescent (`inhibit_on_failure`): then it stays, and `health_overrides` holds it down."""
    out_of_service = _drained_ids(drained)
    out = []
    for vs in config.virtual_servers:
        sorry = None
        if vs.sorry_server is not None:
            s = vs.sorry_server
            sorry = SorryServer(str(s.address), rs_port(vs, s.port), s.weight, s.inhibit)
        servers = tuple(
            RealServerPolicy(
                str(rs.address), rs_port(vs, rs.port), rs.weight, inhibits_on_failure(vs, rs)
            )
            for rs in vs.real_servers
            if inhibits_on_failure(vs, rs) or real_server_id(vs, rs) not in out_of_service
        )
        out.append(
            VirtualServicePolicy(
                id=vs.display_name,
                real_servers=servers,
                quorum=vs.quorum,
                hysteresis=vs.hysteresis,
                inhibit_on_failure=vs.inhibit_on_failure,
                sorry_server=sorry,
                drain_timeout=vs.drain_timeout,
                omega=vs.omega,
            )
        )
    return tuple(out)


def health_overrides(
    config: Config, drained: Collection[RealServerRef]
) -> dict[RealServerId, ServerStatus]:
    """Operator-drained servers that are `inhibit_on_failure`, held down (weight 0)."""
    out_of_service = _drained_ids(drained)
    return {
        rid: ServerStatus(up=False)
        for vs in config.virtual_servers
        for rs in vs.real_servers
        if inhibits_on_failure(vs, rs) and (rid := real_server_id(vs, rs)) in out_of_service
    }


# ---- the IPVS table ----------------------------------------------------------------------


def base_service(vs: VirtualServerConfig) -> VirtualService:
    """The service's own settings, without real servers."""
    return _service(vs, ())


def _service(
    vs: VirtualServerConfig, real_servers: tuple[RealServer, ...], key: ServiceKey | None = None
) -> VirtualService:
    netmask: IPv4Address | int | None = None
    if vs.persistence_granularity is not None:
        text = vs.persistence_granularity.lstrip("/")
        netmask = int(text) if text.isdigit() else IPv4Address(text)
    return VirtualService(
        key=service_key(vs) if key is None else key,
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
    sorry = vs.sorry_server
    if rs is None and sorry is not None and str(sorry.address) == want.address:
        forwarding = sorry.forwarding or forwarding  # keepalived's sorry_server_lvs_method
    port: int | None = want.port
    if vs.group is not None and want.port == 0:
        # A group's real server without a port of its own takes each member's port.
        port = None
    # The configured server's address is parsed already (50,000 parses per check of a
    # large config otherwise).
    address = rs.address if rs is not None else ip_address(want.address)
    # DR/TUN keep the packet's port. want.port is the configured port, else the service's
    # (0 for fwmark): what VirtualService would put for None ("the service's port"),
    # given here so that it need not copy every server to fill it in.
    return RealServer(
        address=address,
        port=port,
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


def virtual_services(
    config: Config, vs: VirtualServerConfig, wants: Sequence[DesiredRealServer]
) -> list[VirtualService]:
    """The virtual server's services, each with the same real servers (a group's many)."""
    one = virtual_service(vs, wants) if vs.group is None else None
    if one is not None:
        return [one]
    by_key = {(str(rs.address), rs_port(vs, rs.port)): rs for rs in vs.real_servers}
    servers = tuple(_real_server(vs, by_key.get((w.address, w.port)), w) for w in wants)
    return [_service(vs, servers, key) for key in service_keys(config, vs)]


def desired_table(
    config: Config,
    desired: Mapping[str, Sequence[DesiredRealServer]],
    draining: Mapping[ServiceKey, ServiceDrain] | None = None,
) -> Table:
    """Every configured service with the real servers (and weights) the policy wants,
    plus the services that left the config and are still draining."""
    services = [
        service
        for vs in config.virtual_servers
        for service in virtual_services(config, vs, desired.get(vs.display_name, ()))
    ]
    configured = {s.key for s in services}
    for key, drain in (draining or {}).items():
        if key not in configured:
            services.append(drain.service)
    return Table.of(services)


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
            services = virtual_services(config, vs, wants)
        except ValueError as exc:
            out.append((index, str(exc)))
            continue
        for service in services:
            out.extend((index, message) for message in service.validate())
    return out


def ha_suspended(config: Config, vrrp_states: Mapping[str, State]) -> frozenset[str]:
    """Virtual servers (display names) whose checks are suspended (keepalived ha_suspend).

    keepalived suspends such a service's checkers while its address is not on the
    director. Here: while every VRRP instance that has the address among its VIPs is not
    MASTER (an unknown state counts as not MASTER). An address no instance holds is
    always local, and a fwmark service has no address: their checks always run.
    """
    out: set[str] = set()
    holders: dict[object, list[str]] = {}
    for inst in config.vrrp_instances:
        for vip in (*inst.virtual_ipaddresses, *inst.virtual_ipaddresses_excluded):
            holders.setdefault(vip.address.ip, []).append(inst.name)
    for vs in config.virtual_servers:
        if not vs.ha_suspend:
            continue
        addresses = {key.address for key in service_keys(config, vs) if key.address is not None}
        names = {name for address in addresses for name in holders.get(address, ())}
        if names and not any(vrrp_states.get(name) is State.MASTER for name in names):
            out.add(vs.display_name)
    return frozenset(out)


# ---- the sync daemon, timeouts, sysctls --------------------------------------------------


def sync_role(vrrp_state: State | None) -> SyncRole:
    """Which sync daemon a director runs for its VRRP state.

    keepalived (lvs_sync_daemon): MASTER runs the master daemon; every other state runs
    the backup daemon (vrrp_state_leave_master() switches to backup whether it goes to
    BACKUP or FAULT), so a director that is not master keeps receiving connections and
    is ready to take over. None (no state known yet) also means backup: until VRRP says
    otherwise this director is not master.
    """
    return "master" if vrrp_state is State.MASTER else "backup"


def sync_template(config: Config) -> SyncDaemonConfig | None:
    sync = config.ipvs.sync_daemon
    if sync is None:
        return None
    return SyncDaemonConfig(
        state="backup",
        interface=sync.interface,
        syncid=sync.syncid,
        maxlen=sync.maxlen,
        group=sync.group,
        port=sync.port,
        ttl=sync.ttl,
    )


def desired_sync_daemon(config: Config, vrrp_state: State | None) -> SyncDaemonConfig | None:
    """The one sync daemon this director should run, or None (no lvs_sync_daemon)."""
    template = sync_template(config)
    if template is None:
        return None
    role: SyncRole = "master" if vrrp_state is State.MASTER else "backup"
    return replace(template, state=role)


def wanted_timeouts(config: Config) -> Timeouts | None:
    """`ipvsadm --set` values, or None when the config sets none (0 = leave alone)."""
    t = config.ipvs.timeouts
    if not (t.tcp or t.tcpfin or t.udp):
        return None
    return Timeouts(t.tcp, t.tcpfin, t.udp)


def wanted_sysctls(config: Config) -> IpvsSysctls:
    s = config.ipvs.sysctls
    return IpvsSysctls(
        expire_nodest_conn=s.expire_nodest_conn,
        expire_quiescent_template=s.expire_quiescent_template,
        conntrack=s.conntrack,
        conn_reuse_mode=s.conn_reuse_mode,
        sync_version=s.sync_version,
    )


def uses_ipvs(config: Config) -> bool:
    """A VRRP-only config never touches IPVS (the host may not even have it)."""
    return bool(config.virtual_servers) or config.ipvs.sync_daemon is not None


# ---- whole services draining -------------------------------------------------------------

DEFAULT_DRAIN_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class ServiceDrain:
    """A service that left the config: kept in the table, every real server at weight 0."""

    service: VirtualService
    since: float
    timeout: float
    trusted: bool = False  # counters may be believed (a dump after the weights went to 0)


@dataclass(frozen=True, slots=True)
class ServiceDrainStarted:
    key: ServiceKey
    real_servers: int


@dataclass(frozen=True, slots=True)
class ServiceDrainFinished:
    key: ServiceKey
    reason: Literal["connections", "timeout", "returned"]


ServiceDrainEvent = ServiceDrainStarted | ServiceDrainFinished


def start_service_drain(service: VirtualService, now: float, timeout: float) -> ServiceDrain:
    quiet = replace(
        service, real_servers=tuple(replace(rs, weight=0) for rs in service.real_servers)
    )
    return ServiceDrain(quiet, now, timeout)


def step_service_drains(
    drains: Mapping[ServiceKey, ServiceDrain],
    configured: Collection[ServiceKey],
    counters: Mapping[tuple[ServiceKey, DestKey], tuple[int, int]],
    now: float,
) -> tuple[dict[ServiceKey, ServiceDrain], list[ServiceDrainFinished]]:
    """Advance every service drain: finished when the service is configured again, when
    all its connections are gone (trusted counters), or at its timeout."""
    out: dict[ServiceKey, ServiceDrain] = {}
    events: list[ServiceDrainFinished] = []
    for key, drain in drains.items():
        if key in configured:
            events.append(ServiceDrainFinished(key, "returned"))
            continue
        if drain.trusted:
            total = 0
            known = True
            for rs in drain.service.real_servers:
                found = counters.get((key, rs.key))
                if found is None:
                    known = False
                    break
                total += found[0] + found[1]
            if known and total == 0:
                events.append(ServiceDrainFinished(key, "connections"))
                continue
        if now - drain.since >= drain.timeout:
            events.append(ServiceDrainFinished(key, "timeout"))
            continue
        out[key] = replace(drain, trusted=True)
    return out, events
