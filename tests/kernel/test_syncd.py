"""The sync daemon over generic netlink, against the real kernel, with ipvsadm as witness.

Every call goes through the one IPVS transport (``IpvsNetlink`` / ``AsyncIpvs``), opened inside
the test's namespace with ``netns=``.
"""

from __future__ import annotations

import asyncio
import errno
import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv6Address

import pytest

from hacontrol.ipvs.netlink import AsyncIpvs, IpvsError, IpvsNetlink
from hacontrol.ipvs.syncd import (
    StartDaemon,
    StopDaemon,
    SyncDaemonConfig,
    SyncDaemonController,
    SyncRole,
    format_daemons,
)

# The `ipvsadm` fixture (tests/kernel/conftest.py): ipvsadm(*args, netns=None) -> stdout.
Ipvsadm = Callable[..., str]

# ipvsadm 1.31's list_daemon(), parsed field by field (not with our formatter).
DAEMON_LINE = re.compile(
    r"^(?P<state>master|backup) sync daemon \(mcast=(?P<ifn>[^,]+), syncid=(?P<syncid>\d+)"
    r"(?:, maxlen=(?P<maxlen>\d+))?(?:, group=(?P<group>[^,)]+))?"
    r"(?:, port=(?P<port>\d+))?(?:, ttl=(?P<ttl>\d+))?\)$"
)


@asynccontextmanager
async def ipvs_in(netns: str) -> AsyncIterator[AsyncIpvs]:
    ipvs = await AsyncIpvs.open(netns=netns)
    try:
        yield ipvs
    finally:
        ipvs.close()


async def start_daemon(cfg: SyncDaemonConfig, netns: str) -> None:
    async with ipvs_in(netns) as ipvs:
        await ipvs.start_daemon(cfg)


async def stop_daemon(state: SyncRole, netns: str) -> None:
    async with ipvs_in(netns) as ipvs:
        await ipvs.stop_daemon(state)


async def get_daemons(netns: str) -> list[SyncDaemonConfig]:
    async with ipvs_in(netns) as ipvs:
        return await ipvs.get_daemons()


def ipvsadm_daemons(ipvsadm: Ipvsadm, netns: str) -> dict[str, dict[str, str | None]]:
    out = ipvsadm("-L", "--daemon", netns=netns)
    found: dict[str, dict[str, str | None]] = {}
    for line in out.splitlines():
        m = DAEMON_LINE.match(line)
        assert m is not None, f"unexpected ipvsadm line {line!r}"
        found[m["state"]] = m.groupdict()
    return found


@pytest.fixture
def director(netns: Callable[[str], str], sh: Callable[..., str]) -> tuple[str, str]:
    """A namespace with a multicast-capable veth pair end up: (netns, ifname)."""
    ns = netns("sd")
    ifname = f"vm{secrets.token_hex(3)}"
    peer = f"vm{secrets.token_hex(3)}"
    sh(["ip", "link", "add", ifname, "type", "veth", "peer", "name", peer], netns=ns)
    sh(["ip", "link", "set", ifname, "up"], netns=ns)
    sh(["ip", "link", "set", peer, "up"], netns=ns)
    sh(["ip", "addr", "add", "192.0.2.1/24", "dev", ifname], netns=ns)
    return ns, ifname


def assert_ipvsadm_shows(fields: dict[str, str | None], cfg: SyncDaemonConfig) -> None:
    assert fields["state"] == cfg.state
    assert fields["ifn"] == cfg.interface
    assert int(fields["syncid"] or -1) == cfg.syncid
    assert int(fields["maxlen"] or -1) == cfg.maxlen
    assert fields["group"] is not None and cfg.group is not None
    assert type(cfg.group)(fields["group"]) == cfg.group
    assert int(fields["port"] or -1) == cfg.port
    assert int(fields["ttl"] or -1) == cfg.ttl


async def test_master_with_every_attribute(director: tuple[str, str], ipvsadm: Ipvsadm) -> None:
    ns, ifname = director
    cfg = SyncDaemonConfig(
        state="master",
        interface=ifname,
        syncid=42,
        maxlen=1400,
        group=IPv4Address("239.1.2.3"),
        port=8850,
        ttl=3,
    )
    await start_daemon(cfg, netns=ns)

    shown = ipvsadm_daemons(ipvsadm, ns)
    assert set(shown) == {"master"}
    assert_ipvsadm_shows(shown["master"], cfg)
    read = await get_daemons(netns=ns)
    assert read == [cfg]
    assert format_daemons(read) == ipvsadm("-L", "--daemon", netns=ns)
    # Only this namespace runs it.
    assert ipvsadm("-L", "--daemon") == ""


async def test_backup_with_ipv6_group_and_every_attribute(
    director: tuple[str, str], ipvsadm: Ipvsadm, sh: Callable[..., str]
) -> None:
    ns, ifname = director
    sh(["ip", "addr", "add", "2001:db8::1/64", "dev", ifname, "nodad"], netns=ns)
    cfg = SyncDaemonConfig(
        state="backup",
        interface=ifname,
        syncid=255,
        maxlen=1200,
        group=IPv6Address("ff02::1:2"),
        port=9000,
        ttl=2,
    )
    await start_daemon(cfg, netns=ns)

    shown = ipvsadm_daemons(ipvsadm, ns)
    assert set(shown) == {"backup"}
    assert_ipvsadm_shows(shown["backup"], cfg)
    read = await get_daemons(netns=ns)
    assert read == [cfg]
    assert format_daemons(read) == ipvsadm("-L", "--daemon", netns=ns)


async def test_kernel_defaults_come_back_filled_in(
    director: tuple[str, str], ipvsadm: Ipvsadm
) -> None:
    ns, ifname = director
    wanted = SyncDaemonConfig(state="master", interface=ifname, syncid=7)
    await start_daemon(wanted, netns=ns)
    (running,) = await get_daemons(netns=ns)
    # ip_vs_sync.c defaults: group 224.0.0.81, port 8848, ttl 1, maxlen MTU 1500 - 28.
    assert running == SyncDaemonConfig(
        state="master",
        interface=ifname,
        syncid=7,
        maxlen=1472,
        group=IPv4Address("224.0.0.81"),
        port=8848,
        ttl=1,
    )
    assert wanted.satisfied_by(running)
    assert format_daemons([running]) == ipvsadm("-L", "--daemon", netns=ns)


async def test_daemons_started_by_ipvsadm_are_read_back(
    director: tuple[str, str], ipvsadm: Ipvsadm
) -> None:
    ns, ifname = director
    ipvsadm(
        "--start-daemon", "master", "--mcast-interface", ifname, "--syncid", "9",
        "--sync-maxlen", "1000", "--mcast-group", "239.9.9.9", "--mcast-port", "7000",
        "--mcast-ttl", "9", netns=ns,
    )  # fmt: skip
    ipvsadm("--start-daemon", "backup", "--mcast-interface", ifname, "--syncid", "9", netns=ns)
    read = await get_daemons(netns=ns)
    assert read == [
        SyncDaemonConfig("master", ifname, 9, 1000, IPv4Address("239.9.9.9"), 7000, 9),
        SyncDaemonConfig("backup", ifname, 9, 1472, IPv4Address("224.0.0.81"), 8848, 1),
    ]
    assert format_daemons(read) == ipvsadm("-L", "--daemon", netns=ns)


async def test_stop_one_of_two(director: tuple[str, str], ipvsadm: Ipvsadm) -> None:
    ns, ifname = director
    async with ipvs_in(ns) as ipvs:
        await ipvs.start_daemon(SyncDaemonConfig("master", ifname, 1))
        await ipvs.start_daemon(SyncDaemonConfig("backup", ifname, 1))
        assert [d.state for d in await ipvs.get_daemons()] == ["master", "backup"]
        await ipvs.stop_daemon("master")
        assert [d.state for d in await ipvs.get_daemons()] == ["backup"]
    assert set(ipvsadm_daemons(ipvsadm, ns)) == {"backup"}
    await stop_daemon("backup", netns=ns)
    assert ipvsadm("-L", "--daemon", netns=ns) == ""


def test_kernel_refusals_become_errors_naming_the_daemon(director: tuple[str, str]) -> None:
    ns, ifname = director
    with IpvsNetlink(netns=ns) as nl:
        nl.start_daemon(SyncDaemonConfig("master", ifname, 1))
        with pytest.raises(IpvsError) as again:
            nl.start_daemon(SyncDaemonConfig("master", ifname, 1))
        assert again.value.errno == errno.EEXIST
        assert str(again.value) == (
            f"start master sync daemon (mcast={ifname}, syncid=1): "
            "a daemon in this state is already running (EEXIST)"
        )
        with pytest.raises(IpvsError) as not_running:
            nl.stop_daemon("backup")
        assert not_running.value.errno == errno.ESRCH
        assert str(not_running.value) == (
            "stop backup sync daemon: no daemon in this state is running (ESRCH)"
        )
        with pytest.raises(IpvsError) as no_dev:
            nl.start_daemon(SyncDaemonConfig("backup", "vmnosuchdev", 1))
        assert no_dev.value.errno == errno.ENODEV
        assert "no such interface in this network namespace (ENODEV)" in str(no_dev.value)
        # The socket is still usable after the errors.
        assert [d.state for d in nl.get_daemons()] == ["master"]


async def test_the_interface_is_looked_up_in_the_sockets_namespace(
    director: tuple[str, str], ipvsadm: Ipvsadm
) -> None:
    # The veth exists only in the director's namespace: a socket of the init namespace
    # cannot start a daemon on it, the one opened with netns= can.
    ns, ifname = director
    ipvs = await AsyncIpvs.open()
    try:
        with pytest.raises(IpvsError) as err:
            await ipvs.start_daemon(SyncDaemonConfig("backup", ifname, 3))
        assert err.value.errno == errno.ENODEV
    finally:
        ipvs.close()
    await start_daemon(SyncDaemonConfig("backup", ifname, 3), netns=ns)
    assert set(ipvsadm_daemons(ipvsadm, ns)) == {"backup"}
    assert ipvsadm("-L", "--daemon") == ""


async def test_daemon_calls_queue_behind_each_other_on_one_socket(
    director: tuple[str, str], ipvsadm: Ipvsadm
) -> None:
    # AsyncIpvs runs one call at a time: concurrent callers (the reconciler's dump and a
    # role change) share the socket without mixing their answers.
    ns, ifname = director
    async with ipvs_in(ns) as ipvs:
        results = await asyncio.gather(
            ipvs.start_daemon(SyncDaemonConfig("master", ifname, 4)),
            ipvs.snapshot(),
            ipvs.start_daemon(SyncDaemonConfig("backup", ifname, 4)),
            ipvs.get_timeouts(),
            ipvs.get_daemons(),
        )
    assert [d.state for d in results[4]] == ["master", "backup"]
    assert len(results[1].table) == 0
    assert set(ipvsadm_daemons(ipvsadm, ns)) == {"master", "backup"}


async def test_controller_follows_roles_and_touches_only_changes(
    director: tuple[str, str], ipvsadm: Ipvsadm
) -> None:
    ns, ifname = director
    template = SyncDaemonConfig("backup", ifname, syncid=5, group=IPv4Address("239.0.0.5"))
    async with ipvs_in(ns) as ipvs:
        controller = SyncDaemonController(ipvs, template)

        assert await controller.apply("backup") == [StartDaemon(template)]
        assert set(ipvsadm_daemons(ipvsadm, ns)) == {"backup"}
        assert await controller.apply("backup") == []

        master = SyncDaemonConfig("master", ifname, syncid=5, group=IPv4Address("239.0.0.5"))
        assert await controller.apply("master") == [StopDaemon("backup"), StartDaemon(master)]
        shown = ipvsadm_daemons(ipvsadm, ns)
        assert set(shown) == {"master"}
        assert shown["master"]["syncid"] == "5" and shown["master"]["group"] == "239.0.0.5"

        # Drift: someone stops it by hand; the next apply repairs it.
        ipvsadm("--stop-daemon", "master", netns=ns)
        assert await controller.apply("master") == [StartDaemon(master)]

        # Adoption: a daemon with other settings is replaced, not kept.
        ipvsadm("--stop-daemon", "master", netns=ns)
        ipvsadm("--start-daemon", "master", "--mcast-interface", ifname, "--syncid", "6",
                netns=ns)  # fmt: skip
        assert await controller.apply("master") == [StopDaemon("master"), StartDaemon(master)]
        assert ipvsadm_daemons(ipvsadm, ns)["master"]["syncid"] == "5"

        assert await controller.apply(None) == [StopDaemon("master")]
    assert ipvsadm("-L", "--daemon", netns=ns) == ""
