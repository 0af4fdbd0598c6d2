"""What to tell an operator about a key the config does not know.

Most operators come from keepalived, whose keywords hacontrol follows except where a YAML
list reads better in the plural (`virtual_ipaddress` is `virtual_ipaddresses`) or where
keepalived's word is ipvsadm jargon (`lb_algo` is `scheduler`, `lb_kind` is `forwarding`).
A keepalived keyword gets a pointer to hacontrol's spelling; anything else gets the valid
keys at that place that look like it ("did you mean"). Pure: models in, text out.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

# keepalived's keyword -> hacontrol's spelling. A plain key is offered only where that key
# is valid; an entry with a dot or a space says where it goes and is always offered.
KEEPALIVED_SPELLINGS: dict[str, str] = {
    # top level (keepalived.conf blocks)
    "global_defs": "global",
    "vrrp_instance": "vrrp_instances",
    "virtual_server": "virtual_servers",
    "lvs_sync_daemon": "ipvs.sync_daemon (a top-level section)",
    "lvs_sync_daemon_interface": "ipvs.sync_daemon.interface (a top-level section)",
    "lvs_timeouts": "ipvs.timeouts (a top-level section)",
    "vrrp_version": "version (on each vrrp instance)",
    # vrrp_instance
    "virtual_ipaddress": "virtual_ipaddresses",
    "virtual_ipaddress_excluded": "virtual_ipaddresses_excluded",
    "unicast_peer": "unicast_peers",
    "auth_type": "authentication.auth_type",
    "auth_pass": "authentication.auth_pass",
    # virtual_server
    "lb_algo": "scheduler",
    "lvs_sched": "scheduler",
    "lb_kind": "forwarding",
    "lvs_method": "forwarding",
    "real_server": "real_servers",
    "sorry_server_inhibit": "sorry_server.inhibit",
    # checkers
    "TCP_CHECK": "checks: [{type: tcp}]",
    "HTTP_GET": "checks: [{type: http}]",
    "SSL_GET": "checks: [{type: https}]",
    "MISC_CHECK": "checks: [{type: script, argv: [...]}]",
    "UDP_CHECK": "checks: [{type: udp}]",
    "DNS_CHECK": "checks: [{type: dns}]",
    "SMTP_CHECK": "checks: [{type: smtp}]",
    "PING_CHECK": "checks: [{type: icmp}]",
    "FILE_CHECK": "checks: [{type: file, path: ...}]",
    "status_code": "status_codes",
    "bindto": "bind_ip",
    "nb_get_retry": "retry",
    "misc_path": "argv (a list: the program and its arguments, run without a shell)",
    "misc_timeout": "timeout",
    "misc_dynamic": "dynamic",
    # lvs_sync_daemon ... id N
    "id": "syncid",
}

# keepalived keywords that have no one-word counterpart: what to do instead.
KEEPALIVED_NOTES: dict[str, str] = {
    "url": "an http or https check takes urls: [{path: /, digest: ...}] (keepalived's url "
    "blocks, all must pass), or one url's path, status_codes, digest, regex on the check",
    "state": "hacontrol has no start-up state: an instance starts as backup (as master with "
    "priority 255) and the election decides, as keepalived's does after start-up",
}


def unknown_key_message(model: type[BaseModel] | None, key: object) -> str:
    """'unknown key', with keepalived's spelling or the nearest valid keys when known."""
    if not isinstance(key, str):
        return "unknown key"
    valid = valid_keys(model) if model is not None else []
    target = KEEPALIVED_SPELLINGS.get(key)
    if target is not None and (" " in target or "." in target or target in valid):
        return f"unknown key; hacontrol spells it {target}"
    note = KEEPALIVED_NOTES.get(key)
    if note is not None:
        return f"unknown key; {note}"
    by_case = [v for v in valid if v.lower() == key.lower()]
    close = by_case or difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {_either(close)}?"
    return "unknown key"


def valid_keys(model: type[BaseModel]) -> list[str]:
    """The keys a model takes, as written in a file (aliases, and names it populates by)."""
    keys: list[str] = []
    populate_by_name = bool(model.model_config.get("populate_by_name"))
    for name, info in model.model_fields.items():
        alias = info.alias if isinstance(info.alias, str) else None
        other = info.validation_alias if isinstance(info.validation_alias, str) else None
        if alias is not None:
            keys.append(alias)
        if other is not None and other != alias:
            keys.append(other)
        if (alias is None and other is None) or (populate_by_name and alias is None):
            keys.append(name)
    return keys


def model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model validating the mapping at `loc` (a pydantic error location), if one."""
    candidates: list[Any] = [root]
    for part in loc:
        following: list[Any] = []
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if isinstance(part, int):
            for c in candidates:
                if get_origin(c) is tuple:
                    following.extend(_members(get_args(c)[0]))
        else:
            for m in models:
                for name, info in m.model_fields.items():
                    if part in (name, info.alias, info.validation_alias):
                        following.extend(_members(info.annotation))
            if not following:
                # A discriminated union puts the tag in the path ('tcp'): its member.
                following = [m for m in models if _tag(m) == part]
        candidates = following
        if not candidates:
            return None
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _members(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        return _members(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(tp) for m in _members(arg)]
    return [tp]


def _tag(model: type[BaseModel]) -> object:
    info = model.model_fields.get("type")
    return None if info is None else info.default


def _either(words: Sequence[str]) -> str:
    quoted = [f"'{w}'" for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {_either(close)}?)" if close else ""
