"""Config: VRRP notify scripts and notify FIFOs (keepalived's keywords, argv lists)."""

from __future__ import annotations

import pytest

from hacontrol.config import ConfigError, check_source, parse_config

BASE = """\
global:
  notify_fifo: /run/hacontrol/notify.fifo
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 51
    priority: 150
    virtual_ipaddresses: [192.0.2.10/24]
"""


def test_notify_keys_parse_into_argv_tuples_with_defaults() -> None:
    config = parse_config(
        BASE
        + """\
    notify_master: [/usr/local/bin/promote, --now]
    notify_backup: /usr/local/bin/demote
    notify_fault: [/usr/local/bin/page, "VI 1 fault"]
    notify_stop: [/usr/local/bin/stopped]
    notify: [/usr/local/bin/vrrp-event, --from, hacontrol]
    notify_timeout: 2.5
    notify_deleted: true
"""
    )
    vi = config.vrrp_instances[0]
    assert vi.notify_master == ("/usr/local/bin/promote", "--now")
    assert vi.notify_backup == ("/usr/local/bin/demote",)  # keepalived's bare path
    assert vi.notify_fault == ("/usr/local/bin/page", "VI 1 fault")
    assert vi.notify_stop == ("/usr/local/bin/stopped",)
    assert vi.notify == ("/usr/local/bin/vrrp-event", "--from", "hacontrol")
    assert vi.notify_timeout == 2.5 and vi.notify_deleted is True
    assert config.global_.notify_fifo == "/run/hacontrol/notify.fifo"
    assert config.global_.vrrp_notify_fifo is None
    assert config.global_.notify_fifo_buffer == 1024
    plain = parse_config(BASE).vrrp_instances[0]
    assert (plain.notify_master, plain.notify, plain.notify_deleted) == (None, None, False)
    assert plain.notify_timeout == 10.0


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            '    notify_master: "/usr/local/bin/promote --now"\n',
            "vrrp_instances[0].notify_master: a script is a list: the program and its "
            "arguments, run without a shell (write [/usr/local/bin/promote, --now])",
        ),
        ("    notify: []\n", "vrrp_instances[0].notify: Tuple should have at least 1 item"),
        ('    notify_fault: [/bin/x, ""]\n', "vrrp_instances[0].notify_fault[1]: String should"),
        ("    notify_timeout: 0\n", "vrrp_instances[0].notify_timeout: Input should be greater"),
        ("    notify_deleted: 3\n", "vrrp_instances[0].notify_deleted: true, false, or a script"),
    ],
)
def test_bad_notify_values_are_clear_errors_on_their_line(snippet: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + snippet, "n.yaml")
    assert f"n.yaml:9: {expected}" in str(info.value)


def test_a_fifo_is_an_absolute_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE.replace("/run/hacontrol/notify.fifo", "notify.fifo"), "n.yaml")
    assert "n.yaml:2: global.notify_fifo: a FIFO is an absolute path" in str(info.value)


def test_instance_names_are_one_word_for_fifo_lines_and_arguments() -> None:
    for bad in ('"VI 1"', "'VI\"1'"):
        with pytest.raises(ConfigError) as info:
            parse_config(BASE.replace("name: VI_1", f"name: {bad}"), "n.yaml")
        assert "n.yaml:4: vrrp_instances[0].name: an instance name is one word" in str(info.value)


def test_the_same_fifo_twice_is_a_warning_and_written_once() -> None:
    text = BASE.replace(
        "  notify_fifo: /run/hacontrol/notify.fifo\n",
        "  notify_fifo: /run/hacontrol/notify.fifo\n"
        "  vrrp_notify_fifo: /run/hacontrol/notify.fifo\n",
    )
    checked = check_source(text, "n.yaml")
    assert [str(w) for w in checked.warnings] == [
        "n.yaml:3: global.vrrp_notify_fifo: warning: the same FIFO as notify_fifo: ignored, "
        "as keepalived does (every line would be written twice)"
    ]


def test_notify_fifo_with_virtual_servers_warns_that_checker_lines_are_not_written() -> None:
    text = BASE + "virtual_servers:\n  - {address: 192.0.2.10, port: 80}\n"
    checked = check_source(text, "n.yaml")
    assert any(
        "global.notify_fifo: warning: hacontrol writes VRRP lines" in str(w)
        for w in checked.warnings
    )


GROUPED = (
    BASE
    + """\
vrrp_sync_groups:
  - name: G
    group: [VI_1]
"""
)


def test_sync_group_notify_keys_parse_like_the_instance_ones() -> None:
    config = parse_config(
        GROUPED
        + """\
    notify_master: [/usr/local/bin/promote, --group]
    notify_backup: /usr/local/bin/demote
    notify_fault: [/usr/local/bin/page, "G fault"]
    notify_stop: [/usr/local/bin/stopped]
    notify: [/usr/local/bin/vrrp-event]
    notify_timeout: 3
"""
    )
    g = config.vrrp_sync_groups[0]
    assert g.notify_master == ("/usr/local/bin/promote", "--group")
    assert g.notify_backup == ("/usr/local/bin/demote",)
    assert g.notify_fault == ("/usr/local/bin/page", "G fault")
    assert g.notify_stop == ("/usr/local/bin/stopped",)
    assert g.notify == ("/usr/local/bin/vrrp-event",)
    assert g.notify_timeout == 3.0
    bare = parse_config(GROUPED).vrrp_sync_groups[0]
    assert (bare.notify_master, bare.notify, bare.notify_timeout) == (None, None, 10.0)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "    notify_master: /usr/bin/logger -t ha\n",
            "n.yaml:12: vrrp_sync_groups[0].notify_master: a script is a list: the program "
            "and its arguments, run without a shell (write [/usr/bin/logger, -t, ha])",
        ),
        ("    notify: []\n", "n.yaml:12: vrrp_sync_groups[0].notify:"),
        ("    notify_timeout: 0\n", "n.yaml:12: vrrp_sync_groups[0].notify_timeout:"),
        # keepalived's vrrp_sync_group has no notify_deleted.
        (
            "    notify_deleted: true\n",
            "n.yaml:12: vrrp_sync_groups[0].notify_deleted: unknown key",
        ),
    ],
)
def test_bad_sync_group_notify_values_are_clear_errors_on_their_line(
    snippet: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(GROUPED + snippet, "n.yaml")
    assert expected in str(info.value)


def test_sync_group_names_are_one_word_for_fifo_lines_and_arguments() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(GROUPED.replace("name: G", 'name: "G 1"'), "n.yaml")
    assert "n.yaml:10: vrrp_sync_groups[0].name: a sync group name is one word" in str(info.value)
