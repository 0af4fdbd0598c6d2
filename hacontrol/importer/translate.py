"""keepalived.conf's tree (grammar.py) -> hacontrol's YAML config, and what could not be.

Each block kind has a table, keyword -> handler: a function that writes the keyword's
hacontrol equivalent, or an `Unsupported(why)` that reports it as
`FILE:LINE: keyword: why` and writes nothing. A keyword that is in no table is no
keepalived keyword at all: a `GrammarError` at its line (keepalived would log it and go
on; an import must not guess). When hacontrol learns a keyword, its table entry changes
from `Unsupported(...)` to a handler, and nothing else.

Where keepalived's default differs from hacontrol's, the effective value is written
explicitly: `forwarding` (keepalived's lb_kind defaults to NAT, hacontrol's to DR), the
sync daemon's `syncid` (the VRRP instance's VRID in keepalived, 0 here), `http_protocol`
("1.0" in keepalived), `enable_sni` and `use_ehlo` (off in keepalived), a UDP check's
`max_reply_length` (255), `accept` (keepalived accepts traffic to VIPs unless
vrrp_strict), the VRRP version and the garp settings (global_defs defaults), and the
real servers' ports; for VRRP scripts, keepalived's interval 1 and weight 0. Scripts
are split into argv lists as keepalived splits them (see `Translator.argv` for when
keepalived uses a shell). Nothing here runs a script the config names; warnings
(`Finding.warning`) flag what is carried over but may not behave as expected.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hacontrol.config_track import SyncGroupConfig
from hacontrol.importer.grammar import GrammarError, Statement

# ---- what is reported ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One keyword that was not carried over."""

    file: str
    line: int
    keyword: str
    why: str
    # A warning: carried over, but it may not behave as the operator expects.
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.file}:{self.line}: {self.keyword}: {kind}{self.why}"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A keepalived keyword hacontrol cannot carry over (today): reported, not written."""

    why: str


# Reasons shared by many keywords.
GROUP_NOTIFY = (
    "not in hacontrol yet: a sync group has no notify scripts (its members' notify "
    "scripts and the notify FIFO are carried over)"
)
FIFO_READER = "hacontrol starts no FIFO reader: run the reader as its own service, reading the FIFO"
CHECKER_FIFO = (
    "hacontrol writes no checker lines to a FIFO: use notify_up/notify_down and "
    "quorum_up/quorum_down"
)
PRIORITY_NOTIFY = "not in hacontrol: notify scripts and FIFO lines are for state changes"
EMAIL = "hacontrol sends no email: alert from its metrics or events instead"
SNMP = "hacontrol has no SNMP agent: it exports Prometheus metrics"
PROCESS = "a keepalived process setting with no hacontrol counterpart"
STATIC = (
    "hacontrol manages no static addresses, routes or rules: configure them in the system's "
    "network configuration"
)
BFD = "hacontrol has no BFD"
NFT = "hacontrol installs no firewall rules"

Handler = Callable[["Translator", Statement, dict[str, Any]], None]
Entry = Handler | Unsupported


class Translator:
    """One translation: `out` is the YAML document, `report` what was not carried over."""

    def __init__(self, tree: tuple[Statement, ...]) -> None:
        self.tree = tree
        self.out: dict[str, Any] = {}
        self.report: list[Finding] = []
        self.instances: list[dict[str, Any]] = []
        self.instance_vrids: dict[str, int] = {}
        self.track_files: dict[str, dict[str, Any]] = {}
        self.ssl: dict[str, Any] = {}
        self.globals: dict[str, Any] = {}
        self.sync_daemon: dict[str, Any] | None = None
        self.sync_daemon_at: Statement | None = None
        self.strict = False
        # Tracking, resolved once the whole file is read (keepalived's order does not matter).
        self.scripts: dict[str, dict[str, Any]] = {}
        self.processes: dict[str, dict[str, Any]] = {}
        self.sync_groups: list[tuple[Statement, dict[str, Any]]] = []
        self.track_refs: list[TrackRef] = []
        # Every statement a handler took (its words and, for value blocks, its lines):
        # with `report`, what the tests check for silent drops.
        self.handled: set[int] = set()

    # -- driving

    def run(self) -> dict[str, Any]:
        # First what other blocks refer to, wherever it stands: global defaults, track
        # files and the SSL block (keepalived reads the whole file before applying them).
        for st in self.tree:
            if st.keyword == "global_defs":
                self.dispatch(st, {}, GLOBAL_PREPASS, report=False)
            elif st.keyword in ("track_file", "vrrp_track_file"):
                self.track_file_define(st)
            elif st.keyword == "SSL":
                self.dispatch(st, self.ssl, SSL_BLOCK)
        self.dispatch_block(self.tree, {}, TOP, "top level")
        self.finish()
        return self.out

    def dispatch_block(
        self,
        block: tuple[Statement, ...] | None,
        target: dict[str, Any],
        table: dict[str, Entry],
        where: str,
    ) -> None:
        for st in block or ():
            entry = table.get(st.keyword)
            if entry is None:
                raise GrammarError(st.file, st.line, f"unknown keyword {st.keyword!r} in {where}")
            if isinstance(entry, Unsupported):
                self.unsupported(st, entry.why)
            else:
                self.mark(st)
                entry(self, st, target)

    def dispatch(
        self, st: Statement, target: dict[str, Any], table: dict[str, Entry], report: bool = True
    ) -> None:
        """The statements of `st`'s block; with report=False a pre-pass reads silently."""
        if not report:
            for child in st.block or ():
                entry = table.get(child.keyword)
                if entry is not None and not isinstance(entry, Unsupported):
                    entry(self, child, target)
            return
        self.dispatch_block(self.need_block(st), target, table, st.keyword)

    def mark(self, st: Statement) -> None:
        self.handled.add(id(st))

    def value_lines(self, st: Statement) -> tuple[Statement, ...]:
        """A block of values (addresses, ...): each line is taken by the caller."""
        block = self.need_block(st)
        for line in block:
            self.mark(line)
        return block

    def unsupported(self, st: Statement, why: str, keyword: str | None = None) -> None:
        inside = sum(1 for _ in _walk(st.block)) if st.block else 0
        suffix = f" ({inside} line{'s' if inside != 1 else ''} in its block not carried over)"
        self.report.append(
            Finding(st.file, st.line, keyword or st.keyword, why + (suffix if inside else ""))
        )

    # -- value helpers (a bad value is an error at its line, as keepalived's is)

    def need_block(self, st: Statement) -> tuple[Statement, ...]:
        if st.block is None:
            raise GrammarError(st.file, st.line, f"{st.keyword} needs a {{ }} block")
        return st.block

    def args(self, st: Statement, count: int, most: int | None = None) -> tuple[str, ...]:
        got = st.args
        high = count if most is None else most
        if not count <= len(got) <= high:
            want = str(count) if high == count else f"{count} to {high}"
            raise GrammarError(
                st.file, st.line, f"{st.keyword}: takes {want} value(s), got {len(got)}"
            )
        return got

    def integer(self, st: Statement, text: str, low: int, high: int) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise GrammarError(
                st.file, st.line, f"{st.keyword}: {text!r} is not a whole number"
            ) from None
        if not low <= value <= high:
            raise GrammarError(st.file, st.line, f"{st.keyword}: {value} is outside {low}..{high}")
        return value

    def seconds(self, st: Statement, text: str, low: float = 0.0) -> int | float:
        try:
            value = float(text)
        except ValueError:
            raise GrammarError(
                st.file, st.line, f"{st.keyword}: {text!r} is not a number"
            ) from None
        if not low <= value < 1e9 or value != value:
            raise GrammarError(st.file, st.line, f"{st.keyword}: {text!r} is out of range")
        return int(value) if value == int(value) else value

    def address(self, st: Statement, text: str) -> str:
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise GrammarError(
                st.file, st.line, f"{st.keyword}: {text!r} is not an IP address"
            ) from None

    def boolean(self, st: Statement) -> bool:
        """keepalived's optional <BOOL> after a flag keyword (none: true)."""
        if not st.args:
            return True
        word = st.args[0].lower()
        if word in ("true", "on", "yes"):
            return True
        if word in ("false", "off", "no"):
            return False
        raise GrammarError(st.file, st.line, f"{st.keyword}: {st.args[0]!r} is not yes/no")

    def argv(self, st: Statement, command: str) -> list[str]:
        """A script command as keepalived splits it (quotes, backslash escapes), never run.

        keepalived 2.2 execs the first word, if it finds it as an executable file, with the
        other words as its arguments: no shell, as hacontrol. Only when it finds no such
        program does it hand the whole line to /bin/sh -c (system()). So shell syntax after
        a program is passed to it as arguments (carried over so, with a warning); a line
        that starts with shell syntax (`</dev/tcp/...`, `VAR=x cmd`) names no program, and
        is written as [/bin/sh, -c, LINE], what keepalived runs.
        """
        try:
            words = shlex.split(command, posix=True)
        except ValueError as exc:
            raise GrammarError(st.file, st.line, f"{st.keyword}: {exc}") from None
        if not words:
            raise GrammarError(st.file, st.line, f"{st.keyword}: empty command")
        syntax = shell_syntax(command)
        if syntax and _NO_PROGRAM.match(command):
            self.warn(
                st,
                f"{command!r} starts with shell syntax ({', '.join(syntax)}), so it names no "
                "program: keepalived runs it with /bin/sh -c, and so it is written as "
                "[/bin/sh, -c, ...]; check it works with /bin/sh (dash on Debian: no /dev/tcp)",
            )
            return ["/bin/sh", "-c", command.strip()]
        if syntax:
            self.warn(
                st,
                f"{command!r} has shell syntax ({', '.join(syntax)}): keepalived execs "
                f"{words[0]} without a shell when it finds it, as hacontrol does, so the "
                "program gets those words as arguments; put the command in a script, or "
                "write [/bin/sh, -c, COMMAND]",
            )
        if signals_zero(words):
            self.warn(
                st,
                f"{command!r} sends signal 0 to a process: hacontrol runs scripts as its own "
                "user (hacontrol under the packaged unit, not root), and signalling another "
                "user's process fails with EPERM, so the check fails though the process runs; "
                "use pidof NAME, or vrrp_track_process / track_process",
            )
        return words

    def warn(self, st: Statement, why: str) -> None:
        self.report.append(Finding(st.file, st.line, st.keyword, why, warning=True))

    # -- the whole document

    def finish(self) -> None:
        self.finish_tracking()
        if self.instances:
            self.out["vrrp_instances"] = self.instances
        if self.sync_daemon is not None:
            sync = self.sync_daemon
            name = sync.get("vrrp_instance")
            if name not in self.instance_vrids:
                at = self.sync_daemon_at
                assert at is not None
                self.report.append(
                    Finding(
                        at.file,
                        at.line,
                        at.keyword,
                        f"names vrrp_instance {name!r}, which the config does not have "
                        "(keepalived ignores it then)",
                    )
                )
            else:
                # keepalived: the sync id defaults to the instance's VRID (hacontrol: 0).
                sync.setdefault("syncid", self.instance_vrids[name])
                self.out.setdefault("ipvs", {})["sync_daemon"] = sync
        order = [
            "global",
            "vrrp_scripts",
            "track_files",
            "track_processes",
            "vrrp_instances",
            "vrrp_sync_groups",
            "virtual_server_groups",
            "virtual_servers",
            "ipvs",
        ]
        self.out = {key: self.out[key] for key in order if key in self.out}

    def finish_tracking(self) -> None:
        """Sync groups and track_* references, checked as keepalived checks them; what
        keepalived would ignore (with a warning) is reported and left out, since hacontrol
        refuses a reference to nothing."""
        names = set(self.instance_vrids)
        member_of: dict[str, str] = {}
        for st, group in self.sync_groups:
            members: list[str] = []
            for line in group.pop("_members", []):
                name = line.keyword
                if name not in names:
                    why = f"no vrrp_instance {name}: keepalived leaves it out of the group"
                elif name in member_of:
                    why = (
                        f"{name} is already in sync group {member_of[name]}: keepalived "
                        "leaves it out of this one"
                    )
                else:
                    member_of[name] = group["name"]
                    members.append(name)
                    continue
                self.report.append(Finding(line.file, line.line, name, why))
            if len(members) < 2:
                # keepalived 2.x: "Sync group %s has only %d virtual router(s) - removing".
                self.report.append(
                    Finding(
                        st.file,
                        st.line,
                        st.keyword,
                        f"{group['name']}: {len(members)} instance(s); keepalived removes a "
                        "sync group of fewer than two, and so does the import",
                    )
                )
                for name in members:
                    del member_of[name]
                group["_dropped"] = True
            group["_group"] = members
        defined: dict[str, dict[str, Any]] = {
            "track_script": self.scripts,
            "track_file": self.track_files,
            "track_process": self.processes,
        }
        kinds = {
            "track_script": "vrrp_script",
            "track_file": "track_file",
            "track_process": "vrrp_track_process",
        }
        used_files: list[str] = []
        for ref in self.track_refs:
            if ref.owner.get("_dropped"):
                continue
            table = defined.get(ref.key)
            if table is not None and ref.name not in table:
                self.report.append(
                    Finding(
                        ref.at.file,
                        ref.at.line,
                        ref.name,
                        f"{ref.key}: no {kinds[ref.key]} {ref.name} (keepalived ignores the "
                        "reference)",
                    )
                )
                continue
            items = ref.owner[ref.key]
            if any((i if isinstance(i, str) else i["name"]) == ref.name for i in items):
                self.report.append(
                    Finding(
                        ref.at.file,
                        ref.at.line,
                        ref.name,
                        f"{ref.key}: tracked twice (keepalived keeps the first)",
                    )
                )
                continue
            item: dict[str, Any] = {"name": ref.name}
            if ref.weight is not None:
                item["weight"] = ref.weight
            if ref.reverse is not None:
                item["reverse"] = ref.reverse
            items.append(item if len(item) > 1 else ref.name)
            if ref.key == "track_file" and ref.name not in used_files:
                used_files.append(ref.name)
        for owner in [*self.instances, *(g for _, g in self.sync_groups)]:
            for key in _TRACK_WEIGHTS:
                if key in owner and not owner[key]:
                    del owner[key]
        groups = [
            {
                "name": g["name"],
                "group": g["_group"],
                **{k: v for k, v in g.items() if not k.startswith("_") and k != "name"},
            }
            for _, g in self.sync_groups
            if not g.get("_dropped")
        ]
        if self.scripts:
            self.out["vrrp_scripts"] = list(self.scripts.values())
        if used_files:
            self.out["track_files"] = [self.vrrp_track_file(n) for n in used_files]
        if self.processes:
            self.out["track_processes"] = list(self.processes.values())
        if groups:
            self.out["vrrp_sync_groups"] = groups

    def vrrp_track_file(self, name: str) -> dict[str, Any]:
        """A track_file block as VRRP tracking takes it (FILE_CHECK's keys differ)."""
        spec = self.track_files[name]
        out: dict[str, Any] = {"name": name, "file": spec["path"], "weight": spec["weight"]}
        if spec.get("reverse"):
            out["reverse"] = True
        if "init_file" in spec:
            out["init_file"] = spec["init_file"]
        if spec.get("init_overwrite"):
            out["init_file_overwrite"] = True
        return out

    def track_file_define(self, st: Statement) -> None:
        (name,) = self.args(st, 1)
        spec: dict[str, Any] = {"weight": 1}
        for child in self.value_lines(st):
            if child.keyword == "file":
                spec["path"] = self.args(child, 1)[0]
            elif child.keyword == "weight":
                weight, *rest = self.args(child, 1, 2)
                spec["weight"] = self.integer(child, weight, -(2**31 - 1), 2**31 - 1)
                if rest:
                    if rest != ["reverse"]:
                        raise GrammarError(
                            child.file, child.line, "weight: only 'reverse' may follow"
                        )
                    spec["reverse"] = True
            elif child.keyword == "init_file":
                words = list(self.args(child, 0, 2))
                if "overwrite" in words:
                    words.remove("overwrite")
                    spec["init_overwrite"] = True
                spec["init_file"] = (
                    self.integer(child, words[0], -(2**31), 2**31 - 1) if words else 0
                )
            else:
                raise GrammarError(
                    child.file, child.line, f"unknown keyword {child.keyword!r} in track_file"
                )
        if "path" not in spec:
            raise GrammarError(st.file, st.line, f"track_file {name}: no file given")
        self.track_files[name] = spec


# Unquoted, these make a command shell syntax (keepalived's scripts get no shell).
_SHELL_OPERATORS = {
    "|": "a pipe",
    "&": "& or &&",
    ";": "';'",
    "<": "a redirection",
    ">": "a redirection",
    "(": "a subshell",
    ")": "a subshell",
    "`": "command substitution",
    "*": "a glob",
    "?": "a glob",
    "[": "a glob",
}


# A line that starts so names no program: keepalived runs it with /bin/sh -c.
_NO_PROGRAM = re.compile(
    r"\s*([<>(){!]|[A-Za-z_][A-Za-z0-9_]*=|(if|for|while|until|case|\[\[)(\s|$))"
)
# sh(1)'s reserved words that can start a command line.
_SHELL_KEYWORDS = ("!", "{", "if", "for", "while", "until", "case", "[[")


def shell_syntax(command: str) -> list[str]:
    """What in `command` only a shell would interpret: operators, globs and `$` outside
    single quotes (inside double quotes a shell still expands `$` and backquotes), and a
    leading assignment or reserved word."""
    found: list[str] = []
    if re.match(r"\s*[A-Za-z_][A-Za-z0-9_]*=", command):
        found.append("a variable assignment")
    if command.split()[:1] and command.split()[0] in _SHELL_KEYWORDS:
        found.append("a shell keyword")
    quote = ""
    escaped = False
    start_of_word = True
    for char in command:
        what: str | None = None
        if escaped:
            escaped = False
        elif quote == "'":
            if char == "'":
                quote = ""
        elif char == "\\":
            escaped = True
        elif quote == '"':
            if char == '"':
                quote = ""
            elif char in "$`":
                what = "$ expansion" if char == "$" else "command substitution"
        elif char in "'\"":
            quote = char
        elif char == "$":
            what = "$ expansion"
        elif char == "~" and start_of_word:
            what = "~ expansion"
        elif char in _SHELL_OPERATORS:
            what = _SHELL_OPERATORS[char]
        start_of_word = char.isspace() and not quote
        if what is not None and what not in found:
            found.append(what)
    return found


def signals_zero(words: list[str]) -> bool:
    """`kill -0 PID` / `killall -0 NAME` (or -s 0): a check by signalling a process."""
    if words[0].rsplit("/", 1)[-1] not in ("kill", "killall", "pkill"):
        return False
    args = words[1:]
    if "-0" in args:
        return True
    return any(
        a in ("-s", "--signal") and i + 1 < len(args) and args[i + 1] in ("0", "SIG0")
        for i, a in enumerate(args)
    )


def _walk(block: tuple[Statement, ...] | None) -> Any:
    for st in block or ():
        yield st
        yield from _walk(st.block)


# ---- top level -----------------------------------------------------------------------------


def _track_file_top(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    # Read in the pre-pass; used by FILE_CHECK. A VRRP instance's track_file is tracking.
    t.need_block(st)


def _ssl_top(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    pass  # read in the pre-pass, used by SSL_GET


def _global_defs(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    t.dispatch(st, t.out.setdefault("global", {}), GLOBAL)
    if not t.out["global"]:
        del t.out["global"]


# ---- global_defs --------------------------------------------------------------------------


def _router_id(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["router_id"] = t.args(st, 1)[0]


def _prepass_default(key: str, kind: str) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        value = t.args(st, 1)[0]
        if kind == "int":
            t.globals[key] = t.integer(st, value, 0, 2**31 - 1)
        elif kind == "version":
            t.globals[key] = t.integer(st, value, 2, 3)
        else:
            t.globals[key] = t.seconds(st, value)

    return handler


def _global_written(key: str) -> Handler:
    """A global_defs default for instances: applied to each instance (pre-pass), not here."""

    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        t.args(st, 1)

    return handler


def _strict_prepass(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    t.strict = True


def _check_unicast_src_prepass(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    t.globals["check_unicast_src"] = True


def _rt_priority(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["vrrp_rt_priority"] = t.integer(st, t.args(st, 1)[0], 1, 99)


def _vrrp_priority(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["vrrp_priority"] = t.integer(st, t.args(st, 1)[0], -20, 19)


def _lvs_sync_daemon(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = list(t.args(st, 2, 12))
    sync: dict[str, Any] = {"interface": words[0], "vrrp_instance": words[1]}
    rest = words[2:]
    names = {"id": "syncid", "maxlen": "maxlen", "port": "port", "ttl": "ttl", "group": "group"}
    limits = {"syncid": 255, "maxlen": 65535 - 28, "port": 65535, "ttl": 255}
    while rest:
        word = rest.pop(0)
        if word not in names or not rest:
            raise GrammarError(st.file, st.line, f"lvs_sync_daemon: unexpected {word!r}")
        value = rest.pop(0)
        key = names[word]
        if key == "group":
            sync[key] = t.address(st, value)
        else:
            sync[key] = t.integer(st, value, 0 if key in ("syncid", "maxlen") else 1, limits[key])
    _set_sync_daemon(t, st, sync)


def _set_sync_daemon(t: Translator, st: Statement, sync: dict[str, Any]) -> None:
    if t.sync_daemon is not None:
        t.unsupported(st, "a second sync daemon: keepalived and the kernel run one")
        return
    t.sync_daemon = sync
    t.sync_daemon_at = st


def _lvs_timeouts(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = list(t.args(st, 2, 6))
    timeouts: dict[str, int] = {}
    while words:
        word = words.pop(0)
        if word not in ("tcp", "tcpfin", "udp") or not words:
            raise GrammarError(st.file, st.line, f"lvs_timeouts: unexpected {word!r}")
        timeouts[word] = t.integer(st, words.pop(0), 0, 2**31 - 1)
    t.out.setdefault("ipvs", {})["timeouts"] = timeouts


GLOBAL_PREPASS: dict[str, Entry] = {
    "vrrp_version": _prepass_default("version", "version"),
    "vrrp_garp_master_delay": _prepass_default("garp_master_delay", "seconds"),
    "vrrp_garp_master_repeat": _prepass_default("garp_master_repeat", "int"),
    "vrrp_garp_master_refresh": _prepass_default("garp_master_refresh", "seconds"),
    "vrrp_garp_master_refresh_repeat": _prepass_default("garp_master_refresh_repeat", "int"),
    "vrrp_garp_lower_prio_repeat": _prepass_default("garp_lower_prio_repeat", "int"),
    "vrrp_strict": _strict_prepass,
    "vrrp_check_unicast_src": _check_unicast_src_prepass,
}

_GLOBAL_UNSUPPORTED = {
    "tmp_config_directory": PROCESS,
    "config_save_dir": PROCESS,
    "process_names": PROCESS,
    "process_name": PROCESS,
    "vrrp_process_name": PROCESS,
    "checker_process_name": PROCESS,
    "bfd_process_name": BFD,
    "startup_script": "hacontrol runs no start-up or shut-down scripts: use systemd units",
    "startup_script_timeout": "hacontrol runs no start-up or shut-down scripts",
    "shutdown_script": "hacontrol runs no start-up or shut-down scripts: use systemd units",
    "shutdown_script_timeout": "hacontrol runs no start-up or shut-down scripts",
    "notification_email": EMAIL,
    "notification_email_from": EMAIL,
    "smtp_server": EMAIL,
    "smtp_helo_name": EMAIL,
    "smtp_connect_timeout": EMAIL,
    "smtp_alert": EMAIL,
    "smtp_alert_vrrp": EMAIL,
    "smtp_alert_checker": EMAIL,
    "no_email_faults": EMAIL,
    "no_checker_emails": EMAIL,
    "checker_log_all_failures": "hacontrol logs every check failure at debug level",
    "vrrp_mcast_group4": "hacontrol sends adverts to the RFC's groups (224.0.0.18, ff02::12)",
    "vrrp_mcast_group6": "hacontrol sends adverts to the RFC's groups (224.0.0.18, ff02::12)",
    "default_interface": "hacontrol needs each instance's interface",
    "lvs_flush": "hacontrol never flushes the IPVS table; ipvs.purge_unowned: true removes "
    "the services the config does not name",
    "lvs_flush_on_stop": "hacontrol leaves the IPVS table in place when it stops "
    "(a restart adopts it)",
    "vrrp_garp_lower_prio_delay": "not in hacontrol (garp_lower_prio_repeat is)",
    "vrrp_down_timer_adverts": "not in hacontrol: the master-down timer is RFC 5798's",
    "vrrp_garp_interval": "not in hacontrol: gratuitous ARPs are sent back to back",
    "vrrp_gna_interval": "not in hacontrol: neighbour advertisements are sent back to back",
    "vrrp_min_garp": "not in hacontrol (garp_master_repeat, garp_master_refresh are)",
    "vrrp_garp_extra_if": "not in hacontrol",
    "vrrp_lower_prio_no_advert": "not in hacontrol",
    "vrrp_higher_prio_send_advert": "not in hacontrol",
    "nftables": NFT,
    "nftables_priority": NFT,
    "nftables_counters": NFT,
    "nftables_ifindex": NFT,
    "nftables_ipvs": NFT,
    "nftables_ipvs_priority": NFT,
    "nftables_ipvs_start_fwmark": NFT,
    "vrrp_iptables": NFT,
    "vrrp_ipsets": NFT,
    "disable_local_igmp": "not in hacontrol",
    "vrrp_skip_check_adv_addr": "not in hacontrol: adverts are always checked",
    "vrrp_strict": "not in hacontrol: no strict RFC mode (no firewall rules, VIPs accept "
    "traffic); each instance's accept is written from it",
    "vrrp_notify_priority_changes": PRIORITY_NOTIFY,
    "max_auto_priority": "use global.vrrp_rt_priority",
    "min_auto_priority_delay": "use global.vrrp_rt_priority",
    "checker_priority": PROCESS,
    "bfd_priority": BFD,
    "vrrp_no_swap": PROCESS,
    "checker_no_swap": PROCESS,
    "bfd_no_swap": BFD,
    "vrrp_cpu_affinity": PROCESS,
    "checker_cpu_affinity": PROCESS,
    "bfd_cpu_affinity": BFD,
    "checker_rt_priority": PROCESS,
    "bfd_rt_priority": BFD,
    "vrrp_rlimit_rttime": PROCESS,
    "checker_rlimit_rttime": PROCESS,
    "bfd_rlimit_rttime": BFD,
    "snmp_socket": SNMP,
    "enable_snmp_vrrp": SNMP,
    "enable_snmp_keepalived": SNMP,
    "enable_snmp_checker": SNMP,
    "enable_snmp_rfc": SNMP,
    "enable_snmp_rfcv2": SNMP,
    "enable_snmp_rfcv3": SNMP,
    "enable_traps": SNMP,
    "enable_dbus": "hacontrol has no D-Bus interface: use its control socket",
    "dbus_service_name": "hacontrol has no D-Bus interface: use its control socket",
    "script_user": "hacontrol runs check scripts as each check's user (checks: user)",
    "enable_script_security": "hacontrol runs scripts without a shell, as each check's user",
    "notify_fifo_script": FIFO_READER,
    "vrrp_notify_fifo_script": FIFO_READER,
    "lvs_notify_fifo": CHECKER_FIFO,
    "lvs_notify_fifo_script": CHECKER_FIFO,
    "fifo_write_vrrp_states_on_reload": "not in hacontrol: a reload writes no state lines "
    "for instances that did not change",
    "dynamic_interfaces": "hacontrol follows interfaces as they come and go",
    "vrrp_netlink_cmd_rcv_bufs": PROCESS,
    "vrrp_netlink_cmd_rcv_bufs_force": PROCESS,
    "vrrp_netlink_monitor_rcv_bufs": PROCESS,
    "vrrp_netlink_monitor_rcv_bufs_force": PROCESS,
    "lvs_netlink_cmd_rcv_bufs": PROCESS,
    "lvs_netlink_cmd_rcv_bufs_force": PROCESS,
    "lvs_netlink_monitor_rcv_bufs": PROCESS,
    "lvs_netlink_monitor_rcv_bufs_force": PROCESS,
    "process_monitor_rcv_bufs": PROCESS,
    "process_monitor_rcv_bufs_force": PROCESS,
    "vrrp_rx_bufs_policy": PROCESS,
    "vrrp_rx_bufs_multiplier": PROCESS,
    "rs_init_notifies": "not in hacontrol: real-server notify scripts run on changes only",
    "umask": PROCESS,
    "vrrp_startup_delay": "not in hacontrol",
    "log_unknown_vrids": "hacontrol counts adverts of unknown VRIDs in its metrics",
    "vmac_prefix": "not in hacontrol: a VMAC is named vrrp.VRID, or by use_vmac",
    "vmac_addr_prefix": "not in hacontrol: a VMAC is named vrrp.VRID, or by use_vmac",
    "random_seed": PROCESS,
    "reload_check_config": "hacontrol checks a config before every reload",
    "include_check": PROCESS,
    "reload_time_file": PROCESS,
    "reload_repeat": PROCESS,
    "reload_file": PROCESS,
    "data_use_instance": PROCESS,
    "lvs_id": "use router_id",
    "linkbeat_use_polling": "hacontrol follows links over netlink",
    "vrrp_track_process": PROCESS,
}


def _fifo(key: str) -> Handler:
    """keepalived's notify_fifo / vrrp_notify_fifo FIFO [USER [GROUP]]."""

    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        path, *owner = t.args(st, 1, 3)
        if not path.startswith("/"):
            raise GrammarError(st.file, st.line, f"{st.keyword}: {path!r} is not an absolute path")
        target[key] = path
        if owner:
            t.report.append(
                Finding(
                    st.file,
                    st.line,
                    "user",
                    f"{' '.join(owner)}: the FIFO is created by hacontrol's own user (its "
                    "owner is not in hacontrol: change it with a tmpfiles.d or the unit)",
                )
            )

    return handler


GLOBAL: dict[str, Entry] = {
    "router_id": _router_id,
    "notify_fifo": _fifo("notify_fifo"),
    "vrrp_notify_fifo": _fifo("vrrp_notify_fifo"),
    "vrrp_rt_priority": _rt_priority,
    "vrrp_priority": _vrrp_priority,
    "lvs_sync_daemon": _lvs_sync_daemon,
    "lvs_timeouts": _lvs_timeouts,
    "vrrp_version": _global_written("version"),
    "vrrp_garp_master_delay": _global_written("garp_master_delay"),
    "vrrp_garp_master_repeat": _global_written("garp_master_repeat"),
    "vrrp_garp_master_refresh": _global_written("garp_master_refresh"),
    "vrrp_garp_master_refresh_repeat": _global_written("garp_master_refresh_repeat"),
    "vrrp_garp_lower_prio_repeat": _global_written("garp_lower_prio_repeat"),
    "vrrp_check_unicast_src": lambda t, st, target: None,
    **{k: Unsupported(v) for k, v in _GLOBAL_UNSUPPORTED.items() if k != "vrrp_strict"},
    "vrrp_strict": lambda t, st, target: t.unsupported(st, _GLOBAL_UNSUPPORTED["vrrp_strict"]),
}


# ---- vrrp_instance ------------------------------------------------------------------------


def _vrrp_instance(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    (name,) = t.args(st, 1)
    inst: dict[str, Any] = {"name": name}
    t.dispatch(st, inst, INSTANCE)
    for key in ("interface", "vrid"):
        if key not in inst:
            word = "virtual_router_id" if key == "vrid" else key
            raise GrammarError(st.file, st.line, f"vrrp_instance {name}: no {word}")
    vips = inst.get("virtual_ipaddresses", [])
    if not vips:
        raise GrammarError(st.file, st.line, f"vrrp_instance {name}: no virtual_ipaddress")
    family = ipaddress.ip_interface(_vip_address(vips[0])).version
    # keepalived: an IPv6 instance is VRRPv3; else the instance's version, global_defs'
    # vrrp_version, then 2.
    version = 3 if family == 6 else inst.get("version", t.globals.get("version", 2))
    inst["version"] = version
    if version == 3 and "authentication" in inst:
        where = inst.pop("_auth_at")
        del inst["authentication"]
        t.report.append(
            Finding(
                where.file,
                where.line,
                "authentication",
                "VRRPv3 has no authentication (keepalived ignores it too)",
            )
        )
    inst.pop("_auth_at", None)
    inst.setdefault("priority", 100)
    inst.setdefault("advert_int", 1)
    for key in (
        "garp_master_delay",
        "garp_master_repeat",
        "garp_master_refresh",
        "garp_master_refresh_repeat",
        "garp_lower_prio_repeat",
    ):
        if key not in inst and key in t.globals:
            inst[key] = t.globals[key]
    # keepalived accepts traffic to the VIPs unless vrrp_strict (then no_accept by default).
    inst.setdefault("accept", not t.strict)
    if t.globals.get("check_unicast_src") and inst.get("unicast_peers"):
        inst.setdefault("check_unicast_src", True)
    ordered = {k: inst[k] for k in _INSTANCE_ORDER if k in inst}
    ordered.update({k: v for k, v in inst.items() if k not in ordered})
    t.instances.append(ordered)
    t.instance_vrids[name] = inst["vrid"]


_INSTANCE_ORDER = (
    "name",
    "interface",
    "vrid",
    "version",
    "priority",
    "advert_int",
    "nopreempt",
    "preempt_delay",
    "accept",
    "authentication",
    "unicast_src_ip",
    "unicast_peers",
    "virtual_ipaddresses",
    "virtual_ipaddresses_excluded",
)


def _vip_address(vip: str | dict[str, Any]) -> str:
    return vip if isinstance(vip, str) else str(vip["address"])


def _simple(key: str, kind: str, low: float = 0, high: float = 2**31 - 1) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        (value,) = t.args(st, 1)
        if kind == "int":
            target[key] = t.integer(st, value, int(low), int(high))
        elif kind == "seconds":
            target[key] = t.seconds(st, value)
        elif kind == "address":
            target[key] = t.address(st, value)
        else:
            target[key] = value

    return handler


def _flag(key: str, value: bool = True) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        target[key] = t.boolean(st) if value else not t.boolean(st)

    return handler


def _advert_int(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["advert_int"] = t.seconds(st, t.args(st, 1)[0], 0.01)


def _nopreempt(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    t.args(st, 0)
    target["nopreempt"] = True


def _preempt(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    t.args(st, 0)  # keepalived's default; only nopreempt changes it


_SCOPES = ("global", "site", "link", "host", "nowhere")  # ip-address(8)'s names
_VIP_OPTIONS_UNSUPPORTED = {
    "preferred_lft": "not in hacontrol",
    "home": "not in hacontrol (IPv6 address flags)",
    "-nodad": "not in hacontrol (IPv6 address flags)",
    "nodad": "not in hacontrol (IPv6 address flags)",
    "mngtmpaddr": "not in hacontrol (IPv6 address flags)",
    "noprefixroute": "not in hacontrol",
    "autojoin": "not in hacontrol",
}


def _vips(key: str) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        out = target.setdefault(key, [])
        seen = {_vip_address(v).split("/")[0] for v in out}
        for line in t.value_lines(st):
            vip = _vip(t, line)
            address = _vip_address(vip).split("/")[0]
            if address in seen:
                t.report.append(
                    Finding(
                        line.file,
                        line.line,
                        line.keyword,
                        "given twice in the instance: hacontrol holds and advertises it once "
                        "(keepalived advertises it twice)",
                    )
                )
                continue
            seen.add(address)
            out.append(vip)

    return handler


def _vip(t: Translator, line: Statement) -> str | dict[str, Any]:
    text = line.words[0]
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise GrammarError(line.file, line.line, f"{text!r} is not an IP address") from None
    address = f"{iface.ip}/{iface.network.prefixlen}"
    vip: dict[str, Any] = {"address": address}
    words = list(line.words[1:])
    while words:
        option = words.pop(0)
        if option in ("label", "dev", "scope", "brd", "broadcast") and not words:
            raise GrammarError(line.file, line.line, f"{text}: {option} without a value")
        if option in ("label", "dev"):
            vip[option] = words.pop(0)
        elif option == "scope":
            scope = words.pop(0)
            if scope not in _SCOPES:
                raise GrammarError(
                    line.file, line.line, f"{text}: scope {scope!r}: one of {', '.join(_SCOPES)}"
                )
            vip["scope"] = scope
        elif option in ("brd", "broadcast"):
            value = words.pop(0)
            if iface.version != 4:
                raise GrammarError(line.file, line.line, f"{text}: brd is for IPv4 addresses")
            if value == "+":  # ip-address(8): the prefix's broadcast address
                vip["brd"] = str(ipaddress.ip_interface(address).network.broadcast_address)
            elif value != "-":
                vip["brd"] = t.address(line, value)
        elif option == "no_track":
            vip["no_track"] = True
        elif option in _VIP_OPTIONS_UNSUPPORTED:
            if option == "preferred_lft" and words:
                words.pop(0)
            t.report.append(Finding(line.file, line.line, option, _VIP_OPTIONS_UNSUPPORTED[option]))
        else:
            raise GrammarError(line.file, line.line, f"unknown virtual_ipaddress option {option!r}")
    return vip if len(vip) > 1 else address


def _authentication(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    auth: dict[str, str] = {}
    for line in t.value_lines(st):
        if line.keyword == "auth_type":
            auth["auth_type"] = t.args(line, 1)[0].upper()
        elif line.keyword == "auth_pass":
            # keepalived keeps the first 8 bytes (VRRPv2 carries 8).
            auth["auth_pass"] = t.args(line, 1)[0].encode()[:8].decode(errors="ignore")
        else:
            raise GrammarError(
                line.file, line.line, f"unknown keyword {line.keyword!r} in authentication"
            )
    kind = auth.get("auth_type", "PASS")
    if kind == "AH":
        t.unsupported(st, "IPsec AH authentication is not in hacontrol (RFC 5798 removed it)")
        return
    if kind != "PASS":
        raise GrammarError(st.file, st.line, f"auth_type {kind!r}: PASS or AH")
    if not auth.get("auth_pass"):
        raise GrammarError(st.file, st.line, "authentication: no auth_pass")
    target["authentication"] = {"auth_type": "PASS", "auth_pass": auth["auth_pass"]}
    target["_auth_at"] = st


def _unicast_peer(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    peers = target.setdefault("unicast_peers", [])
    for line in t.value_lines(st):
        peers.append(t.address(line, line.keyword))
        if line.args:
            t.report.append(
                Finding(
                    line.file,
                    line.line,
                    line.args[0],
                    "per-peer TTL checks are not in hacontrol (min_ttl/max_ttl per instance are)",
                )
            )


def _sync_daemon_interface(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    # keepalived 1.x's spelling of lvs_sync_daemon, inside the instance it follows.
    (interface,) = t.args(st, 1)
    _set_sync_daemon(t, st, {"interface": interface, "vrrp_instance": target["name"]})


# ---- virtual_server_group ------------------------------------------------------------------


def _virtual_server_group(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    (name,) = t.args(st, 1)
    members: list[dict[str, Any]] = []
    for line in t.value_lines(st):
        if line.keyword == "fwmark":
            mark, *family = t.args(line, 1, 2)
            member: dict[str, Any] = {"fwmark": t.integer(line, mark, 1, 2**32 - 1)}
            if family:
                if family[0] not in ("inet", "inet6"):
                    raise GrammarError(line.file, line.line, "fwmark: inet or inet6 may follow")
                member["family"] = 6 if family[0] == "inet6" else 4
            members.append(member)
            continue
        if len(line.words) > 2:
            raise GrammarError(line.file, line.line, f"unexpected {line.words[2]!r}")
        member = {"address": line.keyword}
        member["port"] = t.integer(line, line.words[1], 0, 65535) if len(line.words) > 1 else 0
        members.append(member)
    if not members:
        raise GrammarError(st.file, st.line, f"virtual_server_group {name} is empty")
    t.out.setdefault("virtual_server_groups", []).append({"name": name, "members": members})


# ---- virtual_server ------------------------------------------------------------------------


def _virtual_server(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = t.args(st, 1, 2)
    vs: dict[str, Any] = {}
    if words[0] == "fwmark":
        if len(words) != 2:
            raise GrammarError(st.file, st.line, "virtual_server fwmark: needs the mark")
        vs["fwmark"] = t.integer(st, words[1], 1, 2**32 - 1)
    elif words[0] == "group":
        if len(words) != 2:
            raise GrammarError(st.file, st.line, "virtual_server group: needs its name")
        vs["group"] = words[1]
    else:
        vs["address"] = t.address(st, words[0])
        vs["port"] = t.integer(st, words[1], 0, 65535) if len(words) > 1 else 0
    # keepalived's defaults where hacontrol's differ, written out.
    vs["scheduler"] = "wlc"
    vs["forwarding"] = "NAT"
    vs["protocol"] = "TCP"
    vs["real_servers"] = []
    t.dispatch(st, vs, VIRTUAL_SERVER)
    servers = vs.pop("real_servers")
    vs["real_servers"] = servers  # last, after the service's own settings
    if vs.get("port") == 0 and "persistence_timeout" not in vs:
        raise GrammarError(
            st.file, st.line, "a virtual server without port (all ports) needs persistence_timeout"
        )
    if "fwmark" in vs:
        del vs["protocol"]  # a fwmark service has none
    if vs.pop("_sorry_inhibit", False):
        vs.setdefault("sorry_server", {})["inhibit"] = True
    method = vs.pop("_sorry_method", None)
    if method is not None and "sorry_server" in vs:
        vs["sorry_server"].update(method)
    if "sorry_server" in vs and "address" not in vs["sorry_server"]:
        raise GrammarError(st.file, st.line, "sorry_server_inhibit/lvs_method without sorry_server")
    tunnel = vs.pop("_tunnel", None)
    for rs in vs["real_servers"]:
        if tunnel and "forwarding" not in rs:
            for key, value in tunnel.items():
                rs.setdefault(key, value)
    if not vs["real_servers"]:
        del vs["real_servers"]
    t.out.setdefault("virtual_servers", []).append(vs)


def _scheduler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["scheduler"] = t.args(st, 1)[0]


def _lvs_method(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = list(t.args(st, 1, 6))
    method = words.pop(0).upper()
    if method not in ("NAT", "DR", "TUN"):
        raise GrammarError(st.file, st.line, f"{st.keyword}: {method!r} is not NAT, DR or TUN")
    target["forwarding"] = method
    tunnel = _tunnel_options(t, st, words) if method == "TUN" else {}
    if tunnel:
        if "real_servers" in target:
            target["_tunnel"] = tunnel  # hacontrol sets tunnel options per real server
        else:
            target.update(tunnel)


def _tunnel_options(t: Translator, st: Statement, words: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    while words:
        word = words.pop(0)
        if word == "type" and words:
            kind = words.pop(0)
            if kind not in ("ipip", "gue", "gre"):
                raise GrammarError(st.file, st.line, f"tunnel type {kind!r}: ipip, gue or gre")
            out["tunnel_type"] = kind
        elif word == "port" and words:
            out["tunnel_port"] = t.integer(st, words.pop(0), 1, 65535)
        elif word in ("nocsum", "csum", "remcsum"):
            out["tunnel_checksum"] = word
        else:
            raise GrammarError(st.file, st.line, f"{st.keyword}: unexpected {word!r}")
    return out


def _protocol(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    value = t.args(st, 1)[0].upper()
    if value not in ("TCP", "UDP", "SCTP"):
        raise GrammarError(st.file, st.line, f"protocol {value!r}: TCP, UDP or SCTP")
    target["protocol"] = value


def _persistence_timeout(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = t.args(st, 0, 1)
    # keepalived: no value is 6 minutes.
    target["persistence_timeout"] = t.integer(st, words[0], 1, 2**31 - 1) if words else 360


def _sched_flag(name: str) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        t.args(st, 0)
        target.setdefault("sched_flags", []).append(name)

    return handler


def _numbered_flag(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    # flag-1/flag-2 are sh/mh's fallback/port flags under their scheduler's names.
    scheduler = target.get("scheduler", "wlc")
    names = {"flag-1": "fallback", "flag-2": "port"}
    if scheduler in ("sh", "mh") and st.keyword in names:
        target.setdefault("sched_flags", []).append(f"{scheduler}-{names[st.keyword]}")
    else:
        t.unsupported(st, f"no scheduler flag of that number for {scheduler}")


def _quorum_script(key: str) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        command, *user = t.args(st, 1, 3)
        target[key] = t.argv(st, command)
        if user:
            t.unsupported(st, "running it as another user is not in hacontrol", "user")

    return handler


def _ip_family(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    value = t.args(st, 1)[0]
    if value not in ("inet", "inet6"):
        raise GrammarError(st.file, st.line, "ip_family: inet or inet6")
    if "fwmark" in target:
        target["family"] = 6 if value == "inet6" else 4


def _sorry_server(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = t.args(st, 1, 2)
    sorry = target.setdefault("sorry_server", {})
    sorry["address"] = t.address(st, words[0])
    if len(words) > 1:
        sorry["port"] = t.integer(st, words[1], 0, 65535)
    elif "port" in target:
        sorry["port"] = target["port"]


def _sorry_inhibit(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    if t.boolean(st):
        target["_sorry_inhibit"] = True


def _sorry_method(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = list(t.args(st, 1, 6))
    method = words.pop(0).upper()
    if method not in ("NAT", "DR", "TUN"):
        raise GrammarError(st.file, st.line, f"{st.keyword}: {method!r} is not NAT, DR or TUN")
    if words:
        t.unsupported(st, "tunnel options for the sorry server are not in hacontrol", "type")
    target["_sorry_method"] = {"forwarding": method}


def _warmup(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["warmup"] = t.seconds(st, t.args(st, 1)[0])


def _retry(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["retry"] = t.integer(st, t.args(st, 1)[0], 0, 100)


def _timer(key: str, low: float = 0.0) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        value = t.seconds(st, t.args(st, 1)[0])
        if value <= low:
            raise GrammarError(st.file, st.line, f"{st.keyword}: must be above {low}")
        target[key] = value

    return handler


_CHECKER_DEFAULTS: dict[str, Entry] = {
    "delay_loop": _timer("delay_loop"),
    "connect_timeout": _timer("connect_timeout"),
    "retry": _retry,
    "nb_get_retry": _retry,
    "delay_before_retry": _timer("delay_before_retry"),
    "warmup": _warmup,
    "virtualhost": _simple("virtualhost", "str"),
    "alpha": _flag("alpha"),
    "inhibit_on_failure": _flag("inhibit_on_failure"),
    "smtp_alert": Unsupported(EMAIL),
    "snmp_name": Unsupported(SNMP),
}

VIRTUAL_SERVER: dict[str, Entry] = {
    "lvs_sched": _scheduler,
    "lb_algo": _scheduler,
    "lvs_method": _lvs_method,
    "lb_kind": _lvs_method,
    "protocol": _protocol,
    "persistence_timeout": _persistence_timeout,
    "persistence_granularity": _simple("persistence_granularity", "str"),
    "persistence_engine": _simple("persistence_engine", "str"),
    "ops": _flag("ops"),
    "sh-port": _sched_flag("sh-port"),
    "sh-fallback": _sched_flag("sh-fallback"),
    "mh-port": _sched_flag("mh-port"),
    "mh-fallback": _sched_flag("mh-fallback"),
    "flag-1": _numbered_flag,
    "flag-2": _numbered_flag,
    "flag-3": Unsupported("no scheduler uses flag-3"),
    "ha_suspend": _flag("ha_suspend"),
    "omega": _flag("omega"),
    "quorum": _simple("quorum", "int", 1),
    "hysteresis": _simple("hysteresis", "int", 0),
    "quorum_up": _quorum_script("quorum_up"),
    "quorum_down": _quorum_script("quorum_down"),
    "ip_family": _ip_family,
    "sorry_server": _sorry_server,
    "sorry_server_inhibit": _sorry_inhibit,
    "sorry_server_lvs_method": _sorry_method,
    **_CHECKER_DEFAULTS,
    "real_server": lambda t, st, target: _real_server(t, st, target),
}


# ---- real_server ---------------------------------------------------------------------------


def _real_server(t: Translator, st: Statement, vs: dict[str, Any]) -> None:
    words = t.args(st, 1, 2)
    rs: dict[str, Any] = {"address": t.address(st, words[0])}
    if len(words) > 1:
        rs["port"] = t.integer(st, words[1], 0, 65535)
    elif "port" in vs:
        rs["port"] = vs["port"]
    rs["weight"] = 1
    rs["checks"] = []
    t.dispatch(st, rs, REAL_SERVER)
    if not rs["checks"]:
        del rs["checks"]
    vs["real_servers"].append(rs)


def _notify_script(key: str) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        command, *user = t.args(st, 1, 3)
        target[key] = t.argv(st, command)
        if user:
            t.unsupported(st, "running it as another user is not in hacontrol", "user")

    return handler


def _checker(kind: str, table: dict[str, Entry]) -> Handler:
    def handler(t: Translator, st: Statement, rs: dict[str, Any]) -> None:
        check: dict[str, Any] = {"type": kind}
        if kind == "http" or kind == "https":
            check["http_protocol"] = "1.0"  # keepalived's default (hacontrol's: 1.0C)
        if kind == "https":
            check["enable_sni"] = False  # keepalived sends SNI only with enable_sni
            check.update(t.ssl)
        if kind == "smtp":
            check["use_ehlo"] = False  # keepalived says HELO
        t.dispatch(st, check, table)
        hosts = check.pop("_hosts", None)
        if kind == "udp" and (
            check.get("require_reply") or "reply_hex" in check or "min_reply_length" in check
        ):
            check.setdefault("max_reply_length", 255)  # keepalived's default
        if kind == "file":
            name = check.pop("_track_file", None)
            if name is None:
                raise GrammarError(st.file, st.line, "FILE_CHECK: no track_file")
            if name not in t.track_files:
                raise GrammarError(st.file, st.line, f"FILE_CHECK: no track_file {name!r}")
            spec = dict(t.track_files[name])
            for key in ("weight", "reverse"):
                if key in check:
                    spec[key] = check.pop(key)
            check = {"type": "file", **spec, **check}
        if hosts:
            # keepalived 1.x's SMTP_CHECK host blocks: one check per host, all must pass.
            for host in hosts:
                rs["checks"].append({**check, **host})
        else:
            rs["checks"].append(check)

    return handler


def _connect_ip(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["connect_ip"] = t.address(st, t.args(st, 1)[0])


_COMMON: dict[str, Entry] = {
    "connect_ip": _connect_ip,
    "connect_port": _simple("connect_port", "int", 1, 65535),
    "bindto": _simple("bind_ip", "address"),
    "bind_port": _simple("bind_port", "int", 1, 65535),
    "fwmark": _simple("fwmark", "int", 1, 2**32 - 1),
    "bind_if": Unsupported("not in hacontrol: give bind_ip a global address"),
    "log_all_failures": Unsupported("hacontrol logs every check failure at debug level"),
    "delay_loop": _timer("delay_loop"),
    "connect_timeout": _timer("connect_timeout"),
    "retry": _retry,
    "nb_get_retry": _retry,
    "delay_before_retry": _timer("delay_before_retry"),
    "warmup": _warmup,
    "alpha": _flag("alpha"),
}


def _url(t: Translator, st: Statement, check: dict[str, Any]) -> None:
    url: dict[str, Any] = {}
    t.dispatch(st, url, URL)
    check.setdefault("urls", []).append(url)


def _status_code(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    codes: list[int | str] = []
    for word in t.args(st, 1, 100):
        if "-" in word:
            lo, _, hi = word.partition("-")
            codes.append(f"{t.integer(st, lo, 100, 599)}-{t.integer(st, hi, 100, 599)}")
        else:
            codes.append(t.integer(st, word, 100, 599))
    target["status_codes"] = codes


URL: dict[str, Entry] = {
    "path": _simple("path", "str"),
    "digest": _simple("digest", "str"),
    "status_code": _status_code,
    "virtualhost": _simple("virtualhost", "str"),
    "regex": _simple("regex", "str"),
    "regex_no_match": _flag("regex_no_match"),
    "regex_options": Unsupported("hacontrol's regex is Python's re: write the options inline"),
    "regex_stack": Unsupported("not needed by Python's re"),
    "regex_min_offset": Unsupported("not in hacontrol"),
    "regex_max_offset": Unsupported("not in hacontrol"),
}


def _http_protocol(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    value = t.args(st, 1)[0].upper()
    table = {"1.0": "1.0", "1.0C": "1.0C", "1.1": "1.1"}
    if value not in table:
        raise GrammarError(st.file, st.line, f"http_protocol {value!r}: 1.0, 1.0C or 1.1")
    target["http_protocol"] = table[value]


HTTP_GET: dict[str, Entry] = {
    **_COMMON,
    "url": _url,
    "http_protocol": _http_protocol,
    "virtualhost": _simple("virtualhost", "str"),
    "fast_recovery": Unsupported("hacontrol fetches every url in each attempt"),
}
SSL_GET: dict[str, Entry] = {**HTTP_GET, "enable_sni": _flag("enable_sni")}
TCP_CHECK: dict[str, Entry] = dict(_COMMON)
PING_CHECK: dict[str, Entry] = dict(_COMMON)


def _smtp_host(t: Translator, st: Statement, check: dict[str, Any]) -> None:
    host: dict[str, Any] = {}
    t.dispatch(st, host, _COMMON)
    check.setdefault("_hosts", []).append(host)


SMTP_CHECK: dict[str, Entry] = {
    **_COMMON,
    "helo_name": _simple("helo_name", "str"),
    "host": _smtp_host,
}


def _dns_type(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    value = t.args(st, 1)[0].upper()
    if value not in ("A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV"):
        raise GrammarError(st.file, st.line, f"type {value!r} is not a DNS query type")
    target["qtype"] = value


DNS_CHECK: dict[str, Entry] = {**_COMMON, "type": _dns_type, "name": _simple("name", "str")}


def _misc_path(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["argv"] = t.argv(st, t.args(st, 1)[0])


def _user(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = t.args(st, 1, 2)
    target["user"] = words[0]
    if len(words) > 1:
        target["group"] = words[1]


MISC_CHECK: dict[str, Entry] = {
    "misc_path": _misc_path,
    "misc_timeout": _timer("timeout"),
    "misc_dynamic": _flag("dynamic"),
    "user": _user,
    "delay_loop": _timer("delay_loop"),
    "retry": _retry,
    "nb_get_retry": _retry,
    "delay_before_retry": _timer("delay_before_retry"),
    "warmup": _warmup,
    "alpha": _flag("alpha"),
    "log_all_failures": Unsupported("hacontrol logs every check failure at debug level"),
}


def hex_bytes(text: str, wildcard: bool = False) -> str:
    """keepalived's free-form hex (`Ab12f 3 456`: AB 12 0F 03 45 06) as spaced pairs."""
    out: list[str] = []
    allowed = "0123456789abcdefABCDEF" + ("xX" if wildcard else "")
    for group in text.split():
        if any(c not in allowed for c in group):
            raise ValueError(f"{group!r} is not hexadecimal")
        while group:
            pair, group = group[:2], group[2:]
            out.append(pair if len(pair) == 2 else "0" + pair)
    return " ".join(p.lower() for p in out)


def _payload(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    try:
        target["payload_hex"] = hex_bytes(" ".join(t.args(st, 1, 1000)))
    except ValueError as exc:
        raise GrammarError(st.file, st.line, f"payload: {exc}") from None


def _require_reply(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["require_reply"] = True
    if st.args:
        try:
            target["reply_hex"] = hex_bytes(" ".join(st.args), wildcard=True)
        except ValueError as exc:
            raise GrammarError(st.file, st.line, f"require_reply: {exc}") from None


UDP_CHECK: dict[str, Entry] = {
    **_COMMON,
    "payload": _payload,
    "require_reply": _require_reply,
    "min_reply_length": _simple("min_reply_length", "int", 0, 65535),
    "max_reply_length": _simple("max_reply_length", "int", 0, 65535),
}


def _file_track(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["_track_file"] = t.args(st, 1)[0]


def _file_weight(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    weight, *rest = t.args(st, 1, 2)
    target["weight"] = t.integer(st, weight, -(2**31 - 1), 2**31 - 1)
    if rest:
        if rest != ["reverse"]:
            raise GrammarError(st.file, st.line, "weight: only 'reverse' may follow")
        target["reverse"] = True


FILE_CHECK: dict[str, Entry] = {
    "track_file": _file_track,
    "file": _file_track,
    "weight": _file_weight,
    "dynamic": _flag("dynamic"),
}


def _rs_lvs_method(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    _lvs_method(t, st, target)


REAL_SERVER: dict[str, Entry] = {
    "weight": _simple("weight", "int", 0, 65535),
    "lvs_method": _rs_lvs_method,
    "lb_kind": _rs_lvs_method,
    "notify_up": _notify_script("notify_up"),
    "notify_down": _notify_script("notify_down"),
    "uthreshold": _simple("uthreshold", "int", 0, 2**31 - 1),
    "lthreshold": _simple("lthreshold", "int", 0, 2**31 - 1),
    **_CHECKER_DEFAULTS,
    "HTTP_GET": _checker("http", HTTP_GET),
    "SSL_GET": _checker("https", SSL_GET),
    "TCP_CHECK": _checker("tcp", TCP_CHECK),
    "SMTP_CHECK": _checker("smtp", SMTP_CHECK),
    "DNS_CHECK": _checker("dns", DNS_CHECK),
    "MISC_CHECK": _checker("script", MISC_CHECK),
    "UDP_CHECK": _checker("udp", UDP_CHECK),
    "PING_CHECK": _checker("icmp", PING_CHECK),
    "FILE_CHECK": _checker("file", FILE_CHECK),
    "BFD_CHECK": Unsupported(BFD),
}


# ---- SSL (the global client context of SSL_GET) --------------------------------------------


def _ssl_file(key: str) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        target[key] = t.args(st, 1)[0]

    return handler


SSL_BLOCK: dict[str, Entry] = {
    "certificate": _ssl_file("client_cert"),
    "key": _ssl_file("client_key"),
    "password": _ssl_file("client_key_password"),
    # keepalived loads the CA but verifies no server certificate: neither does the import.
    "ca": Unsupported(
        "keepalived does not verify the server's certificate with it; set verify and "
        "ca_file on the check to have hacontrol verify"
    ),
}


# ---- tracking: track_* references, vrrp_script, vrrp_track_process, vrrp_sync_group ---------

# keepalived's weight ranges: interfaces and scripts -253..253, files and processes -254..254.
_TRACK_WEIGHTS = {
    "track_interface": 253,
    "track_script": 253,
    "track_file": 254,
    "track_process": 254,
}


@dataclass(slots=True)
class TrackRef:
    """A `NAME [weight W] [reverse]` line of a track_* block, resolved in finish()."""

    owner: dict[str, Any]
    key: str
    name: str
    weight: int | None
    reverse: bool | None  # None: the tracked item's own (noreverse: False)
    at: Statement


def _track(key: str) -> Handler:
    """An instance's or a sync group's track_* block: one reference per line."""

    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        limit = _TRACK_WEIGHTS[key]
        for line in t.value_lines(st):
            words = list(line.args)
            weight: int | None = None
            reverse: bool | None = None
            while words:
                word = words.pop(0)
                if word == "weight" and words:
                    weight = t.integer(line, words.pop(0), -limit, limit)
                elif word in ("reverse", "noreverse"):
                    reverse = word == "reverse"
                else:
                    raise GrammarError(
                        line.file, line.line, f"{key} {line.keyword}: unexpected {word!r}"
                    )
            t.track_refs.append(TrackRef(target, key, line.keyword, weight, reverse, line))
        target.setdefault(key, [])

    return handler


def _script_weight(t: Translator, st: Statement, target: dict[str, Any], limit: int) -> None:
    weight, *rest = t.args(st, 1, 2)
    target["weight"] = t.integer(st, weight, -limit, limit)
    if rest:
        if rest[0] not in ("reverse", "noreverse"):
            raise GrammarError(st.file, st.line, "weight: only 'reverse' may follow")
        target["reverse"] = rest[0] == "reverse"


def _vrrp_script(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    (name,) = t.args(st, 1)
    spec: dict[str, Any] = {"name": name}
    t.dispatch(st, spec, VRRP_SCRIPT)
    if "script" not in spec:
        t.report.append(
            Finding(
                st.file, st.line, st.keyword, f"{name}: no script given (keepalived ignores it)"
            )
        )
        return
    # keepalived's defaults, written out: every second, weight 0 (FAULT while failing).
    t.scripts[name] = {
        "name": name,
        "script": spec.pop("script"),
        "interval": spec.pop("interval", 1),
        "weight": spec.pop("weight", 0),
        **{k: v for k, v in spec.items() if k != "name"},
    }


def _script_command(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = t.args(st, 1, 1000)
    # keepalived: `script "/path arg"` is split; unquoted, the words are the argv.
    target["script"] = t.argv(st, words[0] if len(words) == 1 else shlex.join(words))


VRRP_SCRIPT: dict[str, Entry] = {
    "script": _script_command,
    "interval": _timer("interval"),
    "timeout": _timer("timeout"),
    "weight": lambda t, st, target: _script_weight(t, st, target, 253),
    "rise": _simple("rise", "int", 1, 1000),
    "fall": _simple("fall", "int", 1, 1000),
    "user": _user,
    "init_fail": _flag("init_fail"),
}


def _vrrp_track_process(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    (name,) = t.args(st, 1)
    spec: dict[str, Any] = {"name": name}
    t.dispatch(st, spec, TRACK_PROCESS)
    if "process" not in spec:
        t.report.append(
            Finding(
                st.file, st.line, st.keyword, f"{name}: no process given (keepalived ignores it)"
            )
        )
        return
    bare = spec.pop("_bare_param_match", None)
    if bare is not None and len(spec["process"]) == 1:
        t.unsupported(
            bare,
            "not in hacontrol: matching a process that has no parameters (hacontrol matches "
            "the name whatever the parameters)",
        )
    t.processes[name] = spec


def _process(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    target["process"] = list(t.args(st, 1, 1000))


def _param_match(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = t.args(st, 0, 1)
    if not words:
        # keepalived: param_match alone, with no parameters, says "with no parameters".
        target["_bare_param_match"] = st
        return
    value = words[0]
    if value not in ("exact", "initial", "partial"):
        raise GrammarError(st.file, st.line, f"param_match {value!r}: exact, initial or partial")
    target["param_match"] = value


TRACK_PROCESS: dict[str, Entry] = {
    "process": _process,
    "param_match": _param_match,
    "full_command": _flag("full_command"),
    "weight": lambda t, st, target: _script_weight(t, st, target, 254),
    "quorum": _simple("quorum", "int", 0, 65535),
    "quorum_max": _simple("quorum_max", "int", 0, 65535),
    "delay": _simple("delay", "seconds"),
    "fork_delay": _simple("fork_delay", "seconds"),
    "terminate_delay": _simple("terminate_delay", "seconds"),
}


def _vrrp_sync_group(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    (name,) = t.args(st, 1)
    group: dict[str, Any] = {"name": name}
    known = tuple(c for c in t.need_block(st) if c.keyword in SYNC_GROUP)
    for child in t.need_block(st):
        if child.keyword not in SYNC_GROUP and not child.args and child.block is None:
            # keepalived 1.x listed the instances bare; 2.x takes them only in group { }
            # and logs the bare names as unknown keywords.
            t.unsupported(
                child,
                "an instance named outside group { }: keepalived 2.x ignores it (write "
                "group { NAME ... })",
            )
    t.dispatch_block(known, group, SYNC_GROUP, st.keyword)
    t.sync_groups.append((st, group))


def _group_members(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    members = target.setdefault("_members", [])
    for line in t.value_lines(st):
        t.args(line, 0)
        members.append(line)


def _vrrp_notify(key: str) -> Handler:
    """keepalived's notify_* SCRIPT [USER [GROUP]]: an argv (hacontrol runs no shell)."""

    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        words = t.args(st, 0 if key == "notify_deleted" else 1, 3)
        if not words:
            target[key] = True  # notify_deleted alone: say DELETED instead of FAULT
            return
        target[key] = t.argv(st, words[0])
        if len(words) > 1:
            t.report.append(
                Finding(
                    st.file,
                    st.line,
                    "user",
                    f"{' '.join(words[1:])}: notify scripts run as hacontrol's own user "
                    "(running one as another user is not in hacontrol)",
                )
            )

    return handler


_TRACKING: dict[str, Entry] = {
    "track_interface": _track("track_interface"),
    "track_script": _track("track_script"),
    "track_file": _track("track_file"),
    "track_process": _track("track_process"),
    "track_bfd": Unsupported(BFD),
}

SYNC_GROUP: dict[str, Entry] = {
    "group": _group_members,
    **_TRACKING,
    "sync_group_tracking_weight": _flag("sync_group_tracking_weight"),
    "global_tracking": _flag("global_tracking"),
    # Translated as soon as hacontrol's sync groups take the key (written in parallel).
    **{
        key: _vrrp_notify(key) if key in SyncGroupConfig.model_fields else Unsupported(GROUP_NOTIFY)
        for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")
    },
    "smtp_alert": Unsupported(EMAIL),
}


# ---- routes, rules, VMAC, the start hint -----------------------------------------------------

_TABLES = {"main": 254, "local": 255, "default": 253}
_ROUTE_TYPES = ("unicast", "blackhole", "unreachable", "prohibit")


class _Skip(Exception):
    """A route or rule line hacontrol cannot hold as keepalived would: reported, not written."""


def _prefix(text: str) -> str:
    if text == "default":
        return text
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        raise _Skip(f"{text!r} is not a prefix (keepalived refuses the line too)") from None


def _table(text: str) -> int:
    if text in _TABLES:
        return _TABLES[text]
    if not text.isdigit() or not 1 <= int(text) <= 2**32 - 1:
        raise _Skip(f"table {text!r}: a number 1..{2**32 - 1}, main, local or default")
    return int(text)


def _route(words: list[str]) -> dict[str, Any]:
    route: dict[str, Any] = {}
    if words and words[0] in _ROUTE_TYPES:
        route["type"] = words.pop(0)
    while words:
        word = words.pop(0)
        value = words.pop(0) if words and word not in ("no_track", "inet6") else None
        if word in ("no_track", "inet6"):
            route[word] = True
        elif value is None and word in ("src", "to", "via", "gw", "dev", "scope", "table"):
            raise _Skip(f"{word} without a value")
        elif word == "src" and value is not None:
            route["src"] = _address(value)
        elif word == "to" and value is not None:
            route["to"] = _prefix(value)
        elif word in ("via", "gw") and value is not None:
            route["via"] = _address(value)
        elif word == "dev" and value is not None:
            route["dev"] = value
        elif word == "scope" and value is not None:
            if value not in _SCOPES:
                raise _Skip(f"scope {value!r}: one of {', '.join(_SCOPES)}")
            route["scope"] = value
        elif word == "table" and value is not None:
            route["table"] = _table(value)
        elif word in ("metric", "preference", "priority") and value is not None:
            if not value.isdigit():
                raise _Skip(f"{word} {value!r} is not a number")
            route["metric"] = int(value)
        elif word == "or":
            raise _Skip("alternative gateways (or GATEWAY) are not in hacontrol")
        elif "to" not in route and word not in _ROUTE_OPTIONS:
            route["to"] = _prefix(word)
            if value is not None:
                words.insert(0, value)
        else:
            raise _Skip(f"the route option {word!r} is not in hacontrol")
    if "to" not in route:
        raise _Skip("no destination")
    return route


# ip-route(8)'s options keepalived takes that hacontrol's routes have not.
_ROUTE_OPTIONS = {
    "nexthop",
    "onlink",
    "mtu",
    "advmss",
    "rtt",
    "rttvar",
    "reordering",
    "window",
    "cwnd",
    "ssthresh",
    "realms",
    "rto_min",
    "initcwnd",
    "initrwnd",
    "features",
    "quickack",
    "congctl",
    "pref",
    "proto",
    "protocol",
    "tos",
    "dsfield",
    "expires",
    "fastopen_no_cookie",
    "hoplimit",
    "encap",
    "throw",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "nat",
    "weight",
}


def _rule(words: list[str]) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    while words:
        word = words.pop(0)
        if word in ("no_track", "inet6"):
            rule[word] = True
            continue
        if not words:
            raise _Skip(f"{word} without a value")
        value = words.pop(0)
        if word in ("from", "to"):
            rule[word] = _prefix(value)
        elif word in ("table", "lookup"):
            rule["table"] = _table(value)
        elif word in ("priority", "preference", "pref"):
            if not value.isdigit():
                raise _Skip(f"{word} {value!r} is not a number")
            rule["priority"] = int(value)
        elif word == "fwmark":
            rule["fwmark"] = int(value) if value.isdigit() else value
        else:
            raise _Skip(f"the rule option {word!r} is not in hacontrol")
    if "table" not in rule:
        raise _Skip("no table: hacontrol's rules look up a table")
    return rule


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise _Skip(f"{text!r} is not an IP address") from None


def _routes(key: str, parse: Callable[[list[str]], dict[str, Any]]) -> Handler:
    def handler(t: Translator, st: Statement, target: dict[str, Any]) -> None:
        out = target.setdefault(key, [])
        for line in t.value_lines(st):
            try:
                out.append(parse(list(line.words)))
            except _Skip as why:
                t.report.append(
                    Finding(line.file, line.line, line.keyword, f"not carried over: {why}")
                )
        if not out:
            del target[key]

    return handler


def _state(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    value = t.args(st, 1)[0].upper()
    if value not in ("MASTER", "BACKUP"):
        raise GrammarError(st.file, st.line, f"state {value!r}: MASTER or BACKUP")
    target["state"] = value


def _use_vmac(t: Translator, st: Statement, target: dict[str, Any]) -> None:
    words = t.args(st, 0, 1)
    target["use_vmac"] = words[0] if words else True


_VRRP_OPS: dict[str, Entry] = {
    **_TRACKING,
    "dont_track_primary": _flag("dont_track_primary"),
    "notify_master": _vrrp_notify("notify_master"),
    "notify_backup": _vrrp_notify("notify_backup"),
    "notify_fault": _vrrp_notify("notify_fault"),
    "notify_stop": _vrrp_notify("notify_stop"),
    "notify_deleted": _vrrp_notify("notify_deleted"),
    "notify": _vrrp_notify("notify"),
    "state": _state,
    "use_vmac": _use_vmac,
    "vmac_xmit_base": _flag("vmac_xmit_base"),
    "virtual_routes": _routes("virtual_routes", _route),
    "virtual_rules": _routes("virtual_rules", _rule),
}


_INSTANCE_UNSUPPORTED = {
    "vrf": "not in hacontrol",
    "use_ipvlan": "not in hacontrol",
    "native_ipv6": "hacontrol makes an instance IPv6 by its VIPs",
    "mcast_src_ip": "hacontrol sends multicast adverts from the interface's primary address",
    "mcast_dst_ip": "hacontrol sends adverts to the RFC's groups (224.0.0.18, ff02::12)",
    "track_src_ip": "not in hacontrol: a change of the interface's address is not tracked",
    "unicast_fault_no_peer": "not in hacontrol",
    "old_unicast_checksum": "not in hacontrol",
    "garp_lower_prio_delay": "not in hacontrol (garp_lower_prio_repeat is)",
    "garp_extra_if": "not in hacontrol",
    "down_timer_adverts": "not in hacontrol: the master-down timer is RFC 5798's",
    "lower_prio_no_advert": "not in hacontrol",
    "higher_prio_send_advert": "not in hacontrol",
    "promote_secondaries": "not in hacontrol",
    "skip_check_adv_addr": "not in hacontrol: adverts are always checked",
    "strict_mode": "not in hacontrol: no strict RFC mode",
    "debug": "use hacontrol run --log-level debug",
    "smtp_alert": EMAIL,
    "kernel_rx_buf_size": PROCESS,
    "linkbeat_use_polling": "hacontrol follows links over netlink",
    "notify_master_rx_lower_pri": "not in hacontrol: no script runs when a master hears "
    "a lower priority",
    "notify_priority_changes": PRIORITY_NOTIFY,
    "use_vmac_addr": "not in hacontrol: a VMAC is a macvlan of the interface (use_vmac)",
}

INSTANCE: dict[str, Entry] = {
    "interface": _simple("interface", "str"),
    "virtual_router_id": _simple("vrid", "int", 1, 255),
    "priority": _simple("priority", "int", 1, 255),
    "advert_int": _advert_int,
    "version": _simple("version", "int", 2, 3),
    "virtual_ipaddress": _vips("virtual_ipaddresses"),
    "virtual_ipaddress_excluded": _vips("virtual_ipaddresses_excluded"),
    "authentication": _authentication,
    "nopreempt": _nopreempt,
    "preempt": _preempt,
    "preempt_delay": _simple("preempt_delay", "seconds"),
    "accept": _flag("accept"),
    "no_accept": _flag("accept", value=False),
    "unicast_src_ip": _simple("unicast_src_ip", "address"),
    "unicast_peer": _unicast_peer,
    "unicast_ttl": _simple("unicast_ttl", "int", 1, 255),
    "check_unicast_src": _flag("check_unicast_src"),
    "garp_master_delay": _simple("garp_master_delay", "seconds"),
    "garp_master_repeat": _simple("garp_master_repeat", "int", 1, 255),
    "garp_master_refresh": _simple("garp_master_refresh", "seconds"),
    "garp_master_refresh_repeat": _simple("garp_master_refresh_repeat", "int", 1, 255),
    "garp_lower_prio_repeat": _simple("garp_lower_prio_repeat", "int", 0, 255),
    "lvs_sync_daemon_interface": _sync_daemon_interface,
    **_VRRP_OPS,
    **{k: Unsupported(v) for k, v in _INSTANCE_UNSUPPORTED.items()},
}


# ---- the top level -------------------------------------------------------------------------

TOP: dict[str, Entry] = {
    "global_defs": _global_defs,
    "vrrp_instance": _vrrp_instance,
    "virtual_server_group": _virtual_server_group,
    "virtual_server": _virtual_server,
    "track_file": _track_file_top,
    "vrrp_track_file": _track_file_top,
    "SSL": _ssl_top,
    "vrrp_sync_group": _vrrp_sync_group,
    "vrrp_script": _vrrp_script,
    "vrrp_track_process": _vrrp_track_process,
    "track_group": Unsupported("not in hacontrol"),
    "bfd_instance": Unsupported(BFD),
    "garp_group": Unsupported("not in hacontrol"),
    "static_ipaddress": Unsupported(STATIC),
    "static_routes": Unsupported(STATIC),
    "static_rules": Unsupported(STATIC),
    "linkbeat_interfaces": Unsupported("hacontrol follows links over netlink"),
    "net_namespace": Unsupported("run hacontrol itself in the namespace (ip netns exec)"),
    "net_namespace_ipvs": Unsupported("run hacontrol itself in the namespace (ip netns exec)"),
    "namespace_with_ipsets": Unsupported(NFT),
    "instance": Unsupported(PROCESS),
    "use_pid_dir": Unsupported(PROCESS),
    "child_wait_time": Unsupported(PROCESS),
}


def translate(tree: tuple[Statement, ...]) -> tuple[dict[str, Any], list[Finding]]:
    """The YAML document and the findings; GrammarError for what keepalived would refuse."""
    translator = Translator(tree)
    document = translator.run()
    return document, translator.report
