"""`hacontrol import keepalived`: read, translate, check, then print or write the YAML.

Exit codes: 0 imported (findings, if any, on stderr); 1 the file cannot be read or
translated (`FILE:LINE: why` on stderr, nothing written), the result does not pass
`hacontrol check`, or `--strict` and at least one finding.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    # Imported by `run` only: every `hacontrol` command builds this subcommand's parser,
    # and the translator (with the config models) costs 0.15 s to import.
    from hacontrol.importer.translate import Finding


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imp = sub.add_parser("import", help="translate another tool's configuration")
    kinds = imp.add_subparsers(dest="import_kind", required=True)
    ka = kinds.add_parser(
        "keepalived",
        help="keepalived.conf (with its includes) -> hacontrol YAML",
        description="Translate keepalived.conf, as keepalived reads it (include, "
        "@conditionals, $VARIABLES, ~SEQ), into hacontrol's YAML. What cannot be carried "
        "over is listed on stderr as FILE:LINE: keyword: why, and what is carried over "
        "but may not behave as expected (scripts needing a shell, kill -0 checks) as "
        "FILE:LINE: keyword: warning: why. Scripts named in the config are never run.",
    )
    ka.add_argument("file", help="keepalived.conf")
    ka.add_argument(
        "-i",
        "--config-id",
        default=None,
        help="select @ID lines as keepalived -i does (default: the short host name, "
        "keepalived's default)",
    )
    ka.add_argument("-o", "--output", default=None, help="write the YAML here (default: stdout)")
    ka.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 (and write nothing) if anything could not be carried over or has a warning",
    )


def default_config_id() -> str:
    # keepalived: the node name up to its first dot.
    return socket.gethostname().split(".", 1)[0]


def render(
    document: dict[str, object], source: str, config_id: str, findings: list[Finding]
) -> str:
    header = [
        f"# hacontrol configuration imported from keepalived: {os.path.abspath(source)}",
        f"# by `hacontrol import keepalived` on {datetime.date.today().isoformat()} "
        f"(config id {config_id!r})",
    ]
    dropped = [f for f in findings if not f.warning]
    warnings = [f for f in findings if f.warning]
    if dropped:
        header.append(f"# {len(dropped)} keyword(s) not carried over:")
        header.extend(f"#   {finding}" for finding in dropped)
    else:
        header.append("# every keyword was carried over")
    if warnings:
        header.append(f"# {len(warnings)} warning(s) about what was carried over:")
        header.extend(f"#   {finding}" for finding in warnings)
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    return "\n".join(header) + "\n" + (body if document else "{}\n")


def run(args: argparse.Namespace) -> int:
    from hacontrol.importer.grammar import GrammarError, read_config
    from hacontrol.importer.translate import translate

    config_id = args.config_id if args.config_id is not None else default_config_id()
    try:
        tree = read_config(args.file, config_id)
        document, findings = translate(tree)
    except GrammarError as exc:
        print(f"{exc}", file=sys.stderr)
        print(f"{args.file}: not imported", file=sys.stderr)
        return 1
    for finding in findings:
        print(finding, file=sys.stderr)
    text = render(document, args.file, config_id, findings)
    from hacontrol.config import ConfigError, check_source

    try:
        check_source(text, args.output or "<imported>")
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"imported config: {issue}", file=sys.stderr)
        print(
            f"{args.file}: the translation does not pass hacontrol check "
            f"({len(exc.errors)} error(s)); nothing written",
            file=sys.stderr,
        )
        return 1
    if args.strict and findings:
        warnings = sum(1 for f in findings if f.warning)
        counts = f"{len(findings) - warnings} keyword(s) not carried over" + (
            f", {warnings} warning(s)" if warnings else ""
        )
        print(f"{args.file}: {counts} (--strict); nothing written", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        write_atomically(Path(args.output), text)
    except OSError as exc:
        print(f"{args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def write_atomically(path: Path, text: str) -> None:
    """The whole file or none of it: a temporary file in the same folder, then rename."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
