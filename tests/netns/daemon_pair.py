"""A pair of directors, "a" and "b", each running the whole daemon in its own namespace on
one bridge, with a witness namespace capturing what crosses the link. The `net` fixture
(registered in tests/netns/conftest.py) builds it; the helpers start daemons on it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.interop.ka_util import (
    AdvertSeen,
    Frame,
    HaDaemon,
    Instance,
    Witness,
    vip_address,
    wait_single_holder,
)
from tests.netns.netns_util import Lab, Netns, require_root

VIP4, VIP6 = "192.0.2.100/24", "2001:db8::100/64"
HIGH, LOW = 200, 100
VRID = 42
ADVERT_INT = 0.2  # v3: fast enough for quick tests, slow enough for a loaded 2-core CI box
SLACK = 0.3  # scheduling allowance for timing assertions


def skew_time(priority: int, advert_int: float) -> float:
    return (256 - priority) / 256 * advert_int  # RFC 5798 §6.1


def master_down(priority: int, advert_int: float) -> float:
    return 3 * advert_int + skew_time(priority, advert_int)


@dataclass
class Net:
    lab: Lab
    tmp: Path
    a: Netns
    b: Netns
    w: Netns
    port_a: str
    port_b: str
    switch: Netns
    witness: Witness

    def daemon(
        self, ns: Netns, name: str, *instances: Instance, metrics_listen: str | None = None
    ) -> HaDaemon:
        return HaDaemon(self.lab, ns, self.tmp, name, instances, metrics_listen=metrics_listen)

    def adverts(self, since: float = 0.0, mac: bytes | None = None) -> list[AdvertSeen]:
        found = self.witness.adverts(VRID, since)
        return [a for a in found if mac is None or a.src_mac == mac]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    require_root()
    with Lab("kd") as lab:
        switch = lab.switch()
        a, b, w = lab.netns("a"), lab.netns("b"), lab.netns("w")
        port_a = lab.plug(a, switch, "eth0", "192.0.2.1/24", "2001:db8::1/64")
        port_b = lab.plug(b, switch, "eth0", "192.0.2.2/24", "2001:db8::2/64")
        lab.plug(w, switch, "eth0")
        with Witness(w, "eth0") as witness:
            yield Net(lab, tmp_path, a, b, w, port_a, port_b, switch[0], witness)


def instance(priority: int, vip: str = VIP4, **changes: Any) -> Instance:
    return replace(Instance(VRID, priority, (vip,), version=3, advert_int=ADVERT_INT), **changes)


def garp_bursts(frames: list[Frame], gap: float = 0.3) -> list[list[Frame]]:
    """Frames grouped into bursts: a new burst starts after `gap` seconds of silence."""
    bursts: list[list[Frame]] = []
    for frame in frames:
        if bursts and frame.at - bursts[-1][-1].at < gap:
            bursts[-1].append(frame)
        else:
            bursts.append([frame])
    return bursts


def start_pair(
    net: Net, vip: str = VIP4, metrics_listen: str | None = None, **kw: Any
) -> tuple[HaDaemon, HaDaemon]:
    a = net.daemon(net.a, "a", instance(HIGH, vip, **kw), metrics_listen=metrics_listen)
    b = net.daemon(net.b, "b", instance(LOW, vip, **kw))
    a.start()
    b.start()
    wait_single_holder([a, b], str(vip_address(vip)), "a", timeout=15.0)
    # Let b hear a few of a's adverts, so its Master_Down_Timer runs from a's last one.
    time.sleep(3 * float(kw.get("advert_int", ADVERT_INT)))
    return a, b
