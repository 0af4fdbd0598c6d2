"""The daemon's tracking helpers, pure parts: keepalived's rise/fall counter, reading a
track file as strtol() does, process matching; and the config of tracking and groups."""

from __future__ import annotations

import pytest

from hacontrol.config import ConfigError, parse_config
from hacontrol.config_track import TrackProcessConfig
from hacontrol.desired import tracked_items
from hacontrol.tracking import ScriptCounter, parse_track_file, process_matches
from vrrp.track import TrackedItem, TrackKind


@pytest.mark.parametrize(
    ("rise", "fall", "init_fail", "results", "states"),
    [
        # The first result decides at once (keepalived starts one success short of up).
        (3, 3, False, [True], [True]),
        (3, 3, False, [False], [False]),
        # Up: `fall` failures in a row to go down; a success in between resets.
        (1, 3, False, [True, False, False, True, False, False, False], [True] * 6 + [False]),
        # Down: `rise` successes to come up.
        (3, 1, False, [False, True, True, True], [False, False, False, True]),
        # init_fail: down from the start, `rise` successes to come up.
        (2, 1, True, [True, True], [False, True]),
        (2, 1, True, [False], [False]),
    ],
)
def test_script_counter(
    rise: int, fall: int, init_fail: bool, results: list[bool], states: list[bool]
) -> None:
    counter = ScriptCounter(rise, fall, init_fail)
    assert counter.up is (False if init_fail else None)
    seen = []
    for ok in results:
        counter.feed(ok)
        seen.append(counter.up)
    assert seen == states


@pytest.mark.parametrize(
    ("raw", "value", "problem"),
    [
        (b"5\n", 5, None),
        (b"  -12  \n", -12, None),
        (b"+7", 7, None),
        (b"", 0, "empty"),
        (b"\n\n", 0, "empty"),
        (b"abc", 0, "not_a_number"),
        (b"12abc", 12, "not_a_number"),  # strtol stops at the first non-digit
        (b"0x10", 16, "not_a_number"),  # base 0: hex, read but not plainly decimal
        (b"010", 8, "not_a_number"),  # ... and octal
        (b"1.5", 1, "not_a_number"),
        (b"\xff\xfe", 0, "not_a_number"),
        (b"99999999999999999999999", 99999999999999999999999, None),  # limited later
    ],
)
def test_track_file_is_read_as_strtol_reads_it(raw: bytes, value: int, problem: str | None) -> None:
    assert parse_track_file(raw) == (value, problem)


def _proc(process: tuple[str, ...], **kw: object) -> TrackProcessConfig:
    return TrackProcessConfig.model_validate({"name": "p", "process": list(process), **kw})


@pytest.mark.parametrize(
    ("spec", "comm", "argv", "matches"),
    [
        (_proc(("haproxy",)), "haproxy", None, True),
        (_proc(("ssh",)), "sshd", None, False),  # exact, not pgrep's regex
        (_proc(("nginx", "-g")), "nginx", ["nginx", "-g"], True),
        (_proc(("nginx", "-g")), "nginx", ["nginx", "-g", "x"], False),
        (_proc(("nginx", "-g"), param_match="partial"), "nginx", ["nginx", "-g", "x"], True),
        (_proc(("app", "--con"), param_match="initial"), "app", ["app", "--config=1"], True),
        (_proc(("app", "--con"), param_match="initial"), "app", ["app", "--x"], False),
        (_proc(("/usr/bin/app",), full_command=True), "app", ["/usr/bin/app"], True),
    ],
)
def test_process_matches(
    spec: TrackProcessConfig, comm: str, argv: list[str] | None, matches: bool
) -> None:
    assert process_matches(spec, comm, argv) is matches


BASE = """\
vrrp_scripts:
  - {name: chk, script: "/bin/true", weight: -20}
track_files:
  - {name: f, file: /run/x}
vrrp_instances:
  - name: A
    interface: eth0
    vrid: 1
    priority: PRIO
    virtual_ipaddresses: [192.0.2.10/24]
    track_script: [chk, ]
    track_file: [{name: f, weight: 3}]
    track_interface: [eth1, {name: eth2, weight: -5, reverse: true}]
  - name: B
    interface: eth1
    vrid: 2
    virtual_ipaddresses: [198.51.100.10/24]
"""


def test_weights_as_keepalived_applies_them() -> None:
    config = parse_config(BASE.replace("PRIO", "100"))
    items = tracked_items(config, config.vrrp_instances[0])
    assert items == (
        TrackedItem(TrackKind.INTERFACE, "eth1", 0),
        TrackedItem(TrackKind.INTERFACE, "eth2", -5, True),
        TrackedItem(TrackKind.SCRIPT, "chk", -20),
        TrackedItem(TrackKind.FILE, "f", 3),
    )
    # An address owner's items get weight 0 (keepalived.conf(5)).
    owner = parse_config(BASE.replace("PRIO", "255"))
    assert {i.weight for i in tracked_items(owner, owner.vrrp_instances[0])} == {0}


def test_sync_group_members_weights_are_zero_and_group_items_apply_to_all() -> None:
    text = BASE.replace("PRIO", "100") + (
        "vrrp_sync_groups:\n  - name: G\n    group: [A, B]\n    track_script: [chk]\n"
    )
    config = parse_config(text)
    a = tracked_items(config, config.vrrp_instances[0])
    b = tracked_items(config, config.vrrp_instances[1])
    assert [i.weight for i in a] == [0, 0, 0, 0, -20]
    assert b == (TrackedItem(TrackKind.SCRIPT, "chk", -20),)
    kept = parse_config(text + "    sync_group_tracking_weight: true\n")
    assert [i.weight for i in tracked_items(kept, kept.vrrp_instances[0])] == [0, -5, -20, 3, -20]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("vrrp_sync_groups:\n  - {name: G, group: [A, C]}\n", "'C' is not a vrrp instance"),
        (
            "vrrp_sync_groups:\n  - {name: G, group: [A, B]}\n  - {name: H, group: [B, A]}\n",
            "already in sync group 'G'",
        ),
        ("ipvs:\n  sync_daemon: {interface: eth0, vrrp_sync_group: X}\n", "not a vrrp sync group"),
        (
            "ipvs:\n  sync_daemon: {interface: eth0, vrrp_instance: A, vrrp_sync_group: G}\n",
            "exactly one of",
        ),
    ],
)
def test_bad_groups_are_errors(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE.replace("PRIO", "100") + extra)
    assert message in str(err.value)


def test_unknown_tracked_names_are_errors_at_their_line() -> None:
    text = BASE.replace("PRIO", "100").replace("track_script: [chk, ]", "track_script: [chx]")
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert "<config>:11: vrrp_instances[0].track_script[0]: 'chx' is not in vrrp_scripts" in str(
        err.value
    )


def test_script_is_split_into_argv_without_a_shell() -> None:
    config = parse_config(
        BASE.replace("PRIO", "100").replace('"/bin/true"', "\"/bin/check --name 'a b'\"")
    )
    assert config.vrrp_scripts[0].script == ("/bin/check", "--name", "a b")
