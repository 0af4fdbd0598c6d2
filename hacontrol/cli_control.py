"""The commands that talk to a running daemon over its control socket.

    hacontrol status [--json]            what runs now: VRRP, real servers, IPVS, sync daemon
    hacontrol reload                     apply the config file; print what changed
    hacontrol drain VS RS                take a real server out of service (kept across restarts)
    hacontrol undrain VS RS              put it back
    hacontrol step-down [INSTANCE ...]   hand mastership over and stay BACKUP (all by default)
    hacontrol release [INSTANCE ...]     end a step-down

Exit status: 0 done, 1 the daemon refused (a rejected reload, an unknown real server),
2 usage, 3 no daemon to talk to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hacontrol.runtime.control import CONTROL_SOCKET, ControlError, call
from hacontrol.runtime.lock import DEFAULT_RUN_DIR
from hacontrol.runtime.readmodel import format_status

DEFAULT_SOCKET = DEFAULT_RUN_DIR / CONTROL_SOCKET
EXIT_REFUSED = 1
EXIT_NO_DAEMON = 3
COMMANDS = ("status", "reload", "drain", "undrain", "step-down", "release", "restart")


def add_subparsers(sub: Any) -> None:
    def with_socket(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "-s",
            "--socket",
            type=Path,
            default=DEFAULT_SOCKET,
            help=f"the daemon's control socket (default {DEFAULT_SOCKET})",
        )
        return parser

    status = with_socket(sub.add_parser("status", help="show what the running daemon does"))
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--no-counters",
        action="store_true",
        help="skip the kernel's connection counters and the VRRP process's advert counts "
        "(faster on very large tables; the advert counts shown are then up to 30 s old)",
    )
    with_socket(sub.add_parser("reload", help="make the running daemon apply its config file"))
    for name, text in (
        ("drain", "take a real server out of service (weight 0; kept across restarts)"),
        ("undrain", "put a drained real server back into service"),
    ):
        p = with_socket(sub.add_parser(name, help=text))
        p.add_argument(
            "virtual_server", help="its name, or as status shows it: 'TCP 192.0.2.10:80'"
        )
        p.add_argument("real_server", help="ADDRESS:PORT, or ADDRESS (the service's port)")
    for name, text in (
        ("step-down", "hand mastership to the peer and stay BACKUP until released"),
        ("release", "end a step-down"),
    ):
        p = with_socket(sub.add_parser(name, help=text))
        p.add_argument("instances", nargs="*", help="VRRP instance names (default: all)")
    with_socket(
        sub.add_parser(
            "restart",
            help="restart the daemon in place (new code or settings) without a failover: "
            "masters stay MASTER, VIPs, IPVS and the sync daemon stay",
        )
    )


def run(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"command": args.command}
    if args.command == "status" and args.no_counters:
        request["counters"] = False
    if args.command in ("drain", "undrain"):
        request["virtual_server"] = args.virtual_server
        request["real_server"] = args.real_server
    if args.command in ("step-down", "release") and args.instances:
        request["instances"] = list(args.instances)
    try:
        result = call(args.socket, request, timeout=60.0)
    except ControlError as exc:
        message = str(exc)
        print(f"hacontrol {args.command}: {message}", file=sys.stderr)
        no_daemon = "is hacontrol running" in message or "no answer" in message
        return EXIT_NO_DAEMON if no_daemon else EXIT_REFUSED
    if args.command == "status":
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        else:
            sys.stdout.write(format_status(result))
        return 0
    if args.command == "reload":
        return _print_reload(result)
    for line in result.get("messages", []):
        print(line)
    return 0


def _print_reload(result: dict[str, Any]) -> int:
    outcome = result.get("result")
    for line in result.get("rejected", []):
        print(line, file=sys.stderr)
    for line in result.get("warnings", []):
        print(line, file=sys.stderr)
    if outcome == "rejected":
        print("reload rejected: nothing was changed", file=sys.stderr)
        return EXIT_REFUSED
    if outcome == "unchanged":
        print("reload: the file is unchanged; nothing to do")
        return 0
    for item in result.get("applied", []):
        print(f"applied: {item}")
    for name in result.get("restarted", []):
        print(f"restarted: VRRP instance {name} (its interface, VRID or family changed)")
    return 0
