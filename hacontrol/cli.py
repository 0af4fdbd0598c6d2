"""The `hacontrol` command: run, check, schema, status, reload, drain, step-down, ipvs list,
import keepalived, genhash."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hacontrol.runtime.lock import DEFAULT_RUN_DIR
from hacontrol.runtime.state import DEFAULT_STATE_DIR

if TYPE_CHECKING:
    # The config models take a third of a second to build: imported where they are used,
    # so that `hacontrol run` starts its VRRP process first (vrrp_launch.py).
    from hacontrol.config import Config
    from hacontrol.runtime.vrrp_launch import Launched

DEFAULT_CONFIG = "/etc/hacontrol/hacontrol.yaml"


def _run_options() -> argparse.ArgumentParser:
    """`hacontrol run`'s options: a parent of its subcommand parser, and read on their own
    before anything else is imported (`_launch_vrrp_early`)."""
    run = argparse.ArgumentParser(add_help=False)
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
    return run


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hacontrol",
        description="HA controller for Linux IPVS director pairs (VRRP, health checks, IPVS).",
    )
    parser.add_argument("--version", action="version", version=f"hacontrol {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", parents=[_run_options()], help="run the daemon")

    check = sub.add_parser("check", help="validate a config file and exit (0 = valid)")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="YAML config file")

    sub.add_parser("schema", help="print the config file's JSON schema")

    from hacontrol import cli_control
    from hacontrol.ipvs import cli as ipvs_cli

    cli_control.add_subparsers(sub)
    ipvs_cli.add_subparser(sub)
    from hacontrol.importer import cli as import_cli

    import_cli.add_subparser(sub)
    from hacontrol import genhash

    genhash.add_subparser(sub)
    return parser


def version() -> str:
    """The installed package's version; pyproject.toml's in a source tree without one."""
    from importlib import metadata

    try:
        return metadata.version("hacontrol")
    except metadata.PackageNotFoundError:
        pass
    import tomllib

    try:
        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _cmd_check(path: str) -> int:
    from hacontrol.config import ConfigError, check_file

    try:
        checked = check_file(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{path}: invalid ({len(exc.errors)} error(s))", file=sys.stderr)
        return 1
    for warning in checked.warnings:
        print(warning, file=sys.stderr)
    warned = f", {len(checked.warnings)} warning(s)" if checked.warnings else ""
    print(f"{path}: OK ({_summary(checked.config)}){warned}")
    return 0


def _summary(config: Config) -> str:
    real = sum(len(vs.real_servers) for vs in config.virtual_servers)
    checks = sum(len(rs.checks) for vs in config.virtual_servers for rs in vs.real_servers)
    return (
        f"{len(config.vrrp_instances)} vrrp instance(s), "
        f"{len(config.virtual_servers)} virtual server(s), {real} real server(s), "
        f"{checks} check(s)"
    )


def _may_run_vrrp(config: str) -> bool:
    """Whether the config file could define VRRP instances, judged from its bytes before
    YAML is even imported: not without the key `vrrp_instances`, in it or in a file it
    includes. An LVS-only director then starts no VRRP process just to stop it again. A
    wrong guess only costs time: the daemon starts the VRRP process itself once it has read
    the config, as it does after a reload that adds the first instance."""
    try:
        text = Path(config).read_bytes()
    except OSError:
        return True  # the daemon says what is wrong with it
    return b"vrrp_instances" in text or b"include" in text


def _launch_vrrp_early(argv: Sequence[str]) -> Launched | None:
    """`hacontrol run`: start the VRRP process before anything else is imported, so that
    its start-up overlaps the daemon's (vrrp_launch.py). Not for `--vrrp-inline`, nor after
    `hacontrol restart` (the VRRP process the previous daemon kept is taken over), nor
    for a config without VRRP instances (`_may_run_vrrp`), nor when the options do not
    parse (the full parser says why)."""
    if not argv or argv[0] != "run" or "-h" in argv or "--help" in argv:
        return None
    try:
        args, _ = _run_options().parse_known_args(argv[1:])
    except SystemExit:
        return None
    from hacontrol.runtime.resume import RESUME_FILE

    if args.vrrp_inline or (args.run_dir / RESUME_FILE).exists():
        return None
    if not _may_run_vrrp(args.config):
        return None
    from hacontrol.runtime.vrrp_launch import launch

    try:
        return launch(args.log_level)
    except OSError:
        return None  # the daemon starts one later, and says so if it cannot


def _cmd_run(args: argparse.Namespace, launched: Launched | None = None) -> int:
    from hacontrol.config import ConfigError, check_file
    from hacontrol.logsetup import setup_logging

    setup_logging(args.log_level)
    path = args.config
    try:
        checked = check_file(path, for_run=True)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{path}: invalid config, not starting", file=sys.stderr)
        return 1
    for warning in checked.warnings:
        logging.getLogger("hacontrol.config").warning("config.warning %s", warning)
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
            checked.config,
            path,
            run_dir=args.run_dir,
            state_dir=args.state_dir,
            log_level=args.log_level,
            vrrp_inline=args.vrrp_inline,
            vrrp_launched=launched,
        )
        code = asyncio.run(daemon.run())
    finally:
        lock.release()
    if daemon.restart_requested:
        _execute_again()
    return code


def _execute_again() -> None:
    """`hacontrol restart`: the same command line, run by the same interpreter, in this
    process (systemd keeps following the same pid; the pid lock was released above). The
    installed code is read again, so an upgrade takes effect."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "hacontrol", *sys.argv[1:]]
    os.execv(sys.executable, argv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            # Flush here, where a closed pipe can still be caught, not at interpreter exit.
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`hacontrol schema | head -1`): no traceback. As Python's
        # docs advise (signal module, "Note on SIGPIPE"), point stdout at /dev/null so the
        # flush at exit cannot fail again, and exit 1 as Python does on EPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    launched = _launch_vrrp_early(argv)
    try:
        parser = _build_parser()
        args = parser.parse_args(argv)
        if args.command == "run":
            return _cmd_run(args, launched)
    finally:
        if launched is not None:
            launched.discard()  # unless the daemon took it over
    if args.command == "check":
        return _cmd_check(args.config)
    if args.command == "schema":
        from hacontrol.config import Config

        print(json.dumps(Config.model_json_schema(by_alias=True), indent=2))
        return 0
    from hacontrol import cli_control

    if args.command in cli_control.COMMANDS:
        return cli_control.run(args)
    if args.command == "genhash":
        from hacontrol import genhash

        return genhash.run(args)
    if args.command == "import":
        from hacontrol.importer import cli as import_cli

        return import_cli.run(args)
    if args.command == "ipvs":
        from hacontrol.ipvs import cli as ipvs_cli

        return asyncio.run(ipvs_cli.run(args))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
