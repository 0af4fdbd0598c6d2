"""The `hacontrol` command: run, check, schema, status, reload, drain, step-down, ipvs list."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from hacontrol.config import Config, ConfigError, load_config
from hacontrol.runtime.lock import DEFAULT_RUN_DIR
from hacontrol.runtime.state import DEFAULT_STATE_DIR

DEFAULT_CONFIG = "/etc/hacontrol/hacontrol.yaml"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hacontrol")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hacontrol",
        description="HA controller for Linux IPVS director pairs (VRRP, health checks, IPVS).",
    )
    parser.add_argument("--version", action="version", version=f"hacontrol {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="YAML config file")
    run.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (debug shows every dropped packet)",
    )
    run.add_argument(
        "--run-dir",
        type=Path,
        default=DEFAULT_RUN_DIR,
        help=f"pid file (the one-daemon lock) and control socket (default {DEFAULT_RUN_DIR})",
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"maintenance overrides and owned services (default {DEFAULT_STATE_DIR})",
    )
    run.add_argument(
        "--vrrp-inline",
        action="store_true",
        help="run VRRP in the daemon's own event loop instead of its own process "
        "(for comparison; VRRP timing then shares the loop with checks and reconciles)",
    )

    check = sub.add_parser("check", help="validate a config file and exit (0 = valid)")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="YAML config file")

    sub.add_parser("schema", help="print the config file's JSON schema")

    from hacontrol import cli_control
    from hacontrol.ipvs import cli as ipvs_cli

    cli_control.add_subparsers(sub)
    ipvs_cli.add_subparser(sub)
    return parser


def _cmd_check(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{path}: invalid ({len(exc.issues)} error(s))", file=sys.stderr)
        return 1
    print(f"{path}: OK ({_summary(config)})")
    return 0


def _summary(config: Config) -> str:
    real = sum(len(vs.real_servers) for vs in config.virtual_servers)
    checks = sum(len(rs.checks) for vs in config.virtual_servers for rs in vs.real_servers)
    return (
        f"{len(config.vrrp_instances)} vrrp instance(s), "
        f"{len(config.virtual_servers)} virtual server(s), {real} real server(s), "
        f"{checks} check(s)"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from hacontrol.logsetup import setup_logging

    setup_logging(args.log_level)
    path = args.config
    try:
        config = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{path}: invalid config, not starting", file=sys.stderr)
        return 1
    from hacontrol.runtime.lock import AlreadyRunning, PidLock

    # Before anything touches an address, a socket or a kernel table: a second daemon
    # on the same host would take the running master's VIPs for stale ones.
    try:
        lock = PidLock.acquire(args.run_dir)
    except AlreadyRunning as exc:
        print(f"hacontrol run: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"hacontrol run: cannot lock {args.run_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    from hacontrol.daemon import Daemon

    try:
        daemon = Daemon(
            config,
            path,
            run_dir=args.run_dir,
            state_dir=args.state_dir,
            log_level=args.log_level,
            vrrp_inline=args.vrrp_inline,
        )
        return asyncio.run(daemon.run())
    finally:
        lock.release()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return _cmd_check(args.config)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "schema":
        print(json.dumps(Config.model_json_schema(by_alias=True), indent=2))
        return 0
    from hacontrol import cli_control

    if args.command in cli_control.COMMANDS:
        return cli_control.run(args)
    if args.command == "ipvs":
        from hacontrol.ipvs import cli as ipvs_cli

        return asyncio.run(ipvs_cli.run(args))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
