"""hacontrol started on an interface with no IPv4 address, beside the real keepalived.

Before: the instance became MASTER, sent its first advert from 0.0.0.0, added its VIP
(which became the interface's primary address) and from then on advertised from the VIP
with a bad VRRPv3 checksum; keepalived logged "Invalid VRRPv3 checksum" and became master
too, for good. Now, as keepalived itself does: FAULT until the interface has an address of
its own (no advert at all meanwhile, captured), then an ordinary election, and the
administrator's address is never touched.
"""

from __future__ import annotations

import signal
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.interop.ka_util import (
    HaDaemon,
    Instance,
    Keepalived,
    Witness,
    sample_single_holder,
    wait_single_holder,
)
from tests.netns.netns_util import Lab, require_root, wait_until
from tests.support import require_tool

pytestmark = pytest.mark.interop

VIP = "192.0.2.100/24"


def test_no_address_is_fault_then_a_normal_election_with_keepalived(tmp_path: Path) -> None:
    require_root()
    require_tool("keepalived")
    with Lab("kn") as lab:
        switch = lab.switch()
        ha_ns, ka_ns, w_ns = lab.netns("ha"), lab.netns("kd"), lab.netns("w")
        lab.plug(ha_ns, switch, "eth0")  # no IPv4 address yet
        lab.plug(ka_ns, switch, "eth0", "192.0.2.2/24")
        lab.plug(w_ns, switch, "eth0")
        with Witness(w_ns, "eth0") as witness:
            proto = {"version": 3, "advert_int": 0.1}
            ha = HaDaemon(lab, ha_ns, tmp_path, "ha", (Instance(71, 200, (VIP,), **proto),))
            ka = Keepalived(lab, ka_ns, tmp_path, "kd", (Instance(71, 100, (VIP,), **proto),))
            mac_ha = ha_ns.mac("eth0")
            started = time.time()
            ha.start()
            ka.start()
            # keepalived is master alone: hacontrol waits in FAULT and says why.
            wait_single_holder([ha, ka], "192.0.2.100", "kd", timeout=15)

            def faulted() -> bool:
                try:
                    (vi,) = ha.control({"command": "status"})["vrrp_instances"]
                except Exception:
                    return False
                return bool(vi["state"] == "FAULT" and vi["faults"] == ["no_source_address"])

            wait_until(faulted, timeout=10, message="hacontrol in FAULT without an address")
            assert sample_single_holder([ha, ka], "192.0.2.100", duration=1.0) >= 3
            assert not [a for a in witness.adverts(71, started) if a.src_mac == mac_ha]
            assert not [
                a for a in witness.adverts(None, started) if a.src == IPv4Address("0.0.0.0")
            ]

            # The administrator adds the address: out of FAULT, hacontrol outranks keepalived
            # and preempts; keepalived accepts its adverts (a correct checksum) and steps down.
            addressed = time.time()
            ha_ns.ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
            wait_single_holder([ha, ka], "192.0.2.100", "ha", timeout=10)
            assert sample_single_holder([ha, ka], "192.0.2.100", duration=1.0) >= 3
            mine = [a for a in witness.adverts(71, addressed) if a.src_mac == mac_ha]
            assert mine and {a.src for a in mine} == {IPv4Address("192.0.2.1")}
            assert "checksum" not in ka.log_text().lower(), ka.tail()
            transitions = [line for line in ha.log_text().splitlines() if "vrrp.state" in line]
            assert any("from=FAULT to=BACKUP reason=source_address" in t for t in transitions)

            # Stopping hacontrol takes its VIP, never the administrator's address.
            assert ha.stop(signal.SIGTERM) == 0, ha.tail()
            assert ha_ns.has_address("eth0", "192.0.2.1")
            assert not ha_ns.has_address("eth0", "192.0.2.100")
            wait_single_holder([ha, ka], "192.0.2.100", "kd", timeout=5)
            assert ka.stop() == 0
