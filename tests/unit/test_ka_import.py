# ruff: noqa: E501  (tables of keepalived.conf text and expected findings read best unwrapped)
"""`hacontrol import keepalived` on Debian's samples, small inputs and bad input.

Every sample keepalived.conf that Debian ships is imported: the import succeeds, the
output passes `hacontrol check`, and the keywords reported as not carried over are
asserted exactly (line, keyword, reason). No statement is skipped silently: each one
is taken by a handler or reported (itself or its block).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hacontrol.config import check_source
from hacontrol.config_track import SyncGroupConfig
from hacontrol.importer.grammar import GrammarError, Statement, parse_text, read_config
from hacontrol.importer.translate import (
    EMAIL,
    GROUP_NOTIFY,
    STATIC,
    Translator,
    hex_bytes,
    shell_syntax,
    signals_zero,
    translate,
)

SAMPLES_DIR = "/usr/share/doc/keepalived/samples"
SAMPLES = sorted(glob.glob(f"{SAMPLES_DIR}/keepalived.conf.*"))
ROOT = Path(__file__).resolve().parents[2]
KILL_0 = "sends signal 0 to a process: hacontrol runs scripts as its own user"
REDIRECTION = "starts with shell syntax (a redirection), so it names no program"
BARE_MEMBER = "an instance named outside group { }: keepalived 2.x ignores it"

EXPECTED: dict[str, list[tuple[int, str, str]]] = {
    "keepalived.conf.HTTP_GET.port": [
        (4, "notification_email", EMAIL),
        (7, "notification_email_from", EMAIL),
        (8, "smtp_server", EMAIL),
        (9, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.IPv6": [],
    "keepalived.conf.PING_CHECK": [
        (5, "notification_email", EMAIL),
        (8, "notification_email_from", EMAIL),
        (9, "smtp_server", EMAIL),
        (10, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.SMTP_CHECK": [
        (16, "notification_email", EMAIL),
        (19, "notification_email_from", EMAIL),
        (20, "smtp_server", EMAIL),
        (21, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.SSL_GET": [
        (4, "notification_email", EMAIL),
        (7, "notification_email_from", EMAIL),
        (8, "smtp_server", EMAIL),
        (9, "smtp_connect_timeout", EMAIL),
        (
            19,
            "authentication",
            "IPsec AH authentication is not in hacontrol (RFC 5798 removed it) (2 lines in its block not carried over)",
        ),
    ],
    "keepalived.conf.UDP_CHECK": [
        (5, "notification_email", EMAIL),
        (8, "notification_email_from", EMAIL),
        (9, "smtp_server", EMAIL),
        (10, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.conditional_conf": [
        (3, "net_namespace", "run hacontrol itself in the namespace (ip netns exec)"),
    ],
    "keepalived.conf.fwmark": [],
    "keepalived.conf.inhibit": [
        (4, "notification_email", EMAIL),
        (7, "notification_email_from", EMAIL),
        (8, "smtp_server", EMAIL),
        (9, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.misc_check": [
        (5, "notification_email", EMAIL),
        (8, "notification_email_from", EMAIL),
        (9, "smtp_server", EMAIL),
        (10, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.misc_check_arg": [
        (4, "notification_email", EMAIL),
        (7, "notification_email_from", EMAIL),
        (8, "smtp_server", EMAIL),
        (9, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.quorum": [],
    "keepalived.conf.sample": [
        (4, "notification_email", EMAIL),
        (7, "notification_email_from", EMAIL),
        (8, "smtp_server", EMAIL),
        (9, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.status_code": [
        (5, "notification_email", EMAIL),
        (8, "notification_email_from", EMAIL),
        (9, "smtp_server", EMAIL),
        (10, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.track_interface": [
        (7, "static_routes", STATIC),
    ],
    "keepalived.conf.virtual_server_group": [
        (4, "notification_email", EMAIL),
        (7, "notification_email_from", EMAIL),
        (8, "smtp_server", EMAIL),
        (9, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.virtualhost": [
        (4, "notification_email", EMAIL),
        (7, "notification_email_from", EMAIL),
        (8, "smtp_server", EMAIL),
        (9, "smtp_connect_timeout", EMAIL),
    ],
    "keepalived.conf.vrrp": [
        (4, "notification_email", EMAIL),
        (7, "notification_email_from", EMAIL),
        (8, "smtp_server", EMAIL),
        (9, "smtp_connect_timeout", EMAIL),
        (17, "smtp_alert", EMAIL),
        (
            32,
            "192.168.200.18",
            "given twice in the instance: hacontrol holds and advertises it once",
        ),
        (38, "smtp_alert", EMAIL),
        (52, "smtp_alert", EMAIL),
        (69, "smtp_alert", EMAIL),
    ],
    "keepalived.conf.vrrp.localcheck": [
        (12, "script", KILL_0),
        (20, "script", KILL_0),
        (25, "script", REDIRECTION),
        (31, "script", REDIRECTION),
        (37, "script", REDIRECTION),
    ],
    "keepalived.conf.vrrp.lvs_syncd": [
        (4, "VI_2", BARE_MEMBER),
        (5, "VI_3", BARE_MEMBER),
        (3, "vrrp_sync_group", "VG1: 0 instance(s); keepalived removes a sync group of fewer"),
    ],
    "keepalived.conf.vrrp.routes": [
        (7, "static_routes", STATIC),
        (30, "192.168.113.0/24", "alternative gateways (or GATEWAY) are not in hacontrol"),
    ],
    "keepalived.conf.vrrp.rules": [
        (9, "static_rules", STATIC),
        (26, "to", "'192.168.200./24' is not a prefix (keepalived refuses the line too)"),
    ],
    "keepalived.conf.vrrp.scripts": [
        (11, "notify_backup", GROUP_NOTIFY),
        (12, "notify_master", GROUP_NOTIFY),
        (13, "notify_fault", GROUP_NOTIFY),
        (19, "smtp_alert", EMAIL),
    ],
    "keepalived.conf.vrrp.static_ipaddress": [
        (7, "static_ipaddress", STATIC),
    ],
    "keepalived.conf.vrrp.sync": [
        (13, "notify_backup", GROUP_NOTIFY),
        (14, "notify_master", GROUP_NOTIFY),
        (15, "notify_fault", GROUP_NOTIFY),
    ],
}


# A sync group's notify scripts are translated once hacontrol's sync groups have them.
GROUP_NOTIFY_KEYS = "notify_master" in SyncGroupConfig.model_fields
if GROUP_NOTIFY_KEYS:
    EXPECTED = {name: [e for e in want if e[2] != GROUP_NOTIFY] for name, want in EXPECTED.items()}


def imported(path: str, config_id: str = "high") -> tuple[Translator, str]:
    translator = Translator(read_config(path, config_id))
    document = translator.run()
    return translator, yaml.safe_dump(document, sort_keys=False)


def test_every_sample_has_its_expectation() -> None:
    assert sorted(os.path.basename(p) for p in SAMPLES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_sample_imports_passes_check_and_reports_exactly(path: str) -> None:
    translator, text = imported(path)
    check_source(text, "imported.yaml")  # raises ConfigError with every problem
    got = [(f.line, f.keyword, f.why) for f in translator.report]
    want = EXPECTED[os.path.basename(path)]
    assert [(line, kw) for line, kw, _ in got] == [(line, kw) for line, kw, _ in want]
    for (_, _, why), (_, _, expected) in zip(got, want, strict=True):
        assert expected in why, (why, expected)
    assert all(f.file == path for f in translator.report)


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_no_statement_is_dropped_silently(path: str) -> None:
    translator, _ = imported(path)
    reported = {(f.file, f.line) for f in translator.report}

    def uncovered(block: tuple[Statement, ...], inside_reported: bool) -> list[str]:
        out = []
        for st in block:
            covered = inside_reported or (st.file, st.line) in reported
            if id(st) not in translator.handled and not covered:
                out.append(f"{st.where}: {st.keyword}")
            out.extend(uncovered(st.block or (), covered))
        return out

    assert uncovered(translator.tree, False) == []


def test_the_drop_detector_detects_a_drop() -> None:
    # A handler that took a block without its lines would be caught by the test above.
    translator, _ = imported(f"{SAMPLES_DIR}/keepalived.conf.inhibit")
    assert translator.handled
    vs = next(st for st in translator.tree if st.keyword == "virtual_server")
    translator.handled.discard(id(vs.block[0]))  # type: ignore[index]
    reported = {(f.file, f.line) for f in translator.report}
    assert id(vs.block[0]) not in translator.handled  # type: ignore[index]
    assert (vs.block[0].file, vs.block[0].line) not in reported  # type: ignore[index]


def test_conditional_sample_per_director() -> None:
    path = f"{SAMPLES_DIR}/keepalived.conf.conditional_conf"
    for config_id, priority in (("high", 170), ("low", 85)):
        _, text = imported(path, config_id)
        (inst,) = yaml.safe_load(text)["vrrp_instances"]
        assert (inst["priority"], inst["version"], inst["advert_int"]) == (priority, 3, 12)


# ---- what the translation writes ------------------------------------------------------------


def one(text: str) -> dict[str, object]:
    document, report = translate(parse_text(text, "x"))
    assert report == []
    check_source(yaml.safe_dump(document, sort_keys=False), "t.yaml")
    return document


def test_keepalived_defaults_are_written_where_hacontrol_differs() -> None:
    doc = one(
        """
global_defs { lvs_sync_daemon eth1 VI_1 }
vrrp_instance VI_1 { interface eth0
  virtual_router_id 42
  virtual_ipaddress { 192.0.2.1 }
}
virtual_server 192.0.2.1 80 {
  real_server 198.51.100.1 {
    HTTP_GET { url { path / } }
    SSL_GET { }
    UDP_CHECK { require_reply }
    SMTP_CHECK { }
  }
}
"""
    )
    (inst,) = doc["vrrp_instances"]  # type: ignore[misc]
    assert inst == {
        "name": "VI_1",
        "interface": "eth0",
        "vrid": 42,
        "version": 2,
        "priority": 100,
        "advert_int": 1,
        "accept": True,
        "virtual_ipaddresses": ["192.0.2.1/32"],
    }
    (vs,) = doc["virtual_servers"]  # type: ignore[misc]
    assert (vs["forwarding"], vs["scheduler"], vs["protocol"]) == ("NAT", "wlc", "TCP")
    (rs,) = vs["real_servers"]
    assert rs["port"] == 80
    http, https, udp, smtp = rs["checks"]
    assert http["http_protocol"] == "1.0"
    assert (https["http_protocol"], https["enable_sni"]) == ("1.0", False)
    assert (udp["require_reply"], udp["max_reply_length"]) == (True, 255)
    assert smtp["use_ehlo"] is False
    # keepalived's sync id defaults to the instance's VRID
    assert doc["ipvs"] == {
        "sync_daemon": {"interface": "eth1", "vrrp_instance": "VI_1", "syncid": 42}
    }


def test_global_vrrp_defaults_reach_each_instance() -> None:
    doc = one(
        """
global_defs { vrrp_version 3
  vrrp_garp_master_delay 2
  vrrp_strict }
vrrp_instance A { interface eth0
  virtual_router_id 1
  advert_int 0.5
  virtual_ipaddress { 192.0.2.1/24 label eth0:1 }
}
""".replace("vrrp_strict }", "}")
    )
    (inst,) = doc["vrrp_instances"]  # type: ignore[misc]
    assert (inst["version"], inst["advert_int"], inst["garp_master_delay"]) == (3, 0.5, 2)
    assert inst["virtual_ipaddresses"] == [{"address": "192.0.2.1/24", "label": "eth0:1"}]


def test_vrrp_strict_makes_no_accept_the_default_and_is_reported() -> None:
    text = (
        "global_defs { vrrp_strict }\nvrrp_instance A {\n interface eth0\n"
        " virtual_router_id 1\n virtual_ipaddress { 192.0.2.1 }\n}\n"
    )
    document, report = translate(parse_text(text, "x"))
    assert document["vrrp_instances"][0]["accept"] is False
    assert [(f.line, f.keyword) for f in report] == [(1, "vrrp_strict")]


def test_group_all_ports_sorry_and_checker_keywords() -> None:
    doc = one(
        """
virtual_server_group G { 192.0.2.1-3 80
  192.0.2.8/30 80
  fwmark 5 }
track_file tf { file /run/weight
  weight 2 reverse
  init_file 5 overwrite }
virtual_server group G {
  lb_algo sh
  flag-1
  lb_kind DR
  persistence_timeout
  delay_loop 3
  sorry_server 198.51.100.9 80
  sorry_server_inhibit
  sorry_server_lvs_method NAT
  ha_suspend
  real_server 198.51.100.1 80 {
    weight 3
    lvs_method TUN type gue port 6080 csum
    MISC_CHECK { misc_path "/usr/bin/check 'a b' c"
      misc_timeout 4 }
    FILE_CHECK { track_file tf
      dynamic }
    UDP_CHECK { payload Ab12f 3
      require_reply 4a xx
      min_reply_length 2 }
    HTTP_GET { http_protocol 1.1
      url { path /a
        status_code 200-299 302 }
      url { path /b
        virtualhost b.test } }
  }
}
virtual_server 192.0.2.40 {
  persistence_timeout 600
  real_server 198.51.100.2 { }
}
"""
    )
    assert doc["virtual_server_groups"] == [
        {
            "name": "G",
            "members": [
                {"address": "192.0.2.1-3", "port": 80},
                {"address": "192.0.2.8/30", "port": 80},
                {"fwmark": 5},
            ],
        }
    ]
    group, all_ports = doc["virtual_servers"]  # type: ignore[misc]
    assert group["group"] == "G"
    assert (group["scheduler"], group["sched_flags"], group["forwarding"]) == (
        "sh",
        ["sh-fallback"],
        "DR",
    )
    assert group["persistence_timeout"] == 360  # keepalived: no value is 6 minutes
    assert group["sorry_server"] == {
        "address": "198.51.100.9",
        "port": 80,
        "inhibit": True,
        "forwarding": "NAT",
    }
    assert group["ha_suspend"] is True
    (rs,) = group["real_servers"]
    assert (rs["forwarding"], rs["tunnel_type"], rs["tunnel_port"], rs["tunnel_checksum"]) == (
        "TUN",
        "gue",
        6080,
        "csum",
    )
    script, file, udp, http = rs["checks"]
    assert script == {"type": "script", "argv": ["/usr/bin/check", "a b", "c"], "timeout": 4}
    assert file == {
        "type": "file",
        "weight": 2,
        "path": "/run/weight",
        "reverse": True,
        "init_overwrite": True,
        "init_file": 5,
        "dynamic": True,
    }
    assert (udp["payload_hex"], udp["reply_hex"], udp["min_reply_length"]) == (
        "ab 12 0f 03",
        "4a xx",
        2,
    )
    assert http["urls"] == [
        {"path": "/a", "status_codes": ["200-299", 302]},
        {"path": "/b", "virtualhost": "b.test"},
    ]
    assert http["http_protocol"] == "1.1"
    assert (all_ports["port"], all_ports["persistence_timeout"]) == (0, 600)
    assert all_ports["real_servers"] == [{"address": "198.51.100.2", "port": 0, "weight": 1}]


def test_keepalived_free_form_hex() -> None:
    assert hex_bytes("Ab12f 3 456 546443123") == "ab 12 0f 03 45 06 54 64 43 12 03"
    assert hex_bytes("4x X0", wildcard=True) == "4x x0"
    with pytest.raises(ValueError):
        hex_bytes("4x")


def test_ssl_block_gives_the_client_certificate() -> None:
    doc = one(
        "SSL { certificate /etc/k/c.pem\n key /etc/k/k.pem\n password pw }\n"
        "virtual_server 192.0.2.1 443 {\n real_server 198.51.100.1 443 {\n"
        "  SSL_GET { url { path / }\n enable_sni\n virtualhost www.test }\n }\n}\n"
    )
    (check,) = doc["virtual_servers"][0]["real_servers"][0]["checks"]  # type: ignore[index]
    assert check["client_cert"] == "/etc/k/c.pem"
    assert check["client_key"] == "/etc/k/k.pem"
    assert check["client_key_password"] == "pw"
    assert check["enable_sni"] is True


def test_vrrpv3_authentication_is_reported_not_written() -> None:
    text = (
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n version 3\n"
        " authentication { auth_type PASS\n auth_pass secret }\n virtual_ipaddress { 192.0.2.1 }\n}\n"
    )
    document, report = translate(parse_text(text, "x"))
    assert "authentication" not in document["vrrp_instances"][0]
    assert [(f.line, f.keyword) for f in report] == [(5, "authentication")]


def test_auth_pass_keeps_keepalived_eight_bytes() -> None:
    doc = one(
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n"
        " authentication { auth_type PASS\n auth_pass 0123456789 }\n"
        " virtual_ipaddress { 192.0.2.1 }\n}\n"
    )
    assert doc["vrrp_instances"][0]["authentication"] == {  # type: ignore[index]
        "auth_type": "PASS",
        "auth_pass": "01234567",
    }


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "vrrp_instance A {\n interface eth0\n frobnicate 1\n}\n",
            3,
            "unknown keyword 'frobnicate' in vrrp_instance",
        ),
        ("bogus_block {\n}\n", 1, "unknown keyword 'bogus_block' in top level"),
        ("vrrp_instance A {\n virtual_router_id 300\n}\n", 2, "300 is outside 1..255"),
        ("vrrp_instance A {\n priority high\n}\n", 2, "'high' is not a whole number"),
        (
            "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n}\n",
            1,
            "no virtual_ipaddress",
        ),
        ("virtual_server 192.0.2.1 {\n}\n", 1, "needs persistence_timeout"),
        ("virtual_server 192.0.2.300 80 {\n}\n", 1, "is not an IP address"),
        (
            "virtual_server 192.0.2.1 80 {\n real_server 198.51.100.1 80 {\n FILE_CHECK { track_file nope }\n }\n}\n",
            3,
            "no track_file 'nope'",
        ),
        ("virtual_server 192.0.2.1 80 {\n lb_kind FAST\n}\n", 2, "not NAT, DR or TUN"),
        (
            'virtual_server 192.0.2.1 80 {\n real_server 198.51.100.1 80 {\n MISC_CHECK { misc_path "/bin/x \'open" }\n }\n}\n',
            3,
            "No closing quotation",
        ),
    ],
)
def test_bad_keepalived_input(text: str, line: int, message: str) -> None:
    with pytest.raises(GrammarError) as info:
        translate(parse_text(text, "x", "bad.conf"))
    assert (info.value.file, info.value.line) == ("bad.conf", line)
    assert message in info.value.message


# ---- the command ---------------------------------------------------------------------------------


def hacontrol(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hacontrol", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_command_prints_yaml_with_header_and_report(tmp_path: Path) -> None:
    sample = f"{SAMPLES_DIR}/keepalived.conf.vrrp.lvs_syncd"
    proc = hacontrol("import", "keepalived", "-i", "x", sample)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"# hacontrol configuration imported from keepalived: {sample}"
    assert re.fullmatch(
        r"# by `hacontrol import keepalived` on \d{4}-\d\d-\d\d \(config id 'x'\)", lines[1]
    )
    assert proc.stderr.splitlines() == [
        f"{sample}:4: VI_2: {BARE_MEMBER} (write group {{ NAME ... }})",
        f"{sample}:5: VI_3: {BARE_MEMBER} (write group {{ NAME ... }})",
        f"{sample}:3: vrrp_sync_group: VG1: 0 instance(s); keepalived removes a sync group of "
        "fewer than two, and so does the import",
    ]
    assert lines[2] == "# 3 keyword(s) not carried over:"
    out = tmp_path / "imported.yaml"
    out.write_text(proc.stdout)
    check = hacontrol("check", "-c", str(out))
    assert check.returncode == 0, check.stderr
    doc = yaml.safe_load(proc.stdout)
    assert doc["ipvs"]["sync_daemon"] == {
        "interface": "eth1",
        "vrrp_instance": "VI_1",
        "syncid": 51,
    }


def test_strict_and_output_file(tmp_path: Path) -> None:
    sample = f"{SAMPLES_DIR}/keepalived.conf.vrrp.lvs_syncd"
    out = tmp_path / "out.yaml"
    strict = hacontrol("import", "keepalived", "--strict", "-o", str(out), sample)
    assert strict.returncode == 1
    assert "3 keyword(s) not carried over (--strict); nothing written" in strict.stderr
    assert not out.exists()
    warned = hacontrol(
        "import",
        "keepalived",
        "--strict",
        "-o",
        str(out),
        f"{SAMPLES_DIR}/keepalived.conf.vrrp.localcheck",
    )
    assert warned.returncode == 1
    assert "0 keyword(s) not carried over, 5 warning(s) (--strict)" in warned.stderr
    assert not out.exists()
    clean = f"{SAMPLES_DIR}/keepalived.conf.fwmark"
    ok = hacontrol("import", "keepalived", "--strict", "-o", str(out), clean)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "" and ok.stderr == ""
    assert "# every keyword was carried over" in out.read_text()
    assert hacontrol("check", "-c", str(out)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]  # no temporary left


@pytest.mark.parametrize(
    ("files", "line", "message"),
    [
        ({"main.conf": "vrrp_instance A {\n interface eth0\n"}, "main.conf:1", "never closed"),
        (
            {"main.conf": "include other.conf\n", "other.conf": "include main.conf\n"},
            "other.conf:1",
            "include loop",
        ),
        ({"main.conf": "global_defs {\n}\ninclude missing.conf\n"}, "main.conf:3", "No such file"),
        ({"main.conf": "include sub\n", "sub/x": ""}, "main.conf:1", "Is a directory"),
        (
            {"main.conf": "global_defs {\n router_id x\n nonsense 1\n}\n"},
            "main.conf:3",
            "unknown keyword 'nonsense'",
        ),
        (
            {"main.conf": "global_defs {\n router_id $NAME\n}\n"},
            "main.conf:2",
            "$NAME is not defined",
        ),
        ({"main.conf": "a { } }\n"}, "main.conf:1", "closes no block"),
    ],
)
def test_bad_input_clear_message_no_traceback_nothing_written(
    tmp_path: Path, files: dict[str, str], line: str, message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    out = tmp_path / "out.yaml"
    proc = hacontrol("import", "keepalived", "-o", str(out), str(tmp_path / "main.conf"))
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"{tmp_path}/{line}: "), proc.stderr
    assert message in first
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_scripts_named_in_the_config_are_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "script.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    conf = tmp_path / "k.conf"
    conf.write_text(
        f'vrrp_script s {{\n script "{script}"\n}}\n'
        "virtual_server 192.0.2.1 80 {\n"
        f' quorum_up "{script} up"\n'
        " real_server 198.51.100.1 80 {\n"
        f'  notify_up "{script}"\n'
        f'  MISC_CHECK {{ misc_path "{script} arg" }}\n'
        " }\n}\n"
    )
    proc = hacontrol("import", "keepalived", str(conf))
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    doc = yaml.safe_load(proc.stdout)
    (rs,) = doc["virtual_servers"][0]["real_servers"]
    assert rs["checks"][0]["argv"] == [str(script), "arg"]


def test_include_with_glob_and_definitions_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "keepalived.conf").write_text(
        "$VIP=192.0.2.10\n@a $PRIO=150\n@^a $PRIO=100\ninclude conf.d/*.conf\n"
    )
    (tmp_path / "conf.d" / "10-vrrp.conf").write_text(
        "vrrp_instance VI {\n interface eth0\n virtual_router_id 7\n priority $PRIO\n"
        " virtual_ipaddress { ${VIP}/24 }\n}\n"
    )
    (tmp_path / "conf.d" / "20-lvs.conf").write_text(
        "virtual_server $VIP 80 {\n lb_kind DR\n"
        "~SEQ(n, 1, 3) real_server 198.51.100.$n 80 { weight $n }\n}\n"
    )
    for config_id, prio in (("a", 150), ("b", 100)):
        proc = hacontrol("import", "keepalived", "-i", config_id, str(tmp_path / "keepalived.conf"))
        assert proc.returncode == 0, proc.stderr
        doc = yaml.safe_load(proc.stdout)
        assert doc["vrrp_instances"][0]["priority"] == prio
        assert doc["vrrp_instances"][0]["virtual_ipaddresses"] == ["192.0.2.10/24"]
        servers = doc["virtual_servers"][0]["real_servers"]
        assert [(s["address"], s["weight"]) for s in servers] == [
            ("198.51.100.1", 1),
            ("198.51.100.2", 2),
            ("198.51.100.3", 3),
        ]


# ---- VRRP operator features: tracking, sync groups, notify, routes ------------------------------


def test_tracking_with_keepalived_defaults_and_weights() -> None:
    doc = one(
        """
vrrp_script chk_a {
  script "/usr/local/bin/check 'two words' x"
}
vrrp_script chk_b { script /bin/true
  interval 2.5
  timeout 1
  weight -20 reverse
  rise 3
  fall 4
  user nobody nogroup
  init_fail }
track_file drain { file /run/drain
  weight -1
  init_file 0 overwrite }
track_file unused_by_vrrp { file /run/other }
vrrp_track_process haproxy { process haproxy -f /etc/haproxy.cfg
  param_match initial
  weight 20
  quorum 2
  quorum_max 4
  delay 1.5
  terminate_delay 3 }
vrrp_instance A { interface eth0
  virtual_router_id 1
  dont_track_primary
  track_interface { eth1 weight 10
    eth2 }
  track_script { chk_a weight 5 reverse
    chk_b noreverse }
  track_file { drain }
  track_process { haproxy weight -30 }
  virtual_ipaddress { 192.0.2.1 }
}
vrrp_instance B { interface eth0
  virtual_router_id 2
  virtual_ipaddress { 192.0.2.2 }
}
vrrp_sync_group G { group { A
    B }
  track_script { chk_b }
  sync_group_tracking_weight }
"""
    )
    assert doc["vrrp_scripts"] == [
        # keepalived's defaults written out: every second, weight 0 (FAULT while failing)
        {
            "name": "chk_a",
            "script": ["/usr/local/bin/check", "two words", "x"],
            "interval": 1,
            "weight": 0,
        },
        {
            "name": "chk_b",
            "script": ["/bin/true"],
            "interval": 2.5,
            "weight": -20,
            "timeout": 1,
            "reverse": True,
            "rise": 3,
            "fall": 4,
            "user": "nobody",
            "group": "nogroup",
            "init_fail": True,
        },
    ]
    # Only the track files VRRP tracks (FILE_CHECK reads the same blocks).
    assert doc["track_files"] == [
        {
            "name": "drain",
            "file": "/run/drain",
            "weight": -1,
            "init_file": 0,
            "init_file_overwrite": True,
        }
    ]
    assert doc["track_processes"] == [
        {
            "name": "haproxy",
            "process": ["haproxy", "-f", "/etc/haproxy.cfg"],
            "param_match": "initial",
            "weight": 20,
            "quorum": 2,
            "quorum_max": 4,
            "delay": 1.5,
            "terminate_delay": 3,
        }
    ]
    a = doc["vrrp_instances"][0]  # type: ignore[index]
    assert a["dont_track_primary"] is True
    assert a["track_interface"] == [{"name": "eth1", "weight": 10}, "eth2"]
    # noreverse overrides the script's own reverse
    assert a["track_script"] == [
        {"name": "chk_a", "weight": 5, "reverse": True},
        {"name": "chk_b", "reverse": False},
    ]
    assert a["track_file"] == ["drain"]
    assert a["track_process"] == [{"name": "haproxy", "weight": -30}]
    assert doc["vrrp_sync_groups"] == [
        {
            "name": "G",
            "group": ["A", "B"],
            "track_script": ["chk_b"],
            "sync_group_tracking_weight": True,
        }
    ]


def test_what_keepalived_ignores_in_tracking_is_reported_and_left_out() -> None:
    text = """
vrrp_instance A { interface eth0
  virtual_router_id 1
  track_script { nope
    nope2 weight 3 }
  track_file { missing }
  track_process { gone }
  track_interface { eth1
    eth1 weight 2 }
  virtual_ipaddress { 192.0.2.1 }
}
vrrp_instance B { interface eth0
  virtual_router_id 2
  virtual_ipaddress { 192.0.2.2 }
}
vrrp_sync_group G1 { group { A
    B
    C } }
vrrp_sync_group G2 { group { B
    A } }
"""
    document, report = translate(parse_text(text, "x"))
    assert [(f.line, f.keyword) for f in report] == [
        (18, "C"),
        (19, "B"),
        (20, "A"),
        (19, "vrrp_sync_group"),
        (4, "nope"),
        (5, "nope2"),
        (6, "missing"),
        (7, "gone"),
        (9, "eth1"),
    ]
    why = {f.keyword: f.why for f in report}
    assert why["C"] == "no vrrp_instance C: keepalived leaves it out of the group"
    assert why["B"] == "B is already in sync group G1: keepalived leaves it out of this one"
    assert why["nope"] == "track_script: no vrrp_script nope (keepalived ignores the reference)"
    assert why["eth1"] == "track_interface: tracked twice (keepalived keeps the first)"
    a = document["vrrp_instances"][0]
    assert a["track_interface"] == ["eth1"]
    assert not {"track_script", "track_file", "track_process"} & set(a)
    assert document["vrrp_sync_groups"] == [{"name": "G1", "group": ["A", "B"]}]
    check_source(yaml.safe_dump(document, sort_keys=False), "t.yaml")


def test_notify_scripts_are_argv_and_fifos_are_global() -> None:
    text = """
global_defs { notify_fifo /run/ka.fifo
  vrrp_notify_fifo /run/vrrp.fifo root root }
vrrp_instance A { interface eth0
  virtual_router_id 1
  notify_master "/usr/local/bin/vrrp.sh  MASTER  'VI 1'"
  notify_backup /usr/local/bin/backup.sh
  notify_fault "/usr/local/bin/fault.sh x" nobody
  notify_stop /usr/local/bin/stop.sh
  notify /usr/local/bin/every.sh
  notify_deleted
  virtual_ipaddress { 192.0.2.1 }
}
vrrp_instance B { interface eth0
  virtual_router_id 2
  notify_deleted "/usr/local/bin/deleted.sh B"
  virtual_ipaddress { 192.0.2.2 }
}
"""
    document, report = translate(parse_text(text, "x"))
    assert [(f.line, f.keyword, f.why.split(":")[0]) for f in report] == [
        (3, "user", "root root"),
        (8, "user", "nobody"),
    ]
    assert "running one as another user is not in hacontrol" in report[1].why
    assert document["global"] == {
        "notify_fifo": "/run/ka.fifo",
        "vrrp_notify_fifo": "/run/vrrp.fifo",
    }
    a, b = document["vrrp_instances"]
    assert a["notify_master"] == ["/usr/local/bin/vrrp.sh", "MASTER", "VI 1"]
    assert a["notify_backup"] == ["/usr/local/bin/backup.sh"]
    assert a["notify_fault"] == ["/usr/local/bin/fault.sh", "x"]
    assert a["notify_stop"] == ["/usr/local/bin/stop.sh"]
    assert a["notify"] == ["/usr/local/bin/every.sh"]
    assert a["notify_deleted"] is True
    assert b["notify_deleted"] == ["/usr/local/bin/deleted.sh", "B"]
    check_source(yaml.safe_dump(document, sort_keys=False), "t.yaml")


def test_routes_rules_vip_options_vmac_and_state() -> None:
    doc = one(
        """
vrrp_instance A { interface eth0
  virtual_router_id 1
  state BACKUP
  use_vmac vrrp.a
  virtual_ipaddress { 192.0.2.1/24 dev eth1 scope link brd + label eth1:a
    192.0.2.2/24 brd 192.0.2.255 no_track }
  virtual_routes { src 192.0.2.1 198.51.100.0/24 via 192.0.2.254 dev eth1
    blackhole 203.0.113.0/24
    0.0.0.0/0 gw 192.0.2.253 table 100 metric 5 no_track
    default via 192.0.2.252 table main }
  virtual_rules { from 192.0.2.0/24 table 2 priority 100
    to 198.51.100.0/24 lookup 3 pref 101 fwmark 0x10/0xff no_track }
}
vrrp_instance B { interface eth0
  virtual_router_id 2
  state master
  use_vmac
  vmac_xmit_base
  virtual_ipaddress { 192.0.2.9 }
}
"""
    )
    a, b = doc["vrrp_instances"]  # type: ignore[misc]
    assert (a["state"], a["use_vmac"], b["state"], b["use_vmac"], b["vmac_xmit_base"]) == (
        "BACKUP",
        "vrrp.a",
        "MASTER",
        True,
        True,
    )
    assert a["virtual_ipaddresses"] == [
        {
            "address": "192.0.2.1/24",
            "dev": "eth1",
            "scope": "link",
            "brd": "192.0.2.255",
            "label": "eth1:a",
        },
        {"address": "192.0.2.2/24", "brd": "192.0.2.255", "no_track": True},
    ]
    assert a["virtual_routes"] == [
        {"src": "192.0.2.1", "to": "198.51.100.0/24", "via": "192.0.2.254", "dev": "eth1"},
        {"type": "blackhole", "to": "203.0.113.0/24"},
        {"to": "0.0.0.0/0", "via": "192.0.2.253", "table": 100, "metric": 5, "no_track": True},
        {"to": "default", "via": "192.0.2.252", "table": 254},
    ]
    assert a["virtual_rules"] == [
        {"from": "192.0.2.0/24", "table": 2, "priority": 100},
        {
            "to": "198.51.100.0/24",
            "table": 3,
            "priority": 101,
            "fwmark": "0x10/0xff",
            "no_track": True,
        },
    ]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("198.51.100.0/24 via 192.0.2.1 or 192.0.2.2", "alternative gateways (or GATEWAY)"),
        ("198.51.100.0/24 via 192.0.2.1 mtu 1400", "the route option 'mtu' is not in hacontrol"),
        ("198.51.100.1/24 dev eth0", "'198.51.100.1/24' is not a prefix"),
        ("198.51.100.0/24 table nope", "table 'nope'"),
    ],
)
def test_a_route_hacontrol_cannot_hold_is_reported(line: str, why: str) -> None:
    text = (
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n"
        f" virtual_ipaddress {{ 192.0.2.1 }}\n virtual_routes {{\n {line}\n }}\n}}\n"
    )
    document, report = translate(parse_text(text, "x"))
    assert [(f.line, f.keyword) for f in report] == [(6, line.split()[0])]
    assert why in report[0].why
    assert "virtual_routes" not in document["vrrp_instances"][0]


@pytest.mark.parametrize(
    ("command", "found"),
    [
        ("/usr/bin/check --quick", []),
        ("/bin/check 'a|b' \"c;d\" e\\&f", []),
        ("</dev/tcp/127.0.0.1/80", ["a redirection"]),
        ("pidof haproxy > /dev/null", ["a redirection"]),
        ("a | b && c; d", ["a pipe", "& or &&", "';'"]),
        ("echo $HOME \"$X\" '$Y'", ["$ expansion"]),
        ("ls *.conf ~/x a~b", ["a glob", "~ expansion"]),
        ("FOO=1 /bin/x", ["a variable assignment"]),
        ("echo `date`", ["command substitution"]),
        ("! pidof x", ["a shell keyword"]),
        ("if pidof x; then exit 1; fi", ["a shell keyword", "';'"]),
        ("iffy --flag", []),
    ],
)
def test_shell_syntax(command: str, found: list[str]) -> None:
    assert shell_syntax(command) == found


def test_signal_zero_checks() -> None:
    assert signals_zero(["killall", "-0", "haproxy"])
    assert signals_zero(["/bin/kill", "-0", "123"])
    assert signals_zero(["kill", "-s", "0", "123"])
    assert not signals_zero(["kill", "-TERM", "123"])
    assert not signals_zero(["pidof", "-0"])


def test_scripts_needing_a_shell_or_signal_0_are_carried_over_with_a_warning(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(
        'vrrp_script a {\n script "killall -0 haproxy"\n weight 2\n}\n'
        'vrrp_script b {\n script "pidof haproxy > /dev/null"\n}\n'
        'vrrp_script c {\n script "</dev/tcp/127.0.0.1/80"\n}\n'
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n"
        " track_script { a\n b\n c }\n virtual_ipaddress { 192.0.2.1 }\n}\n"
    )
    proc = hacontrol("import", "keepalived", str(conf))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{conf}:2: script: warning: 'killall -0 haproxy' {KILL_0} (hacontrol under the "
        "packaged unit, not root), and signalling another user's process fails with EPERM, so "
        "the check fails though the process runs; use pidof NAME, or vrrp_track_process / "
        "track_process",
        f"{conf}:6: script: warning: 'pidof haproxy > /dev/null' has shell syntax (a "
        "redirection): keepalived execs pidof without a shell when it finds it, as hacontrol "
        "does, so the program gets those words as arguments; put the command in a script, or "
        "write [/bin/sh, -c, COMMAND]",
        f"{conf}:9: script: warning: '</dev/tcp/127.0.0.1/80' {REDIRECTION}: keepalived runs "
        "it with /bin/sh -c, and so it is written as [/bin/sh, -c, ...]; check it works with "
        "/bin/sh (dash on Debian: no /dev/tcp)",
    ]
    lines = proc.stdout.splitlines()
    assert lines[2:4] == [
        "# every keyword was carried over",
        "# 3 warning(s) about what was carried over:",
    ]
    doc = yaml.safe_load(proc.stdout)
    assert [s["script"] for s in doc["vrrp_scripts"]] == [
        ["killall", "-0", "haproxy"],
        ["pidof", "haproxy", ">", "/dev/null"],  # as keepalived execs it
        ["/bin/sh", "-c", "</dev/tcp/127.0.0.1/80"],  # as keepalived runs it (system())
    ]


def test_track_process_param_match_alone() -> None:
    text = (
        "vrrp_track_process p {\n process haproxy\n param_match\n}\n"
        "vrrp_track_process q {\n process haproxy -f x\n param_match\n}\n"
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n"
        " track_process { p\n q }\n virtual_ipaddress { 192.0.2.1 }\n}\n"
    )
    document, report = translate(parse_text(text, "x"))
    # keepalived: with no parameters, "the process has none", which hacontrol cannot say;
    # with parameters, an exact match (hacontrol's default).
    assert [(f.line, f.keyword) for f in report] == [(3, "param_match")]
    assert "matching a process that has no parameters" in report[0].why
    assert document["track_processes"] == [
        {"name": "p", "process": ["haproxy"]},
        {"name": "q", "process": ["haproxy", "-f", "x"]},
    ]


def test_sync_group_notify_scripts() -> None:
    text = (
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n"
        " virtual_ipaddress { 192.0.2.1 }\n}\n"
        "vrrp_instance B {\n interface eth0\n virtual_router_id 2\n"
        " virtual_ipaddress { 192.0.2.2 }\n}\n"
        'vrrp_sync_group G {\n group { A\n B }\n notify_master "/bin/vrrp.mast arg1 arg2"\n'
        " notify /bin/every\n}\n"
    )
    document, report = translate(parse_text(text, "x"))
    (group,) = document["vrrp_sync_groups"]
    if GROUP_NOTIFY_KEYS:
        assert report == []
        assert group["notify_master"] == ["/bin/vrrp.mast", "arg1", "arg2"]
        assert group["notify"] == ["/bin/every"]
        check_source(yaml.safe_dump(document, sort_keys=False), "t.yaml")
    else:
        # hacontrol's sync groups have no notify scripts yet: reported, not written.
        assert [(f.line, f.keyword, f.why) for f in report] == [
            (14, "notify_master", GROUP_NOTIFY),
            (15, "notify", GROUP_NOTIFY),
        ]
        assert group == {"name": "G", "group": ["A", "B"]}


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("! pidof haproxy", ["/bin/sh", "-c", "! pidof haproxy"]),
        ("X=1 /bin/check", ["/bin/sh", "-c", "X=1 /bin/check"]),
        ("(pidof a || pidof b)", ["/bin/sh", "-c", "(pidof a || pidof b)"]),
        ("/bin/check a|b", ["/bin/check", "a|b"]),  # keepalived execs /bin/check
        ("'/opt/my check' x\\ y", ["/opt/my check", "x y"]),
    ],
)
def test_script_lines_as_keepalived_runs_them(command: str, argv: list[str]) -> None:
    text = f'vrrp_script s {{\n script "{command}"\n}}\n'
    document, _ = translate(parse_text(text, "x"))
    assert document["vrrp_scripts"][0]["script"] == argv


def test_unquoted_script_words_are_the_argv() -> None:
    text = "vrrp_script s {\n script /usr/bin/pgrep -x haproxy\n}\n"
    document, report = translate(parse_text(text, "x"))
    assert document["vrrp_scripts"][0]["script"] == ["/usr/bin/pgrep", "-x", "haproxy"]
    assert report == []
