"""Checks across the items of a validated config: errors and warnings, each at a path.

pydantic validates one item at a time; what only shows across items (a VRID used twice on
an interface, a VIP in two instances, a real server listed twice) is checked here, on the
frozen `Config`. Every check is a pure function from the config to `(path, message)` pairs;
the loader turns a path into `FILE:LINE: path: message` with the file's line map, so a
finding points at the offending item's own key (the second instance's `vrid`, the second
real server), not at the top of the file.

To add a check, write a function and add it to ERROR_CHECKS or WARNING_CHECKS. Messages name
effective values (a real server's port is the virtual server's when it gives none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

from hacontrol.desired import default_rule_priorities
from hacontrol.yamlsrc import Path

if TYPE_CHECKING:
    from hacontrol.config import Config
    from hacontrol.config_lvs import RealServerConfig, VirtualServerConfig

Finding = tuple[Path, str]
Check = Callable[["Config"], Iterator[Finding]]

# RFC 5798 §5.2.5 (and RFC 3768 §5.3.5): Count IPvX Addr is one octet.
MAX_ADVERT_VIPS = 255


def effective_port(vs: VirtualServerConfig, rs: RealServerConfig) -> int | None:
    """The real server's port: its own, else the virtual server's (None: a fwmark service's
    real server, which keeps each packet's port)."""
    return rs.port if rs.port is not None else vs.port


# ---- errors ----------------------------------------------------------------------------------


def vrrp_names_unique(config: Config) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for index, inst in enumerate(config.vrrp_instances):
        if inst.name in first:
            yield (
                ("vrrp_instances", index, "name"),
                f"vrrp instance name {inst.name!r} is used twice "
                f"(also vrrp_instances[{first[inst.name]}])",
            )
        else:
            first[inst.name] = index


def vrids_unique(config: Config) -> Iterator[Finding]:
    # RFC 5798 §7.3: a VRID is unique per LAN and family; two of ours on one interface
    # would answer each other's adverts.
    routers: dict[tuple[str, int, int], str] = {}
    for index, inst in enumerate(config.vrrp_instances):
        key = (inst.interface, inst.family, inst.vrid)
        if key in routers:
            yield (
                ("vrrp_instances", index, "vrid"),
                f"instances {routers[key]!r} and {inst.name!r} both use vrid {inst.vrid} "
                f"for IPv{inst.family} on {inst.interface}",
            )
        else:
            routers[key] = inst.name


def vips_unique(config: Config) -> Iterator[Finding]:
    # Two instances holding one address would add and remove it under each other on every
    # transition (keepalived has the same rule for a VIP configured twice).
    owner: dict[IPv4Address | IPv6Address, str] = {}
    for index, inst in enumerate(config.vrrp_instances):
        mine: set[IPv4Address | IPv6Address] = set()
        for vip_index, vip in enumerate(inst.virtual_ipaddresses):
            address = vip.address.ip
            path = ("vrrp_instances", index, "virtual_ipaddresses", vip_index)
            if address in mine:
                yield path, f"VIP {address} is given twice in instance {inst.name!r}"
            elif address in owner:
                yield (
                    path,
                    f"VIP {address} is in instances {owner[address]!r} and {inst.name!r}: "
                    "an address belongs to one VRRP instance",
                )
            mine.add(address)
        for address in mine:
            owner.setdefault(address, inst.name)


def routes_unique(config: Config) -> Iterator[Finding]:
    # The kernel knows a route by family, table, destination and metric, and a rule by all
    # it says: two instances holding one would add and delete it under each other.
    priorities = default_rule_priorities(config)
    routes: dict[object, str] = {}
    rules: dict[object, str] = {}
    for index, inst in enumerate(config.vrrp_instances):
        for route_index, route in enumerate(inst.virtual_routes):
            key = (route.to, route.table or 254, route.metric)
            if key in routes:
                yield (
                    ("vrrp_instances", index, "virtual_routes", route_index),
                    f"route to {route.to} (table {route.table or 'main'}) is also in "
                    f"{routes[key]}: one instance holds a route",
                )
            else:
                routes[key] = f"instance {inst.name!r}"
        for rule_index, rule in enumerate(inst.virtual_rules):
            priority = rule.priority or priorities[(index, rule_index)]
            rkey = (rule.family, priority, rule.from_, rule.to, rule.fwmark_and_mask, rule.table)
            if rkey in rules:
                yield (
                    ("vrrp_instances", index, "virtual_rules", rule_index),
                    f"this rule (priority {priority}) is also in {rules[rkey]}",
                )
            else:
                rules[rkey] = f"instance {inst.name!r}"


def vmac_names_unique(config: Config) -> Iterator[Finding]:
    first: dict[str, str] = {}
    for index, inst in enumerate(config.vrrp_instances):
        name = inst.vmac_name
        if name is None:
            continue
        if name in first:
            default = inst.use_vmac is True
            yield (
                ("vrrp_instances", index, "use_vmac"),
                f"VMAC {name} is also instance {first[name]!r}'s"
                + ("; name one of them (use_vmac: NAME)" if default else ""),
            )
        else:
            first[name] = inst.name


def sync_daemon_instance_exists(config: Config) -> Iterator[Finding]:
    sync = config.ipvs.sync_daemon
    if sync is not None and sync.vrrp_instance not in {i.name for i in config.vrrp_instances}:
        yield (
            ("ipvs", "sync_daemon", "vrrp_instance"),
            f"{sync.vrrp_instance!r} is not a vrrp instance",
        )


def virtual_servers_unique(config: Config) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for index, vs in enumerate(config.virtual_servers):
        name = vs.display_name
        if name in first:
            yield (
                ("virtual_servers", index),
                f"virtual server {name!r} is given twice (also virtual_servers[{first[name]}])",
            )
        else:
            first[name] = index


def real_servers_unique(config: Config) -> Iterator[Finding]:
    for index, vs in enumerate(config.virtual_servers):
        first: dict[tuple[object, int | None], int] = {}
        for rs_index, rs in enumerate(vs.real_servers):
            port = effective_port(vs, rs)
            key = (rs.address, port)
            if key in first:
                where = f"{rs.address} port {port}" if port is not None else f"{rs.address}"
                yield (
                    ("virtual_servers", index, "real_servers", rs_index),
                    f"{vs.display_name}: real server {where} is given twice "
                    f"(also real_servers[{first[key]}])",
                )
            else:
                first[key] = rs_index


def families_match(config: Config) -> Iterator[Finding]:
    for index, vs in enumerate(config.virtual_servers):
        family = vs.family if vs.address is None else vs.address.version
        for rs_index, rs in enumerate(vs.real_servers):
            forwarding = rs.forwarding or vs.forwarding
            # The kernel takes a real server of the other family only for tunnelling
            # (IPv4-in-IPv6 and back).
            if rs.address.version != family and forwarding != "TUN":
                yield (
                    ("virtual_servers", index, "real_servers", rs_index, "address"),
                    f"{vs.display_name}: real server {rs.address} is IPv{rs.address.version} "
                    f"but the service is IPv{family} (only TUN forwarding can mix families)",
                )
        if vs.sorry_server is not None and vs.sorry_server.address.version != family:
            yield (
                ("virtual_servers", index, "sorry_server", "address"),
                f"{vs.display_name}: sorry_server {vs.sorry_server.address} is not IPv{family}",
            )


ERROR_CHECKS: tuple[Check, ...] = (
    vrrp_names_unique,
    vrids_unique,
    vips_unique,
    routes_unique,
    vmac_names_unique,
    sync_daemon_instance_exists,
    virtual_servers_unique,
    real_servers_unique,
    families_match,
)


# ---- warnings --------------------------------------------------------------------------------


def nothing_to_do(config: Config) -> Iterator[Finding]:
    if not config.vrrp_instances and not config.virtual_servers:
        yield (), NOTHING_TO_DO


NOTHING_TO_DO = "nothing to do: no vrrp_instances and no virtual_servers"


def vips_beyond_advert(config: Config) -> Iterator[Finding]:
    for index, inst in enumerate(config.vrrp_instances):
        count = len(inst.virtual_ipaddresses)  # one family per instance
        if count > MAX_ADVERT_VIPS:
            yield (
                ("vrrp_instances", index, "virtual_ipaddresses", MAX_ADVERT_VIPS),
                f"{count} IPv{inst.family} VIPs: only the first {MAX_ADVERT_VIPS} are carried in "
                "adverts; the rest are handled as excluded VIPs (keepalived's "
                "virtual_ipaddress_excluded), as keepalived does",
            )


def rules_without_priority(config: Config) -> Iterator[Finding]:
    for (index, rule_index), priority in default_rule_priorities(config).items():
        yield (
            ("vrrp_instances", index, "virtual_rules", rule_index),
            f"a rule without a priority gets {priority}, as keepalived gives it; rules are "
            "added as instances become master, in any order, so give each its priority",
        )


def nopreempt_with_state_master(config: Config) -> Iterator[Finding]:
    for index, inst in enumerate(config.vrrp_instances):
        if inst.state == "MASTER" and (inst.nopreempt or not inst.preempt):
            yield (
                ("vrrp_instances", index, "state"),
                "nopreempt has no effect with state MASTER: the instance preempts "
                "(keepalived clears nopreempt too); use state BACKUP",
            )


WARNING_CHECKS: tuple[Check, ...] = (
    nothing_to_do,
    vips_beyond_advert,
    rules_without_priority,
    nopreempt_with_state_master,
)


def findings(config: Config, checks: tuple[Check, ...]) -> list[Finding]:
    return [finding for check in checks for finding in check(config)]
