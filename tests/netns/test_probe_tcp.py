"""TCP_CHECK probe against real listeners on loopback (and fwmark inside a namespace)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from healthcheck.config import TcpCheck
from healthcheck.probes import ProbeTarget, run_probe
from tests.netns.netns_util import Lab
from tests.netns.netns_util import require_root as require_root_and_tools
from tests.netns.probe_servers import (
    closed_tcp_port,
    fresh_loopback,
    full_backlog_listener,
    probe_in_netns,
)

TCP_TIME_WAIT = "06"


def sockets_from(local: IPv4Address) -> list[str]:
    """States (hex, as in /proc/net/tcp) of the TCP sockets whose local address is `local`."""
    want = local.packed[::-1].hex().upper()  # /proc/net/tcp prints the __be32 as a host int
    states = []
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if fields[1].split(":")[0] == want:
                states.append(fields[3])
    return states


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind((str(fresh_loopback()), 0))
    sock.listen(8)
    sock.settimeout(5)
    yield sock
    sock.close()


def target_of(sock: socket.socket) -> ProbeTarget:
    host, port = sock.getsockname()
    return ProbeTarget(IPv4Address(host), port)


async def test_accepting_server_is_up_and_sees_our_bind_ip(listener: socket.socket) -> None:
    source = fresh_loopback()
    result = await run_probe(TcpCheck(bind_ip=source), target_of(listener))
    assert (result.ok, result.reason, result.weight) == (True, "ok", None)
    conn, peer = await asyncio.to_thread(listener.accept)
    conn.close()
    assert peer[0] == str(source)


async def test_probe_closes_by_rst_so_no_time_wait_is_left(listener: socket.socket) -> None:
    source = fresh_loopback()
    for _ in range(3):
        assert (await run_probe(TcpCheck(bind_ip=source), target_of(listener))).ok
    assert TCP_TIME_WAIT not in sockets_from(source)
    # A control: a plain close() by the connecting side does leave TIME_WAIT behind, so the
    # assertion above can fail.
    control_source = fresh_loopback()
    with socket.socket() as server, socket.socket() as plain:
        server.bind((str(fresh_loopback()), 0))
        server.listen(1)
        server.settimeout(5)
        plain.bind((str(control_source), 0))
        plain.connect(server.getsockname())
        conn, _ = server.accept()
        plain.close()
        assert conn.recv(1) == b""  # our FIN arrived; closing now sends theirs
        conn.close()
    assert TCP_TIME_WAIT in sockets_from(control_source)


async def test_fixed_bind_port_can_be_reused_every_round(listener: socket.socket) -> None:
    source = fresh_loopback()
    with socket.socket() as s:
        s.bind((str(source), 0))
        port = s.getsockname()[1]
    check = TcpCheck(bind_ip=source, bind_port=port)
    results = [await run_probe(check, target_of(listener)) for _ in range(3)]
    assert [r.reason for r in results] == ["ok", "ok", "ok"]


async def test_refused() -> None:
    addr = fresh_loopback()
    result = await run_probe(TcpCheck(), ProbeTarget(addr, closed_tcp_port(addr)))
    assert (result.ok, result.reason) == (False, "refused")


async def test_unanswered_syn_is_connect_timeout() -> None:
    addr = fresh_loopback()
    with full_backlog_listener(addr) as port:
        result = await run_probe(TcpCheck(connect_timeout=0.2), ProbeTarget(addr, port))
    assert (result.ok, result.reason) == (False, "connect_timeout")
    assert 0.15 <= result.duration < 2.0


async def test_connect_port_overrides_and_port_zero_needs_it(listener: socket.socket) -> None:
    tgt = target_of(listener)
    assert (await run_probe(TcpCheck(connect_port=tgt.port), ProbeTarget(tgt.address, 0))).ok
    result = await run_probe(TcpCheck(), ProbeTarget(tgt.address, 0))
    assert (result.ok, result.reason) == (False, "no_port")


async def test_bind_to_a_foreign_address_fails_cleanly(listener: socket.socket) -> None:
    # 192.0.2.1 is on no interface here: bind() refuses it, nothing is sent.
    result = await run_probe(TcpCheck(bind_ip=IPv4Address("192.0.2.1")), target_of(listener))
    assert (result.ok, result.reason) == (False, "bind_failed_error_eaddrnotavail")


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root_and_tools("setpriv")
    with Lab("hc") as lab:
        yield lab


def test_fwmark_steers_the_probe_by_policy_routing(lab: Lab) -> None:
    ns = lab.netns("mark")
    # Move the local table behind a rule that prohibits marked packets: only a socket that
    # really carries SO_MARK 42 is refused the route to 127.0.0.1.
    ns.ip("rule", "add", "pref", "10", "fwmark", "42", "prohibit")
    ns.ip("rule", "add", "pref", "100", "lookup", "local")
    ns.ip("rule", "del", "pref", "0")
    marked = probe_in_netns(lab, ns, {"type": "tcp", "fwmark": 42}, "127.0.0.1", listen=True)
    other = probe_in_netns(lab, ns, {"type": "tcp", "fwmark": 7}, "127.0.0.1", listen=True)
    unmarked = probe_in_netns(lab, ns, {"type": "tcp"}, "127.0.0.1", listen=True)
    assert marked == {"ok": False, "reason": "error_eacces", "weight": None}
    assert other["ok"] is True and unmarked["ok"] is True


def test_fwmark_without_cap_net_admin_is_refused_not_ignored(lab: Lab) -> None:
    ns = lab.netns("nocap")
    result = probe_in_netns(
        lab,
        ns,
        {"type": "tcp", "fwmark": 42},
        "127.0.0.1",
        listen=True,
        # Since Linux 5.17 either capability allows SO_MARK.
        drop_caps=("net_admin", "net_raw"),
    )
    assert result == {"ok": False, "reason": "fwmark_not_permitted", "weight": None}
