"""The `hacontrol` command: run, check, schema, ipvs list."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence

from hacontrol.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "/etc/hacontrol/hacontrol.yaml"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hacontrol",
        description="HA controller for Linux IPVS director pairs (VRRP, health checks, IPVS).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="YAML config file")
    run.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (debug shows every dropped packet)",
    )

    check = sub.add_parser("check", help="validate a config file and exit (0 = valid)")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="YAML config file")

    sub.add_parser("schema", help="print the config file's JSON schema")

    from hacontrol.ipvs import cli as ipvs_cli

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


def _setup_logging(log_level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # pyroute2 logs every netlink message at debug level; --log-level debug is
    # for our own events (each dropped packet), not for that. Importing pyroute2
    # resets its logger to NOTSET (pyroute2/config/log.py: setLevel(0)), which
    # would undo a level set before the daemon's first import of it: import it
    # first, so the level set here is the last word.
    with contextlib.suppress(ImportError):
        import pyroute2.config.log  # noqa: F401
    for noisy in ("pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))


def _cmd_run(path: str, log_level: str) -> int:
    _setup_logging(log_level)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{path}: invalid config, not starting", file=sys.stderr)
        return 1
    from hacontrol.daemon import Daemon

    return asyncio.run(Daemon(config, path).run())


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return _cmd_check(args.config)
    if args.command == "run":
        return _cmd_run(args.config, args.log_level)
    if args.command == "schema":
        print(json.dumps(Config.model_json_schema(by_alias=True), indent=2))
        return 0
    if args.command == "ipvs":
        from hacontrol.ipvs import cli as ipvs_cli

        return asyncio.run(ipvs_cli.run(args))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
