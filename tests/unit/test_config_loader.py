"""The config loader against broken files: every one is a `FILE:LINE: message`, none a crash.

The corpus is what took `hacontrol check` down before (issue 12): an alias bomb, a
recursive alias, deep nesting, NUL and control characters, bad UTF-8, `.inf`; then syntax
errors at the line of the mistake, strict types, keepalived's spellings and "did you
mean", checks across items at their own lines, warnings, and the CLI's edges (--version,
a closed pipe). Unit tier: files in tmp_path, subprocesses, no sockets, no sleeps.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from hacontrol.config import (
    Config,
    ConfigError,
    VrrpInstanceConfig,
    check_file,
    check_source,
    load_config,
    parse_config,
)
from hacontrol.config_checks import MAX_ADVERT_VIPS
from hacontrol.yamlsrc import MAX_BYTES, MAX_DEPTH, MAX_NODES, libyaml_loader, load_yaml

ROOT = Path(__file__).resolve().parents[2]

VRRP = """\
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 51
    virtual_ipaddresses: [192.0.2.10/24]
"""

# 0.5 KB; each level is nine aliases of the one before: 10 values, then ~9x per level, so
# a6 would be 5.4 million and a9 about 3.9 billion.
ALIAS_BOMB = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)
RECURSIVE_ALIAS = "vrrp_instances: &a [*a]\n"
DEEP_FLOW = "a: " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_BLOCK = "".join("  " * i + "-\n" for i in range(5000))


def issues_of(content: str | bytes, tmp_path: Path, *, for_run: bool = False) -> list[str]:
    path = tmp_path / "bad.yaml"
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        check_file(path, for_run=for_run)
    return [str(i).replace(str(tmp_path) + "/", "") for i in info.value.issues]


def errors_of(text: str, *, pure: bool = False) -> list[str]:
    if pure:
        loaded = load_yaml(text, "bad.yaml", pure=True)
        return [str(i) for i in loaded.issues]
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bad.yaml")
    return [str(i) for i in info.value.issues]


# ---- the corpus from issue 12 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            ALIAS_BOMB,
            "bad.yaml:7: YAML: alias *a5 expands the document past 4,000,000 values "
            "(the limit): aliases that multiply (an alias bomb?)",
            id="alias-bomb",
        ),
        pytest.param(
            RECURSIVE_ALIAS,
            "bad.yaml:1: YAML: alias *a is inside the collection it names (anchored at "
            "line 1): a recursive structure",
            id="recursive-alias",
        ),
        pytest.param(
            DEEP_FLOW, "bad.yaml:1: YAML: nested deeper than 64 levels (the limit)", id="deep-flow"
        ),
        pytest.param(
            DEEP_BLOCK,
            "bad.yaml:65: YAML: nested deeper than 64 levels (the limit)",
            id="deep-block",
        ),
        pytest.param(
            VRRP.replace("VI_1", "VI\x001"),
            "bad.yaml:2: YAML: NUL (U+0000) at column 13: a YAML file holds no control "
            "characters but tab and line breaks",
            id="nul",
        ),
        pytest.param(
            VRRP.replace("eth0", "eth\x1b0"),
            "bad.yaml:3: YAML: ESC (U+001B) at column 19: a YAML file holds no control "
            "characters but tab and line breaks",
            id="escape",
        ),
        pytest.param(
            VRRP.replace("eth0", "eth\x070"),
            "bad.yaml:3: YAML: control character (U+0007) at column 19: a YAML file holds no "
            "control characters but tab and line breaks",
            id="bell",
        ),
        pytest.param(
            VRRP.encode().replace(b"VI_1", b"VI_\xff"),
            "bad.yaml:2: not UTF-8: byte 0xff at column 14 (invalid start byte)",
            id="bad-utf8",
        ),
        pytest.param(
            VRRP + "    advert_int: .inf\n",
            "bad.yaml:6: vrrp_instances[0].advert_int: Input should be a finite number, not inf",
            id="advert-int-inf",
        ),
        pytest.param(
            VRRP.replace("name: VI_1", 'name: "VI_1') + "    priority: 100\n    nopreempt: true\n",
            "bad.yaml:2: YAML: while scanning a quoted scalar, found unexpected end of stream "
            "(noticed at line 8); is a closing quote missing?",
            id="unclosed-quote",
        ),
    ],
)
def test_broken_file_is_one_error_at_its_line(
    content: str | bytes, expected: str, tmp_path: Path
) -> None:
    assert issues_of(content, tmp_path) == [expected]


def test_unclosed_quote_closed_by_a_later_quote_points_at_the_opening_one() -> None:
    # The issue's "9 lines late": the parser notices at the next `"` (the label, line 6).
    text = VRRP.replace("name: VI_1", 'name: "VI_1').replace(
        "[192.0.2.10/24]", '\n      - {address: 192.0.2.10, label: "eth0:1"}'
    )
    assert errors_of(text) == [
        "bad.yaml:2: YAML: while parsing a block mapping, did not find expected key (noticed at "
        "line 6); a quoted value starts here and runs on: is a closing quote missing?"
    ]


def test_oversized_file_is_refused_after_reading_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ConfigError) as info:
        check_file(path)
    assert [str(i) for i in info.value.issues] == [
        f"{path}: larger than 32 MiB: hacontrol reads config files up to 33,554,432 bytes"
    ]


def test_the_limits_admit_a_large_config() -> None:
    # 10,000 services x 5 real servers with checks is ~6 MB and ~1 million values (the
    # benchmark's file); the 250,000-real-server file is ~11 MB and ~1.3 million.
    assert MAX_BYTES >= 4 * 6_600_000
    assert MAX_NODES >= 3 * 1_300_000
    assert MAX_DEPTH >= 8 * 4


@pytest.mark.parametrize("pure", [False, True], ids=["libyaml", "python"])
@pytest.mark.parametrize(
    "name", ["ALIAS_BOMB", "RECURSIVE_ALIAS", "DEEP_FLOW", "DEEP_BLOCK", "WIDE_ALIASES"]
)
def test_hostile_files_fail_fast_in_bounded_memory(name: str, pure: bool, tmp_path: Path) -> None:
    """In a child under a 1 GiB address-space limit: before the fix the bomb grew past 6 GB."""
    path = tmp_path / "hostile.yaml"
    if name == "WIDE_ALIASES":
        # No nesting to speak of: one anchored list of 1,000 values used 5,000 times.
        content = "a: &a [" + ", ".join(["x"] * 1000) + "]\nb: [" + ", ".join(["*a"] * 5000) + "]\n"
    else:
        content = globals()[name]
    path.write_text(content)
    script = textwrap.dedent(
        f"""
        import json, resource, sys, time, tracemalloc
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from hacontrol import yamlsrc
        from hacontrol.config import ConfigError, check_file
        start = time.process_time()  # CPU seconds: the machine's other load does not count
        tracemalloc.start()
        yamlsrc.libyaml_loader = lambda: {not pure}
        try:
            check_file({str(path)!r})
            issues = []
        except ConfigError as exc:
            issues = [str(i) for i in exc.issues]
        peak = tracemalloc.get_traced_memory()[1]
        seconds = time.process_time() - start
        print(json.dumps({{"issues": issues, "peak": peak, "seconds": seconds}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert len(result["issues"]) == 1, result["issues"]
    assert "YAML:" in result["issues"][0]
    assert result["peak"] < 100 * 1024 * 1024, result
    # Without the limits these ran for minutes (the bomb grew past 6 GB in 57 s).
    assert result["seconds"] < 10, result


# ---- syntax errors at the line of the mistake ------------------------------------------------


@pytest.mark.parametrize("pure", [False, True], ids=["libyaml", "python"])
@pytest.mark.parametrize(
    ("text", "line", "noticed"),
    [
        pytest.param("a: 'x\nb: 1\nc: 2\n", 1, 4, id="unclosed-single-quote"),
        pytest.param("a:\n  v: [192.0.2.1/24\n  priority: 100\n  x: 1\n", 2, 3, id="unclosed-["),
        pytest.param(
            "a:\n  - {address: 192.0.2.1, port: 80\n  - {address: 192.0.2.2, port: 80}\n",
            2,
            3,
            id="unclosed-{",
        ),
        pytest.param(
            "checks: [\n  {type: tcp},\n  {type: http}\n  {type: dns},\n]\n",
            3,
            4,
            id="missing-comma-in-multiline-flow",
        ),
        pytest.param("a:\n  b: 1\n  c 2\n  d: 3\n", 3, 4, id="missing-colon"),
        pytest.param("a:\n  b: 1\n c: 2\n", 3, None, id="bad-indent"),
        pytest.param("a: b\n\tc: d\n", 2, None, id="tab"),
        pytest.param("a:\n  b: 1\n  - c\n", 3, None, id="dash-in-mapping"),
        pytest.param("a: b: c\n", 1, None, id="colon-in-value"),
        pytest.param("a: |\n  x\n y: 1\n", 3, None, id="block-scalar-dedent"),
    ],
)
def test_syntax_error_points_at_the_mistake(
    text: str, line: int, noticed: int | None, pure: bool
) -> None:
    errs = errors_of(text, pure=pure)
    assert len(errs) == 1, errs
    assert errs[0].startswith(f"bad.yaml:{line}: YAML: "), errs
    if noticed is None:
        assert "noticed" not in errs[0]
    else:
        assert f"(noticed at line {noticed})" in errs[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: 1\n---\nb: 2\n",
            "bad.yaml:2: YAML: expected a single document in the stream, but "
            "found another document",
        ),
        ("a: *x\n", "bad.yaml:1: YAML: found undefined alias *x"),
        (
            "a: &x 1\nb: &x 2\n",
            "bad.yaml:2: YAML: found duplicate anchor &x (first given at line 1)",
        ),
        ("a: !!int abc\n", "bad.yaml:1: YAML: 'abc' is not a valid !!int"),
        ("a: !secret x\n", "bad.yaml:1: YAML: tag '!secret' is not supported here"),
        ("? [a]\n: 1\n", "bad.yaml:1: YAML: a key must be a scalar, not a mapping or a sequence"),
        (
            "a: &l [1]\n*l : 2\n",
            "bad.yaml:2: YAML: a key must be a scalar, not a mapping or a sequence",
        ),
        (
            "a: {<<: [1]}\n",
            "bad.yaml:1: YAML: a merge key (<<) takes a mapping or a list of mappings",
        ),
    ],
)
def test_structure_errors(text: str, expected: str) -> None:
    assert errors_of(text) == [expected]


def test_libyaml_is_present_and_both_loaders_agree() -> None:
    # scripts/setup installs PyYAML from a wheel built with libyaml (about 5x faster).
    assert yaml.__with_libyaml__ and libyaml_loader()
    text = (ROOT / "conf" / "hacontrol.yaml").read_text() + textwrap.dedent(
        """\
        x-defaults: &defaults {weight: 2, checks: [{type: tcp}]}
        x-other: &other {weight: 3, inhibit_on_failure: true}
        x-merged: {<<: [*defaults, *other], address: 198.51.100.3, weight: 9}
        x-values: [yes, no, ~, 0x1f, 1_000, 1:20, 2026-12-02, '1', !!str 2, ! 3, .inf]
        """
    )
    c_loaded = load_yaml(text, "x.yaml").data
    py_loaded = load_yaml(text, "x.yaml", pure=True).data
    assert c_loaded == py_loaded
    assert c_loaded == _tuples(yaml.safe_load(text))
    merged = c_loaded["x-merged"]
    assert merged == {
        "weight": 9,
        "checks": ({"type": "tcp"},),
        "inhibit_on_failure": True,
        "address": "198.51.100.3",
    }


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def test_an_aliased_item_is_reported_where_it_is_used(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        x-rs: &rs {address: 198.51.100.1, weight: -1}
        virtual_servers:
          - address: 192.0.2.10
            port: 80
            real_servers: [*rs]
          - address: 192.0.2.10
            port: 81
            real_servers:
              - *rs
        """
    )
    errs = issues_of(text, tmp_path)
    assert errs == [
        "bad.yaml:1: x-rs: unknown key",
        "bad.yaml:5: virtual_servers[0].real_servers[0].weight: Input should be greater than "
        "or equal to 0",
        "bad.yaml:9: virtual_servers[1].real_servers[0].weight: Input should be greater than "
        "or equal to 0",
    ]


# ---- non-finite numbers and strict types -----------------------------------------------------


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    from hacontrol.config import _models as models

    return models(root)


def test_every_float_field_refuses_inf_and_nan() -> None:
    floats = [
        (model, name)
        for model in _models(Config)
        for name, info in model.model_fields.items()
        if "float" in str(info.annotation)
    ]
    assert len(floats) >= 15, floats  # advert_int, garp delays, drain_timeout, check times, ...
    for model, name in floats:
        for bad in (float("inf"), float("-inf"), float("nan")):
            with pytest.raises(ValidationError) as info:
                model.model_validate({name: bad})
            kinds = {e["type"] for e in info.value.errors() if e["loc"] == (name,)}
            assert kinds == {"finite_number"}, (model.__name__, name, bad, info.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '    priority: "150"',
            "vrrp_instances[0].priority: Input should be a valid integer, not the string "
            "'150': write 150 without quotes",
        ),
        (
            "    priority: 150.0",
            "vrrp_instances[0].priority: Input should be a valid integer, not the number 150.0",
        ),
        (
            '    preempt: "yes"',
            "vrrp_instances[0].preempt: Input should be a valid boolean, not the string 'yes': "
            "write yes without quotes",
        ),
        (
            "    accept: 1",
            "vrrp_instances[0].accept: Input should be a valid boolean, not the number 1: write "
            "true or false",
        ),
        (
            '    version: "3"',
            "vrrp_instances[0].version: Input should be 2 or 3, not the string '3'",
        ),
        (
            '    advert_int: "2"',
            "vrrp_instances[0].advert_int: Input should be a valid number, not the string '2': "
            "write 2 without quotes",
        ),
        (
            "    authentication: {auth_pass: 1111}",
            "vrrp_instances[0].authentication.auth_pass: Input should be a valid string, not "
            'the number 1111: quote it ("1111")',
        ),
        (
            "    unicast_peers: [3232235778]",
            "vrrp_instances[0].unicast_peers[0]: 3232235778 is not an IPv4 or IPv6 address",
        ),
    ],
)
def test_strict_types(line: str, expected: str) -> None:
    text = VRRP.replace("    virtual_ipaddresses", line + "\n    virtual_ipaddresses")
    errs = errors_of(text)
    assert errs == [f"bad.yaml:5: {expected}"]


def test_strict_types_in_a_check_and_names() -> None:
    text = textwrap.dedent(
        """\
        vrrp_instances:
          - name: 7
            interface: eth0
            vrid: 1
            virtual_ipaddresses: [192.0.2.10/24]
        virtual_servers:
          - address: 192.0.2.10
            port: 80
            inhibit_on_failure: yes
            real_servers:
              - address: 198.51.100.1
                weight: "2"
                checks: [{type: tcp, delay_loop: "6", connect_ip: 5, warmup: "no"}]
        """
    )
    assert errors_of(text) == [
        "bad.yaml:2: vrrp_instances[0].name: Input should be a valid string, not the number 7: "
        'quote it ("7")',
        "bad.yaml:12: virtual_servers[0].real_servers[0].weight: Input should be a valid "
        "integer, not the string '2': write 2 without quotes",
        "bad.yaml:13: virtual_servers[0].real_servers[0].checks[0].delay_loop: Input should be a "
        "valid number, not the string '6': write 6 without quotes",
        "bad.yaml:13: virtual_servers[0].real_servers[0].checks[0].warmup: Input should be a "
        "valid boolean, not the string 'no': write no without quotes",
        "bad.yaml:13: virtual_servers[0].real_servers[0].checks[0].connect_ip: 5 is not an IPv4 "
        "or IPv6 address",
    ]


def test_addresses_and_paths_are_still_written_as_strings() -> None:
    text = VRRP + textwrap.dedent(
        """\
        virtual_servers:
          - address: 192.0.2.10
            port: 443
            real_servers:
              - address: 198.51.100.1
                checks:
                  - {type: https, connect_ip: 192.0.2.10, verify: true, ca_file: /etc/ssl/ca.pem}
                  - {type: file, path: /run/weight}
        """
    )
    config = parse_config(text)
    https, file_check = config.virtual_servers[0].real_servers[0].checks
    assert str(https.connect_ip) == "192.0.2.10"  # type: ignore[union-attr]
    assert str(https.ca_file) == "/etc/ssl/ca.pem"  # type: ignore[union-attr]
    assert str(file_check.path) == "/run/weight"  # type: ignore[union-attr]


# ---- keepalived's spellings and "did you mean" -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            VRRP.replace("virtual_ipaddresses", "virtual_ipaddress"),
            "bad.yaml:5: vrrp_instances[0].virtual_ipaddress: unknown key; hacontrol spells it "
            "virtual_ipaddresses",
        ),
        (
            VRRP + "    unicast_peer: [192.0.2.2]\n",
            "bad.yaml:6: vrrp_instances[0].unicast_peer: unknown key; hacontrol spells it "
            "unicast_peers",
        ),
        (
            VRRP + "    auth_pass: secret\n",
            "bad.yaml:6: vrrp_instances[0].auth_pass: unknown key; hacontrol spells it "
            "authentication.auth_pass",
        ),
        (
            VRRP + "    priorty: 100\n",
            "bad.yaml:6: vrrp_instances[0].priorty: unknown key; did you mean 'priority'?",
        ),
        (
            VRRP + "    Priority: 100\n",
            "bad.yaml:6: vrrp_instances[0].Priority: unknown key; did you mean 'priority'?",
        ),
        (
            VRRP + "    colour: blue\n",
            "bad.yaml:6: vrrp_instances[0].colour: unknown key",
        ),
        (
            VRRP.replace("vrrp_instances", "vrrp_instance"),
            "bad.yaml:1: vrrp_instance: unknown key; hacontrol spells it vrrp_instances",
        ),
        (
            "global_defs: {router_id: a}\n",
            "bad.yaml:1: global_defs: unknown key; hacontrol spells it global",
        ),
        (
            "globl: {router_id: a}\n",
            "bad.yaml:1: globl: unknown key; did you mean 'global'?",
        ),
        (
            "virtual_server: []\n",
            "bad.yaml:1: virtual_server: unknown key; hacontrol spells it virtual_servers",
        ),
        (
            "ipvs: {sync_daemon: {interface: eth0, vrrp_instance: VI_1, id: 5}}\n",
            "bad.yaml:1: ipvs.sync_daemon.id: unknown key; hacontrol spells it syncid",
        ),
        (
            "lvs_sync_daemon: {interface: eth0}\n",
            "bad.yaml:1: lvs_sync_daemon: unknown key; hacontrol spells it ipvs.sync_daemon "
            "(a top-level section)",
        ),
    ],
)
def test_unknown_keys_get_a_pointer(text: str, expected: str) -> None:
    errs = [e for e in errors_of(text) if "required key" not in e]
    assert errs == [expected]


def test_a_required_key_in_keepalived_spelling_is_one_error() -> None:
    # Not also "virtual_ipaddresses: required key is missing" at the instance's line.
    assert errors_of(VRRP.replace("virtual_ipaddresses", "virtual_ipaddress")) == [
        "bad.yaml:5: vrrp_instances[0].virtual_ipaddress: unknown key; hacontrol spells it "
        "virtual_ipaddresses"
    ]


def test_keepalived_virtual_server_words() -> None:
    text = textwrap.dedent(
        """\
        virtual_servers:
          - address: 192.0.2.10
            port: 80
            lb_algo: rr
            lb_kind: NAT
            delay_loop: 6  # keepalived's place for it too: the default for its checks
            real_server:
              - address: 198.51.100.1
          - address: 192.0.2.10
            port: 81
            real_servers:
              - address: 198.51.100.1
                TCP_CHECK: {connect_timeout: 3}
                checks:
                  - {type: http, status_code: 200, delay_lop: 5}
                  - {type: tpc}
                  - {type: script, misc_path: /bin/true}
        """
    )
    p = "bad.yaml"
    assert errors_of(text) == [
        f"{p}:4: virtual_servers[0].lb_algo: unknown key; hacontrol spells it scheduler",
        f"{p}:5: virtual_servers[0].lb_kind: unknown key; hacontrol spells it forwarding",
        f"{p}:7: virtual_servers[0].real_server: unknown key; hacontrol spells it real_servers",
        f"{p}:13: virtual_servers[1].real_servers[0].TCP_CHECK: unknown key; hacontrol spells it "
        "checks: [{type: tcp}]",
        f"{p}:15: virtual_servers[1].real_servers[0].checks[0].status_code: unknown key; "
        "hacontrol spells it status_codes",
        f"{p}:15: virtual_servers[1].real_servers[0].checks[0].delay_lop: unknown key; did you "
        "mean 'delay_loop'?",
        f"{p}:16: virtual_servers[1].real_servers[0].checks[1].type: unknown check type 'tpc'; "
        "one of dns, file, http, https, icmp, script, smtp, tcp, udp (did you mean 'tcp'?)",
        f"{p}:17: virtual_servers[1].real_servers[0].checks[2].argv: required key is missing",
        f"{p}:17: virtual_servers[1].real_servers[0].checks[2].misc_path: unknown key; hacontrol "
        "spells it argv (a list: the program and its arguments, run without a shell)",
    ]


def test_virtual_router_id_is_still_accepted_and_reported_as_vrid() -> None:
    config = parse_config(VRRP.replace("vrid: 51", "virtual_router_id: 51"))
    assert config.vrrp_instances[0].vrid == 51
    assert errors_of(VRRP.replace("vrid: 51", "virtual_router_id: 0")) == [
        "bad.yaml:4: vrrp_instances[0].virtual_router_id: Input should be greater than or "
        "equal to 1"
    ]
    assert errors_of(VRRP.replace("    vrid: 51\n", "")) == [
        "bad.yaml:2: vrrp_instances[0].vrid: required key is missing"
    ]


# ---- checks across items, at their own lines -------------------------------------------------


def test_cross_item_errors_point_at_the_second_item() -> None:
    text = textwrap.dedent(
        """\
        vrrp_instances:
          - name: VI_1
            interface: eth0
            vrid: 51
            virtual_ipaddresses: [192.0.2.10/24]
          - name: VI_2
            interface: eth0
            virtual_router_id: 51
            virtual_ipaddresses:
              - 192.0.2.11/24
              - 192.0.2.10/32
        virtual_servers:
          - address: 192.0.2.10
            port: 80
            real_servers:
              - address: 198.51.100.1
              - address: 198.51.100.2
              - address: 198.51.100.1
                port: 80
            sorry_server: {address: "2001:db8::9"}
          - fwmark: 7
            real_servers:
              - address: 198.51.100.1
              - address: "2001:db8::1"
              - address: 198.51.100.1
          - address: 192.0.2.10
            port: 80
        ipvs:
          sync_daemon:
            interface: eth1
            vrrp_instance: VI_9
        """
    )
    assert errors_of(text) == [
        "bad.yaml:8: vrrp_instances[1].vrid: instances 'VI_1' and 'VI_2' both use vrid 51 for "
        "IPv4 on eth0",
        "bad.yaml:11: vrrp_instances[1].virtual_ipaddresses[1]: VIP 192.0.2.10 is in instances "
        "'VI_1' and 'VI_2': an address belongs to one VRRP instance",
        # The port is the virtual server's when the real server gives none: "port 80".
        "bad.yaml:18: virtual_servers[0].real_servers[2]: TCP 192.0.2.10:80: real server "
        "198.51.100.1 port 80 is given twice (also real_servers[0])",
        "bad.yaml:20: virtual_servers[0].sorry_server.address: TCP 192.0.2.10:80: sorry_server "
        "2001:db8::9 is not IPv4",
        "bad.yaml:24: virtual_servers[1].real_servers[1].address: FWM 7: real server "
        "2001:db8::1 is IPv6 but the service is IPv4 (only TUN forwarding can mix families)",
        "bad.yaml:25: virtual_servers[1].real_servers[2]: FWM 7: real server 198.51.100.1 is "
        "given twice (also real_servers[0])",
        "bad.yaml:26: virtual_servers[2]: virtual server 'TCP 192.0.2.10:80' is given twice "
        "(also virtual_servers[0])",
        "bad.yaml:31: ipvs.sync_daemon.vrrp_instance: 'VI_9' is not a vrrp instance",
    ]


def test_a_vip_twice_in_one_instance() -> None:
    text = VRRP.replace("[192.0.2.10/24]", "[192.0.2.10/24, 192.0.2.10/32]")
    assert errors_of(text) == [
        "bad.yaml:5: vrrp_instances[0].virtual_ipaddresses[1]: VIP 192.0.2.10 is given twice "
        "in instance 'VI_1'"
    ]


# ---- warnings --------------------------------------------------------------------------------


def test_empty_config_is_a_warning_for_check_and_an_error_for_run(tmp_path: Path) -> None:
    for content in ("", "# nothing yet\n", "global: {router_id: d1}\n"):
        path = tmp_path / "empty.yaml"
        path.write_text(content)
        checked = check_file(path)
        assert checked.config == parse_config(content)
        assert [str(w) for w in checked.warnings] == [
            f"{path}:1: warning: nothing to do: no vrrp_instances and no virtual_servers "
            "(hacontrol run refuses such a file)"
        ]
        assert issues_of(content, tmp_path, for_run=True) == [
            "bad.yaml:1: nothing to do: no vrrp_instances and no virtual_servers"
        ]


def test_more_vips_than_an_advert_carries_is_a_warning_at_the_first_left_out() -> None:
    vips = "".join(f"      - 198.51.100.{i % 250 + 1}/32\n" for i in range(250)) + "".join(
        f"      - 203.0.113.{i + 1}/32\n" for i in range(50)
    )
    text = VRRP.replace(" [192.0.2.10/24]", "\n" + vips.rstrip("\n"))
    checked = check_source(text, "many.yaml")
    assert [str(w) for w in checked.warnings] == [
        f"many.yaml:{6 + MAX_ADVERT_VIPS}: vrrp_instances[0].virtual_ipaddresses[255]: warning: "
        "300 IPv4 VIPs: only the first 255 are carried in adverts; the rest are handled as "
        "excluded VIPs (keepalived's virtual_ipaddress_excluded), as keepalived does"
    ]
    assert len(checked.config.vrrp_instances[0].virtual_ipaddresses) == 300
    exactly = VRRP.replace(" [192.0.2.10/24]", "\n" + "".join(vips.splitlines(True)[:255]))
    assert check_source(exactly, "ok.yaml").warnings == ()


def test_warnings_come_with_errors_too() -> None:
    vips = ", ".join(
        [f"198.51.100.{i + 1}/32" for i in range(250)] + [f"203.0.113.{i + 1}/32" for i in range(6)]
    )
    text = VRRP.replace("[192.0.2.10/24]", f"[{vips}]") + "  - {name: VI_1, interface: eth0, "
    text += "vrid: 52, virtual_ipaddresses: [192.0.2.99/24]}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bad.yaml")
    assert [i.severity for i in info.value.issues] == ["warning", "error"]
    assert [str(i) for i in info.value.errors] == [
        "bad.yaml:6: vrrp_instances[1].name: vrrp instance name 'VI_1' is used twice "
        "(also vrrp_instances[0])"
    ]


# ---- the daemon's reload ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [ALIAS_BOMB, RECURSIVE_ALIAS, DEEP_BLOCK, "", "vrrp_instances: [\n", "\x00"]
)
async def test_rejected_reload_leaves_the_running_config(content: str, tmp_path: Path) -> None:
    from hacontrol.daemon import Daemon

    path = tmp_path / "hacontrol.yaml"
    path.write_text(VRRP)
    daemon = Daemon(load_config(path), path, run_dir=tmp_path / "run", state_dir=tmp_path)
    running = daemon.config
    path.write_text(content)
    result = await daemon.reload()
    assert result.result == "rejected" and result.rejected
    assert daemon.config is running
    sample = daemon.metrics.registry.get_sample_value
    assert sample("hacontrol_config_reloads_total", {"result": "rejected"}) == 1.0


# ---- the command line ------------------------------------------------------------------------


def hacontrol(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hacontrol", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
        **kw,
    )


def test_version() -> None:
    from importlib import metadata

    proc = hacontrol("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"hacontrol {metadata.version('hacontrol')}\n"


def test_version_falls_back_to_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib
    from importlib import metadata

    from hacontrol import cli

    def absent(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", absent)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert cli.version() == pyproject["project"]["version"]


def test_check_prints_warnings_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    proc = hacontrol("check", "-c", str(path))
    assert proc.returncode == 0
    assert proc.stderr == (
        f"{path}:1: warning: nothing to do: no vrrp_instances and no virtual_servers "
        "(hacontrol run refuses such a file)\n"
    )
    assert proc.stdout.startswith(f"{path}: OK (0 vrrp instance(s)")
    assert proc.stdout.endswith(", 1 warning(s)\n")


def test_run_refuses_a_config_with_nothing_to_do(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("global: {metrics_listen: null}\n")
    proc = hacontrol("run", "-c", str(path))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"{path}:1: nothing to do: no vrrp_instances and no virtual_servers\n"
        f"{path}: invalid config, not starting\n"
    )


def test_check_of_the_corpus_never_prints_a_traceback(tmp_path: Path) -> None:
    for index, content in enumerate([ALIAS_BOMB, RECURSIVE_ALIAS, DEEP_FLOW, "a: \x00\n"]):
        path = tmp_path / f"bad{index}.yaml"
        path.write_text(content)
        proc = hacontrol("check", "-c", str(path))
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"{path}:1: YAML: ") or proc.stderr.startswith(
            f"{path}:7: YAML: "
        ), proc.stderr
        assert proc.stderr.endswith(f"{path}: invalid (1 error(s))\n")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["schema"], 1),
        (["check", "-c", "conf/hacontrol.yaml"], 1),
        # argparse writes these itself and drops the error; exit 0 as asked.
        (["--version"], 0),
        (["--help"], 0),
    ],
    ids=["schema", "check", "version", "help"],
)
def test_closed_pipe_is_no_traceback(args: list[str], code: int) -> None:
    # The reader is gone before the first write (`hacontrol schema | true`): EPIPE for sure.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "hacontrol", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            check=False,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == code  # 1: as Python's docs do on EPIPE


def test_schema_still_printed_whole() -> None:
    proc = hacontrol("schema")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == Config.model_json_schema(by_alias=True)


def test_vrrp_model_keeps_virtual_router_id_alias() -> None:
    # keepalived's spelling stays accepted (populate_by_name keeps `vrid` too).
    assert VrrpInstanceConfig.model_fields["vrid"].validation_alias == "virtual_router_id"


def test_run_logs_warnings_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hacontrol import cli, daemon

    started: list[Config] = []

    class NoDaemon:  # the daemon itself needs sockets: the netns tier runs it
        restart_requested = False

        def __init__(self, config: Config, path: object, **options: object) -> None:
            started.append(config)

        async def run(self) -> int:
            return 0

    monkeypatch.setattr(daemon, "Daemon", NoDaemon)
    for name in ("pyroute2", "asyncio", None):  # _cmd_run sets their levels: undo after
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "level", logger.level)
    vips = ", ".join(f"198.51.100.{i + 1}/32" for i in range(250))
    vips += ", " + ", ".join(f"203.0.113.{i + 1}/32" for i in range(6))
    path = tmp_path / "many.yaml"
    path.write_text(VRRP.replace("[192.0.2.10/24]", f"[{vips}]"))
    caplog.set_level("INFO")
    args = cli._build_parser().parse_args(
        ["run", "-c", str(path), "--run-dir", str(tmp_path / "run"), "--state-dir", str(tmp_path)]
    )
    assert cli._cmd_run(args) == 0
    assert len(started) == 1
    assert [r.getMessage() for r in caplog.records if r.name == "hacontrol.config"] == [
        f"config.warning {path}:5: vrrp_instances[0].virtual_ipaddresses[255]: warning: 256 "
        "IPv4 VIPs: only the first 255 are carried in adverts; the rest are handled as "
        "excluded VIPs (keepalived's virtual_ipaddress_excluded), as keepalived does"
    ]
