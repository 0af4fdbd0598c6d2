"""Our route-netlink codec (vrrp/rtnl.py, through `Rtnl`) against pyroute2's view of the
same namespace: the link and address dumps, one link, and the monitor's events must be the
values pyroute2's messages gave before (the reference parsers below are the former
pyroute2-based ones of vrrp/addresses.py), for links up and down, without carrier, a
private macvlan, IPv4 and IPv6 addresses with labels, secondary, tentative and nodad ones,
and their removal; dumps far larger than one read; a monitor that overflows says so.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterator
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import AsyncIPRoute

from tests.netns.netns_util import Lab, Netns, in_netns, require_root
from vrrp.addresses import (
    IFA_F_SECONDARY,
    IFA_F_TENTATIVE,
    IFF_RUNNING,
    IFF_UP,
    AddressAdded,
    AddressRemoved,
    Link,
    LinkAddress,
    LinkChanged,
    LinkEvent,
    LinkRemoved,
    Rtnl,
)
from vrrp.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
)

pytestmark = pytest.mark.netns

IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200  # only in IFA_FLAGS: ifa_flags has eight bits
TIMEOUT = 8.0  # in_netns() allows 10 s for a whole body


# ---- the reference: pyroute2's messages, read as vrrp/addresses.py read them before --------


def ref_link(msg: Any) -> Link | None:
    ifname = msg.get("ifname")
    if not ifname:
        return None
    flags = int(msg.get("flags") or 0)
    kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    mode = None
    if kind == "macvlan":
        mode = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_MACVLAN_MODE")
    lower = msg.get("link")
    address = msg.get("address")
    return Link(
        ifindex=int(msg.get("index")),
        ifname=str(ifname),
        mac=bytes.fromhex(address.replace(":", "")) if address else b"\0" * 6,
        up=bool(flags & IFF_UP) and bool(flags & IFF_RUNNING),
        mtu=int(msg.get("mtu") or 1500),
        kind=str(kind or ""),
        lower=int(lower) if lower else None,
        macvlan_mode=str(mode or ""),
    )


def ref_address(msg: Any) -> LinkAddress | None:
    text = msg.get("local") or msg.get("address")
    if not text:
        return None
    address = ip_interface(f"{text}/{int(msg.get('prefixlen'))}")
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg.get("flags") or 0
    return LinkAddress(ifindex=int(msg.get("index")), address=address, flags=int(flags))


def ref_event(msg: Any) -> LinkEvent | None:
    kind = msg.get(("header", "type"))
    if kind == RTM_NEWLINK:
        link = ref_link(msg)
        return LinkChanged(link) if link is not None else None
    if kind == RTM_DELLINK:
        return LinkRemoved(int(msg.get("index")), str(msg.get("ifname") or ""))
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        address = ref_address(msg)
        if address is None:
            return None
        return AddressAdded(address) if kind == RTM_NEWADDR else AddressRemoved(address)
    return None


async def ref_dumps() -> tuple[list[Link], list[LinkAddress]]:
    ipr = AsyncIPRoute()
    try:
        links = [ref_link(m) async for m in await ipr.link("dump")]
        addresses = [ref_address(m) async for m in await ipr.addr("dump")]
    finally:
        ipr.close()
    return [x for x in links if x], [x for x in addresses if x]


async def our_dumps() -> tuple[list[Link], list[LinkAddress]]:
    rtnl = Rtnl()
    try:
        return await rtnl.links(), await rtnl.addresses()
    finally:
        rtnl.close()


# ---- the namespace ------------------------------------------------------------------------


@pytest.fixture
def ns() -> Iterator[Netns]:
    """eth0 up with carrier and a private macvlan on it; eth1 up without carrier (its peer
        is down) and DAD on, so its IPv6 address stays tentative; a veth pair dm0/dm0p within it,
    both down (the host kernel has no dummy driver)."""
    require_root("ip", "sysctl")
    with Lab("rt") as lab:
        a, b = lab.netns("a"), lab.netns("b")
        lab.veth(a, "eth0", b, "eth0")
        lab.veth(a, "eth1", b, "eth1")
        b.ip("link", "set", "eth0", "up")
        a.ip("link", "set", "eth0", "mtu", "9000", "up")
        a.ip("link", "add", "dm0", "type", "veth", "peer", "name", "dm0p")  # no dummy here
        a.ip("link", "add", "vm0", "link", "eth0", "type", "macvlan", "mode", "private")
        a.ip("link", "set", "vm0", "address", "00:00:5e:00:01:2a", "up")
        a.ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
        a.ip("addr", "add", "192.0.2.2/24", "dev", "eth0", "label", "eth0:vip")  # secondary
        a.ip("addr", "add", "198.51.100.1/32", "peer", "198.51.100.9", "dev", "eth0")
        a.ip("addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad")
        a.ip("addr", "add", "2001:db8:3::1/64", "dev", "eth0", "nodad", "noprefixroute")
        a.run("sysctl", "-qw", "net.ipv6.conf.eth1.accept_dad=1")
        a.ip("link", "set", "eth1", "up")
        a.ip("addr", "add", "2001:db8:1::1/64", "dev", "eth1")
        yield a


def test_dumps_match_pyroute2s(ns: Netns) -> None:
    async def body() -> tuple[Any, ...]:
        # Both views of a namespace nothing changes in any more (no DAD runs: eth1 has no
        # carrier, the others no DAD): they must be equal, not merely alike.
        ours, theirs = await our_dumps(), await ref_dumps()
        rtnl = Rtnl()
        try:
            one = {link.ifindex: await rtnl.link(link.ifindex) for link in ours[0]}
            gone = await rtnl.link(999_999)
        finally:
            rtnl.close()
        return ours, theirs, one, gone

    (links, addresses), (ref_links, ref_addresses), one, gone = in_netns(
        ns.name, lambda: asyncio.run(body())
    )
    assert links == ref_links
    assert addresses == ref_addresses
    assert one == {link.ifindex: link for link in links}
    assert gone is None
    by_name = {link.ifname: link for link in links}
    assert by_name["eth0"].up and by_name["eth0"].mtu == 9000
    assert not by_name["eth1"].up  # no carrier
    assert not by_name["dm0"].up and by_name["dm0"].kind == "veth"
    vm0 = by_name["vm0"]
    assert (vm0.kind, vm0.macvlan_mode, vm0.lower) == (
        "macvlan",
        "private",
        by_name["eth0"].ifindex,
    )
    assert vm0.mac == bytes.fromhex("00005e00012a")
    found = {str(a.address): a for a in addresses}
    assert found["192.0.2.2/24"].secondary and not found["192.0.2.1/24"].secondary
    assert "198.51.100.1/32" in found  # the local address, not its peer
    assert found["2001:db8::1/64"].flags & IFA_F_NODAD and found["2001:db8::1/64"].usable
    assert found["2001:db8:1::1/64"].flags & IFA_F_TENTATIVE
    assert found["2001:db8:3::1/64"].flags & IFA_F_NOPREFIXROUTE
    assert not found["2001:db8:1::1/64"].usable


def test_monitor_events_match_pyroute2s(ns: Netns) -> None:
    changes: list[tuple[str, ...]] = [
        ("link", "set", "eth0", "down"),
        ("link", "set", "eth0", "up"),
        ("link", "set", "dm0", "up"),  # no carrier: its peer is down
        ("link", "set", "dm0p", "up"),  # carrier: dm0 is up now
        ("link", "add", "vm1", "link", "eth0", "type", "macvlan", "mode", "private"),
        ("link", "set", "vm1", "up"),
        ("addr", "add", "203.0.113.1/24", "dev", "dm0", "label", "dm0:a"),
        ("addr", "add", "203.0.113.2/24", "dev", "dm0", "label", "dm0:b", "noprefixroute"),
        ("addr", "add", "2001:db8:2::1/64", "dev", "dm0", "nodad"),
        ("addr", "del", "203.0.113.2/24", "dev", "dm0"),
        ("addr", "del", "2001:db8:2::1/64", "dev", "dm0"),
        ("addr", "add", "2001:db8:1::2/64", "dev", "eth1"),  # tentative: no carrier
        ("link", "del", "vm1"),
        ("link", "set", "dm0p", "down"),
        ("link", "add", "end0", "type", "bridge"),
        ("link", "del", "end0"),  # the end of the run
    ]

    def last(event: LinkEvent) -> bool:
        return isinstance(event, LinkRemoved) and event.ifname == "end0"

    async def ours(rtnl: Rtnl) -> list[LinkEvent]:
        seen: list[LinkEvent] = []
        async for event in rtnl.events():
            seen.append(event)
            if last(event):
                break
        return seen

    async def theirs(monitor: Any) -> list[LinkEvent]:
        seen: list[LinkEvent] = []
        for _read in range(10_000):  # bounded: each read brings at least one message
            async for msg in monitor.get():
                event = ref_event(msg)
                if event is not None:
                    seen.append(event)
                    if last(event):
                        return seen
        raise AssertionError("end0's removal never came")

    async def body() -> tuple[list[LinkEvent], list[LinkEvent]]:
        rtnl = Rtnl()
        await rtnl.open()
        monitor = AsyncIPRoute(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        await monitor.bind()
        try:
            tasks = (asyncio.create_task(ours(rtnl)), asyncio.create_task(theirs(monitor)))
            for change in changes:
                await asyncio.to_thread(ns.ip, *change)
            seen = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
            return seen[0], seen[1]
        finally:
            monitor.close()
            rtnl.close()

    seen, ref = in_netns(ns.name, lambda: asyncio.run(body()))
    assert seen == ref
    links = [e.link for e in seen if isinstance(e, LinkChanged)]
    eth0 = [link.up for link in links if link.ifname == "eth0"]
    assert False in eth0 and eth0[-1] is True
    assert any(link.ifname == "vm1" and link.macvlan_mode == "private" for link in links)
    assert any(isinstance(e, LinkRemoved) and e.ifname == "vm1" for e in seen)
    added = {str(e.address.address): e.address for e in seen if isinstance(e, AddressAdded)}
    removed = {str(e.address.address) for e in seen if isinstance(e, AddressRemoved)}
    assert added["203.0.113.2/24"].flags & IFA_F_SECONDARY
    assert added["203.0.113.2/24"].flags & IFA_F_NOPREFIXROUTE
    assert added["2001:db8:2::1/64"].flags & IFA_F_NODAD
    assert added["2001:db8:1::2/64"].flags & IFA_F_TENTATIVE
    assert {"203.0.113.2/24", "2001:db8:2::1/64"} <= removed


def test_large_dumps_span_many_reads(ns: Netns, tmp_path: Path) -> None:
    # 3000 addresses and 300 links: a dump of many 32 KB parts.
    batch = tmp_path / "batch"
    lines = [f"link add d{i} type veth peer name d{i}p" for i in range(150)]
    lines += [f"addr add 10.{i // 250}.{i % 250}.1/32 dev dm0" for i in range(3000)]
    batch.write_text("\n".join(lines) + "\n")
    ns.ip("-batch", str(batch))

    (links, addresses), (ref_links, ref_addresses) = in_netns(
        ns.name, lambda: (asyncio.run(our_dumps()), asyncio.run(ref_dumps()))
    )
    assert len(links) >= 300 + 5 and len(addresses) >= 3000
    assert links == ref_links
    assert addresses == ref_addresses


def test_an_overflowed_monitor_says_so_and_a_new_one_works(ns: Netns, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.write_text(
        "".join(f"addr add 10.1.{i // 250}.{i % 250}/32 dev dm0\n" for i in range(5000))
    )

    async def body() -> tuple[int | None, list[LinkEvent]]:
        rtnl = Rtnl()
        await rtnl.open()
        try:
            # The loop is held while 5000 events arrive: far more than the buffer holds.
            ns.ip("-batch", str(batch))
            code = None
            try:
                async with asyncio.timeout(TIMEOUT / 2):
                    async for _event in rtnl.events():
                        pass
            except OSError as exc:
                code = exc.errno
            await rtnl.open_monitor()  # as the adapter does, before it re-reads everything
            await asyncio.to_thread(ns.ip, "link", "add", "end0", "type", "bridge")
            after: list[LinkEvent] = []
            async with asyncio.timeout(TIMEOUT / 2):
                async for event in rtnl.events():
                    after.append(event)
                    if isinstance(event, LinkChanged) and event.link.ifname == "end0":
                        break
            return code, after
        finally:
            rtnl.close()

    code, after = in_netns(ns.name, lambda: asyncio.run(body()))
    assert code == errno.ENOBUFS
    assert [e.link.ifname for e in after if isinstance(e, LinkChanged)] == ["end0"]


def test_closing_ends_the_events(ns: Netns) -> None:
    async def body() -> list[LinkEvent]:
        rtnl = Rtnl()
        await rtnl.open()
        seen: list[LinkEvent] = []

        async def follow() -> None:
            async for event in rtnl.events():
                seen.append(event)

        task = asyncio.create_task(follow())
        monitor = rtnl._monitor
        assert monitor is not None
        for _step in range(100):  # until the task waits for the socket (a few loop steps)
            await asyncio.sleep(0)
            if monitor._waiting is not None:
                break
        assert monitor._waiting is not None
        rtnl.close()
        await asyncio.wait_for(task, TIMEOUT)
        return seen

    assert in_netns(ns.name, lambda: asyncio.run(body())) == []
