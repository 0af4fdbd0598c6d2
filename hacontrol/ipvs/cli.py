"""``hacontrol ipvs ...``: list the kernel's IPVS table (ipvsadm -Ln style or JSON), zero counters.

Hooked into hacontrol/cli.py through ``add_subparser`` and ``run``. The table, timeouts and sync
daemons are read over the one IPVS netlink transport (netlink.py) and printed as ipvsadm does
(listing.py, syncd.py); the connection table comes from /proc (conns.py).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import sys
from typing import Any

from hacontrol.ipvs.listing import Layout, ListOptions, format_table, to_json
from hacontrol.ipvs.model import Protocol, ServiceKey, parse_address
from hacontrol.ipvs.netlink import IpvsError, IpvsNetlink
from hacontrol.ipvs.syncd import SyncDaemonConfig, Timeouts, format_daemons, format_timeouts


def _service_arg(protocol: Protocol) -> Any:
    def parse(text: str) -> ServiceKey:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise argparse.ArgumentTypeError(f"{text!r}: expected ADDRESS:PORT")
        try:
            return ServiceKey.of(protocol, parse_address(host.strip("[]")), int(port))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    return parse


def _fwmark_arg(text: str) -> ServiceKey:
    try:
        return ServiceKey.of_fwmark(int(text, 0))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a fwmark number") from None


def _add_service_selector(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-t", "--tcp-service", type=_service_arg(Protocol.TCP), dest="service")
    g.add_argument("-u", "--udp-service", type=_service_arg(Protocol.UDP), dest="service")
    g.add_argument("--sctp-service", type=_service_arg(Protocol.SCTP), dest="service")
    g.add_argument("-f", "--fwmark-service", type=_fwmark_arg, dest="service")


def add_subparser(subparsers: Any) -> None:
    """Add ``ipvs list`` and ``ipvs zero`` to the top-level command's subparsers."""
    ipvs = subparsers.add_parser("ipvs", help="show the kernel's IPVS table")
    sub = ipvs.add_subparsers(dest="ipvs_command", required=True)

    lst = sub.add_parser("list", help="list services and real servers like ipvsadm -Ln")
    _add_service_selector(lst)
    layout = lst.add_mutually_exclusive_group()
    layout.add_argument("--stats", action="store_const", const=Layout.STATS, dest="layout")
    layout.add_argument("--rate", action="store_const", const=Layout.RATE, dest="layout")
    layout.add_argument(
        "--thresholds", action="store_const", const=Layout.THRESHOLDS, dest="layout"
    )
    layout.add_argument(
        "--persistent-conn", action="store_const", const=Layout.PERSISTENT_CONN, dest="layout"
    )
    layout.add_argument("--tun-info", action="store_const", const=Layout.TUN_INFO, dest="layout")
    other = lst.add_mutually_exclusive_group()
    other.add_argument("--timeout", action="store_true", help="the tcp/tcpfin/udp timeouts")
    other.add_argument("--daemon", action="store_true", help="the connection sync daemons")
    other.add_argument("-c", "--connections", action="store_true", help="the connection table")
    lst.add_argument("--exact", action="store_true", help="exact numbers, no K/M/G")
    lst.add_argument("--json", action="store_true", help="JSON with every counter")

    zero = sub.add_parser("zero", help="zero the counters of one service or of all")
    _add_service_selector(zero)


async def run(args: argparse.Namespace) -> int:
    """Run an ``ipvs`` subcommand; 0 on success, 1 when the kernel refused or is unreachable."""
    try:
        if args.ipvs_command == "zero":
            await asyncio.to_thread(_zero, args.service)
            return 0
        if getattr(args, "timeout", False):
            return await _timeouts(args)
        if getattr(args, "daemon", False):
            return await _daemons(args)
        if getattr(args, "connections", False):
            return await _connections(args)
        text = await asyncio.to_thread(_list, args)
    except (IpvsError, OSError) as exc:
        print(f"hacontrol ipvs: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def _zero(service: ServiceKey | None) -> None:
    with IpvsNetlink() as nl:
        nl.zero(service)


def _list(args: argparse.Namespace) -> str:
    opts = ListOptions(layout=args.layout or Layout.DEFAULT, exact=args.exact, service=args.service)
    with IpvsNetlink() as nl:
        info = nl.info()
        snapshot = nl.dump()
    if args.service is not None and args.service not in snapshot.table:
        raise IpvsError(errno.ESRCH, f"service {args.service}", "no such service (ESRCH)")
    if args.json:
        return json.dumps(to_json(snapshot, info, opts), indent=2) + "\n"
    return format_table(snapshot, info, opts)


def _read_timeouts() -> Timeouts:
    with IpvsNetlink() as nl:
        return nl.get_timeouts()


def _read_daemons() -> list[SyncDaemonConfig]:
    with IpvsNetlink() as nl:
        return nl.get_daemons()


async def _timeouts(args: argparse.Namespace) -> int:
    t = await asyncio.to_thread(_read_timeouts)
    if args.json:
        sys.stdout.write(json.dumps({"tcp": t.tcp, "tcpfin": t.tcpfin, "udp": t.udp}) + "\n")
    else:
        sys.stdout.write(format_timeouts(t))
    return 0


async def _daemons(args: argparse.Namespace) -> int:
    daemons = await asyncio.to_thread(_read_daemons)
    if args.json:
        rows = [
            {
                "state": str(d.state),
                "interface": d.interface,
                "syncid": d.syncid,
                "maxlen": d.maxlen,
                "group": None if d.group is None else str(d.group),
                "port": d.port,
                "ttl": d.ttl,
            }
            for d in daemons
        ]
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        sys.stdout.write(format_daemons(daemons))
    return 0


async def _connections(args: argparse.Namespace) -> int:
    from hacontrol.ipvs import conns

    table = await asyncio.to_thread(conns.read_connections)
    if args.json:
        rows = [{k: str(v) for k, v in vars_of(c).items()} for c in table]
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        sys.stdout.write(
            conns.format_connections(table, persistent=args.layout == Layout.PERSISTENT_CONN)
        )
    return 0


def vars_of(obj: object) -> dict[str, object]:
    slots = getattr(type(obj), "__slots__", None)
    if slots:
        return {name: getattr(obj, name) for name in slots}
    return dict(vars(obj))
