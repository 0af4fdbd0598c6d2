"""``hacontrol ipvs list``: the kernel table printed the way ``ipvsadm -Ln`` prints it, or as JSON.

The layouts copy ipvsadm 1.31 (print_service_entry / print_largenum in ipvsadm.c) column for
column, so operators' eyes and scripts keep working; the kernel tests compare the two outputs
byte for byte. Like ipvsadm, services are sorted by fwmark, protocol, address, port and real
servers by address, port.
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from socket import AF_INET6
from typing import Any

from hacontrol.ipvs.model import (
    ForwardingMethod,
    IPAddress,
    Protocol,
    RealServer,
    ServiceKey,
    TunnelFlags,
    TunnelType,
    VirtualService,
    format_endpoint,
)
from hacontrol.ipvs.netlink import DestCounters, Info, Snapshot, Stats


class Layout(enum.Enum):
    DEFAULT = "default"
    STATS = "stats"
    RATE = "rate"
    THRESHOLDS = "thresholds"
    PERSISTENT_CONN = "persistent-conn"
    TUN_INFO = "tun-info"


@dataclass(frozen=True, slots=True)
class ListOptions:
    layout: Layout = Layout.DEFAULT
    exact: bool = False
    service: ServiceKey | None = None  # only this one (ipvsadm -L -t ADDR:PORT)


def _s32(value: int) -> int:
    # ipvsadm compares with C int subtraction of unsigned values: keep its wrap-around, so
    # the order matches even where that arithmetic is not a true order.
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _words(address: IPAddress | None) -> tuple[int, ...]:
    if address is None:
        return (0, 0, 0, 0)
    return struct.unpack("!4I", address.packed.ljust(16, b"\0"))


def _cmp_addr(family: int, a: IPAddress | None, b: IPAddress | None) -> int:
    wa, wb = _words(a), _words(b)
    if family == AF_INET6:
        for x, y in zip(wa, wb, strict=True):
            r = _s32(x - y)
            if r:
                return r
        return 0
    return _s32(wa[0] - wb[0])


def _cmp_services(s1: VirtualService, s2: VirtualService) -> int:
    """libipvs ipvs_cmp_services: fwmark, family, protocol, address, port."""
    k1, k2 = s1.key, s2.key
    return (
        _s32(k1.fwmark - k2.fwmark)
        or k1.family - k2.family
        or k1.protocol - k2.protocol
        or _cmp_addr(k1.family, k1.address, k2.address)
        or k1.port - k2.port
    )


def _cmp_dests(d1: RealServer, d2: RealServer) -> int:
    """libipvs ipvs_cmp_dests: address (as the first one's family reads it), then port."""
    return _cmp_addr(d1.family, d1.address, d2.address) or (d1.port or 0) - (d2.port or 0)


_service_order = functools.cmp_to_key(_cmp_services)
_dest_order = functools.cmp_to_key(_cmp_dests)


def largenum(value: int, exact: bool) -> str:
    """ipvsadm's print_largenum: 9 columns, K/M/G/T suffixes unless --exact."""
    if exact:
        text = str(value)
        return text.rjust(9 if len(text) <= 8 else len(text) + 1)
    if value < 100_000_000:
        return f"{value:9d}"
    if value < 1_000_000_000:
        return f"{value // 1000:8d}K"
    if value < 100_000_000_000:
        return f"{value // 1_000_000:8d}M"
    if value < 100_000_000_000_000:
        return f"{value // 1_000_000_000:8d}G"
    return f"{value // 1_000_000_000_000:8d}T"


def service_name(key: ServiceKey) -> str:
    if key.is_fwmark:
        return f"FWM  {key.fwmark}" + (" IPv6" if key.family == AF_INET6 else "")
    assert key.address is not None
    try:
        proto = Protocol(key.protocol).name
    except ValueError:
        proto = str(key.protocol)
    return f"{proto:<4} {format_endpoint(key.address, key.port)}"


def service_flags_text(svc: VirtualService) -> str:
    """Scheduler, flags, persistence: the rest of ipvsadm's default service line."""
    text = f" {svc.scheduler}"
    if svc.sched_flags:
        text += f" ({','.join(_ordered_flags(svc))})"
    if svc.persistent:
        text += f" persistent {svc.persistence_timeout}"
        if svc.key.family == AF_INET6:
            if svc.netmask_value != 128:
                text += f" mask {svc.netmask_value}"
        elif svc.netmask_value != 0xFFFFFFFF:
            text += f" mask {svc.persistence_netmask}"
        if svc.persistence_engine:
            text += f" pe {svc.persistence_engine}"
    if svc.one_packet:
        text += " ops"
    return text


def _ordered_flags(svc: VirtualService) -> list[str]:
    order = ["sh-fallback", "sh-port", "mh-fallback", "mh-port", "flag-1", "flag-2", "flag-3"]
    return sorted(svc.sched_flags, key=lambda n: order.index(n) if n in order else 99)


def tunnel_info(rs: RealServer) -> str:
    """ipvsadm's TunnelInfo column: ipip, gue:PORT:CSUM, gre:CSUM (CSUM is -c, +c or r+c)."""
    if rs.forwarding != ForwardingMethod.TUN:
        return "n/a"
    if rs.tunnel_type == TunnelType.IPIP:
        return "ipip"
    if rs.tunnel_flags & TunnelFlags.REMCSUM:
        csum = "r+c"
    elif rs.tunnel_flags & TunnelFlags.CSUM:
        csum = "+c"
    else:
        csum = "-c"
    if rs.tunnel_type == TunnelType.GUE:
        return f"gue:{rs.tunnel_port}:{csum}"
    return f"{TunnelType(rs.tunnel_type).name.lower()}:{csum}"


def _tunnel_flags_name(rs: RealServer) -> str:
    if rs.tunnel_flags & TunnelFlags.REMCSUM:
        return "remcsum"
    if rs.tunnel_flags & TunnelFlags.CSUM:
        return "csum"
    return "nocsum"


def _header(info: Info, layout: Layout) -> list[str]:
    lines = [f"IP Virtual Server version {info.version} (size={info.conn_tab_size})"]
    if layout == Layout.STATS:
        lines += [
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
        ]
    elif layout == Layout.RATE:
        lines += [
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
            "  -> RemoteAddress:Port",
        ]
    elif layout == Layout.THRESHOLDS:
        lines += [
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
        ]
    elif layout == Layout.PERSISTENT_CONN:
        lines += [
            "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
        ]
    elif layout == Layout.TUN_INFO:
        lines += [
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn",
        ]
    else:
        lines += [
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        ]
    return lines


def _counts(stats: Stats, exact: bool) -> str:
    return "".join(
        largenum(v, exact)
        for v in (stats.conns, stats.inpkts, stats.outpkts, stats.inbytes, stats.outbytes)
    )


def _rates(stats: Stats, exact: bool) -> str:
    return (
        f" {stats.cps:8d} {stats.inpps:8d} {stats.outpps:8d}"
        + largenum(stats.inbps, exact)
        + largenum(stats.outbps, exact)
    )


def _service_line(svc: VirtualService, stats: Stats, opts: ListOptions) -> str:
    name = service_name(svc.key)
    if opts.layout == Layout.STATS:
        return f"{name:<33}" + _counts(stats, opts.exact)
    if opts.layout == Layout.RATE:
        return f"{name:<33}" + _rates(stats, opts.exact)
    return name + service_flags_text(svc)


def _dest_line(rs: RealServer, c: DestCounters, opts: ListOptions) -> str:
    name = f"  -> {format_endpoint(rs.address, rs.port or 0):<28}"
    fwd = ForwardingMethod(rs.forwarding).ipvsadm_name
    if opts.layout == Layout.STATS:
        return name + _counts(c.stats, opts.exact)
    if opts.layout == Layout.RATE:
        return name + _rates(c.stats, opts.exact)
    if opts.layout == Layout.THRESHOLDS:
        return (
            f"{name} {rs.upper_threshold:<10} {rs.lower_threshold:<10} "
            f"{c.active_conns:<10} {c.inact_conns:<10}"
        )
    if opts.layout == Layout.PERSISTENT_CONN:
        return (
            f"{name} {rs.weight:<9} {c.persist_conns:<11} {c.active_conns:<10} {c.inact_conns:<10}"
        )
    if opts.layout == Layout.TUN_INFO:
        return (
            f"{name} {fwd:<7} {tunnel_info(rs):<13} {rs.weight:<6} "
            f"{c.active_conns:<10} {c.inact_conns:<10}"
        )
    return f"{name} {fwd:<7} {rs.weight:<6} {c.active_conns:<10} {c.inact_conns:<10}"


def _selected(snapshot: Snapshot, opts: ListOptions) -> Iterable[VirtualService]:
    services = sorted(snapshot.table, key=_service_order)
    if opts.service is not None:
        services = [s for s in services if s.key == opts.service]
    return services


def format_table(snapshot: Snapshot, info: Info, opts: ListOptions = ListOptions()) -> str:
    """The text ``ipvsadm -Ln`` (with the matching option) prints for this snapshot."""
    lines = _header(info, opts.layout) if opts.service is None else _header(info, opts.layout)[1:]
    for svc in _selected(snapshot, opts):
        lines.append(_service_line(svc, snapshot.service_stats.get(svc.key, Stats()), opts))
        for rs in sorted(svc.real_servers, key=_dest_order):
            c = snapshot.dest_counters.get((svc.key, rs.key), DestCounters())
            lines.append(_dest_line(rs, c, opts))
    return "\n".join(lines) + "\n"


def _stats_json(stats: Stats) -> dict[str, Any]:
    return {
        "conns": stats.conns,
        "inpkts": stats.inpkts,
        "outpkts": stats.outpkts,
        "inbytes": stats.inbytes,
        "outbytes": stats.outbytes,
        "rate": {
            "cps": stats.cps,
            "inpps": stats.inpps,
            "outpps": stats.outpps,
            "inbps": stats.inbps,
            "outbps": stats.outbps,
        },
    }


def to_json(snapshot: Snapshot, info: Info, opts: ListOptions = ListOptions()) -> dict[str, Any]:
    """A JSON-ready view of the table with every counter; keys are stable for scripts."""
    services: list[dict[str, Any]] = []
    for svc in _selected(snapshot, opts):
        key = svc.key
        entry: dict[str, Any] = {
            "family": "ipv6" if key.family == AF_INET6 else "ipv4",
            "fwmark": key.fwmark or None,
            "protocol": None if key.is_fwmark else _proto_name(key.protocol),
            "address": None if key.address is None else str(key.address),
            "port": None if key.is_fwmark else key.port,
            "scheduler": svc.scheduler,
            "sched_flags": _ordered_flags(svc),
            "one_packet": svc.one_packet,
            "persistence_timeout": svc.persistence_timeout,
            "persistence_netmask": None
            if svc.persistence_netmask is None
            else str(svc.persistence_netmask),
            "persistence_engine": svc.persistence_engine,
            "stats": _stats_json(snapshot.service_stats.get(key, Stats())),
            "real_servers": [],
        }
        for rs in sorted(svc.real_servers, key=_dest_order):
            c = snapshot.dest_counters.get((key, rs.key), DestCounters())
            entry["real_servers"].append(
                {
                    "address": str(rs.address),
                    "port": rs.port,
                    "forwarding": ForwardingMethod(rs.forwarding).ipvsadm_name.lower(),
                    "weight": rs.weight,
                    "upper_threshold": rs.upper_threshold,
                    "lower_threshold": rs.lower_threshold,
                    "tunnel": None
                    if rs.forwarding != ForwardingMethod.TUN
                    else {
                        "type": TunnelType(rs.tunnel_type).name.lower(),
                        "port": rs.tunnel_port,
                        "flags": _tunnel_flags_name(rs),
                    },
                    "active_conns": c.active_conns,
                    "inact_conns": c.inact_conns,
                    "persist_conns": c.persist_conns,
                    "stats": _stats_json(c.stats),
                }
            )
        services.append(entry)
    return {
        "version": info.version,
        "conn_tab_size": info.conn_tab_size,
        "services": services,
    }


def _proto_name(proto: int) -> str:
    try:
        return Protocol(proto).name
    except ValueError:
        return str(proto)
