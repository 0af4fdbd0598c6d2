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
from typing import TYPE_CHECKING, Any

from hacontrol.desired import default_rule_priorities
from hacontrol.yamlsrc import Path

if TYPE_CHECKING:
    from hacontrol.config import Config, VrrpInstanceConfig
    from hacontrol.config_lvs import RealServerConfig, VirtualServerConfig
    from hacontrol.config_track import Tracking

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
    if sync is None:
        return
    if sync.vrrp_instance is not None and sync.vrrp_instance not in {
        i.name for i in config.vrrp_instances
    }:
        yield (
            ("ipvs", "sync_daemon", "vrrp_instance"),
            f"{sync.vrrp_instance!r} is not a vrrp instance",
        )
    if sync.vrrp_sync_group is not None and sync.vrrp_sync_group not in {
        g.name for g in config.vrrp_sync_groups
    }:
        yield (
            ("ipvs", "sync_daemon", "vrrp_sync_group"),
            f"{sync.vrrp_sync_group!r} is not a vrrp sync group",
        )


def _unique_names(section: str, items: tuple[Any, ...], what: str) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.name in first:
            yield (
                (section, index, "name"),
                f"{what} name {item.name!r} is used twice (also {section}[{first[item.name]}])",
            )
        else:
            first[item.name] = index


def tracking_names_unique(config: Config) -> Iterator[Finding]:
    yield from _unique_names("vrrp_scripts", config.vrrp_scripts, "vrrp_script")
    yield from _unique_names("track_files", config.track_files, "track_file")
    yield from _unique_names("track_processes", config.track_processes, "track_process")
    yield from _unique_names("vrrp_sync_groups", config.vrrp_sync_groups, "sync group")


def _trackers(config: Config) -> Iterator[tuple[Path, Tracking | VrrpInstanceConfig]]:
    for index, inst in enumerate(config.vrrp_instances):
        yield ("vrrp_instances", index), inst
    for index, group in enumerate(config.vrrp_sync_groups):
        yield ("vrrp_sync_groups", index), group


def tracked_items_exist(config: Config) -> Iterator[Finding]:
    # keepalived ignores a reference to an undefined script with a warning; a typo in a
    # name would then silently track nothing, so here it is an error.
    known = {
        "track_script": ({s.name for s in config.vrrp_scripts}, "vrrp_scripts"),
        "track_file": ({f.name for f in config.track_files}, "track_files"),
        "track_process": ({p.name for p in config.track_processes}, "track_processes"),
    }
    for path, tracker in _trackers(config):
        for key, (names, section) in known.items():
            refs = getattr(tracker, key)
            seen: set[str] = set()
            for ref_index, ref in enumerate(refs):
                where = (*path, key, ref_index)
                if ref.name in seen:
                    yield where, f"{ref.name!r} is tracked twice"
                elif ref.name not in names:
                    yield where, f"{ref.name!r} is not in {section}" + _choices(names)
                seen.add(ref.name)
        seen_if: set[str] = set()
        for ref_index, iface in enumerate(tracker.track_interface):
            if iface.name in seen_if:
                yield (*path, "track_interface", ref_index), f"{iface.name!r} is tracked twice"
            seen_if.add(iface.name)


def _choices(names: set[str]) -> str:
    return f" (defined: {', '.join(sorted(names))})" if names else " (none is defined)"


def sync_groups_valid(config: Config) -> Iterator[Finding]:
    instances = {i.name for i in config.vrrp_instances}
    member_of: dict[str, str] = {}
    for index, group in enumerate(config.vrrp_sync_groups):
        for m_index, name in enumerate(group.group):
            where = ("vrrp_sync_groups", index, "group", m_index)
            if name not in instances:
                yield where, f"{name!r} is not a vrrp instance" + _choices(instances)
            elif name in member_of:
                yield (
                    where,
                    f"instance {name!r} is already in sync group {member_of[name]!r}: an "
                    "instance belongs to one sync group",
                )
            else:
                member_of[name] = group.name


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


def groups_exist_and_unique(config: Config) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for index, group in enumerate(config.virtual_server_groups):
        if group.name in first:
            yield (
                ("virtual_server_groups", index, "name"),
                f"virtual_server_group {group.name!r} is given twice "
                f"(also virtual_server_groups[{first[group.name]}])",
            )
        else:
            first[group.name] = index
    for index, vs in enumerate(config.virtual_servers):
        if vs.group is not None and vs.group not in first:
            known = ", ".join(sorted(first)) or "none"
            yield (
                ("virtual_servers", index, "group"),
                f"no virtual_server_group {vs.group!r} (defined: {known})",
            )


def service_family(config: Config, vs: VirtualServerConfig) -> int:
    """The address family of a virtual server's services (a group's: its first member's)."""
    if vs.group is not None:
        for group in config.virtual_server_groups:
            if group.name == vs.group:
                member = group.members[0]
                addresses = member.addresses()
                return addresses[0].version if addresses else member.family
        return 4
    return vs.family if vs.address is None else vs.address.version


def families_match(config: Config) -> Iterator[Finding]:
    for index, vs in enumerate(config.virtual_servers):
        family = service_family(config, vs)
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
    tracking_names_unique,
    tracked_items_exist,
    sync_groups_valid,
    virtual_servers_unique,
    real_servers_unique,
    groups_exist_and_unique,
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


def tracking_weights_ignored(config: Config) -> Iterator[Finding]:
    # keepalived.conf(5): a sync group member's tracking (unless sync_group_tracking_weight)
    # and an address owner's must have weight 0; keepalived sets it to 0 with a warning.
    groups = {m: g for g in config.vrrp_sync_groups for m in g.group}
    weights = _default_weights(config)
    for index, inst in enumerate(config.vrrp_instances):
        group = groups.get(inst.name)
        if inst.priority == 255:
            why = "an address owner (priority 255) keeps its priority"
        elif group is not None and not group.keeps_member_weights:
            why = (
                f"a member of sync group {group.name!r} (without sync_group_tracking_weight) "
                "must not get a priority of its own"
            )
        else:
            continue
        for key in ("track_interface", "track_script", "track_file", "track_process"):
            for ref_index, ref in enumerate(getattr(inst, key)):
                weight = ref.weight if ref.weight is not None else weights[key].get(ref.name, 0)
                if weight:
                    yield (
                        ("vrrp_instances", index, key, ref_index),
                        f"weight {weight} of {ref.name!r} is taken as 0 (FAULT while down), "
                        f"as keepalived does: {why}",
                    )
    for index, group in enumerate(config.vrrp_sync_groups):
        if len(group.group) == 1:
            yield (
                ("vrrp_sync_groups", index, "group"),
                f"sync group {group.name!r} has one instance: it synchronises nothing",
            )


def _default_weights(config: Config) -> dict[str, dict[str, int]]:
    return {
        "track_interface": {},
        "track_script": {s.name: s.weight for s in config.vrrp_scripts},
        "track_file": {f.name: f.weight for f in config.track_files},
        "track_process": {p.name: p.weight for p in config.track_processes},
    }


def tracked_but_unused(config: Config) -> Iterator[Finding]:
    used: dict[str, set[str]] = {"track_script": set(), "track_file": set(), "track_process": set()}
    for _, tracker in _trackers(config):
        for key, names in used.items():
            names.update(ref.name for ref in getattr(tracker, key))
    defined: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("vrrp_scripts", "track_script", tuple(s.name for s in config.vrrp_scripts)),
        ("track_files", "track_file", tuple(f.name for f in config.track_files)),
        ("track_processes", "track_process", tuple(p.name for p in config.track_processes)),
    )
    for section, key, defined_names in defined:
        for index, name in enumerate(defined_names):
            if name not in used[key]:
                yield (
                    (section, index, "name"),
                    f"{name!r} is tracked by no instance or sync group: not run",
                )


def notify_fifos(config: Config) -> Iterator[Finding]:
    g = config.global_
    if g.vrrp_notify_fifo is not None and g.vrrp_notify_fifo == g.notify_fifo:
        # keepalived: "notify FIFO %s has been specified for global and vrrp FIFO -
        # ignoring vrrp FIFO".
        yield (
            ("global", "vrrp_notify_fifo"),
            "the same FIFO as notify_fifo: ignored, as keepalived does (every line would "
            "be written twice)",
        )
    if g.notify_fifo is not None and config.virtual_servers:
        yield (
            ("global", "notify_fifo"),
            "hacontrol writes VRRP lines (INSTANCE ...) to notify_fifo, not yet the "
            "checker's VS/RS lines keepalived also writes there; use notify_up/notify_down "
            "and quorum_up/quorum_down for real servers",
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
    tracking_weights_ignored,
    tracked_but_unused,
    notify_fifos,
    rules_without_priority,
    nopreempt_with_state_master,
)


def findings(config: Config, checks: tuple[Check, ...]) -> list[Finding]:
    return [finding for check in checks for finding in check(config)]
