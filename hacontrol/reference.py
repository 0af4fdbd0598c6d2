"""The configuration reference, generated from the config models so it cannot drift.

    python -m hacontrol.reference --write      # regenerate doc/ (what the package installs)
    python -m hacontrol.reference --check      # exit 1 when doc/ differs from the models

Every key of the YAML file, with its type, default, allowed range or values, keepalived's
keyword for it, and what it does. The facts come from the pydantic models themselves
(types, defaults, constraints) and the text from the comments beside each field in the
source, the one place a field is explained; keepalived's spellings come from the hints the
loader gives (hacontrol/config_hints.py). Three outputs: doc/configuration.md (Markdown),
doc/hacontrol.yaml.5 and doc/hacontrol.8 (man pages, roff). A unit test fails when the
committed files differ from what this module generates.
"""

from __future__ import annotations

import argparse
import inspect
import io
import re
import sys
import tokenize
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from hacontrol.config import Config
from hacontrol.config_hints import KEEPALIVED_NOTES, KEEPALIVED_SPELLINGS

DOC_DIR = Path(__file__).resolve().parent.parent / "doc"

# hacontrol keys spelt exactly as keepalived's keyword (most are; these are the ones a
# reader would look up). Keys not here and not in the hints have no keepalived twin.
SAME_AS_KEEPALIVED = frozenset(
    {
        "router_id",
        "interface",
        "priority",
        "advert_int",
        "nopreempt",
        "preempt_delay",
        "unicast_src_ip",
        "unicast_ttl",
        "min_ttl",
        "max_ttl",
        "check_unicast_src",
        "garp_master_delay",
        "garp_master_repeat",
        "garp_master_refresh",
        "garp_master_refresh_repeat",
        "garp_lower_prio_repeat",
        "accept",
        "version",
        "vrrp_rt_priority",
        "vrrp_priority",
        "notify_master",
        "notify_backup",
        "notify_fault",
        "notify_stop",
        "notify",
        "notify_fifo",
        "persistence_timeout",
        "persistence_granularity",
        "persistence_engine",
        "quorum",
        "hysteresis",
        "quorum_up",
        "quorum_down",
        "inhibit_on_failure",
        "alpha",
        "omega",
        "weight",
        "uthreshold",
        "lthreshold",
        "notify_up",
        "notify_down",
        "delay_loop",
        "retry",
        "delay_before_retry",
        "connect_timeout",
        "connect_ip",
        "connect_port",
        "bind_port",
        "fwmark",
        "warmup",
        "digest",
        "virtualhost",
        "ops",
        "label",
    }
)


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    type: str
    default: str
    allowed: str
    keepalived: str
    text: str


@dataclass(frozen=True, slots=True)
class Section:
    path: str  # where it sits in the file: "vrrp_instances[]", "virtual_servers[].real_servers[]"
    title: str
    text: str
    keys: tuple[Key, ...]


# ---- reading the models ----------------------------------------------------------------------


def _field_comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment lines just above it and the comment after it, for the class
    that defines it (walking the MRO so inherited fields keep their explanation)."""
    out: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        out.update(_comments_in(source))
    return out


def _comments_in(source: str) -> dict[str, str]:
    found: dict[str, str] = {}
    pending: list[str] = []
    lines = source.splitlines()
    body_indent: int | None = None
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    trailing: dict[int, str] = {}
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            if lines[row - 1][:col].strip():
                trailing[row] = tok.string.lstrip("#").strip()
    for row, line in enumerate(lines, start=1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if body_indent is None and row > 1 and stripped and not stripped.startswith("#"):
            body_indent = indent
        if stripped.startswith("#"):
            if body_indent is None or indent == body_indent:
                pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"(\w+)\s*:", stripped)
        if match and body_indent is not None and indent == body_indent:
            text = " ".join(pending)
            if row in trailing:
                text = f"{text} {trailing[row]}".strip()
            if text:
                found[match.group(1)] = text
        if stripped:
            pending = []
    return found


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        return _type_name(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in get_args(tp) if a is not type(None)]
        unique = list(dict.fromkeys(names))
        return " or ".join(unique)
    if origin is Literal:
        return "one of the values"
    if origin in (tuple, list):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(tp, type):
        if issubclass(tp, BaseModel):
            return "mapping"
        name = {
            "str": "string",
            "int": "integer",
            "float": "number",
            "bool": "true/false",
            "IPv4Address": "IP address",
            "IPv6Address": "IP address",
            "IPv4Interface": "address/prefix",
            "IPv6Interface": "address/prefix",
            "Path": "path",
            "PosixPath": "path",
        }.get(tp.__name__)
        return name or tp.__name__
    return str(tp)


def _allowed(info: FieldInfo, tp: Any) -> str:
    parts: list[str] = []
    literals = _literals(tp)
    if literals:
        parts.append(", ".join(str(v) for v in literals))
    for meta in (*info.metadata, *_annotated_metadata(tp)):
        if isinstance(meta, annotated_types.Ge):
            parts.append(f">= {meta.ge}")
        elif isinstance(meta, annotated_types.Gt):
            parts.append(f"> {meta.gt}")
        elif isinstance(meta, annotated_types.Le):
            parts.append(f"<= {meta.le}")
        elif isinstance(meta, annotated_types.Lt):
            parts.append(f"< {meta.lt}")
        elif isinstance(meta, annotated_types.MinLen) and meta.min_length:
            parts.append("not empty" if meta.min_length == 1 else f"length >= {meta.min_length}")
        elif isinstance(meta, annotated_types.MaxLen):
            parts.append(f"length <= {meta.max_length}")
    return "; ".join(dict.fromkeys(parts))


def _literals(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Literal:
        return list(get_args(tp))
    if origin is Annotated:
        return _literals(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [v for a in get_args(tp) for v in _literals(a)]
    return []


def _annotated_metadata(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        return list(get_args(tp)[1:])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(tp) for m in _annotated_metadata(a)]
    return []


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        try:
            value = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "-"
        return "-" if isinstance(value, BaseModel) else _show(value)
    if info.default is PydanticUndefined:
        return "-"
    return _show(info.default)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[]" if not value else "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, BaseModel):
        return "-"
    return str(value)


def _keepalived(name: str, info: FieldInfo | None = None) -> str:
    # A validation alias is keepalived's spelling, accepted as well (virtual_router_id).
    other = info.validation_alias if info is not None else None
    if isinstance(other, str) and other != name:
        return other
    spelled = [k for k, v in KEEPALIVED_SPELLINGS.items() if v == name]
    if spelled:
        return ", ".join(spelled)
    if name in SAME_AS_KEEPALIVED or name in KEEPALIVED_NOTES:
        return name
    return ""


def _key_name(name: str, info: FieldInfo) -> str:
    return info.alias if isinstance(info.alias, str) else name


def _nested(tp: Any) -> list[type[BaseModel]]:
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    if origin is Annotated:
        return _nested(get_args(tp)[0])
    if origin in (Union, types.UnionType, tuple, list):
        return [m for a in get_args(tp) if a is not Ellipsis for m in _nested(a)]
    return []


def _is_list(tp: Any) -> bool:
    origin = get_origin(tp)
    if origin is Annotated:
        return _is_list(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return any(_is_list(a) for a in get_args(tp))
    return origin in (tuple, list)


def sections() -> list[Section]:
    """Every mapping of the file, depth first, each with its keys."""
    out: list[Section] = []
    seen: set[tuple[str, type[BaseModel]]] = set()

    def visit(model: type[BaseModel], path: str, title: str) -> None:
        if (path, model) in seen:
            return
        seen.add((path, model))
        comments = _field_comments(model)
        keys: list[Key] = []
        children: list[tuple[type[BaseModel], str, str]] = []
        for name, info in model.model_fields.items():
            key = _key_name(name, info)
            tp = info.annotation
            keys.append(
                Key(
                    name=key,
                    type=_type_name(tp),
                    default=_default(info),
                    allowed=_allowed(info, tp),
                    keepalived=_keepalived(key, info),
                    text=comments.get(name, ""),
                )
            )
            for child in _nested(tp):
                suffix = "[]" if _is_list(tp) else ""
                child_path = f"{path}.{key}{suffix}" if path else f"{key}{suffix}"
                tag = child.model_fields.get("type")
                child_title = child_path
                if tag is not None and isinstance(tag.default, str):
                    child_title = f"{child_path} (type: {tag.default})"
                children.append((child, child_path, child_title))
        doc = inspect.cleandoc(model.__doc__ or "") if model.__doc__ else ""
        if model.__doc__ and "Usage docs" in model.__doc__:
            doc = ""  # pydantic's BaseModel docstring, not ours
        out.append(Section(path or "(top level)", title or "(top level)", doc, tuple(keys)))
        for child, child_path, child_title in children:
            visit(child, child_path, child_title)

    visit(Config, "", "")
    return out


# ---- writing it --------------------------------------------------------------------------


def markdown() -> str:
    lines = [
        "# hacontrol.yaml: configuration reference",
        "",
        "Generated from the config models by `python -m hacontrol.reference --write`; do not",
        "edit by hand. Types, defaults and ranges are what `hacontrol check` enforces. Where",
        "keepalived has the setting, its keyword is given.",
        "",
    ]
    for section in sections():
        lines.append(f"## `{section.title}`")
        lines.append("")
        if section.text:
            lines.extend([section.text, ""])
        lines.append("| key | type | default | allowed | keepalived | meaning |")
        lines.append("|---|---|---|---|---|---|")
        for key in section.keys:
            cells = [
                f"`{key.name}`",
                key.type,
                _md(key.default),
                _md(key.allowed),
                f"`{key.keepalived}`" if key.keepalived else "",
                _md(key.text),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e")
    return "\n".join(("\\&" + ln) if ln.startswith((".", "'")) else ln for ln in text.split("\n"))


def manpage_yaml(version: str) -> str:
    out = [
        f'.TH HACONTROL.YAML 5 "" "hacontrol {version}" "File formats"',
        ".SH NAME",
        "hacontrol.yaml \\- configuration of the hacontrol daemon",
        ".SH DESCRIPTION",
        "The YAML file hacontrol reads (by default /etc/hacontrol/hacontrol.yaml).",
        "Every key, with its type, default, allowed values and keepalived's keyword.",
        "Check a file with",
        '.BR "hacontrol check -c FILE" .',
    ]
    for section in sections():
        out.append(f".SH {_roff(section.title.upper())}")
        if section.text:
            out.append(_roff(section.text))
        for key in section.keys:
            out.append(".TP")
            facts = [key.type, f"default {key.default}"]
            if key.allowed:
                facts.append(key.allowed)
            if key.keepalived:
                facts.append(f"keepalived: {key.keepalived}")
            out.append(f".B {_roff(key.name)}")
            out.append(_roff(f"({'; '.join(facts)})" + (f" {key.text}" if key.text else "")))
    out += [".SH SEE ALSO", ".BR hacontrol (8),", ".BR keepalived.conf (5)"]
    return "\n".join(out) + "\n"


def manpage_command(version: str) -> str:
    from hacontrol.cli import _build_parser

    parser = _build_parser()
    out = [
        f'.TH HACONTROL 8 "" "hacontrol {version}" "System administration"',
        ".SH NAME",
        "hacontrol \\- VRRP, health checks and IPVS for Linux LVS director pairs",
        ".SH SYNOPSIS",
        ".B hacontrol",
        "[\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        _roff(parser.description or ""),
        ".SH COMMANDS",
    ]
    for name, sub in _subparsers(parser):
        out.append(".TP")
        out.append(f".B {name}")
        out.append(_roff(sub.description or _help_of(parser, name)))
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or not action.help:
                continue
            flags = ", ".join(action.option_strings) or action.dest.upper()
            out.append(".RS")
            out.append(f".TP\n.B {_roff(flags)}\n{_roff(str(action.help))}")
            out.append(".RE")
    out += [
        ".SH FILES",
        ".TP\n/etc/hacontrol/hacontrol.yaml\nthe configuration, see\n.BR hacontrol.yaml (5)",
        ".TP\n/run/hacontrol/control\nthe control socket (status, reload, maintenance)",
        ".TP\n/run/hacontrol/hacontrol.pid\nthe pid file, locked while the daemon runs",
        ".TP\n/var/lib/hacontrol/state.json\nmaintenance overrides and owned IPVS services",
        ".SH SEE ALSO",
        ".BR hacontrol.yaml (5),",
        ".BR ipvsadm (8),",
        ".BR keepalived (8)",
    ]
    return "\n".join(out) + "\n"


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, Any]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _help_of(parser: argparse.ArgumentParser, name: str) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return str(choice.help or "")
    return ""


def generated(version: str = "") -> dict[str, str]:
    """File name (under doc/) -> content."""
    return {
        "configuration.md": markdown(),
        "hacontrol.yaml.5": manpage_yaml(version),
        "hacontrol.8": manpage_command(version),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hacontrol.reference")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate doc/")
    mode.add_argument("--check", action="store_true", help="exit 1 if doc/ is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generated().items():
        path = DOC_DIR / name
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(name)
            if args.write:
                DOC_DIR.mkdir(exist_ok=True)
                path.write_text(text)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run: python -m hacontrol.reference --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
