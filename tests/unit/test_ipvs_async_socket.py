"""AsyncIpvs keeps one call at a time on the IPVS socket, also after a caller gave up.

`asyncio.wait_for` around a dump (hacontrol/lvs.py: the status dump) cancels the caller
and releases the asyncio lock, but the worker thread goes on reading the socket; the next
call must not share it (answers would go to the wrong reader). Threads and real locks, a
fake netlink object: the host kernel has no IPVS.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

from hacontrol.ipvs.netlink import AsyncIpvs, IpvsNetlink

NEGATIVE_WAIT = 0.5  # how long the apply gets to (wrongly) start while the dump runs
BOUND = 10.0


class BlockingNetlink:
    """`dump` blocks until released; every call is logged as it enters and leaves."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.dump_entered = threading.Event()
        self.release = threading.Event()
        self.apply_entered = threading.Event()

    def dump(self, **_kwargs: Any) -> None:
        self.events.append("dump")
        self.dump_entered.set()
        self.release.wait(BOUND)
        self.events.append("dump done")

    def apply(self, _ops: Any) -> str:
        self.events.append("apply")
        self.apply_entered.set()
        return "applied"


def test_a_call_after_a_cancelled_dump_waits_for_its_thread() -> None:
    fake = BlockingNetlink()
    ipvs = AsyncIpvs(cast(IpvsNetlink, fake))

    async def scenario() -> tuple[bool, object]:
        dump = asyncio.create_task(ipvs.snapshot())
        assert await asyncio.to_thread(fake.dump_entered.wait, BOUND)
        dump.cancel()  # the caller gives up; its thread still reads the socket
        apply = asyncio.create_task(ipvs.apply(()))
        started_early = await asyncio.to_thread(fake.apply_entered.wait, NEGATIVE_WAIT)
        fake.release.set()
        result = await asyncio.wait_for(apply, BOUND)
        return started_early, result

    try:
        started_early, result = asyncio.run(scenario())
    finally:
        fake.release.set()
    assert not started_early, fake.events
    assert result == "applied"
    assert fake.events == ["dump", "dump done", "apply"]
