"""``hacontrol ipvs list`` with live counters, and its hooks to the sync-daemon helpers.

Inside the VM only (tests/kernel/conftest.py). Traffic: UDP datagrams to a VIP on a dummy link
inside a namespace this test created; the real servers are documentation addresses there.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from hacontrol.ipvs.listing import Layout, ListOptions, format_table
from hacontrol.ipvs.model import ServiceKey, Table, VirtualService
from hacontrol.ipvs.plan import plan
from tests.kernel.test_ipvs_apply import DR, REPO, open_ipvs, rs, send_udp, wait_conns

if TYPE_CHECKING:
    from tests.kernel.conftest import Ipvsadm

pytestmark = pytest.mark.kernel


@pytest.fixture
def lab(netns: Callable[[str], str], sh: Callable[..., str]) -> str:
    name = netns("ipv")
    sh(["ip", "link", "add", "ipvd0", "type", "dummy"], netns=name)
    sh(["ip", "addr", "add", "192.0.2.254/24", "dev", "ipvd0"], netns=name)
    sh(["ip", "addr", "add", "198.51.100.254/24", "dev", "ipvd0"], netns=name)
    sh(["ip", "link", "set", "ipvd0", "up"], netns=name)
    return name


def test_persistent_conn_and_stats_columns_match_ipvsadm(lab: str, ipvsadm: Ipvsadm) -> None:
    key = ServiceKey.of("udp", "192.0.2.10", 7000)
    table = Table.of(
        [
            VirtualService(
                key,
                scheduler="rr",
                persistence_timeout=600,
                real_servers=(rs("198.51.100.1", forwarding=DR), rs("198.51.100.2", forwarding=DR)),
            )
        ]
    )
    nl = open_ipvs(lab)
    try:
        assert nl.apply(plan(table, Table(), owned=())).ok
        send_udp(lab, "192.0.2.10", 7000, 4)
        wait_conns(nl, key, 4)
        snap = nl.dump()
        info = nl.info()
    finally:
        nl.close()
    # One client address: one persistence template, every datagram to the same server.
    persist = sum(c.persist_conns for c in snap.dest_counters.values())
    inact = sum(c.inact_conns + c.active_conns for c in snap.dest_counters.values())
    assert persist == 1 and inact == 4
    for layout, flags in [
        (Layout.PERSISTENT_CONN, ["--persistent-conn"]),
        (Layout.STATS, ["--stats", "--exact"]),
        (Layout.DEFAULT, []),
    ]:
        opts = ListOptions(layout=layout, exact="--exact" in flags)
        assert format_table(snap, info, opts) == ipvsadm("-Ln", *flags, netns=lab), layout


def hacontrol(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "hacontrol.cli", "ipvs", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def test_cli_timeout_daemon_and_zero(ipvsadm: Ipvsadm) -> None:
    ipvsadm("--set", "901", "121", "301")
    assert hacontrol("list", "--timeout") == ipvsadm("-L", "--timeout")
    ipvsadm("--start-daemon", "backup", "--mcast-interface", "lo", "--syncid", "3")
    try:
        assert hacontrol("list", "--daemon") == ipvsadm("-L", "--daemon")
    finally:
        ipvsadm("--stop-daemon", "backup")
    ipvsadm("-A", "-t", "192.0.2.1:80", "-s", "rr")
    hacontrol("zero", "-t", "192.0.2.1:80")
    assert hacontrol("list", "-t", "192.0.2.1:80") == ipvsadm("-Ln", "-t", "192.0.2.1:80")
