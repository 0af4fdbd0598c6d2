"""Batched VIP changes against the kernel (vrrp/addrbatch.py through `Rtnl`).

What the batch adds must be exactly what `ip addr add` adds (label, broadcast, scope,
IPv6 without DAD), hundreds at once must all land, a refused one must not spoil the rest,
and adding or removing twice is no change, as keepalived treats it.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterator
from ipaddress import IPv4Address, ip_interface
from typing import Any

import pytest

from tests.netns.netns_util import Lab, Netns, in_netns, require_root
from vrrp.addrbatch import AddressChange
from vrrp.addresses import AddressError, Rtnl

pytestmark = pytest.mark.netns


@pytest.fixture
def ns() -> Iterator[Netns]:
    require_root("ip")
    with Lab("ab") as lab:
        a, b = lab.netns("a"), lab.netns("b")
        lab.veth(a, "eth0", b, "eth0")
        a.ip("link", "set", "eth0", "up")
        b.ip("link", "set", "eth0", "up")
        a.ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
        yield a


def apply(ns: Netns, changes: list[AddressChange]) -> list[bool | AddressError]:
    async def body() -> list[bool | AddressError]:
        rtnl = Rtnl()  # its batch socket opens in this thread's namespace
        try:
            return await rtnl.change_addresses(changes)
        finally:
            rtnl.close()

    result: list[bool | AddressError] = in_netns(ns.name, lambda: asyncio.run(body()))
    return result


def entry(ns: Netns, address: str) -> dict[str, Any]:
    for link in ns.ip_json("addr", "show", "dev", "eth0"):
        for info in link["addr_info"]:
            if info["local"] == address:
                return {k: v for k, v in info.items() if not k.endswith("_life_time")}
    raise AssertionError(f"{address} not on eth0")


def ifindex(ns: Netns) -> int:
    return int(ns.ip_json("link", "show", "eth0")[0]["ifindex"])


def test_a_batched_vip_is_what_ip_addr_add_makes(ns: Netns) -> None:
    index = ifindex(ns)
    cases = [
        (
            ["203.0.113.10/24", "brd", "203.0.113.255", "scope", "link", "label", "eth0:1"],
            AddressChange(
                True,
                index,
                ip_interface("203.0.113.10/24"),
                label="eth0:1",
                scope="link",
                broadcast=IPv4Address("203.0.113.255"),
            ),
        ),
        (["198.51.100.7/32"], AddressChange(True, index, ip_interface("198.51.100.7/32"))),
        (
            ["2001:db8::10/64", "nodad"],
            AddressChange(True, index, ip_interface("2001:db8::10/64")),
        ),
    ]
    # A subnet of its own for the scoped one: recent kernels refuse a secondary address
    # whose scope differs from its primary's.
    for ip_args, change in cases:
        address = str(change.address.ip)
        ns.ip("addr", "add", *ip_args, "dev", "eth0")
        by_iproute2 = entry(ns, address)
        ns.ip("addr", "del", str(change.address), "dev", "eth0")
        assert apply(ns, [change]) == [True]
        assert entry(ns, address) == by_iproute2


def test_hundreds_of_vips_land_and_a_refused_one_spoils_nothing(ns: Netns) -> None:
    index = ifindex(ns)
    vips = [ip_interface(f"198.51.100.{n}/24") for n in range(1, 251)]
    vips += [ip_interface(f"203.0.113.{n}/24") for n in range(1, 251)]
    vips += [ip_interface(f"2001:db8:1::{n:x}/64") for n in range(1, 251)]
    changes = [AddressChange(True, index, v) for v in vips]
    bad = AddressChange(True, index + 1000, ip_interface("192.0.2.99/24"))  # no such link
    results = apply(ns, [*changes[:300], bad, *changes[300:]])
    refused = results.pop(300)
    assert isinstance(refused, AddressError) and refused.code == errno.ENODEV
    assert "192.0.2.99/24" in str(refused)
    assert results == [True] * 750
    present = ns.addresses("eth0")
    assert {str(v) for v in vips} <= present
    # Again: all there already, nothing to do (keepalived's idempotence).
    assert apply(ns, changes) == [False] * 750
    removals = [AddressChange(False, index, v) for v in vips]
    # The first of a subnet is its primary: without promote_secondaries the kernel takes
    # the secondaries with it, whose removal is then "nothing to do". The adapter sets
    # promote_secondaries before removing a primary VIP; here the count shows the rule.
    results = apply(ns, removals)
    assert all(r is True or r is False for r in results)
    assert not {str(v) for v in vips} & ns.addresses("eth0")
    assert apply(ns, removals) == [False] * 750
    assert "192.0.2.1/24" in ns.addresses("eth0")  # the administrator's address stays
