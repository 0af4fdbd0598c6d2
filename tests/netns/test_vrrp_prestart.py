"""The VRRP process is started early (`VrrpSupervisor.prestart`), while the daemon starts
IPVS and the rest: it advertises nothing until `start()` hands it the instances, and
`start()` uses that same process rather than a second one.
"""

from __future__ import annotations

import asyncio
import threading
from ipaddress import ip_address, ip_interface

from hacontrol.runtime.vrrp_host import VrrpSupervisor
from tests.netns.netns_util import Capture, Lab, in_netns, require_root
from vrrp.io import spec_of
from vrrp.types import InstanceParams

HELLO_TIMEOUT = 120.0  # a loaded CI machine; a quiet one says Hello in well under a second
ETH_P_IP = 0x0800
IPPROTO_VRRP = 112


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _is_vrrp(frame: bytes) -> bool:
    return len(frame) > 23 and frame[12:14] == b"\x08\x00" and frame[23] == IPPROTO_VRRP


def test_prestarted_process_is_silent_until_start_and_is_the_one_started() -> None:
    require_root()
    with Lab("pre") as lab:
        a, w = lab.netns("a"), lab.netns("w")
        lab.veth(a, "eth0", w, "eth0")
        a.ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
        a.ip("link", "set", "eth0", "up")
        w.ip("link", "set", "eth0", "up")
        params = InstanceParams(
            name="VI_1",
            vrid=51,
            version=3,
            priority=255,  # MASTER at once (RFC 5798 §6.4.1)
            advert_int=100,
            primary_address=ip_address("192.0.2.1"),
            virtual_addresses=(ip_interface("192.0.2.100/24"),),
        )
        spec = spec_of(params, "eth0")
        seen: dict[str, object] = {}
        go = threading.Event()

        async def director() -> None:
            sup = VrrpSupervisor(lambda _event: None)
            await sup.prestart(False)  # an LVS-only director: no VRRP process
            assert sup.pid is None
            await sup.prestart(True)
            seen["prestarted"] = sup.pid
            try:
                await asyncio.wait_for(sup.hello.wait(), HELLO_TIMEOUT)
                await sup.prestart(True)  # a second call starts no second process
                seen["again"] = sup.pid
                seen["hello"] = True
                # The witness looks for adverts from here on; start() once it has.
                await asyncio.to_thread(go.wait, HELLO_TIMEOUT)
                result = await sup.start((spec,))
                seen["errors"] = dict(result.errors)
                seen["started"] = sup.pid
            finally:
                await sup.stop()

        with Capture(w, "eth0", ETH_P_IP) as capture:
            thread = threading.Thread(
                target=in_netns, args=(a.name, lambda: asyncio.run(director()))
            )
            thread.start()
            try:
                deadline = HELLO_TIMEOUT
                while "hello" not in seen and deadline > 0 and thread.is_alive():
                    capture.collect(0.1)
                    deadline -= 0.1
                assert seen.get("hello"), seen
                # Up and waiting: one advert interval and more of silence.
                silent = capture.collect(0.5)
                assert not [f for f in silent if _is_vrrp(f.data)], "advertised before start()"
                go.set()
                capture.wait_for(
                    lambda frames: any(_is_vrrp(f.data) for f in frames),
                    timeout=HELLO_TIMEOUT,
                    message="the first advert after start()",
                )
            finally:
                go.set()
                thread.join(HELLO_TIMEOUT)
        pid = seen["prestarted"]
        assert isinstance(pid, int)
        assert seen["again"] == pid and seen["started"] == pid, seen
        assert seen["errors"] == {}
        assert not _alive(pid)


def test_inline_engine_starts_no_process() -> None:
    async def scenario() -> None:
        sup = VrrpSupervisor(lambda _e: None, inline=True)
        await sup.prestart(True)
        assert sup.pid is None

    asyncio.run(scenario())
